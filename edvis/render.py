"""Batched onnxruntime inference over the validation set, for every exported epoch × setting.

For each (perturbation, epoch) unit the store gets every validation image's probabilities,
top-5, and the maps of its true and its top-1 class (see edvis.run.store). A unit already rendered
from the same ONNX file and seed is skipped, so a rerun after one more epoch renders only that
epoch, and a rerun after a kill renders only the units that were not yet written.

The work is a pipeline of three stages that overlap: a preparation thread perturbs the images of
the next group of settings, the main thread runs onnxruntime (which releases the GIL), and a
writer thread summarises and stores the previous unit. Within a group one session per epoch
serves every setting. On CUDA each batch is prepared ahead on a thread and its outputs copied
back once (see edvis.infer); on the CPU batches are plain ``session.run`` calls. Imports no torch.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edvis.data import PERTURBATIONS, Dataset, DatasetError, apply, load_images, open_dataset, paper_set, rendered_boxes
from edvis.errors import UsageError
from edvis.infer import batch_for_memory, cuda_free_bytes, infer_bound
from edvis.run import (
    LAYERS,
    UNIT_FORMAT,
    DamagedError,
    RenderStore,
    Run,
    RunError,
    StoreError,
    Unit,
    atomic,
    digest,
    same_validation_set,
    summarise,
)

log = logging.getLogger(__name__)

PROVIDERS = ("auto", "cpu", "cuda")
LAYER_PREFIX = "layer."  # ONNX outputs named layer.<name> are intermediate layers (see edvis.export)
# Images per inference call: enough to keep the device busy, small enough for its memory.
DEFAULT_BATCH = {"CPUExecutionProvider": 128, "CUDAExecutionProvider": 1024}  # CUDA: when free memory is unknown
CUDA = "CUDAExecutionProvider"
# Bytes of perturbed images held per group of settings (two groups live at once: one being
# inferred, the next being prepared).
GROUP_BYTES = 512 << 20




def gpu_present() -> bool:
    """An NVIDIA device node exists (checked without loading any CUDA library)."""
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def session_providers(provider: str = "auto") -> list[str]:
    """onnxruntime execution providers for ``--provider auto|cpu|cuda``."""
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise UsageError(f"--provider must be one of {PROVIDERS}, got {provider!r}")
    want_cuda = provider == "cuda" or (provider == "auto" and gpu_present())
    if not want_cuda:
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise UsageError("--provider cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
    # CUDA and cuDNN may come from the nvidia-* pip wheels (e.g. installed with torch); load them
    # the way onnxruntime documents, before the first CUDA session.
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def provider_line(session: Any, requested: str) -> str:
    """One line saying what onnxruntime really runs on, e.g. for the log."""
    import onnxruntime as ort

    used = session.get_providers()[0]
    if used == "CUDAExecutionProvider":
        where = "CUDA (CUDAExecutionProvider)"
    elif requested == "cpu":
        where = "CPU (CPUExecutionProvider, as asked)"
    elif gpu_present():
        where = "CPU (CPUExecutionProvider: CUDA was asked for but not used)"
    else:
        where = "CPU (CPUExecutionProvider; no NVIDIA GPU on this machine)"
    return f"render: onnxruntime {ort.__version__} on {where}, {os.cpu_count()} CPU cores"


def parse_shard(spec: str) -> tuple[int, int]:
    """``"i/n"`` → (i, n) with 0 ≤ i < n."""
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like i/n (e.g. 0/4), got {spec!r}") from None
    if not 0 <= i < n:
        raise UsageError(f"--shard i/n needs 0 ≤ i < n, got {spec!r}")
    return i, n


def resolve_perturbations(spec: Sequence[str]) -> list[str]:
    """Setting names from ``--perturbations``: names from edvis.data.perturb, ``paper`` for the
    paper's seven, ``all`` for every one; ``clean`` always comes first."""
    names = ["clean"]
    for item in spec:
        expanded = {"paper": paper_set(), "all": list(PERTURBATIONS)}.get(item, [item])
        for name in expanded:
            if name not in PERTURBATIONS:
                raise UsageError(f"--perturbations: unknown setting {name!r} (known: paper, all, "
                                 f"{', '.join(PERTURBATIONS)})")
            if name not in names:
                names.append(name)
    return names


def plan_units(epochs: Sequence[int], names: Sequence[str], shard: tuple[int, int] = (0, 1)) -> list[Unit]:
    """This shard's units: every (epoch, setting), epoch-major, dealt round-robin over shards."""
    i, n = shard
    return [Unit(name, e) for e in epochs for name in names][i::n]


def group_settings(names: Sequence[str], bytes_each: int, budget: int = GROUP_BYTES) -> list[list[str]]:
    """Split settings into consecutive groups whose perturbed images fit in ``budget`` bytes."""
    per_group = max(1, budget // max(1, bytes_each))
    return [list(names[i : i + per_group]) for i in range(0, len(names), per_group)]


@dataclass
class _Plan:
    """What a render has to do: this shard's units and layer files that are not up to date."""

    run: Run
    config: dict[str, Any]  # the run's config.json
    store: RenderStore
    epochs: list[int]  # every exported epoch
    names: list[str]  # every setting, clean first
    shas: dict[int, str]  # epoch → sha256 of its ONNX file
    todo: list[Unit]  # epoch-major
    layers_todo: list[int]  # epochs whose layer file this shard writes
    seed: int
    part: str  # " (shard i/n: k units)" for the log, or ""
    manifest_sound: bool  # False: the manifest is damaged (or unrecorded) and is written again

    def meta(self, epoch: int) -> dict[str, Any]:
        """What every file rendered from ``epoch``'s ONNX file records about how it was made."""
        return {"format": UNIT_FORMAT, "onnx_sha256": self.shas[epoch], "seed": self.seed}


class _Images(NamedTuple):
    """The validation set, decoded."""

    clean: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    keys: np.ndarray  # (N,) int64: one noise stream per (image, seed)
    chosen: np.ndarray  # (K,) the images whose every layer is kept (layer_images)


class _Sessions:
    """onnxruntime sessions of a run's ONNX files, on the requested provider; the first session
    opened is kept for its first use."""

    def __init__(self, run: Run, provider: str) -> None:
        import onnxruntime as ort

        self.ort, self.run = ort, run
        self.providers = session_providers(provider)
        self.options = ort.SessionOptions()
        self.options.log_severity_level = 3  # errors only: no provider chatter on a CPU-only machine
        self.spare: dict[int, Any] = {}

    def open(self, epoch: int) -> Any:
        data, _ = self.run.read_onnx(epoch)  # verified against its export record
        try:
            return self.ort.InferenceSession(data, self.options, providers=self.providers)
        except Exception as e:  # onnxruntime's errors share no base class narrower than Exception
            raise RunError(f"cannot load {self.run.onnx(epoch)} (run {self.run.command('export')} again): {e}") from None

    def first(self, epoch: int) -> Any:
        """Open ``epoch``'s session and keep it for the next :meth:`get` of that epoch."""
        self.spare[epoch] = self.open(epoch)
        return self.spare[epoch]

    def get(self, epoch: int) -> Any:
        return self.spare.pop(epoch, None) or self.open(epoch)


def render_run(
    run_dir: str | Path,
    data_root: str | Path | None = None,
    provider: str = "auto",
    batch_size: int | None = None,
    perturbations: Sequence[str] = (),
    seed: int = 0,
    shard: tuple[int, int] = (0, 1),
    precision: str = "fp32",
) -> list[Unit]:
    """Render every (perturbation, exported epoch) unit of this shard not yet in the store.

    Returns the units rendered. The clean images are always rendered; ``perturbations`` adds
    settings (see ``resolve_perturbations``). Random perturbations of image ``i`` are keyed by
    ``seed * N + i``, so they depend neither on batching, order nor shard. Shards ``i/n`` of one
    render may run at once into one store (each unit is its own file, written atomically), or
    into copies of the run that ``merge_stores`` combines afterwards. ``precision`` picks the
    ONNX files and the store: fp32's (RUN/onnx, RUN/render) or an approximation's (RUN/onnx-int8,
    RUN/render-int8, whose manifest records it; see edvis.precision).
    """
    plan = _plan(Run(Path(run_dir), precision), perturbations, seed, shard)
    if not plan.todo and not plan.layers_todo and plan.manifest_sound:
        log.info(f"render: all {len(plan.epochs)} epochs × {len(plan.names)} setting(s) up to date{plan.part}")
        return []
    # Only now, with work to do: indexing and fingerprinting a dataset stats every file.
    ds, dataset = _training_dataset(plan, data_root)
    sessions = _Sessions(plan.run, provider)
    first = sessions.first(next(iter([u.epoch for u in plan.todo] + plan.layers_todo + plan.epochs)))
    log.info(provider_line(first, provider))
    batch = batch_size or _default_batch(first.get_providers()[0], plan.config["model"]["image_size"])
    maps_shape = {o.name: o.shape for o in first.get_outputs()}["maps"]  # [batch, C, S, S]
    _init_store(plan.store, ds, dataset, plan.config["model"]["image_size"], int(maps_shape[-1]), plan.names,
                plan.run.precision)
    images = _decode(plan, ds, batch)
    layers_left = set(plan.layers_todo)
    done = _render_units(plan, sessions, images, batch, layers_left)
    for epoch in sorted(layers_left):  # epochs whose units were all up to date
        _write_layers(plan, epoch, sessions.get(epoch), images)
    if plan.layers_todo:
        log.info(f"render: every layer's output for {len(images.chosen)} images at {len(plan.layers_todo)} epoch(s) → "
            f"{plan.store.root / LAYERS}")
    return done


def _default_batch(provider: str, image_size: int) -> int:
    """Images per batch: 128 on the CPU; on CUDA as many as half the GPU's free memory holds."""
    if provider == CUDA:
        return batch_for_memory(cuda_free_bytes(), image_size, fallback=DEFAULT_BATCH[CUDA])
    return DEFAULT_BATCH.get(provider, 128)


def _plan(run: Run, perturbations: Sequence[str], seed: int, shard: tuple[int, int]) -> _Plan:
    """Read the run and its store (refusing a store of another schema, sweeping killed renders'
    temporaries) and list this shard's units and layer files that are not up to date."""
    config = run.read_config()
    epochs = run.onnx_epochs()
    if not epochs:
        raise RunError(f"no ONNX files in {run.onnx_dir} (run {run.command('export')} first)")
    names = resolve_perturbations(perturbations)
    records = {e: run.read_export_record(e) for e in epochs}
    shas = {e: r["sha256"] for e, r in records.items()}
    store = RenderStore(run.render_dir)
    # Refuses another schema, even with nothing to do; a damaged manifest is written again.
    sound = not store.manifest_path.exists() or _sound_meta(lambda _: store.manifest(), None) is not None
    if store.root.is_dir():  # temporary files of killed renders (an hour old: shards may be at work)
        atomic.sweep_temps(store.root, older_than=3600)
    mine = plan_units(epochs, names, shard)
    todo = [u for u in mine if not _up_to_date(_sound_meta(store.meta, u), shas[u.epoch], seed)]
    # Every layer's output for a few images, per epoch, when the ONNX file exposes them; done by
    # the shard that has the epoch's clean unit.
    tapped = {e for e in epochs if any(o.startswith(LAYER_PREFIX) for o in records[e].get("outputs", []))}
    layers_todo = [u.epoch for u in mine if u.perturbation == "clean" and u.epoch in tapped
                   and not _up_to_date(_sound_meta(store.layers_meta, u.epoch), shas[u.epoch], seed)]
    part = "" if shard == (0, 1) else f" (shard {shard[0]}/{shard[1]}: {len(mine)} units)"
    return _Plan(run, config, store, epochs, names, shas, todo, layers_todo, seed, part, sound)


def _training_dataset(plan: _Plan, data_root: str | Path | None) -> tuple[Dataset, dict[str, Any]]:
    """The dataset at ``data_root`` (default: the run's) and its record, refused unless the run
    was trained on it."""
    ds = open_dataset(data_root or plan.config["dataset"]["root"])
    dataset = ds.record()
    if dataset["fingerprint"] != plan.config["dataset"]["fingerprint"]:
        raise RunError(
            f"the dataset at {ds.root} is not the one {plan.run.root} was trained on "
            "(its file list or labels differ); pass --data with the training dataset"
        )
    return ds, dataset


def _init_store(store: RenderStore, ds: Dataset, dataset: dict[str, Any], image_size: int, map_size: int,
                names: list[str], precision: str = "fp32") -> None:
    """Create the store's manifest, or check that it describes this validation set; ``names``
    join the settings it records as rendered at every exported epoch. A store of another
    precision than fp32 records it (an fp32 manifest is as it always was)."""
    store.init(
        {
            **({"precision": precision} if precision != "fp32" else {}),
            "settings": sorted(names),
            "dataset": dataset,
            "val": {
                "files": [str(s.path.relative_to(ds.root)) for s in ds.val],
                "labels": [s.label for s in ds.val],
                # To each image as rendered (resized to image_size): the box a site or analysis may draw.
                "boxes": clip_boxes(ds.val, image_size),
            },
            "image_size": image_size,
            "map_size": map_size,
        }
    )


def clip_boxes(samples: Sequence[Any], size: int | None = None) -> list[list[int] | None]:
    """The samples' boxes as :func:`edvis.data.rendered_boxes` gives them (clipped to their
    images and, with ``size``, scaled to the size × size image the model sees); a StoreError
    naming the image when one is unreadable or its box lies wholly outside it."""
    try:
        return rendered_boxes(samples, size)
    except DatasetError as e:
        raise StoreError(str(e)) from None


def _decode(plan: _Plan, ds: Dataset, batch: int) -> _Images:
    """Decode the validation images (in parallel) and pick those whose every layer is kept."""
    t0 = time.monotonic()
    clean = load_images([s.path for s in ds.val], size=plan.config["model"]["image_size"], workers=os.cpu_count() or 1)
    labels = np.array([s.label for s in ds.val], dtype=np.int64)
    keys = plan.seed * len(clean) + np.arange(len(clean))  # one noise stream per (image, seed)
    log.info(f"render: {len(plan.todo)} unit(s) (epoch × setting){plan.part} × {len(clean)} images, batch {batch}; "
        f"decoded in {time.monotonic() - t0:.1f}s")
    return _Images(clean, labels, keys, layer_images(labels, plan.seed))


def _render_units(plan: _Plan, sessions: _Sessions, images: _Images, batch: int, layers_left: set[int]) -> list[Unit]:
    """Every unit of ``plan.todo``, as a pipeline: a thread perturbs the next group of settings
    while onnxruntime infers this one, and another summarises and writes each unit. The layer
    files of ``layers_left`` are written (and taken off it) as their sessions come by."""
    clean, todo = images.clean, plan.todo
    wanted = {u.perturbation for u in todo}
    groups = group_settings([n for n in plan.names if n in wanted], clean.nbytes) if todo else []
    todo_set = set(todo)
    done: list[Unit] = []
    start = time.monotonic()

    def prepare(group: list[str]) -> dict[str, np.ndarray]:
        return {name: clean if name == "clean" else apply(name, clean, images.keys) for name in group}

    def write(unit: Unit, logits: np.ndarray, maps: np.ndarray) -> None:
        meta = {**plan.meta(unit.epoch), "images": len(clean), "params": PERTURBATIONS[unit.perturbation].params}
        arrays = summarise(logits, maps, images.labels, top5_maps=unit.perturbation == "clean")
        plan.store.write(unit, arrays, meta)

    with ThreadPoolExecutor(1, "edvis-prepare") as prep, ThreadPoolExecutor(1, "edvis-write") as writer:
        pending: list[Future] = []
        upcoming = prep.submit(prepare, groups[0]) if groups else None
        for g, group in enumerate(groups):
            perturbed = upcoming.result()
            if g + 1 < len(groups):
                upcoming = prep.submit(prepare, groups[g + 1])
            for epoch in sorted({u.epoch for u in todo if u.perturbation in group}):
                sess = sessions.get(epoch)
                if epoch in layers_left:
                    _write_layers(plan, epoch, sess, images)
                    layers_left.discard(epoch)
                for name in group:
                    unit = Unit(name, epoch)
                    if unit not in todo_set:
                        continue
                    infer = infer_bound if sess.get_providers()[0] == CUDA else _infer
                    logits, maps = infer(sess, perturbed[name], batch)
                    pending.append(writer.submit(write, unit, logits, maps))
                    done.append(unit)
                    rate = len(done) * len(clean) / (time.monotonic() - start)
                    left = (len(todo) - len(done)) * len(clean) / rate
                    log.info(f"render: {unit.key} ({len(done)}/{len(todo)}) {rate:.0f} img/s, "
                        f"{left:.0f}s left")
                # Surface a failed write early rather than after hours of rendering.
                for f in [f for f in pending if f.done()]:
                    f.result()
                    pending.remove(f)
        for f in pending:
            f.result()
    return done


def _write_layers(plan: _Plan, epoch: int, sess: Any, images: _Images) -> None:
    """Every layer's output (and the maps) of the chosen images at ``epoch``."""
    taps = [o.name for o in sess.get_outputs() if o.name.startswith(LAYER_PREFIX)] + ["maps"]
    outs = sess.run(taps, {"images": images.clean[images.chosen]})
    named = [(t.removeprefix(LAYER_PREFIX), o) for t, o in zip(taps, outs)]
    plan.store.write_layers(epoch, images.chosen, named, plan.meta(epoch))


def layer_images(labels: np.ndarray, seed: int, k: int = 12) -> np.ndarray:
    """Validation images whose every layer is kept: one image from each of ``k`` classes,
    classes and images drawn with ``numpy.random.default_rng(seed)`` (sorted indices)."""
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(labels))[:k]
    return np.sort([rng.choice(np.flatnonzero(labels == c)) for c in classes]).astype(np.int64)


def _sound_meta(read: Any, key: Any) -> dict[str, Any] | None:
    """``read(key)``, or None (so that it is written again) when the file is damaged or has no
    recorded digest (a store of an edvis before digests)."""
    try:
        return read(key)
    except DamagedError as e:
        log.info(f"render: {e.args[0].split(';')[0]}: writing it again")
        return None


def _up_to_date(meta: dict[str, Any] | None, sha: str, seed: int) -> bool:
    return (meta is not None and meta.get("format") == UNIT_FORMAT and meta.get("onnx_sha256") == sha
            and meta.get("seed") == seed)


def _infer(session: Any, images: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Run ``images`` (N, H, W, 3) uint8 through ``session`` in batches → logits, maps."""
    logits, maps = None, None
    for i in range(0, len(images), batch):
        lo, mp = session.run(["logits", "maps"], {"images": images[i : i + batch]})
        if logits is None:  # preallocate once the output shapes are known
            logits = np.empty((len(images), *lo.shape[1:]), lo.dtype)
            maps = np.empty((len(images), *mp.shape[1:]), mp.dtype)
        logits[i : i + len(lo)], maps[i : i + len(mp)] = lo, mp
    return logits, maps


def merge_stores(run_dir: str | Path, sources: Sequence[str | Path]) -> list[Unit]:
    """Copy into RUN's store the units that shards rendered into other copies of the run.

    Each source is a run folder or its ``render`` folder. A unit is taken only when it was
    rendered from the very ONNX file RUN holds for its epoch (same sha256) over the same
    validation set; units RUN already has up to date are kept. The layer files (``layers/``)
    come along under the same rules. Returns the units copied.
    """
    run = Run(Path(run_dir))
    dest = RenderStore(run.render_dir)
    shas = {e: run.read_export_record(e)["sha256"] for e in run.onnx_epochs()}
    copied: list[Unit] = []
    for src in sources:
        src = Path(src)
        store = RenderStore(src / "render" if (src / "render" / "manifest.json").exists() else src)
        manifest = store.manifest()
        if dest.manifest_path.exists():
            mine = dest.manifest()
            if not same_validation_set(manifest, mine):
                raise StoreError(f"{store.manifest_path} describes another validation set than {dest.manifest_path}")
        else:
            dest.init({k: v for k, v in manifest.items() if k != "schema"})
        _merge_files(run, store, dest, shas, copied)
        log.info(f"render: merged {src}: {len(copied)} unit(s) copied so far")
    return copied


def _merge_files(run: Run, store: RenderStore, dest: RenderStore, shas: dict[int, str], copied: list[Unit]) -> None:
    """Copy ``store``'s units and layer files that ``dest`` lacks up to date: each source file is
    read once, verified against its digest, and written with it."""
    # (source file, its meta, the destination's meta, destination file, unit or None for layers)
    files = [(store.path(u), store.meta(u), _sound_meta(dest.meta, u), dest.path(u), u) for u in store.units()]
    files += [(store.layers_path(e), store.layers_meta(e), _sound_meta(dest.layers_meta, e), dest.layers_path(e), None)
              for e in store.layer_epochs()]
    for path, meta, have, target, unit in files:
        if meta.get("onnx_sha256") != shas.get(meta["epoch"]):
            raise StoreError(f"{path} was rendered from another ONNX file than "
                             f"{run.onnx(meta['epoch'])}; export and render again")
        if _up_to_date(have, meta["onnx_sha256"], meta.get("seed")):
            continue
        data = path.read_bytes()
        if digest.sha256_bytes(data) != store.digest(path):  # changed since meta() verified it
            raise DamagedError(f"{path} changed while being merged; merge again")
        digest.write_verified(target, data)
        if unit is not None:
            copied.append(unit)
