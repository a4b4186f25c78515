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
  (analysis.json's ``sanity``: with RUN/explain/sanity.npz, Spearman and SSIM per method and step)
  faithfulness.csv      with RUN/faithfulness: deletion/insertion AUC, Average Drop, Increase per
                        (setting, epoch, method)
```

The store is read one unit at a time, epoch by epoch: in memory are at most the epoch's clean
unit, one perturbed unit, the final epoch's true-class maps and per-class summaries. The
numbers come from :mod:`edvis.analyze.metrics`; this module only streams, gathers (into
:class:`~edvis.analyze.outputs.Gathered`) and writes what :mod:`edvis.analyze.outputs` shapes.
``analysis.json`` is written last and carries a digest of everything it was computed from
(the stores' manifests, every unit's recorded digest, the parameters and the package's code),
so a rerun with nothing changed returns at once; ``inputs`` lists every file it was computed
from with the sha256 of the bytes read, which the site checks against the store it shows, and
its own digest is recorded beside it (``analysis.json.sha256``). A gap in the store (a setting
missing at an exported epoch) is refused, naming the unit, never skipped.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edvis.analyze import faithfulness as F
from edvis.analyze import metrics as A
from edvis.analyze import sanity as S
from edvis.analyze.outputs import (
    CLASS_METRICS,
    CONFUSED_PAIRS,
    CSV_COLUMNS,
    PAIR_IMAGES,
    SCHEMA_VERSION,
    Classes,
    Compared,
    Gathered,
    build_outputs,
)
from edvis.data import CLEAN, order_settings, setting_kind
from edvis.errors import EdvisError, UsageError
from edvis.run import (
    WRITE_SANITY_AGAIN,
    RenderStore,
    Run,
    RunError,
    Unit,
    atomic,
    complete_epochs,
    digest,
    model_label,
    read_sanity,
    same_validation_set,
    tables,
)

log = logging.getLogger(__name__)

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


def unit_row(st: ImageStats, labels: np.ndarray, classes: int, clean: ImageStats | None,
             ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One unit's summary row, its per-class (C,) metrics and its reliability bins; the shift
    from the clean images and the flip counts too when ``clean`` (the same epoch's clean unit)
    is given."""
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
        row.update(A.flip_counts(labels, clean.pred, st.pred))
    return row, cls, A.reliability(st.conf, st.correct1)


@dataclass(frozen=True)
class _Source:
    """What a store's manifest says about its units' images."""

    labels: np.ndarray  # (N,) int64
    classes: int
    map_size: int
    image_size: int
    boxes: np.ndarray  # (M, 4) int64 of the images with a box
    with_box: np.ndarray  # (N,) bool

    @classmethod
    def of(cls, store: RenderStore, classes: int) -> _Source:
        manifest = store.manifest()
        boxes, with_box = _boxes(manifest)
        return cls(np.asarray(manifest["val"]["labels"], dtype=np.int64), classes, int(manifest["map_size"]),
                   int(manifest["image_size"]), boxes, with_box)

    def read(self, store: RenderStore, unit: Unit) -> ImageStats:
        return read_stats(store, unit, self.labels, self.classes, self.map_size)

    def localisation(self, st: ImageStats) -> dict[str, Any]:
        return {"images": int(self.with_box.sum()),
                **A.localisation(st.map_true[self.with_box], self.boxes, self.image_size)}


def _add_unit(g: Gathered, src: _Source, setting: str, ei: int, st: ImageStats, clean: ImageStats | None) -> None:
    """One unit's numbers into ``g`` (``clean``: the same epoch's clean unit, for a perturbed one)."""
    epoch = g.epochs[ei]
    row, cls, rel = unit_row(st, src.labels, src.classes, clean)
    kind, severity = setting_kind(setting)
    g.rows.append({"setting": setting, "kind": kind, "severity": severity, "epoch": epoch, **row})
    for b in range(len(rel["count"])):
        g.reliability.append({"setting": setting, "epoch": epoch, "bin": b,
                              **{k: rel[k][b] for k in ("lower", "upper", "count", "accuracy", "confidence")}})
    for key, values in cls.items():
        g.per_class[setting][key][ei] = values
    if epoch == g.epochs[-1]:
        g.confusion[setting] = A.confusion_matrix(src.labels, st.pred, src.classes)
        g.pairs[setting] = A.confused_pairs(src.labels, st.pred, src.classes, CONFUSED_PAIRS, PAIR_IMAGES)
        g.histograms[setting] = A.confidence_histogram(st.conf, st.correct1)


def gather(store: RenderStore, classes: int, epochs: list[int]) -> Gathered:
    """Stream every unit of ``store`` at ``epochs`` (a whole grid, see ``complete_epochs``), epoch by epoch."""
    src = _Source.of(store, classes)
    if not epochs:
        raise AnalysisError(f"no clean units in {store.root / CLEAN} (run `edvis render` first)")
    settings = order_settings(store.perturbations())
    total = len(settings) * len(epochs)
    g = Gathered(epochs=epochs, settings=settings, counts=np.bincount(src.labels, minlength=classes))
    E = len(epochs)
    for s in settings:
        g.per_class[s] = {m: np.full((E, classes), np.nan) for m in CLASS_METRICS}
    final = epochs[-1]
    last = src.read(store, Unit(CLEAN, final))  # read once, used twice
    reference = last.map_true  # (N, S, S)

    done = 0
    t_start = time.monotonic()
    for ei, epoch in enumerate(epochs):
        t = time.monotonic()
        clean = last if epoch == final else src.read(store, Unit(CLEAN, epoch))
        for setting in settings:
            if setting == CLEAN:
                _add_unit(g, src, setting, ei, clean, None)
            else:
                _add_unit(g, src, setting, ei, src.read(store, Unit(setting, epoch)), clean)
            done += 1
        g.per_class[CLEAN]["similarity"][ei] = A.class_means(A.pearson_rows(clean.map_true, reference),
                                                             src.labels, classes)
        if src.with_box.any():
            g.localisation.append({"epoch": epoch, **src.localisation(clean)})
        log.info(f"analyze: epoch {epoch} ({ei + 1}/{E}): {done}/{total} units, {time.monotonic() - t:.1f}s "
            f"(total {time.monotonic() - t_start:.0f}s)")
    # Read epoch by epoch; listed setting by setting.
    g.rows.sort(key=lambda r: (settings.index(r["setting"]), r["epoch"]))
    g.reliability.sort(key=lambda r: (settings.index(r["setting"]), r["epoch"], r["bin"]))
    return g


def gather_compare(store: RenderStore, classes: int, model: str, epochs: list[int]) -> Compared:
    """A compared run's store: accuracy and localisation per clean epoch (``epochs``, a whole grid),
    and the accuracy of every setting at its final epoch (only those units' top-5 are read)."""
    src = _Source.of(store, classes)
    if not epochs:
        raise AnalysisError(f"--compare: no clean units in {store.root / CLEAN} (run `edvis render` there first)")
    out = Compared(model=model, epochs=[], settings=[])
    for epoch in epochs:
        st = src.read(store, Unit(CLEAN, epoch))
        row = {"epoch": epoch, "images": len(src.labels), "top1": st.correct1.mean(), "top5": st.correct5.mean()}
        if src.with_box.any():
            row.update(A.localisation(st.map_true[src.with_box], src.boxes, src.image_size))
        out.epochs.append(row)
        log.info(f"analyze: compared run, epoch {epoch} ({len(out.epochs)}/{len(epochs)})")
    final = epochs[-1]
    for setting in order_settings(store.perturbations()):
        if setting == CLEAN:
            top1, top5 = out.epochs[-1]["top1"], out.epochs[-1]["top5"]
        else:
            top1, top5 = _accuracy(store, Unit(setting, final), src.labels)
        out.settings.append({"setting": setting, "epoch": final, "top1": top1, "top5": top5})
    return out


def _accuracy(store: RenderStore, unit: Unit, labels: np.ndarray) -> tuple[float, float]:
    """Top-1 and top-5 of one unit, from its ranked predictions alone."""
    top = store.read(unit, ("top5",), ())["top5"].astype(np.int64)
    if top.shape[0] != len(labels):
        raise AnalysisError(f"{store.path(unit)}: top5 has {top.shape[0]} rows, the manifest {len(labels)} images")
    if not len(labels):
        return math.nan, math.nan
    return float(A.topk_correct(top, labels, 1).mean()), float(A.topk_correct(top, labels, 5).mean())


def _boxes(manifest: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(M, 4) int boxes of the images that have one, and the (N,) mask of those images."""
    raw = manifest["val"].get("boxes") or [None] * len(manifest["val"]["labels"])
    with_box = np.array([b is not None for b in raw], dtype=bool)
    boxes = np.array([b for b in raw if b is not None], dtype=np.int64).reshape(-1, 4)
    return boxes, with_box


def _classes(manifest: dict[str, Any], store: RenderStore) -> Classes:
    """The classes named in the manifest's dataset record, else ``class0``, ``class1``, …"""
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
    """``name (variant)`` from the run's config.json, else the folder's name."""
    try:
        model = run.read_config().get("model", {})
    except RunError:  # a folder that holds only a render store
        model = {}
    return model_label(model if isinstance(model, dict) else {}, run.root.resolve().name)


# -- the stage --------------------------------------------------------------------------------


def inputs_digest(stores: list[RenderStore], params: dict[str, Any], extra: list[Path] = ()) -> str:
    """sha256 over the parameters, the analysis package's code (and the CSV rule it writes by),
    each store's manifest and the digest recorded for every unit when it was written (its
    ``.sha256`` sidecar: a unit rendered again, or damaged and rebuilt, changes it), and the
    names and recorded digests of the ``extra`` files (the faithfulness files)."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for module in [*sorted(Path(__file__).parent.glob("*.py")), Path(tables.__file__)]:
        h.update(module.name.encode())
        h.update(module.read_bytes())
    for store in stores:
        h.update(store.manifest_path.read_bytes())
        for u in store.units():
            h.update(f"{u.key} {digest.recorded_digest(store.path(u))}\n".encode())
    for path in extra:
        h.update(f"{'/'.join(path.parts[-3:])} {digest.recorded_digest(path)}\n".encode())
    return h.hexdigest()


FAITH_SHARED = ("steps", "images", "seed", "sigma", "map_size", "image_size", "index_digest")
FAITH_ARRAYS = ("index", "labels", "deletion", "insertion", "full", "masked", "covered")
REMEASURE = "run `edvis faithfulness` to measure it again"


def faithfulness_files(run: Run) -> list[Path]:
    return sorted(run.faithfulness_dir.glob("*/epoch_*.npz"))


def _faith_stale(run: Run, meta: dict[str, Any]) -> str | None:
    """Why a faithfulness file no longer describes the run (its ONNX file exported again, a map
    source rendered again or added since), or None."""
    try:
        sha = run.read_export_record(meta["epoch"])["sha256"]
    except RunError:
        sha = None
    if sha != meta.get("onnx_sha256"):
        return f"epoch {meta['epoch']}'s ONNX file is not the one it was measured with"
    unit = f"{meta['setting']}/epoch_{meta['epoch']:03d}.npz"
    paths = {"model": run.render_dir / unit,
             **{p.parent.parent.name: p for p in sorted((run.root / "explain").glob(f"*/{unit}"))}}
    for method, path in paths.items():
        if digest.recorded_digest(path) != meta.get("sources", {}).get(method):
            return f"the maps of {method!r} ({path}) are not those it was measured with"
    return None


def read_faithfulness(run: Run, paths: list[Path]) -> tuple[list[tuple[dict[str, np.ndarray], dict[str, Any]]],
                                                            dict[str, str]]:
    """The faithfulness files' (arrays, meta), each verified against its digest, and {path
    relative to RUN/faithfulness: sha256 of the bytes read}. A file measured with other shared
    parameters than the first (steps, images, seed, …), or from another ONNX file or other maps
    than the run now holds, is refused, naming the file."""
    out, verified = [], {}
    for path in paths:
        try:
            data, sha = digest.read_verified(path, "faithfulness file", REMEASURE)
            with np.load(io.BytesIO(data)) as z:
                meta, arrays = json.loads(str(z["meta"])), {k: z[k] for k in FAITH_ARRAYS}
        except digest.IntegrityError as e:
            raise AnalysisError(str(e)) from None
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise AnalysisError(f"cannot read faithfulness file {path}: {e}; delete it and {REMEASURE}") from None
        M, K = len(meta["methods"]), len(arrays["index"])
        if arrays["deletion"].shape != (M, K, meta["steps"] + 1) or arrays["covered"].shape != (M, K):
            raise AnalysisError(f"{path}: deletion has shape {arrays['deletion'].shape}, its meta implies "
                                f"{(M, K, meta['steps'] + 1)}; delete it and {REMEASURE}")
        stale = _faith_stale(run, meta)
        if stale:
            raise AnalysisError(f"{path} is out of date: {stale}; {REMEASURE}")
        if out and any(meta.get(k) != out[0][1].get(k) for k in FAITH_SHARED):
            raise AnalysisError(f"{path} was measured with other parameters ({', '.join(FAITH_SHARED)}) than "
                                f"{paths[0]}; {REMEASURE} with the same flags, or delete it")
        out.append((arrays, meta))
        verified[path.relative_to(path.parents[1]).as_posix()] = sha
    return out, verified


def sanity_record(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """analysis.json's ``sanity`` record from ``edvis explain --sanity``'s file (verified against
    its digest), and {its path in the run: sha256 of the bytes read}."""
    f = read_sanity(path, ("index", "maps", "other_class_maps"))
    try:
        return S.sanity_section(f.arrays, f.meta), {"explain/sanity.npz": f.sha256}
    except (ValueError, KeyError, IndexError) as e:  # arrays of the wrong shape or an incomplete meta
        raise AnalysisError(f"cannot read sanity file {path}: {e}; {WRITE_SANITY_AGAIN}") from None


def analyze_run(
    run_dir: str | Path,
    compare: str | Path | None = None,
    force: bool = False,
    pattern_threshold: float = A.PATTERN_THRESHOLD,
    precision: str = "fp32",
) -> Path:
    """Write ``RUN/analysis/`` from the run's render store (and ``compare``'s, a run of another
    model on the same validation set); return the path of analysis.json. Skipped when
    analysis.json's digest says nothing it depends on has changed, unless ``force``."""
    if not 0 <= pattern_threshold <= 1:
        raise UsageError(f"--pattern-threshold must be in [0, 1], got {pattern_threshold}")
    run = Run(Path(run_dir), precision)  # another precision: RUN/render-<p> → RUN/analysis-<p>
    store = RenderStore(run.render_dir)
    manifest = store.manifest()
    stores = [store]
    other = None
    if compare is not None:
        other = Run(Path(compare))
        other_store = RenderStore(other.render_dir)
        if not same_validation_set(other_store.manifest(), manifest):
            raise AnalysisError(f"--compare {compare}: its render store was made from another validation set "
                                f"than {run.root}'s; compare runs on the same dataset")
        stores.append(other_store)
    out_dir = run.analysis_dir
    json_path = out_dir / "analysis.json"
    params = {"schema": SCHEMA_VERSION, "pattern_threshold": pattern_threshold,
              "compare": None if other is None else str(other.root.resolve())}
    epochs = complete_epochs(store, run.onnx_epochs())
    other_epochs = complete_epochs(stores[1], other.onnx_epochs()) if other is not None else []
    faith = faithfulness_files(run)
    sanity = run.root / "explain" / "sanity.npz"
    # The explanation stores' units too: one rendered again makes the faithfulness files stale.
    extra = faith + (sorted((run.root / "explain").glob("*/*/epoch_*.npz")) if faith else [])
    key = inputs_digest(stores, params, extra + ([sanity] if sanity.is_file() else []))
    if not force and _up_to_date(out_dir, key, [F.CSV_NAME] if faith else []):
        log.info(f"analyze: {json_path} up to date")
        return json_path

    cls = _classes(manifest, store)
    g = gather(store, len(cls.wnids), epochs)
    compared = None
    if other is not None:
        compared = gather_compare(stores[1], len(cls.wnids), _model_name(other), other_epochs)
    doc, csvs = build_outputs(g, cls, pattern_threshold, _model_name(run), compared)
    # What the numbers were computed from: every file read, with the digest of the bytes read.
    inputs = {"render": store.verified(), **({"compare": stores[1].verified()} if other is not None else {})}
    if faith:
        files, inputs["faithfulness"] = read_faithfulness(run, faith)
        doc["faithfulness"], csvs[F.CSV_NAME] = F.section(files, len(cls.wnids))
    elif (out_dir / F.CSV_NAME).exists():  # measured before, since removed
        (out_dir / F.CSV_NAME).unlink()
    if sanity.is_file():
        doc["sanity"], inputs["sanity"] = sanity_record(sanity)
    doc = {"schema": SCHEMA_VERSION, "digest": key, "inputs": inputs, **doc}
    for name, text in csvs.items():
        atomic.write_text(out_dir / name, text)
    # Written last, with its own digest: it marks the whole folder as complete.
    digest.write_verified(json_path, (json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode())
    log.info(f"analyze: wrote {json_path} and {len(csvs)} CSV tables")
    return json_path


def _up_to_date(out_dir: Path, key: str, extra: list[str] = ()) -> bool:
    """Whether analysis.json (sound, as its digest says) was computed from inputs of digest ``key``."""
    try:
        data, _ = digest.read_verified(out_dir / "analysis.json", "analysis", "")
        old = json.loads(data)
    except (OSError, ValueError, digest.IntegrityError):
        return False
    return isinstance(old, dict) and old.get("digest") == key and all((out_dir / n).is_file() for n in [*CSV_COLUMNS, *extra])
