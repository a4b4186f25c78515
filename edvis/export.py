"""Checkpoint → ONNX, checked by ``onnx.checker`` and against PyTorch with onnxruntime.

The graph takes what an image file holds, ``images``: uint8 (B, H, W, 3) RGB, and returns
``logits`` (B, C) and ``maps`` (B, C, S, S); normalisation is inside the graph, so the renderer
needs neither torch nor the training statistics. The batch axis is dynamic. Extra outputs named
``layer.<name>`` expose intermediate layers (``TAPS``) for the site's Layers page; asking
onnxruntime for logits and maps only costs nothing more.

Parity: on a seeded random batch and on real validation images, every output value must satisfy
``|ort - torch| <= ATOL + RTOL * |torch|`` (float32 on the CPU; the two runtimes order sums
differently, so bit equality is not expected).
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

try:  # only onnx.checker needs it: torch's TorchScript exporter writes the file itself
    import onnx
except ImportError:  # a machine with torch and onnxruntime alone (docs/rendering.md, the device check)
    onnx = None  # type: ignore[assignment]

from edvis.errors import EdvisError
from edvis.models import Uint8Input, build_model
from edvis.run import Run, RunError, atomic, check_model_config, load_checkpoint
from edvis.run.digest import recorded_digest

log = logging.getLogger(__name__)

OPSET = 17
ATOL = 1e-4
RTOL = 1e-3
# Version of what an exported file holds; files of another version are exported again.
EXPORT_FORMAT = 2  # 2: intermediate layers as extra outputs
# Intermediate outputs exported beside logits and maps, named ``layer.<name>``, for the site's
# Layers page: (name, path of the submodule whose output it is). The sides noted are the paper
# stem's; ``--stem nopool`` doubles those from layer1 on, ``--stem cifar`` doubles conv1's and
# quadruples the rest (the module paths are the same for every stem and decoder).
TAPS: dict[str, list[tuple[str, str]]] = {
    "edvis-resnet18": [
        ("conv1", "encoder.2"),  # after conv1, bn1 and ReLU: (64, H/2, W/2)
        ("layer1", "encoder.4"),
        ("layer2", "encoder.5"),
        ("layer3", "encoder.6"),
        ("layer4", "encoder.7"),  # (512, H/32, W/32)
        ("expand", "decoder.expand"),  # one channel per class: (C, H/32, W/32)
        ("up1", "decoder.up1"),  # (C, H/16, W/16); the maps are up2's output
    ],
    "cam-resnet18": [  # the maps (CAM) are computed from layer4
        ("conv1", "encoder.2"),
        ("layer1", "encoder.4"),
        ("layer2", "encoder.5"),
        ("layer3", "encoder.6"),
        ("layer4", "encoder.7"),
    ],
}


class Tapped(torch.nn.Module):
    """``wrapped``'s outputs followed by those of the submodules ``taps`` names, in order."""

    def __init__(self, wrapped: torch.nn.Module, model: torch.nn.Module, taps: list[tuple[str, str]]) -> None:
        super().__init__()
        self.wrapped = wrapped
        self.names = [name for name, _ in taps]
        self._seen: dict[str, torch.Tensor] = {}
        for name, path in taps:
            model.get_submodule(path).register_forward_hook(self._keep(name))

    def _keep(self, name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
            self._seen[name] = output

        return hook

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self._seen.clear()
        outputs = self.wrapped(images)
        return (*outputs, *(self._seen[name] for name in self.names))


class ParityError(EdvisError):
    """onnxruntime's outputs differ from PyTorch's beyond the stated tolerance."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_up_to_date(run: Run, epoch: int) -> bool:
    """True when the epoch's ONNX file was exported from the checkpoint now on disk and its bytes
    still match the digest its record holds. Digests are compared, never size or mtime: a
    checkpoint's recorded digest (its sidecar) against the one the export record holds, and the
    ONNX file's bytes against the record (so a damaged ONNX file is exported again)."""
    try:
        info = run.read_export_record(epoch)  # also checks the ONNX file's size
    except (RunError, FileNotFoundError):
        return False
    if info.get("format") != EXPORT_FORMAT or info.get("checkpoint", {}).get("sha256") != recorded_digest(run.checkpoint(epoch)):
        return False
    try:
        run.read_onnx(epoch)
    except RunError as e:
        log.info(f"export: {str(e).split(';')[0]}: exporting it again")
        return False
    return True


def export_epoch(run: Run, epoch: int, check_images: np.ndarray | None = None,
                 run_model: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export one checkpoint, check it, and record the result beside the ONNX file.

    ``run_model``, the model config.json describes, must match the checkpoint's when given.
    """
    ckpt_path = run.checkpoint(epoch)
    ckpt, ckpt_sha = load_checkpoint(ckpt_path, with_digest=True)  # verified against its digest
    mc = ckpt["model_config"]
    if run_model is not None:  # the model config.json describes
        check_model_config(mc, run_model, ckpt_path, f"the run {run.root}")
    model = build_model(mc)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise RunError(f"{ckpt_path}: its weights do not fit its own model_config: {str(e)[:300]}") from None
    wrapped = Uint8Input(model, mc["mean"], mc["std"]).eval()
    # A torchvision model names its own taps: the end of each resolution of its body.
    taps = TAPS.get(mc.get("name", "edvis-resnet18")) or (model.taps() if hasattr(model, "taps") else [])
    tapped = Tapped(wrapped, model, taps).eval()
    names = ["logits", "maps", *(f"layer.{name}" for name, _ in taps)]
    size = mc["image_size"]
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    out = run.onnx(epoch)
    with atomic.atomic_path(out) as tmp, warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of dynamo=True, which takes
        # ~5 s a checkpoint here against ~1 s; a run has one ONNX file per epoch.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            tapped, (example,), str(tmp), dynamo=False, opset_version=OPSET,
            input_names=["images"], output_names=names,
            dynamic_axes={name: {0: "batch"} for name in ["images", *names]},
        )
        if onnx is not None:
            onnx.checker.check_model(str(tmp), full_check=True)
        parity = check_parity(wrapped, tmp, size, check_images)
    info = {
        "format": EXPORT_FORMAT,
        "epoch": epoch,
        "outputs": names,
        "checkpoint": {"sha256": ckpt_sha},
        "sha256": sha256_file(out),
        "size": out.stat().st_size,
        "opset": OPSET,
        "model_config": mc,
        "parity": parity,
    }
    atomic.write_json(run.export_record(epoch), info)
    return info


def check_parity(
    wrapped: torch.nn.Module, onnx_path: Path, size: int, real: np.ndarray | None = None
) -> dict[str, Any]:
    """Compare onnxruntime with PyTorch on random and real images; raise ParityError beyond tolerance."""
    rng = np.random.default_rng(0)
    batches = {"random": rng.integers(0, 256, (8, size, size, 3), dtype=np.uint8)}
    if real is not None and len(real):
        batches["real"] = real
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    report: dict[str, Any] = {"atol": ATOL, "rtol": RTOL}
    for name, images in batches.items():
        got = session.run(["logits", "maps"], {"images": images})
        with torch.no_grad():
            want = [t.numpy() for t in wrapped(torch.from_numpy(images))]
        for output, g, w in zip(("logits", "maps"), got, want):
            err = np.abs(g - w)
            worst = float((err - RTOL * np.abs(w)).max())
            report[f"{name}_{output}_max_abs"] = float(err.max())
            if worst > ATOL:
                raise ParityError(
                    f"{onnx_path}: onnxruntime and PyTorch differ on {name} images, output {output!r}: "
                    f"max |diff| {err.max():.3g} exceeds {ATOL} + {RTOL}·|value|"
                )
    return report


def export_run(
    run_dir: str | Path,
    check_images: np.ndarray | Callable[[], np.ndarray | None] | None = None,
) -> list[int]:
    """Export every checkpoint whose ONNX is missing or stale; returns the epochs exported.

    ``check_images`` (real images for the parity check) may be a callable, called only when
    there is something to export.
    """
    run = Run(Path(run_dir))
    epochs = run.checkpoint_epochs()
    if not epochs:
        raise RunError(f"no checkpoints in {run.checkpoint_dir} (run `edvis train` first)")
    # Read (and so schema-checked) once, whether or not anything is left to export.
    run_model = run.read_config()["model"] if run.config_path.exists() else None
    todo = [e for e in epochs if not is_up_to_date(run, e)]
    if not todo:
        log.info(f"export: all {len(epochs)} epochs up to date")
    elif callable(check_images):
        check_images = check_images()
    if todo and onnx is None:
        log.info("export: the onnx package is not installed: onnx.checker is skipped (the parity check runs)")
    for k, e in enumerate(todo, 1):
        info = export_epoch(run, e, check_images, run_model)
        p = info["parity"]
        log.info(
            f"export: epoch {e} ({k}/{len(todo)}) → {run.onnx(e).name}, parity max |diff| "
            f"logits {max(v for key, v in p.items() if key.endswith('logits_max_abs')):.1e}, "
            f"maps {max(v for key, v in p.items() if key.endswith('maps_max_abs')):.1e}"
        )
    return todo
