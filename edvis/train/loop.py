"""Training: the epoch loop, one checkpoint per epoch, a metrics log, and resume.

A checkpoint is a plain dict holding what is needed to rebuild the model (``model_config``),
to continue training (optimiser, scheduler and gradient-scaler states) and to know where it came
from (``train_config``, ``runtime``, ``dataset``). It is written atomically, so a killed run never
leaves a checkpoint that looks complete but is not; rerunning the same command resumes after the
last complete epoch.

Random numbers are a function of (seed, epoch, process rank): each epoch reseeds the batch order,
the augmentation generator and torch's global generator (dropout), so a resumed epoch draws
exactly what an uninterrupted run draws.

Several processes (``torchrun --nproc_per_node N -m edvis train ...``) train one model with
DistributedDataParallel: ``batch_size`` is the global batch, split evenly; only rank 0 writes
and prints; validation sums counts and losses over all processes. On CUDA, mixed precision and
channels_last are on by default; on the CPU, training is float32 and they are ignored. The
CUDA, AMP and NCCL paths are written the standard way but untested here (CPU-only machines).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from edvis.data import Dataset, open_dataset
from edvis.errors import UsageError
from edvis.models import ModelConfig, build_model, load_pretrained
from edvis.run import Run, RunError, check_model_config, load_checkpoint, save_checkpoint
from edvis.train.augment import augment, cutmix, mosaic, to_float
from edvis.train.config import Runtime, TrainConfig, lr_factor, make_optimizer
from edvis.train.loader import ImageSplit, ShardSampler, make_loader, train_sampler, unpack
from edvis.train.parallel import all_sum, seed_of, world
from edvis.train.step import evaluate, topk_hits, train_step

log = logging.getLogger(__name__)


class Progress:
    """One status line per interval (rewritten in place on a terminal)."""

    def __init__(self, stream: Any = None, interval: float = 2.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval
        self.last = 0.0

    def update(self, text: str | Callable[[], str], force: bool = False) -> None:
        """Show ``text`` (a string, or a function making it only when it is shown)."""
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        line = text() if callable(text) else text
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self, text: str) -> None:
        """End the status line with ``text``."""
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()


class Silent(Progress):
    """Progress of the processes other than rank 0: shows nothing."""

    def update(self, text: str | Callable[[], str], force: bool = False) -> None:
        pass

    def done(self, text: str) -> None:
        pass


def _check_same(existing: dict[str, Any], wanted: dict[str, Any], path: Path) -> None:
    diffs = []
    # A setting added after the run was started reads as its default.
    defaults = {"model": _defaults(ModelConfig), "train": _defaults(TrainConfig)}
    for section in ("model", "train", "dataset"):
        old = {**defaults.get(section, {}), **existing.get(section, {})}
        new = {**defaults.get(section, {}), **wanted[section]}
        for key in sorted(set(old) | set(new)):
            if key in ("root",):  # the same data may be reached by another path
                continue
            if old.get(key) != new.get(key):
                diffs.append(f"{section}.{key}: {_short(old.get(key))} → {_short(new.get(key))}")
    if diffs:
        raise RunError(
            f"{path} holds a run with other settings ({'; '.join(diffs)}); "
            "choose a new run folder to train with these settings"
        )


def _defaults(cls: type) -> dict[str, Any]:
    d = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
    return json.loads(json.dumps(d))  # tuples → lists, as in config.json


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _logged_rows(run: Run, done: list[int], last: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The metrics rows of the epochs in ``done``, from metrics.jsonl or else their checkpoints
    (``last`` is the last one, already loaded); and whether metrics.jsonl lacked any.

    A kill between a checkpoint's rename and the metrics write loses that epoch's row from
    metrics.jsonl only: every checkpoint carries its own row.
    """
    logged = {r["epoch"]: r for r in run.read_metrics() if r["epoch"] in done}
    lacking = len(logged) < len(done)
    if "metrics" in last:
        logged.setdefault(done[-1], last["metrics"])
    rows = []
    for e in done:
        row = logged.get(e) or load_checkpoint(run.checkpoint(e)).get("metrics")
        if row is None:
            raise RunError(f"{run.checkpoint(e)} holds no metrics row and {run.metrics_path} lacks epoch {e}")
        rows.append(row)
    return rows, lacking


def _describe(cfg: TrainConfig, mc: ModelConfig, rt: Runtime, device: torch.device, processes: int) -> str:
    edvis = [f"variant={mc.variant}", f"dropout={mc.dropout}", f"decoder={mc.decoder}"] if mc.name == "edvis-resnet18" else []
    model = [f"model={mc.name}", f"stem={mc.stem}", *edvis]
    on = {True: "on", False: "off"}
    return (
        "config: " + ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in asdict(cfg).items())
        + ", " + ", ".join(model) + f", image_size={mc.image_size}, maps={mc.map_size}x{mc.map_size}"
        + f" | device={device}, processes={processes}, workers={rt.workers}, preload={rt.preload}, "
        f"amp={on[rt.amp]}, channels_last={on[rt.channels_last]}"
    )


def _status(epoch: int, epochs: int, batch: int, batches: int, sums: Tensor, t0: float, processes: int) -> str:
    seen, loss_sum, right, _ = sums.tolist()  # this process's images, loss sum and top-1 hits
    took = time.monotonic() - t0
    rate = seen * processes / took
    # The batches left in this epoch and the later ones, at this epoch's pace (validation not counted).
    left = (batches - batch + (epochs - epoch) * batches) * took / batch
    return (f"epoch {epoch}/{epochs}  batch {batch}/{batches}  loss {loss_sum / seen:.3f}  "
            f"top-1 {right / seen:.3f}  {rate:.0f} img/s, {left:.0f}s left")


@dataclass
class _Setup:
    """What :func:`train` settles before it builds anything: the run, its data and settings, and
    where and how it runs."""

    run: Run
    ds: Dataset
    mc: ModelConfig
    cfg: TrainConfig
    rt: Runtime  # as resolved for the device
    device: torch.device
    rank: int
    processes: int
    runtime_record: dict[str, Any]  # the runtime as config.json and every checkpoint record it
    wanted: dict[str, Any]  # config.json's contents, as they read back (tuples → lists)
    done: list[int]  # the epochs that have a checkpoint
    say: Callable[[str], None]  # log.info on rank 0, nothing elsewhere
    progress: Progress

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class _Model:
    """The network, its optimiser and gradient scaler; ``net`` is what trains (``model``, or
    its DistributedDataParallel wrapper)."""

    model: nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    net: nn.Module


class _Loaders(NamedTuple):
    sampler: DistributedSampler  # the training batch order; set_epoch before each epoch
    train: DataLoader
    val: DataLoader


class _Trained(NamedTuple):
    """One epoch's training, summed over all processes."""

    seen: float  # images
    loss_sum: float
    right: float  # top-1 hits
    right5: float  # top-5 hits
    lr: float  # of the epoch's last step
    steps: int  # optimiser steps since the start of the run
    t_epoch: float  # time.monotonic() when the epoch began
    seconds: float  # of training, without validation


def train(
    run_dir: str | Path,
    data_root: str | Path,
    model_config: dict[str, Any],
    cfg: TrainConfig,
    device: torch.device,
    progress: Progress | None = None,
    runtime: Runtime | None = None,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Train into ``run_dir``, resuming after its last complete epoch; returns all metrics rows.

    ``model_config`` holds ModelConfig fields other than ``num_classes``, which comes from the
    dataset. ``runtime`` defaults to ``Runtime()`` (no loader workers). With ``resume``, a run
    folder without checkpoints is an error instead of a fresh start. Inside a torch.distributed
    process group (see :func:`distributed`) every process calls this; rank 0 alone writes.
    """
    s = _prepare(run_dir, data_root, model_config, cfg, device, progress, runtime or Runtime(), resume)
    m = _build(s)
    start: int = 0
    rows: list[dict[str, Any]] = []
    if s.done:
        start, rows = _resume(s, m)
        if start >= cfg.epochs:
            s.say(f"all {cfg.epochs} epochs already trained")
            return rows
        s.say(f"resuming after epoch {start}")
    m.net = _wrap(s, m.model)
    loaders = _loaders(s)
    for epoch in range(start + 1, cfg.epochs + 1):
        trained = _train_epoch(s, m, loaders, epoch)
        _end_epoch(s, m, loaders.val, epoch, trained, rows)
    return rows


def _prepare(
    run_dir: str | Path,
    data_root: str | Path,
    model_config: dict[str, Any],
    cfg: TrainConfig,
    device: torch.device,
    progress: Progress | None,
    requested: Runtime,
    resume: bool,
) -> _Setup:
    """Open the dataset, check the settings against each other and against the run folder's
    (binding once an epoch is saved), and say what will run. Writes nothing."""
    rank, processes = world()
    main = rank == 0
    say = log.info if main else (lambda *args: None)  # rank 0 alone speaks
    progress = (progress or Progress()) if main else Silent()
    rt = requested.resolved(device)
    run = Run(Path(run_dir))
    ds = open_dataset(data_root)
    mc = ModelConfig(num_classes=ds.num_classes, **model_config)
    if cfg.batch_size % processes:
        raise UsageError(f"--batch-size {cfg.batch_size} must be a multiple of the number of processes ({processes})")
    if cfg.mosaic > 0 and mc.image_size % 2:
        raise UsageError(f"--mosaic needs an even --image-size, to halve the images into quarters; got {mc.image_size}")
    runtime_record = {**asdict(rt), "device": str(device), "processes": processes}
    wanted = {"model": mc.to_dict(), "train": asdict(cfg), "dataset": ds.record(), "runtime": runtime_record}
    wanted = json.loads(json.dumps(wanted))  # as it reads back from config.json (tuples → lists)
    done = run.checkpoint_epochs()
    if done and run.config_path.exists():  # binding once an epoch is saved
        _check_same(run.read_config(), wanted, run.config_path)
    if resume and not done:
        raise RunError(f"--resume: {run.checkpoint_dir} holds no checkpoint to resume from")
    say(f"run {run.root}: {ds.num_classes} classes, {len(ds.train)} train / {len(ds.val)} val images "
        f"({ds.layout} at {ds.root})")
    say(_describe(cfg, mc, rt, device, processes))
    if device.type != "cuda" and (requested.amp or requested.channels_last):
        say("note: on the CPU training runs in float32 in the default memory format; "
            "--amp and --channels-last apply on CUDA only")
    return _Setup(run, ds, mc, cfg, rt, device, rank, processes, runtime_record, wanted, done, say, progress)


def _build(s: _Setup) -> _Model:
    """The seeded network (from pretrained weights on a fresh start), on the device, with its
    optimiser and scaler; writes config.json once the weights are in hand."""
    torch.manual_seed(s.cfg.seed)
    model = build_model(s.mc)
    if s.cfg.pretrained and not s.done:  # a resumed run continues from its checkpoint instead
        # Before anything is written: weights that cannot be had leave no run behind.
        part = "network" if s.mc.name.startswith("torchvision:") else "encoder"
        s.say(f"{part} starts from {load_pretrained(model, s.cfg.pretrained)}")
    if s.main:
        s.run.write_config(s.wanted)
    model.to(s.device)
    if s.rt.channels_last:
        model.to(memory_format=torch.channels_last)
    if s.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    opt = make_optimizer(model, s.cfg)
    scaler = torch.amp.GradScaler(s.device.type, enabled=s.rt.amp)
    return _Model(model, opt, scaler, model)


def _resume(s: _Setup, m: _Model) -> tuple[int, list[dict[str, Any]]]:
    """Load the last checkpoint into ``m``; returns its epoch and the metrics rows so far (and
    writes back to metrics.jsonl the rows a kill took from it)."""
    path = s.run.checkpoint(s.done[-1])
    ckpt = load_checkpoint(path, map_location=s.device)
    check_model_config(ckpt["model_config"], s.mc.to_dict(), path, f"the run {s.run.root}")
    try:
        m.model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as e:
        raise RunError(f"{path}: its weights do not fit its own model_config: {str(e)[:300]}") from None
    m.opt.load_state_dict(ckpt["optimizer"])
    if s.rt.amp and ckpt.get("scaler"):
        m.scaler.load_state_dict(ckpt["scaler"])
    rows, lacking = _logged_rows(s.run, s.done, ckpt)
    if lacking and s.main:
        s.run.write_metrics(rows)  # put back what a kill took, even when no epoch is left to train
    return ckpt["epoch"], rows


def _wrap(s: _Setup, model: nn.Module) -> nn.Module:
    """``model`` itself, or under several processes its DistributedDataParallel wrapper."""
    # Every process starts from the same weights (DDP also broadcasts rank 0's at wrapping).
    if s.processes == 1:
        return model
    # 1×1 convolutions' weight gradients arrive with strides that differ from DDP's flat
    # buckets only in their size-1 dimensions: same memory order, nothing to fix.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DistributedDataParallel(
        model, device_ids=[s.device.index] if s.device.type == "cuda" else None, gradient_as_bucket_view=True
    )


def _loaders(s: _Setup) -> _Loaders:
    """This process's shard of the training and validation images (decoded into memory first
    with ``preload``), each loader seeded by (seed, role, rank)."""
    t0 = time.monotonic()
    rt, cfg, rank, processes = s.rt, s.cfg, s.rank, s.processes
    pin = s.device.type == "cuda"
    if rt.preload:
        s.say(f"decoding {len(s.ds.train) + len(s.ds.val)} images into memory ...")
    train_split = ImageSplit(s.ds.train, s.mc.image_size, rt.preload)
    val_split = ImageSplit(s.ds.val, s.mc.image_size, rt.preload)
    if rt.preload:
        s.say(f"decoded {len(train_split) + len(val_split)} images in {time.monotonic() - t0:.1f}s")
    sampler = train_sampler(train_split, seed_of(cfg.seed, 0), rank, processes)
    local_batch = cfg.batch_size // processes
    train_loader = make_loader(train_split, sampler, local_batch, rt.workers, pin, seed_of(cfg.seed, 1, rank))
    val_loader = make_loader(val_split, ShardSampler(len(val_split), rank, processes), 256, rt.workers, pin,
                             seed_of(cfg.seed, 2, rank))
    return _Loaders(sampler, train_loader, val_loader)


def _train_epoch(s: _Setup, m: _Model, loaders: _Loaders, epoch: int) -> _Trained:
    """One pass over the training shard, reseeded by (seed, epoch, rank); its sums over processes."""
    cfg, mc, rt, device = s.cfg, s.mc, s.rt, s.device
    num_classes = s.ds.num_classes
    steps_per_epoch = len(loaders.train)
    k = min(5, num_classes)
    m.net.train()
    loaders.sampler.set_epoch(epoch)
    torch.manual_seed(seed_of(cfg.seed, epoch, s.rank, 0))  # dropout masks
    gen = torch.Generator().manual_seed(seed_of(cfg.seed, epoch, s.rank, 1))  # augmentation
    t_epoch = time.monotonic()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # images, loss, top-1, top-5 hits
    for i, batch in enumerate(loaders.train):
        images, labels = unpack(batch)
        step = (epoch - 1) * steps_per_epoch + i
        lr = cfg.lr * lr_factor(step, steps_per_epoch, cfg)
        for group in m.opt.param_groups:
            group["lr"] = lr
        images = images.to(device, non_blocking=True)  # (b, H, W, 3) uint8
        labels = labels.to(device, non_blocking=True)  # (b,)
        x = augment(to_float(images, mc.mean, mc.std), gen, cfg.hflip, cfg.rotation)  # (b, 3, H, W)
        x, quarters = mosaic(x, labels, gen, cfg.mosaic)
        if quarters is None:
            x, targets = cutmix(x, labels, num_classes, gen, cfg.cutmix)
        else:
            targets = F.one_hot(quarters, num_classes).to(x.dtype).mean(1)  # (b, C)
        if rt.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss, logits = train_step(m.net, m.opt, m.scaler, x, targets, rt.amp, quarters)
        # A mosaic's four quarters each count as a quarter of an image, against its own label.
        share = 1.0 if quarters is None else 0.25
        hit1, hit5 = topk_hits(logits.reshape(-1, num_classes), labels if quarters is None else
                               quarters.flatten(), k)
        # Kept on the device, and no host tensor copied over: no synchronisation per step.
        sums[0] += len(labels)
        sums[1:] += torch.stack([loss * len(labels), hit1.sum() * share, hit5.sum() * share]).double()
        status = partial(_status, epoch, cfg.epochs, i + 1, steps_per_epoch, sums, t_epoch, s.processes)
        s.progress.update(status, force=i + 1 == steps_per_epoch)
    seen, loss_sum, right, right5 = all_sum(sums.cpu(), device).tolist()
    return _Trained(seen, loss_sum, right, right5, lr, epoch * steps_per_epoch, t_epoch, time.monotonic() - t_epoch)


def _end_epoch(s: _Setup, m: _Model, val_loader: DataLoader, epoch: int, t: _Trained,
               rows: list[dict[str, Any]]) -> None:
    """Validate, append the epoch's metrics row to ``rows``, and (rank 0) save its checkpoint and
    metrics.jsonl."""
    if s.processes > 1:
        # BatchNorm running statistics were last updated from each process's own batch: use
        # rank 0's everywhere, as the checkpoint does.
        for buf in m.model.buffers():
            dist.broadcast(buf, 0)
    val = evaluate(m.model, val_loader, s.mc, s.device, s.rt.amp, s.rt.channels_last)
    row = {
        "epoch": epoch,
        "train_loss": t.loss_sum / t.seen,
        "train_top1": t.right / t.seen,
        "train_top5": t.right5 / t.seen,
        "val_loss": val["loss"],
        "val_top1": val["top1"],
        "val_top5": val["top5"],
        "val_class_top1": val["class_top1"],
        "lr": t.lr,
        "steps": t.steps,
        "train_images": int(t.seen),  # over all processes; DistributedSampler pads with repeats
        "seconds": time.monotonic() - t.t_epoch,
        "images_per_s": t.seen / t.seconds,
    }
    rows.append(row)
    if s.main:
        ckpt = {
            "epoch": epoch,
            "model_config": s.mc.to_dict(),
            "train_config": asdict(s.cfg),
            "runtime": s.runtime_record,
            "dataset": s.wanted["dataset"],
            "model": m.model.state_dict(),
            "optimizer": m.opt.state_dict(),
            "scaler": m.scaler.state_dict() if s.rt.amp else None,
            "metrics": row,
        }
        save_checkpoint(s.run.checkpoint(epoch), ckpt)
        s.run.write_metrics(rows)
    s.progress.done(
        f"epoch {epoch}/{s.cfg.epochs}: train loss {row['train_loss']:.3f} top-1 {row['train_top1']:.3f} | "
        f"val loss {row['val_loss']:.3f} top-1 {row['val_top1']:.3f} top-5 {row['val_top5']:.3f} | "
        f"lr {t.lr:.2e}  {row['images_per_s']:.0f} img/s  {row['seconds']:.0f}s"
    )
