"""`edvis analyze` on a simulated full-size store: time, peak memory and the no-change rerun.

The store (200 classes × 10,000 images × 80 epochs × 9 settings, about 4.7 GB; see
fullstore.py) is written once to ``$EDVIS_FULLSTORE`` (default /tmp/edvis-fullstore) and
reused. A store simulated before digests existed gets them recorded once (``record_digests``:
trusted, since this bench made the bytes). Each analysis runs in its own process, which reports its own peak resident memory, so
other benchmarks' processes do not blur the figure.
"""

from __future__ import annotations

import hashlib
import sys
import time

from fullstore import ROOT, check_space, edvis_child, make_full_store

from edvis.run import RenderStore, digest

TARGET_S = 300.0  # "at most a few minutes"


def _analyze(*flags: str) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one `edvis analyze --run ROOT` process."""
    t = time.monotonic()
    rss, _ = edvis_child("analyze", "--run", str(ROOT), *flags)
    return time.monotonic() - t, rss


def record_digests(store: RenderStore) -> int:
    """One-off: record the digest of every unit and layer file that has none (simulated stores
    written before digests). Returns how many were recorded."""
    paths = [store.path(u) for u in store.units()] + [store.layers_path(e) for e in store.layer_epochs()]
    todo = [p for p in paths if digest.recorded_digest(p) is None]
    for p in todo:
        digest.write_verified(p, p.read_bytes())  # the same bytes, now with their record
    return len(todo)


def hash_store(store: RenderStore) -> tuple[float, int]:
    """Seconds to read and hash every unit once (what verifying on read adds), and the bytes."""
    t, size = time.monotonic(), 0
    for u in store.units():
        data = store.path(u).read_bytes()
        hashlib.sha256(data).hexdigest()
        size += len(data)
    return time.monotonic() - t, size


def run() -> list[dict]:
    missing = check_space(1e9, "a margin of")
    t = time.monotonic()
    store = make_full_store(ROOT)
    built = time.monotonic() - t
    size = sum(store.path(u).stat().st_size for u in store.units())
    print(f"bench: store {size / 1e9:.2f} GB ({'built' if missing else 'reused'} in {built:.0f}s)",
          file=sys.stderr, flush=True)

    recorded = record_digests(store)
    if recorded:
        print(f"bench: recorded the digests of {recorded} simulated units", file=sys.stderr, flush=True)
    hashing, hashed = hash_store(store)
    seconds, rss = _analyze("--force")
    again, _ = _analyze()
    return [
        {
            "benchmark": "integrity: read + sha256 of every unit once / the whole analysis (which verifies each read)",
            "measured": f"{hashing:.1f} s for {hashed / 1e9:.2f} GB ({hashed / 1e9 / hashing:.2f} GB/s) vs {seconds:.0f} s",
            "ratio": hashing / seconds,
            "target": "≤ 0.2",
            "met": hashing / seconds <= 0.2,
        },
        {
            "benchmark": "analyze: full-size store (200 classes × 10,000 images × 80 epochs × 9 settings), s / 300 s",
            "measured": f"{seconds:.0f} s, peak RSS {rss:.0f} MB",
            "ratio": seconds / TARGET_S,
            "target": "≤ 1",
            "met": seconds <= TARGET_S,
        },
        {
            "benchmark": "analyze: peak RSS / store size on disk (streams one unit at a time)",
            "measured": f"{rss:.0f} MB of {size / 1e6:.0f} MB",
            "ratio": rss * 1e6 / size,
            "target": "≤ 0.1",
            "met": rss * 1e6 / size <= 0.1,
        },
        {
            "benchmark": "analyze: rerun with nothing changed (digest check only), s",
            "measured": f"{again:.1f} s",
            "ratio": again,
            "target": "≤ 5",
            "met": again <= 5,
        },
    ]
