#!/usr/bin/env python3
"""Build the site for an existing run: export → render → explain → faithfulness → analyze → site.

    python build.py --run runs/default [--out site] [--compare RUN2] [--methods all|none|NAME,...]
                    [--measure-images 64] [--measure-epochs first,middle,last] [--try-epochs SPEC] [--try-precision fp16]

The explanation methods (pytorch-grad-cam) and the faithfulness measures run on the clean images
of a seeded subset (``--measure-images``) at a few epochs (``--measure-epochs``: the first, the
middle and the last exported by default), plus the sanity checks of the same methods at the last;
``--methods none`` leaves them out. Each stage skips what is already up to date, so rebuilding after more training
redoes only the new epochs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edvis.cli import DEFAULT_RUN, POSITIVE, build_parser, run_guarded
from edvis.run import Run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, default=Path(DEFAULT_RUN), help=f"run folder (default {DEFAULT_RUN})")
    p.add_argument("--out", type=Path, default=Path("site"), help="site output folder (default site)")
    p.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda"], help="onnxruntime provider (default auto)")
    p.add_argument("--compare", type=Path, metavar="RUN2",
                   help="a rendered run of another model on the same data (e.g. the CAM baseline), analysed side by side")
    p.add_argument("--methods", default="all", metavar="all|none|NAME,...",
                   help="explanation methods computed and measured (default all; none leaves them and the measures out)")
    p.add_argument("--measure-images", type=POSITIVE, default=64, metavar="K",
                   help="validation images the methods and the faithfulness measures run on (default 64)")
    p.add_argument("--try-epochs", metavar="SPEC",
                   help="epochs the Try it page ships: none, all, or numbers, first and last (default: the final "
                   "epoch, the first and the middle one)")
    p.add_argument("--try-precision", default="fp32", choices=["fp32", "fp16"],
                   help="the Try it page's ONNX weights: fp32, or fp16 copies of half the size (default fp32)")
    p.add_argument("--measure-epochs", default="first,middle,last", metavar="SPEC",
                   help="epochs measured: all, or a comma list of numbers, first, middle and last (default first,middle,last)")
    a = p.parse_args()

    def build() -> None:
        # Each stage exactly as its `edvis` verb runs it, with that verb's defaults.
        parser = build_parser()
        run, compare = str(a.run), (["--compare", str(a.compare)] if a.compare else [])
        for argv in (["export", "--run", run], ["render", "--run", run, "--provider", a.provider],
                     *measures(run), ["analyze", "--run", run, *compare],
                     ["site", "--run", run, "--out", str(a.out), *compare,
                      *(["--try-epochs", a.try_epochs] if a.try_epochs else []), "--try-precision", a.try_precision]):
            args = parser.parse_args(argv)
            args.func(args)

    def measures(run: str) -> list[list[str]]:
        """explain (each method, then the sanity checks) and faithfulness, on the clean images."""
        if a.methods == "none":
            return []
        exported = Run(Path(run)).checkpoint_epochs()  # known before export runs (the onnx files are not yet)
        middle = str(exported[(len(exported) - 1) // 2]) if exported else "last"
        epochs = ",".join(dict.fromkeys(middle if e == "middle" else e for e in a.measure_epochs.split(",")))
        k = ["--images", str(a.measure_images)]
        return [["explain", "--run", run, "--method", a.methods, "--settings", "clean", "--epochs", epochs, *k],
                ["explain", "--run", run, "--sanity", "--method", a.methods],
                ["faithfulness", "--run", run, "--epochs", epochs, *k]]

    return run_guarded(build)


if __name__ == "__main__":
    sys.exit(main())
