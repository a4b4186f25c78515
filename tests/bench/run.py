#!/usr/bin/env python3
"""`make bench`: run every tests/bench/bench_*.py in one process and print one table.

Each module defines ``run() -> list[Row]``; a row is a dict with

* ``benchmark``: what was measured, e.g. "render: onnxruntime vs torch eager (img/s)"
* ``measured``:  the figures, as text, e.g. "640 vs 450"
* ``ratio``:     the number the target is about (float), e.g. 1.42
* ``target``:    the target as text, e.g. "≥ 1.4"
* ``met``:       True / False, or None when there is no target

Timing targets live here, not in tests: these machines are noisy, so compare ratios measured
in one run rather than absolute times. ``--only NAME`` runs the modules whose name contains NAME.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="", help="run only benchmark modules whose file name contains this")
    a = p.parse_args()
    sys.path.insert(0, str(HERE))
    rows: list[dict] = []
    failed = []
    for path in sorted(HERE.glob("bench_*.py")):
        if a.only not in path.stem:
            continue
        print(f"bench: {path.stem} …", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            spec = importlib.util.spec_from_file_location(path.stem, path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            rows.extend(mod.run())
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(path.stem)
        print(f"bench: {path.stem} took {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
    print_table(rows)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def print_table(rows: list[dict]) -> None:
    head = ("benchmark", "measured", "ratio", "target", "met")
    cells = [head] + [
        (
            r["benchmark"],
            r["measured"],
            "" if r.get("ratio") is None else f"{r['ratio']:.2f}",
            r.get("target") or "",
            {True: "yes", False: "NO", None: ""}[r.get("met")],
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    line = lambda c: "| " + " | ".join(s.ljust(w) for s, w in zip(c, widths)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells[1:]:
        print(line(c))


if __name__ == "__main__":
    sys.exit(main())
