"""Kill every stage with SIGKILL at several points, rerun it, and compare with an uninterrupted run.

The renderer's kill tests live in test_render.py. Here: train, export and site. Each stage writes
its files atomically (temporary file, then rename), so a kill leaves either the old state or the
new file, never a half-written file under a final name; a rerun then finishes the work.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edvis.cli import main
from edvis.run import Run

EPOCHS = 3
VOLATILE = {"seconds", "images_per_s"}  # wall-clock figures differ between any two runs


def edvis_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edvis", *args]


def train_args(data: Path, run: Path) -> list[str]:
    return ["train", "--data", str(data), "--run", str(run), "--epochs", str(EPOCHS), "--batch-size", "4",
            "--device", "cpu"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A tiny dataset and one uninterrupted run through train → export → render → analyze → site."""
    tmp = tmp_path_factory.mktemp("interrupt")
    data, run = tmp / "data", tmp / "reference"
    assert main(["synth", "--out", str(data), "--classes", "3", "--train-per-class", "8",
                 "--val-per-class", "3"]) == 0
    assert main(train_args(data, run)) == 0
    assert main(["export", "--run", str(run)]) == 0
    assert main(["render", "--run", str(run), "--perturbations"]) == 0
    assert main(["analyze", "--run", str(run)]) == 0
    assert main(["site", "--run", str(run), "--out", str(tmp / "site")]) == 0
    return tmp, data, run


def kill_when(cmd: list[str], ready, settle: float = 0.0, timeout: float = 120) -> None:
    """Start ``cmd``; SIGKILL it once ``ready()`` is true (then ``settle`` seconds later)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(settle)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the stage finished before it could be killed"


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in Run(run).metrics_path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("point", ["starting", "after epoch 1", "during epoch 2"])
def test_train_killed_then_rerun_equals_a_straight_run(reference, point, tmp_path):
    _, data, ref = reference
    run = tmp_path / "run"  # removed when the test passes (the runs are large)
    ckpts = run / "checkpoints"
    if point == "starting":
        kill_when(edvis_cmd(*train_args(data, run)), lambda: False, timeout=1.5)
    else:  # right after the checkpoint's rename (before metrics.jsonl), or inside the next epoch
        settle = 0.0 if point == "after epoch 1" else 0.3
        kill_when(edvis_cmd(*train_args(data, run)),
                  lambda: len(list(ckpts.glob("epoch_*.pt"))) >= 1, settle=settle)
    assert not run.exists() or len(Run(run).checkpoint_epochs()) < EPOCHS
    assert main(train_args(data, run)) == 0  # the same command resumes
    assert Run(run).checkpoint_epochs() == list(range(1, EPOCHS + 1))
    assert metrics(run) == metrics(ref)
    for epoch in range(1, EPOCHS + 1):
        got = torch.load(Run(run).checkpoint(epoch), weights_only=False)["model"]
        want = torch.load(Run(ref).checkpoint(epoch), weights_only=False)["model"]
        assert got.keys() == want.keys()
        for k in want:
            assert torch.equal(got[k], want[k]), (epoch, k)


def copy_trained(ref: Path, dest: Path) -> Path:
    shutil.copytree(ref, dest, ignore=shutil.ignore_patterns("onnx", "render"))
    return dest


@pytest.mark.parametrize("after", [0, 1, 2])
def test_export_killed_then_rerun_equals_a_straight_export(reference, after, tmp_path):
    _, _, ref = reference
    run = copy_trained(ref, tmp_path / "run")
    records = run / "onnx"
    kill_when(edvis_cmd("export", "--run", str(run)),
              lambda: len(list(records.glob("epoch_*.json"))) >= after, settle=0.0 if after else 1.0)
    assert len(Run(run).onnx_epochs()) < EPOCHS
    assert main(["export", "--run", str(run)]) == 0
    assert Run(run).onnx_epochs() == list(range(1, EPOCHS + 1))
    for epoch in range(1, EPOCHS + 1):
        assert Run(run).onnx(epoch).read_bytes() == Run(ref).onnx(epoch).read_bytes(), epoch


def test_site_killed_then_rebuilt_equals_a_straight_build(reference):
    """Kill the build at several delays after its first file appears; each rebuild must equal
    an uninterrupted build, with no temporary file left in the output."""
    tmp, _, ref = reference
    killed = 0
    for i, delay in enumerate([0.0, 0.02, 0.05, 0.1, 0.2, 0.4]):
        out = tmp / f"site-{i}"
        proc = subprocess.Popen(edvis_cmd("site", "--run", str(ref), "--out", str(out)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and not (out.exists() and any(out.rglob("*"))):
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        killed += proc.wait() == -signal.SIGKILL
        assert main(["site", "--run", str(ref), "--out", str(out)]) == 0
        assert tree_digest(out) == tree_digest(tmp / "site"), delay
    assert killed >= 3, f"only {killed} of 6 builds were still running when killed"


# --- one writer per run folder and stage ---------------------------------------------------------


def test_a_second_train_on_the_same_run_is_refused_at_once(reference, tmp_path, capsys):
    """Two `edvis train` with other settings on one new run: the second is refused in one line."""
    _, data, _ = reference
    run = tmp_path / "run"
    first = subprocess.Popen(edvis_cmd(*train_args(data, run)[:-2], "--epochs", "50", "--device", "cpu"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (run / "config.json").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first.poll() is None, "the first train ended before the second started"
        code = main(["train", "--data", str(data), "--run", str(run), "--epochs", "2", "--lr", "0.5", "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 2
        assert err.splitlines()[-1] == (f"edvis: error: {run}: another `edvis train` is writing it (it holds "
                                        f"{run.absolute() / '.locks' / 'train.lock'}); wait for it to finish, "
                                        "then run this again")
        assert "Traceback" not in err
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


@pytest.mark.parametrize(("stage", "argv"), [
    ("export", ["export"]), ("render.0-1", ["render", "--perturbations"]), ("render", ["render", "--merge", "X"]),
    ("analyze", ["analyze"])])
def test_a_killed_lock_holder_blocks_nothing(reference, tmp_path, capsys, stage, argv):
    """A process holding the stage's lock refuses the stage; once it is killed, the stage runs."""
    _, _, ref = reference
    run = copy_trained(ref, tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom edvis.run import writer_lock\n"
                               f"with writer_lock({str(run)!r}, {stage!r}):\n    print('held', flush=True)\n"
                               "    time.sleep(600)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        verb = argv[0]
        code = main([verb, "--run", str(run), *argv[1:]])
        assert code == 2
        assert f"another `edvis {verb}` is writing it" in capsys.readouterr().err.splitlines()[-1]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    if verb != "render" or argv[1] != "--merge":
        if verb in ("render", "analyze"):
            assert main(["export", "--run", str(run)]) == 0
        if verb == "analyze":
            assert main(["render", "--run", str(run), "--perturbations"]) == 0
        assert main([verb, "--run", str(run), *argv[1:]]) == 0
