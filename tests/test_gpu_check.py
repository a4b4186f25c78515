"""The device check without a GPU: one line and exit 0; with --allow-cpu, the whole check at a
tiny size on the CPU, so that its code runs here too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
