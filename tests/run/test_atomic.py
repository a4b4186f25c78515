"""Tests for edvis.run.atomic: a write appears whole or not at all; killed writers' temporaries are swept."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from edvis.run import atomic


def test_writes_replace_the_target_and_leave_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.json"
    atomic.write_json(target, {"b": 1, "a": "é"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": "é", "b": 1}
    atomic.write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert os.listdir(target.parent) == ["x.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["x.txt"]


def test_sweep_removes_only_stale_temporaries(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    stale, fresh, keep = tmp_path / "a/.x.npz.tmp-1", tmp_path / ".y.html.tmp-2", tmp_path / "a/x.npz"
    for p in (stale, fresh, keep):
        p.write_bytes(b"")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert atomic.sweep_temps(tmp_path, older_than=3600) == 1  # only the two-hour-old one
    assert not stale.exists() and fresh.exists() and keep.exists()
    assert atomic.sweep_temps(tmp_path) == 1 and not fresh.exists() and keep.exists()
