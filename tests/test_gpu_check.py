"""The device check without a GPU: one line and exit 0; with --allow-cpu, the whole check at a
tiny size on the CPU, so that its code runs here too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edvis.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_0():
    env = {k: v for k, v in os.environ.items() if k != "EDVIS_GPU_CHECK_ALLOW_CPU"}
    proc = subprocess.run([sys.executable, "-m", "edvis", "gpu-check"], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**env, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "gpu-check: no CUDA GPU visible to PyTorch on this machine: nothing to check\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run in full")
def test_the_dry_run_exercises_the_whole_check_on_the_cpu(tmp_path: Path, capsys):
    assert main(["gpu-check", "--allow-cpu", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("gpu-check on no GPU: dry run on the CPU at a tiny size\n| what")
    rows = {r[0]: r for r in json.loads((tmp_path / "gpu-check.json").read_text())["rows"]}
    # The dry run compares the CPU store with itself: exactly equal, and the verdict says so.
    same = rows["fp32 GPU store vs CPU store (8 images)"]
    assert same[1] == "max |diff| probs 0, maps 0; top-1 agrees 100.00%" and same[2].endswith(" yes")
    assert "fp16 GPU store vs GPU fp32 store (8 images)" in rows
    assert {"forward, torch eager CPU fp32, batch 8", "forward, onnxruntime CPU fp32, batch 8",
            "forward, onnxruntime CPU fp16, batch 8"} <= set(rows)
    assert rows["projected full Tiny ImageNet run (80 epochs; 7.2 M forwards)"][1].startswith("train ")
    # fp16 files beside the float32 ones, each rendered into its own store
    for folder in ("onnx-fp16", "render-fp16"):
        assert (tmp_path / "run-cpu" / folder).is_dir()
    assert json.loads((tmp_path / "run-cpu" / "render-fp16" / "manifest.json").read_text())["precision"] == "fp16"
    assert "precision" not in json.loads((tmp_path / "run-cpu" / "render" / "manifest.json").read_text())


def _store(root: Path, maps: np.ndarray, probs: np.ndarray, files: list[str] | None = None) -> None:
    """A render store of one clean unit at epoch 1 holding ``maps`` (N, S, S) and ``probs`` (N, C)."""
    from edvis.run import RenderStore, Run, Unit

    n = len(maps)
    files = files or [f"val/images/val_{i}.JPEG" for i in range(n)]
    store = RenderStore(Run(root).render_dir)
    store.init({"dataset": {"fingerprint": "f" * 64}, "classes": ["a", "b", "c"],
                "val": {"files": files, "labels": [0] * n, "boxes": [[0, 0, 8, 8]] * n}})
    top5 = np.argsort(-probs, axis=1, kind="stable")[:, :5].astype(np.int16)
    store.write(Unit("clean", 1), {"probs": probs.astype(np.float16), "top5": top5,
                                   "top5_prob": np.take_along_axis(probs, top5.astype(np.int64), 1).astype(np.float32),
                                   "map_true": maps.astype(np.float16), "map_pred": maps.astype(np.float16)},
                {"epoch": 1, "perturbation": "clean"})


def test_compare_stores_passes_equal_stores_and_fails_each_kind_of_mismatch(tmp_path: Path):
    from edvis.cli import compare_stores

    rng = np.random.default_rng(0)
    maps = rng.uniform(0, 4, (10, 4, 4))
    probs = np.tile([0.7, 0.2, 0.1], (10, 1))
    _store(tmp_path / "cpu", maps, probs)
    _store(tmp_path / "same", maps, probs)
    failures: list[str] = []
    row = compare_stores(tmp_path / "cpu", tmp_path / "same", "fp32", failures)
    assert failures == [] and row[2].endswith("yes") and "top-1 agrees 100.00%" in row[1]

    off = maps.copy()
    off[3, 1, 2] += 0.25  # 0.25 > 0.002 + 0.002·4 at any value the map holds
    _store(tmp_path / "maps", off, probs)
    row = compare_stores(tmp_path / "cpu", tmp_path / "maps", "fp32", failures)
    assert row[2].endswith("NO") and len(failures) == 1 and "maps 0.25" in failures[0]

    flipped = probs.copy()
    flipped[0] = [0.2, 0.7, 0.1]  # one image of ten changes its top-1: 90% < 99.5%
    _store(tmp_path / "top1", maps, flipped)
    failures = []
    row = compare_stores(tmp_path / "cpu", tmp_path / "top1", "fp32", failures)
    assert "top-1 agrees 90.00%" in row[1] and len(failures) == 1 and "top-1 90.00%" in failures[0]

    # fp16 is reported, never failed
    failures = []
    from edvis.run import Run
    _store(tmp_path / "half", off, probs)
    Run(tmp_path / "half").render_dir.rename(Run(tmp_path / "half", "fp16").render_dir)
    row = compare_stores(tmp_path / "cpu", tmp_path / "half", "fp16", failures)
    assert failures == [] and row[2] == "reported" and "maps 0.25" in row[1]

    other = [f"val/images/other_{i}.JPEG" for i in range(10)]
    _store(tmp_path / "elsewhere", maps, probs, files=other)
    row = compare_stores(tmp_path / "cpu", tmp_path / "elsewhere", "fp32", failures)
    assert row[2] == "NO" and "different validation sets" in failures[-1]

    from edvis.run import RenderStore, Unit
    same = RenderStore(Run(tmp_path / "same").render_dir)
    same.write(Unit("clean", 2), same.read(Unit("clean", 1)), {"epoch": 2, "perturbation": "clean"})
    row = compare_stores(tmp_path / "cpu", tmp_path / "same", "fp32", failures)
    assert row[2] == "NO" and "lacks 1 of" in failures[-1] and "clean/epoch_002" in failures[-1]
