#!/usr/bin/env python3
"""Build the site for an existing run: export → render → analyze → site.

    python build.py --run runs/default [--out site] [--compare RUN2]

Each stage skips what is already up to date, so rebuilding after more training redoes only
the new epochs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edvis.cli import DEFAULT_RUN, build_parser, run_guarded


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, default=Path(DEFAULT_RUN), help=f"run folder (default {DEFAULT_RUN})")
    p.add_argument("--out", type=Path, default=Path("site"), help="site output folder (default site)")
    p.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda"], help="onnxruntime provider (default auto)")
    p.add_argument("--compare", type=Path, metavar="RUN2",
                   help="a rendered run of another model on the same data (e.g. the CAM baseline), analysed side by side")
    a = p.parse_args()

    def build() -> None:
        # Each stage exactly as its `edvis` verb runs it, with that verb's defaults.
        parser = build_parser()
        run, compare = str(a.run), (["--compare", str(a.compare)] if a.compare else [])
        for argv in (["export", "--run", run], ["render", "--run", run, "--provider", a.provider],
                     ["analyze", "--run", run, *compare], ["site", "--run", run, "--out", str(a.out), *compare]):
            args = parser.parse_args(argv)
            args.func(args)

    return run_guarded(build)


if __name__ == "__main__":
    sys.exit(main())
