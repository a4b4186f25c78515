"""The figures for papers: which the build writes (:func:`catalogue`: stable names, titles,
citation lines) and the data each is drawn from (:func:`draw`); ``plots.py`` draws them.

```
OUT/figures/<name>.png   twice the nominal size
OUT/figures/<name>.svg
OUT/figures/<name>.csv   the numbers behind a plot (Table 1: .csv and .tex, no picture)
OUT/figures/<name>.json  the numbers behind a figure of maps
```
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import edvis
from edvis.site import figure_faithfulness, plots
from edvis.site.figure_maps import (
    compare_figure,
    gallery_figure,
    layers_figure,
    pairs_figure,
    perturbation_figure,
    timelines_figure,
)
from edvis.site.perturbations import clean_accuracy
from edvis.site.read_store import CLEAN
from edvis.site.sprites import Images
from edvis.site.views import Catalogue, ClassRef, FigureEntry, TableRow
from edvis.site.writing import Writer, building, write

if TYPE_CHECKING:
    from edvis.site.faithfulness import FaithfulnessPage
    from edvis.site.read_compare import Model
    from edvis.site.sources import Sources
    from edvis.site.views_pages import ClassRow, ComparePage, ErrorsPage, GalleryPage, LayersPage, SettingPage

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
    "faithfulness-curves": ("Deletion and insertion curves of every method at the final epoch", ""),
    "faithfulness-epochs": ("Deletion and insertion AUC of every method over the epochs", ""),
    "sanity-maps": ("Maps as the layers are re-initialised from the last down", ""),
}
PAPER_FIGURES = {"gray": "Figure 9", "blur3": "Figure 10", "blur5": "Figure 10", "bgr": "Figure 11",
                 "brg": "Figure 11", "sp0.0005": "Figure 12", "sp0.005": "Figure 12"}
PLOT = ("png", "svg", "csv")
MAPS = ("png", "svg", "json")


@dataclass(eq=False)
class Pages:
    """The page views the figures show again."""

    src: Sources
    refs: list[ClassRef]
    rows: list[ClassRow]
    settings: list[SettingPage]
    models: list[Model]
    table: list[TableRow]
    gallery: GalleryPage
    errors: ErrorsPage
    compare: ComparePage | None
    layers: LayersPage | None
    faithfulness: FaithfulnessPage | None = None


def catalogue(p: Pages) -> Catalogue:
    """Every figure the build writes, with its files and citation line, in the order shown."""
    wanted: list[tuple[str, str, str, tuple[str, ...]]] = []  # (name, title, paper, extensions)

    def add(name: str, exts: tuple[str, ...] = MAPS, title: str = "", paper: str = "") -> None:
        t, pp = FIGURE_TITLES.get(name, ("", ""))
        wanted.append((name, title or t, paper or pp, exts))

    src, g = p.src, p.gallery
    if src.run.metrics:
        add("training", PLOT)
    add("table1", ("csv", "tex"))
    add("class-learning", PLOT)
    if src.timeline_images and any(row.has_timelines for row in p.rows):
        add("timelines")
    maps = "top-5 maps" if g.has_top5 else "top-1 maps"
    if g.right:
        add("gallery-right", title=f"Random right predictions with their {maps}")
    if g.wrong:
        add("gallery-wrong", title=f"Random wrong predictions with their {maps}")
    if g.pairs:
        add("same-class-pairs")
    add("confidence", PLOT)
    if p.errors.reliability:
        add("reliability", PLOT)
    if p.settings:
        add("accuracy-by-setting", PLOT)
    for s in p.settings:
        if s.rows:
            add(s.figure, title=f"Original and {s.name} images with their maps", paper=PAPER_FIGURES.get(s.name, ""))
    if p.compare is not None:
        add("compare-maps")
    if p.layers is not None:
        add("layers")
    if p.faithfulness is not None and p.faithfulness.has_measures:
        add("faithfulness-curves", PLOT)
        add("faithfulness-epochs", PLOT)
    if p.faithfulness is not None and p.faithfulness.sanity is not None and p.faithfulness.sanity.maps is not None:
        add("sanity-maps")
    return Catalogue([_entry(p, *w) for w in wanted], absolute=bool(src.base_url))


def _entry(p: Pages, name: str, title: str, paper: str, exts: tuple[str, ...]) -> FigureEntry:
    src = p.src
    files = {ext: f"figures/{name}.{ext}" for ext in exts}
    main = files.get("png") or files.get("csv") or next(iter(files.values()))
    where = f"{src.base_url}{main}" if src.base_url else main
    model = p.models[0].label if p.models else src.run.name
    citation = (f"{title}. edvis {edvis.__version__}, run \u201c{src.run.name}\u201d ({model}), epochs "
                f"{src.epochs[0]}\u2013{src.epochs[-1]}, dataset {src.dataset.fingerprint[:12]}. {where}")
    alt = f"{title}{f' (as the paper’s {paper})' if paper else ''}, from run {src.run.name}."
    return FigureEntry(name, title, alt, files, paper, citation)


def draw(p: Pages, figures: Catalogue, writer: Writer, images: Images) -> None:
    """Write every figure of the catalogue under ``OUT/figures``."""
    drawers: dict[str, Callable[[Pages, FigureEntry, Path, Images], None]] = {
        "training": _training, "table1": _table1, "class-learning": _class_learning, "timelines": timelines_figure,
        "gallery-right": gallery_figure, "gallery-wrong": gallery_figure, "same-class-pairs": pairs_figure,
        "confidence": _confidence, "reliability": _reliability, "accuracy-by-setting": _accuracy,
        "compare-maps": compare_figure, "layers": layers_figure,
        "faithfulness-curves": _faithfulness_curves, "faithfulness-epochs": _faithfulness_epochs,
        "sanity-maps": _sanity_maps,
    }
    for s in p.settings:
        drawers[s.figure] = perturbation_figure
    for entry in figures.entries:
        stem = writer.path(f"figures/{entry.name}")
        with building(stem.with_suffix("." + next(iter(entry.files)))):
            drawers[entry.name](p, entry, stem, images)
        gc.collect()  # a matplotlib figure is freed only by the cyclic collector: before the next one is drawn


def _faithfulness_curves(p: Pages, entry: FigureEntry, stem: Path, images: Images) -> None:
    """The final epoch's curves (with their data), and each measured epoch's for the page's slider."""
    f = p.faithfulness
    assert f is not None
    figure_faithfulness.curves_figure(f.curves[f.final_epoch], f.final_epoch, f.setting, stem)
    for panel in f.panels:
        figure_faithfulness.curves_figure(f.curves[panel.epoch], panel.epoch, f.setting,
                                          stem.with_name(Path(panel.image).stem), csv=False)
        gc.collect()


def _faithfulness_epochs(p: Pages, entry: FigureEntry, stem: Path, images: Images) -> None:
    f = p.faithfulness
    assert f is not None
    figure_faithfulness.auc_figure(f.rows, [m.name for m in f.methods], f.setting, stem)


def _sanity_maps(p: Pages, entry: FigureEntry, stem: Path, images: Images) -> None:
    assert p.faithfulness is not None and p.faithfulness.sanity is not None
    figure_faithfulness.sanity_figure(p.faithfulness.sanity, p.src.dataset, images, stem, entry.title)


def _training(p: Pages, entry: FigureEntry, stem: Path, images: Images) -> None:
    plots.training_curves(p.src.run.metrics, stem)


def _confidence(p: Pages, entry: FigureEntry, stem: Path, images: Images) -> None:
    right, wrong = p.errors.hist
    plots.confidence_histogram(right, wrong, stem, auroc=p.errors.auroc)


def _reliability(p: Pages, entry: FigureEntry, stem: Path, images: Images) -> None:
    rel = p.errors.reliability
    assert rel is not None
    plots.reliability_diagram(rel["bins"], stem, ece=rel.get("ece"))


def _accuracy(p: Pages, entry: FigureEntry, stem: Path, images: Images) -> None:
    top1, top5 = clean_accuracy(p.src)
    series = {CLEAN: (p.src.epochs, top1, top5)}
    series.update({s.name: (s.epochs, s.top1, s.top5) for s in p.settings})
    plots.accuracy_by_setting(series, stem)


def _table1(p: Pages, entry: FigureEntry, stem: Path, images: Images) -> None:
    header = ["setting"] + [f"{m.label} {k}" for m in p.models for k in ("top1", "top5")]
    rows = [[row.setting] + [None if v is None else round(v, 4) for pair in row.cells for v in pair]
            for row in p.table]
    plots.write_csv(stem.with_suffix(".csv"), header, rows)
    write(stem.with_suffix(".tex"), latex_table(p.models, p.table))


def _class_learning(p: Pages, entry: FigureEntry, stem: Path, images: Images) -> None:
    top1 = np.array([[v if v is not None else np.nan for v in row.top1] for row in p.rows])
    plots.class_heatmap([row.ref.name for row in p.rows], p.src.epochs, top1.reshape(len(p.rows), -1), stem)


def latex_table(models: list[Model], table: list[TableRow]) -> str:
    """Table 1 as a LaTeX tabular (booktabs), text escaped."""

    def tex(s: str) -> str:
        out = []
        for ch in s:
            out.append({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}.get(ch, ch))
        return "".join(out)

    cols = "l" + "rr" * len(models)
    head = " & ".join(["Setting"] + [rf"\multicolumn{{2}}{{c}}{{{tex(m.label)}}}" for m in models])
    sub = " & ".join([""] + ["Top-1", "Top-5"] * len(models))
    lines = [rf"\begin{{tabular}}{{{cols}}}", r"\toprule", head + r" \\", sub + r" \\", r"\midrule"]
    for row in table:
        cells = [tex(row.setting)] + [tex(t) for pair in row.texts for t in pair]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)
