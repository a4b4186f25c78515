"""Summaries of the faithfulness curves (``edvis faithfulness``): arrays in, numbers out. Numpy only.

* :func:`auc`: the area under a curve by the trapezoid rule over the fraction of cells deleted
  or inserted (0 … 1), per image. For deletion (Petsiuk et al., RISE, 2018) lower is more
  faithful, for insertion higher.
* :func:`average_drop`: 100 · mean over images of max(0, Y − O) / Y, and :func:`increase` (in
  confidence): 100 · mean of [O > Y] (Chattopadhay et al., Grad-CAM++, 2018), with Y the true
  class's probability on the image and O on the image times the method's mask.

Against each reference (``centre``, ``random``) every other method's row holds the paired
difference of its AUCs on the images both cover, ``deletion_vs_<ref>`` and
``insertion_vs_<ref>``, with 95% bounds ``…_lo`` and ``…_hi``
(:func:`edvis.analyze.metrics.paired_interval`): a method beats a reference on deletion when the
whole interval is below 0, on insertion when it is above 0.

Images a method does not cover (NaN in its rows) are left out of its means. :func:`section`
shapes the files of ``RUN/faithfulness`` into analysis.json's ``faithfulness`` record and the
rows of faithfulness.csv; it reads no file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edvis.analyze.metrics import class_means, nanmean, paired_interval
from edvis.analyze.outputs import _clean_record, _csv, _num
from edvis.run import REFERENCE_MAPS

CSV_NAME = "faithfulness.csv"
VERSUS = tuple(f"{k}_vs_{r}{b}" for r in REFERENCE_MAPS for k in ("deletion", "insertion") for b in ("", "_lo", "_hi"))
CSV_COLUMNS = ("setting", "epoch", "method", "images", "covered", "deletion_auc", "insertion_auc", "average_drop",
               "increase", *VERSUS)
REFERENCES = {
    "deletion": "Petsiuk, Das and Saenko, RISE: Randomized Input Sampling for Explanation of Black-box Models, "
                "BMVC 2018: p_true as the top-ranked cells are replaced by a blurred copy; AUC over the fraction "
                "of cells, lower is more faithful",
    "insertion": "the same paper: p_true as the top-ranked cells are restored into the blurred copy; higher is "
                 "more faithful",
    "average_drop": "Chattopadhay et al., Grad-CAM++, WACV 2018: 100 * mean(max(0, Y - O) / Y), O on the image "
                    "times the map upsampled bilinearly and min-max scaled to [0, 1]",
    "increase": "the same paper: 100 * mean(O > Y), 'increase in confidence'",
}


def fractions(counts: np.ndarray, cells: int) -> np.ndarray:
    """(T + 1,) the fraction of cells deleted or inserted at each step."""
    return np.asarray(counts, dtype=np.float64) / cells


def auc(curve: np.ndarray, fracs: np.ndarray) -> np.ndarray:
    """Trapezoid area of curve(s) (…, T + 1) over ``fracs`` (T + 1,); NaN where a curve has a NaN."""
    c = np.asarray(curve, dtype=np.float64)
    dx = np.diff(np.asarray(fracs, dtype=np.float64))
    return ((c[..., 1:] + c[..., :-1]) / 2 * dx).sum(axis=-1)


def average_drop(full: np.ndarray, masked: np.ndarray) -> float:
    """100 · mean of max(0, Y − O) / Y over the images where both are known (NaN: none)."""
    y, o = np.asarray(full, np.float64), np.asarray(masked, np.float64)
    ok = ~(np.isnan(y) | np.isnan(o))
    return float(100 * np.mean(np.maximum(0, y[ok] - o[ok]) / y[ok])) if ok.any() else float("nan")


def increase(full: np.ndarray, masked: np.ndarray) -> float:
    """100 · the share of images where O > Y (NaN: none known)."""
    y, o = np.asarray(full, np.float64), np.asarray(masked, np.float64)
    ok = ~(np.isnan(y) | np.isnan(o))
    return float(100 * np.mean(o[ok] > y[ok])) if ok.any() else float("nan")


def method_rows(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """One file's per-method means: images, covered, deletion_auc, insertion_auc, average_drop, increase."""
    fr = fractions(step_counts(meta), meta["map_size"] ** 2)
    methods = list(meta["methods"])
    covered = np.asarray(arrays["covered"], dtype=bool)
    aucs = {k: np.where(covered, auc(arrays[k], fr), np.nan) for k in ("deletion", "insertion")}  # (M, K)
    rows = []
    for m, method in enumerate(methods):
        cov = covered[m]
        row = {"setting": meta["setting"], "epoch": meta["epoch"], "method": method,
               "images": len(cov), "covered": int(cov.sum()),
               "deletion_auc": nanmean(aucs["deletion"][m][cov]),
               "insertion_auc": nanmean(aucs["insertion"][m][cov]),
               "average_drop": average_drop(arrays["full"][cov], arrays["masked"][m][cov]),
               "increase": increase(arrays["full"][cov], arrays["masked"][m][cov])}
        for ref in REFERENCE_MAPS:
            if method in REFERENCE_MAPS or ref not in methods:
                continue
            r = methods.index(ref)
            for k in ("deletion", "insertion"):  # NaN where either leaves the image out
                mean, lo, hi = paired_interval(aucs[k][m] - aucs[k][r])
                row |= {f"{k}_vs_{ref}": mean, f"{k}_vs_{ref}_lo": lo, f"{k}_vs_{ref}_hi": hi}
        rows.append(row)
    return rows


def step_counts(meta: dict[str, Any]) -> np.ndarray:
    """The cells deleted at each step, as the file records them (``counts``); for a file without
    them, as edvis.faithfulness counts them: round(t · G² / T), half up."""
    if "counts" in meta:
        return np.asarray(meta["counts"], dtype=np.int64)
    cells, steps = meta["map_size"] ** 2, meta["steps"]
    return np.floor(np.arange(steps + 1) * cells / steps + 0.5).astype(np.int64)


def mean_curves(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Per method, the mean deletion and insertion curves over the images it covers."""
    fr = fractions(step_counts(meta), meta["map_size"] ** 2)
    out = []
    for m, method in enumerate(meta["methods"]):
        cov = arrays["covered"][m]
        curves = {k: [_num(v) for v in (np.nanmean(arrays[k][m][cov], axis=0) if cov.any() else np.full(len(fr), np.nan))]
                  for k in ("deletion", "insertion")}
        out.append({"setting": meta["setting"], "epoch": meta["epoch"], "method": method,
                    "fractions": [_num(f) for f in fr], **curves})
    return out


def class_aucs(arrays: dict[str, np.ndarray], meta: dict[str, Any], classes: int) -> list[dict[str, Any]]:
    """Per method and class, the mean AUCs over the class's covered images (null: none)."""
    fr = fractions(step_counts(meta), meta["map_size"] ** 2)
    labels = np.asarray(arrays["labels"], np.int64)
    out = []
    for m, method in enumerate(meta["methods"]):
        cov = arrays["covered"][m]
        per = {k: class_means(np.where(cov, auc(arrays[k][m], fr), np.nan), labels, classes) for k in ("deletion", "insertion")}
        counts = np.bincount(labels[cov], minlength=classes)
        out += [_clean_record({"setting": meta["setting"], "epoch": meta["epoch"], "method": method, "index": c,
                               "images": int(counts[c]), "deletion_auc": per["deletion"][c],
                               "insertion_auc": per["insertion"][c]})
                for c in range(classes) if (labels == c).any()]
    return out


def section(files: list[tuple[dict[str, np.ndarray], dict[str, Any]]], classes: int) -> tuple[dict[str, Any], str]:
    """analysis.json's ``faithfulness`` record and faithfulness.csv's text from the files'
    (arrays, meta), which must share their parameters (steps, images, seed, sizes)."""
    files = sorted(files, key=lambda f: (f[1]["setting"] != "clean", f[1]["setting"], f[1]["epoch"]))
    metas = [m for _, m in files]
    rows = [r for a, m in files for r in method_rows(a, m)]
    methods = list(dict.fromkeys(name for m in metas for name in m["methods"]))
    settings = list(dict.fromkeys(m["setting"] for m in metas))
    final = {s: max(m["epoch"] for m in metas if m["setting"] == s) for s in settings}
    first = metas[0]
    record = {
        "definitions": REFERENCES,
        "methods": methods,
        "steps": first["steps"],
        "images": first["images"],
        "seed": first["seed"],
        "sigma": first["sigma"],
        "map_size": first["map_size"],
        "settings": settings,
        "epochs": sorted({m["epoch"] for m in metas}),
        "rows": [_clean_record(r) for r in rows],
        "curves": [c for a, m in files for c in mean_curves(a, m)],
        "classes": [c for a, m in files if m["epoch"] == final[m["setting"]] for c in class_aucs(a, m, classes)],
    }
    return record, _csv(CSV_COLUMNS, rows)
