"""The analysis stage: a run's render store → ``RUN/analysis/``. Imports no torch.

```
RUN/analysis/
  analysis.json         everything the site shows, as lists of records (schema in docs/analysis.md)
  epochs.csv            one row per (setting, epoch): accuracy, calibration, sharpness, shift from clean
  classes.csv           one row per class: final accuracy and learning dynamics (clean images)
  class_epochs.csv      one row per (setting, epoch, class)
  confusion.csv         the final epoch's confusion matrix per setting, non-zero cells only
  confused_pairs.csv    the most confused class pairs per setting at the final epoch, with image ids
  reliability.csv       reliability-diagram bins per (setting, epoch)
  corruption.csv        severity sweeps as relative corruption error, per epoch
  localisation.csv      pointing game and map energy per epoch, for this run and a compared one
```

The store is read one unit at a time, epoch by epoch: in memory are at most the epoch's clean
unit, one perturbed unit, the final epoch's true-class maps and per-class summaries. The
numbers come from :mod:`edvis.analyze.metrics`; this module only streams, gathers and writes.
``analysis.json`` is written last and carries a digest of everything it was computed from
(the stores' manifests, every unit's size and modification time, the parameters and this
code), so a rerun with nothing changed returns at once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edvis.analyze import metrics as A
from edvis.data import CLEAN, order_settings, setting_kind
from edvis.errors import EdvisError, UsageError
from edvis.run import RenderStore, Run, RunError, Unit, atomic, model_label

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
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
                         "energy_in_box", "energy_centre", "energy_uniform"),
}
# Per-class metrics kept per (setting, epoch); the shift metrics only for perturbed settings.
CLASS_METRICS = ("top1", "top5", "similarity", "top1_drop", "flip_rate", "p_true_change", "map_corr")
SHIFT_METRICS = ("top1_drop", "flip_rate", "p_true_change", "map_corr")
LOC_METRICS = ("pointing", "centre_pointing", "energy_in_box", "energy_centre", "energy_uniform")


class AnalysisError(EdvisError):
    """The analysis cannot be computed from what is on disk; names the file or argument at fault."""


# -- reading ----------------------------------------------------------------------------------


@dataclass
class ImageStats:
    """What the analysis needs of one unit, per validation image."""

    pred: np.ndarray  # (N,) int64 top-1 class
    correct1: np.ndarray  # (N,) bool
    correct5: np.ndarray  # (N,) bool
    conf: np.ndarray  # (N,) float64 top-1 probability
    p_true: np.ndarray  # (N,) float64 true-class probability
    map_true: np.ndarray  # (N, S, S) float16
    map_pred: np.ndarray  # (N, S, S) float16


def read_stats(store: RenderStore, unit: Unit, labels: np.ndarray, classes: int, map_size: int) -> ImageStats:
    """Read one unit and check its shapes against the manifest (an error names the file)."""
    a = store.read(unit, optional=())  # not the clean units' top-5 maps: unused here
    n = len(labels)
    want = {"probs": (n, classes), "map_true": (n, map_size, map_size), "map_pred": (n, map_size, map_size)}
    for key, shape in want.items():
        if a[key].shape != shape:
            raise AnalysisError(f"{store.path(unit)}: {key} has shape {a[key].shape}, the manifest implies {shape}")
    if a["top5"].shape[0] != n or a["top5_prob"].shape[0] != n:
        raise AnalysisError(f"{store.path(unit)}: top5 has {a['top5'].shape[0]} rows, the manifest {n} images")
    top = a["top5"].astype(np.int64)
    return ImageStats(
        pred=top[:, 0],
        correct1=top[:, 0] == labels,
        correct5=A.topk_correct(top, labels, 5),
        conf=a["top5_prob"][:, 0].astype(np.float64),
        p_true=a["probs"][np.arange(n), labels].astype(np.float64),
        map_true=a["map_true"],
        map_pred=a["map_pred"],
    )


# -- gathering --------------------------------------------------------------------------------


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
    localisation: list[dict[str, Any]] = field(default_factory=list)  # per epoch, clean


def unit_row(st: ImageStats, labels: np.ndarray, classes: int, clean: ImageStats | None,
             ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One unit's summary row, its per-class (C,) metrics and its reliability bins; the shift
    from the clean images too when ``clean`` (the same epoch's clean unit) is given."""
    sharp = A.sharpness(st.map_pred)
    right, wrong = st.correct1, ~st.correct1
    row: dict[str, Any] = {
        "images": len(labels),
        "top1": st.correct1.mean() if len(labels) else math.nan,
        "top5": st.correct5.mean() if len(labels) else math.nan,
        "mean_confidence": A.nanmean(st.conf),
        "ece": A.ece(st.conf, st.correct1),
        "auroc": A.auroc(st.conf, st.correct1),
        "sharpness": A.nanmean(sharp),
        "spearman_right": A.spearman(sharp[right], st.conf[right]),
        "spearman_wrong": A.spearman(sharp[wrong], st.conf[wrong]),
        "n_right": int(right.sum()),
        "n_wrong": int(wrong.sum()),
    }
    cls = {"top1": A.class_means(st.correct1, labels, classes),
           "top5": A.class_means(st.correct5, labels, classes)}
    if clean is not None:
        per_image = {
            "top1_drop": clean.correct1.astype(np.float64) - st.correct1,
            "flip_rate": (st.pred != clean.pred).astype(np.float64),
            "p_true_change": st.p_true - clean.p_true,
            "map_corr": A.pearson_rows(clean.map_true, st.map_true),
        }
        for key, values in per_image.items():
            row[key] = A.nanmean(values)
            cls[key] = A.class_means(values, labels, classes)
    return row, cls, A.reliability(st.conf, st.correct1)


def gather(store: RenderStore, classes: int) -> Gathered:
    """Stream every unit of ``store`` whose epoch has a clean unit, epoch by epoch."""
    manifest = store.manifest()
    labels = np.asarray(manifest["val"]["labels"], dtype=np.int64)
    map_size = int(manifest["map_size"])
    image_size = int(manifest["image_size"])
    epochs = store.epochs(CLEAN)
    if not epochs:
        raise AnalysisError(f"no clean units in {store.root / CLEAN} (run `edvis render` first)")
    units = store.units()
    orphans = sorted(u.key for u in units if u.epoch not in epochs)
    units = [u for u in units if u.epoch in epochs]
    present = {(u.perturbation, u.epoch) for u in units}
    settings = order_settings([u.perturbation for u in units])
    if orphans:
        log.info(f"analyze: skipping {len(orphans)} unit(s) whose epoch has no clean unit, e.g. {orphans[0]}")
    boxes, with_box = _boxes(manifest)
    g = Gathered(epochs=epochs, settings=settings, counts=np.bincount(labels, minlength=classes))
    E = len(epochs)
    for s in settings:
        g.per_class[s] = {m: np.full((E, classes), np.nan) for m in CLASS_METRICS}
    final = epochs[-1]
    last = read_stats(store, Unit(CLEAN, final), labels, classes, map_size)  # read once, used twice
    reference = last.map_true  # (N, S, S)

    todo = len(present)
    done = 0
    t_start = time.monotonic()
    for ei, epoch in enumerate(epochs):
        t = time.monotonic()
        clean = last if epoch == final else read_stats(store, Unit(CLEAN, epoch), labels, classes, map_size)
        for setting in settings:
            if (setting, epoch) not in present:
                continue
            st = clean if setting == CLEAN else read_stats(store, Unit(setting, epoch), labels, classes, map_size)
            row, cls, rel = unit_row(st, labels, classes, None if setting == CLEAN else clean)
            kind, severity = setting_kind(setting)
            g.rows.append({"setting": setting, "kind": kind, "severity": severity, "epoch": epoch, **row})
            for b in range(len(rel["count"])):
                g.reliability.append({"setting": setting, "epoch": epoch, "bin": b,
                                      **{k: rel[k][b] for k in ("lower", "upper", "count", "accuracy", "confidence")}})
            for key, values in cls.items():
                g.per_class[setting][key][ei] = values
            if epoch == final:
                g.confusion[setting] = A.confusion_matrix(labels, st.pred, classes)
                g.pairs[setting] = A.confused_pairs(labels, st.pred, classes, CONFUSED_PAIRS, PAIR_IMAGES)
            done += 1
        g.per_class[CLEAN]["similarity"][ei] = A.class_means(A.pearson_rows(clean.map_true, reference), labels, classes)
        if with_box.any():
            g.localisation.append({"epoch": epoch, "images": int(with_box.sum()),
                                   **A.localisation(clean.map_true[with_box], boxes, image_size)})
        log.info(f"analyze: epoch {epoch} ({ei + 1}/{E}): {done}/{todo} units, {time.monotonic() - t:.1f}s "
            f"(total {time.monotonic() - t_start:.0f}s)")
    # Read epoch by epoch; listed setting by setting.
    g.rows.sort(key=lambda r: (settings.index(r["setting"]), r["epoch"]))
    g.reliability.sort(key=lambda r: (settings.index(r["setting"]), r["epoch"], r["bin"]))
    return g


def gather_compare(store: RenderStore, classes: int) -> list[dict[str, Any]]:
    """Accuracy and localisation per clean epoch of a compared run's store."""
    manifest = store.manifest()
    labels = np.asarray(manifest["val"]["labels"], dtype=np.int64)
    boxes, with_box = _boxes(manifest)
    epochs = store.epochs(CLEAN)
    if not epochs:
        raise AnalysisError(f"--compare: no clean units in {store.root / CLEAN} (run `edvis render` there first)")
    out = []
    for epoch in epochs:
        st = read_stats(store, Unit(CLEAN, epoch), labels, classes, int(manifest["map_size"]))
        row = {"epoch": epoch, "images": len(labels), "top1": st.correct1.mean(), "top5": st.correct5.mean()}
        if with_box.any():
            row.update(A.localisation(st.map_true[with_box], boxes, int(manifest["image_size"])))
        out.append(row)
        log.info(f"analyze: compared run, epoch {epoch} ({len(out)}/{len(epochs)})")
    return out


def _boxes(manifest: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(M, 4) int boxes of the images that have one, and the (N,) mask of those images."""
    raw = manifest["val"].get("boxes") or [None] * len(manifest["val"]["labels"])
    with_box = np.array([b is not None for b in raw], dtype=bool)
    boxes = np.array([b for b in raw if b is not None], dtype=np.int64).reshape(-1, 4)
    return boxes, with_box


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


# -- output -----------------------------------------------------------------------------------


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


def _cell(v: Any) -> str:
    if isinstance(v, list):
        return " ".join(str(i) for i in v)
    if isinstance(v, str):
        return v
    v = _num(v)
    if v is None:
        return ""
    return f"{v:.{DIGITS}f}" if isinstance(v, float) else str(v)


def _csv(columns: tuple[str, ...], rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue()


@dataclass(frozen=True)
class Classes:
    wnids: list[str]
    names: list[str]

    def record(self, c: int, prefix: str = "") -> dict[str, Any]:
        return {f"{prefix}index" if prefix else "index": c, f"{prefix}wnid": self.wnids[c], f"{prefix}name": self.names[c]}


def _classes(manifest: dict[str, Any], store: RenderStore) -> Classes:
    dataset = manifest.get("dataset", {})
    wnids = [str(w) for w in dataset.get("wnids", [])]
    names = [str(n) for n in dataset.get("names", [])]
    if not wnids:  # a store without a dataset record: the units know the class count
        first = store.units()[0] if store.units() else None
        count = store.read(first, ("probs",), ())["probs"].shape[1] if first else 0
        wnids = [f"class{c}" for c in range(count)]
    names += wnids[len(names):]
    return Classes(wnids, names[: len(wnids)])


def _model_name(run: Run) -> str:
    try:
        model = run.read_config().get("model", {})
    except RunError:  # a folder that holds only a render store
        model = {}
    return model_label(model if isinstance(model, dict) else {}, run.root.resolve().name)


def build_outputs(g: Gathered, cls: Classes, threshold: float, model: str,
                  compare: tuple[str, list[dict[str, Any]]] | None) -> tuple[dict[str, Any], dict[str, str]]:
    """analysis.json (as a dict) and the CSV texts by file name, from the gathered numbers."""
    epochs = np.array(g.epochs)
    final = g.epochs[-1]
    C = len(cls.wnids)
    clean = g.per_class[CLEAN]
    e50 = A.first_reaching(clean["top1"], epochs, 0.5)
    e90 = A.first_reaching(clean["top1"], epochs, 0.9)
    formed = A.pattern_formed(clean["similarity"], epochs, threshold)
    mean_top1 = np.array([A.nanmean(clean["top1"][:, c]) for c in range(C)])
    order = A.learning_order(e90, mean_top1)
    rank = np.empty(C, dtype=np.int64)
    rank[order] = np.arange(1, C + 1)

    class_rows = []
    for c in range(C):
        class_rows.append({
            **cls.record(c), "images": int(g.counts[c]), "top1": clean["top1"][-1, c], "top5": clean["top5"][-1, c],
            "mean_top1": mean_top1[c], "epoch_50": _epoch(e50[c]), "epoch_90": _epoch(e90[c]),
            "pattern_formed": _epoch(formed[c]), "learned_rank": int(rank[c]),
        })
    rendered = {(r["setting"], r["epoch"]) for r in g.rows}

    def class_epoch_rows() -> Iterator[dict[str, Any]]:  # generated: 144,000 rows at full size
        for s in g.settings:
            pc = g.per_class[s]
            for ei, epoch in enumerate(g.epochs):
                if (s, epoch) in rendered:
                    for c in range(C):
                        yield {"setting": s, "epoch": epoch, "index": c, "wnid": cls.wnids[c],
                               **{m: pc[m][ei, c] for m in CLASS_METRICS}}
    final_rows = [r for r in g.rows if r["epoch"] == final]
    confusion_rows, pair_rows, pairs_json = [], [], []
    for s in g.settings:
        if s not in g.confusion:
            continue
        m = g.confusion[s]
        for t, p in zip(*np.nonzero(m)):
            confusion_rows.append({"setting": s, "epoch": final, "true": int(t), "true_wnid": cls.wnids[t],
                                   "predicted": int(p), "predicted_wnid": cls.wnids[p], "count": int(m[t, p])})
        pairs = []
        for i, pr in enumerate(g.pairs[s], 1):
            rec = {"rank": i, **cls.record(pr["a"], "a_"), **cls.record(pr["b"], "b_"),
                   **{k: pr[k] for k in ("a_as_b", "b_as_a", "total", "images_a_as_b", "images_b_as_a")}}
            rec["a"], rec["b"] = rec.pop("a_index"), rec.pop("b_index")
            pairs.append(rec)
            pair_rows.append({"setting": s, "epoch": final, **rec})
        pairs_json.append({"setting": s, "epoch": final, "pairs": pairs})
    ce = corruption(g.rows)
    ce_final = [r for r in ce if r["epoch"] == final]
    loc_rows = [{"model": model, **r, **_top(g.rows, r["epoch"])} for r in g.localisation]
    if compare is not None:
        loc_rows += [{"model": compare[0], **r} for r in compare[1]]

    csvs = {
        "epochs.csv": _csv(CSV_COLUMNS["epochs.csv"], g.rows),
        "classes.csv": _csv(CSV_COLUMNS["classes.csv"], class_rows),
        "class_epochs.csv": _csv(CSV_COLUMNS["class_epochs.csv"], class_epoch_rows()),
        "confusion.csv": _csv(CSV_COLUMNS["confusion.csv"], confusion_rows),
        "confused_pairs.csv": _csv(CSV_COLUMNS["confused_pairs.csv"], pair_rows),
        "reliability.csv": _csv(CSV_COLUMNS["reliability.csv"], g.reliability),
        "corruption.csv": _csv(CSV_COLUMNS["corruption.csv"], ce),
        "localisation.csv": _csv(CSV_COLUMNS["localisation.csv"], loc_rows),
    }

    def settings_at_final(c: int) -> list[dict[str, Any]]:
        out = []
        for s in g.settings[1:]:
            pc = g.per_class[s]
            if s in g.confusion:
                out.append(_clean_record({"setting": s, **{m: pc[m][-1, c] for m in ("top1", "top5", *SHIFT_METRICS)}}))
        return out

    def models_row(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        last = rows[-1] if rows else {}
        return _clean_record({"model": name, "epoch": last.get("epoch"),
                              **{k: last.get(k) for k in ("top1", "top5", *LOC_METRICS)}})

    own = loc_rows[: len(g.localisation)] or [{"epoch": final, **_top(g.rows, final)}]
    doc = {
        "schema": SCHEMA_VERSION,
        "definitions": {
            "ece_bins": A.ECE_BINS,
            "pattern_threshold": threshold,
            "centre_sigma": A.CENTRE_SIGMA,
            "confused_pairs": CONFUSED_PAIRS,
            "pair_images": PAIR_IMAGES,
            "digits": DIGITS,
            "sharpness": "peak-to-mean of the top-1 class's map shifted to a minimum of 0",
            "energy": "the true class's map upsampled bilinearly to the image and clipped at 0",
            "ce_reference": CE_REFERENCE,
        },
        "model": model,
        "images": int(g.counts.sum()),
        "classes_count": C,
        "epochs": g.epochs,
        "final_epoch": final,
        "settings": g.settings,
        "table": [_clean_record(r) for r in final_rows],
        "epoch_rows": [_clean_record(r) for r in g.rows],
        "classes": [
            {**_clean_record(r), "top1_by_epoch": [_num(v) for v in clean["top1"][:, c]],
             "similarity_by_epoch": [_num(v) for v in clean["similarity"][:, c]],
             "settings": settings_at_final(c)}
            for c, r in enumerate(class_rows)
        ],
        "learning_order": [_clean_record({"rank": i + 1, **class_rows[c]}) for i, c in enumerate(order)],
        "reliability": [
            {"setting": r["setting"], "epoch": final, "ece": _num(r["ece"]),
             "bins": [_clean_record({k: b[k] for k in ("bin", "lower", "upper", "count", "accuracy", "confidence")})
                      for b in g.reliability if b["setting"] == r["setting"] and b["epoch"] == final]}
            for r in final_rows
        ],
        "confused_pairs": pairs_json,
        "corruption": {
            "reference": CE_REFERENCE,
            "epoch": final,
            "kinds": [_clean_record(r) | {"errors": [_num(v) for v in r["errors"]]} for r in ce_final],
            "mean_relative_ce": _num(A.nanmean([r["relative_ce"] for r in ce_final])),
        },
        "localisation": {
            "has_boxes": bool(g.localisation),
            "epochs": [_clean_record(r) for r in loc_rows[: len(g.localisation)]],
        },
        "compare": None if compare is None else {
            "model": compare[0],
            "epochs": [_clean_record(r) for r in compare[1]],
        },
        "models": [models_row(model, own)] + ([] if compare is None else [models_row(*compare)]),
    }
    return doc, csvs


def _top(rows: list[dict[str, Any]], epoch: int) -> dict[str, Any]:
    r = next(r for r in rows if r["setting"] == CLEAN and r["epoch"] == epoch)
    return {"top1": r["top1"], "top5": r["top5"]}


# -- the stage --------------------------------------------------------------------------------


def inputs_digest(stores: list[RenderStore], params: dict[str, Any]) -> str:
    """sha256 over the parameters, this code, each store's manifest and every unit's size and mtime."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for module in (A.__file__, __file__):
        h.update(Path(module).read_bytes())
    for store in stores:
        h.update(store.manifest_path.read_bytes())
        for u in store.units():
            st = store.path(u).stat()
            h.update(f"{u.key} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def analyze_run(
    run_dir: str | Path,
    compare: str | Path | None = None,
    force: bool = False,
    pattern_threshold: float = A.PATTERN_THRESHOLD,
) -> Path:
    """Write ``RUN/analysis/`` from the run's render store (and ``compare``'s, a run of another
    model on the same validation set); return the path of analysis.json. Skipped when
    analysis.json's digest says nothing it depends on has changed, unless ``force``."""
    if not 0 <= pattern_threshold <= 1:
        raise UsageError(f"--pattern-threshold must be in [0, 1], got {pattern_threshold}")
    run = Run(Path(run_dir))
    store = RenderStore(run.render_dir)
    manifest = store.manifest()
    stores = [store]
    other = None
    if compare is not None:
        other = Run(Path(compare))
        other_store = RenderStore(other.render_dir)
        theirs = other_store.manifest()
        if theirs.get("dataset", {}).get("fingerprint") != manifest.get("dataset", {}).get("fingerprint") \
                or theirs["val"]["labels"] != manifest["val"]["labels"]:
            raise AnalysisError(f"--compare {compare}: its render store was made from another validation set "
                                f"than {run.root}'s; compare runs on the same dataset")
        stores.append(other_store)
    out_dir = run.analysis_dir
    json_path = out_dir / "analysis.json"
    params = {"schema": SCHEMA_VERSION, "pattern_threshold": pattern_threshold,
              "compare": None if other is None else str(other.root.resolve())}
    digest = inputs_digest(stores, params)
    if not force and _up_to_date(out_dir, digest):
        log.info(f"analyze: {json_path} up to date")
        return json_path

    cls = _classes(manifest, store)
    g = gather(store, len(cls.wnids))
    compared = None
    if other is not None:
        compared = (_model_name(other), gather_compare(stores[1], len(cls.wnids)))
    doc, csvs = build_outputs(g, cls, pattern_threshold, _model_name(run), compared)
    doc = {"schema": SCHEMA_VERSION, "digest": digest, **doc}
    for name, text in csvs.items():
        atomic.write_text(out_dir / name, text)
    # Written last: its digest marks the whole folder as complete.
    atomic.write_text(json_path, json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    log.info(f"analyze: wrote {json_path} and {len(csvs)} CSV tables")
    return json_path


def _up_to_date(out_dir: Path, digest: str) -> bool:
    try:
        old = json.loads((out_dir / "analysis.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return old.get("digest") == digest and all((out_dir / name).is_file() for name in CSV_COLUMNS)
