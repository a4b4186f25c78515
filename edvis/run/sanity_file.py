"""``RUN/explain/sanity.npz``: the maps of the sanity checks (``edvis explain --sanity``), written
with its digest by the explain stage and read, verified, by the analysis and the site.

Its arrays and ``meta`` are described in :mod:`edvis.explain.sanity`, which writes it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edvis.run import digest
from edvis.run.store import DAMAGED, StoreError

SANITY_ARRAYS = ("index", "labels", "other_class", "maps", "other_class_maps")
WRITE_SANITY_AGAIN = "run `edvis explain --sanity` to write it again"


@dataclass(frozen=True)
class SanityFile:
    """What a sanity file holds, and the sha256 of the bytes it was read from."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    sha256: str


def write_sanity(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``arrays`` and ``meta`` to ``path`` atomically, with the file's digest."""
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    digest.write_verified(path, buf.getvalue())


def read_sanity(path: Path, keys: tuple[str, ...] = SANITY_ARRAYS) -> SanityFile:
    """The file at ``path``, verified against its recorded digest.

    Raises FileNotFoundError when it is absent, :class:`edvis.run.IntegrityError` when its bytes
    differ from its digest, and :class:`edvis.run.StoreError` naming it when it cannot be parsed.
    """
    data, sha = digest.read_verified(path, "sanity file", WRITE_SANITY_AGAIN)
    try:
        with np.load(io.BytesIO(data)) as z:
            return SanityFile(json.loads(str(z["meta"])), {k: z[k] for k in keys}, sha)
    except DAMAGED as e:
        raise StoreError(f"cannot read sanity file {path}: {e}; {WRITE_SANITY_AGAIN}") from None
