"""`edvis analyze` on a simulated full-size store: time, peak memory and the no-change rerun.

The store (200 classes × 10,000 images × 80 epochs × 9 settings, about 4.7 GB; see
fullstore.py) is written once to ``$EDVIS_FULLSTORE`` (default /tmp/edvis-fullstore) and
reused. Each analysis runs in its own process, which reports its own peak resident memory, so
other benchmarks' processes do not blur the figure.
"""

from __future__ import annotations

import sys
import time

from fullstore import ROOT, check_space, edvis_child, make_full_store

TARGET_S = 300.0  # "at most a few minutes"


def _analyze(*flags: str) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one `edvis analyze --run ROOT` process."""
    t = time.monotonic()
    rss, _ = edvis_child("analyze", "--run", str(ROOT), *flags)
    return time.monotonic() - t, rss


def run() -> list[dict]:
    missing = check_space(1e9, "a margin of")
    t = time.monotonic()
    store = make_full_store(ROOT)
    built = time.monotonic() - t
    size = sum(store.path(u).stat().st_size for u in store.units())
    print(f"bench: store {size / 1e9:.2f} GB ({'built' if missing else 'reused'} in {built:.0f}s)",
          file=sys.stderr, flush=True)

    seconds, rss = _analyze("--force")
    again, _ = _analyze()
    return [
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
