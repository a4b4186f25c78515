"""Build the static site of a run: one page for the run, one page per class. Imports no torch.

```
OUT/
  index.html                 the run: config, accuracy per epoch, training curves, class list
  classes/NNN-<slug>.html    one class: accuracy per epoch, every validation image with its
                             true-class map at the final epoch, and a few images' timelines
  data/common.js             class names and the viridis lookup table, for edvis.js
  data/NNN.png               the class's validation images, packed in a grid (a sprite sheet)
  data/NNN.js                the class's maps at every epoch (base64 uint8) and predictions
  figures/training.{png,svg,csv}
  static/edvis.css, static/edvis.js   copied from templates/static/
```

The build reads everything into plain objects first (:func:`collect`), then writes the
files (:func:`render`). Pages are Jinja2 templates from ``templates/`` rendered with
autoescaping on, so names read from the dataset are always text, never markup; file names
are made only from class indices and ASCII slugs. Data for the browser is loaded with
``<script src>`` (which works from ``file://``, where ``fetch()`` does not). Links are
relative, nothing is fetched from elsewhere, and two builds from the same inputs are
byte-identical.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from PIL import Image

import edvis
from edvis import atomic, figures
from edvis.run import Run
from edvis.store import RenderStore, Unit

#: Where the page templates and the static files (``templates/static/``) live.
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

PERTURBATION = "clean"
SLUG_MAX = 40
SPRITE_COLUMNS = 10  # Tiny ImageNet has 50 validation images per class: a 10 x 5 sheet
TILE_PX = 128  # canvas size of a tile on the class page (2x the 64 px images)
TIMELINE_PX = 96  # canvas size of a timeline tile
MAP_ALPHA = 0.5
LEGEND_STOPS = 17
#: Mode of every file written: readable by the web server that hosts the site.


class SiteError(Exception):
    """The site could not be built; names the output file that was being built."""


# -- the plain objects the pages are rendered from --------------------------------------------


@dataclass(frozen=True)
class EpochRow:
    """One row of the run's accuracy table (from metrics.jsonl); text already formatted."""

    epoch: int
    train_loss: str
    val_loss: str
    val_top1: str
    val_top5: str
    lr: str
    seconds: str
    best: bool


@dataclass(frozen=True)
class ClassAccuracy:
    """One class's accuracy on its validation images at one rendered epoch."""

    epoch: int
    top1: float | None
    top5: float | None

    @property
    def top1_text(self) -> str:
        return _pct(self.top1)

    @property
    def top5_text(self) -> str:
        return _pct(self.top5)


@dataclass(frozen=True)
class Tile:
    """One validation image at one epoch: what its canvas draws and the text beside it."""

    image: int  # index among the class's validation images (its place in the sprite)
    epoch: int
    epoch_index: int  # index into the rendered epochs
    file: str
    pred_name: str
    pred_prob: float
    correct: bool

    @property
    def prob_text(self) -> str:
        return f"{100 * self.pred_prob:.1f}%"

    @property
    def verdict(self) -> str:
        return "right" if self.correct else "wrong"


@dataclass(frozen=True)
class Timeline:
    """One validation image followed through every rendered epoch."""

    image: int
    file: str
    tiles: list[Tile]


@dataclass(eq=False)
class ClassPage:
    """Everything about one class: its page, its data files and the arrays they hold."""

    index: int
    key: str  # zero-padded index, the stem of its data files
    wnid: str
    name: str
    slug: str
    members: np.ndarray = field(repr=False)  # indices into the manifest's validation list
    files: list[str] = field(repr=False)
    accuracy: list[ClassAccuracy] = field(default_factory=list)
    tiles: list[Tile] = field(default_factory=list)
    timelines: list[Timeline] = field(default_factory=list)
    # (images, epochs, S, S) uint8, each map scaled to 0..255; then top-1 index and probability
    maps: np.ndarray | None = field(default=None, repr=False)
    pred: np.ndarray | None = field(default=None, repr=False)
    prob: np.ndarray | None = field(default=None, repr=False)
    prev: ClassPage | None = field(default=None, repr=False)
    next: ClassPage | None = field(default=None, repr=False)

    @property
    def page(self) -> str:
        return f"classes/{self.key}-{self.slug}.html"

    @property
    def sprite(self) -> str:
        return f"data/{self.key}.png"

    @property
    def data_js(self) -> str:
        return f"data/{self.key}.js"

    @property
    def final(self) -> ClassAccuracy | None:
        return self.accuracy[-1] if self.accuracy else None


@dataclass(frozen=True, eq=False)
class Renders:
    """What the render store says about every validation image, one row per rendered epoch."""

    epochs: list[int]
    maps: np.ndarray  # (E, N, S, S) uint8: the true class's map, scaled per map to 0..255
    pred: np.ndarray  # (E, N) top-1 class index
    prob: np.ndarray  # (E, N) top-1 probability
    hit1: np.ndarray  # (E, N) top-1 is the true class
    hit5: np.ndarray  # (E, N) the true class is among the top 5


@dataclass(eq=False)
class Site:
    """The whole site, collected from the run before anything is written."""

    run_name: str
    dataset_root: str
    layout: str
    fingerprint: str
    num_classes: int
    num_val: int
    model_name: str
    variant: str
    epochs_planned: str
    epochs_trained: int
    epochs: list[int]  # the rendered epochs
    image_size: int
    map_size: int
    config_rows: list[tuple[str, str]]
    metrics: list[dict[str, Any]]
    metric_rows: list[EpochRow]
    classes: list[ClassPage]
    names: list[str]
    timeline_images: int
    seed: int


# -- public entry point ------------------------------------------------------------------------


def build_site(run_dir: Path, out_dir: Path, timeline_images: int = 3, seed: int = 0) -> Path:
    """Build the static site of the run in ``run_dir`` into ``out_dir``; return its index.html.

    ``timeline_images`` validation images per class (drawn with ``numpy.random.default_rng(seed)``)
    get a row showing their true-class map at every rendered epoch. Files already in
    ``out_dir`` that this build does not write are left alone.
    """
    site = collect(Path(run_dir), timeline_images=timeline_images, seed=seed)
    if Path(out_dir).is_dir():
        atomic.sweep_temps(out_dir)  # what a killed build left behind
    return render(site, Path(out_dir))


# -- collect: read the run into plain objects --------------------------------------------------


def collect(run_dir: Path, timeline_images: int = 3, seed: int = 0) -> Site:
    """Read config, metrics and the render store of a run into a :class:`Site`."""
    if timeline_images < 0:
        raise ValueError(f"timeline_images must be >= 0, got {timeline_images}")
    run = Run(run_dir)
    config = run.read_config() if run.config_path.exists() else {}
    metrics = run.read_metrics()
    store = RenderStore(run.render_dir)
    manifest = store.manifest()
    epochs = store.epochs(PERTURBATION)
    if not epochs:
        raise SiteError(
            f"no rendered epochs in {store.root / PERTURBATION} (run `edvis render` first)"
        )

    dataset = manifest.get("dataset", {})
    val = manifest["val"]
    labels = np.asarray(val["labels"], dtype=np.int64)
    files = [str(f) for f in val["files"]]
    wnids = [str(w) for w in dataset.get("wnids", [])]
    names = [str(n) for n in dataset.get("names", [])] or list(wnids)
    num_classes = len(wnids) or len(names) or int(_get(config, "model", "num_classes", default=0))
    wnids += [""] * (num_classes - len(wnids))
    names += [wnids[i] or f"class {i}" for i in range(len(names), num_classes)]
    map_size = int(manifest.get("map_size", 8))

    renders = _read_units(store, epochs, labels, map_size)

    width = max(3, len(str(num_classes - 1)))
    classes = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        page = ClassPage(
            index=c,
            key=f"{c:0{width}d}",
            wnid=wnids[c],
            name=names[c],
            slug=slugify(names[c]),
            members=members,
            files=[files[i] for i in members],
        )
        _fill_class(page, renders, names, timeline_images, seed)
        classes.append(page)
    for a, b in zip(classes, classes[1:]):
        a.next, b.prev = b, a

    model = config.get("model", {}) if isinstance(config.get("model"), dict) else {}
    return Site(
        run_name=Path(run_dir).resolve().name,
        dataset_root=str(dataset.get("root", _get(config, "dataset", "root", default=""))),
        layout=str(dataset.get("layout", _get(config, "dataset", "layout", default=""))),
        fingerprint=str(dataset.get("fingerprint", _get(config, "dataset", "fingerprint", default=""))),
        num_classes=num_classes,
        num_val=len(files),
        model_name=str(model.get("name", "")),
        variant=str(model.get("variant", "")),
        epochs_planned=str(_get(config, "train", "epochs", default="")),
        epochs_trained=len(metrics),
        epochs=epochs,
        image_size=int(manifest.get("image_size", 64)),
        map_size=map_size,
        config_rows=_flatten(config),
        metrics=metrics,
        metric_rows=_metric_rows(metrics),
        classes=classes,
        names=names,
        timeline_images=timeline_images,
        seed=seed,
    )


def _read_units(store: RenderStore, epochs: list[int], labels: np.ndarray, map_size: int) -> Renders:
    """Read every rendered epoch's unit, keeping only what the site shows."""
    n = len(labels)
    maps = np.zeros((len(epochs), n, map_size, map_size), dtype=np.uint8)
    pred = np.zeros((len(epochs), n), dtype=np.int64)
    prob = np.zeros((len(epochs), n), dtype=np.float64)
    hit1 = np.zeros((len(epochs), n), dtype=bool)
    hit5 = np.zeros((len(epochs), n), dtype=bool)
    for e, epoch in enumerate(epochs):
        unit = Unit(PERTURBATION, epoch)
        arrays = store.read(unit)
        top5 = np.asarray(arrays["top5"], dtype=np.int64)
        if top5.shape[0] != n or arrays["map_true"].shape != (n, map_size, map_size):
            raise SiteError(
                f"{store.path(unit)} holds {top5.shape[0]} images of maps "
                f"{arrays['map_true'].shape[1:]}, the manifest {n} of {(map_size, map_size)}"
            )
        maps[e] = normalise_maps(arrays["map_true"])
        pred[e] = top5[:, 0]
        prob[e] = np.asarray(arrays["top5_prob"], dtype=np.float64)[:, 0]
        hit1[e] = top5[:, 0] == labels
        hit5[e] = (top5 == labels[:, None]).any(axis=1)
    return Renders(epochs, maps, pred, prob, hit1, hit5)


def _fill_class(
    page: ClassPage, renders: Renders, names: list[str], timeline_images: int, seed: int
) -> None:
    """Cut one class's arrays out of the whole-set ones and describe its tiles."""
    m = page.members
    epochs = renders.epochs
    page.maps = np.ascontiguousarray(renders.maps[:, m].transpose(1, 0, 2, 3))
    page.pred = renders.pred[:, m].T.copy()
    page.prob = renders.prob[:, m].T.copy()
    for e, epoch in enumerate(epochs):
        top1 = float(renders.hit1[e, m].mean()) if len(m) else None
        top5 = float(renders.hit5[e, m].mean()) if len(m) else None
        page.accuracy.append(ClassAccuracy(epoch, top1, top5))

    def tile(i: int, e: int) -> Tile:
        k = int(page.pred[i, e])
        return Tile(
            image=i,
            epoch=epochs[e],
            epoch_index=e,
            file=page.files[i],
            pred_name=names[k] if 0 <= k < len(names) else f"class {k}",
            pred_prob=round(float(page.prob[i, e]), 4),  # as in the page's data file
            correct=k == page.index,
        )

    last = len(epochs) - 1
    page.tiles = [tile(i, last) for i in range(len(m))]
    for i in choose_timeline(len(m), timeline_images, seed):
        page.timelines.append(Timeline(i, page.files[i], [tile(i, e) for e in range(len(epochs))]))


def normalise_maps(maps: np.ndarray) -> np.ndarray:
    """Scale each map by its own maximum to 0..255 uint8 (map / max(map)); all-zero stays zero.

    ``maps`` has shape (N, S, S). Negative and non-finite values (which a ReLU output never
    holds) are treated as zero.
    """
    m = np.nan_to_num(np.asarray(maps, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    m = np.maximum(m, 0.0)
    peak = m.max(axis=(1, 2), keepdims=True)
    scaled = np.divide(m, peak, out=np.zeros_like(m), where=peak > 0)
    return np.rint(scaled * 255.0).astype(np.uint8)


def choose_timeline(n: int, k: int, seed: int) -> list[int]:
    """The sorted indices of ``min(k, n)`` of ``n`` images, drawn without replacement from ``seed``."""
    k = min(k, n)
    if k <= 0:
        return []
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=k, replace=False))


def slugify(name: str) -> str:
    """Lowercase ASCII ``[a-z0-9-]`` of ``name``, at most 40 characters; "class" if nothing is left."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    slug = slug[:SLUG_MAX].rstrip("-")
    return slug or "class"


def _get(config: dict[str, Any], *keys: str, default: Any = None) -> Any:
    node: Any = config
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def _flatten(config: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The config as (dotted key, value text) rows, nested dicts expanded, keys sorted."""
    rows = []
    for key in sorted(config, key=str):
        value = config[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(_flatten(value, f"{name}."))
        elif isinstance(value, str):
            rows.append((name, value))
        else:
            rows.append((name, json.dumps(value, sort_keys=True, ensure_ascii=False)))
    return rows


def _pct(x: Any) -> str:
    """A fraction as a percentage with two decimals; "—" when missing."""
    if isinstance(x, (int, float)) and math.isfinite(x):
        return f"{100 * x:.2f}%"
    return "—"


def _num(x: Any, fmt: str) -> str:
    if isinstance(x, (int, float)) and math.isfinite(x):
        return format(x, fmt)
    return "—"


def _metric_rows(metrics: list[dict[str, Any]]) -> list[EpochRow]:
    scores = [r.get("val_top1") for r in metrics]
    finite = [s for s in scores if isinstance(s, (int, float)) and math.isfinite(s)]
    best = max(finite) if finite else None
    return [
        EpochRow(
            epoch=int(r["epoch"]),
            train_loss=_num(r.get("train_loss"), ".4f"),
            val_loss=_num(r.get("val_loss"), ".4f"),
            val_top1=_pct(r.get("val_top1")),
            val_top5=_pct(r.get("val_top5")),
            lr=_num(r.get("lr"), ".3g"),
            seconds=_num(r.get("seconds"), ".0f"),
            best=best is not None and r.get("val_top1") == best,
        )
        for r in metrics
    ]


# -- render: write the files -------------------------------------------------------------------


def render(site: Site, out_dir: Path) -> Path:
    """Write the site described by ``site`` into ``out_dir``; return the path of index.html."""
    out_dir = Path(out_dir).resolve()
    env = _environment()
    lut = figures.viridis_lut()

    _copy_static(out_dir)

    figure = None
    if site.metrics:
        stem = _inside(out_dir, "figures/training")
        with _building(stem.with_suffix(".png")):
            figure = {k: p.relative_to(out_dir).as_posix() for k, p in
                      figures.training_curves(site.metrics, stem).items()}

    common = _inside(out_dir, "data/common.js")
    with _building(common):
        _write(common, _js_assign("names", site.names) + _js_assign("lut", lut.reshape(-1).tolist()))

    legend = _legend_gradient(lut)
    for page in site.classes:
        if len(page.members):
            _write_sprite(site, page, out_dir)
            _write_class_data(site, page, out_dir)
        path = _inside(out_dir, page.page)
        with _building(path):
            html = env.get_template("class.html").render(
                root="../", site=site, cls=page, legend=legend,
                tile_px=TILE_PX, timeline_px=TIMELINE_PX, version=edvis.__version__,
            )
            _write(path, html)

    index = _inside(out_dir, "index.html")
    with _building(index):
        html = env.get_template("index.html").render(
            root="", site=site, figure=figure, version=edvis.__version__
        )
        _write(index, html)
    return index


def _environment() -> jinja2.Environment:
    """The one Jinja2 environment: templates from TEMPLATES_DIR, autoescaped, strict."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@contextlib.contextmanager
def _building(path: Path) -> Iterator[None]:
    """Re-raise any failure as a SiteError that names the file being built."""
    try:
        yield
    except SiteError:
        raise
    except Exception as e:
        raise SiteError(f"while building {path}: {e}") from e


def _write(path: Path, content: str | bytes) -> None:
    """Write ``content`` (text as UTF-8) atomically."""
    atomic.write_bytes(path, content.encode("utf-8") if isinstance(content, str) else content)


def _inside(out_dir: Path, relative: str) -> Path:
    """``out_dir / relative``, refusing any path that would land outside ``out_dir``."""
    path = (out_dir / relative).resolve()
    if not path.is_relative_to(out_dir):
        raise SiteError(f"refusing to write {path}: outside the output folder {out_dir}")
    return path


def _copy_static(out_dir: Path) -> None:
    source = TEMPLATES_DIR / "static"
    for src in sorted(source.iterdir()):
        if src.is_file():
            dest = _inside(out_dir, f"static/{src.name}")
            with _building(dest):
                _write(dest, src.read_bytes())


def _write_sprite(site: Site, page: ClassPage, out_dir: Path) -> None:
    """The class's validation images in a grid of SPRITE_COLUMNS columns, in page order."""
    from edvis.dataset import load_image  # lazily: only the sprites need the image decoder

    path = _inside(out_dir, page.sprite)
    size = site.image_size
    n = len(page.files)
    cols = min(n, SPRITE_COLUMNS)
    rows = math.ceil(n / cols)
    sheet = np.zeros((rows * size, cols * size, 3), dtype=np.uint8)
    with _building(path):
        for i, rel in enumerate(page.files):
            r, c = divmod(i, cols)
            image = load_image(Path(site.dataset_root) / rel, size=size)
            sheet[r * size:(r + 1) * size, c * size:(c + 1) * size] = image
        png = io.BytesIO()
        Image.fromarray(sheet).save(png, format="PNG", optimize=True)
        _write(path, png.getvalue())


def _write_class_data(site: Site, page: ClassPage, out_dir: Path) -> None:
    """``data/NNN.js``: the class's maps and predictions, assigned into ``window.EDVIS``."""
    assert page.maps is not None and page.pred is not None and page.prob is not None
    path = _inside(out_dir, page.data_js)
    data = {
        "index": page.index,
        "epochs": site.epochs,
        "files": page.files,
        "map_size": site.map_size,
        "image_size": site.image_size,
        "columns": min(len(page.files), SPRITE_COLUMNS),
        "alpha": MAP_ALPHA,
        "shape": list(page.maps.shape),
        "maps": base64.b64encode(page.maps.tobytes(order="C")).decode("ascii"),
        "pred": page.pred.tolist(),
        "prob": [[round(float(p), 4) for p in row] for row in page.prob],  # as Tile.pred_prob
    }
    with _building(path):
        _write(path, _js_assign(page.key, data))


def _js_assign(key: str, value: Any) -> str:
    """A line of JavaScript setting ``EDVIS[key]``; safe to load even if strings hold ``</script>``."""
    return (
        "window.EDVIS = window.EDVIS || {};\n"
        f"window.EDVIS[{js_json(key)}] = {js_json(value)};\n"
    )


def js_json(value: Any) -> str:
    """JSON for embedding in JavaScript or HTML: ASCII only, with ``<``, ``>``, ``&`` escaped."""
    text = json.dumps(value, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _legend_gradient(lut: np.ndarray) -> str:
    """A CSS linear-gradient through evenly spaced entries of the lookup table."""
    stops = np.linspace(0, len(lut) - 1, LEGEND_STOPS).round().astype(int)
    colours = ", ".join("#{:02x}{:02x}{:02x}".format(*lut[i]) for i in stops)
    return f"linear-gradient(to right, {colours})"
