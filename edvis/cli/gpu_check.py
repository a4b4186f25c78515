"""``edvis gpu-check`` (``make gpu-check``): the CUDA paths, proven on a machine that has a GPU.

In one run, under 8 minutes on one GPU: train 2 epochs on the embedded dataset on CUDA (AMP,
channels_last); export; convert to fp16; render with onnxruntime's CUDA provider (TensorRT's too
when the wheel has it) and on the CPU, and check that the GPU's probabilities and maps equal the
CPU's within TOLERANCE with the same top-1; then print one table of speeds and the projected time
of a full Tiny ImageNet run. Without a GPU it says so in one line and exits 0; ``--allow-cpu``
(or EDVIS_GPU_CHECK_ALLOW_CPU=1) runs the whole check on the CPU at a tiny size instead, to
exercise its code.

It needs only torch, numpy, onnxruntime and Pillow (no network, no install): where the onnx
package is missing, torch's TorchScript exporter is run without its one step that needs it
(adding onnxscript functions, of which edvis's graphs have none), onnx.checker is skipped, and the
fp16 file is traced from the model in float16 instead of converted; where onnxruntime has no CUDA
provider, onnxruntime is measured on the CPU against torch on CUDA, and the rest is checked.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edvis.errors import EdvisError

# GPU against CPU on the same ONNX file (float32, TF32 off): |gpu - cpu| <= ATOL + RTOL·|cpu| for
# probabilities and maps (as stored: float16), and the same top-1 for at least TOP1 of the images.
TOLERANCE = {"atol": 2e-3, "rtol": 2e-3, "top1": 0.995}
# A full Tiny ImageNet run: 100,000 training images × 80 epochs; 10,000 validation images × 80
# epochs × 9 settings (clean and the paper's seven, plus one) rendered.
FULL_TRAIN, FULL_RENDER = 100_000 * 80, 10_000 * 80 * 9
FULL = {"classes": 10, "train_per_class": 300, "val_per_class": 50, "timed": 4096, "settings": ["paper"]}
TINY = {"classes": 2, "train_per_class": 2, "val_per_class": 2, "timed": 8, "settings": []}


class GpuCheckError(EdvisError):
    """A GPU result differs from the CPU's beyond the stated tolerance."""


def add_gpu_check(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("gpu-check", help="check the CUDA paths against the CPU and measure them (needs a GPU)",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    g.add_argument("--out", type=Path, help="work folder, kept afterwards (default: a temporary one, removed)")
    g.add_argument("--allow-cpu", action="store_true",
                   help="without a GPU, run the whole check on the CPU at a tiny size (exercises the code only)")
    g.set_defaults(func=cmd_gpu_check)


def cmd_gpu_check(a: argparse.Namespace) -> None:
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not (a.allow_cpu or os.environ.get("EDVIS_GPU_CHECK_ALLOW_CPU") == "1"):
        print("gpu-check: no CUDA GPU visible to PyTorch on this machine: nothing to check")
        return
    size = FULL if cuda else TINY
    with _work_folder(a.out) as work:
        t0 = time.monotonic()
        rows, failures = check(work, "cuda" if cuda else "cpu", size)
        rows.append(("the check took", f"{time.monotonic() - t0:.0f} s", ""))
        print_table(rows, torch.cuda.get_device_name(0) if cuda else "no GPU: dry run on the CPU at a tiny size")
        (work / "gpu-check.json").write_text(json.dumps({"rows": rows, "failures": failures}, indent=1))
    if failures:
        raise GpuCheckError("; ".join(failures))


@contextlib.contextmanager
def _work_folder(out: Path | None) -> Iterator[Path]:
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        yield out
        return
    with tempfile.TemporaryDirectory(prefix="edvis-gpu-check-") as tmp:
        yield Path(tmp)


def check(work: Path, device: str, size: dict[str, int]) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Train, export, convert, render on every provider and compare; the table's rows and what failed."""
    from edvis.cli import main
    from edvis.run import Run

    data, run_dir = work / "data", work / "run"
    _ok(main(["synth", "--out", str(data), "--classes", str(size["classes"]), "--train-per-class",
              str(size["train_per_class"]), "--val-per-class", str(size["val_per_class"])]), "synth")
    _ok(main(["train", "--data", str(data), "--run", str(run_dir), "--epochs", "2", "--device", device,
              "--amp", "--channels-last", "--workers", "0"] + (["--batch-size", "2"] if size is TINY else [])), "train")
    run = Run(run_dir)
    train_rate = float(run.read_metrics()[-1]["images_per_s"])
    with without_onnx_package():
        _ok(main(["export", "--run", str(run_dir)]), "export")
        fp16 = make_fp16(run_dir, device)
    rows = [("train (2 epochs, " + ("CUDA, AMP, channels_last" if device == "cuda" else "CPU") + ")",
             f"{train_rate:.0f} img/s", "")]
    rows += [("fp16 ONNX files", fp16, "")]
    failures: list[str] = []
    render_rate = _renders(run_dir, work, device, size["settings"], rows, failures)
    _forwards(run, device, size["timed"], rows)
    rows.append(("projected full Tiny ImageNet run (80 epochs; 7.2 M forwards)",
                 f"train {FULL_TRAIN / train_rate / 3600:.1f} h + render {FULL_RENDER / render_rate / 3600:.1f} h",
                 "at these rates; 200 classes cost the decoder a little more than 10"))
    return rows, failures


def _ok(code: int, step: str) -> None:
    if code != 0:
        raise GpuCheckError(f"the {step} step failed (exit status {code}; its error is above)")


@contextlib.contextmanager
def without_onnx_package() -> Iterator[None]:
    """Where the onnx package is missing, let torch's TorchScript exporter skip the one step that
    needs it: inserting onnxscript functions into the model, of which edvis's graphs have none."""
    if importlib.util.find_spec("onnx") is not None:
        yield
        return
    patched = []
    for name in ("torch.onnx._internal.torchscript_exporter.onnx_proto_utils", "torch.onnx._internal.onnx_proto_utils",
                 "torch.onnx._onnx_proto_utils"):
        with contextlib.suppress(ImportError):
            module = importlib.import_module(name)
            if hasattr(module, "_add_onnxscript_fn"):
                patched.append((module, module._add_onnxscript_fn))
                module._add_onnxscript_fn = lambda model_bytes, custom_opsets: model_bytes
    try:
        yield
    finally:
        for module, original in patched:
            module._add_onnxscript_fn = original


def make_fp16(run_dir: Path, device: str) -> str:
    """RUN/onnx-fp16/: converted by edvis.precision where onnx is installed, else traced from the
    checkpoints' models in float16 (uint8 in, float32 out, as the float32 files)."""
    if importlib.util.find_spec("onnx") is not None:
        from edvis.precision import convert_run

        convert_run(run_dir, "fp16")
        return "converted by onnxruntime's float16 converter"
    from edvis.cli.gpu_fp16 import trace_fp16

    trace_fp16(run_dir, device)
    return "traced from the float16 model (no onnx package here)"


def _gpu_providers() -> list[list[str]]:
    """onnxruntime's GPU providers on this machine, each with the CPU to fall back on."""
    import onnxruntime as ort

    from edvis.render import gpu_present

    have = ort.get_available_providers() if gpu_present() else []
    return [[p, "CPUExecutionProvider"] for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") if p in have]


def _renders(run_dir: Path, work: Path, device: str, settings: list[str], rows: list, failures: list[str]) -> float:
    """``edvis render`` into copies of the run: fp32 on the CPU; fp32 and fp16 on CUDA (on the
    CPU in the dry run); the GPU's fp32 store checked against the CPU's, fp16 against fp32.
    Returns the fastest pipeline's images/s."""
    from edvis.render import render_run

    cuda = any(p[0] == "CUDAExecutionProvider" for p in _gpu_providers())
    gpu = "cuda" if cuda else "cpu"
    if device == "cuda" and not cuda:
        rows.append(("render on onnxruntime CUDA", "not run: this onnxruntime has no CUDA provider", ""))
    rates = []
    for name, precision in [("cpu", "fp32")] + ([(gpu, "fp32")] if gpu != "cpu" else []) + [(gpu, "fp16")]:
        copy = work / f"run-{name}"
        if not copy.exists():
            shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "render*", ".locks"))
        t = time.perf_counter()
        done = render_run(copy, provider=name, perturbations=settings, precision=precision)
        rates.append(len(done) * _num_val(copy, precision) / (time.perf_counter() - t))
        rows.append((f"render pipeline, onnxruntime {name.upper()}, {precision} ({len(done)} units)",
                     f"{rates[-1]:.0f} img/s", ""))
    rows.append(compare_stores(work / "run-cpu", work / f"run-{gpu}", "fp32", failures))
    rows.append(compare_stores(work / f"run-{gpu}", work / f"run-{gpu}", "fp16", failures))
    return max(rates)


def _num_val(run_dir: Path, precision: str) -> int:
    from edvis.run import RenderStore, Run

    return len(RenderStore(Run(run_dir, precision).render_dir).manifest()["val"]["labels"])


def compare_stores(reference: Path, other: Path, precision: str, failures: list[str]) -> tuple[str, str, str]:
    """Every unit of ``other``'s store at ``precision`` against ``reference``'s float32 store:
    the largest |difference| of probabilities and of the true and top-1 classes' maps, and top-1
    agreement. fp32 must be within TOLERANCE (a failure is added otherwise); fp16 is reported."""
    from edvis.run import RenderStore, Run
    from edvis.run.store import same_validation_set

    ref, got = RenderStore(Run(reference).render_dir), RenderStore(Run(other, precision).render_dir)
    label = f"{precision} GPU store vs {'CPU' if precision == 'fp32' else 'GPU fp32'} store"
    if not same_validation_set(ref.manifest(), got.manifest()):
        failures.append(f"{got.root} and {ref.root} hold different validation sets: nothing to compare")
        return label, "different validation sets", "NO"
    lacking = sorted(set(got.units()) - set(ref.units()), key=lambda u: u.key)
    if lacking or not got.units():
        failures.append(f"{ref.root} lacks {len(lacking)} of {got.root}'s units (e.g. {lacking[0].key})" if lacking
                        else f"{got.root} holds no rendered unit")
        return label, "units missing", "NO"
    worst = {"probs": 0.0, "maps": 0.0}
    excess, agree, total = 0.0, 0, 0
    for unit in got.units():
        a, b = ref.read(unit), got.read(unit)
        for key, names in (("probs", ("probs",)), ("maps", ("map_true", "map_pred"))):
            for n in names:
                x, y = a[n].astype(np.float32), b[n].astype(np.float32)
                err = np.abs(y - x)
                worst[key] = max(worst[key], float(err.max()))
                excess = max(excess, float((err - TOLERANCE["rtol"] * np.abs(x)).max()))
        agree += int((a["top5"][:, 0] == b["top5"][:, 0]).sum())
        total += len(a["top5"])
    share = agree / max(total, 1)
    ok = excess <= TOLERANCE["atol"] and share >= TOLERANCE["top1"]
    target = (f"|diff| ≤ {TOLERANCE['atol']} + {TOLERANCE['rtol']}·|cpu|, top-1 ≥ {TOLERANCE['top1']:.1%}"
              if precision == "fp32" else "reported")
    if precision == "fp32" and not ok:
        failures.append(f"GPU and CPU renders differ: probs {worst['probs']:.3g}, maps {worst['maps']:.3g}, top-1 {share:.2%}")
    verdict = ("yes" if ok else "NO") if precision == "fp32" else ""
    return (f"{label} ({total} images)",
            f"max |diff| probs {worst['probs']:.2g}, maps {worst['maps']:.2g}; top-1 agrees {share:.2%}",
            f"{target} {verdict}".strip())


def _forwards(run: Any, device: str, count: int, rows: list) -> None:
    """Bare forwards of the last checkpoint: torch eager against onnxruntime, fp32 and fp16."""
    from edvis.cli.gpu_fp16 import forward_rates

    for label, rate in forward_rates(run, device, count, _gpu_providers()):
        rows.append((label, f"{rate:.0f} img/s", ""))


def print_table(rows: list[tuple[str, str, str]], device: str) -> None:
    print(f"gpu-check on {device}")
    widths = [max(len(r[i]) for r in [("what", "measured", "target"), *rows]) for i in range(3)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    print(line(("what", "measured", "target")))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
