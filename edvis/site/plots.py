"""Figures for the site, drawn with matplotlib's Agg canvas. Imports no torch.

Figures are built with the object-oriented API on a ``FigureCanvasAgg``; pyplot is never
imported, so no display is needed and the process's chosen backend is left alone.

Every figure is written three ways beside one stem: ``.png`` (at twice its nominal size, for
sharp display on high-density screens), ``.svg`` and the data behind it (``.csv`` for plots,
``.json`` for the map mosaics), and the bytes depend only on the inputs: no dates, no random
ids, no software stamps. Maps are coloured with viridis (perceptually uniform and readable with
colour-blindness) and every map figure carries its colour bar.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from edvis.analyze.metrics import bilinear_matrix
from edvis.errors import UsageError
from edvis.run import atomic, csv_text

#: Nominal figure size in inches and the DPI it is designed at; the PNG is written at 2x.
FIGSIZE = (8.0, 3.2)
BASE_DPI = 100
PNG_SCALE = 2

#: The columns of the training-curves CSV, in order: what the figure plots.
CURVE_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "train_top1",
    "val_top1",
    "train_top5",
    "val_top5",
)

# Settings that make the output bytes a function of the data only.
_RC = {
    "svg.hashsalt": "edvis",  # element ids in the SVG are otherwise random
    "svg.fonttype": "path",  # glyphs as paths: no dependence on the viewer's fonts
    "font.family": "DejaVu Sans",  # ships with matplotlib, so every machine draws the same
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_PNG_METADATA = {"Software": None}
_FILE_MODE = 0o644  # readable by whatever serves the files
_SVG_METADATA = {"Date": None}

# Colour-blind-safe pair (Okabe-Ito blue and vermillion) for train vs validation.
_TRAIN_COLOUR = "#0072B2"
_VAL_COLOUR = "#D55E00"
#: Okabe-Ito's eight colours (black last), for one line per setting; line styles repeat them.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
_STYLES = ("-", "--", ":", "-.")


def viridis_lut() -> np.ndarray:
    """Matplotlib's viridis colormap as a (256, 3) uint8 lookup table, index 0 = lowest value."""
    cmap = matplotlib.colormaps["viridis"].resampled(256)
    rgba = cmap(np.arange(256))
    return np.rint(rgba[:, :3] * 255).astype(np.uint8)


def training_curves(metrics: list[dict[str, Any]], out_stem: Path) -> dict[str, Path]:
    """Plot loss and top-1/top-5 accuracy per epoch, train and validation, side by side.

    ``metrics`` are the rows of ``metrics.jsonl`` (accuracies as fractions; shown in %).
    Writes ``out_stem.png``, ``out_stem.svg`` and ``out_stem.csv`` and returns them as
    ``{"png": ..., "svg": ..., "csv": ...}``. A value missing from a row is left out of
    the plot and written as an empty CSV cell. Raises ValueError if ``metrics`` is empty.
    """
    if not metrics:
        raise UsageError("no metrics to plot (metrics.jsonl has no finished epoch)")
    out_stem = Path(out_stem)
    rows = sorted(metrics, key=lambda r: r["epoch"])
    paths = {ext: out_stem.with_name(f"{out_stem.name}.{ext}") for ext in ("png", "svg", "csv")}

    _write(paths["csv"], _curves_csv(rows).encode("utf-8"))

    with matplotlib.rc_context(_RC):
        fig = _curves_figure(rows)
        png, svg = io.BytesIO(), io.BytesIO()
        fig.savefig(png, format="png", dpi=BASE_DPI * PNG_SCALE, metadata=_PNG_METADATA)
        fig.savefig(svg, format="svg", metadata=_SVG_METADATA)
    _write(paths["png"], png.getvalue())
    _write(paths["svg"], svg.getvalue())
    return paths


def _write(path: Path, data: bytes) -> None:
    with atomic.atomic_path(path) as tmp:
        tmp.write_bytes(data)
        os.chmod(tmp, _FILE_MODE)


def _curves_csv(rows: list[dict[str, Any]]) -> str:
    return csv_text(CURVE_COLUMNS, ([row.get(col) for col in CURVE_COLUMNS] for row in rows))


def _series(rows: list[dict[str, Any]], key: str, scale: float = 1.0) -> tuple[list[int], list[float]]:
    """The (epoch, value) pairs of one column, skipping rows that lack a finite value."""
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            xs.append(int(row["epoch"]))
            ys.append(float(value) * scale)
    return xs, ys


def _curves_figure(rows: list[dict[str, Any]]) -> Figure:
    fig = Figure(figsize=FIGSIZE, dpi=BASE_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, acc_ax = fig.subplots(1, 2)
    marker = "o" if len(rows) <= 30 else None  # dots help read a short run; clutter a long one

    for split, colour in (("train", _TRAIN_COLOUR), ("val", _VAL_COLOUR)):
        label = "train" if split == "train" else "validation"
        loss_ax.plot(*_series(rows, f"{split}_loss"), color=colour, marker=marker, ms=3, label=label)
        acc_ax.plot(
            *_series(rows, f"{split}_top1", 100.0),
            color=colour, marker=marker, ms=3, label=f"{label} top-1",
        )
        acc_ax.plot(
            *_series(rows, f"{split}_top5", 100.0),
            color=colour, marker=marker, ms=3, ls="--", label=f"{label} top-5",
        )

    loss_ax.set_title("Loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy loss")
    acc_ax.set_title("Accuracy")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.set_ylim(0, 100)
    for ax in (loss_ax, acc_ax):
        ax.grid(True, color="#dddddd", linewidth=0.6)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(frameon=False, fontsize="small")
    return fig


# -- plots of numbers ------------------------------------------------------------------------


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Write a CSV table (a header row, then ``rows``; None as an empty cell), spreadsheet-safe
    by :func:`edvis.run.csv_text`'s rule; return ``path``."""
    _write(Path(path), csv_text(header, rows).encode("utf-8"))
    return Path(path)


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as sorted, indented UTF-8 JSON; return ``path``."""
    text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    _write(Path(path), text.encode("utf-8"))
    return Path(path)


def _save(fig: Figure, out_stem: Path) -> dict[str, Path]:
    """Write ``fig`` as ``out_stem.png`` (2x) and ``out_stem.svg``; return both paths."""
    png, svg = io.BytesIO(), io.BytesIO()
    # zlib level 3: half the time of the default level for about a tenth more bytes
    fig.savefig(png, format="png", dpi=BASE_DPI * PNG_SCALE, metadata=_PNG_METADATA, pil_kwargs={"compress_level": 3})
    fig.savefig(svg, format="svg", metadata=_SVG_METADATA)
    paths = {"png": out_stem.with_name(f"{out_stem.name}.png"), "svg": out_stem.with_name(f"{out_stem.name}.svg")}
    _write(paths["png"], png.getvalue())
    _write(paths["svg"], svg.getvalue())
    return paths


def _figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=BASE_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax: Any) -> None:
    ax.grid(True, color="#dddddd", linewidth=0.6)


def accuracy_by_setting(series: dict[str, tuple[list[int], list[float], list[float]]],
                        out_stem: Path) -> dict[str, Path]:
    """Top-1 accuracy per epoch, one line per setting (``{name: (epochs, top1, top5)}``, fractions).

    Writes ``.png``, ``.svg`` and ``.csv`` (columns setting, epoch, top1, top5) beside
    ``out_stem``. Raises ValueError when ``series`` is empty.
    """
    if not series:
        raise UsageError("no settings to plot")
    out_stem = Path(out_stem)
    rows = [(name, e, t1, t5) for name, (eps, top1, top5) in series.items() for e, t1, t5 in zip(eps, top1, top5)]
    paths = {"csv": write_csv(out_stem.with_name(f"{out_stem.name}.csv"), ("setting", "epoch", "top1", "top5"), rows)}
    with matplotlib.rc_context(_RC):
        fig = _figure(FIGSIZE)
        ax = fig.subplots()
        marker = "o" if max(len(v[0]) for v in series.values()) <= 30 else None
        for k, (name, (eps, top1, _)) in enumerate(series.items()):
            ax.plot(eps, [100 * v for v in top1], color=OKABE_ITO[k % len(OKABE_ITO)],
                    ls=_STYLES[(k // len(OKABE_ITO)) % len(_STYLES)], marker=marker, ms=3, label=name,
                    lw=2.0 if name == "clean" else 1.2)
        ax.set_title("Top-1 accuracy per setting")
        ax.set_xlabel("epoch")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_ylim(0, 100)
        ax.xaxis.get_major_locator().set_params(integer=True)
        _style(ax)
        ax.legend(frameon=False, fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
        paths.update(_save(fig, out_stem))
    return paths


def confidence_histogram(right: Sequence[int], wrong: Sequence[int], out_stem: Path,
                         auroc: float | None = None) -> dict[str, Path]:
    """Counts of right and wrong predictions per top-1 probability bin (equal-width bins over [0, 1]).

    Writes ``.png``, ``.svg`` and ``.csv`` (columns lower, upper, right, wrong). ``auroc``, when
    given, goes in the title.
    """
    bins = len(right)
    if bins == 0 or len(wrong) != bins:
        raise UsageError(f"right and wrong need the same number (> 0) of bins, got {len(right)} and {len(wrong)}")
    out_stem = Path(out_stem)
    edges = [round(b / bins, 6) for b in range(bins + 1)]
    rows = [(edges[b], edges[b + 1], right[b], wrong[b]) for b in range(bins)]
    paths = {"csv": write_csv(out_stem.with_name(f"{out_stem.name}.csv"), ("lower", "upper", "right", "wrong"), rows)}
    with matplotlib.rc_context(_RC):
        fig = _figure((6.4, 3.2))
        ax = fig.subplots()
        width = 1 / bins
        lefts = [b / bins for b in range(bins)]
        ax.bar(lefts, right, width=width, align="edge", color=_TRAIN_COLOUR, alpha=0.75, label="right", edgecolor="white")
        ax.bar(lefts, wrong, width=width, align="edge", color=_VAL_COLOUR, alpha=0.75, label="wrong", edgecolor="white")
        title = "Top-1 probability of right and wrong predictions"
        if auroc is not None:
            title += f" (AUROC {auroc:.3f})"
        ax.set_title(title)
        ax.set_xlabel("top-1 softmax probability")
        ax.set_ylabel("images")
        ax.set_xlim(0, 1)
        _style(ax)
        ax.legend(frameon=False, fontsize="small")
        paths.update(_save(fig, out_stem))
    return paths


def reliability_diagram(bins: Sequence[dict[str, Any]], out_stem: Path, ece: float | None = None) -> dict[str, Path]:
    """Accuracy against mean confidence per confidence bin, with the diagonal of perfect calibration.

    ``bins`` are analysis.json's reliability bins (``lower``, ``upper``, ``count``, ``accuracy``,
    ``confidence``; empty bins have None). Writes ``.png``, ``.svg`` and ``.csv``.
    """
    if not bins:
        raise UsageError("no reliability bins to plot")
    out_stem = Path(out_stem)
    cols = ("lower", "upper", "count", "accuracy", "confidence")
    paths = {"csv": write_csv(out_stem.with_name(f"{out_stem.name}.csv"), cols, [[b.get(c) for c in cols] for b in bins])}
    with matplotlib.rc_context(_RC):
        fig = _figure((4.0, 4.0))
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], color="#999999", ls="--", lw=1, label="calibrated")
        full = [b for b in bins if b.get("accuracy") is not None]
        ax.bar([b["lower"] for b in full], [b["accuracy"] for b in full],
               width=[b["upper"] - b["lower"] for b in full], align="edge", color=_TRAIN_COLOUR, alpha=0.8,
               edgecolor="white", label="accuracy")
        ax.plot([b["confidence"] for b in full], [b["accuracy"] for b in full], "o", color=_VAL_COLOUR, ms=3,
                label="mean confidence")
        ax.set_title("Reliability" + (f" (ECE {ece:.3f})" if ece is not None else ""))
        ax.set_xlabel("top-1 softmax probability")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        _style(ax)
        ax.legend(frameon=False, fontsize="small", loc="upper left")
        paths.update(_save(fig, out_stem))
    return paths


def class_heatmap(names: Sequence[str], epochs: Sequence[int], top1: np.ndarray, out_stem: Path) -> dict[str, Path]:
    """Top-1 accuracy of each class (rows, in the given order) at each epoch (columns), viridis.

    ``top1`` is (classes, epochs) of fractions (NaN for a class without images). Writes
    ``.png``, ``.svg`` and ``.csv`` (columns class, epoch, top1).
    """
    top1 = np.asarray(top1, dtype=np.float64)
    if top1.shape != (len(names), len(epochs)) or top1.size == 0:
        raise UsageError(f"top1 must be (classes, epochs) = ({len(names)}, {len(epochs)}), got {top1.shape}")
    out_stem = Path(out_stem)
    rows = [(names[c], epochs[e], None if math.isnan(top1[c, e]) else round(float(top1[c, e]), 4))
            for c in range(len(names)) for e in range(len(epochs))]
    paths = {"csv": write_csv(out_stem.with_name(f"{out_stem.name}.csv"), ("class", "epoch", "top1"), rows)}
    with matplotlib.rc_context(_RC):
        height = min(12.0, max(2.5, 0.16 * len(names) + 1.2))
        fig = _figure((8.0, height))
        ax = fig.subplots()
        image = ax.imshow(100 * np.ma.masked_invalid(top1), aspect="auto", cmap="viridis", vmin=0, vmax=100,
                          interpolation="nearest", extent=(-0.5, len(epochs) - 0.5, len(names) - 0.5, -0.5))
        ax.set_xlabel("epoch")
        ticks = sorted(set(np.rint(np.linspace(0, len(epochs) - 1, min(len(epochs), 10))).astype(int).tolist()))
        ax.set_xticks(ticks, [str(epochs[t]) for t in ticks])
        if len(names) <= 40:
            ax.set_yticks(range(len(names)), [str(n) for n in names], fontsize="small")
            for label in ax.get_yticklabels():
                label.set_parse_math(False)
        else:
            ax.set_ylabel(f"{len(names)} classes")
            ax.set_yticks([])
        ax.set_title("Top-1 accuracy of each class per epoch")
        fig.colorbar(image, ax=ax, label="top-1 accuracy (%)", shrink=0.8)
        paths.update(_save(fig, out_stem))
    return paths


# -- mosaics of images and maps ---------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One tile of a map mosaic: an image, a map over it (or alone), and two lines of text."""

    image: np.ndarray | None = None  # (H, W, 3) uint8
    map: np.ndarray | None = None  # (S, S) uint8: the map scaled to its own maximum
    top: str = ""
    bottom: str = ""
    box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) in image pixels, inclusive


MOSAIC_TILE = 192  # pixels per tile in the mosaic (3x the 64 px images)
_MOSAIC_ALPHA = 0.5


def _tile_pixels(cell: Cell, lut: np.ndarray, size: int) -> np.ndarray:
    """The (size, size, 3) uint8 picture of a cell: image (nearest), map (bilinear) over it."""
    out = np.full((size, size, 3), 255.0)
    if cell.image is not None:
        h, w = cell.image.shape[:2]
        rows = np.arange(size) * h // size
        cols = np.arange(size) * w // size
        out = cell.image[rows][:, cols].astype(np.float64)
    if cell.map is not None:
        m = np.asarray(cell.map, dtype=np.float64)
        wr, wc = bilinear_matrix(m.shape[0], size), bilinear_matrix(m.shape[1], size)
        up = np.clip(np.rint(wr @ m @ wc.T), 0, 255).astype(np.uint8)
        colour = lut[up].astype(np.float64)
        out = colour if cell.image is None else (1 - _MOSAIC_ALPHA) * out + _MOSAIC_ALPHA * colour
    if cell.box is not None and cell.image is not None:
        h, w = cell.image.shape[:2]
        bx0, by0, bx1, by1 = cell.box
        # inclusive image pixels -> inclusive tile pixels
        x0, x1 = max(bx0 * size // w, 0), min((bx1 + 1) * size // w - 1, size - 1)
        y0, y1 = max(by0 * size // h, 0), min((by1 + 1) * size // h - 1, size - 1)
        white = np.array([255.0, 255.0, 255.0])
        out[y0:y1 + 1, [x0, x1]] = white
        out[[y0, y1], x0:x1 + 1] = white
    return np.rint(out).astype(np.uint8)


def map_mosaic(rows: Sequence[Sequence[Cell]], out_stem: Path, title: str, data: Any) -> dict[str, Path]:
    """A grid of images and viridis maps with a line of text above and below each tile.

    ``rows`` may differ in length. Writes ``.png``, ``.svg`` and ``.json`` (``data``, the
    numbers behind the figure) beside ``out_stem``; every map figure has a colour bar from 0 to
    the map's own maximum. Raises ValueError when there is nothing to draw.

    The mosaic is laid out in pixels of the 2x PNG (one mosaic pixel is one PNG pixel, so the
    images are not resampled twice), with no layout engine: a tile is 0.96 in wide.
    """
    if not rows or not any(rows):
        raise UsageError("no tiles to draw")
    out_stem = Path(out_stem)
    lut = viridis_lut()
    t = MOSAIC_TILE
    gap_x, gap_y = 10, 56  # room for a line of text above and below each tile
    ncols = max(len(r) for r in rows)
    width, height = ncols * (t + gap_x), len(rows) * (t + gap_y)
    # RGBA, opaque: matplotlib resamples RGB through a float64 copy (about 300 MB for a 17-column
    # mosaic), opaque RGBA through float32 and without premultiplying; the pixels are the same.
    canvas = np.full((height, width, 4), 255, dtype=np.uint8)
    texts = []
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            y, x = r * (t + gap_y) + gap_y // 2, c * (t + gap_x)
            if cell.image is not None or cell.map is not None:
                canvas[y:y + t, x:x + t, :3] = _tile_pixels(cell, lut, t)
            texts.append((x + t / 2, y - 4, cell.top, "bottom"))
            texts.append((x + t / 2, y + t + 4, cell.bottom, "top"))
    paths = {"json": write_json(out_stem.with_name(f"{out_stem.name}.json"), data)}
    dpi = BASE_DPI * PNG_SCALE
    left = 16
    bar_w, right, top, bottom = 28, 230, 70, 16
    fig_w, fig_h = left + width + right, top + height + bottom
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(fig_w / dpi, fig_h / dpi), dpi=BASE_DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((left / fig_w, bottom / fig_h, width / fig_w, height / fig_h))
        ax.imshow(canvas, interpolation="nearest", extent=(0, width, height, 0))
        ax.set_axis_off()
        for x, y, text, va in texts:
            if text:
                ax.text(x, y, text, ha="center", va=va, fontsize=6.5, parse_math=False)
        fig.text(left / fig_w, 1 - 20 / fig_h, title, ha="left", va="top", fontsize=9, parse_math=False)
        bar_h = min(height - gap_y, 520)
        cax = fig.add_axes(((left + width + 24) / fig_w, (bottom + (height - bar_h) / 2) / fig_h,
                            bar_w / fig_w, bar_h / fig_h))
        bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap="viridis"),
                           cax=cax)
        bar.set_ticks([0, 0.5, 1], labels=["0", "½ max", "max"])
        bar.set_label("map value, each map scaled to its maximum", fontsize=6.5)
        bar.ax.tick_params(labelsize=6.5)
        paths.update(_save(fig, out_stem))
    return paths
