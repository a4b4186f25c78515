"""Batched onnxruntime inference over the validation set, for every exported epoch.

For each (perturbation, epoch) unit the store gets every validation image's probabilities,
top-5, and the maps of its true and its top-1 class (see edvis.store). A unit already rendered
from the same ONNX file is skipped, so a rerun after one more epoch renders only that epoch.
Imports no torch.
"""

from __future__ import annotations

import glob
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edvis.dataset import load_images, open_dataset
from edvis.perturb import PERTURBATIONS, apply, paper_set
from edvis.run import Run, RunError
from edvis.store import RenderStore, Unit

PROVIDERS = ("auto", "cpu", "cuda")


def gpu_present() -> bool:
    """An NVIDIA device node exists (checked without loading any CUDA library)."""
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def session_providers(provider: str = "auto") -> list[str]:
    """onnxruntime execution providers for ``--provider auto|cpu|cuda``."""
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise ValueError(f"--provider must be one of {PROVIDERS}, got {provider!r}")
    want_cuda = provider == "cuda" or (provider == "auto" and gpu_present())
    if not want_cuda:
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError("--provider cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
    # CUDA and cuDNN may come from the nvidia-* pip wheels (e.g. installed with torch); load them
    # the way onnxruntime documents, before the first CUDA session.
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, stable for large logits."""
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def summarise(logits: np.ndarray, maps: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """One unit's arrays from raw outputs: logits (N, C), maps (N, C, S, S), labels (N,)."""
    probs = softmax(logits)
    k = min(5, probs.shape[1])
    # Stable sort on -probs: ties keep the lower class index first.
    top5 = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(labels))
    return {
        "probs": probs.astype(np.float16),
        "top5": top5.astype(np.int16),
        "top5_prob": np.take_along_axis(probs, top5, axis=1).astype(np.float32),
        "map_true": maps[rows, labels].astype(np.float16),
        "map_pred": maps[rows, top5[:, 0]].astype(np.float16),
    }


def render_run(
    run_dir: str | Path,
    data_root: str | Path | None = None,
    provider: str = "auto",
    batch_size: int = 128,
    perturbations: Sequence[str] = (),
    seed: int = 0,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> list[Unit]:
    """Render every (perturbation, exported epoch) unit not yet in the store; returns those rendered.

    The clean images are always rendered; ``perturbations`` adds settings (see
    ``resolve_perturbations``). Random perturbations of image ``i`` are keyed by
    ``seed * N + i``, so they do not depend on batching or order.
    """
    import onnxruntime as ort

    run = Run(Path(run_dir))
    config = run.read_config()
    ds = open_dataset(data_root or config["dataset"]["root"])
    dataset = ds.record()
    if dataset["fingerprint"] != config["dataset"]["fingerprint"]:
        raise RunError(
            f"the dataset at {ds.root} is not the one {run.root} was trained on "
            "(its file list or labels differ); pass --data with the training dataset"
        )
    epochs = run.onnx_epochs()
    if not epochs:
        raise RunError(f"no ONNX files in {run.onnx_dir} (run `edvis export` first)")
    mc = config["model"]
    store = RenderStore(run.render_dir)
    store.init(
        {
            "dataset": dataset,
            "val": {
                "files": [str(s.path.relative_to(ds.root)) for s in ds.val],
                "labels": [s.label for s in ds.val],
                "boxes": [list(s.box) if s.box else None for s in ds.val],
            },
            "image_size": mc["image_size"],
            "map_size": mc["image_size"] // 8,
        }
    )
    names = resolve_perturbations(perturbations)
    todo = []  # (unit, onnx sha256)
    for e in epochs:
        sha = run.read_export_record(e)["sha256"]
        for name in names:
            meta = store.meta(Unit(name, e))
            if meta is None or meta.get("onnx_sha256") != sha or meta.get("seed") != seed:
                todo.append((Unit(name, e), sha))
    if not todo:
        log(f"render: all {len(epochs)} epochs × {len(names)} perturbation(s) up to date")
        return []

    providers = session_providers(provider)
    log(f"render: {len(todo)} unit(s) (epoch × perturbation) × {len(ds.val)} images on "
        f"{providers[0].removesuffix('ExecutionProvider')}")
    t0 = time.monotonic()
    clean = load_images([s.path for s in ds.val], size=mc["image_size"])  # (N, H, W, 3) uint8
    labels = np.array([s.label for s in ds.val], dtype=np.int64)
    keys = seed * len(clean) + np.arange(len(clean))  # one noise stream per (image, seed)
    log(f"render: decoded {len(clean)} images in {time.monotonic() - t0:.1f}s")

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    done = []
    # Perturbation outer, epoch inner: one perturbed copy of the images in memory at a time.
    for name in names:
        units = [(u, h) for u, h in todo if u.perturbation == name]
        if not units:
            continue
        images = apply(name, clean, keys)
        for unit, sha in units:
            t = time.monotonic()
            try:
                session = ort.InferenceSession(str(run.onnx(unit.epoch)), options, providers=providers)
            except Exception as e:  # noqa: BLE001 (onnxruntime errors share no base class but Exception)
                raise RunError(f"cannot load {run.onnx(unit.epoch)} (run `edvis export` again): {e}") from None
            outs = [session.run(["logits", "maps"], {"images": images[i : i + batch_size]})
                    for i in range(0, len(images), batch_size)]
            logits = np.concatenate([o[0] for o in outs])
            maps = np.concatenate([o[1] for o in outs])
            meta = {"onnx_sha256": sha, "seed": seed, "images": len(images),
                    "params": PERTURBATIONS[name].params}
            store.write(unit, summarise(logits, maps, labels), meta)
            done.append(unit)
            log(f"render: {unit.key} ({len(done)}/{len(todo)}) {len(images) / (time.monotonic() - t):.0f} img/s")
    return done


def resolve_perturbations(spec: Sequence[str]) -> list[str]:
    """Setting names from ``--perturbations``: names from edvis.perturb, ``paper`` for the
    paper's seven, ``all`` for every one; ``clean`` always comes first."""
    names = ["clean"]
    for item in spec:
        expanded = {"paper": paper_set(), "all": list(PERTURBATIONS)}.get(item, [item])
        for name in expanded:
            if name not in PERTURBATIONS:
                raise ValueError(f"--perturbations: unknown setting {name!r} (known: paper, all, "
                                 f"{', '.join(PERTURBATIONS)})")
            if name not in names:
                names.append(name)
    return names
