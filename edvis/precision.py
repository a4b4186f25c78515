"""The float32 ONNX files, approximated: float16 for the GPU, int8 for the CPU, and what it costs.

```
RUN/onnx-fp16/epoch_NNN.onnx  float16 weights and arithmetic (onnxruntime's float16 converter)
RUN/onnx-int8/epoch_NNN.onnx  int8 weights and activations (onnxruntime's static quantisation, QDQ)
RUN/onnx-<p>/epoch_NNN.json   its sha256, the float32 file it was made from, how it was made
RUN/onnx-<p>/report.json      against float32 at the last epoch: speed, top-1 agreement, map
                              deviation, pointing game
```

Each precision renders into its own store (``RUN/render-<p>/``, see ``edvis.run.Run``) and is
analysed into its own folder, so float32 results never mix with approximations. Every file
keeps the float32 file's interface: uint8 images in, float32 ``logits`` and ``maps`` (and the
``layer.*`` outputs) out.

int8 is calibrated on ``calibration`` training images drawn with ``numpy.random.default_rng(seed)``
(min–max ranges, per-channel weight scales, unsigned 8-bit activations). A file is converted again
only when its float32 source or the way it is made changes. Needs the onnx package (the ``train``
extra); imports no torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edvis.analyze.metrics import localisation
from edvis.data import load_images, open_dataset, rendered_boxes
from edvis.errors import UsageError
from edvis.run import Run, RunError, atomic, digest

log = logging.getLogger(__name__)

__all__ = ["CALIBRATION_IMAGES", "CONVERSIONS", "REPORT", "calibration_indices", "compare_sessions", "convert_run",
           "report_is_current", "report_run"]

# The approximations this module makes (fp32 is the exported file itself).
CONVERSIONS = ("fp16", "int8")
CALIBRATION_IMAGES = 256
REPORT = "report.json"
# Version of how a file is converted; files of another version are converted again.
CONVERT_FORMAT = 1


def calibration_indices(num_train: int, count: int, seed: int) -> np.ndarray:
    """The training images int8 is calibrated on: ``count`` of ``num_train`` (all when fewer),
    drawn without replacement with ``numpy.random.default_rng(seed)``, in ascending order."""
    if count < 1:
        raise UsageError(f"--calibration-images must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_train, min(count, num_train), replace=False)).astype(np.int64)


def _check(precision: str) -> None:
    if precision not in CONVERSIONS:
        raise UsageError(f"--precision must be fp32 or one of {CONVERSIONS}, got {precision!r}")


def convert_run(run_dir: str | Path, precision: str, calibration: int = CALIBRATION_IMAGES, seed: int = 0,
                data_root: str | Path | None = None) -> list[int]:
    """Make RUN/onnx-<precision>/ from every exported float32 epoch that lacks an up-to-date
    file; return the epochs converted."""
    _check(precision)
    source, target = Run(Path(run_dir)), Run(Path(run_dir), precision)
    epochs = source.onnx_epochs()
    if not epochs:
        raise RunError(f"no ONNX files in {source.onnx_dir} (run `edvis export` first)")
    params = {"format": CONVERT_FORMAT, "precision": precision}
    if precision == "int8":
        params.update(calibration=calibration, seed=seed, method="minmax", per_channel=True,
                      activations="uint8", weights="int8", quant_format="QDQ")
    todo = [e for e in epochs if not _up_to_date(source, target, e, params)]
    if not todo:
        log.info(f"export: all {len(epochs)} {precision} files up to date in {target.onnx_dir}")
        return []
    batches = _calibration_batches(source, calibration, seed, data_root) if precision == "int8" else []
    for k, epoch in enumerate(todo, 1):
        data, record = source.read_onnx(epoch)  # verified against its export record
        t0 = time.monotonic()
        out = _fp16(data) if precision == "fp16" else _int8(data, batches)
        path = target.onnx(epoch)
        atomic.write_bytes(path, out)
        atomic.write_json(target.export_record(epoch), {
            **params, "epoch": epoch, "outputs": record.get("outputs", ["logits", "maps"]),
            "source": {"path": f"onnx/{path.name}", "sha256": record["sha256"]},
            "sha256": digest.sha256_bytes(out), "size": len(out), "model_config": record.get("model_config"),
        })
        log.info(f"export: epoch {epoch} ({k}/{len(todo)}) → {path} ({precision}, {len(out) / 1e6:.1f} MB, "
                 f"{time.monotonic() - t0:.1f}s)")
    return todo


def _up_to_date(source: Run, target: Run, epoch: int, params: dict[str, Any]) -> bool:
    try:
        record = target.read_export_record(epoch)
        target.read_onnx(epoch)
        want = source.read_export_record(epoch)["sha256"]
    except (RunError, FileNotFoundError):
        return False
    return record.get("source", {}).get("sha256") == want and all(record.get(k) == v for k, v in params.items())


def _fp16(data: bytes) -> bytes:
    """float16 weights and arithmetic; uint8 in, float32 out, as before."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load_from_string(data), keep_io_types=True)
    return model.SerializeToString()


def _calibration_batches(run: Run, count: int, seed: int, data_root: str | Path | None,
                         batch: int = 64) -> list[np.ndarray]:
    """The seeded calibration images of the run's training set, decoded, in batches."""
    config = run.read_config()
    ds = open_dataset(data_root or config["dataset"]["root"])
    train = ds.train
    if not train:
        raise RunError(f"{ds.root} has no training images to calibrate int8 on")
    chosen = calibration_indices(len(train), count, seed)
    images = load_images([train[i].path for i in chosen], size=config["model"]["image_size"])
    log.info(f"export: int8 calibrated on {len(images)} training images of {ds.root} (seed {seed})")
    return [images[i : i + batch] for i in range(0, len(images), batch)]


@contextlib.contextmanager
def _root_logging_kept() -> Iterator[None]:
    """The root logger's handlers and level as they were before the block."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _int8(data: bytes, batches: list[np.ndarray]) -> bytes:
    """Static quantisation, QDQ: int8 weights (a scale per output channel), uint8 activations
    whose ranges are the min and max seen on ``batches``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            images = next(self.left, None)
            return None if images is None else {"images": images}

    # It logs through the root logger's functions (logging.info), which install a handler on the root
    # logger when it has none: every later edvis line would then print twice.
    with _root_logging_kept(), tempfile.TemporaryDirectory(prefix="edvis-int8-") as tmp:
        src, pre, out = (Path(tmp) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(data)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=False, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return out.read_bytes()


def compare_sessions(reference: Any, other: Any, images: np.ndarray, labels: np.ndarray,
                     boxed: np.ndarray | None = None, boxes: np.ndarray | None = None,
                     batch: int = 128) -> dict[str, float]:
    """``other`` against ``reference`` (onnxruntime sessions) on the same uint8 images: images/s
    of each (best of two timed passes), top-1 agreement, the largest and mean |map difference|
    over every class's map, and the pointing game of the true class's map over the images
    ``boxed`` (indices) whose ``boxes`` are given."""
    out: dict[str, Any] = {}
    for name, session in (("reference", reference), ("other", other)):
        session.run(["logits", "maps"], {"images": images[:batch]})  # warm-up
        best, outs = 0.0, []
        for _ in range(2):
            t = time.perf_counter()
            outs = [session.run(["logits", "maps"], {"images": images[i : i + batch]})
                    for i in range(0, len(images), batch)]
            best = max(best, len(images) / (time.perf_counter() - t))
        logits = np.concatenate([o[0] for o in outs])
        maps = np.concatenate([o[1] for o in outs]).astype(np.float32)
        out[name] = (best, logits, maps)
    (r_rate, r_logits, r_maps), (o_rate, o_logits, o_maps) = out["reference"], out["other"]
    dev = np.abs(o_maps - r_maps)
    report = {
        "images": int(len(images)), "reference_img_s": r_rate, "img_s": o_rate, "speedup": o_rate / r_rate,
        "top1_agreement": float((r_logits.argmax(1) == o_logits.argmax(1)).mean()),
        "map_max_abs_dev": float(dev.max()), "map_mean_abs_dev": float(dev.mean()),
        "map_range": float(np.abs(r_maps).max()),
    }
    if boxed is not None and len(boxed):
        size = images.shape[1]
        ref = localisation(r_maps[boxed, labels[boxed]], boxes, size)["pointing"]
        got = localisation(o_maps[boxed, labels[boxed]], boxes, size)["pointing"]
        report.update(reference_pointing=ref, pointing=got, pointing_change=got - ref)
    return report


def report_run(run_dir: str | Path, precision: str, data_root: str | Path | None = None,
               providers: list[str] | None = None) -> dict[str, Any]:
    """Measure RUN/onnx-<precision>/ against float32 at the last epoch on the validation images
    (on ``providers``, default the CPU), write RUN/onnx-<precision>/report.json and log one line."""
    import onnxruntime as ort

    _check(precision)
    source, target = Run(Path(run_dir)), Run(Path(run_dir), precision)
    epochs = target.onnx_epochs()
    if not epochs:
        raise RunError(f"no {precision} ONNX files in {target.onnx_dir} (run `edvis export --precision {precision}`)")
    epoch = epochs[-1]
    config = source.read_config()
    ds = open_dataset(data_root or config["dataset"]["root"])
    images = load_images([s.path for s in ds.val], size=config["model"]["image_size"])
    labels = np.array([s.label for s in ds.val], dtype=np.int64)
    # The boxes on the images as the model sees them (resized to image_size), as render records them.
    scaled = rendered_boxes(ds.val, images.shape[1])
    boxed = np.array([i for i, b in enumerate(scaled) if b is not None], dtype=np.int64)
    boxes = np.array([scaled[i] for i in boxed], dtype=np.int64).reshape(-1, 4)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    providers = providers or ["CPUExecutionProvider"]
    sessions = [ort.InferenceSession(run.read_onnx(epoch)[0], options, providers=providers) for run in (source, target)]
    report = compare_sessions(*sessions, images, labels, boxed, boxes)
    report = {"precision": precision, "epoch": epoch, "provider": sessions[1].get_providers()[0],
              "onnx_sha256": target.read_export_record(epoch)["sha256"], **report}
    atomic.write_json(target.onnx_dir / REPORT, report)
    log.info(report_line(report))
    return report


def report_is_current(run_dir: str | Path, precision: str) -> bool:
    """Whether RUN/onnx-<precision>/report.json measures the file now at the last epoch (a
    conversion interrupted before its measurement leaves the report of an older file)."""
    target = Run(Path(run_dir), precision)
    try:
        report = json.loads((target.onnx_dir / REPORT).read_text(encoding="utf-8"))
        epoch = target.onnx_epochs()[-1]
        return bool(report["epoch"] == epoch and report["onnx_sha256"] == target.read_export_record(epoch)["sha256"])
    except (OSError, ValueError, KeyError, TypeError, IndexError, RunError):
        return False


def report_line(r: dict[str, Any]) -> str:
    """The report as one log line."""
    pointing = (f", pointing game {r['reference_pointing']:.3f} → {r['pointing']:.3f} ({r['pointing_change']:+.3f})"
                if "pointing" in r else "")
    return (f"export: {r['precision']} vs fp32 at epoch {r['epoch']} on {r['images']} validation images "
            f"({r['provider']}): {r['img_s']:.0f} vs {r['reference_img_s']:.0f} img/s ({r['speedup']:.2f}×), "
            f"top-1 agreement {r['top1_agreement']:.2%}, map |dev| max {r['map_max_abs_dev']:.3g} "
            f"mean {r['map_mean_abs_dev']:.3g} (maps reach {r['map_range']:.3g}){pointing}")
