"""The analysis's outputs: gathered numbers → ``analysis.json``'s records and the CSV tables.

No file access and no torch: :mod:`edvis.analyze.stage` streams the store into a
:class:`Gathered` (and a :class:`Compared` for ``--compare``), :func:`build_outputs` shapes
them, and the stage writes what comes back. Every float is rounded to ``DIGITS`` decimals;
NaN and infinity become ``null`` in JSON and an empty cell in CSV. JSON keeps every text exactly;
in CSV a text cell is made spreadsheet-safe (:mod:`edvis.run.tables`: a leading ``=``, ``+``,
``-``, ``@``, tab or carriage return gets a ``'`` in front) and double-quoted. The schema is
``docs/analysis.md``'s; ``SCHEMA_VERSION`` changes whenever it does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edvis.analyze import metrics as A
from edvis.data import CLEAN
from edvis.run.tables import csv_text

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
CONFUSED_PAIRS = 20  # pairs kept per setting
PAIR_IMAGES = 100  # image ids kept per pair and direction
DIGITS = 4  # decimals of every float written
CE_REFERENCE = (
    "relative corruption error: the mean top-1 error over the sweep's rendered severities "
    "divided by the same model's top-1 error on the clean images at the same epoch "
    "(not ImageNet-C's AlexNet-normalised mCE)"
)

CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "epochs.csv": ("setting", "kind", "severity", "epoch", "images", "top1", "top5", "mean_confidence",
                   "ece", "auroc", "sharpness", "spearman_right", "spearman_wrong", "n_right", "n_wrong",
                   "top1_drop", "flip_rate", "p_true_change", "map_corr"),
    "classes.csv": ("index", "wnid", "name", "images", "top1", "top5", "mean_top1", "epoch_50",
                    "epoch_90", "pattern_formed", "learned_rank"),
    "class_epochs.csv": ("setting", "epoch", "index", "wnid", "top1", "top5", "similarity", "top1_drop",
                         "flip_rate", "p_true_change", "map_corr"),
    "confusion.csv": ("setting", "epoch", "true", "true_wnid", "predicted", "predicted_wnid", "count"),
    "confused_pairs.csv": ("setting", "epoch", "rank", "a", "a_wnid", "b", "b_wnid", "a_as_b", "b_as_a",
                           "total", "images_a_as_b", "images_b_as_a"),
    "reliability.csv": ("setting", "epoch", "bin", "lower", "upper", "count", "accuracy", "confidence"),
    "corruption.csv": ("epoch", "kind", "severities", "mean_error", "clean_error", "relative_ce"),
    "localisation.csv": ("model", "epoch", "images", "top1", "top5", "pointing", "centre_pointing",
                         "energy_in_box", "energy_centre", "energy_uniform", "pointing_vs_centre_lo",
                         "pointing_vs_centre_hi", "small_images", "pointing_small", "centre_pointing_small"),
}
# Per-class metrics kept per (setting, epoch); the shift metrics only for perturbed settings.
CLASS_METRICS = ("top1", "top5", "similarity", "top1_drop", "flip_rate", "p_true_change", "map_corr")
SHIFT_METRICS = ("top1_drop", "flip_rate", "p_true_change", "map_corr")
LOC_METRICS = ("pointing", "centre_pointing", "energy_in_box", "energy_centre", "energy_uniform",
               "pointing_vs_centre_lo", "pointing_vs_centre_hi", "small_images", "pointing_small",
               "centre_pointing_small")
BIN_FIELDS = ("bin", "lower", "upper", "count", "accuracy", "confidence")
PAIR_FIELDS = ("a_as_b", "b_as_a", "total", "images_a_as_b", "images_b_as_a")


@dataclass
class Gathered:
    """Everything computed from one store, before it is shaped for output."""

    epochs: list[int]
    settings: list[str]
    counts: np.ndarray  # (C,) images per class
    rows: list[dict[str, Any]] = field(default_factory=list)  # per (setting, epoch)
    reliability: list[dict[str, Any]] = field(default_factory=list)  # per (setting, epoch, bin)
    per_class: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # setting → metric → (E, C)
    confusion: dict[str, np.ndarray] = field(default_factory=dict)  # setting → (C, C) at the final epoch
    pairs: dict[str, list[dict]] = field(default_factory=dict)  # setting → confused pairs at the final epoch
    histograms: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # setting → (right, wrong)
    localisation: list[dict[str, Any]] = field(default_factory=list)  # per epoch, clean


@dataclass
class Compared:
    """What the analysis shows of a ``--compare`` run: its clean epochs (accuracy and
    localisation) and the accuracy of every setting it rendered at its final clean epoch."""

    model: str
    epochs: list[dict[str, Any]]  # per clean epoch: epoch, images, top1, top5 and LOC_METRICS
    settings: list[dict[str, Any]]  # per setting at the final clean epoch: setting, epoch, top1, top5


@dataclass(frozen=True)
class Classes:
    """The classes' identifiers and names, by class index."""

    wnids: list[str]
    names: list[str]

    def record(self, c: int, prefix: str = "") -> dict[str, Any]:
        return {f"{prefix}index" if prefix else "index": c, f"{prefix}wnid": self.wnids[c], f"{prefix}name": self.names[c]}


# -- numbers and cells ----------------------------------------------------------------------------


def _num(x: Any) -> Any:
    """A JSON-safe number: NaN/inf → None, numpy scalars → Python, floats rounded."""
    if x is None or isinstance(x, (bool, np.bool_)):
        return None if x is None else bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return round(x, DIGITS) if math.isfinite(x) else None


def _epoch(x: float) -> int | None:
    return None if math.isnan(x) else int(x)


def _clean_record(r: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (str, list, dict)) else _num(v)) for k, v in r.items()}


def _ints(values: Iterable[Any]) -> list[int]:
    return [int(v) for v in values]


def _number(x: float) -> str:
    """A float cell: rounded to ``DIGITS`` decimals, always written with them."""
    return f"{round(float(x), DIGITS):.{DIGITS}f}"


def _csv(columns: tuple[str, ...], rows: Iterable[dict[str, Any]]) -> str:
    """A CSV table through :func:`edvis.run.tables.csv_text`: text cells (class names, wnids,
    settings, model names) made spreadsheet-safe and quoted, numbers as edvis formats them."""
    return csv_text(columns, ([r.get(c) for c in columns] for r in rows), number=_number)


def _top(rows: list[dict[str, Any]], epoch: int) -> dict[str, Any]:
    r = next(r for r in rows if r["setting"] == CLEAN and r["epoch"] == epoch)
    return {"top1": r["top1"], "top5": r["top5"]}


# -- the parts --------------------------------------------------------------------------------


def corruption(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (epoch, sweep kind): the sweep's errors and its relative corruption error."""
    clean = {r["epoch"]: 1 - r["top1"] for r in rows if r["setting"] == CLEAN}
    sweeps: dict[tuple[int, str], dict[int, float]] = {}
    for r in rows:
        if r["severity"] is not None:
            sweeps.setdefault((r["epoch"], r["kind"]), {})[r["severity"]] = 1 - r["top1"]
    out = []
    for (epoch, kind), by_sev in sorted(sweeps.items()):
        sev = sorted(by_sev)
        errors = np.array([by_sev[s] for s in sev])
        out.append({"epoch": epoch, "kind": kind, "severities": sev, "errors": errors.tolist(),
                    "mean_error": float(errors.mean()), "clean_error": clean[epoch],
                    "relative_ce": A.relative_ce(errors, clean[epoch])})
    return out


def class_rows(g: Gathered, cls: Classes, threshold: float) -> tuple[list[dict[str, Any]], np.ndarray]:
    """One row per class (final clean accuracy and learning dynamics) and the learning order."""
    epochs = np.array(g.epochs)
    C = len(cls.wnids)
    clean = g.per_class[CLEAN]
    e50 = A.first_reaching(clean["top1"], epochs, 0.5)
    e90 = A.first_reaching(clean["top1"], epochs, 0.9)
    formed = A.pattern_formed(clean["similarity"], epochs, threshold)
    mean_top1 = np.array([A.nanmean(clean["top1"][:, c]) for c in range(C)])
    order = A.learning_order(e90, mean_top1)
    rank = np.empty(C, dtype=np.int64)
    rank[order] = np.arange(1, C + 1)
    rows = [{
        **cls.record(c), "images": int(g.counts[c]), "top1": clean["top1"][-1, c], "top5": clean["top5"][-1, c],
        "mean_top1": mean_top1[c], "epoch_50": _epoch(e50[c]), "epoch_90": _epoch(e90[c]),
        "pattern_formed": _epoch(formed[c]), "learned_rank": int(rank[c]),
    } for c in range(C)]
    return rows, order


def class_epoch_rows(g: Gathered, cls: Classes) -> Iterator[dict[str, Any]]:
    """One row per rendered (setting, epoch) and class; generated: 144,000 rows at full size."""
    rendered = {(r["setting"], r["epoch"]) for r in g.rows}
    for s in g.settings:
        pc = g.per_class[s]
        for ei, epoch in enumerate(g.epochs):
            if (s, epoch) in rendered:
                for c in range(len(cls.wnids)):
                    yield {"setting": s, "epoch": epoch, "index": c, "wnid": cls.wnids[c],
                           **{m: pc[m][ei, c] for m in CLASS_METRICS}}


def confusion_rows(g: Gathered, cls: Classes) -> list[dict[str, Any]]:
    """The non-zero cells of each setting's final confusion matrix."""
    final = g.epochs[-1]
    out = []
    for s in g.settings:
        if s in g.confusion:
            m = g.confusion[s]
            out += [{"setting": s, "epoch": final, "true": int(t), "true_wnid": cls.wnids[t], "predicted": int(p),
                     "predicted_wnid": cls.wnids[p], "count": int(m[t, p])} for t, p in zip(*np.nonzero(m))]
    return out


def pair_records(g: Gathered, cls: Classes) -> list[dict[str, Any]]:
    """Per setting at the final epoch: ``{setting, epoch, pairs}`` with the pairs ranked."""
    out = []
    for s in g.settings:
        if s not in g.confusion:
            continue
        pairs = []
        for i, pr in enumerate(g.pairs[s], 1):
            rec = {"rank": i, **cls.record(pr["a"], "a_"), **cls.record(pr["b"], "b_"), **{k: pr[k] for k in PAIR_FIELDS}}
            rec["a"], rec["b"] = rec.pop("a_index"), rec.pop("b_index")
            pairs.append(rec)
        out.append({"setting": s, "epoch": g.epochs[-1], "pairs": pairs})
    return out


def localisation_rows(g: Gathered, model: str, compare: Compared | None) -> list[dict[str, Any]]:
    """Per (model, epoch): clean accuracy and localisation, this run's epochs first."""
    rows = [{"model": model, **r, **_top(g.rows, r["epoch"])} for r in g.localisation]
    if compare is not None:
        rows += [{"model": compare.model, **r} for r in compare.epochs]
    return rows


def csv_tables(g: Gathered, cls: Classes, classes: list[dict[str, Any]], pairs: list[dict[str, Any]],
               ce: list[dict[str, Any]], loc_rows: list[dict[str, Any]]) -> dict[str, str]:
    """The CSV texts by file name."""
    pair_rows = [{"setting": p["setting"], "epoch": p["epoch"], **rec} for p in pairs for rec in p["pairs"]]
    return {
        "epochs.csv": _csv(CSV_COLUMNS["epochs.csv"], g.rows),
        "classes.csv": _csv(CSV_COLUMNS["classes.csv"], classes),
        "class_epochs.csv": _csv(CSV_COLUMNS["class_epochs.csv"], class_epoch_rows(g, cls)),
        "confusion.csv": _csv(CSV_COLUMNS["confusion.csv"], confusion_rows(g, cls)),
        "confused_pairs.csv": _csv(CSV_COLUMNS["confused_pairs.csv"], pair_rows),
        "reliability.csv": _csv(CSV_COLUMNS["reliability.csv"], g.reliability),
        "corruption.csv": _csv(CSV_COLUMNS["corruption.csv"], ce),
        "localisation.csv": _csv(CSV_COLUMNS["localisation.csv"], loc_rows),
    }


def definitions(threshold: float) -> dict[str, Any]:
    """The constants and one-line definitions the numbers depend on."""
    return {
        "ece_bins": A.ECE_BINS,
        "histogram_bins": A.HIST_BINS,
        "pattern_threshold": threshold,
        "centre_sigma": A.CENTRE_SIGMA,
        "confused_pairs": CONFUSED_PAIRS,
        "pair_images": PAIR_IMAGES,
        "digits": DIGITS,
        "sharpness": "peak-to-mean of the top-1 class's map shifted to a minimum of 0",
        "energy": "the true class's map upsampled bilinearly to the image and clipped at 0",
        "ce_reference": CE_REFERENCE,
    }


def class_records(g: Gathered, classes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """analysis.json's ``classes``: each class row with its clean series per epoch and its
    figures under each perturbed setting at the final epoch."""
    clean = g.per_class[CLEAN]
    perturbed = [s for s in g.settings[1:] if s in g.confusion]
    out = []
    for c, r in enumerate(classes):
        settings = [_clean_record({"setting": s, **{m: g.per_class[s][m][-1, c] for m in ("top1", "top5", *SHIFT_METRICS)}})
                    for s in perturbed]
        out.append({**_clean_record(r),
                    "top1_by_epoch": [_num(v) for v in clean["top1"][:, c]],
                    "top5_by_epoch": [_num(v) for v in clean["top5"][:, c]],
                    "similarity_by_epoch": [_num(v) for v in clean["similarity"][:, c]],
                    "settings": settings})
    return out


def reliability_records(g: Gathered, final_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting at the final epoch: its ECE and reliability bins."""
    final = g.epochs[-1]
    return [{"setting": r["setting"], "epoch": final, "ece": _num(r["ece"]),
             "bins": [_clean_record({k: b[k] for k in BIN_FIELDS})
                      for b in g.reliability if b["setting"] == r["setting"] and b["epoch"] == final]}
            for r in final_rows]


def histogram_records(g: Gathered) -> list[dict[str, Any]]:
    """Per setting at the final epoch: right and wrong counts per confidence bin."""
    return [{"setting": s, "epoch": g.epochs[-1], "right": _ints(g.histograms[s][0]), "wrong": _ints(g.histograms[s][1])}
            for s in g.settings if s in g.histograms]


def corruption_record(ce: list[dict[str, Any]], final: int) -> dict[str, Any]:
    """The severity sweeps at the final epoch and their mean relative corruption error."""
    at_final = [r for r in ce if r["epoch"] == final]
    return {
        "reference": CE_REFERENCE,
        "epoch": final,
        "kinds": [_clean_record(r) | {"errors": [_num(v) for v in r["errors"]]} for r in at_final],
        "mean_relative_ce": _num(A.nanmean([r["relative_ce"] for r in at_final])),
    }


def models_row(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's accuracy and localisation at the last of its clean epochs ``rows``."""
    last = rows[-1] if rows else {}
    return _clean_record({"model": name, "epoch": last.get("epoch"), **{k: last.get(k) for k in ("top1", "top5", *LOC_METRICS)}})


def compare_record(compare: Compared | None) -> dict[str, Any] | None:
    return None if compare is None else {
        "model": compare.model,
        "epochs": [_clean_record(r) for r in compare.epochs],
        "settings": [_clean_record(r) for r in compare.settings],
    }


def build_outputs(g: Gathered, cls: Classes, threshold: float, model: str,
                  compare: Compared | None) -> tuple[dict[str, Any], dict[str, str]]:
    """analysis.json (as a dict) and the CSV texts by file name, from the gathered numbers."""
    final = g.epochs[-1]
    classes, order = class_rows(g, cls, threshold)
    final_rows = [r for r in g.rows if r["epoch"] == final]
    pairs = pair_records(g, cls)
    ce = corruption(g.rows)
    loc_rows = localisation_rows(g, model, compare)
    own = loc_rows[: len(g.localisation)]
    doc = {
        "schema": SCHEMA_VERSION,
        "definitions": definitions(threshold),
        "model": model,
        "images": int(g.counts.sum()),
        "classes_count": len(cls.wnids),
        "epochs": g.epochs,
        "final_epoch": final,
        "settings": g.settings,
        "table": [_clean_record(r) for r in final_rows],
        "epoch_rows": [_clean_record(r) for r in g.rows],
        "classes": class_records(g, classes),
        "learning_order": [_clean_record({"rank": i + 1, **classes[c]}) for i, c in enumerate(order)],
        "reliability": reliability_records(g, final_rows),
        "confidence_histogram": histogram_records(g),
        "confusion": {"setting": CLEAN, "epoch": final, "matrix": [_ints(row) for row in g.confusion[CLEAN]]},
        "confused_pairs": pairs,
        "corruption": corruption_record(ce, final),
        "localisation": {"has_boxes": bool(g.localisation), "epochs": [_clean_record(r) for r in own]},
        "compare": compare_record(compare),
        "models": [models_row(model, own or [{"epoch": final, **_top(g.rows, final)}])]
        + ([] if compare is None else [models_row(compare.model, compare.epochs)]),
    }
    return doc, csv_tables(g, cls, classes, pairs, ce, loc_rows)
