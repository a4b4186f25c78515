"""Renderer benchmarks (issue 4): onnxruntime vs torch eager, pipeline vs bare forward, idle rerun.

A 10-class embedded-dataset run with 1,000 validation images and 3 exported epochs is built once
under $EDVIS_BENCH_DIR (default /tmp/edvis-bench/render) and reused.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

ROOT = Path(os.environ.get("EDVIS_BENCH_DIR", "/tmp/edvis-bench")) / "render"
EPOCHS = 3
BATCH = 128




def build_run() -> Path:
    from edvis.cli import main

    data, run = ROOT / "data", ROOT / "run"
    if not (run / "onnx" / f"epoch_{EPOCHS:03d}.json").exists():
        shutil.rmtree(ROOT, ignore_errors=True)
        args = ["synth", "--out", str(data), "--classes", "10", "--train-per-class", "2", "--val-per-class", "100"]
        assert main(args) == 0
        assert main(["train", "--data", str(data), "--run", str(run), "--epochs", str(EPOCHS), "--batch-size", "10",
                     "--device", "cpu"]) == 0
        assert main(["export", "--run", str(run)]) == 0
    return run


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def rate(fn, images: np.ndarray, repeats: int = 3) -> float:
    """Best images/s of ``fn(batch)`` over all batches, out of ``repeats`` passes (after a warm-up)."""
    fn(images[:BATCH])
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, len(images), BATCH):
            fn(images[i : i + BATCH])
        best = max(best, len(images) / (time.perf_counter() - t))
    return best


def run() -> list[dict]:
    import torch

    from edvis.data import load_images, open_dataset
    from edvis.models import Uint8Input, build_model
    from edvis.render import render_run
    from edvis.run import Run, load_checkpoint

    run_dir = build_run()
    r = Run(run_dir)
    ds = open_dataset(r.read_config()["dataset"]["root"])
    images = load_images([s.path for s in ds.val])
    rows = []

    # 1. onnxruntime vs torch eager on the same uint8 batches (normalisation inside both).
    ckpt = load_checkpoint(r.checkpoint(EPOCHS))
    mc = ckpt["model_config"]
    model = build_model(mc)
    model.load_state_dict(ckpt["model"])
    wrapped = Uint8Input(model, mc["mean"], mc["std"]).eval()
    sess = session(r.onnx(EPOCHS))

    def torch_forward(batch: np.ndarray) -> None:
        with torch.inference_mode():
            wrapped(torch.from_numpy(batch))

    def ort_forward(batch: np.ndarray) -> None:
        sess.run(["logits", "maps"], {"images": batch})

    t_rate, o_rate = rate(torch_forward, images), rate(ort_forward, images)
    rows.append({
        "benchmark": f"render: onnxruntime vs torch eager forward, batch {BATCH}, {torch.get_num_threads()} threads (img/s)",
        "measured": f"{o_rate:.0f} vs {t_rate:.0f}",
        "ratio": o_rate / t_rate, "target": "≥ 1.4", "met": o_rate / t_rate >= 1.4,
    })

    # 2. The whole pipeline (decode, perturb, infer, summarise, store) vs the bare forward.
    shutil.rmtree(r.render_dir, ignore_errors=True)
    t = time.perf_counter()
    done = render_run(run_dir, provider="cpu", perturbations=["paper"])
    pipeline = len(done) * len(images) / (time.perf_counter() - t)
    rows.append({
        "benchmark": f"render: pipeline ({len(done)} units: {EPOCHS} epochs × clean + paper's 7) vs bare forward (img/s)",
        "measured": f"{pipeline:.0f} vs {o_rate:.0f}",
        "ratio": pipeline / o_rate, "target": "≥ 0.85", "met": pipeline / o_rate >= 0.85,
    })

    # 3. A rerun with nothing new to do.
    t = time.perf_counter()
    assert render_run(run_dir, provider="cpu", perturbations=["paper"]) == []
    idle = time.perf_counter() - t
    rows.append({
        "benchmark": f"render: rerun with nothing to do ({len(done)} units up to date) (s)",
        "measured": f"{idle:.2f} s", "ratio": idle / 2.0, "target": "< 2 s (ratio < 1)", "met": idle < 2.0,
    })
    return rows
