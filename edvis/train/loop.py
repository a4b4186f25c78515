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
from dataclasses import MISSING, asdict, fields
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from edvis.data import open_dataset
from edvis.errors import UsageError
from edvis.models import ModelConfig, build_model, load_pretrained
from edvis.run import Run, RunError, check_model_config, load_checkpoint, save_checkpoint
from edvis.train.augment import augment, cutmix, mosaic, quarter_logits, to_float
from edvis.train.config import Runtime, TrainConfig, lr_factor, make_optimizer
from edvis.train.loader import ImageSplit, ShardSampler, make_loader, train_sampler, unpack
from edvis.train.parallel import all_sum, seed_of, world

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


def train_step(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    x: Tensor,
    targets: Tensor,
    amp: bool,
    quarters: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One optimiser step on (B, 3, H, W) images and (B,) labels or (B, C) soft targets.

    With ``quarters`` (B, 4), the labels of a :func:`edvis.train.augment.mosaic` batch, the loss adds
    the cross-entropy of each quarter of the maps (:func:`edvis.train.augment.quarter_logits`) against
    its quarter's label, and the returned logits are the quarters' (B, 4, C). Otherwise returns
    the logits (B, C). ``amp`` runs the forward pass under float16 autocast (CUDA); the loss is
    always computed in float32.
    """
    with torch.autocast(x.device.type, dtype=torch.float16, enabled=amp):
        logits, maps = net(x)
    loss = F.cross_entropy(logits.float(), targets)
    if quarters is not None:
        logits = quarter_logits(maps.float())  # (B, 4, C)
        loss = loss + F.cross_entropy(logits.flatten(0, 1), quarters.flatten())
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss.detach(), logits.detach()


def topk_hits(logits: Tensor, labels: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(N,) bool each: the label is the top class, and among the ``k`` top classes of (N, C) logits."""
    topk = logits.topk(k, dim=1).indices
    return topk[:, 0] == labels, (topk == labels[:, None]).any(1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    mc: ModelConfig,
    device: torch.device,
    amp: bool = False,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Loss, top-1, top-5 and per-class top-1 over the images ``loader`` yields, in eval mode.

    Under torch.distributed each process evaluates its own shard and the sums (losses, counts of
    hits, images per class) are added over processes before dividing: never an average of
    averages.
    """
    model.eval()
    num_classes = mc.num_classes
    sums = torch.zeros(4, dtype=torch.float64)  # images, loss, top-1 hits, top-5 hits
    hits = torch.zeros(num_classes, dtype=torch.int64)
    counts = torch.zeros(num_classes, dtype=torch.int64)
    k = min(5, num_classes)
    for batch in loader:
        images, labels = unpack(batch)
        x = to_float(images.to(device, non_blocking=True), mc.mean, mc.std)  # (B, 3, H, W)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits, _ = model(x)
        logits = logits.float().cpu()  # (B, C)
        right1, right5 = topk_hits(logits, labels, k)
        sums += torch.tensor([
            len(labels),
            F.cross_entropy(logits, labels, reduction="sum").item(),
            int(right1.sum()),
            int(right5.sum()),
        ], dtype=torch.float64)
        hits += torch.bincount(labels[right1], minlength=num_classes)
        counts += torch.bincount(labels, minlength=num_classes)
    sums, hits, counts = (all_sum(t, device) for t in (sums, hits, counts))
    n = sums[0].item()
    per_class = [(h / c) if c else None for h, c in zip(hits.tolist(), counts.tolist())]
    return {"loss": sums[1].item() / n, "top1": sums[2].item() / n, "top5": sums[3].item() / n,
            "class_top1": per_class}


def _check_same(existing: dict[str, Any], wanted: dict[str, Any], path: Path) -> None:
    diffs = []
    # A setting added after the run was started reads as its default.
    defaults = {"model": _defaults(ModelConfig), "train": _defaults(TrainConfig)}
    for section in ("model", "train", "dataset"):
        old = {**defaults.get(section, {}), **existing.get(section, {})}
        new = wanted[section]
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
    model = [f"model={mc.name}"] + ([f"variant={mc.variant}", f"dropout={mc.dropout}"] if mc.name == "edvis-resnet18" else [])
    on = {True: "on", False: "off"}
    return (
        "config: " + ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in asdict(cfg).items())
        + ", " + ", ".join(model) + f", image_size={mc.image_size}, maps={mc.map_size}x{mc.map_size}"
        + f" | device={device}, processes={processes}, workers={rt.workers}, preload={rt.preload}, "
        f"amp={on[rt.amp]}, channels_last={on[rt.channels_last]}"
    )


def _status(epoch: int, epochs: int, batch: int, batches: int, sums: Tensor, t0: float, processes: int) -> str:
    seen, loss_sum, right, _ = sums.tolist()  # this process's images, loss sum and top-1 hits
    rate = seen * processes / (time.monotonic() - t0)
    return (f"epoch {epoch}/{epochs}  batch {batch}/{batches}  loss {loss_sum / seen:.3f}  "
            f"top-1 {right / seen:.3f}  {rate:.0f} img/s")


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
    rank, processes = world()
    main = rank == 0
    say = log.info if main else (lambda *args: None)  # rank 0 alone speaks
    if not main:
        progress = Silent()
    progress = progress or Progress()
    requested = runtime or Runtime()
    rt = requested.resolved(device)
    run = Run(Path(run_dir))
    ds = open_dataset(data_root)
    mc = ModelConfig(num_classes=ds.num_classes, **model_config)
    if cfg.batch_size % processes:
        raise UsageError(f"--batch-size {cfg.batch_size} must be a multiple of the number of processes ({processes})")
    if cfg.mosaic > 0 and mc.map_size % 2:
        raise UsageError(f"--mosaic needs maps whose side is even, to split them into quarters; {mc.name} at "
                         f"{mc.image_size} px has {mc.map_size}×{mc.map_size} maps (use --mosaic 0 or another --image-size)")
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

    torch.manual_seed(cfg.seed)
    model = build_model(mc)
    if cfg.pretrained and not done:  # a resumed run continues from its checkpoint instead
        # Before anything is written: weights that cannot be had leave no run behind.
        say(f"encoder starts from {load_pretrained(model, cfg.pretrained)}")
    if main:
        run.write_config(wanted)
    model.to(device)
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    opt = make_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=rt.amp)
    start = 0
    rows: list[dict[str, Any]] = []
    if done:
        path = run.checkpoint(done[-1])
        ckpt = load_checkpoint(path, map_location=device)
        check_model_config(ckpt["model_config"], mc.to_dict(), path, f"the run {run.root}")
        try:
            model.load_state_dict(ckpt["model"])
        except (RuntimeError, KeyError) as e:
            raise RunError(f"{path}: its weights do not fit its own model_config: {str(e)[:300]}") from None
        opt.load_state_dict(ckpt["optimizer"])
        if rt.amp and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start = ckpt["epoch"]
        rows, lacking = _logged_rows(run, done, ckpt)
        if lacking and main:
            run.write_metrics(rows)  # put back what a kill took, even when no epoch is left to train
        if start >= cfg.epochs:
            say(f"all {cfg.epochs} epochs already trained")
            return rows
        say(f"resuming after epoch {start}")
    # Every process starts from the same weights (DDP also broadcasts rank 0's at wrapping).
    net: nn.Module = model
    if processes > 1:
        # 1×1 convolutions' weight gradients arrive with strides that differ from DDP's flat
        # buckets only in their size-1 dimensions: same memory order, nothing to fix.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, gradient_as_bucket_view=True
        )

    t0 = time.monotonic()
    pin = device.type == "cuda"
    if rt.preload:
        say(f"decoding {len(ds.train) + len(ds.val)} images into memory ...")
    train_split = ImageSplit(ds.train, mc.image_size, rt.preload)
    val_split = ImageSplit(ds.val, mc.image_size, rt.preload)
    if rt.preload:
        say(f"decoded {len(train_split) + len(val_split)} images in {time.monotonic() - t0:.1f}s")
    sampler = train_sampler(train_split, seed_of(cfg.seed, 0), rank, processes)
    local_batch = cfg.batch_size // processes
    train_loader = make_loader(train_split, sampler, local_batch, rt.workers, pin, seed_of(cfg.seed, 1, rank))
    val_loader = make_loader(val_split, ShardSampler(len(val_split), rank, processes), 256, rt.workers, pin,
                             seed_of(cfg.seed, 2, rank))

    steps_per_epoch = len(train_loader)
    k = min(5, ds.num_classes)
    for epoch in range(start + 1, cfg.epochs + 1):
        net.train()
        sampler.set_epoch(epoch)
        torch.manual_seed(seed_of(cfg.seed, epoch, rank, 0))  # dropout masks
        gen = torch.Generator().manual_seed(seed_of(cfg.seed, epoch, rank, 1))  # augmentation
        t_epoch = time.monotonic()
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # images, loss, top-1, top-5 hits
        for i, batch in enumerate(train_loader):
            images, labels = unpack(batch)
            step = (epoch - 1) * steps_per_epoch + i
            lr = cfg.lr * lr_factor(step, steps_per_epoch, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            images = images.to(device, non_blocking=True)  # (b, H, W, 3) uint8
            labels = labels.to(device, non_blocking=True)  # (b,)
            x = augment(to_float(images, mc.mean, mc.std), gen, cfg.hflip, cfg.rotation)  # (b, 3, H, W)
            x, quarters = mosaic(x, labels, gen, cfg.mosaic)
            if quarters is None:
                x, targets = cutmix(x, labels, ds.num_classes, gen, cfg.cutmix)
            else:
                targets = F.one_hot(quarters, ds.num_classes).to(x.dtype).mean(1)  # (b, C)
            if rt.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss, logits = train_step(net, opt, scaler, x, targets, rt.amp, quarters)
            # A mosaic's four quarters each count as a quarter of an image, against its own label.
            share = 1.0 if quarters is None else 0.25
            hit1, hit5 = topk_hits(logits.reshape(-1, ds.num_classes), labels if quarters is None else
                                   quarters.flatten(), k)
            # Kept on the device, and no host tensor copied over: no synchronisation per step.
            sums[0] += len(labels)
            sums[1:] += torch.stack([loss * len(labels), hit1.sum() * share, hit5.sum() * share]).double()
            status = partial(_status, epoch, cfg.epochs, i + 1, steps_per_epoch, sums, t_epoch, processes)
            progress.update(status, force=i + 1 == steps_per_epoch)
        seen, loss_sum, right, right5 = all_sum(sums.cpu(), device).tolist()
        train_seconds = time.monotonic() - t_epoch
        if processes > 1:
            # BatchNorm running statistics were last updated from each process's own batch: use
            # rank 0's everywhere, as the checkpoint does.
            for buf in model.buffers():
                dist.broadcast(buf, 0)
        val = evaluate(model, val_loader, mc, device, rt.amp, rt.channels_last)
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / seen,
            "train_top1": right / seen,
            "train_top5": right5 / seen,
            "val_loss": val["loss"],
            "val_top1": val["top1"],
            "val_top5": val["top5"],
            "val_class_top1": val["class_top1"],
            "lr": lr,
            "steps": epoch * steps_per_epoch,
            "train_images": int(seen),  # over all processes; DistributedSampler pads with repeats
            "seconds": time.monotonic() - t_epoch,
            "images_per_s": seen / train_seconds,
        }
        rows.append(row)
        if main:
            ckpt = {
                "epoch": epoch,
                "model_config": mc.to_dict(),
                "train_config": asdict(cfg),
                "runtime": runtime_record,
                "dataset": wanted["dataset"],
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict() if rt.amp else None,
                "metrics": row,
            }
            save_checkpoint(run.checkpoint(epoch), ckpt)
            run.write_metrics(rows)
        progress.done(
            f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.3f} top-1 {row['train_top1']:.3f} | "
            f"val loss {row['val_loss']:.3f} top-1 {row['val_top1']:.3f} top-5 {row['val_top5']:.3f} | "
            f"lr {lr:.2e}  {row['images_per_s']:.0f} img/s  {row['seconds']:.0f}s"
        )
    return rows
