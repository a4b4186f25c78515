"""Build the static site of a run. Imports no torch.

```
OUT/
  index.html                   the run: config, file hashes, Table 1 (top-1/top-5 per model and
                               setting), training curves
  classes.html                 every class, sortable and filterable in the browser
  classes/NNN-<slug>.html      one class: accuracy per epoch, mean map over right predictions,
                               every validation image with its map (one epoch slider, kept in the
                               URL as ?epoch=E), timelines, the classes it is confused with
  galleries.html               random right and wrong predictions with their top-5 maps (paper
                               Figures 6-7) and pairs of one class (Figure 8)
  errors.html                  most confused pairs, confident mistakes, confidence histogram,
                               reliability diagram
  perturbations.html           accuracy per setting and epoch; perturbations/<setting>.html:
                               original vs perturbed images with maps (Figures 9-12), the flips
  layers.html                  every layer's output for chosen images (when RUN/render/layers/ exists)
  compare.html                 this model's maps beside another run's (``--compare``)
  figures.html                 every figure for papers: PNG (2x), SVG, data, citation line
  figures/<name>.{png,svg,csv|json}
  data/common.js               class names and the viridis lookup table, for edvis.js
  data/<key>.png, data/<key>.js  sprite sheets of images and base64 uint8 maps, per page
  static/edvis.css, static/edvis.js   copied from templates/static/
```

The build reads everything into plain objects first (:func:`collect`), then writes the
files (:func:`render`). Pages are Jinja2 templates from ``templates/`` rendered with
autoescaping on, so names read from the dataset are always text, never markup; file names
are made only from class indices and ASCII slugs. Data for the browser is loaded with
``<script src>`` (which works from ``file://``, where ``fetch()`` does not). Links are
relative, nothing is fetched from elsewhere, and two builds from the same inputs are
byte-identical. ``RUN/analysis/analysis.json`` (``edvis analyze``) adds calibration, learning
dynamics and localisation numbers where it exists and covers the rendered epochs.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.resources
import io
import json
import logging
import math
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from PIL import Image

import edvis
from edvis.analyze.metrics import class_means, confused_pairs, map_peaks, topk_correct
from edvis.data import PERTURBATIONS, apply, order_settings
from edvis.errors import EdvisError, UsageError
from edvis.run import RenderStore, Run, StoreError, Unit, atomic, model_label
from edvis.site import picks, plots

log = logging.getLogger(__name__)

#: Where the page templates and the static files (``templates/static/``) live: package data of edvis.
TEMPLATES_DIR = Path(str(importlib.resources.files("edvis") / "templates"))

CLEAN = "clean"
SLUG_MAX = 40
SPRITE_COLUMNS = 10  # Tiny ImageNet has 50 validation images per class: a 10 x 5 sheet
TILE_PX = 128  # canvas size of a tile (2x the 64 px images)
SMALL_PX = 96  # canvas size of a timeline or gallery map tile
MAP_ALPHA = 0.5
LEGEND_STOPS = 17
TIMELINE_EPOCHS = 16  # the paper shows 16 epochs per image (Figures 3-5)
GALLERY_RIGHT = 12
GALLERY_WRONG = 12
SAME_CLASS_PAIRS = 6
CONFUSED_SHOWN = 5
CONFUSED_EXAMPLES = 4
ERROR_PAIRS = 20
PAIR_EXAMPLES = 3
CONFIDENT_MISTAKES = 24
HIST_BINS = 20
PERTURB_ROWS = 8
PERTURB_FLIPS = 8
LAYER_CHANNELS = 12
COMPARE_IMAGES = 24
FIGURE_ROWS = 6  # rows of a map figure for papers


class SiteError(EdvisError):
    """The site could not be built; names the file or argument at fault."""





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
    similarity: float | None = None  # analysis.json: map correlation with the final epoch

    @property
    def top1_text(self) -> str:
        return _pct(self.top1)

    @property
    def top5_text(self) -> str:
        return _pct(self.top5)

    @property
    def similarity_text(self) -> str:
        return _num(self.similarity, ".2f")


@dataclass(frozen=True)
class Tile:
    """One canvas and its caption: a sprite cell, a map over it, or both.

    ``src`` names the data object (``window.EDVIS[src]``) holding the maps, ``seq`` the map
    sequence in it and ``epoch_index`` the entry of that sequence; ``cell`` is the image's
    place in that object's sprite sheet. A ``follow`` tile changes with the page's epoch slider.
    """

    src: str
    seq: int | None
    cell: int | None
    epoch_index: int
    alt: str
    label: str = ""  # first caption line, e.g. "epoch 5"
    name: str = ""  # the class named in the caption
    prob: float | None = None
    verdict: str = ""  # "right", "wrong" or "" (no mark)
    follow: bool = False
    box: tuple[int, int, int, int] | None = None
    peak: tuple[int, int] | None = None  # where the upsampled map peaks, in image pixels
    link: str = ""  # page of the class named in the caption

    @property
    def prob_text(self) -> str:
        return "" if self.prob is None else f"{100 * self.prob:.1f}%"

    @property
    def mark(self) -> str:
        return {"right": "✓", "wrong": "✗"}.get(self.verdict, "")

    @property
    def box_text(self) -> str:
        return "" if self.box is None else " ".join(str(v) for v in self.box)

    @property
    def peak_text(self) -> str:
        return "" if self.peak is None else " ".join(str(v) for v in self.peak)


@dataclass(frozen=True)
class Timeline:
    """One validation image followed through the rendered epochs."""

    image: int
    file: str
    tiles: list[Tile]


@dataclass(eq=False)
class Pack:
    """A data object for the browser: a sprite sheet and maps, written as ``data/<key>.{png,js}``.

    ``maps`` is (Q, E, S, S) uint8, each map scaled to its own maximum; ``cells`` the validation
    indices in the sprite.
    """

    key: str
    epochs: list[int]
    maps: np.ndarray
    cells: list[int] = field(default_factory=list)
    pred: np.ndarray | None = None  # (Q, E) top-1 class of the image behind each sequence
    prob: np.ndarray | None = None  # (Q, E) its probability
    truth: list[int] | None = None  # (Q,) true class
    files: list[str] | None = None  # (Q,) validation file
    extra: dict[str, Any] = field(default_factory=dict)
    sprite_key: str | None = None  # share another pack's sprite sheet

    @property
    def js(self) -> str:
        return f"data/{self.key}.js"

    @property
    def sprite(self) -> str:
        return f"data/{self.sprite_key or self.key}.png"

    @property
    def sprite_id(self) -> str:
        return f"sprite-{self.sprite_key or self.key}"

    @property
    def has_sprite(self) -> bool:
        return self.sprite_key is None and bool(self.cells)


@dataclass(frozen=True)
class Confusion:
    """Another class that this class's images are predicted as (or that is predicted as this one)."""

    other: ClassPage
    count: int
    tiles: list[Tile] = field(default_factory=list)


@dataclass(frozen=True)
class SettingRow:
    """One perturbation setting on a class page: the class's top-1 under it and the change."""

    setting: Setting
    top1: float | None
    drop: float | None

    @property
    def top1_text(self) -> str:
        return _pct(self.top1)

    @property
    def drop_text(self) -> str:
        return _pts(self.drop)


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
    mean_tile: Tile | None = None
    mean_counts: list[int] = field(default_factory=list)
    timelines: list[Timeline] = field(default_factory=list)
    confused: list[Confusion] = field(default_factory=list)
    mistaken: list[Confusion] = field(default_factory=list)
    settings: list[SettingRow] = field(default_factory=list)
    analysis: dict[str, Any] = field(default_factory=dict)  # its entry in analysis.json
    chart: Chart | None = None
    worst: SettingRow | None = None
    pack: Pack | None = field(default=None, repr=False)
    prev: ClassPage | None = field(default=None, repr=False)
    next: ClassPage | None = field(default=None, repr=False)

    @property
    def page(self) -> str:
        return f"classes/{self.key}-{self.slug}.html"


    @property
    def final(self) -> ClassAccuracy | None:
        return self.accuracy[-1] if self.accuracy else None

    @property
    def mean_top1(self) -> float | None:
        vals = [a.top1 for a in self.accuracy if a.top1 is not None]
        return sum(vals) / len(vals) if vals else None

    @property
    def mean_top1_text(self) -> str:
        return _pct(self.mean_top1)


@dataclass(frozen=True)
class Chart:
    """A small line chart drawn as inline SVG: polylines in a ``width`` x ``height`` box."""

    width: int
    height: int
    lines: list[tuple[str, str, str]]  # (label, css class, "x,y x,y ...")
    xticks: list[tuple[float, str]]
    yticks: list[tuple[float, str]]
    title: str


@dataclass(eq=False)
class Renders:
    """What the render store says about every clean validation image, one row per epoch."""

    epochs: list[int]
    maps: np.ndarray  # (E, N, S, S) uint8: the true class's map, scaled per map to 0..255
    pred: np.ndarray  # (E, N) top-1 class index
    prob: np.ndarray  # (E, N) top-1 probability
    hit1: np.ndarray  # (E, N) top-1 is the true class
    hit5: np.ndarray  # (E, N) the true class is among the top 5
    top5: np.ndarray  # (N, k) at the final epoch
    top5_prob: np.ndarray  # (N, k) at the final epoch
    map_pred: np.ndarray  # (N, S, S) uint8 at the final epoch: the top-1 class's map
    map_top5: np.ndarray | None  # (N, k, S, S) uint8 at the final epoch, when rendered
    seed: int  # the render's seed (perturbation keys are seed * N + i)


@dataclass(eq=False)
class Setting:
    """One perturbation setting (or ``clean``): accuracy per epoch, flips, chosen rows."""

    name: str
    slug: str
    epochs: list[int]
    top1: list[float]
    top5: list[float]
    class_top1: np.ndarray = field(repr=False)  # (C,) at its final epoch; NaN without images
    flips: dict[str, int] = field(default_factory=dict)  # at its final epoch, against clean
    rows: list[int] = field(default_factory=list)  # validation indices shown, random then flips
    flip_rows: list[int] = field(default_factory=list)
    random_count: int = 0  # the first rows are random images, the rest random flips
    seed: int = 0
    known: bool = True  # edvis.data.perturb can recompute its images
    analysis: dict[str, Any] = field(default_factory=dict)  # its row of analysis.json's table
    pack: Pack | None = field(default=None, repr=False)
    tiles: list[tuple[Tile, Tile, str]] = field(default_factory=list)  # (clean, perturbed, change)

    @property
    def page(self) -> str:
        return f"perturbations/{self.slug}.html"

    @property
    def figure(self) -> str:
        return f"perturbation-{self.slug}"

    @property
    def final_epoch(self) -> int:
        return self.epochs[-1]

    @property
    def final_top1(self) -> float:
        return self.top1[-1]

    @property
    def final_top5(self) -> float:
        return self.top5[-1]

    @property
    def flip_total(self) -> int:
        return sum(self.flips.values())


@dataclass(frozen=True)
class TableRow:
    """A row of the Table-1-style table: one setting, top-1/top-5 per model (None: not rendered)."""

    setting: str
    link: str
    cells: list[tuple[float | None, float | None]]

    @property
    def texts(self) -> list[tuple[str, str]]:
        return [(_pct(a), _pct(b)) for a, b in self.cells]


@dataclass(eq=False)
class Model:
    """A run whose numbers appear in Table 1: this one, or the one passed with ``--compare``."""

    label: str
    run_name: str
    epoch: int
    settings: dict[str, tuple[float, float]]  # setting -> (top1, top5) at ``epoch``
    map_size: int
    pred: np.ndarray | None = field(default=None, repr=False)  # (N,) final clean top-1
    prob: np.ndarray | None = field(default=None, repr=False)
    maps: np.ndarray | None = field(default=None, repr=False)  # (N, S, S) uint8 true-class maps


@dataclass(frozen=True)
class GalleryRow:
    """One image of a gallery: the image alone, then its maps with their captions."""

    image: Tile
    maps: list[Tile]


@dataclass(frozen=True)
class PairView:
    """Two classes mixed up at the final epoch, with example images each way."""

    a: ClassPage
    b: ClassPage
    a_as_b: int
    b_as_a: int
    a_tiles: list[Tile]
    b_tiles: list[Tile]

    @property
    def total(self) -> int:
        return self.a_as_b + self.b_as_a


@dataclass(frozen=True)
class LayerInfo:
    key: str
    name: str
    shape: tuple[int, ...]
    class_channels: bool  # channel k is class k's (the maps)


@dataclass(eq=False)
class Layers:
    """The layers page: chosen images' outputs of every layer, at each epoch that has them."""

    epochs: list[int]
    layers: list[LayerInfo]
    images: list[tuple[int, str, str]]  # (sprite cell, file, true class name) in page order
    packs: dict[int, dict[str, Any]]  # epoch -> data object
    pack_files: dict[int, str]


@dataclass(frozen=True)
class FigureEntry:
    """A figure for papers: stable file names, a description, a citation line."""

    name: str
    title: str
    alt: str
    files: dict[str, str]  # extension -> path inside the site
    paper: str = ""  # which of the paper's figures it corresponds to
    citation: str = ""


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
    recipe: str
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
    labels: np.ndarray = field(repr=False)
    files: list[str] = field(repr=False)
    boxes: list[tuple[int, int, int, int] | None] = field(repr=False)
    hashes: list[tuple[str, str]] = field(default_factory=list)
    onnx_hashes: list[tuple[int, str]] = field(default_factory=list)
    settings: list[Setting] = field(default_factory=list)  # clean first
    models: list[Model] = field(default_factory=list)
    table: list[TableRow] = field(default_factory=list)
    analysis: dict[str, Any] | None = None
    analysis_note: str = ""
    renders: Renders | None = field(default=None, repr=False)
    gallery: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Any] = field(default_factory=dict)
    layers: Layers | None = None
    compare: dict[str, Any] | None = None
    packs: list[Pack] = field(default_factory=list, repr=False)  # every data object but the layers'
    figures: list[FigureEntry] = field(default_factory=list)
    base_url: str = ""

    @property
    def final_epoch(self) -> int:
        return self.epochs[-1]

    @property
    def perturbed(self) -> list[Setting]:
        return [s for s in self.settings if s.name != CLEAN]

    @property
    def nav(self) -> list[tuple[str, str]]:
        items = [("index.html", "Run"), ("classes.html", "Classes"), ("galleries.html", "Galleries"),
                 ("errors.html", "Errors"), ("perturbations.html", "Perturbations")]
        if self.layers is not None:
            items.append(("layers.html", "Layers"))
        if self.compare is not None:
            items.append(("compare.html", "Compare"))
        items.append(("figures.html", "Figures"))
        return items

    def figure(self, name: str) -> FigureEntry | None:
        return next((f for f in self.figures if f.name == name), None)


# -- public entry point ------------------------------------------------------------------------


def build_site(
    run_dir: Path,
    out_dir: Path,
    timeline_images: int = 3,
    seed: int = 0,
    compare: Path | None = None,
    data_root: Path | None = None,
    base_url: str = "",
) -> Path:
    """Build the static site of the run in ``run_dir`` into ``out_dir``; return its index.html.

    ``timeline_images`` validation images per class get a row of their map at up to 16 epochs.
    ``seed`` fixes every random choice (timelines, galleries, perturbation rows, compared images).
    ``compare`` is another run rendered on the same validation set (e.g. the CAM baseline),
    shown beside this one. ``data_root`` is the dataset folder when it moved since rendering.
    ``base_url``, when given, makes the figures' citation lines absolute. Files already in
    ``out_dir`` that this build does not write are left alone.
    """
    site = collect(Path(run_dir), timeline_images=timeline_images, seed=seed, compare=compare,
                   data_root=data_root, base_url=base_url)
    if Path(out_dir).is_dir():
        atomic.sweep_temps(out_dir)  # what a killed build left behind
    return render(site, Path(out_dir))


# -- collect: read the run into plain objects --------------------------------------------------


def collect(
    run_dir: Path,
    timeline_images: int = 3,
    seed: int = 0,
    compare: Path | None = None,
    data_root: Path | None = None,
    base_url: str = "",
) -> Site:
    """Read config, metrics, the render store and analysis.json of a run into a :class:`Site`."""
    if timeline_images < 0:
        raise UsageError(f"--timeline-images must be >= 0, got {timeline_images}")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    run = Run(Path(run_dir))
    config = run.read_config() if run.config_path.exists() else {}
    metrics = run.read_metrics()
    store = RenderStore(run.render_dir)
    manifest = store.manifest()
    epochs = store.epochs(CLEAN)
    if not epochs:
        raise SiteError(f"no rendered epochs in {store.root / CLEAN} (run `edvis render` first)")

    dataset = manifest.get("dataset", {})
    val = manifest["val"]
    labels = np.asarray(val["labels"], dtype=np.int64)
    files = [str(f) for f in val["files"]]
    boxes = [tuple(int(v) for v in b) if b else None for b in val.get("boxes", [None] * len(files))]
    wnids = [str(w) for w in dataset.get("wnids", [])]
    names = [str(n) for n in dataset.get("names", [])] or list(wnids)
    num_classes = len(wnids) or len(names) or int(_get(config, "model", "num_classes", default=0))
    wnids += [""] * (num_classes - len(wnids))
    names += [wnids[i] or f"class {i}" for i in range(len(names), num_classes)]
    map_size = int(manifest.get("map_size", 8))
    root = data_root or dataset.get("root") or _get(config, "dataset", "root", default="")

    log.info(f"site: reading {len(epochs)} clean unit(s) from {store.root}")
    renders = _read_clean(store, epochs, labels, map_size)
    model = config.get("model", {}) if isinstance(config.get("model"), dict) else {}
    site = Site(
        run_name=Path(run_dir).resolve().name,
        dataset_root=str(root),
        layout=str(dataset.get("layout", _get(config, "dataset", "layout", default=""))),
        fingerprint=str(dataset.get("fingerprint", _get(config, "dataset", "fingerprint", default=""))),
        num_classes=num_classes,
        num_val=len(files),
        model_name=str(model.get("name", "")),
        # Only the edvis network has variants; a CAM baseline's config carries the default unused.
        variant=str(model.get("variant", "")) if model.get("name", "edvis-resnet18") == "edvis-resnet18" else "",
        recipe=str(_get(config, "train", "recipe", default="")),
        epochs_planned=str(_get(config, "train", "epochs", default="")),
        epochs_trained=len(metrics),
        epochs=epochs,
        image_size=int(manifest.get("image_size", 64)),
        map_size=map_size,
        config_rows=_flatten(config),
        metrics=metrics,
        metric_rows=_metric_rows(metrics),
        classes=[],
        names=names,
        timeline_images=timeline_images,
        seed=seed,
        labels=labels,
        files=files,
        boxes=boxes,
        renders=renders,
        base_url=base_url.rstrip("/") + "/" if base_url else "",
    )
    site.hashes, site.onnx_hashes = _hashes(run, store, epochs)
    site.analysis, site.analysis_note = _read_analysis(run, epochs)

    width = max(3, len(str(num_classes - 1)))
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        site.classes.append(ClassPage(
            index=c, key=f"{c:0{width}d}", wnid=wnids[c], name=names[c], slug=slugify(names[c]),
            members=members, files=[files[i] for i in members],
        ))
    for a, b in zip(site.classes, site.classes[1:]):
        a.next, b.prev = b, a

    site.settings = _read_settings(store, site)
    site.models = [_this_model(site)]
    if compare is not None:
        site.models.append(_compare_model(Path(compare), manifest, site))
    site.table = _table(site)
    for page in site.classes:
        _fill_class(site, page)
    site.gallery = _gallery(site)
    site.errors = _errors(site)
    for setting in site.perturbed:
        _fill_setting(site, setting)
    site.layers = _read_layers(store, site)
    if compare is not None:
        site.compare = _compare(site)
    site.figures = _figure_entries(site)
    return site


def _unit_seed(store: RenderStore, unit: Unit) -> int:
    meta = store.meta(unit) or {}
    value = meta.get("seed", 0)
    return int(value) if isinstance(value, int) and value >= 0 else 0


def _read_clean(store: RenderStore, epochs: list[int], labels: np.ndarray, map_size: int) -> Renders:
    """Read every clean unit, keeping only what the site shows."""
    n = len(labels)
    e_count = len(epochs)
    maps = np.zeros((e_count, n, map_size, map_size), dtype=np.uint8)
    pred = np.zeros((e_count, n), dtype=np.int64)
    prob = np.zeros((e_count, n), dtype=np.float64)
    hit1 = np.zeros((e_count, n), dtype=bool)
    hit5 = np.zeros((e_count, n), dtype=bool)
    final: dict[str, np.ndarray] = {}
    for e, epoch in enumerate(epochs):
        unit = Unit(CLEAN, epoch)
        last = e == e_count - 1
        keys = ("top5", "top5_prob", "map_true") + (("map_pred",) if last else ())
        arrays = store.read(unit, keys, optional=("map_top5",) if last else ())
        top5 = np.asarray(arrays["top5"], dtype=np.int64)
        if top5.shape[0] != n or arrays["map_true"].shape != (n, map_size, map_size):
            raise SiteError(
                f"{store.path(unit)} holds {top5.shape[0]} images of maps "
                f"{arrays['map_true'].shape[1:]}, the manifest {n} of {(map_size, map_size)}"
            )
        maps[e] = normalise_maps(arrays["map_true"])
        pred[e] = top5[:, 0]
        prob[e] = np.asarray(arrays["top5_prob"], dtype=np.float64)[:, 0]
        hit1[e] = topk_correct(top5, labels, 1)
        hit5[e] = topk_correct(top5, labels, 5)
        if last:
            final = arrays
    top5 = np.asarray(final["top5"], dtype=np.int64)
    map_top5 = None
    if "map_top5" in final and final["map_top5"].shape[:2] == top5.shape:
        mt = final["map_top5"]
        map_top5 = normalise_maps(mt.reshape(-1, map_size, map_size)).reshape(mt.shape)
    return Renders(
        epochs=epochs, maps=maps, pred=pred, prob=prob, hit1=hit1, hit5=hit5, top5=top5,
        top5_prob=np.asarray(final["top5_prob"], dtype=np.float64),
        map_pred=normalise_maps(final["map_pred"]), map_top5=map_top5,
        seed=_unit_seed(store, Unit(CLEAN, epochs[-1])),
    )


def setting_slug(name: str) -> str:
    """A file-name part for a setting: ``[a-z0-9.-]``, never starting with a dot."""
    slug = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-.")
    slug = re.sub(r"\.{2,}", ".", slug)[:SLUG_MAX].strip("-.")
    return slug or "setting"


def _read_settings(store: RenderStore, site: Site) -> list[Setting]:
    """Accuracy per epoch of every setting; for perturbed ones also flips and chosen rows."""
    renders = site.renders
    assert renders is not None
    labels = site.labels
    names = order_settings(store.perturbations())
    table = {r.get("setting"): r for r in (site.analysis or {}).get("table", []) if isinstance(r, dict)}
    random_rows = picks.choose(np.arange(site.num_val), PERTURB_ROWS, picks.rng(site.seed, "perturbation-rows"))
    used: set[str] = set()
    out = []
    for name in names:
        slug = setting_slug(name)
        while slug in used:
            slug += "-x"
        used.add(slug)
        if name == CLEAN:
            e_final = len(renders.epochs) - 1
            out.append(Setting(
                name=CLEAN, slug=slug, epochs=list(renders.epochs),
                top1=[float(h.mean()) for h in renders.hit1], top5=[float(h.mean()) for h in renders.hit5],
                class_top1=class_means(renders.hit1[e_final], labels, site.num_classes),
                seed=renders.seed, analysis=table.get(CLEAN, {}),
            ))
            continue
        epochs = [e for e in store.epochs(name) if e in renders.epochs]
        if not epochs:
            log.info(f"site: setting {name} has no epoch with a clean unit; left out")
            continue
        log.info(f"site: reading {len(epochs)} unit(s) of {name}")
        def read(epoch: int, name: str = name) -> dict[str, np.ndarray]:
            arrays = store.read(Unit(name, epoch), ("top5", "top5_prob", "map_true"), ())
            if len(arrays["top5"]) != len(labels):
                raise SiteError(f"{store.path(Unit(name, epoch))} holds {len(arrays['top5'])} images, "
                                f"the manifest {len(labels)}")
            return arrays

        final = read(epochs[-1])  # read once: it also serves the last epoch below
        pred_final = np.asarray(final["top5"], dtype=np.int64)[:, 0]
        clean_final = renders.pred[renders.epochs.index(epochs[-1])]
        flipped = np.flatnonzero(pred_final != clean_final)
        flip_rows = picks.choose(flipped, PERTURB_FLIPS, picks.rng(site.seed, f"flips:{name}"))
        rows = random_rows + [i for i in flip_rows if i not in random_rows]
        setting = Setting(name=name, slug=slug, epochs=epochs, top1=[], top5=[],
                          class_top1=np.zeros(0), rows=rows, flip_rows=flip_rows, random_count=len(random_rows),
                          seed=_unit_seed(store, Unit(name, epochs[-1])), analysis=table.get(name, {}),
                          known=name in PERTURBATIONS)
        n_rows = len(rows)
        maps = np.zeros((2 * n_rows, len(epochs), site.map_size, site.map_size), dtype=np.uint8)
        pred = np.zeros((2 * n_rows, len(epochs)), dtype=np.int64)
        prob = np.zeros((2 * n_rows, len(epochs)), dtype=np.float64)
        idx = np.asarray(rows, dtype=np.int64)
        hit_final = np.zeros(len(labels), dtype=bool)
        for e, epoch in enumerate(epochs):
            arrays = final if epoch == epochs[-1] else read(epoch)
            top5 = np.asarray(arrays["top5"], dtype=np.int64)
            hit = topk_correct(top5, labels, 1)
            setting.top1.append(float(hit.mean()))
            setting.top5.append(float(topk_correct(top5, labels, 5).mean()))
            ce = renders.epochs.index(epoch)
            maps[0::2, e] = renders.maps[ce, idx]  # clean and perturbed rows interleave
            maps[1::2, e] = normalise_maps(arrays["map_true"][idx])
            pred[0::2, e], pred[1::2, e] = renders.pred[ce, idx], top5[idx, 0]
            prob[0::2, e] = renders.prob[ce, idx]
            prob[1::2, e] = np.asarray(arrays["top5_prob"], dtype=np.float64)[idx, 0]
            hit_final = hit
        setting.class_top1 = class_means(hit_final, labels, site.num_classes)
        clean_hit = clean_final == labels
        setting.flips = {
            "right_to_wrong": int((clean_hit & ~hit_final).sum()),
            "wrong_to_right": int((~clean_hit & hit_final).sum()),
            "wrong_to_wrong": int((~clean_hit & ~hit_final & (pred_final != clean_final)).sum()),
        }
        truth = [int(labels[i]) for i in rows for _ in (0, 1)]
        setting.pack = Pack(
            key=f"pert-{slug}", epochs=epochs, maps=maps, cells=[], pred=pred, prob=prob, truth=truth,
            files=[site.files[i] for i in rows for _ in (0, 1)], extra={"perturbation": name},
        )
        out.append(setting)
    return out


def _this_model(site: Site) -> Model:
    label = model_label({"name": site.model_name, "variant": site.variant}, site.run_name)
    r = site.renders
    assert r is not None
    return Model(
        label=label, run_name=site.run_name, epoch=site.final_epoch,
        settings={s.name: (s.final_top1, s.final_top5) for s in site.settings if s.final_epoch == site.final_epoch},
        map_size=site.map_size, pred=r.pred[-1], prob=r.prob[-1], maps=r.maps[-1],
    )


def _compare_model(run_dir: Path, manifest: dict[str, Any], site: Site) -> Model:
    """The run given with ``--compare``: its final epoch's accuracy per setting and clean maps."""
    run = Run(run_dir)
    store = RenderStore(run.render_dir)
    try:
        other = store.manifest()
    except StoreError as e:
        raise SiteError(f"--compare {run_dir}: {e}") from None
    mine_val, other_val = manifest["val"], other.get("val", {})
    if (other.get("dataset", {}).get("fingerprint") != manifest.get("dataset", {}).get("fingerprint")
            or other_val.get("files") != mine_val.get("files") or other_val.get("labels") != mine_val.get("labels")):
        raise SiteError(f"--compare {run_dir}: {store.manifest_path} describes another validation set than "
                        f"this run's render store (dataset fingerprint, files or labels differ)")
    epochs = store.epochs(CLEAN)
    if not epochs:
        raise SiteError(f"--compare {run_dir}: no rendered epochs in {store.root / CLEAN}")
    config = run.read_config() if run.config_path.exists() else {}
    model = config.get("model", {}) if isinstance(config.get("model"), dict) else {}
    label = model_label(model, run_dir.resolve().name)
    if label == site.models[0].label:
        label += f" [{run_dir.resolve().name}]"
    map_size = int(other.get("map_size", 8))
    epoch = epochs[-1]
    log.info(f"site: reading {run_dir} (compared), epoch {epoch}")
    labels = site.labels
    settings: dict[str, tuple[float, float]] = {}
    clean: dict[str, np.ndarray] = {}
    for name in order_settings(store.perturbations()):
        if epoch not in store.epochs(name):
            continue
        keys = ("top5", "top5_prob", "map_true") if name == CLEAN else ("top5",)
        arrays = store.read(Unit(name, epoch), keys, ())
        top5 = np.asarray(arrays["top5"], dtype=np.int64)
        settings[name] = (float(topk_correct(top5, labels, 1).mean()), float(topk_correct(top5, labels, 5).mean()))
        if name == CLEAN:
            clean = arrays
    top5 = np.asarray(clean["top5"], dtype=np.int64)
    return Model(label=label, run_name=run_dir.resolve().name, epoch=epoch, settings=settings, map_size=map_size,
                 pred=top5[:, 0], prob=np.asarray(clean["top5_prob"], dtype=np.float64)[:, 0],
                 maps=normalise_maps(clean["map_true"]))


def _table(site: Site) -> list[TableRow]:
    """Table 1: a row per setting any model rendered, top-1/top-5 per model at its final epoch."""
    names = order_settings(sorted({n for m in site.models for n in m.settings}))
    pages = {s.name: s.page for s in site.perturbed}
    return [TableRow(n, pages.get(n, ""), [m.settings.get(n, (None, None)) for m in site.models]) for n in names]


def _hashes(run: Run, store: RenderStore, epochs: list[int]) -> tuple[list[tuple[str, str]], list[tuple[int, str]]]:
    """sha256 of the run's small files, and each rendered epoch's ONNX file (from its export record)."""
    files = []
    for path in (run.config_path, run.metrics_path, store.manifest_path):
        if path.is_file():
            files.append((path.relative_to(run.root).as_posix(), hashlib.sha256(path.read_bytes()).hexdigest()))
    onnx = []
    for epoch in epochs:
        sha = ""
        with contextlib.suppress(Exception):
            sha = str(run.read_export_record(epoch).get("sha256", ""))
        if not sha:
            sha = str((store.meta(Unit(CLEAN, epoch)) or {}).get("onnx_sha256", ""))
        onnx.append((epoch, sha))
    return files, onnx


def _read_analysis(run: Run, epochs: list[int]) -> tuple[dict[str, Any] | None, str]:
    """RUN/analysis/analysis.json when present and about the rendered epochs; else a note why not."""
    path = run.root / "analysis" / "analysis.json"
    if not path.is_file():
        return None, "Run edvis analyze for these numbers."
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SiteError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or data.get("schema") != 1:
        raise SiteError(f"{path} has schema {data.get('schema') if isinstance(data, dict) else None!r}; "
                        "this edvis reads schema 1: run `edvis analyze --force`")
    if data.get("epochs") != epochs:
        log.info(f"site: {path} covers epochs {data.get('epochs')}, the store {epochs}: its numbers are left out "
            "(run `edvis analyze`)")
        return None, "analysis.json is out of date: run edvis analyze again for these numbers."
    return data, ""


# -- class pages -----------------------------------------------------------------------------


def _true_map_alt(file: str, truth: str, epoch: int, pred: str, prob: float, verdict: str) -> str:
    return f"{file}, true class {truth}: its map at epoch {epoch}; predicted {pred} ({100 * prob:.1f}%), {verdict}"


def _fill_class(site: Site, page: ClassPage) -> None:
    """Cut one class's arrays out of the whole-set ones and describe its tiles."""
    r = site.renders
    assert r is not None
    m = page.members
    epochs = r.epochs
    names = site.names
    last = len(epochs) - 1
    by_analysis = {c.get("index"): c for c in (site.analysis or {}).get("classes", []) if isinstance(c, dict)}
    page.analysis = by_analysis.get(page.index, {})
    similarity = page.analysis.get("similarity_by_epoch") or [None] * len(epochs)
    for e, epoch in enumerate(epochs):
        top1 = float(r.hit1[e, m].mean()) if len(m) else None
        top5 = float(r.hit5[e, m].mean()) if len(m) else None
        page.accuracy.append(ClassAccuracy(epoch, top1, top5, similarity[e] if e < len(similarity) else None))
    page.chart = _chart([a.epoch for a in page.accuracy],
                        [("top-1", "top1", [a.top1 for a in page.accuracy]),
                         ("top-5", "top5", [a.top5 for a in page.accuracy])],
                        f"Top-1 and top-5 accuracy of {page.name} per epoch")
    clean = site.settings[0]
    base = page.final.top1 if page.final else None
    for s in site.perturbed:
        v = s.class_top1[page.index] if page.index < len(s.class_top1) else float("nan")
        top1 = None if math.isnan(v) else float(v)
        drop = None if top1 is None or base is None or s.final_epoch != clean.final_epoch else base - top1
        page.settings.append(SettingRow(s, top1, drop))
    dropped = [row for row in page.settings if row.drop is not None and row.drop > 0]
    page.worst = max(dropped, key=lambda row: row.drop or 0.0) if dropped else None
    if not len(m):
        return

    maps = r.maps[:, m].transpose(1, 0, 2, 3)  # (n, E, S, S)
    mean = np.stack([picks.mean_map(r.maps[e, m][r.hit1[e, m]]) for e in range(len(epochs))])  # (E, S, S)
    page.mean_counts = [int(r.hit1[e, m].sum()) for e in range(len(epochs))]
    page.pack = Pack(
        key=page.key, epochs=epochs, maps=np.concatenate([maps, mean[None]], axis=0), cells=[int(i) for i in m],
        pred=r.pred[:, m].T.copy(), prob=r.prob[:, m].T.copy(), truth=[page.index] * len(m), files=page.files,
        extra={"index": page.index, "mean_seq": len(m), "mean_count": page.mean_counts},
    )

    def tile(i: int, e: int, follow: bool = False, label: str = "") -> Tile:
        k = int(r.pred[e, m[i]])
        p = round(float(r.prob[e, m[i]]), 4)  # as in the page's data file
        verdict = "right" if k == page.index else "wrong"
        return Tile(
            src=page.key, seq=i, cell=i, epoch_index=e, follow=follow, label=label,
            alt=_true_map_alt(page.files[i], page.name, epochs[e], _name(names, k), p, verdict),
            name=_name(names, k), prob=p, verdict=verdict, box=site.boxes[m[i]],
        )

    page.tiles = [tile(i, last, follow=True) for i in range(len(m))]
    page.mean_tile = Tile(
        src=page.key, seq=len(m), cell=None, epoch_index=last, follow=True,
        alt=f"Mean {page.name} map over the {page.mean_counts[-1]} right predictions at epoch {epochs[-1]}",
    )
    shown = picks.even_epochs(list(range(len(epochs))), TIMELINE_EPOCHS)
    for i in choose_timeline(len(m), site.timeline_images, site.seed, stream=page.index):
        page.timelines.append(Timeline(i, page.files[i], [tile(i, e, label=f"epoch {epochs[e]}") for e in shown]))

    local = {int(v): j for j, v in enumerate(m)}
    for other, images in picks.confused_with(site.labels, r.pred[-1], page.index)[:CONFUSED_SHOWN]:
        tiles = [tile(local[i], last) for i in images[:CONFUSED_EXAMPLES]]
        page.confused.append(Confusion(site.classes[other], len(images), tiles))
    for other, count in picks.mistaken_for(site.labels, r.pred[-1], page.index)[:CONFUSED_SHOWN]:
        page.mistaken.append(Confusion(site.classes[other], count))


def _chart(xs: list[int], series: list[tuple[str, str, list[float | None]]], title: str,
           width: int = 480, height: int = 160) -> Chart:
    """An inline-SVG line chart of fractions (0..1) against epochs."""
    left, right, top, bottom = 36, 8, 8, 22
    w, h = width - left - right, height - top - bottom
    lo, hi = (xs[0], xs[-1]) if xs else (0, 1)
    span = max(hi - lo, 1)

    def x(v: float) -> float:
        return left + (v - lo) / span * w

    def y(v: float) -> float:
        return top + (1 - v) * h

    lines = []
    for label, css, values in series:
        pts = " ".join(f"{x(e):.1f},{y(v):.1f}" for e, v in zip(xs, values) if v is not None)
        lines.append((label, css, pts))
    ticks = sorted(set(picks.even_epochs(list(xs), 6)))
    return Chart(width, height, lines, [(round(x(e), 1), str(e)) for e in ticks],
                 [(round(y(v), 1), f"{int(100 * v)}%") for v in (0, 0.5, 1)], title)


def choose_timeline(n: int, k: int, seed: int, stream: int = 0) -> list[int]:
    """The sorted indices of ``min(k, n)`` of ``n`` images, drawn without replacement.

    Each ``stream`` (the class index on class pages) draws from its own generator of ``seed``.
    """
    if k < 0:
        raise UsageError(f"k must be >= 0, got {k}")
    return picks.choose(np.arange(n), k, picks.rng(seed, "timeline", stream))


# -- galleries and errors ------------------------------------------------------------------------


def _gallery(site: Site) -> dict[str, Any]:
    """Random right and wrong predictions with their top-5 maps, and same-class pairs, at the final epoch."""
    r = site.renders
    assert r is not None
    labels, names = site.labels, site.names
    pred = r.pred[-1]
    right = picks.choose(np.flatnonzero(pred == labels), GALLERY_RIGHT, picks.rng(site.seed, "gallery-right"))
    wrong = picks.choose(np.flatnonzero(pred != labels), GALLERY_WRONG, picks.rng(site.seed, "gallery-wrong"))
    pairs = picks.same_class_pairs(labels, pred, SAME_CLASS_PAIRS, picks.rng(site.seed, "same-class-pairs"))
    k = r.top5.shape[1] if r.map_top5 is not None else 1
    images = right + wrong
    cells = images + [i for pair in pairs for i in pair]
    seqs: list[np.ndarray] = []
    epoch = site.final_epoch

    def add(m: np.ndarray) -> int:
        seqs.append(m)
        return len(seqs) - 1

    def row(i: int) -> GalleryRow:
        cell = cells.index(i)
        truth = names[labels[i]]
        image = Tile("gallery", None, cell, 0, alt=f"{site.files[i]}, true class {truth}", label=truth,
                     link=site.classes[labels[i]].page)
        tiles = []
        for rank in range(k):
            c = int(r.top5[i, rank])
            p = round(float(r.top5_prob[i, rank]), 4)
            m = r.map_top5[i, rank] if r.map_top5 is not None else r.map_pred[i]
            verdict = "right" if c == labels[i] else ""
            tiles.append(Tile("gallery", add(m), cell, 0, name=_name(names, c), prob=p, verdict=verdict,
                              label=f"top-{rank + 1}", link=site.classes[c].page if c < len(site.classes) else "",
                              alt=f"{site.files[i]}, true class {truth}: map of {_name(names, c)}, "
                                  f"ranked {rank + 1} with {100 * p:.1f}% at epoch {epoch}"))
        return GalleryRow(image, tiles)

    right_rows = [row(i) for i in right]
    wrong_rows = [row(i) for i in wrong]
    pair_rows = []
    for i, j in pairs:
        c = int(labels[i])
        tiles = []
        for x in (i, j):
            p = round(float(r.prob[-1, x]), 4)
            tiles.append(Tile("gallery", add(r.maps[-1, x]), cells.index(x), 0, name=names[c], prob=p,
                              verdict="right", label=site.files[x].rsplit("/", 1)[-1],
                              alt=_true_map_alt(site.files[x], names[c], epoch, names[c], p, "right")))
        corr = picks.pearson(r.maps[-1, i], r.maps[-1, j])
        pair_rows.append((site.classes[c], tiles, corr))
    maps = np.stack(seqs)[:, None] if seqs else np.zeros((0, 1, site.map_size, site.map_size), np.uint8)
    pack = Pack(key="gallery", epochs=[epoch], maps=maps, cells=cells)
    site.packs.append(pack)
    return {"right": right_rows, "wrong": wrong_rows, "pairs": pair_rows, "has_top5": r.map_top5 is not None,
            "epoch": epoch, "k": k, "right_ids": right, "wrong_ids": wrong, "pair_ids": pairs}


def _errors(site: Site) -> dict[str, Any]:
    """Most confused pairs, confident mistakes and confidence histograms at the final epoch."""
    r = site.renders
    assert r is not None
    labels, names = site.labels, site.names
    pred, prob = r.pred[-1], r.prob[-1]
    epoch = site.final_epoch
    cells: list[int] = []
    seqs: list[np.ndarray] = []

    def tile(i: int, which: str, label: str = "") -> Tile:
        if i not in cells:
            cells.append(i)
        truth, k = names[labels[i]], int(pred[i])
        p = round(float(prob[i]), 4)
        if which == "pred":
            seqs.append(r.map_pred[i])
            alt = (f"{site.files[i]}, true class {truth}: map of the predicted class {_name(names, k)} "
                   f"({100 * p:.1f}%) at epoch {epoch}")
            return Tile("errors", len(seqs) - 1, cells.index(i), 0, alt=alt, label=label or f"true: {truth}",
                        name=_name(names, k), prob=p, verdict="wrong" if k != labels[i] else "right",
                        box=site.boxes[i])
        seqs.append(r.maps[-1, i])
        alt = f"{site.files[i]}, true class {truth}: map of the true class at epoch {epoch}"
        return Tile("errors", len(seqs) - 1, cells.index(i), 0, alt=alt, label=label or "its true class",
                    name=truth, box=site.boxes[i])

    pairs = []
    for p in confused_pairs(labels, pred, len(site.classes), ERROR_PAIRS, PAIR_EXAMPLES):
        pairs.append(PairView(
            site.classes[p["a"]], site.classes[p["b"]], p["a_as_b"], p["b_as_a"],
            [tile(i, "pred") for i in p["images_a_as_b"]], [tile(i, "pred") for i in p["images_b_as_a"]],
        ))
    mistakes = [(tile(i, "pred"), tile(i, "true")) for i in picks.confident_mistakes(labels, pred, prob, CONFIDENT_MISTAKES)]
    right_counts, wrong_counts = picks.histogram(prob, pred == labels, HIST_BINS)
    maps = np.stack(seqs)[:, None] if seqs else np.zeros((0, 1, site.map_size, site.map_size), np.uint8)
    site.packs.append(Pack(key="errors", epochs=[epoch], maps=maps, cells=cells))
    a = site.analysis or {}
    clean_row = next((row for row in a.get("table", []) if row.get("setting") == CLEAN), {})
    reliability = next((x for x in a.get("reliability", []) if x.get("setting") == CLEAN), None)
    return {"pairs": pairs, "mistakes": mistakes, "hist": (right_counts, wrong_counts), "epoch": epoch,
            "right": int((pred == labels).sum()), "wrong": int((pred != labels).sum()),
            "auroc": clean_row.get("auroc"), "ece": clean_row.get("ece"), "reliability": reliability,
            "calibration": [row for row in a.get("table", []) if isinstance(row, dict)]}


# -- perturbations -------------------------------------------------------------------------------


def _fill_setting(site: Site, s: Setting) -> None:
    """Tiles of a perturbation page: each chosen image clean and perturbed, following the slider."""
    assert s.pack is not None
    names = site.names
    last = len(s.epochs) - 1
    for j, i in enumerate(s.rows):
        truth = names[site.labels[i]]
        pair = []
        for side, seq in (("original", 2 * j), (s.name, 2 * j + 1)):
            k = int(s.pack.pred[seq, last])
            p = round(float(s.pack.prob[seq, last]), 4)
            verdict = "right" if k == site.labels[i] else "wrong"
            pair.append(Tile(
                src=s.pack.key, seq=seq, cell=seq, epoch_index=last, follow=True, label=side,
                alt=_true_map_alt(site.files[i], truth, s.epochs[-1], _name(names, k), p, verdict)
                + ("" if side == "original" else f" ({s.name})"),
                name=_name(names, k), prob=p, verdict=verdict,
            ))
        change = "flip" if s.pack.pred[2 * j, last] != s.pack.pred[2 * j + 1, last] else ""
        s.tiles.append((pair[0], pair[1], change))
    s.pack.cells = [i for i in s.rows for _ in (0, 1)]  # the perturbed cells are made in render
    site.packs.append(s.pack)


# -- layers ------------------------------------------------------------------------------------


def _read_layers(store: RenderStore, site: Site) -> Layers | None:
    """RUN/render/layers/epoch_NNN.npz, when present: each chosen image's strongest channels per layer.

    Read one epoch at a time; only the small per-image summaries are kept.
    """
    epochs = store.layer_epochs()
    if not epochs:
        return None
    log.info(f"site: reading {len(epochs)} layer file(s) from {store.root / 'layers'}")
    cells: list[int] = []
    infos: list[LayerInfo] = []
    packs, files = {}, {}
    for e in epochs:
        meta, index, outputs = store.read_layers(e)
        path = store.layers_path(e)
        index = np.asarray(index, dtype=np.int64)
        if len(index) and (index.min() < 0 or index.max() >= site.num_val):
            raise SiteError(f"{path}: image indices must lie in [0, {site.num_val}), got {index.min()}..{index.max()}")
        for name, a in outputs:
            if a.ndim != 4 or a.shape[0] != len(index):
                raise SiteError(f"{path}: layer {name} has shape {a.shape}, expected ({len(index)}, channels, h, w)")
        if e == epochs[-1] or not infos:
            infos = [LayerInfo(str(m.get("key", "")), str(m.get("name", m.get("key", ""))),
                               tuple(int(v) for v in m.get("shape", ())),
                               # maps channel k is class k's; so is up1's, as the last (group) convolution
                               # turns up1 channel k into map k alone
                               str(m.get("name")) in ("up1", "maps") and (m.get("shape") or [0])[0] == site.num_classes)
                     for m in meta["layers"]]
        cells += [int(i) for i in index if int(i) not in cells]
        images = []
        for j, i in enumerate(index):
            layers = []
            for _, a in outputs:
                act = a[j].astype(np.float32)  # (ch, h, w)
                chosen = picks.top_channels(act, LAYER_CHANNELS)
                mean = act.mean(axis=0)
                grids = np.stack([picks.scale_minmax(act[ch]) for ch in chosen] + [picks.scale_minmax(mean)])
                layers.append({
                    "h": int(act.shape[1]), "w": int(act.shape[2]), "channels": chosen,
                    "means": [round(float(act[ch].mean()), 4) for ch in chosen],
                    "range": [[round(float(act[ch].min()), 4), round(float(act[ch].max()), 4)] for ch in chosen]
                    + [[round(float(mean.min()), 4), round(float(mean.max()), 4)]],
                    "data": base64.b64encode(grids.tobytes()).decode("ascii"),
                })
            images.append({"cell": cells.index(int(i)), "index": int(i), "layers": layers})
        packs[e] = {"epoch": e, "images": images}
        files[e] = f"data/layers-{e:03d}.js"
    order = [im["index"] for im in packs[epochs[-1]]["images"]]
    images = [(cells.index(i), site.files[i], site.names[site.labels[i]]) for i in order]
    site.packs.append(Pack(key="layers", epochs=epochs, maps=np.zeros((0, 1, 1, 1), np.uint8), cells=cells))
    return Layers(epochs, infos, images, packs, files)


# -- compare -----------------------------------------------------------------------------------


def _compare(site: Site) -> dict[str, Any]:
    """Both models' true-class maps for the same randomly chosen images, at each one's final epoch."""
    a, b = site.models[0], site.models[1]
    have_box = [i for i in range(site.num_val) if site.boxes[i] is not None]
    pool = np.asarray(have_box if have_box else range(site.num_val))
    chosen = picks.choose(pool, COMPARE_IMAGES, picks.rng(site.seed, "compare"))
    rows = []
    for model, key in ((a, "compare-a"), (b, "compare-b")):
        assert model.maps is not None
        site.packs.append(Pack(key=key, epochs=[model.epoch], maps=model.maps[chosen][:, None], cells=chosen,
                               sprite_key=None if key == "compare-a" else "compare-a"))
    peaks = {}
    for model in (a, b):
        assert model.maps is not None
        raw = model.maps[chosen].astype(np.float32)
        peaks[model.label] = map_peaks(raw, site.image_size) if len(chosen) else np.zeros((0, 2), int)
    for j, i in enumerate(chosen):
        truth = site.names[site.labels[i]]
        tiles = []
        for model, key in ((a, "compare-a"), (b, "compare-b")):
            assert model.pred is not None and model.prob is not None
            k = int(model.pred[i])
            p = round(float(model.prob[i]), 4)
            verdict = "right" if k == site.labels[i] else "wrong"
            peak = tuple(int(v) for v in peaks[model.label][j])
            tiles.append(Tile(key, j, j, 0, label=model.label, name=_name(site.names, k), prob=p, verdict=verdict,
                              box=site.boxes[i], peak=peak,  # type: ignore[arg-type]
                              alt=f"{site.files[i]}, true class {truth}: {model.label}'s map of it at epoch "
                                  f"{model.epoch}, peak at {peak}; predicted {_name(site.names, k)} "
                                  f"({100 * p:.1f}%), {verdict}"))
        rows.append((i, truth, tiles))
    analysis = site.analysis or {}
    return {"rows": rows, "a": a, "b": b,
            "localisation": [m for m in analysis.get("models", []) if isinstance(m, dict)]
            if len(analysis.get("models", [])) > 1 else []}


# -- figures for papers -----------------------------------------------------------------------


FIGURE_TITLES = {
    "training": ("Training curves", "Figure 2"),
    "table1": ("Top-1 and top-5 accuracy per model and setting", "Table 1"),
    "class-learning": ("Top-1 accuracy of each class per epoch", ""),
    "timelines": ("Maps of chosen images through the epochs", "Figures 3-5"),
    "gallery-right": ("Random right predictions with their top-5 maps", "Figure 6"),
    "gallery-wrong": ("Random wrong predictions with their top-5 maps", "Figure 7"),
    "same-class-pairs": ("Two images of one class, both predicted right, and their maps", "Figure 8"),
    "confidence": ("Top-1 probability of right and wrong predictions", ""),
    "reliability": ("Reliability diagram", ""),
    "accuracy-by-setting": ("Top-1 accuracy per perturbation setting and epoch", ""),
    "compare-maps": ("This model's maps beside the compared model's", ""),
    "layers": ("Mean over channels of every layer, for chosen images", ""),
}
PAPER_FIGURES = {"gray": "Figure 9", "blur3": "Figure 10", "blur5": "Figure 10", "bgr": "Figure 11",
                 "brg": "Figure 11", "sp0.0005": "Figure 12", "sp0.005": "Figure 12"}


def _figure_entries(site: Site) -> list[FigureEntry]:
    """Every figure the build writes, with its files and citation line, in the order shown."""
    wanted: list[tuple[str, str, str, tuple[str, ...]]] = []  # (name, title, paper, extensions)

    def add(name: str, exts: tuple[str, ...] = ("png", "svg", "json"), title: str = "", paper: str = "") -> None:
        t, p = FIGURE_TITLES.get(name, ("", ""))
        wanted.append((name, title or t, paper or p, exts))

    if site.metrics:
        add("training", ("png", "svg", "csv"))
    add("table1", ("csv", "tex"))
    add("class-learning", ("png", "svg", "csv"))
    if site.timeline_images and any(c.timelines for c in site.classes):
        add("timelines")
    maps = "top-5 maps" if site.gallery.get("has_top5") else "top-1 maps"
    if site.gallery.get("right"):
        add("gallery-right", title=f"Random right predictions with their {maps}")
    if site.gallery.get("wrong"):
        add("gallery-wrong", title=f"Random wrong predictions with their {maps}")
    if site.gallery.get("pairs"):
        add("same-class-pairs")
    add("confidence", ("png", "svg", "csv"))
    if site.errors.get("reliability"):
        add("reliability", ("png", "svg", "csv"))
    if site.perturbed:
        add("accuracy-by-setting", ("png", "svg", "csv"))
    for s in site.perturbed:
        if s.rows:
            add(s.figure, title=f"Original and {s.name} images with their maps", paper=PAPER_FIGURES.get(s.name, ""))
    if site.compare is not None:
        add("compare-maps")
    if site.layers is not None:
        add("layers")
    out = []
    for name, title, paper, exts in wanted:
        files = {ext: f"figures/{name}.{ext}" for ext in exts}
        main = files.get("png") or files.get("csv") or next(iter(files.values()))
        where = f"{site.base_url}{main}" if site.base_url else main
        model = site.models[0].label if site.models else site.run_name
        citation = (f"{title}. edvis {edvis.__version__}, run \u201c{site.run_name}\u201d ({model}), epochs "
                    f"{site.epochs[0]}\u2013{site.epochs[-1]}, dataset {site.fingerprint[:12]}. {where}")
        alt = f"{title}{f' (as the paper’s {paper})' if paper else ''}, from run {site.run_name}."
        out.append(FigureEntry(name, title, alt, files, paper, citation))
    return out


# -- small helpers -----------------------------------------------------------------------------


def _name(names: list[str], k: int) -> str:
    return names[k] if 0 <= k < len(names) else f"class {k}"


def normalise_maps(maps: np.ndarray) -> np.ndarray:
    """Scale each map by its own maximum to 0..255 uint8 (map / max(map)); all-zero stays zero.

    ``maps`` has shape (N, S, S). Negative and non-finite values (which a ReLU output never
    holds) are treated as zero.
    """
    m = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    m = np.maximum(m, 0.0)
    peak = m.max(axis=(1, 2), keepdims=True)
    scaled = np.divide(m, peak, out=np.zeros_like(m), where=peak > 0)
    return np.rint(scaled * 255.0).astype(np.uint8)


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


def _pts(x: Any) -> str:
    """A difference of fractions in percentage points, signed; "—" when missing."""
    if isinstance(x, (int, float)) and math.isfinite(x):
        return f"{round(100 * x, 2) + 0.0:+.2f} pts"  # + 0.0: no "-0.00"
    return "—"


def _num(x: Any, fmt: str) -> str:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        text = format(x, fmt)
        return text[1:] if re.fullmatch(r"-0\.?0*", text) else text  # no "-0.00"
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
    lut = plots.viridis_lut()
    images = _Images(site)
    legend = _legend_gradient(lut)
    common = {"site": site, "legend": legend, "tile_px": TILE_PX, "small_px": SMALL_PX,
              "version": edvis.__version__, "fmt": _fmt,
              # `make docs` builds the documentation into OUT/docs/; link it only when it is there.
              "docs": (out_dir / "docs" / "index.html").is_file()}

    def page(template: str, rel: str, **extra: Any) -> None:
        path = _inside(out_dir, rel)
        with _building(path):
            root = "../" * rel.count("/")
            _write(path, env.get_template(template).render(root=root, here=rel, **common, **extra))

    _copy_static(out_dir)
    path = _inside(out_dir, "data/common.js")
    with _building(path):
        _write(path, _js_assign("names", site.names) + _js_assign("lut", lut.reshape(-1).tolist()))

    log.info(f"site: writing {len(site.classes)} class page(s)")
    for cls in site.classes:
        if cls.pack is not None:
            _write_pack(site, cls.pack, out_dir, images)
        page("class.html", cls.page, cls=cls)
    for pack in site.packs:
        _write_pack(site, pack, out_dir, images)
    if site.layers is not None:
        for epoch, data in site.layers.packs.items():
            path = _inside(out_dir, site.layers.pack_files[epoch])
            with _building(path):
                _write(path, _js_assign(f"layers-{epoch:03d}", data))

    log.info(f"site: drawing {len(site.figures)} figure(s)")
    _write_figures(site, out_dir, images)

    page("index.html", "index.html")
    page("classes.html", "classes.html")
    page("galleries.html", "galleries.html")
    page("errors.html", "errors.html")
    page("perturbations.html", "perturbations.html")
    for s in site.perturbed:
        page("perturbation.html", s.page, setting=s)
    if site.layers is not None:
        page("layers.html", "layers.html", layers=site.layers, layer_channels=LAYER_CHANNELS)
    if site.compare is not None:
        page("compare.html", "compare.html", compare=site.compare)
    page("figures.html", "figures.html")
    return _inside(out_dir, "index.html")


def _fmt(x: Any, kind: str = "pct") -> str:
    """Formatting for templates: ``pct`` (fraction as %), ``pts`` (difference), ``num`` (4 digits), ``int``."""
    if kind == "pct":
        return _pct(x)
    if kind == "pts":
        return _pts(x)
    if kind == "int":
        return _num(x, "d") if isinstance(x, int) else "—"
    return _num(x, ".4f" if kind == "num" else kind)


class _Images:
    """Validation images, decoded on demand (and kept, except for class sprites)."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.cache: dict[int, np.ndarray] = {}

    def load(self, i: int, keep: bool = True) -> np.ndarray:
        if i in self.cache:
            return self.cache[i]
        from edvis.data import load_image  # lazily: only the sprites need the image decoder

        image = load_image(Path(self.site.dataset_root) / self.site.files[i], size=self.site.image_size)
        if keep:
            self.cache[i] = image
        return image


def _environment() -> jinja2.Environment:
    """The one Jinja2 environment: templates from TEMPLATES_DIR, autoescaped, strict."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        extensions=["jinja2.ext.do"],
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


def _sprite_pixels(site: Site, pack: Pack, images: _Images) -> np.ndarray:
    """(K, H, W, 3) uint8: the pack's images; a perturbation pack's odd cells perturbed."""
    keep = not pack.key[:1].isdigit()  # class sprites are read once; other pages share images
    pixels = np.stack([images.load(i, keep=keep) for i in pack.cells])
    name = pack.extra.get("perturbation")
    if name and name in PERTURBATIONS:  # an unknown setting (from another edvis) keeps the originals
        seed = next(s.seed for s in site.settings if s.name == name)
        keys = np.asarray([seed * site.num_val + i for i in pack.cells[1::2]], dtype=np.int64)
        pixels[1::2] = apply(name, pixels[1::2], keys)  # as rendered: key seed * N + i
    return pixels


def _write_pack(site: Site, pack: Pack, out_dir: Path, images: _Images) -> None:
    """``data/<key>.png`` (the sprite sheet) and ``data/<key>.js`` (the maps), for one data object."""
    columns = SPRITE_COLUMNS
    if pack.has_sprite:
        path = _inside(out_dir, pack.sprite)
        with _building(path):
            pixels = _sprite_pixels(site, pack, images)
            _write(path, _sheet_png(pixels, columns))
    path = _inside(out_dir, pack.js)
    data: dict[str, Any] = {
        "epochs": pack.epochs,
        "map_size": int(pack.maps.shape[-1]),
        "image_size": site.image_size,
        "columns": columns,
        "alpha": MAP_ALPHA,
        "sprite": pack.sprite_id,
        "shape": list(pack.maps.shape),
        "maps": base64.b64encode(np.ascontiguousarray(pack.maps).tobytes(order="C")).decode("ascii"),
        **pack.extra,
    }
    if pack.pred is not None and pack.prob is not None:
        data["pred"] = pack.pred.tolist()
        data["prob"] = [[round(float(p), 4) for p in row] for row in pack.prob]  # as Tile.prob
    if pack.truth is not None:
        data["truth"] = pack.truth
    if pack.files is not None:
        data["files"] = pack.files
    with _building(path):
        _write(path, _js_assign(pack.key, data))


def _sheet_png(pixels: np.ndarray, columns: int) -> bytes:
    """Images (K, H, W, 3) in a grid of ``columns`` columns, as PNG bytes."""
    n, h, w = pixels.shape[:3]
    cols = max(1, min(n, columns))
    rows = max(1, math.ceil(n / cols))
    sheet = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = pixels[i]
    png = io.BytesIO()
    Image.fromarray(sheet).save(png, format="PNG", compress_level=3)  # optimize=True: 5x the time, 1% smaller
    return png.getvalue()


def _write_figures(site: Site, out_dir: Path, images: _Images) -> None:
    """Every figure of :func:`_figure_entries`, under ``out_dir/figures``."""
    for entry in site.figures:
        stem = _inside(out_dir, f"figures/{entry.name}")
        with _building(stem.with_suffix("." + next(iter(entry.files)))):
            _draw_figure(site, entry, stem, images)


def _map_data(m: np.ndarray) -> list[list[float]]:
    """A uint8 map as rows of fractions of its maximum (3 decimals), for a figure's JSON."""
    return [[round(v / 255, 3) for v in row] for row in m.tolist()]


def _draw_figure(site: Site, entry: FigureEntry, stem: Path, images: _Images) -> None:
    """Write one figure's files (see :func:`_figure_entries` for the names)."""
    name = entry.name
    if name.startswith("perturbation-"):
        setting = next(x for x in site.perturbed if x.figure == name)
        _fig_perturbation(site, entry, stem, images, setting)
        return
    drawers: dict[str, Callable[[Site, FigureEntry, Path, _Images], None]] = {
        "training": _fig_training,
        "table1": _fig_table1,
        "class-learning": _fig_class_learning,
        "timelines": _fig_timelines,
        "gallery-right": _fig_gallery,
        "gallery-wrong": _fig_gallery,
        "same-class-pairs": _fig_pairs,
        "confidence": _fig_confidence,
        "reliability": _fig_reliability,
        "accuracy-by-setting": _fig_accuracy,
        "compare-maps": _fig_compare,
        "layers": _fig_layers,
    }
    if name not in drawers:  # pragma: no cover - every entry has a drawer
        raise SiteError(f"no drawing for figure {name}")
    drawers[name](site, entry, stem, images)


def _fig_training(site: Site, entry: FigureEntry, stem: Path, images: _Images) -> None:
    plots.training_curves(site.metrics, stem)


def _fig_confidence(site: Site, entry: FigureEntry, stem: Path, images: _Images) -> None:
    right, wrong = site.errors["hist"]
    plots.confidence_histogram(right, wrong, stem, auroc=site.errors.get("auroc"))


def _fig_reliability(site: Site, entry: FigureEntry, stem: Path, images: _Images) -> None:
    rel = site.errors["reliability"]
    plots.reliability_diagram(rel["bins"], stem, ece=rel.get("ece"))


def _fig_accuracy(site: Site, entry: FigureEntry, stem: Path, images: _Images) -> None:
    plots.accuracy_by_setting({s.name: (s.epochs, s.top1, s.top5) for s in site.settings}, stem)


def _fig_table1(site: Site, entry: FigureEntry, stem: Path, images: _Images) -> None:
    header = ["setting"] + [f"{m.label} {k}" for m in site.models for k in ("top1", "top5")]
    rows = [[row.setting] + [None if v is None else round(v, 4) for pair in row.cells for v in pair]
            for row in site.table]
    plots.write_csv(stem.with_suffix(".csv"), header, rows)
    _write(stem.with_suffix(".tex"), _latex_table(site))


def _fig_class_learning(site: Site, entry: FigureEntry, stem: Path, images: _Images) -> None:
    top1 = np.array([[a.top1 if a.top1 is not None else np.nan for a in c.accuracy] for c in site.classes])
    plots.class_heatmap([c.name for c in site.classes], site.epochs, top1.reshape(len(site.classes), -1), stem)


def _fig_timelines(site: Site, entry: FigureEntry, stem: Path, images: _Images) -> None:
    """Figures 3-5: three images of three classes, their true-class map at up to 16 epochs."""
    r = site.renders
    assert r is not None
    with_rows = [c.index for c in site.classes if c.timelines]
    shown = picks.choose(with_rows, 3, picks.rng(site.seed, "timelines-figure"))
    rows, data = [], []
    for c in shown:
        cls = site.classes[c]
        t = cls.timelines[0]
        i = int(cls.members[t.image])
        img = images.load(i)
        row = [plots.Cell(image=img, top=_short(cls.name), bottom=_short(t.file.rsplit("/", 1)[-1]))]
        for tile in t.tiles:
            row.append(plots.Cell(image=img, map=r.maps[tile.epoch_index, i], top=tile.label,
                                    bottom=f"{tile.mark} {_short(tile.name, 14)} {tile.prob_text}"))
        rows.append(row)
        data.append({"file": t.file, "class": cls.name, "epochs": [tile.label for tile in t.tiles],
                     "pred": [tile.name for tile in t.tiles], "prob": [tile.prob for tile in t.tiles],
                     "maps": [_map_data(r.maps[tile.epoch_index, i]) for tile in t.tiles]})
    plots.map_mosaic(rows, stem, entry.title, {"title": entry.title, "images": data})


def _fig_gallery(site: Site, entry: FigureEntry, stem: Path, images: _Images) -> None:
    """Figures 6-7: random right (or wrong) predictions, each with its top-5 maps."""
    r = site.renders
    assert r is not None
    names, labels = site.names, site.labels
    ids = site.gallery["right_ids" if entry.name == "gallery-right" else "wrong_ids"][:FIGURE_ROWS]
    rows, data = [], []
    for i in ids:
        img = images.load(i)
        row = [plots.Cell(image=img, top=f"true: {_short(names[labels[i]])}")]
        tops = []
        for rank in range(site.gallery["k"]):
            c = int(r.top5[i, rank])
            m = r.map_top5[i, rank] if r.map_top5 is not None else r.map_pred[i]
            p = float(r.top5_prob[i, rank])
            row.append(plots.Cell(image=img, map=m, top=f"top-{rank + 1}",
                                    bottom=f"{_short(_name(names, c), 14)} {100 * p:.1f}%"))
            tops.append({"class": _name(names, c), "prob": round(p, 4), "map": _map_data(m)})
        rows.append(row)
        data.append({"file": site.files[i], "class": names[labels[i]], "top": tops})
    plots.map_mosaic(rows, stem, f"{entry.title} (epoch {site.final_epoch})",
                       {"title": entry.title, "epoch": site.final_epoch, "images": data})


def _fig_pairs(site: Site, entry: FigureEntry, stem: Path, images: _Images) -> None:
    """Figure 8: two right predictions of one class, side by side with their maps."""
    r = site.renders
    assert r is not None
    names, labels = site.names, site.labels
    rows, data = [], []
    for i, j in site.gallery["pair_ids"][:FIGURE_ROWS]:
        row, pair = [], []
        for x in (i, j):
            row += [plots.Cell(image=images.load(x), top=_short(site.files[x].rsplit("/", 1)[-1])),
                    plots.Cell(map=r.maps[-1, x], top=_short(names[labels[x]]), bottom=f"{100 * r.prob[-1, x]:.1f}%")]
            pair.append({"file": site.files[x], "prob": round(float(r.prob[-1, x]), 4), "map": _map_data(r.maps[-1, x])})
        rows.append(row)
        data.append({"class": names[labels[i]], "images": pair,
                     "map_correlation": picks.pearson(r.maps[-1, i], r.maps[-1, j])})
    plots.map_mosaic(rows, stem, f"{entry.title} (epoch {site.final_epoch})",
                       {"title": entry.title, "epoch": site.final_epoch, "pairs": data})


def _fig_perturbation(site: Site, entry: FigureEntry, stem: Path, images: _Images, s: Setting) -> None:
    """Figures 9-12: original and perturbed images, each with its true-class map and prediction."""
    assert s.pack is not None
    names, labels = site.names, site.labels
    pixels = _sprite_pixels(site, s.pack, images)
    last = len(s.epochs) - 1
    rows, data = [], []
    for j, i in enumerate(s.rows[:FIGURE_ROWS]):
        row, sides = [], []
        for side, seq in (("original", 2 * j), (s.name, 2 * j + 1)):
            k, p = int(s.pack.pred[seq, last]), float(s.pack.prob[seq, last])
            mark = "✓" if k == labels[i] else "✗"
            row += [plots.Cell(image=pixels[seq], top=_short(side)),
                    plots.Cell(image=pixels[seq], map=s.pack.maps[seq, last], top=f"{_short(names[labels[i]], 14)} map",
                                 bottom=f"{mark} {_short(_name(names, k), 14)} {100 * p:.1f}%")]
            sides.append({"setting": side, "pred": _name(names, k), "prob": round(p, 4),
                          "map": _map_data(s.pack.maps[seq, last])})
        rows.append(row)
        data.append({"file": site.files[i], "class": names[labels[i]], "sides": sides})
    plots.map_mosaic(rows, stem, f"{entry.title} (epoch {s.final_epoch})",
                       {"title": entry.title, "epoch": s.final_epoch, "setting": s.name, "images": data})


def _fig_compare(site: Site, entry: FigureEntry, stem: Path, images: _Images) -> None:
    """Both models' true-class maps of the same images, the box drawn."""
    cmp = site.compare
    assert cmp is not None
    rows, data = [], []
    for i, truth, tiles in cmp["rows"][:FIGURE_ROWS]:
        img = images.load(i)
        row = [plots.Cell(image=img, top=_short(truth), box=site.boxes[i])]
        record: dict[str, Any] = {"file": site.files[i], "class": truth, "box": site.boxes[i], "models": []}
        for model, tile in zip((cmp["a"], cmp["b"]), tiles):
            m = model.maps[i]
            row.append(plots.Cell(image=img, map=m, box=site.boxes[i], top=_short(model.label, 18),
                                    bottom=f"{tile.mark} {_short(tile.name, 14)} {tile.prob_text}"))
            record["models"].append({"model": model.label, "epoch": model.epoch, "pred": tile.name,
                                     "prob": tile.prob, "peak": list(tile.peak or ()), "map": _map_data(m)})
        rows.append(row)
        data.append(record)
    plots.map_mosaic(rows, stem, entry.title, {"title": entry.title, "images": data})


def _fig_layers(site: Site, entry: FigureEntry, stem: Path, images: _Images) -> None:
    """Each layer's mean over channels for the first chosen images, at the last epoch with layers."""
    lay = site.layers
    assert lay is not None
    names, labels = site.names, site.labels
    epoch = lay.epochs[-1]
    rows, data = [], []
    for image in lay.packs[epoch]["images"][:4]:
        i = image["index"]
        row = [plots.Cell(image=images.load(i), top=_short(names[labels[i]]))]
        record: dict[str, Any] = {"file": site.files[i], "class": names[labels[i]], "layers": []}
        for info, layer in zip(lay.layers, image["layers"]):
            grids = np.frombuffer(base64.b64decode(layer["data"]), np.uint8).reshape(-1, layer["h"], layer["w"])
            row.append(plots.Cell(map=grids[-1], top=_short(info.name, 14), bottom=f"{layer['h']}×{layer['w']}"))
            record["layers"].append({"layer": info.name, "mean_over_channels": _map_data(grids[-1])})
        rows.append(row)
        data.append(record)
    plots.map_mosaic(rows, stem, f"{entry.title} (epoch {epoch})", {"title": entry.title, "epoch": epoch, "images": data})


def _short(text: str, n: int = 20) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _latex_table(site: Site) -> str:
    """Table 1 as a LaTeX tabular (booktabs), text escaped."""

    def tex(s: str) -> str:
        out = []
        for ch in s:
            out.append({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}.get(ch, ch))
        return "".join(out)

    cols = "l" + "rr" * len(site.models)
    head = " & ".join(["Setting"] + [rf"\multicolumn{{2}}{{c}}{{{tex(m.label)}}}" for m in site.models])
    sub = " & ".join([""] + ["Top-1", "Top-5"] * len(site.models))
    lines = [rf"\begin{{tabular}}{{{cols}}}", r"\toprule", head + r" \\", sub + r" \\", r"\midrule"]
    for row in site.table:
        cells = [tex(row.setting)] + [tex(t) for pair in row.texts for t in pair]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def _js_assign(key: str, value: Any) -> str:
    """A line of JavaScript setting ``EDVIS[key]``; safe to load even if strings hold ``</script>``."""
    return (
        "window.EDVIS = window.EDVIS || {};\n"
        f"window.EDVIS[{js_json(key)}] = {js_json(value)};\n"
    )


def js_json(value: Any) -> str:
    """JSON for embedding in JavaScript or HTML: ASCII only, with ``<``, ``>``, ``&`` escaped."""
    text = json.dumps(value, ensure_ascii=True, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _legend_gradient(lut: np.ndarray) -> str:
    """A CSS linear-gradient through evenly spaced entries of the lookup table."""
    stops = np.linspace(0, len(lut) - 1, LEGEND_STOPS).round().astype(int)
    colours = ", ".join("#{:02x}{:02x}{:02x}".format(*lut[i]) for i in stops)
    return f"linear-gradient(to right, {colours})"
