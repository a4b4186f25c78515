"""The device check's torch parts: fp16 ONNX files traced from the model in float16 (where the
onnx package, which the float16 converter needs, is missing), and bare forward speeds of torch
eager against onnxruntime on the same checkpoint."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edvis.export import OPSET
from edvis.infer import batch_for_memory, cuda_free_bytes, infer_bound
from edvis.run import Run, atomic, digest, load_checkpoint


def _wrapped(run: Run, epoch: int) -> Any:
    """The epoch's model taking uint8 images, in eval mode, on the CPU."""
    from edvis.models import Uint8Input, build_model

    ckpt = load_checkpoint(run.checkpoint(epoch))
    mc = ckpt["model_config"]
    model = build_model(mc)
    model.load_state_dict(ckpt["model"])
    return Uint8Input(model, mc["mean"], mc["std"]).eval()


def trace_fp16(run_dir: Path, device: str) -> list[int]:
    """RUN/onnx-fp16/epoch_NNN.onnx for every exported epoch, traced from the model in float16:
    uint8 images in, float32 ``logits`` and ``maps`` out."""
    import torch

    class Half(torch.nn.Module):
        def __init__(self, wrapped: Any) -> None:
            super().__init__()
            self.wrapped = wrapped.half()

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = images.permute(0, 3, 1, 2).half() * self.wrapped.scale - self.wrapped.shift
            logits, maps = self.wrapped.model(x)
            return logits.float(), maps.float()

    source, target = Run(Path(run_dir)), Run(Path(run_dir), "fp16")
    epochs = source.onnx_epochs()
    for epoch in epochs:
        half = Half(_wrapped(source, epoch)).to(device)
        size = source.read_export_record(epoch)["model_config"]["image_size"]
        example = torch.zeros(2, size, size, 3, dtype=torch.uint8, device=device)
        with atomic.atomic_path(target.onnx(epoch)) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(half, (example,), str(tmp), dynamo=False, opset_version=OPSET, input_names=["images"],
                              output_names=["logits", "maps"],
                              dynamic_axes={n: {0: "batch"} for n in ("images", "logits", "maps")})
        data = target.onnx(epoch).read_bytes()
        atomic.write_json(target.export_record(epoch), {
            "format": 1, "precision": "fp16", "traced": True, "epoch": epoch, "outputs": ["logits", "maps"],
            "source": {"sha256": source.read_export_record(epoch)["sha256"]},
            "sha256": digest.sha256_bytes(data), "size": len(data),
        })
    return epochs


def _timed(fn: Any, images: np.ndarray, batch: int, sync: Any = None) -> float:
    """images/s of ``fn(batch)`` over ``images``, after one warm-up batch."""
    fn(images[:batch])
    if sync:
        sync()
    t = time.perf_counter()
    for i in range(0, len(images), batch):
        fn(images[i : i + batch])
    if sync:
        sync()
    return len(images) / (time.perf_counter() - t)


def forward_rates(run: Run, device: str, count: int, gpu_providers: list[list[str]]) -> list[tuple[str, float]]:
    """(label, images/s) of bare forwards of the last epoch on ``count`` seeded random images:
    torch eager (fp32, and fp16 autocast on CUDA), then onnxruntime fp32 and fp16 on each GPU
    provider (I/O binding on CUDA), or on the CPU where there is none."""
    import onnxruntime as ort
    import torch

    epoch = run.onnx_epochs()[-1]
    size = run.read_export_record(epoch)["model_config"]["image_size"]
    images = np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    batch = batch_for_memory(cuda_free_bytes(), size) if device == "cuda" else min(16, count)
    model = _wrapped(run, epoch).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else None
    out = []
    for label, autocast in [("fp32", False)] + ([("fp16 autocast", True)] if device == "cuda" else []):
        def eager(b: np.ndarray, autocast: bool = autocast) -> None:
            with torch.inference_mode(), torch.autocast(device, dtype=torch.float16, enabled=autocast):
                model(torch.from_numpy(b).to(device, non_blocking=True))

        out.append((f"forward, torch eager {device.upper()} {label}, batch {batch}", _timed(eager, images, batch, sync)))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    for providers in gpu_providers or [["CPUExecutionProvider"]]:
        where = providers[0].removesuffix("ExecutionProvider")
        for precision in ("fp32", "fp16"):
            try:
                sess = ort.InferenceSession(Run(run.root, precision).read_onnx(epoch)[0], options, providers=providers)
            except Exception as e:  # e.g. TensorRT missing its libraries: say so and go on
                out.append((f"forward, onnxruntime {where} {precision}: could not start ({str(e)[:80]})", float("nan")))
                continue
            if providers[0] == "CUDAExecutionProvider":
                fn = lambda b, s=sess: infer_bound(s, b, len(b))
            else:
                fn = lambda b, s=sess: s.run(["logits", "maps"], {"images": b})
            out.append((f"forward, onnxruntime {where} {precision}, batch {batch}", _timed(fn, images, batch)))
    return out
