"""One writer per target: a stage holds an OS file lock while it writes a run folder or a site.

```
RUN/.locks/<stage>.lock      train, export, render (one per shard), analyze
OUT/../.<OUT name>.edvis-lock  the site: beside its output folder, so the hosted folder holds no lock
```

The locks are ``flock`` locks taken through filelock: the operating system drops one when its
holder exits, however it exits, so a crashed or killed stage never blocks the next one. A second
writer does not wait: it is refused at once with one line naming the target and the lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import filelock

from edvis.errors import EdvisError

__all__ = ["LockedError", "writer_lock"]


class LockedError(EdvisError):
    """Another process is writing the same target."""


def lock_path(target: Path, stage: str) -> Path:
    """Where ``stage``'s lock on ``target`` lives (see the module docstring)."""
    if stage == "site":
        return target.parent / f".{target.name}.edvis-lock"
    return target / ".locks" / f"{stage}.lock"


@contextlib.contextmanager
def writer_lock(target: str | Path, stage: str) -> Iterator[Path]:
    """Hold ``stage``'s lock on ``target`` (a run folder, or a site's output folder) for the block.

    Raises :class:`LockedError` at once when another process holds it. Yields the lock's path.
    """
    path = lock_path(Path(target).absolute(), stage)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LockedError(f"cannot create the lock {path}: {e.strerror}") from None
    # thread_local=False and is_singleton=False: a lock is one process's, taken once.
    lock = filelock.FileLock(path, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise LockedError(f"{target}: another `edvis {stage.split('.')[0]}` is writing it (it holds {path}); "
                          "wait for it to finish, then run this again") from None
    try:
        yield path
    finally:
        lock.release()
