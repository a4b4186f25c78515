"""The faithfulness stage: deletion, insertion and Average Drop of every map source, by onnxruntime.

For each exported epoch and each setting asked for, every method available is measured on the
same seeded subset of validation images (``edvis.data.image_subset``): ``model`` (the true
class's map in the render unit RUN/render/<setting>/epoch_NNN.npz), every explanation store
RUN/explain/<method>/ holding a unit for that (setting, epoch) (an optional ``index`` array says
which validation images its rows are; images it lacks are left out for it and counted), and the
references ``centre`` and ``random``. One file per (setting, epoch)::

    RUN/faithfulness/<setting>/epoch_NNN.npz     (+ .sha256, written by edvis.run.digest)

| array       | dtype   | shape          | meaning                                               |
| ----------- | ------- | -------------- | ----------------------------------------------------- |
| `index`     | int64   | (K,)           | the validation images measured                        |
| `labels`    | int64   | (K,)           | their true classes                                    |
| `deletion`  | float32 | (M, K, T + 1)  | p_true as the top-k_t cells are blurred (NaN: not covered) |
| `insertion` | float32 | (M, K, T + 1)  | p_true as they are restored into the blurred image    |
| `full`      | float32 | (K,)           | Y: p_true of the image                                |
| `masked`    | float32 | (M, K)         | O: p_true of the image times the method's mask        |
| `covered`   | bool    | (M, K)         | whether the method has a map of the image             |
| `meta`      | str     | ()             | JSON: methods, steps, counts, sigma, sizes, seed, onnx_sha256, sources |

A file whose meta records the same ONNX file, the same map sources (their digests) and the same
parameters is skipped, so a rerun measures only what changed. Definitions: edvis.faithfulness.cells
and docs/faithfulness.md. Imports no torch.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edvis.data import PERTURBATIONS, apply, image_subset, load_images, open_dataset
from edvis.errors import EdvisError, UsageError
from edvis.faithfulness.cells import (
    ad_masks,
    blur_ksize,
    blur_sigma,
    blurred,
    centre_map,
    centre_order,
    map_order,
    order_map,
    random_order,
    ranks_of,
    resize_bilinear,
    step_counts,
)
from edvis.faithfulness.measure import Curves, measure
from edvis.run import REFERENCE_MAPS, RenderStore, Run, RunError, StoreError, Unit, digest, same_validation_set, select_epochs

log = logging.getLogger(__name__)

FORMAT = 1  # of the files written; files of another format are measured again
PROVIDERS = ("auto", "cpu", "cuda")
DEFAULT_BATCH = {"CPUExecutionProvider": 256, "CUDAExecutionProvider": 2048}
REMEASURE = "run `edvis faithfulness` to measure it again"
CHUNK = 256  # images whose perturbed inputs are composed at once


class FaithfulnessError(EdvisError):
    """What the faithfulness stage needs is missing or inconsistent; names the file or flag."""


@dataclass
class _Task:
    """One (setting, epoch) file to write: its map sources and the meta it will carry."""

    unit: Unit
    path: Path
    sources: dict[str, tuple[RenderStore, Path]]  # method → (store, unit file), in method order
    meta: dict[str, Any]


def _sources(run: Run, store: RenderStore, unit: Unit) -> dict[str, tuple[RenderStore, Path]]:
    """``model`` and every explanation store with a unit for ``unit``, by method name."""
    if not store.path(unit).is_file():
        raise StoreError(f"render unit missing: {store.path(unit)} (run `edvis render` with that setting)")
    out = {"model": (store, store.path(unit))}
    for folder in sorted(p for p in (run.root / "explain").glob("*") if p.is_dir()):
        if folder.name in out or folder.name in REFERENCE_MAPS:
            raise FaithfulnessError(f"{folder}: an explanation method may not be called {folder.name!r}")
        explain = RenderStore(folder)
        if explain.path(unit).is_file():
            out[folder.name] = (explain, explain.path(unit))
    return out


def _plan(run: Run, store: RenderStore, params: dict[str, Any], epochs: list[int], settings: Sequence[str],
          shas: dict[int, str]) -> list[_Task]:
    tasks = []
    for epoch in epochs:
        for setting in settings:
            unit = Unit(setting, epoch)
            sources = _sources(run, store, unit)
            render_meta = store.meta(unit) or {}
            meta = {**params, "format": FORMAT, "setting": setting, "epoch": epoch, "onnx_sha256": shas[epoch],
                    "render_seed": render_meta.get("seed", 0), "methods": [*sources, *REFERENCE_MAPS],
                    "sources": {m: digest.recorded_digest(p) for m, (_, p) in sources.items()}}
            path = run.faithfulness_dir / setting / f"epoch_{epoch:03d}.npz"
            tasks.append(_Task(unit, path, sources, meta))
    return tasks


def read_meta(path: Path) -> dict[str, Any] | None:
    """The verified meta of a faithfulness file, or None when it is absent, damaged or foreign."""
    try:
        data, _ = digest.read_verified(path, "faithfulness file", REMEASURE)
        with np.load(io.BytesIO(data)) as z:
            return json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError, EOFError, digest.IntegrityError):
        return None


def _open_session(run: Run, epoch: int, provider: str) -> Any:
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise UsageError(f"--provider must be one of {PROVIDERS}, got {provider!r}")
    cuda = provider == "cuda" or (provider == "auto" and bool(glob.glob("/dev/nvidia[0-9]*")))
    if cuda and "CUDAExecutionProvider" not in ort.get_available_providers():
        if provider == "cuda":
            raise UsageError("--provider cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
        cuda = False
    if cuda and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    data, _ = run.read_onnx(epoch)  # verified against its export record
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(data, options, providers=providers)
    except Exception as e:  # onnxruntime's errors share no base class narrower than Exception
        raise RunError(f"cannot load {run.onnx(epoch)} (run `edvis export` again): {e}") from None


def _method_maps(name: str, store: RenderStore, unit: Unit, subset: np.ndarray,
                 total: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, h, w) float64 maps of the true class at the subset's images (zeros where absent) and
    the (K,) bool of those the source covers (and whose map is finite)."""
    arrays = store.read(unit, ("map_true",), ("index",))
    maps = arrays["map_true"].astype(np.float64)
    index = arrays.get("index")
    if index is None:
        if len(maps) != total:
            raise FaithfulnessError(f"{store.path(unit)}: {len(maps)} maps for {total} validation images and no index")
        rows = subset
        covered = np.ones(len(subset), bool)
    else:
        index = np.asarray(index, np.int64)
        if index.shape != (len(maps),):
            raise FaithfulnessError(f"{store.path(unit)}: index has shape {index.shape}, map_true {maps.shape}")
        where = {int(v): r for r, v in enumerate(index)}
        covered = np.array([int(i) in where for i in subset], bool)
        rows = np.array([where.get(int(i), 0) for i in subset], np.int64)
    out = maps[rows] if len(maps) else np.zeros((len(subset), 1, 1))
    covered &= np.isfinite(out).reshape(len(subset), -1).all(axis=1)
    out[~covered] = 0.0
    return out, covered


def _orders(sources: list[tuple[np.ndarray, np.ndarray]], subset: np.ndarray, grid: int, size: int,
            seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ranks (M, K, G²), covered (M, K) and Average Drop masks (M, K, H, W) of the methods' maps
    ``sources`` [(maps (K, h, w), covered (K,))] and of the two references, for images ``subset``."""
    ranks = [ranks_of(map_order(resize_bilinear(maps, (grid, grid)))) for maps, _ in sources]
    covered = [cov for _, cov in sources] + [np.ones(len(subset), bool)] * 2
    masks = [ad_masks(maps, size) for maps, _ in sources]
    ranks.append(np.broadcast_to(ranks_of(centre_order(grid)), (len(subset), grid * grid)))
    masks.append(np.broadcast_to(ad_masks(centre_map(grid)[None], size), (len(subset), size, size)))
    rand = np.stack([random_order(grid, seed, i) for i in subset])
    ranks.append(ranks_of(rand))
    masks.append(ad_masks(np.stack([order_map(o, grid) for o in rand]), size))
    return np.stack(ranks), np.stack(covered), np.stack(masks)


def _measure_task(task: _Task, session: Any, images: np.ndarray, blur: np.ndarray, labels: np.ndarray,
                  subset: np.ndarray, total: int, batch: int) -> tuple[Any, np.ndarray]:
    """One file's curves, CHUNK images at a time (the masks and pixel ranks of all would not fit)."""
    meta = task.meta
    sources = [_method_maps(name, store, task.unit, subset, total) for name, (store, _) in task.sources.items()]
    parts = []
    for lo in range(0, len(subset), CHUNK):
        part = slice(lo, lo + CHUNK)
        ranks, covered, masks = _orders([(m[part], c[part]) for m, c in sources], subset[part], meta["map_size"],
                                        meta["image_size"], meta["seed"])
        parts.append((measure(session, images[part], blur[part], labels[part], ranks, covered, masks, meta["steps"],
                              batch), covered))
    curves = Curves(*(np.concatenate([getattr(c, k) for c, _ in parts], axis=-1 if k == "full" else 1)
                      for k in ("deletion", "insertion", "full", "masked")), sum(c.inferences for c, _ in parts))
    return curves, np.concatenate([cov for _, cov in parts], axis=1)


def faithfulness_run(
    run_dir: str | Path,
    images: int = 64,
    steps: int = 16,
    seed: int = 0,
    epochs: str | Sequence[int] | None = None,
    settings: Sequence[str] = ("clean",),
    provider: str = "auto",
    batch_size: int | None = None,
    data_root: str | Path | None = None,
) -> list[Path]:
    """Measure every (setting, epoch) of the run not yet measured with these parameters; return
    the files written. ``epochs``: None or ``all``, a spec for :func:`edvis.run.select_epochs`, or epoch numbers."""
    for flag, value, low in (("--images", images, 1), ("--steps", steps, 1), ("--seed", seed, 0),
                             ("--batch-size", batch_size if batch_size is not None else 1, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise UsageError(f"{flag} must be an integer >= {low}, got {value!r}")
    run = Run(Path(run_dir))
    config = run.read_config()
    exported = run.onnx_epochs()
    if not exported:
        raise RunError(f"no ONNX files in {run.onnx_dir} (run `edvis export` first)")
    chosen = select_epochs(epochs, exported) if epochs is None or isinstance(epochs, str) else sorted(set(epochs))
    for name in settings:
        if name not in PERTURBATIONS:
            raise UsageError(f"--settings: unknown setting {name!r}")
    store = RenderStore(run.render_dir)
    manifest = store.manifest()
    labels = np.asarray(manifest["val"]["labels"], np.int64)
    size, grid = int(manifest["image_size"]), int(manifest["map_size"])
    if size % grid:
        raise FaithfulnessError(f"{store.manifest_path}: {size}-pixel images do not divide into {grid} × {grid} cells")
    subset = image_subset(labels, images, seed)
    sigma = blur_sigma(size)
    params = {"steps": steps, "counts": step_counts(grid * grid, steps).tolist(), "sigma": sigma,
              "ksize": blur_ksize(sigma), "image_size": size, "map_size": grid,
              "seed": seed, "images": len(subset), "index_digest": digest.sha256_bytes(subset.tobytes()),
              "dataset": manifest["dataset"]["fingerprint"]}
    shas = {e: run.read_export_record(e)["sha256"] for e in chosen}
    tasks = _plan(run, store, params, chosen, list(dict.fromkeys(settings)), shas)
    todo = [t for t in tasks if read_meta(t.path) != t.meta]
    if not todo:
        log.info(f"faithfulness: all {len(tasks)} (setting, epoch) file(s) up to date")
        return []
    clean = _load_subset(run, config, manifest, subset, data_root)
    return _measure_all(run, todo, clean, labels, subset, provider, batch_size)


def _load_subset(run: Run, config: dict[str, Any], manifest: dict[str, Any], subset: np.ndarray,
                 data_root: str | Path | None) -> np.ndarray:
    """The subset's clean images, decoded as render decodes them, from the dataset the store was rendered from."""
    ds = open_dataset(data_root or config["dataset"]["root"])
    record = ds.record()
    files = [str(s.path.relative_to(ds.root)) for s in ds.val]
    if not same_validation_set({"dataset": record, "val": {"files": files, "labels": [s.label for s in ds.val]}},
                               {**manifest, "val": {k: manifest["val"][k] for k in ("files", "labels")}}):
        raise RunError(f"the dataset at {ds.root} is not the one {run.render_dir} was rendered from; "
                       "pass --data with that dataset")
    return load_images([ds.val[i].path for i in subset], size=int(manifest["image_size"]))


def _measure_all(run: Run, todo: list[_Task], clean: np.ndarray, labels: np.ndarray, subset: np.ndarray,
                 provider: str, batch_size: int | None) -> list[Path]:
    written: list[Path] = []
    start, inferred = time.monotonic(), 0
    images_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for n, epoch in enumerate(sorted({t.unit.epoch for t in todo})):
        session = _open_session(run, epoch, provider)
        if n == 0:
            log.info(f"faithfulness: {len(todo)} file(s) × {len(subset)} images, onnxruntime on "
                     f"{session.get_providers()[0]}")
        batch = batch_size or DEFAULT_BATCH.get(session.get_providers()[0], 256)
        for task in [t for t in todo if t.unit.epoch == epoch]:
            setting, meta = task.unit.perturbation, task.meta
            if setting not in images_cache:  # perturbed as render perturbs: key = seed · N + image index
                keys = meta["render_seed"] * len(labels) + subset
                imgs = clean if setting == "clean" else apply(setting, clean, keys)
                images_cache[setting] = (imgs, blurred(imgs, meta["sigma"]))
            imgs, blur = images_cache[setting]
            curves, covered = _measure_task(task, session, imgs, blur, labels[subset], subset, len(labels), batch)
            read = {m: store.digest(path) for m, (store, path) in task.sources.items()}
            if read != meta["sources"]:
                raise StoreError(f"a map source of {task.path} changed while it was measured; {REMEASURE}")
            _write(task, subset, labels[subset], curves, covered)
            written.append(task.path)
            inferred += curves.inferences
            rate = inferred / (time.monotonic() - start)
            left = (len(todo) - len(written)) * (inferred / len(written)) / rate
            log.info(f"faithfulness: {task.unit.key} ({len(written)}/{len(todo)}, {len(meta['methods'])} methods, "
                     f"{int(covered.sum())} image-methods) {rate:.0f} img/s, {left:.0f}s left")
    log.info(f"faithfulness: wrote {len(written)} file(s) under {run.faithfulness_dir}")
    return written


def _write(task: _Task, index: np.ndarray, labels: np.ndarray, curves: Any, covered: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(task.meta, sort_keys=True)), index=index.astype(np.int64),
             labels=labels.astype(np.int64), deletion=curves.deletion, insertion=curves.insertion,
             full=curves.full, masked=curves.masked, covered=covered)
    digest.write_verified(task.path, buf.getvalue())
