"""One writer per target: a second holder is refused at once; a dead holder blocks nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edvis.errors import EdvisError
from edvis.run import LockedError, writer_lock

REPO = Path(__file__).resolve().parents[2]

HOLD = """
import sys, time
from edvis.run import writer_lock
with writer_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(60)
"""


def hold_in_child(target: Path, stage: str) -> subprocess.Popen:
    """A child process holding ``stage``'s lock on ``target`` until it is killed."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(target), stage], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_writer_is_refused_naming_the_target(tmp_path: Path):
    run = tmp_path / "run"
    child = hold_in_child(run, "train")
    try:
        with pytest.raises(LockedError, match=r"run: another `edvis train` is writing it") as e:
            with writer_lock(run, "train"):
                pass
        assert isinstance(e.value, EdvisError) and str(run / ".locks" / "train.lock") in str(e.value)
        with writer_lock(run, "analyze"):  # another stage's lock is another lock
            pass
    finally:
        child.kill()
        child.wait()


def test_a_killed_holder_leaves_the_lock_free(tmp_path: Path):
    child = hold_in_child(tmp_path, "render.0-1")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with writer_lock(tmp_path, "render.0-1") as path:
        assert path == tmp_path.absolute() / ".locks" / "render.0-1.lock"


def test_the_site_lock_lies_beside_the_output_folder(tmp_path: Path):
    with writer_lock(tmp_path / "site", "site") as path:
        assert path == tmp_path.absolute() / ".site.edvis-lock"
        assert not (tmp_path / "site").exists()


def test_the_same_process_cannot_take_it_twice(tmp_path: Path):
    with writer_lock(tmp_path, "export"):
        start = time.monotonic()
        with pytest.raises(LockedError):
            with writer_lock(tmp_path, "export"):
                pass
        assert time.monotonic() - start < 5  # refused, not waited for


def test_without_filelock_the_same_lock_is_taken_by_flock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # A machine with only the render and training packages has no filelock: the lock is then
    # taken with fcntl.flock directly, and a holder that used filelock still excludes it.
    run = tmp_path / "run"
    child = hold_in_child(run, "render.0-1")
    monkeypatch.setattr("edvis.run.lock.filelock", None)
    try:
        with pytest.raises(LockedError, match=r"another `edvis render` is writing it"):
            with writer_lock(run, "render.0-1"):
                pass
    finally:
        child.kill()
        child.wait()
    with writer_lock(run, "render.0-1"):  # free once its holder is gone
        with pytest.raises(LockedError):  # and held while this block runs
            with writer_lock(run, "render.0-1"):
                pass
