"""Rendering, analysis and the site run where torch cannot be imported at all."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from edvis.run import RenderStore

REPO = Path(__file__).resolve().parents[1]

# Runs `edvis ARGV...` with torch, torchvision and onnx made unimportable.
BLOCKED = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "onnx"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
from edvis.cli import main
sys.exit(main(sys.argv[1:]))
"""


def edvis_without_torch(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKED, *argv], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_render_analyze_and_site_need_no_torch(rendered_run: Path, tmp_path: Path):
    run = Path(shutil.copytree(rendered_run, tmp_path / "run"))
    shutil.rmtree(run / "render")
    for argv in (["render", "--run", str(run), "--provider", "cpu"], ["analyze", "--run", str(run)],
                 ["site", "--run", str(run), "--out", str(tmp_path / "site")]):
        proc = edvis_without_torch(*argv)
        assert proc.returncode == 0, proc.stderr
    assert len(RenderStore(run / "render").units()) == 8  # clean and the paper's seven, at epoch 1
    assert (run / "analysis" / "analysis.json").is_file()
    assert (tmp_path / "site" / "classes.html").is_file()


def test_the_blocker_blocks(tmp_path: Path):
    proc = edvis_without_torch("train", "--data", str(tmp_path), "--run", str(tmp_path / "run"))
    assert proc.returncode != 0 and "torch is blocked in this test" in proc.stderr


def test_faithfulness_needs_no_torch(rendered_run: Path, tmp_path: Path):
    run = Path(shutil.copytree(rendered_run, tmp_path / "run"))
    proc = edvis_without_torch("faithfulness", "--run", str(run), "--images", "3", "--steps", "2", "--provider", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert (run / "faithfulness" / "clean" / "epoch_001.npz").is_file()
