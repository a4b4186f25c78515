"""Command line: ``edvis synth | data | train | export | render | explain | faithfulness | analyze | site | gpu-check``.

Thin argparse entry points; the only place that picks a device or an execution provider.
``args`` holds the flag types and defaults every command shares, ``measures`` the commands of
the explanation methods and the faithfulness measures; this module the rest and ``main``.
Expected failures (bad paths, bad files, bad settings) print one line naming the culprit and
exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edvis.cli.args import (
    COUNT,
    DEFAULT_PERTURBATIONS,
    DEFAULT_RUN,
    FRACTION,
    POSITIVE,
    SEED,
    model_name,
    number,
    pick_device,
)
from edvis.cli.gpu_check import add_gpu_check, compare_stores
from edvis.cli.measures import add_explain, add_faithfulness
from edvis.errors import EdvisError, UsageError
from edvis.run.lock import writer_lock

log = logging.getLogger("edvis")


class _Stderr(logging.StreamHandler):
    """Plain lines on whatever ``sys.stderr`` is when a message comes (so that redirected or
    captured output catches them)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging() -> None:
    """Configure logging, once per process: edvis' messages as plain lines on standard error."""
    if not any(isinstance(h, _Stderr) for h in log.handlers):
        log.addHandler(_Stderr())
    log.setLevel(logging.INFO)


def cmd_synth(a: argparse.Namespace) -> None:
    from edvis.data import write_dataset

    out = write_dataset(a.out, classes=a.classes, seed=a.seed, train_per_class=a.train_per_class,
                        val_per_class=a.val_per_class)
    log.info(f"synth: {a.classes} classes × ({a.train_per_class} train + {a.val_per_class} val) images in {out}")


def cmd_data(a: argparse.Namespace) -> None:
    from edvis.data import fetch_tiny_imagenet

    fetch_tiny_imagenet(a.out, url=a.url, md5=a.md5, sha256=a.sha256, keep_zip=a.keep_zip,
                        retries=a.retries)


def cmd_train(a: argparse.Namespace) -> None:
    from dataclasses import fields

    from edvis.train import RECIPE_VARIANTS, Runtime, TrainConfig, distributed, resolve_config, train

    # Every TrainConfig field has a flag of the same name; None keeps the recipe's value.
    cfg = resolve_config(a.recipe, **{f.name: getattr(a, f.name, None) for f in fields(TrainConfig) if f.name != "recipe"})
    if cfg.pretrained not in ("", "imagenet"):
        cfg = replace(cfg, pretrained=str(Path(cfg.pretrained).expanduser().resolve()))
    runtime = Runtime(workers=a.workers, preload=a.preload, amp=a.amp, channels_last=a.channels_last)
    variant = a.variant or RECIPE_VARIANTS.get(a.recipe)
    model = {"name": a.model, "variant": variant, "dropout": a.dropout, "image_size": a.image_size,
             "stem": a.stem, "decoder": a.decoder}
    # One training process per run folder: rank 0 holds the lock for the whole torchrun job.
    lock = writer_lock(a.run, "train") if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()
    with lock, distributed(pick_device(a.device)) as device:
        if os.environ.get("RANK", "0") == "0":
            log.info(f"train: device {device}")
        train(a.run, a.data, {k: v for k, v in model.items() if v is not None}, cfg, device,
              runtime=runtime, resume=a.resume)


def _check_images(run_dir: Path, count: int = 16) -> Any:
    """A few real validation images for the export parity check (None if unreadable)."""
    from edvis.data import DatasetError, load_images, open_dataset
    from edvis.run import Run

    try:
        config = Run(run_dir).read_config()
        ds = open_dataset(config["dataset"]["root"])
        return load_images([s.path for s in ds.val[:count]], size=int(config["model"].get("image_size", 64)))
    except DatasetError:
        return None


def cmd_export(a: argparse.Namespace) -> None:
    from edvis.export import export_run

    with writer_lock(a.run, "export"):
        export_run(a.run, check_images=lambda: _check_images(Path(a.run)))
        if a.precision != "fp32":
            _export_precision(a)


def _export_precision(a: argparse.Namespace) -> None:
    """The float32 files converted to ``--precision``, and measured against them when converted
    (or never measured): int8 on the CPU, fp16 on CUDA when there is a GPU."""
    from edvis.precision import REPORT, convert_run, report_is_current, report_run
    from edvis.render import session_providers
    from edvis.run import Run

    done = convert_run(a.run, a.precision, calibration=a.calibration_images, seed=a.seed)
    report = Run(Path(a.run), a.precision).onnx_dir / REPORT
    if done or not report_is_current(a.run, a.precision):
        report_run(a.run, a.precision, providers=session_providers("auto" if a.precision == "fp16" else "cpu"))
    else:
        log.info(f"export: {a.precision} measured against fp32 in {report}")


def cmd_render(a: argparse.Namespace) -> None:
    from edvis.render import merge_stores, parse_shard, render_run

    if a.merge:
        with writer_lock(a.run, "render"):
            merge_stores(a.run, a.merge)
        return
    shard = parse_shard(a.shard)
    with writer_lock(a.run, f"render.{shard[0]}-{shard[1]}"):  # shards of one render run side by side
        render_run(a.run, data_root=a.data, provider=a.provider, batch_size=a.batch_size,
                   perturbations=a.perturbations, seed=a.seed, shard=shard, precision=a.precision)


def cmd_analyze(a: argparse.Namespace) -> None:
    from edvis.analyze import analyze_run

    with writer_lock(a.run, "analyze"):
        analyze_run(a.run, compare=a.compare, force=a.force, pattern_threshold=a.pattern_threshold,
                    precision=a.precision)


def cmd_site(a: argparse.Namespace) -> None:
    from edvis.site import build_site

    if a.try_precision == "fp16" and a.precision != "fp32":
        raise UsageError("--try-precision fp16 halves the float32 ONNX files; with --precision "
                         f"{a.precision} the Try it page ships that precision's: leave --try-precision out")
    with writer_lock(a.out, "site"):
        if a.try_precision == "fp16":
            _compress_try_models(a)
        index = build_site(Path(a.run), Path(a.out), timeline_images=a.timeline_images, seed=a.seed,
                           compare=a.compare, data_root=a.data, base_url=a.base_url, precision=a.precision,
                           try_epochs=a.try_epochs, try_precision=a.try_precision)
    log.info(f"site: {index}")


def _compress_try_models(a: argparse.Namespace) -> None:
    """The fp16 copies of the epochs the Try it page will ship, with their measured deviation."""
    from edvis.compress import compress_epochs
    from edvis.run import RenderStore, Run, complete_epochs
    from edvis.site import try_epochs

    run = Run(Path(a.run))
    with writer_lock(a.run, "export"):  # beside the export's files
        compress_epochs(run.root, try_epochs(run, complete_epochs(RenderStore(run.render_dir), run.onnx_epochs()), a.try_epochs),
                        data_root=a.data)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one ``edvis: error: ...`` line (exit 2), no usage dump."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        if message.startswith("argument "):  # "argument --seed: must be ..." → "--seed must be ..."
            flag, _, rest = message.removeprefix("argument ").partition(": ")
            flag = flag.split("/")[-1]  # "--run/--run-dir" → the last spelling
            message = f"{flag} {rest}" if rest.startswith("must ") else f"{flag}: {rest}"
        sys.stderr.write(f"edvis: error: {message}\n")
        sys.exit(2)


def _default_workers() -> int:
    """Loader worker processes per training process: half the CPU cores, 1 to 4."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def build_parser() -> argparse.ArgumentParser:
    """The ``edvis`` parser: one sub-command per stage."""
    p = _Parser(prog="edvis", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_synth, _add_data, _add_train, _add_export, _add_render, add_explain, add_faithfulness, _add_analyze,
                _add_site, add_gpu_check):
        add(sub)
    return p


def _add_synth(sub: argparse._SubParsersAction) -> None:
    """edvis synth: draw the embedded dataset."""
    s = sub.add_parser("synth", help="write the embedded default dataset (Tiny ImageNet layout)",
                       description="Draw the embedded default dataset into OUT in the Tiny ImageNet layout.")
    s.add_argument("--out", required=True, type=Path, help="folder to write (created; existing identical files are kept)")
    s.add_argument("--classes", type=number(int, 1, 12), default=10, help="number of classes, 1 to 12 (default 10)")
    s.add_argument("--seed", type=SEED, default=0, help="random seed: same seed, same bytes (default 0)")
    s.add_argument("--train-per-class", type=POSITIVE, default=300, help="training images per class (default 300)")
    s.add_argument("--val-per-class", type=POSITIVE, default=50, help="validation images per class (default 50)")
    s.set_defaults(func=cmd_synth)


def _add_data(sub: argparse._SubParsersAction) -> None:
    """edvis data tiny-imagenet: download a public dataset."""
    from edvis.data import TINY_IMAGENET_MD5, TINY_IMAGENET_URL

    d = sub.add_parser("data", help="download a public dataset (resumable, checksum-verified)",
                       description="Download, verify and unpack a public dataset. Rerun after an "
                       "interruption to resume; a dataset already in place is left alone.")
    datasets = d.add_subparsers(dest="dataset", required=True, metavar="DATASET",
                                help="the dataset to download: tiny-imagenet")
    ti = datasets.add_parser(
        "tiny-imagenet", help="Tiny ImageNet: 200 classes, 100,000 train + 10,000 val 64×64 images (~237 MB zip)",
        description="Download the official Tiny ImageNet zip beside OUT (as OUT.zip.part, resumed with HTTP "
        "Range requests), check its MD5 (and SHA-256 if given), and unpack it so that OUT appears "
        "complete or not at all.")
    ti.add_argument("--out", required=True, type=Path,
                    help="dataset folder to create, e.g. data/tiny-imagenet-200; the zip is downloaded beside it")
    ti.add_argument("--url", default=TINY_IMAGENET_URL, help=f"where to download the zip from (default {TINY_IMAGENET_URL})")
    ti.add_argument("--md5", default=TINY_IMAGENET_MD5,
                    help=f"expected MD5 of the zip (default {TINY_IMAGENET_MD5}, the official zip's); "
                    "'' skips it when --sha256 is given")
    ti.add_argument("--sha256", help="expected SHA-256 of the zip, checked as well (none is published for the "
                    "official zip; the SHA-256 of what was downloaded is printed after verifying)")
    ti.add_argument("--keep-zip", action="store_true", help="keep OUT.zip after unpacking (default: delete it)")
    ti.add_argument("--retries", type=POSITIVE, default=5,
                    help="attempts in a row without progress before giving up (default 5)")
    ti.set_defaults(func=cmd_data)


def _add_train(sub: argparse._SubParsersAction) -> None:
    """edvis train: the recipe, model, optimisation and execution flags."""
    t = sub.add_parser("train", help="train, one checkpoint per epoch; rerun to resume",
                       description="Train into RUN (one checkpoint per epoch and metrics.jsonl). "
                       "Rerunning the same command resumes after the last complete epoch. Settings start from "
                       "--recipe; every other flag overrides one of them. Several processes: "
                       "torchrun --standalone --nproc_per_node N -m edvis train --run-dir RUN ... (DistributedDataParallel; "
                       "--batch-size is the global batch).")
    t.add_argument("--data", required=True, type=Path,
                   help="dataset folder: Tiny ImageNet layout or train/ + val/ ImageFolder trees")
    # torchrun's own parser reads "--run" as an ambiguous abbreviation of its --run-path.
    t.add_argument("--run", "--run-dir", type=Path, default=Path(DEFAULT_RUN),
                   help=f"run folder (default {DEFAULT_RUN}); under torchrun spell it --run-dir")
    t.add_argument("--resume", action="store_true",
                   help="continue from the last complete epoch and fail if RUN has none (without it, an existing "
                   "run is resumed too, and an empty one started)")
    t.add_argument("--recipe", default="demo", choices=["demo", "photo", "author"],
                   help="settings to start from: demo (Adam, sized for the embedded dataset on a CPU, with quarter "
                   "mosaics), photo (the same without mosaics, for photographs such as Tiny ImageNet) or author "
                   "(the seed paper's code: SGD lr 1e-4, batch 100, 80 epochs, cosine) (default demo)")
    _add_train_model(t.add_argument_group("model"))
    _add_train_optimisation(t.add_argument_group("optimisation (each overrides the recipe)"))
    _add_train_execution(t.add_argument_group("execution (may change on resume; results on the CPU do not depend on them)"))
    t.set_defaults(func=cmd_train)


def _add_train_model(m: argparse._ArgumentGroup) -> None:
    """The model flags of ``edvis train``."""
    m.add_argument("--model", default="edvis-resnet18", type=model_name, metavar="MODEL",
                   help="edvis-resnet18: the encoder-decoder whose class maps are its logits; cam-resnet18: the "
                   "baseline, ResNet-18 with average pooling and a linear classifier, maps by CAM; torchvision:NAME: "
                   "any torchvision classifier whose head is global average pooling then a linear layer (e.g. "
                   "torchvision:resnet50, torchvision:efficientnet_b0), maps by CAM (default edvis-resnet18)")
    m.add_argument("--variant", choices=["paper", "author"],
                   help="edvis decoder as the paper's text (BatchNorm, Dropout) or the author's code "
                   "(InstanceNorm expand, Dropout2d) describes it (default: the recipe's, paper for demo and "
                   "author for author)")
    m.add_argument("--dropout", type=number(float, 0, 1, high_open=True), help="edvis decoder dropout probability (default 0.3)")
    m.add_argument("--stem", choices=["paper", "nopool", "cifar"],
                   help="how the ResNet-18 encoder starts: paper (7×7 stride-2 conv1 and max-pool, encoder /32: 8×8 "
                   "edvis maps at 64 px), nopool (no max-pool, /16: 16×16 maps, ~4× the compute) or cifar (3×3 "
                   "stride-1 conv1, no max-pool, /8: 32×32 maps, ~16× the compute) (default paper)")
    m.add_argument("--decoder", choices=["transposed", "resize"],
                   help="edvis decoder upsampling: transposed (the paper's transposed convolutions, which leave a "
                   "fixed checkerboard) or resize (nearest ×2 then a 3×3 convolution, the last grouped by class) "
                   "(default transposed)")
    m.add_argument("--image-size", type=number(int, 32, 1024),
                   help="side images are resized to, 32 to 1024; a multiple of 32 for edvis-resnet18 (default 64, "
                   "Tiny ImageNet's own)")
    m.add_argument("--pretrained", metavar="imagenet|PATH",
                   help="start the ResNet-18 encoder (a torchvision:NAME model: the whole network) from torchvision's "
                   "ImageNet weights (downloaded once into the torch hub cache) or from a local torchvision state dict "
                   "of that architecture; the ImageNet classifier is not used (default: from scratch)")


def _add_train_optimisation(o: argparse._ArgumentGroup) -> None:
    """The optimisation flags of ``edvis train``: each overrides a TrainConfig field of the recipe."""
    o.add_argument("--epochs", type=POSITIVE, help="number of epochs")
    o.add_argument("--batch-size", type=POSITIVE, help="global batch size (split evenly over torchrun processes)")
    o.add_argument("--optimizer", choices=["adam", "sgd"], help="optimiser")
    o.add_argument("--lr", type=number(float, 0), help="base learning rate")
    o.add_argument("--momentum", type=number(float, 0, 1, high_open=True), help="SGD momentum")
    o.add_argument("--weight-decay", type=number(float, 0), help="weight decay")
    o.add_argument("--schedule", choices=["cosine", "constant"], help="learning-rate schedule")
    o.add_argument("--schedule-unit", choices=["step", "epoch"],
                   help="cosine steps: every batch (step) or once per epoch, as CosineAnnealingLR (epoch)")
    o.add_argument("--warmup-steps", type=COUNT, help="optimiser steps of linear warm-up")
    o.add_argument("--eta-min", type=number(float, 0), help="learning rate at the end of the cosine")
    o.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None, help="random horizontal flips")
    o.add_argument("--rotation", type=number(float, 0, 180), help="random rotation up to ± this many degrees (0: none)")
    o.add_argument("--cutmix", type=FRACTION, help="probability that a batch is CutMix-ed (0: never)")
    o.add_argument("--mosaic", type=FRACTION,
                   help="probability that a batch becomes quarter mosaics (four images at half size) whose map "
                   "quarters are each trained on their own quarter's label (0: never); a mosaic batch is not "
                   "also CutMix-ed")
    o.add_argument("--seed", type=SEED, help="random seed for initialisation, batch order and augmentation (default 0)")


def _add_train_execution(r: argparse._ArgumentGroup) -> None:
    """The execution flags of ``edvis train`` (a Runtime: free to change on resume)."""
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto picks CUDA when PyTorch sees a GPU, else the CPU (default auto)")
    r.add_argument("--workers", type=COUNT, default=_default_workers(),
                   help=f"DataLoader worker processes per training process (default {_default_workers()}: half the "
                   "CPU cores, 1 to 4; 0 loads in the training process)")
    r.add_argument("--preload", action=argparse.BooleanOptionalAction, default=True,
                   help="decode every image once into memory (12 KiB each at 64 px); --no-preload decodes them on "
                   "every pass in the workers, for data larger than memory (default on)")
    r.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="CUDA only: float16 mixed precision with a gradient scaler; ignored on the CPU (default on)")
    r.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="CUDA only: channels_last memory format; ignored on the CPU (default on)")


def _add_export(sub: argparse._SubParsersAction) -> None:
    """edvis export: checkpoints to ONNX."""
    e = sub.add_parser("export", help="export every checkpoint to ONNX and check it against PyTorch",
                       description="Export each epoch's checkpoint to RUN/onnx/epoch_NNN.onnx (input uint8 images "
                       "(B,H,W,3); outputs logits, maps), run onnx.checker and an onnxruntime-vs-PyTorch parity "
                       "check. Up-to-date files are skipped.")
    e.add_argument("--run", type=Path, default=Path(DEFAULT_RUN), help=f"run folder (default {DEFAULT_RUN})")
    e.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"],
                   help="also convert the float32 files to fp16 (for the GPU) or int8 (static quantisation, for "
                   "the CPU) into RUN/onnx-<precision>/, and measure them against float32 in its report.json "
                   "(default fp32: the float32 files only)")
    e.add_argument("--calibration-images", type=POSITIVE, default=256,
                   help="int8: training images the activation ranges are calibrated on (default 256)")
    e.add_argument("--seed", type=SEED, default=0, help="int8: seed of the choice of calibration images (default 0)")
    e.set_defaults(func=cmd_export)


def _add_render(sub: argparse._SubParsersAction) -> None:
    """edvis render: onnxruntime over the validation set, or --merge of shards."""
    r = sub.add_parser("render", help="run onnxruntime over the validation set for every exported epoch",
                       description="Fill RUN/render with predictions and maps for every validation image and "
                       "exported epoch; epochs already rendered from the same ONNX file are skipped.")
    r.add_argument("--run", type=Path, default=Path(DEFAULT_RUN), help=f"run folder (default {DEFAULT_RUN})")
    r.add_argument("--data", type=Path, help="dataset folder, if it moved since training (default: the one in RUN/config.json)")
    r.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda"],
                   help="onnxruntime execution provider: auto uses CUDA when a GPU is present (default auto)")
    r.add_argument("--batch-size", type=POSITIVE,
                   help="images per inference batch (default 128 on the CPU; on CUDA the largest power of two "
                   "that half the GPU's free memory holds, 32 to 4096, or 1024 when nvidia-smi cannot say)")
    r.add_argument("--perturbations", nargs="*", default=DEFAULT_PERTURBATIONS, metavar="NAME",
                   help="settings rendered besides the clean images: names from edvis.data.perturb (e.g. gray blur3 "
                   "sp0.005 jpeg-3), 'paper' for the paper's seven, 'all' for every one (default: paper)")
    r.add_argument("--seed", type=SEED, default=0, help="seed of the random perturbations (default 0)")
    _add_precision(r, "render the ONNX files of this precision into their own store, RUN/render-<precision>/ "
                   "(`edvis export --precision` makes them)")
    r.add_argument("--shard", default="0/1", metavar="I/N",
                   help="render only shard I of N (0 ≤ I < N): every (epoch, setting) unit is dealt round-robin "
                   "to N shards, which may run at once into one store, on other GPUs (set CUDA_VISIBLE_DEVICES) "
                   "or on other machines (then combine with --merge) (default 0/1: everything)")
    r.add_argument("--merge", nargs="+", type=Path, metavar="DIR",
                   help="instead of rendering, copy into RUN's store the units other shards rendered into "
                   "copies of the run (each DIR a run folder or its render folder); checks they come from "
                   "RUN's own ONNX files")
    r.set_defaults(func=cmd_render)


def _add_precision(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"], help=f"{what} (default fp32)")


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    """edvis analyze: the numbers, from the render store."""
    n = sub.add_parser("analyze", help="compute accuracy, calibration, learning dynamics, perturbation and "
                       "localisation numbers from the render store",
                       description="Write RUN/analysis/analysis.json and CSV tables from RUN's render store, read one "
                       "unit at a time. Skipped when nothing it depends on has changed. Definitions: docs/analysis.md.")
    n.add_argument("--run", type=Path, default=Path(DEFAULT_RUN), help=f"run folder (default {DEFAULT_RUN})")
    n.add_argument("--compare", type=Path, metavar="RUN2",
                   help="a run of another model (e.g. the CAM baseline) rendered on the same validation set: its "
                   "accuracy and localisation are reported side by side")
    n.add_argument("--pattern-threshold", type=FRACTION, default=0.8,
                   help="mean map correlation with the final epoch from which a class's pattern counts as formed, "
                   "in [0, 1] (default 0.8)")
    n.add_argument("--force", action="store_true", help="recompute even when the analysis is up to date")
    _add_precision(n, "analyse the store of this precision, RUN/render-<precision>/, into RUN/analysis-<precision>/")
    n.set_defaults(func=cmd_analyze)


def _add_site(sub: argparse._SubParsersAction) -> None:
    """edvis site: the static site."""
    w = sub.add_parser("site", help="build the static site from a rendered run",
                       description="Build a static site (opens from file://) from RUN's metrics and render store.")
    w.add_argument("--run", type=Path, default=Path(DEFAULT_RUN), help=f"run folder (default {DEFAULT_RUN})")
    w.add_argument("--out", type=Path, default=Path("site"), help="output folder (default site)")
    w.add_argument("--timeline-images", type=COUNT, default=3,
                   help="images per class shown at up to 16 epochs on its page (default 3)")
    w.add_argument("--seed", type=SEED, default=0,
                   help="seed of every random choice: timelines, galleries, perturbation rows, compared images "
                   "(default 0)")
    w.add_argument("--compare", type=Path, metavar="RUN2",
                   help="another rendered run on the same validation set (e.g. the CAM baseline): its maps and "
                   "accuracy beside this run's")
    w.add_argument("--data", type=Path,
                   help="dataset folder, if it moved since rendering (default: the one in RUN/render/manifest.json)")
    w.add_argument("--base-url", default="", metavar="URL",
                   help="address the site will be hosted at; makes the figures' citation lines absolute")
    _add_precision(w, "build from the store and analysis of this precision (the run page says which)")
    w.add_argument("--try-epochs", metavar="SPEC",
                   help="epochs whose ONNX files the Try it page ships (about 45 MB each for ResNet-18): none, all, "
                   "or a comma list of numbers, first and last (default: the first, the middle and the final "
                   "epoch among those exported)")
    w.add_argument("--try-precision", default="fp32", choices=["fp32", "fp16"],
                   help="the Try it page's ONNX files: fp32 as exported, or copies with float16 weights (half the "
                   "bytes), written beside them in RUN/onnx/ with their deviation from fp32 measured over the "
                   "validation set and stated on the page (default fp32)")
    w.set_defaults(func=cmd_site)


def run_guarded(func: Callable[[], None]) -> int:
    setup_logging()
    try:
        func()
    except KeyboardInterrupt:
        log.error("edvis: interrupted; rerun the same command to resume")
        return 130
    except EdvisError as e:
        log.error(f"edvis: error: {e}")
        return 2
    except OSError as e:
        if e.errno not in EXPECTED_OS_ERRORS:
            raise
        log.error(f"edvis: error: {os_error_line(e)}")
        return 2
    return 0


# What the system refuses for reasons outside edvis: disk full, permissions, a read-only file
# system, a path that is a file where a folder is wanted (or the reverse).
EXPECTED_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR,
                      errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.EFBIG, errno.ENAMETOOLONG}


def os_error_line(e: OSError) -> str:
    """One line for an OSError: what the system said and the path(s) it was about."""
    paths = " → ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
    what = e.strerror or str(e)
    if e.errno == errno.ENOTDIR:
        what += " (a file stands where a folder is needed)"
    return f"{paths}: {what}" if paths else what


__all__ = ["COUNT", "DEFAULT_PERTURBATIONS", "DEFAULT_RUN", "FRACTION", "POSITIVE", "SEED", "build_parser",
           "compare_stores", "main", "number", "os_error_line", "pick_device", "run_guarded", "setup_logging"]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a bad command line (already said in one line)
        return e.code if isinstance(e.code, int) else 2
    return run_guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
