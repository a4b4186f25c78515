"""Figures for the site, drawn with matplotlib's Agg canvas. Imports no torch.

Figures are built with the object-oriented API on a ``FigureCanvasAgg``; pyplot is never
imported, so no display is needed and the process's chosen backend is left alone.

Every figure is written three ways beside one stem: ``.png`` (at twice its nominal size, for
sharp display on high-density screens), ``.svg`` and ``.csv`` (the numbers behind it), and
the bytes depend only on the inputs: no dates, no random ids, no software stamps.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from edvis import atomic

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
        raise ValueError("no metrics to plot (metrics.jsonl has no finished epoch)")
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
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CURVE_COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(col) is None else row[col] for col in CURVE_COLUMNS])
    return buf.getvalue()


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
