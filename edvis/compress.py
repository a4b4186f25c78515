"""Half-size copies of exported ONNX files for the site's Try it page (``--try-precision fp16``).

```
RUN/onnx/
  epoch_NNN.fp16.onnx   epoch_NNN.onnx with every float32 weight stored as float16 and cast back
                        to float32 inside the graph (so every runtime, WebAssembly included, runs it
                        with float32 arithmetic): about half the bytes to download
  epoch_NNN.fp16.json   its record: sha256 and size, the sha256 of the fp32 file it was made from,
                        and its measured deviation from that file over the validation set
```

The deviation is measured with onnxruntime on every validation image of the render store's
manifest: the largest absolute difference of a raw map value, the same relative to the largest
fp32 map value, the largest difference of a drawn map of the five most probable classes (each
map scaled to its own maximum, 0..255, as the site draws it), the largest logit difference, and
the share of images whose top-1 class is the same. A copy whose record names the fp32 file now on
disk is kept. Imports no torch.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edvis.data import load_images
from edvis.run import RenderStore, Run, RunError, atomic
from edvis.run.digest import sha256_bytes

log = logging.getLogger(__name__)

__all__ = ["compress_epochs", "deviation", "fp16_path", "fp16_record_path", "halve"]

FORMAT = 2  # 2: the drawn difference over the top-5 maps only
MIN_ELEMENTS = 16  # smaller tensors (shapes, scalars) stay float32: nothing to gain
BATCH = 64


def fp16_path(run: Run, epoch: int) -> Path:
    return run.onnx_dir / f"epoch_{epoch:03d}.fp16.onnx"


def fp16_record_path(run: Run, epoch: int) -> Path:
    return run.onnx_dir / f"epoch_{epoch:03d}.fp16.json"


def halve(model_bytes: bytes) -> bytes:
    """The ONNX model with each float32 initializer of at least MIN_ELEMENTS values stored as
    float16, followed by a Cast back to float32 under its old name; inputs, outputs and the
    arithmetic stay float32."""
    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    kept, halves, casts = [], [], []
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= MIN_ELEMENTS:
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{init.name}.fp16")
            halves.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=f"{init.name}.cast"))
        else:
            kept.append(init)
    nodes = list(graph.node)
    del graph.initializer[:]
    graph.initializer.extend(kept + halves)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _drawn(maps: np.ndarray) -> np.ndarray:
    """(N, S, S) maps as the site draws them: negatives as zero, scaled to their own maximum, 0..255."""
    m = np.maximum(np.nan_to_num(maps.astype(np.float64)), 0)
    peak = m.max(axis=(1, 2), keepdims=True)
    return np.rint(255 * np.divide(m, peak, out=np.zeros_like(m), where=peak > 0))


def deviation(full: bytes, half: bytes, images: np.ndarray) -> dict[str, Any]:
    """How far ``half``'s logits and maps are from ``full``'s on ``images`` (N, H, W, 3) uint8."""
    sessions = [ort.InferenceSession(b, providers=["CPUExecutionProvider"]) for b in (full, half)]
    worst = {"map_abs": 0.0, "map_peak": 0.0, "drawn": 0.0, "logit_abs": 0.0}
    same = 0
    for start in range(0, len(images), BATCH):
        batch = images[start:start + BATCH]
        (l32, m32), (l16, m16) = (s.run(["logits", "maps"], {"images": batch}) for s in sessions)
        worst["map_abs"] = max(worst["map_abs"], float(np.abs(m16 - m32).max()))
        worst["map_peak"] = max(worst["map_peak"], float(np.abs(m32).max()))
        top5 = np.argsort(-l32, axis=1, kind="stable")[:, :5]  # the maps the pages draw
        rows = np.arange(len(batch))[:, None]
        diff = np.abs(_drawn(m16[rows, top5].reshape(-1, *m32.shape[2:])) - _drawn(m32[rows, top5].reshape(-1, *m32.shape[2:])))
        worst["drawn"] = max(worst["drawn"], float(diff.max()))
        worst["logit_abs"] = max(worst["logit_abs"], float(np.abs(l16 - l32).max()))
        same += int((l16.argmax(axis=1) == l32.argmax(axis=1)).sum())
    return {
        "images": int(len(images)),
        "max_map_abs_diff": worst["map_abs"],
        "max_map_rel_diff": worst["map_abs"] / worst["map_peak"] if worst["map_peak"] > 0 else 0.0,
        "max_drawn_diff": int(worst["drawn"]),
        "max_logit_abs_diff": worst["logit_abs"],
        "top1_agreement": same / len(images) if len(images) else 1.0,
    }


def _validation_images(run: Run, data_root: Path | None) -> np.ndarray:
    manifest = RenderStore(run.render_dir).manifest()
    root = Path(data_root or manifest["dataset"]["root"])
    return load_images([root / f for f in manifest["val"]["files"]], size=int(manifest.get("image_size", 64)))


def _up_to_date(run: Run, epoch: int, source_sha: str) -> bool:
    try:
        record = json.loads(fp16_record_path(run, epoch).read_text(encoding="utf-8"))
        data = fp16_path(run, epoch).read_bytes()
    except (OSError, ValueError):
        return False
    return (record.get("format") == FORMAT and record.get("source_sha256") == source_sha
            and record.get("sha256") == sha256_bytes(data))


def compress_epochs(run_dir: str | Path, epochs: list[int], data_root: Path | None = None) -> list[int]:
    """Write the fp16 copy and its record of each of ``epochs`` whose copy is missing or stale;
    returns the epochs written."""
    run = Run(Path(run_dir))
    todo = []
    for epoch in epochs:
        try:
            source_sha = str(run.read_export_record(epoch).get("sha256", ""))
        except RunError as e:
            raise RunError(f"--try-precision fp16: {e}") from None
        if not _up_to_date(run, epoch, source_sha):
            todo.append(epoch)
    images = _validation_images(run, data_root) if todo else None
    for epoch in todo:
        full, record = run.read_onnx(epoch)  # verified against its export record
        half = halve(full)
        measured = deviation(full, half, images)
        atomic.write_bytes(fp16_path(run, epoch), half)
        atomic.write_json(fp16_record_path(run, epoch), {
            "format": FORMAT, "epoch": epoch, "precision": "fp16", "sha256": sha256_bytes(half), "size": len(half),
            "source_sha256": record["sha256"], "source_size": len(full), **measured,
        })
        log.info(f"compress: epoch {epoch} → {fp16_path(run, epoch).name}, {len(half) / 1e6:.1f} MB "
                 f"(fp32 {len(full) / 1e6:.1f} MB); top-1 agreement {100 * measured['top1_agreement']:.2f}% "
                 f"over {measured['images']} images, max map difference {measured['max_map_abs_diff']:.2g} "
                 f"({measured['max_drawn_diff']} of 255 drawn)")
    return todo
