"""Digests recorded when a file is written, verified when it is read: the integrity contract.

Every file one stage writes for a later one (checkpoint, render unit, layer file, store
manifest) gets a sidecar ``<file>.sha256`` holding the SHA-256 of its bytes, written atomically
just before the file itself. ONNX files keep theirs in their export record
(``onnx/epoch_NNN.json``, ``"sha256"``). A reader reads the bytes once, hashes them, compares with
the record and parses from those same bytes (so what was verified is what is used). Damage
(even a few bytes changed, the size kept) is refused in one line naming the file and the command
that rebuilds it; a file without a record (written by an edvis before digests) is refused the
same way. Each file has its own sidecar, so shards writing units at once share nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from edvis.errors import EdvisError
from edvis.run import atomic

__all__ = ["IntegrityError", "read_verified", "recorded_digest", "sha256_bytes", "sidecar", "write_verified"]

SUFFIX = ".sha256"


class IntegrityError(EdvisError):
    """A file's bytes do not match the digest recorded when it was written, or it has none."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sidecar(path: str | os.PathLike[str]) -> Path:
    """Where ``path``'s digest is recorded."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def write_verified(path: str | os.PathLike[str], data: bytes) -> str:
    """Write ``data``'s digest to the sidecar, then ``data`` to ``path``, each atomically; returns
    the digest.

    The record comes first, so a writer killed between the two leaves either no file (it is
    written again) or the old file beside the new record (refused as damaged, and rewritten by
    the stage that owns it), never a file that passes for what it is not. When the file cannot be
    written (disk full, say) the new record is removed again.
    """
    path = Path(path)
    digest = sha256_bytes(data)
    record = sidecar(path)
    atomic.write_text(record, f"{digest}  {path.name}\n")
    try:
        atomic.write_bytes(path, data)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            record.unlink()
        raise
    return digest


def recorded_digest(path: str | os.PathLike[str]) -> str | None:
    """The digest recorded for ``path``, or None when there is no (readable) record."""
    try:
        text = sidecar(path).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    return text[0] if text and len(text[0]) == 64 else None


def read_verified(path: str | os.PathLike[str], what: str, rebuild: str,
                  expected: str | None = None) -> tuple[bytes, str]:
    """``path``'s bytes and their digest, after checking them against the record.

    ``expected`` is the recorded digest when it lives elsewhere (an ONNX file's export record);
    by default the sidecar's. ``what`` names the file's kind and ``rebuild`` says how to write it
    again (e.g. "run `edvis render` to render it again"), for the message. FileNotFoundError passes through (the caller words it).
    """
    path = Path(path)
    data = path.read_bytes()
    digest = sha256_bytes(data)
    want = expected if expected is not None else recorded_digest(path)
    if want is None:
        raise IntegrityError(f"{what} {path} has no recorded digest (written by an older edvis, or its "
                             f"{sidecar(path).name} is lost); {rebuild}")
    if digest != want:
        raise IntegrityError(f"{what} {path} is damaged: its bytes (sha256 {digest[:12]}) do not match the digest "
                             f"recorded when it was written ({want[:12]}); {rebuild}")
    return data, digest
