"""Atomic file writes: write a temporary file beside the target, then rename it into place.

A reader never sees a half-written file, and a run killed mid-write leaves only a stray
``*.tmp-*`` file that the next write replaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    except OSError as e:  # mkstemp names no file
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give what open() would
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:  # flush to disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # e.g. ENOSPC from write(): name the file
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def sweep_temps(root: str | os.PathLike[str], older_than: float = 0.0) -> int:
    """Delete the temporary files that killed writers left under ``root``; returns how many.

    Only names this module makes (``.<name>.tmp-*``) are touched, and only those last modified
    more than ``older_than`` seconds ago (pass a margin when other writers may be at work).
    """
    import time

    cutoff = time.time() - older_than
    removed = 0
    for p in Path(root).rglob(".*.tmp-*"):
        with contextlib.suppress(FileNotFoundError):
            if p.is_file() and p.stat().st_mtime <= cutoff:
                p.unlink()
                removed += 1
    return removed
