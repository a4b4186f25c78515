"""`edvis analyze` on a simulated full-size store: time, peak memory and the no-change rerun.

The store (200 classes × 10,000 images × 80 epochs × 9 settings, about 4.7 GB; see
fullstore.py) is written once to ``$EDVIS_FULLSTORE`` (default /tmp/edvis-fullstore) and
reused. Each analysis runs in its own process, which reports its own peak resident memory, so
other benchmarks' processes do not blur the figure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from fullstore import make_full_store

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("EDVIS_FULLSTORE", "/tmp/edvis-fullstore"))
TARGET_S = 300.0  # "at most a few minutes"
UNIT_BYTES = 6.6e6  # one simulated unit on disk
UNITS = 80 * 9

# Runs `edvis analyze`, then prints this process's peak RSS (KiB on Linux) as the last line.
CHILD = """
import resource, sys
from edvis.cli import main
rc = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(rc)
"""


def _analyze(*flags: str) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one `edvis analyze --run ROOT` process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", CHILD, "analyze", "--run", str(ROOT), *flags],
                          check=False, capture_output=True, text=True, env=env)
    seconds = time.monotonic() - t
    if proc.returncode != 0:
        raise RuntimeError(f"edvis analyze failed:\n{proc.stderr}")
    return seconds, int(proc.stdout.split()[-1]) / 1024


def run() -> list[dict]:
    missing = max(0, UNITS - len(list((ROOT / "render").glob("*/epoch_*.npz"))))
    need = missing * UNIT_BYTES
    ROOT.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(ROOT).free
    if need > free - 1e9:
        raise RuntimeError(f"{ROOT}: the simulated store needs {need / 1e9:.1f} GB more, {free / 1e9:.1f} GB free "
                           "(set EDVIS_FULLSTORE to another folder)")
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
