#!/usr/bin/env python3
"""The edvis network's stems and decoders side by side: top-1, pointing, fixed-pattern share,
deletion/insertion against the centre prior. Too long for `make bench`; run it on its own:

    python tests/bench/stems.py --out /tmp/stems [--embedded data/embedded]
        [--tiny ../shared/data/tiny-imagenet-200-subset20] [--tiny-per-class 100] [--tiny-classes 0:8]
        [--configs paper/transposed,nopool/resize,nopool/cam,...] [--epochs-embedded 3] [--epochs-tiny 3]
        [--images 64] [--train-flags "--mosaic 0"]

Each configuration is one run folder OUT/<dataset>-<stem>-<decoder>, trained with the demo recipe
(seed 0) for the epochs given; a configuration ``STEM/cam`` is the CAM baseline
(``--model cam-resnet18``) with that stem, which has no decoder, then exported, rendered (clean images only), measured by
``edvis faithfulness`` at its last epoch (``--images`` validation images) and analysed, exactly as
the ``edvis`` verbs do it. Every stage skips what is done, so an interrupted run resumes.
The fixed-pattern and parity shares are ``edvis.analyze.metrics.fixed_pattern_share`` and
``parity_share`` of each class's true-class maps at the last epoch, averaged over the classes.
Prints a Markdown table and writes OUT/stems.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from edvis.analyze.metrics import fixed_pattern_share, parity_share
from edvis.cli import build_parser, run_guarded
from edvis.run import RenderStore, Unit

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIGS = "paper/transposed,paper/resize,nopool/transposed,nopool/resize"


def _stage(argv: list[str]) -> float:
    """Run one ``edvis`` verb in this process; its wall time in seconds (raises on failure)."""
    args = build_parser().parse_args(argv)
    t = time.perf_counter()
    if run_guarded(lambda: args.func(args)) != 0:
        raise SystemExit(f"stems: edvis {' '.join(argv)} failed")
    return time.perf_counter() - t


def pattern_share(run: Path) -> tuple[float, float, int]:
    """Means over classes of the fixed-pattern and the parity shares of the true-class maps at the
    last epoch; the maps' side."""
    store = RenderStore(run / "render")
    epoch = store.epochs("clean")[-1]
    maps = store.read(Unit("clean", epoch), ("map_true",))["map_true"].astype(np.float64)
    labels = np.asarray(store.manifest()["val"]["labels"])
    classes = np.unique(labels)
    fixed = [fixed_pattern_share(maps[labels == c]) for c in classes]
    parity = [parity_share(maps[labels == c]) for c in classes]
    return float(np.nanmean(fixed)), float(np.nanmean(parity)), maps.shape[-1]


def measure(run: Path) -> dict:
    """The numbers of one finished run, from analysis.json."""
    doc = json.loads((run / "analysis" / "analysis.json").read_text())
    loc = doc["localisation"]["epochs"][-1]
    rows = {r["method"]: r for r in doc["faithfulness"]["rows"] if r["epoch"] == loc["epoch"]}
    share, parity, side = pattern_share(run)
    return {"epoch": loc["epoch"], "map": side, "top1": loc["top1"], "pointing": loc["pointing"],
            "centre_pointing": loc["centre_pointing"], "energy": loc["energy_in_box"], "centre_energy": loc["energy_centre"],
            "uniform_energy": loc["energy_uniform"], "pattern_share": share, "parity_share": parity,
            "small_images": loc.get("small_images"), "pointing_small": loc.get("pointing_small"),
            "centre_pointing_small": loc.get("centre_pointing_small"),
            **{f"{k}_{m}": rows[m][f"{k}_auc"] for m in ("model", "centre") for k in ("deletion", "insertion")},
            **{f"{k}_vs_centre{b}": rows["model"].get(f"{k}_vs_centre{b}")
               for k in ("deletion", "insertion") for b in ("", "_lo", "_hi")}}


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _diff(r: dict, k: str) -> str:
    """The model's AUC minus the centre prior's, with its paired 95% interval, when recorded."""
    d, lo, hi = (r.get(f"{k}_vs_centre{b}") for b in ("", "_lo", "_hi"))
    return "—" if None in (d, lo, hi) else f"{d:+.3f} ({lo:+.3f} to {hi:+.3f})"


def tiny_subset(src: Path, out: Path, per_class: int, classes: slice = slice(None)) -> Path:
    """A copy of ``src`` (Tiny ImageNet layout) with the classes ``classes`` picks from its
    wnids.txt (in that file's order), the first ``per_class`` training images of each by file name
    (0: all of them), and those classes' validation images with their annotations; made once, left
    alone when there."""
    if (out / "wnids.txt").exists():
        return out
    wnids = (src / "wnids.txt").read_text().split()[classes]
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "train").mkdir(parents=True)
    (tmp / "val" / "images").mkdir(parents=True)
    shutil.copy(src / "words.txt", tmp / "words.txt")
    kept = [line for line in (src / "val" / "val_annotations.txt").read_text().splitlines()
            if line.split("\t")[1] in wnids]
    for line in kept:
        shutil.copy(src / "val" / "images" / line.split("\t")[0], tmp / "val" / "images")
    (tmp / "val" / "val_annotations.txt").write_text("".join(f"{line}\n" for line in kept))
    for wnid in wnids:
        shutil.copytree(src / "train" / wnid, tmp / "train" / wnid, ignore=shutil.ignore_patterns("images"))
        images = tmp / "train" / wnid / "images"
        images.mkdir()
        files = sorted((src / "train" / wnid / "images").iterdir())
        for f in files[:per_class] if per_class else files:
            shutil.copy(f, images / f.name)
    (tmp / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))  # last: marks the copy complete
    tmp.rename(out)
    return out


def one(data: Path, run: Path, stem: str, decoder: str, epochs: int, images: int, flags: list[str]) -> dict:
    r = str(run)
    model = ["--model", "cam-resnet18"] if decoder == "cam" else ["--decoder", decoder]
    seconds = {"train": _stage(["train", "--data", str(data), "--run", r, "--epochs", str(epochs), "--stem", stem,
                                *model, *flags])}
    seconds["export"] = _stage(["export", "--run", r])
    seconds["render"] = _stage(["render", "--run", r, "--provider", "cpu", "--perturbations"])
    seconds["faithfulness"] = _stage(["faithfulness", "--run", r, "--epochs", "last", "--images", str(images),
                                      "--provider", "cpu"])
    seconds["analyze"] = _stage(["analyze", "--run", r])
    # Training's own time from its metrics (a rerun that trains nothing still reports it).
    seconds["train"] = sum(json.loads(line)["seconds"] for line in (run / "metrics.jsonl").read_text().splitlines())
    return {"stem": stem, "decoder": decoder, "epochs": epochs, "flags": " ".join(flags), **measure(run),
            "seconds": {k: round(v, 1) for k, v in seconds.items()}}


def table(rows: list[dict]) -> str:
    head = ("| data | stem | decoder | maps | epochs | top-1 | pointing (centre) | energy in box (centre, uniform) | "
            "small objects: pointing (centre) | fixed-pattern share | parity share | deletion AUC (centre) | "
            "deletion − centre (95%) | insertion AUC (centre) | insertion − centre (95%) | train s (wall) |\n"
            + "| --- " * 16 + "|")
    lines = [head]
    for r in rows:
        flags = f" `{r['flags']}`" if r.get("flags") else ""
        lines.append(f"| {r['data']} | `{r['stem']}` | `{r['decoder']}`{flags} | {r['map']}×{r['map']} | {r['epochs']} | "
                     f"{r['top1']:.3f} | {r['pointing']:.3f} ({r['centre_pointing']:.3f}) | "
                     f"{r['energy']:.3f} ({r['centre_energy']:.3f}, {r['uniform_energy']:.3f}) | "
                     f"{_num(r.get('pointing_small'))} ({_num(r.get('centre_pointing_small'))}) | {r['pattern_share']:.3f} | "
                     f"{r['parity_share']:.3f} | "
                     f"{r['deletion_model']:.3f} ({r['deletion_centre']:.3f}) | {_diff(r, 'deletion')} | "
                     f"{r['insertion_model']:.3f} ({r['insertion_centre']:.3f}) | {_diff(r, 'insertion')} | "
                     f"{r['seconds']['train']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder of the run folders and stems.json")
    p.add_argument("--embedded", type=Path, default=REPO / "data" / "embedded",
                   help="the embedded dataset (drawn there by `edvis synth` if missing)")
    p.add_argument("--tiny", type=Path, default=REPO.parent / "shared" / "data" / "tiny-imagenet-200-subset20")
    p.add_argument("--datasets", default="embedded,tiny", help="which of embedded,tiny to run (default both)")
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"stem/decoder pairs (default {DEFAULT_CONFIGS})")
    p.add_argument("--tiny-per-class", type=int, default=100,
                   help="train on a copy (under OUT) of the first N training images of each class (0: all)")
    p.add_argument("--tiny-classes", default="",
                   help="I:J: only the classes at lines I to J-1 of wnids.txt, in a copy under OUT (default all)")
    p.add_argument("--epochs-embedded", type=int, default=3)
    p.add_argument("--epochs-tiny", type=int, default=3)
    p.add_argument("--images", type=int, default=64, help="validation images of the faithfulness measures")
    p.add_argument("--train-flags", default="", help="more `edvis train` flags for every run, e.g. \"--mosaic 0\" "
                   "(the run folders' names end in them)")
    a = p.parse_args()
    if "embedded" in a.datasets and not (a.embedded / "wnids.txt").exists():
        _stage(["synth", "--out", str(a.embedded)])
    if "tiny" in a.datasets and (a.tiny_per_class or a.tiny_classes):
        first, _, last = a.tiny_classes.partition(":")
        picked = slice(int(first) if first else None, int(last) if last else None)
        name = f"tiny-{a.tiny_per_class or 'all'}" + (f"-classes{first}-{last}" if a.tiny_classes else "")
        a.tiny = tiny_subset(a.tiny, a.out / name, a.tiny_per_class, picked)
    rows = []
    for name in a.datasets.split(","):
        data, epochs = (a.embedded, a.epochs_embedded) if name == "embedded" else (a.tiny, a.epochs_tiny)
        for pair in a.configs.split(","):
            stem, decoder = pair.split("/")
            flags = a.train_flags.split()
            tag = "".join(f.lstrip("-").replace(".", "_") for f in flags)
            run = a.out / f"{name}-{stem}-{decoder}" if not flags else a.out / f"{name}-{stem}-{decoder}-{tag}"
            row = {"data": name, **one(data, run, stem, decoder, epochs, a.images, flags)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            (a.out / "stems.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
