"""One writer per target: a stage holds an OS file lock while it writes a run folder or a site.

```
RUN/.locks/<stage>.lock      train, export, render (one per shard), analyze
OUT/../.<OUT name>.edvis-lock  the site: beside its output folder, so the hosted folder holds no lock
```

The locks are ``flock`` locks taken through filelock (or, where filelock is not installed, by
``fcntl.flock`` directly: the same lock, so both kinds exclude each other): the operating system drops one when its
holder exits, however it exits, so a crashed or killed stage never blocks the next one. A second
writer does not wait: it is refused at once with one line naming the target and the lock.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import filelock
except ImportError:  # a machine with only the render and training packages (see docs/rendering.md)
    filelock = None  # type: ignore[assignment]

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
    release = _acquire(path)
    if release is None:
        raise LockedError(f"{target}: another `edvis {stage.split('.')[0]}` is writing it (it holds {path}); "
                          "wait for it to finish, then run this again")
    try:
        yield path
    finally:
        release()


def _acquire(path: Path) -> Callable[[], None] | None:
    """Take the lock at ``path`` without waiting: its release function, or None when another
    process holds it."""
    if filelock is not None:
        # thread_local=False and is_singleton=False: a lock is one process's, taken once.
        lock = filelock.FileLock(path, timeout=0, thread_local=False)
        try:
            lock.acquire()
        except filelock.Timeout:
            return None
        return lock.release
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by another process (EWOULDBLOCK)
        os.close(fd)
        return None

    def release() -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    return release
