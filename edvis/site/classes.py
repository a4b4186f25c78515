"""The class pages: ``classes.html`` (every class) and ``classes/NNN-<slug>.html`` (one each).

:func:`class_pages` makes one class's page and data file at a time, so a build holds a single
class's arrays however many classes there are; what ``classes.html`` and the figures need of
each class is kept in its small :class:`ClassRow`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from edvis.errors import UsageError
from edvis.site import picks
from edvis.site.methods import covered_by_all, method_rows
from edvis.site.text import class_name, num, ordinal, pct, slugify, true_map_alt
from edvis.site.views import Chart, ClassRef, Pack, Slider, Tile
from edvis.site.views_pages import (
    ClassAccuracy,
    ClassIndex,
    ClassPage,
    ClassRow,
    Confusion,
    SettingPage,
    SettingRow,
    Timeline,
)

if TYPE_CHECKING:
    from edvis.site.read_compare import Model
    from edvis.site.read_run import Dataset
    from edvis.site.sources import Sources

TIMELINE_EPOCHS = 16  # the paper shows 16 epochs per image (Figures 3-5)
CONFUSED_SHOWN = 5
CONFUSED_EXAMPLES = 4
CLASS_METHODS = 6  # images of the class shown with every explanation method's map
LEARNING_KEYS = ("epoch_50", "epoch_90", "pattern_formed", "learned_rank")


def class_refs(ds: Dataset) -> list[ClassRef]:
    """Every class with the stem of its files (its index, zero-padded to at least 3 digits)."""
    width = max(3, len(str(ds.num_classes - 1)))
    return [ClassRef(c, f"{c:0{width}d}", ds.wnids[c], ds.names[c], slugify(ds.names[c])) for c in range(ds.num_classes)]


def choose_timeline(n: int, k: int, seed: int, stream: int = 0) -> list[int]:
    """The sorted indices of ``min(k, n)`` of ``n`` images, drawn without replacement.

    Each ``stream`` (the class index on class pages) draws from its own generator of ``seed``.
    """
    if k < 0:
        raise UsageError(f"k must be >= 0, got {k}")
    return picks.choose(np.arange(n), k, picks.rng(seed, "timeline", stream))


def class_pages(src: Sources, refs: list[ClassRef], settings: list[SettingPage],
                methods: list[Model] | None = None) -> Iterator[ClassPage]:
    """Each class's page, one at a time, in class order; ``methods`` are the run's explanation
    methods (:func:`edvis.site.read_compare.read_methods`), shown beside the model's own maps."""
    entries = src.analysis.class_entries()
    for ref in refs:
        yield class_page(src, refs, settings, ref.index, entries.get(ref.index, {}), methods or [])


def class_page(src: Sources, refs: list[ClassRef], settings: list[SettingPage], c: int,
               entry: dict[str, Any], methods: list[Model] | None = None) -> ClassPage:
    """The page of class ``c``; ``entry`` is its entry in analysis.json ({} without one)."""
    r, ref = src.clean, refs[c]
    members = np.flatnonzero(src.dataset.labels == c)
    similarity = entry.get("similarity_by_epoch") or [None] * len(r.epochs)
    top1 = entry.get("top1_by_epoch") if len(members) else None
    top5 = entry.get("top5_by_epoch") if len(members) else None
    top1, top5 = top1 or [None] * len(r.epochs), top5 or [None] * len(r.epochs)
    accuracy = [ClassAccuracy(epoch, top1[e], top5[e], similarity[e] if e < len(similarity) else None)
                for e, epoch in enumerate(r.epochs)]
    rows, more = _setting_rows(c, accuracy[-1].top1, r.final_epoch, settings, entry)
    page = ClassPage(
        ref=ref, prev=refs[c - 1] if c > 0 else None, next=refs[c + 1] if c + 1 < len(refs) else None,
        image_count=len(members), accuracy=accuracy,
        chart=_chart([a.epoch for a in accuracy], [("top-1", "top1", [a.top1 for a in accuracy]),
                                                   ("top-5", "top5", [a.top5 for a in accuracy])],
                     f"Top-1 and top-5 accuracy of {ref.name} per epoch", accuracy),
        learning=_learning(entry, src.dataset.num_classes) if entry else None, has_analysis=bool(entry),
        settings=rows, settings_more=more, slider=Slider(r.epochs),
    )
    if len(members):
        _fill_images(src, refs, page, members)
        _fill_methods(src, page, members, methods or [])
    return page


def class_row(page: ClassPage, entry: dict[str, Any]) -> ClassRow:
    """What classes.html and the figures keep of a class page."""
    dropped = [row for row in page.settings if row.drop is not None and row.drop > 0]
    worst = max(dropped, key=lambda row: row.drop or 0.0) if dropped else None
    learning = []
    for key in LEARNING_KEYS:
        value = entry.get(key)
        learning.append(("", "—") if value is None else (str(value), str(value)))
    return ClassRow(
        ref=page.ref, image_count=page.image_count, top1=[a.top1 for a in page.accuracy],
        top5=[a.top5 for a in page.accuracy], learning=learning,
        worst=(worst.name, worst.drop or 0.0) if worst is not None else None, has_timelines=bool(page.timelines),
    )


def class_index(src: Sources, rows: list[ClassRow], has_settings: bool) -> ClassIndex:
    return ClassIndex(rows=rows, pattern_threshold=src.analysis.pattern_threshold(),
                      has_settings=has_settings)


def _setting_rows(c: int, base: float | None, final_epoch: int, settings: list[SettingPage],
                  entry: dict[str, Any]) -> tuple[list[SettingRow], bool]:
    """The class's top-1 under each perturbed setting, its drop from clean, and analysis.json's
    flip rate and map correlation when the class's entry has them."""
    more = entry.get("settings", []) if entry else []
    listed = more if isinstance(more, list) else []
    rows = []
    for s in settings:
        v = s.class_top1[c] if c < len(s.class_top1) else float("nan")
        top1 = None if math.isnan(v) else float(v)
        drop = None if top1 is None or base is None or s.final_epoch != final_epoch else base - top1
        a = next((x for x in listed if isinstance(x, dict) and x.get("setting") == s.name), None) or {}
        rows.append(SettingRow(s.name, s.page, top1, drop, pct(a.get("flip_rate")), num(a.get("map_corr"), ".3f")))
    return rows, bool(more)


def _learning(a: dict[str, Any], num_classes: int) -> str:
    """When the class was learned, from its analysis.json entry, in sentences."""
    sentences = []
    if a.get("epoch_90") is not None:
        half = f" (50% at epoch {a['epoch_50']})" if a.get("epoch_50") is not None else ""
        sentences.append(f"Reached 90% of its final top-1 at epoch {a['epoch_90']}{half}.")
    if a.get("pattern_formed") is not None:
        sentences.append(f"Its maps' pattern formed at epoch {a['pattern_formed']} "
                         "(from then on they stay close to the last epoch's).")
    if a.get("learned_rank") is not None:
        sentences.append(f"Learned {ordinal(a['learned_rank'])} of {num_classes} classes.")
    return " ".join(sentences)


def _fill_images(src: Sources, refs: list[ClassRef], page: ClassPage, m: np.ndarray) -> None:
    """The class's data file, its image tiles, mean map, timelines and confusions."""
    r, ds = src.clean, src.dataset
    epochs, last, c = r.epochs, len(r.epochs) - 1, page.index
    files = [ds.files[i] for i in m]
    maps = r.maps[:, m].transpose(1, 0, 2, 3)  # (n, E, S, S)
    mean = np.stack([picks.mean_map(r.maps[e, m][r.hit1[e, m]]) for e in range(len(epochs))])  # (E, S, S)
    counts = [int(r.hit1[e, m].sum()) for e in range(len(epochs))]
    page.pack = Pack(
        key=page.key, epochs=epochs, maps=np.concatenate([maps, mean[None]], axis=0), cells=[int(i) for i in m],
        pred=r.pred[:, m].T.copy(), prob=r.prob[:, m].T.copy(), truth=[c] * len(m), files=files,
        extra={"index": c, "mean_seq": len(m), "mean_count": counts},
    )

    def tile(i: int, e: int, follow: bool = False, label: str = "") -> Tile:
        k = int(r.pred[e, m[i]])
        p = round(float(r.prob[e, m[i]]), 4)  # as in the page's data file
        verdict = "right" if k == c else "wrong"
        return Tile(src=page.key, seq=i, cell=i, epoch_index=e, follow=follow, label=label,
                    alt=true_map_alt(files[i], page.name, epochs[e], class_name(ds.names, k), p, verdict),
                    name=class_name(ds.names, k), prob=p, verdict=verdict, box=ds.boxes[m[i]])

    page.tiles = [tile(i, last, follow=True) for i in range(len(m))]
    page.mean_count = counts[-1]
    page.mean_tile = Tile(
        src=page.key, seq=len(m), cell=None, epoch_index=last, follow=True,
        alt=f"Mean {page.name} map over the {counts[-1]} right predictions at epoch {epochs[-1]}",
    )
    shown = picks.even_epochs(list(range(len(epochs))), TIMELINE_EPOCHS)
    for i in choose_timeline(len(m), src.timeline_images, src.seed, stream=c):
        page.timelines.append(Timeline(i, int(m[i]), files[i], [tile(i, e, label=f"epoch {epochs[e]}") for e in shown]))
    local = {int(v): j for j, v in enumerate(m)}
    matrix = src.analysis.confusion()
    for other, count in most_first(matrix[c], c)[:CONFUSED_SHOWN]:
        images = [int(i) for i in m[r.pred[-1, m] == other][:CONFUSED_EXAMPLES]]
        page.confused.append(Confusion(refs[other], count, [tile(local[i], last) for i in images]))
    for other, count in most_first(matrix[:, c], c)[:CONFUSED_SHOWN]:
        page.mistaken.append(Confusion(refs[other], count))


def _fill_methods(src: Sources, page: ClassPage, m: np.ndarray, methods: list[Model]) -> None:
    """Up to :data:`CLASS_METHODS` of the class's images that every method explained, chosen at
    random, with the model's own map and each method's at the final epoch."""
    if not methods or page.pack is None:
        return
    local = {int(v): j for j, v in enumerate(m)}
    covered = covered_by_all(methods, src.dataset.num_val)
    pool = [int(i) for i in m if covered[i]]
    chosen = picks.choose(np.asarray(pool, np.int64), CLASS_METHODS, picks.rng(src.seed, "class-methods", page.index))
    own = {t.seq: t for t in page.tiles}
    page.methods = [x.label for x in methods]
    page.method_rows, page.method_packs = method_rows(
        src.dataset, methods, chosen, page.key, lambda i: local[i],
        lambda i: replace(own[local[i]], follow=False, label="own map"), src.clean.final_epoch)


def most_first(counts: np.ndarray, c: int) -> list[tuple[int, int]]:
    """The non-zero ``counts`` (a row or column of the confusion matrix) other than class ``c``'s
    own, as (class, count): most first, ties by class index."""
    found = [(k, int(n)) for k, n in enumerate(counts) if k != c and n]
    return sorted(found, key=lambda kn: (-kn[1], kn[0]))


def _chart(xs: list[int], series: list[tuple[str, str, list[float | None]]], title: str,
           accuracy: list[ClassAccuracy], width: int = 480, height: int = 160) -> Chart:
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
    yticks = [(round(y(v), 1), round(y(v), 1) + 3, f"{int(100 * v)}%") for v in (0, 0.5, 1)]
    first, final = accuracy[0], accuracy[-1]
    description = (f"{title}: top-1 from {first.top1_text} at epoch {first.epoch} to {final.top1_text} "
                   f"at epoch {final.epoch}")
    return Chart(width, height, lines, [(round(x(e), 1), str(e)) for e in ticks], yticks, title, description,
                 grid_x2=width - 8, xtick_y=height - 6)
