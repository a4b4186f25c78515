"""The static site, built from a small fake run whose every number is known by construction.

The run has 6 classes (3 with validation images, 4 each), 3 rendered epochs, one perturbed
setting (bgr), an analysis.json, a layers file, and a second run (a CAM-like model with 2x2
maps) to compare with. Expected values below are worked out by hand from the rules that made
the fake data, not read back from the site's code.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import markupsafe
import numpy as np
import pytest
from PIL import Image

from edvis.analyze import analyze_run
from edvis.data import open_dataset
from edvis.errors import EdvisError
from edvis.run import RenderStore, Run, Unit, digest, summarise
from edvis.site import (
    SiteError,
    build_site,
    choose_timeline,
    js_json,
    normalise_maps,
    read_sources,
    setting_slug,
    slugify,
    write_site,
)
from edvis.site import plots as figures

NASTY = '<script>alert("x")</script> Ünïcode / ..'
NAMES = ["goldfish", NASTY, "tabby cat", "unused one", "unused two", "unused three"]
WNIDS = ["n001", "n002", "n003", "n004", "n005", "n006"]
SHOWN = 3  # classes 0..2 have validation images, the others none
PER_CLASS = 4
N_VAL = SHOWN * PER_CLASS
EPOCHS = [1, 2, 3]
VAL_TOP1 = {1: 0.1234, 2: 0.25, 3: 1 / 3}
ZERO_MAP = (5, 2)  # (validation index, epoch) whose map is all zero
NO_BOX = 4  # validation index without a box
FIGURES = ["training", "table1", "class-learning", "timelines", "gallery-right", "gallery-wrong",
           "same-class-pairs", "confidence", "reliability", "accuracy-by-setting", "perturbation-bgr",
           "compare-maps", "layers"]


# -- the fake run ---------------------------------------------------------------------------


def colour(n: int) -> tuple[int, int, int]:
    """A distinct solid colour for validation image n."""
    return (40 * n % 256, 255 - 20 * n, (90 + 60 * n) % 256)


def hot_pixel(n: int, epoch: int, offset: int = 0) -> tuple[int, int]:
    """Where the map of class (label + offset) of validation image n peaks at an epoch."""
    return (n + epoch + offset) % 8, (3 * n + 2 * epoch + offset) % 8


def label_of(n: int) -> int:
    return n % SHOWN  # classes interleave in the validation list


def predicted(n: int, epoch: int) -> int:
    """Image j of a class is right from epoch j + 1 on, so class accuracy is epoch/4."""
    c, j = label_of(n), n // SHOWN
    return c if j < epoch else (c + 1) % SHOWN


def predicted_bgr(n: int, epoch: int) -> int:
    """Under bgr, even images keep their clean prediction, odd ones go to a third class."""
    return predicted(n, epoch) if n % 2 == 0 else (label_of(n) + 2) % SHOWN


def fake_probs(epoch: int, pred=predicted) -> np.ndarray:
    probs = np.full((N_VAL, len(NAMES)), 0.1)
    for n in range(N_VAL):
        probs[n, pred(n, epoch)] = 0.5
        if pred(n, epoch) != label_of(n) and n % 2 == 0:
            probs[n, label_of(n)] = 0.0  # out of the top 5 too
    return probs / probs.sum(axis=1, keepdims=True)


def box(n: int) -> list[int] | None:
    return None if n == NO_BOX else [n, 10, n + 30, 50]


def all_maps(epoch: int) -> np.ndarray:
    """(N, C, 8, 8): class k's map of image n peaks (1.5 * epoch) at hot_pixel(n, epoch, k - label)."""
    maps = np.zeros((N_VAL, len(NAMES), 8, 8), dtype=np.float32)
    for n in range(N_VAL):
        for k in range(len(NAMES)):
            off = (k - label_of(n)) % len(NAMES)
            if off == 0 and (n, epoch) == ZERO_MAP:
                continue
            maps[(n, k, *hot_pixel(n, epoch, off))] = 1.5 * epoch
    return maps


def write_unit(store: RenderStore, name: str, epoch: int, probs: np.ndarray, maps: np.ndarray, top5_maps: bool) -> None:
    """The renderer's own unit for these probabilities (its logits are their logarithms)."""
    labels = np.array([label_of(n) for n in range(len(probs))])
    with np.errstate(divide="ignore"):  # a probability of 0 is a logit of -inf
        logits = np.log(probs)
    store.write(Unit(name, epoch), summarise(logits, maps, labels, top5_maps), meta={"seed": 0})


def manifest(data: Path, files: list[str], map_size: int = 8) -> dict:
    return {
        "dataset": {"root": str(data.resolve()), "layout": "imagefolder", "fingerprint": open_dataset(data).fingerprint(),
                    "wnids": WNIDS, "names": NAMES},
        "val": {"files": files, "labels": [label_of(n) for n in range(N_VAL)], "boxes": [box(n) for n in range(N_VAL)]},
        "image_size": 64,
        "map_size": map_size,
    }


ANALYSIS_CLASSES = [
    {"index": c, "wnid": WNIDS[c], "name": NAMES[c], "epoch_50": c + 1, "epoch_90": c + 2,
     "pattern_formed": 3 - c, "learned_rank": c + 1, "similarity_by_epoch": [0.125 * (c + 1), 0.5, 1.0]}
    for c in range(len(NAMES))
]
RELIABILITY = [{"bin": b, "lower": round(b / 15, 4), "upper": round((b + 1) / 15, 4), "count": 12 if b == 7 else 0,
                "accuracy": 0.75 if b == 7 else None, "confidence": 0.5 if b == 7 else None} for b in range(15)]


PRESENTED = ("mean_confidence", "ece", "auroc", "sharpness", "spearman_right", "spearman_wrong", "map_corr",
             "p_true_change", "flip_rate", "top1_drop")


def mark_analysis(path: Path) -> None:
    """Overwrite, in the analysis.json that ``analyze_run`` wrote, the figures the site only passes
    on (calibration, map correlation, learning epochs, map similarity, localisation) with the
    distinct values of :func:`analysis_json`, so the pages can be checked to show exactly them.
    Accuracy, flips, confusions, the histogram and the compared run's settings stay analyze's."""
    data, marks = json.loads(path.read_text(encoding="utf-8")), analysis_json(EPOCHS)
    for row in data["table"]:
        mark = next(m for m in marks["table"] if m["setting"] == row["setting"])
        row.update({k: mark.get(k) for k in PRESENTED if k in row})
    for entry in data["classes"]:
        entry.update({k: v for k, v in ANALYSIS_CLASSES[entry["index"]].items() if k not in ("index", "wnid", "name")})
        for row in entry["settings"]:
            row["map_corr"] = 0.5
    for key in ("reliability", "corruption", "definitions"):
        data[key] = marks[key]
    for model, mark in zip(data["models"], marks["models"]):
        model.update({k: v for k, v in mark.items() if k not in ("model", "epoch", "top1", "top5")})
    write_analysis(path, data)


def write_analysis(path: Path, data: dict) -> None:
    """analysis.json as ``analyze_run`` writes it: with its digest recorded beside it."""
    digest.write_verified(path, json.dumps(data).encode("utf-8"))


def analysis_json(epochs: list[int]) -> dict:
    return {
        "schema": 2, "digest": "x", "definitions": {"pattern_threshold": 0.8}, "model": "edvis-resnet18 (paper)",
        "images": N_VAL, "classes_count": len(NAMES), "epochs": epochs, "final_epoch": epochs[-1],
        "settings": ["clean", "bgr"],
        "table": [
            {"setting": "clean", "epoch": 3, "top1": 0.75, "top5": 11 / 12, "mean_confidence": 0.5123, "ece": 0.1234,
             "auroc": 0.8765, "sharpness": 4.5, "spearman_right": -0.25, "spearman_wrong": None},
            {"setting": "bgr", "epoch": 3, "top1": 5 / 12, "top5": 11 / 12, "mean_confidence": 0.5, "ece": 0.2345,
             "auroc": 0.4321, "map_corr": 0.3456, "p_true_change": -0.0789, "flip_rate": 0.5, "top1_drop": 1 / 3},
        ],
        "classes": ANALYSIS_CLASSES,
        "reliability": [{"setting": "clean", "epoch": 3, "ece": 0.1234, "bins": RELIABILITY}],
        "corruption": {"reference": "the model's own clean error", "epoch": 3, "kinds": [], "mean_relative_ce": None},
        "models": [
            {"model": "edvis-resnet18 (paper)", "epoch": 3, "top1": 0.75, "top5": 11 / 12, "pointing": 0.6111,
             "centre_pointing": 0.2222, "energy_in_box": 0.3333, "energy_centre": 0.4444, "energy_uniform": 0.5555,
             "pointing_vs_centre_lo": 0.1234, "pointing_vs_centre_hi": 0.6544, "small_images": 1234,
             "pointing_small": 0.4321, "centre_pointing_small": 0.1111},
            {"model": "cam-resnet18", "epoch": 2, "top1": 11 / 12, "top5": 1.0, "pointing": 0.7777,
             "centre_pointing": 0.2222, "energy_in_box": 0.8888, "energy_centre": 0.4444, "energy_uniform": 0.5555},
        ],
    }


LAYER_META = {"epoch": 3, "layers": [{"key": "L0", "name": "conv1", "shape": [3, 4, 4]},
                                     {"key": "L1", "name": "maps", "shape": [6, 2, 2]}]}
LAYER_INDEX = [0, 5]


def layer_arrays() -> dict[str, np.ndarray]:
    """conv1: channel 0 all 1, channel 1 all 3, channel 2 a ramp 0..15 (mean 7.5);
    maps: channel 4 all 2, channel 1 one cell of 1 (mean 0.25), the rest 0."""
    l0 = np.zeros((2, 3, 4, 4), dtype=np.float16)
    l0[:, 0] = 1
    l0[:, 1] = 3
    l0[:, 2] = np.arange(16).reshape(4, 4)
    l1 = np.zeros((2, 6, 2, 2), dtype=np.float16)
    l1[:, 4] = 2
    l1[:, 1, 0, 1] = 1
    return {"L0": l0, "L1": l1}


def cam_pred(n: int) -> int:
    return label_of(n) if n != 0 else 1  # all right but image 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("runs")
    data = tmp / "dataset"
    files = []
    for n in range(N_VAL):
        ext = "jpg" if n == 7 else "png"
        rel = f"val/{WNIDS[label_of(n)]}/img_{n:02d}.{ext}"
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), colour(n)).save(data / rel, quality=95)
        files.append(rel)
    for wnid in WNIDS:  # an ImageFolder tree: one training image per class
        (data / "train" / wnid).mkdir(parents=True)
        Image.new("RGB", (64, 64), (1, 2, 3)).save(data / "train" / wnid / "t.png")

    run = tmp / "run"
    store = RenderStore(run / "render")
    store.init(manifest(data, files))
    for epoch in EPOCHS:
        write_unit(store, "clean", epoch, fake_probs(epoch), all_maps(epoch), top5_maps=True)
        write_unit(store, "bgr", epoch, fake_probs(epoch, predicted_bgr), all_maps(epoch)[:, ::-1], top5_maps=False)
    config = {
        "dataset": {"root": str(data), "layout": "imagefolder", "fingerprint": "not read: the manifest's is"},
        "model": {"name": "edvis-resnet18", "variant": "paper", "num_classes": len(NAMES)},
        "train": {"epochs": 5, "batch_size": 8, "optimizer": "sgd", "lr": 0.1, "seed": 0, "recipe": "author",
                  "note": "<b>not bold</b>"},
    }
    (run / "config.json").write_text(json.dumps(config), encoding="utf-8")
    Run(run).write_metrics(
        [
            {"epoch": e, "train_loss": 2.0 / e, "train_top1": 0.1 * e, "train_top5": 0.3 * e,
             "val_loss": 2.2 / e, "val_top1": VAL_TOP1[e], "val_top5": 0.2 * e, "lr": 0.1,
             "seconds": 12.5, "images_per_s": 1000.0}
            for e in EPOCHS
        ]
    )
    arrays = layer_arrays()
    store.write_layers(3, np.array(LAYER_INDEX), [(m["name"], arrays[m["key"]]) for m in LAYER_META["layers"]], meta={})

    cam = tmp / "cam"
    cam_store = RenderStore(cam / "render")
    cam_store.init(manifest(data, files, map_size=2))
    for epoch in (1, 2):
        probs = np.full((N_VAL, len(NAMES)), 0.1)
        maps = np.zeros((N_VAL, len(NAMES), 2, 2), dtype=np.float32)
        for n in range(N_VAL):
            probs[n, cam_pred(n)] = 0.5
            maps[n, label_of(n), 0, n % 2] = 1.0  # peaks at the top left (even n) or top right (odd n)
        probs /= probs.sum(axis=1, keepdims=True)
        for name in ("clean", "bgr"):
            write_unit(cam_store, name, epoch, probs, maps, top5_maps=name == "clean")
    (cam / "config.json").write_text(json.dumps({"model": {"name": "cam-resnet18"}}), encoding="utf-8")
    mark_analysis(analyze_run(run, compare=cam))  # accuracy, flips, confusions agree with the store by construction
    return {"run": run, "cam": cam, "data": data, "tmp": tmp}


@pytest.fixture(scope="module")
def site(runs: dict[str, Path]) -> Path:
    out = runs["tmp"] / "site"
    index = build_site(runs["run"], out, compare=runs["cam"])
    assert index == (out / "index.html").resolve()
    return index.parent


def copy_store_file(src: Path, dest: Path) -> None:
    """A file of a render store and whatever the store keeps beside it (``<name>.*``, e.g. its digest)."""
    for path in [src, *src.parent.glob(f"{src.name}.*")]:
        (dest.parent / path.name.replace(src.name, dest.name, 1)).write_bytes(path.read_bytes())


def quick_build(run: Path, out: Path, **kw) -> Path:
    """A build without drawing the figures (they take most of the time); for the edge cases."""
    return write_site(read_sources(run, **kw), out, draw_figures=False)


# -- reading the output -----------------------------------------------------------------------


class Page(HTMLParser):
    """Links, tables (as rows of cell text), canvases, figure captions and text of one HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.canvases: list[dict[str, str]] = []
        self.captions: list[str] = []
        self.attrs: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.attrs.append((tag, a))
        for key in ("href", "src"):
            if key in a:
                self.links.append(a[key])
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id", f"table{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "canvas":
            self.canvases.append(a)
        elif tag == "figcaption":
            self._caption = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "figcaption" and self._caption is not None:
            self.captions.append(" ".join("".join(self._caption).split()))
            self._caption = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._caption is not None:
            self._caption.append(data)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def page(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


def data_object(site: Path, key: str) -> dict:
    text = (site / "data" / f"{key}.js").read_text(encoding="ascii")
    m = re.search(rf'^window\.EDVIS\["{re.escape(key)}"\] = (.*);$', text, re.M)
    assert m, text[:200]
    return json.loads(m.group(1))


def maps_of(data: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data["maps"]), dtype=np.uint8).reshape(data["shape"])


def class_page(site: Path, c: int) -> Path:
    (path,) = (site / "classes").glob(f"{c:03d}-*.html")
    return path


def members(c: int) -> list[int]:
    return [n for n in range(N_VAL) if label_of(n) == c]


def sprite_cell(site: Path, sprite: str, cell: int, columns: int = 10) -> np.ndarray:
    with Image.open(site / sprite) as im:
        sheet = np.asarray(im.convert("RGB"))
    r, c = divmod(cell, columns)
    return sheet[64 * r:64 * r + 64, 64 * c:64 * c + 64]


# -- the run page -----------------------------------------------------------------------------


def test_index_shows_run_hashes_and_epoch_accuracy(site: Path, runs: dict[str, Path]) -> None:
    html = (site / "index.html").read_text(encoding="utf-8")
    for text in ("edvis-resnet18", "paper", "imagefolder", "dataset.root", "optimizer", "sgd", "author"):
        assert text in html
    assert hashlib.sha256((runs["run"] / "config.json").read_bytes()).hexdigest() in html
    assert hashlib.sha256((runs["run"] / "metrics.jsonl").read_bytes()).hexdigest() in html
    rows = page(site / "index.html").tables["epochs"]
    body = rows[1:]
    assert [r[0] for r in body] == ["1", "2", "3"]
    assert [r[1].rstrip(" ★") for r in body] == ["12.34%", "25.00%", "33.33%"]
    assert [r[2] for r in body] == ["20.00%", "40.00%", "60.00%"]
    assert "★" in body[2][1] and "★" not in body[0][1]  # the best epoch is marked
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html  # config values are text
    # The header of every page and the run's facts name the map resolution (8×8 maps of 64-px images).
    assert "edvis-resnet18 (paper) · 8×8 maps at 64 px · 6 classes" in html
    assert "maps 8×8 at 64 × 64 px images" in html
    assert "8×8 maps at 64 px" in (site / "compare.html").read_text(encoding="utf-8")  # on every page


def test_no_page_names_a_path_of_the_building_machine(site: Path, runs: dict[str, Path]) -> None:
    root = str(runs["data"].resolve())
    html = (site / "index.html").read_text(encoding="utf-8")
    assert f"<code>dataset</code> (imagefolder), fingerprint <code>{fingerprint(runs)[:16]}" in html  # name, layout, fingerprint
    for path in sorted(site.rglob("*")):
        if path.is_file() and path.suffix in (".html", ".js", ".json", ".csv", ".svg", ".tex"):
            assert root not in path.read_text(encoding="utf-8", errors="replace"), path


def test_table_one_per_model_and_setting(site: Path) -> None:
    rows = page(site / "index.html").tables["table-1"]
    assert rows[0] == ["Setting", "edvis-resnet18 (paper)", "cam-resnet18"]
    # this model at epoch 3: 9 of 12 right; top-5 misses image 10 only (its true class has p = 0).
    # bgr: even images keep their prediction (0, 2, 4, 6, 8 right), odd ones go wrong.
    # cam at epoch 2: all right but image 0; the true class always in the top 5.
    assert rows[2] == ["clean", "75.00%", "91.67%", "91.67%", "100.00%"]
    assert rows[3] == ["bgr", "41.67%", "91.67%", "91.67%", "100.00%"]  # cam renders bgr as clean
    with open(site / "figures" / "table1.csv", newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[1] == ["clean", "0.75", "0.9167", "0.9167", "1.0"]
    tex = (site / "figures" / "table1.tex").read_text(encoding="utf-8")
    assert r"bgr & 41.67\% & 91.67\% & 91.67\% & 100.00\% \\" in tex


def test_training_curves_are_linked(site: Path) -> None:
    links = page(site / "index.html").links
    for ext in ("png", "svg", "csv"):
        assert f"figures/training.{ext}" in links
        assert (site / "figures" / f"training.{ext}").is_file()


# -- the class index --------------------------------------------------------------------------


def test_class_index_lists_every_class_escaped(site: Path) -> None:
    html = (site / "classes.html").read_text(encoding="utf-8")
    for name, wnid in zip(NAMES, WNIDS):
        assert str(markupsafe.escape(name)) in html
        assert wnid in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Ünïcode / .." in html


def test_class_index_numbers(site: Path) -> None:
    rows = page(site / "classes.html").tables["class-index"]
    assert rows[0][:7] == ["#", "Class", "Id", "Images", "Top-1", "Top-5", "Mean top-1"]
    by_name = {r[1]: r for r in rows[1:]}
    for c, name in enumerate(NAMES):
        row = by_name[name]
        a = ANALYSIS_CLASSES[c]
        assert row[7:11] == [str(a["epoch_50"]), str(a["epoch_90"]), str(a["pattern_formed"]), str(a["learned_rank"])]
        if c >= SHOWN:
            assert row[3:7] == ["0", "—", "—", "—"]
            continue
        # 3 of 4 right at epoch 3; top-5 misses image 10 (class 1); mean of 1/4, 2/4, 3/4 = 50%
        assert row[3:7] == [str(PER_CLASS), "75.00%", "75.00%" if c == 1 else "100.00%", "50.00%"]
    # bgr at epoch 3: class 0 keeps 0 and 6 right (2/4), class 1 keeps 4 (1/4), class 2 keeps 2 and 8 (2/4)
    assert by_name["goldfish"][11] == "bgr (-25.00 pts)"
    assert by_name[NASTY][11] == "bgr (-50.00 pts)"


def test_class_index_rows_carry_sort_values(site: Path) -> None:
    p = page(site / "classes.html")
    rows = [a for tag, a in p.attrs if tag == "tr" and "data-filter" in a]
    assert [r["data-filter"] for r in rows][:2] == ["goldfish n001", NASTY.lower() + " n002"]
    heads = [a.get("data-type") for tag, a in p.attrs if tag == "th" and "data-type" in a]
    assert heads[:7] == ["num", "text", "text", "num", "num", "num", "num"]


# -- the class pages --------------------------------------------------------------------------


def test_slugs_and_setting_slugs_are_safe() -> None:
    assert slugify(NASTY) == "script-alert-x-script-unicode"
    assert slugify("Tabby Cat") == "tabby-cat"
    assert slugify("../..//") == "class"
    assert slugify("猫") == "class"
    assert slugify("a" * 39 + " b" * 10) == "a" * 39  # cut at 40, no trailing dash
    assert len(slugify("x" * 100)) == 40
    assert setting_slug("sp0.0005") == "sp0.0005"
    assert setting_slug("jpeg-3") == "jpeg-3"
    assert setting_slug("..") == "setting"
    assert setting_slug("../../etc") == "etc"
    assert setting_slug("a/b..c") == "a-b.c"


def test_every_class_page_exists(site: Path) -> None:
    expected = [
        "000-goldfish.html",
        "001-script-alert-x-script-unicode.html",
        "002-tabby-cat.html",
        "003-unused-one.html",
        "004-unused-two.html",
        "005-unused-three.html",
    ]
    assert sorted(p.name for p in (site / "classes").iterdir()) == expected
    index_links = page(site / "classes.html").links
    for name in expected:
        assert f"classes/{name}" in index_links
    assert "no validation images" in (site / "classes" / "004-unused-two.html").read_text("utf-8")


def test_class_page_accuracy_per_epoch(site: Path) -> None:
    rows = page(class_page(site, 1)).tables["accuracy-table"]
    assert rows[0] == ["Epoch", "1", "2", "3"]
    assert rows[1] == ["Top-1", "25.00%", "50.00%", "75.00%"]
    assert rows[3] == ["Map similarity to the last epoch", "0.25", "0.50", "1.00"]  # from analysis.json
    words = page(class_page(site, 1)).words
    assert "Reached 90% of its final top-1 at epoch 3 (50% at epoch 2)" in words
    assert "pattern formed at epoch 2" in words and "Learned 2nd of 6 classes" in words


def test_class_page_shows_every_image_with_final_prediction(site: Path) -> None:
    p = page(class_page(site, 2))
    grid = [c for c in p.canvases if c["width"] == "128" and "data-cell" in c]
    assert [int(c["data-cell"]) for c in grid] == list(range(PER_CLASS))
    assert {c["data-epoch-index"] for c in grid} == {"2"}
    probs = fake_probs(3)
    captions = p.captions[1:]  # after the mean map's
    for j, n in enumerate(members(2)):
        k = predicted(n, 3)
        verdict = "right" if k == 2 else "wrong"
        prob = f"{100 * probs[n].max():.1f}%"
        assert captions[j] == f"{'✓' if k == 2 else '✗'} {verdict} {NAMES[k]} {prob}", captions[j]
        assert grid[j]["aria-label"].endswith(f"predicted {NAMES[k]} ({prob}), {verdict}")
        assert f"img_{n:02d}" in grid[j]["aria-label"]
        b = box(n)
        assert grid[j].get("data-box") == (" ".join(map(str, b)) if b else None)


def test_class_page_slider_is_keyboard_and_url_ready(site: Path) -> None:
    p = page(class_page(site, 0))
    (slider,) = [a for tag, a in p.attrs if tag == "input" and a.get("id") == "epoch"]
    assert slider["type"] == "range" and slider["data-epochs"] == "1 2 3"
    assert slider["min"] == "0" and slider["max"] == "2" and slider["value"] == "2"
    follow = [c for c in p.canvases if "follow" in c.get("class", "")]
    assert len(follow) == 1  # the mean map; grid tiles follow through their figure
    assert len([a for tag, a in p.attrs if tag == "figure" and "follow" in a.get("class", "")]) == PER_CLASS + 1


def section(path: Path, name: str) -> Page:
    """One <section id=name> of a page."""
    html = path.read_text(encoding="utf-8")
    return Page(html.split(f'<section id="{name}">')[1].split("</section>")[0])


def test_timelines_follow_chosen_images_through_epochs(site: Path) -> None:
    p = section(class_page(site, 0), "timelines")
    chosen = choose_timeline(PER_CLASS, 3, 0, stream=0)
    assert chosen == sorted(set(chosen)) and len(chosen) == 3
    assert [(int(c["data-cell"]), int(c["data-epoch-index"])) for c in p.canvases] == [
        (i, e) for i in chosen for e in range(len(EPOCHS))
    ]
    assert {c["width"] for c in p.canvases} == {"96"}
    for (i, e), caption in zip([(i, e) for i in chosen for e in range(3)], p.captions):
        n = members(0)[i]
        k = predicted(n, EPOCHS[e])
        verdict = "✓ right" if k == 0 else "✗ wrong"
        assert caption.startswith(f"epoch {EPOCHS[e]} {verdict} {NAMES[k]} "), caption


def test_timeline_choice_differs_between_classes_and_seeds() -> None:
    draws = {tuple(choose_timeline(50, 3, seed, stream=c)) for seed in (0, 1) for c in range(5)}
    assert len(draws) > 5  # not one choice for every class


def test_class_data_holds_maps_mean_map_and_predictions(site: Path) -> None:
    for c in range(SHOWN):
        data = data_object(site, f"{c:03d}")
        assert data["epochs"] == EPOCHS and data["index"] == c and data["truth"] == [c] * PER_CLASS
        maps = maps_of(data)
        assert maps.shape == (PER_CLASS + 1, len(EPOCHS), 8, 8)  # the images, then the mean map
        for j, n in enumerate(members(c)):
            assert data["files"][j].endswith(f"img_{n:02d}.{'jpg' if n == 7 else 'png'}")
            for e, epoch in enumerate(EPOCHS):
                expected = np.zeros((8, 8), dtype=np.uint8)
                if (n, epoch) != ZERO_MAP:
                    expected[hot_pixel(n, epoch)] = 255
                np.testing.assert_array_equal(maps[j, e], expected, err_msg=f"image {n} epoch {epoch}")
                assert data["pred"][j][e] == predicted(n, epoch)
                assert data["prob"][j][e] == pytest.approx(fake_probs(epoch)[n].max(), abs=1e-4)
        for e, epoch in enumerate(EPOCHS):
            # right at epoch e: images j < epoch, whose maps peak at distinct cells: the mean
            # is 255/k at each, rescaled to 255 (the zero map of image 5 at epoch 2 adds nothing)
            right = [n for j, n in enumerate(members(c)) if j < epoch]
            assert data["mean_count"][e] == len(right)
            expected = np.zeros((8, 8), dtype=np.uint8)
            for n in right:
                if (n, epoch) != ZERO_MAP:
                    expected[hot_pixel(n, epoch)] = 255
            np.testing.assert_array_equal(maps[PER_CLASS, e], expected, err_msg=f"mean, class {c} epoch {epoch}")


def test_class_page_confusions(site: Path) -> None:
    p = page(class_page(site, 1))
    words = p.words
    # at epoch 3 image 10 (class 1, j = 3) is predicted as class 2; image 9 (class 0) as class 1
    assert "tabby cat : 1 image" in words
    assert "goldfish (1)" in words
    assert "../classes/002-tabby-cat.html" in p.links and "../classes/000-goldfish.html" in p.links
    (example,) = section(class_page(site, 1), "confusions").canvases
    assert example["aria-label"].endswith("predicted tabby cat (55.6%), wrong")  # 0.5 / 0.9
    # class 0 under bgr: images 0 and 2 stay right, 1 and 3 flip (top-1 50%, 75% clean, flip rate 2 of 4)
    assert page(class_page(site, 0)).tables["class-settings"][2] == ["bgr", "50.00%", "-25.00 pts", "50.00%", "0.500"]


def test_common_data_holds_names_and_viridis(site: Path) -> None:
    text = (site / "data" / "common.js").read_text(encoding="ascii")
    values = dict(re.findall(r'^window\.EDVIS\["(\w+)"\] = (.*);$', text, re.M))
    assert json.loads(values["names"]) == NAMES
    lut = np.array(json.loads(values["lut"]), dtype=np.uint8).reshape(256, 3)
    np.testing.assert_array_equal(lut, figures.viridis_lut())
    assert tuple(lut[0]) == (68, 1, 84) and tuple(lut[255]) == (253, 231, 37)


def test_sprite_packs_class_images_in_order(site: Path) -> None:
    with Image.open(site / "data" / "001.png") as im:
        sheet = np.asarray(im.convert("RGB"))
    assert sheet.shape == (64, 64 * PER_CLASS, 3)
    for j, n in enumerate(members(1)):
        centre = sheet[32, 64 * j + 32].astype(int)
        assert np.abs(centre - colour(n)).max() <= 8, (n, centre)  # 8: one is a JPEG


# -- galleries and errors ---------------------------------------------------------------------


def test_galleries_show_right_and_wrong_with_top5(site: Path) -> None:
    probs = fake_probs(3)
    html = (site / "galleries.html").read_text(encoding="utf-8")
    for name, want_right in (("right", True), ("wrong", False)):
        part = html.split(f'<section id="{name}">')[1].split("</section>")[0]
        rows = [Page(row) for row in part.split('<div class="gallery-row">')[1:]]
        shown = [int(re.search(r"img_(\d\d)", row.canvases[0]["aria-label"]).group(1)) for row in rows]
        # every right image (9) and every wrong one (9, 10, 11) fits in the galleries of 12
        assert shown == [n for n in range(N_VAL) if (predicted(n, 3) == label_of(n)) == want_right]
        for n, row in zip(shown, rows):
            assert row.captions[0] == NAMES[label_of(n)]
            top5 = np.argsort(-probs[n], kind="stable")[:5]
            assert len(row.captions) == 6
            for rank, (k, caption) in enumerate(zip(top5, row.captions[1:])):
                mark = "✓ right " if k == label_of(n) else ""
                assert caption == f"top-{rank + 1} {mark}{NAMES[k]} {100 * probs[n, k]:.1f}%", caption


def test_gallery_maps_are_the_top5_maps(site: Path) -> None:
    data = data_object(site, "gallery")
    maps = maps_of(data)
    p = page(site / "galleries.html")
    tiles = [c for c in p.canvases if "data-seq" in c and "ranked" in c["aria-label"]]
    assert data["sprite"] == "sprite-gallery"
    assert len(tiles) == 5 * len({re.search(r"img_(\d\d)", c["aria-label"]).group(1) for c in tiles}) >= 5
    probs = fake_probs(3)
    for c in tiles:
        n = int(re.search(r"img_(\d\d)", c["aria-label"]).group(1))
        rank = int(re.search(r"ranked (\d)", c["aria-label"]).group(1)) - 1
        k = int(np.argsort(-probs[n], kind="stable")[rank])
        expected = np.zeros((8, 8), dtype=np.uint8)
        expected[hot_pixel(n, 3, (k - label_of(n)) % len(NAMES))] = 255
        np.testing.assert_array_equal(maps[int(c["data-seq"]), 0], expected)


def test_same_class_pairs_are_right_and_of_one_class(site: Path) -> None:
    html = (site / "galleries.html").read_text(encoding="utf-8")
    part = Page(html.split('<section id="pairs">')[1].split("</section>")[0])
    pairs = [c["aria-label"] for c in part.canvases]
    assert len(pairs) == 2 * SHOWN  # every class has 3 right images
    for a, b in zip(pairs[::2], pairs[1::2]):
        na, nb = (int(re.search(r"img_(\d\d)", x).group(1)) for x in (a, b))
        assert label_of(na) == label_of(nb) and na < nb
        assert predicted(na, 3) == label_of(na) and predicted(nb, 3) == label_of(nb)


def test_errors_page_pairs_mistakes_and_histogram(site: Path) -> None:
    p = page(site / "errors.html")
    # wrong at epoch 3: 9 (goldfish as NASTY), 10 (NASTY as tabby cat), 11 (tabby cat as goldfish)
    assert p.tables["confused-pairs"][1:] == [
        ["1", "goldfish", NASTY, "1", "0", "1"],
        ["2", "goldfish", "tabby cat", "0", "1", "1"],
        ["3", NASTY, "tabby cat", "1", "0", "1"],
    ]
    html = (site / "errors.html").read_text(encoding="utf-8")
    mistakes = Page(html.split('<section id="mistakes">')[1].split("</section>")[0])
    order = [int(re.search(r"img_(\d\d)", c["aria-label"]).group(1)) for c in mistakes.canvases[::2]]
    assert order == [10, 9, 11]  # p = 0.5/0.9, then 0.5 and 0.5 by index
    assert "AUROC 0.8765" in p.words and "(ECE) 0.1234" in p.words
    with open(site / "figures" / "confidence.csv", newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0] == ["lower", "upper", "right", "wrong"] and len(table) == 21
    counts = {(row[0], row[2], row[3]) for row in table[1:] if row[2] != "0" or row[3] != "0"}
    assert counts == {("0.5", "9", "2"), ("0.55", "0", "1")}  # 9 right and 2 wrong at 0.5; one at 0.556
    assert p.tables["calibration-table"][1] == ["clean", "75.00%", "51.23%", "0.1234", "0.8765", "4.50", "-0.250", "—"]


# -- perturbations ----------------------------------------------------------------------------


def test_perturbations_table_and_flips(site: Path) -> None:
    rows = page(site / "perturbations.html").tables["settings-table"]
    # bgr flips every odd image: 1, 3, 5, 7 were right (now wrong), 9 and 11 wrong (now another wrong)
    assert rows[2] == ["bgr", "3", "41.67%", "91.67%", "-33.33 pts", "6 (50.00%)", "4", "0", "0.346", "-7.89 pts", "0.2345"]
    words = page(site / "perturbations" / "bgr.html").words
    assert "6 of 12 predictions flip: 4 right → wrong, 0 wrong → right, 2 wrong → another wrong class" in words
    with open(site / "figures" / "accuracy-by-setting.csv", newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0] == ["setting", "epoch", "top1", "top5"]
    assert [float(v) for v in table[-1][2:]] == pytest.approx([5 / 12, 11 / 12], abs=5e-5)  # analysis.json's 4 decimals


def test_perturbation_page_rows_images_and_maps(site: Path) -> None:
    data = data_object(site, "pert-bgr")
    assert data["epochs"] == EPOCHS and data["perturbation"] == "bgr"
    maps = maps_of(data)
    n_rows = maps.shape[0] // 2
    ids = [int(re.search(r"img_(\d\d)", f).group(1)) for f in data["files"][::2]]
    assert len(set(ids)) == len(ids) == n_rows  # each chosen image once
    odd = [n for n in range(N_VAL) if n % 2]
    assert set(odd) <= set(ids)  # every image whose prediction bgr flips is shown
    for j, n in enumerate(ids):
        for e, epoch in enumerate(EPOCHS):
            assert data["pred"][2 * j][e] == predicted(n, epoch)
            assert data["pred"][2 * j + 1][e] == predicted_bgr(n, epoch)
            # bgr's true-class map is the map of class (label - 1) (the channel order was reversed)
            clean = np.zeros((8, 8), np.uint8)
            if (n, epoch) != ZERO_MAP:
                clean[hot_pixel(n, epoch)] = 255
            np.testing.assert_array_equal(maps[2 * j, e], clean)
            pert = np.zeros((8, 8), np.uint8)  # class C-1-c of the clean maps, never the zero one
            pert[hot_pixel(n, epoch, (len(NAMES) - 1 - 2 * label_of(n)) % len(NAMES))] = 255
            np.testing.assert_array_equal(maps[2 * j + 1, e], pert)
        original = sprite_cell(site, "data/pert-bgr.png", 2 * j)[32, 32].astype(int)
        swapped = sprite_cell(site, "data/pert-bgr.png", 2 * j + 1)[32, 32].astype(int)
        assert np.abs(original - colour(n)).max() <= 8
        assert np.abs(swapped - colour(n)[::-1]).max() <= 8  # recomputed: channels B, G, R
    p = page(site / "perturbations" / "bgr.html")
    flipped = [a for tag, a in p.attrs if tag == "div" and "flip" in a.get("class", "").split()]
    assert len(flipped) == sum(1 for n in ids if n % 2)


# -- layers and compare -----------------------------------------------------------------------


def test_layers_page_and_data(site: Path) -> None:
    text = (site / "data" / "layers-003.js").read_text(encoding="ascii")
    data = json.loads(re.search(r'^window\.EDVIS\["layers-003"\] = (.*);$', text, re.M).group(1))
    assert data["epoch"] == 3 and [im["index"] for im in data["images"]] == LAYER_INDEX
    conv1, maps = data["images"][0]["layers"]
    assert conv1["channels"] == [2, 1, 0]  # mean 7.5, 3, 1
    grids = np.frombuffer(base64.b64decode(conv1["data"]), np.uint8).reshape(4, 4, 4)
    ramp = np.rint(np.arange(16).reshape(4, 4) / 15 * 255)
    np.testing.assert_array_equal(grids[0], ramp)
    assert not grids[1].any() and not grids[2].any()  # constant channels
    np.testing.assert_array_equal(grids[3], ramp)  # mean over channels: the ramp plus constants
    assert maps["channels"] == [4, 1, 0, 2, 3, 5]
    p = page(site / "layers.html")
    captions = [c for c in p.captions if c in NAMES]
    assert captions[:2] == ["unused two", NASTY]  # the maps layer's channels are classes
    assert len([c for c in p.canvases if c.get("class") == "act mean"]) == 2 * 2


def test_compare_page_maps_peaks_and_numbers(site: Path) -> None:
    p = page(site / "compare.html")
    rows = p.tables["compare-table"]
    assert rows[1] == ["edvis-resnet18 (paper)", "3", "75.00%", "91.67%", "61.11%", "22.22%", "+12.34 to +65.44 pts",
                       "33.33%", "44.44%", "55.55%", "43.21% of 1,234", "11.11%"]
    # the compared run's interval comes from its own store (no hand value): a range within ±100 pts
    lo, hi = (float(v.replace("−", "-")) for v in re.fullmatch(r"(\S+) to (\S+) pts", rows[2][6]).groups())
    assert -100 <= lo <= hi <= 100
    assert rows[2][:6] + rows[2][7:] == ["cam-resnet18", "2", "91.67%", "100.00%", "77.77%", "22.22%", "88.88%", "44.44%",
                                         "55.55%", "—", "—"]  # a record from before the small-object columns
    cam = [c for c in p.canvases if c["data-src"] == "compare-b"]
    assert cam and all(c.get("data-box") for c in cam)  # only images with a box
    for c in cam:
        n = int(re.search(r"img_(\d\d)", c["aria-label"]).group(1))
        assert n != NO_BOX
        # A 2×2 map with a hot top-left (top-right) cell upsamples to a plateau over pixels 0..15
        # (48..63) × 0..15; the peak is the first of the four pixels nearest its centroid.
        assert c["data-peak"] == ("7 7" if n % 2 == 0 else "55 7")
    data = data_object(site, "compare-b")
    assert data["map_size"] == 2 and data["sprite"] == "sprite-compare-a"
    assert data["image_size"] == 64 and data["sprite_px"] == 64  # 64-px images kept whole in the sheet


def test_compare_refuses_another_validation_set(runs: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    store = RenderStore(other / "render")
    m = manifest(runs["data"], [f"x{n}.png" for n in range(N_VAL)], map_size=2)
    store.init(m)
    with pytest.raises(SiteError, match=r"--compare .*other.*another validation set"):
        read_sources(runs["run"], compare=other)


# -- figures ----------------------------------------------------------------------------------


def fingerprint(runs: dict[str, Path]) -> str:
    return RenderStore(runs["run"] / "render").manifest()["dataset"]["fingerprint"]


def test_every_figure_has_stable_files_and_a_citation(site: Path, runs: dict[str, Path]) -> None:
    p = page(site / "figures.html")
    sections = [a["id"] for tag, a in p.attrs if tag == "section" and a.get("class") == "figure-entry"]
    assert sections == [f"fig-{name}" for name in FIGURES]
    for name in FIGURES:
        kinds = {f.suffix for f in (site / "figures").glob(f"{name}.*")}
        assert kinds in ({".png", ".svg", ".csv"}, {".png", ".svg", ".json"}, {".csv", ".tex"}), (name, kinds)
    assert "Cite: Training curves. edvis 0.1.0, run “run” (edvis-resnet18 (paper)), epochs 1–3, dataset " \
           f"{fingerprint(runs)[:12]}. figures/training.png" in p.words
    gallery = json.loads((site / "figures" / "gallery-wrong.json").read_text(encoding="utf-8"))
    assert [im["file"][-10:] for im in gallery["images"]] == ["img_09.png", "img_10.png", "img_11.png"]
    top = gallery["images"][1]["top"][0]
    assert {k: top[k] for k in ("class", "prob")} == {"class": "tabby cat", "prob": pytest.approx(0.5556, abs=1e-4)}
    # img_10's top class at epoch 3 is predicted(10, 3): its map is one hot cell, scaled to 1.
    expected = np.zeros((8, 8))
    expected[hot_pixel(10, 3, (predicted(10, 3) - label_of(10)) % len(NAMES))] = 1.0
    assert top["map"] == expected.tolist()


def test_base_url_makes_citations_absolute(runs: dict[str, Path], tmp_path: Path) -> None:
    out = quick_build(runs["run"], tmp_path / "out", base_url="https://example.org/edvis").parent
    words = page(out / "figures.html").words
    assert "Cite: Training curves. edvis" in words
    assert f"dataset {fingerprint(runs)[:12]}. https://example.org/edvis/figures/training.png" in words


# -- the build as a whole ---------------------------------------------------------------------


def test_links_resolve_inside_the_site(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    names = {p.relative_to(site).as_posix() for p in pages}
    assert {"index.html", "classes.html", "galleries.html", "errors.html", "perturbations.html", "layers.html",
            "compare.html", "figures.html", "perturbations/bgr.html"} <= names
    assert len(pages) == 9 + len(NAMES)
    for path in pages:
        p = page(path)
        refs = p.links + [a["data-src"] for tag, a in p.attrs if tag == "option" and "data-src" in a]
        for link in refs:
            assert not re.match(r"^[a-z]+:|^/", link), (path, link)  # relative only
            target = link.split("#")[0]
            if not target:
                continue
            resolved = (path.parent / target).resolve()
            assert resolved.is_relative_to(site.resolve()), (path, link)
            assert resolved.is_file(), (path, link)
        sprites = {a["id"] for tag, a in p.attrs if tag == "img" and "sprite" in a.get("class", "")}
        for key in {c["data-src"] for c in p.canvases if "data-src" in c}:
            assert (site / "data" / f"{key}.js").is_file(), (path, key)
            assert data_object(site, key)["sprite"] in sprites, (path, key)


def test_no_raw_markup_from_data_anywhere(site: Path) -> None:
    for path in site.rglob("*"):
        if path.suffix == ".html":
            text = path.read_text(encoding="utf-8")
            assert "<script>alert" not in text, path
            assert "<b>not bold" not in text, path
        elif path.suffix == ".js" and path.parent.name == "data":
            text = path.read_text(encoding="ascii")  # also: ASCII only
            assert "<" not in text and ">" not in text, path


def test_images_are_lazy_and_described(site: Path) -> None:
    for path in site.rglob("*.html"):
        p = page(path)
        for tag, a in p.attrs:
            if tag == "img" and "sprite" not in a.get("class", ""):
                assert a.get("loading") == "lazy" and a.get("alt"), (path, a)
        assert all(c.get("aria-label") for c in p.canvases), path


def test_two_builds_are_byte_identical(site: Path, runs: dict[str, Path], tmp_path: Path) -> None:
    b = build_site(runs["run"], tmp_path / "b", compare=runs["cam"]).parent
    files_a = sorted(p.relative_to(site) for p in site.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    assert len(files_a) > 50
    for rel in files_a:
        assert (site / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_build_writes_nothing_outside_out_dir(runs: dict[str, Path], tmp_path: Path) -> None:
    def snapshot() -> dict[Path, bytes]:
        return {p: p.read_bytes() for p in runs["tmp"].rglob("*") if p.is_file() and "site" not in p.parts}

    before = snapshot()
    quick_build(runs["run"], tmp_path / "out")
    assert snapshot() == before
    assert not list((tmp_path / "out").rglob("*.tmp-*"))


def test_files_are_readable_by_a_web_server(site: Path) -> None:
    for path in site.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o777 == 0o644, path


def test_failure_names_the_file_being_built(runs: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    files = RenderStore(runs["run"] / "render").manifest()["val"]["files"]
    data = Path(shutil.copytree(runs["data"], tmp_path / "moved"))
    size = (data / files[4]).stat().st_size  # damaged, its size kept: the fingerprint cannot tell
    (data / files[4]).write_bytes(b"not an image".ljust(size, b"\0"))
    with pytest.raises(SiteError, match=r"data/001\.png") as info:
        quick_build(runs["run"], tmp_path / "out", data_root=data)
    assert Path(files[4]).name in str(info.value)


def test_optional_parts_are_left_out(runs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "plain"
    (run / "render").mkdir(parents=True)
    copy_store_file(runs["run"] / "render" / "manifest.json", run / "render" / "manifest.json")
    (run / "render" / "clean").mkdir()
    for epoch in EPOCHS:
        name = f"clean/epoch_{epoch:03d}.npz"
        copy_store_file(runs["run"] / "render" / name, run / "render" / name)
    analyze_run(run)
    out = quick_build(run, tmp_path / "out", timeline_images=0).parent
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "no finished epoch" in html and "no config.json" in html
    for name in ("layers.html", "compare.html", "perturbations/bgr.html"):
        assert not (out / name).exists()
        assert name not in html
    assert "Only the clean images were rendered" in (out / "perturbations.html").read_text("utf-8")
    assert "Through the epochs" not in class_page(out, 0).read_text("utf-8")


def test_an_unknown_setting_keeps_its_original_images(runs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "render" / "fog").mkdir(parents=True)
    copy_store_file(runs["run"] / "render" / "manifest.json", run / "render" / "manifest.json")
    (run / "render" / "clean").symlink_to(runs["run"] / "render" / "clean")
    for epoch in EPOCHS:  # a setting this edvis has no function for, rendered by another one
        name = f"epoch_{epoch:03d}.npz"
        copy_store_file(runs["run"] / "render" / "bgr" / name, run / "render" / "fog" / name)
    analyze_run(run)
    out = quick_build(run, tmp_path / "out").parent
    assert "cannot recompute its images" in (out / "perturbations" / "fog.html").read_text("utf-8")
    data = data_object(out, "pert-fog")
    n = int(re.search(r"img_(\d\d)", data["files"][1]).group(1))
    assert np.abs(sprite_cell(out, "data/pert-fog.png", 1)[32, 32].astype(int) - colour(n)).max() <= 8


def test_stale_or_foreign_analysis(runs: dict[str, Path], tmp_path: Path, said: list[str]) -> None:
    path = runs["run"] / "analysis" / "analysis.json"
    good = json.loads(path.read_text(encoding="utf-8"))
    try:
        write_analysis(path, analysis_json([1, 2]))
        with pytest.raises(SiteError, match=r"analysis\.json covers epochs \[1, 2\].*run `edvis analyze`"):
            read_sources(runs["run"])
        for schema in (1, 99):
            write_analysis(path, {**analysis_json(EPOCHS), "schema": schema})
            with pytest.raises(SiteError, match=rf"analysis\.json has schema {schema}.*run `edvis analyze --force`"):
                read_sources(runs["run"])
        write_analysis(path, {**good, "inputs": {}})  # as if written by an analyze that did not say
        with pytest.raises(SiteError, match=r"analysis\.json does not list the files it was computed from"):
            read_sources(runs["run"])
        path.write_text(json.dumps(good).replace('"top1": 0.', '"top1": 1.', 1), encoding="utf-8")  # edited by hand
        with pytest.raises(SiteError, match=r"analysis .*analysis\.json is damaged.*run `edvis analyze --force`"):
            read_sources(runs["run"])
        path.unlink()
        with pytest.raises(SiteError, match=r"analysis\.json is missing: run `edvis analyze`"):
            read_sources(runs["run"])
    finally:
        write_analysis(path, good)


def test_compare_needs_the_analysis_of_the_compared_run(runs: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["run"], run)
    analyze_run(run, force=True)  # without --compare: no compare.settings for Table 1
    with pytest.raises(SiteError, match=r"analysis\.json: no top-1/top-5 of .*run `edvis analyze --compare"):
        read_sources(run, compare=runs["cam"])


@pytest.mark.parametrize("epoch", [EPOCHS[0], EPOCHS[-1]], ids=["first", "final"])
def test_a_perturbed_unit_with_too_few_images_is_named(tmp_path: Path, runs: dict[str, Path], epoch: int) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["run"], run)
    store = RenderStore(run / "render")
    write_unit(store, "bgr", epoch, fake_probs(epoch, predicted_bgr)[:5], all_maps(epoch)[:5, ::-1], top5_maps=False)
    # The unit is not the one analysed: refused before anything is read from it ...
    with pytest.raises(SiteError, match=rf"bgr/epoch_{epoch:03d}\.npz is not the one .*analysis\.json was computed from"):
        quick_build(run, tmp_path / "out")
    # ... and analysing it names it too.
    shape = r"probs has shape \(5, 6\), the manifest implies \(12, 6\)"
    with pytest.raises(EdvisError, match=rf"bgr/epoch_{epoch:03d}\.npz: {shape}"):
        analyze_run(run)


def test_requires_a_rendered_epoch(tmp_path: Path, runs: dict[str, Path]) -> None:
    run = tmp_path / "empty"
    (run / "render").mkdir(parents=True)
    copy_store_file(runs["run"] / "render" / "manifest.json", run / "render" / "manifest.json")
    with pytest.raises(SiteError, match="no rendered epochs"):
        build_site(run, tmp_path / "out")


# -- helpers ----------------------------------------------------------------------------------


def test_normalise_maps_per_map() -> None:
    maps = np.zeros((3, 8, 8), dtype=np.float16)
    maps[0, 1, 2] = 4.0
    maps[0, 5, 5] = 1.0
    maps[2] = 0.5
    out = normalise_maps(maps)
    assert out.dtype == np.uint8
    assert out[0, 1, 2] == 255 and out[0, 5, 5] == 64 and out[0].sum() == 255 + 64
    assert not out[1].any()  # all zero stays zero
    assert (out[2] == 255).all()


def test_choose_timeline_is_deterministic() -> None:
    assert choose_timeline(50, 3, 7) == choose_timeline(50, 3, 7)
    assert choose_timeline(50, 3, 7) == sorted(choose_timeline(50, 3, 7))
    assert choose_timeline(2, 3, 0) == [0, 1]
    assert choose_timeline(5, 0, 0) == []


def test_js_json_cannot_close_a_script() -> None:
    text = js_json({"name": "</script><!-- & é"})
    assert "<" not in text and ">" not in text and "&" not in text and text.isascii()
    assert json.loads(text) == {"name": "</script><!-- & é"}


def test_index_localisation_table_has_the_small_object_pointing_games(site: Path) -> None:
    rows = page(site / "index.html").tables["localisation-table"]
    assert rows[0][-2:] == ["Pointing, small objects", "Centre, small objects"]
    assert rows[1] == ["edvis-resnet18 (paper)", "3", "61.11%", "22.22%", "+12.34 to +65.44 pts", "33.33%", "44.44%",
                       "55.55%", "43.21% of 1,234", "11.11%"]
