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

import contextlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import MISSING, asdict, dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from edvis import atomic
from edvis.data import augment, cutmix, mosaic, quarter_logits, to_float
from edvis.dataset import open_dataset
from edvis.loader import (
    ImageSplit,
    ShardSampler,
    make_loader,
    train_sampler,
    unpack,
)
from edvis.model import ModelConfig, build_model, load_pretrained
from edvis.run import Run, RunError, check_model_config

CHECKPOINT_SCHEMA = 1


@dataclass(frozen=True)
class TrainConfig:
    recipe: str = "demo"
    epochs: int = 12
    batch_size: int = 64
    optimizer: str = "adam"  # adam | sgd
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | constant
    schedule_unit: str = "step"  # step: lr changes every batch; epoch: once per epoch
    warmup_steps: int = 0
    eta_min: float = 0.0
    hflip: bool = True
    rotation: float = 0.0
    cutmix: float = 0.0  # probability that a batch is CutMix-ed
    mosaic: float = 0.0  # probability that a batch becomes quarter mosaics with per-quarter targets
    seed: int = 0
    pretrained: str = ""  # "" (from scratch), "imagenet", or the path of a ResNet-18 state dict

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "optimizer": self.optimizer in ("adam", "sgd"),
            "schedule": self.schedule in ("cosine", "constant"),
            "schedule_unit": self.schedule_unit in ("step", "epoch"),
            "rotation": 0 <= self.rotation <= 180,
            "cutmix": 0 <= self.cutmix <= 1,
            "mosaic": 0 <= self.mosaic <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"--{name.replace('_', '-')}: invalid value {getattr(self, name)!r}")


RECIPES: dict[str, TrainConfig] = {
    # Sized for the embedded dataset on two CPU cores: a from-scratch ResNet-18 needs a high
    # Adam learning rate and several hundred steps before shapes (not only colours) separate.
    # Quarter mosaics with per-quarter targets are what make its maps point at objects
    # (docs/model.md has the measurements).
    "demo": TrainConfig(mosaic=0.8),
    # The author's code: SGD, lr 1e-4, batch 100, 80 epochs, CosineAnnealingLR(T_max=80, 1e-7)
    # stepped once per epoch, RandomRotation(20) + horizontal flip.
    "author": TrainConfig(
        recipe="author", epochs=80, batch_size=100, optimizer="sgd", lr=1e-4, momentum=0.9,
        weight_decay=1e-4, schedule="cosine", schedule_unit="epoch", eta_min=1e-7,
        hflip=True, rotation=20.0,
    ),
}


# The edvis decoder variant each recipe starts from (``--variant`` overrides it): the author's
# recipe is the author's code, decoder included.
RECIPE_VARIANTS: dict[str, str] = {"demo": "paper", "author": "author"}


def resolve_config(recipe: str, **overrides: Any) -> TrainConfig:
    """The recipe's settings with every non-None override applied."""
    if recipe not in RECIPES:
        raise ValueError(f"--recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown training settings: {sorted(unknown)}")
    return replace(RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None})


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of the base lr at optimiser step ``step`` (closed form of CosineAnnealingLR)."""
    total = cfg.epochs * steps_per_epoch
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule_unit == "epoch":
        t, horizon = step // steps_per_epoch, cfg.epochs
    else:
        t, horizon = step - cfg.warmup_steps, max(1, total - cfg.warmup_steps)
    floor = cfg.eta_min / cfg.lr
    return floor + (1 - floor) * (1 + math.cos(math.pi * t / horizon)) / 2


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``cfg`` names, over all of ``model``'s parameters."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)




@dataclass(frozen=True)
class Runtime:
    """How training runs, as opposed to what it computes (:class:`TrainConfig`).

    Saved in ``config.json`` and every checkpoint for the record but, unlike TrainConfig, free to
    change between a run and its resumption. On the CPU none of these changes results: loader
    workers only decode and gather images, and ``amp`` / ``channels_last`` apply on CUDA only
    (untested here: the machines edvis is checked on have no GPU).
    """

    workers: int = 0  # DataLoader worker processes per training process
    preload: bool = True  # decode every image once into memory, else on every pass in the workers
    amp: bool = True  # CUDA only: float16 autocast with a gradient scaler
    channels_last: bool = True  # CUDA only: NHWC memory format for model and inputs

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"--workers: invalid value {self.workers!r} (0 loads in the training process)")

    def resolved(self, device: torch.device) -> Runtime:
        """The settings in effect on ``device``: AMP and channels_last off on the CPU."""
        if device.type == "cuda":
            return self
        return replace(self, amp=False, channels_last=False)


def world() -> tuple[int, int]:
    """(rank, number of processes) of this process; (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def distributed(device: torch.device) -> Iterator[torch.device]:
    """Join the process group torchrun describes in the environment, if any.

    Yields the device this process trains on: under torchrun with CUDA, GPU ``LOCAL_RANK`` and
    the NCCL backend; on the CPU, the gloo backend. Without torchrun (``WORLD_SIZE`` unset or 1)
    this does nothing.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend)  # MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE from torchrun
    try:
        yield device
    finally:
        dist.destroy_process_group()


def _all_sum(t: Tensor, device: torch.device) -> Tensor:
    """``t`` summed over all processes (``t`` itself when there is one), on the CPU."""
    if world()[1] == 1:
        return t
    t = t.to(device)  # NCCL reduces CUDA tensors only
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu()


def _seed(*keys: int) -> int:
    """An independent 63-bit seed for each tuple of keys (e.g. seed, epoch, rank, stream)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(2, np.uint64)[0] >> np.uint64(1))


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

    With ``quarters`` (B, 4), the labels of a :func:`edvis.data.mosaic` batch, the loss adds
    the cross-entropy of each quarter of the maps (:func:`edvis.data.quarter_logits`) against
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
    sums, hits, counts = (_all_sum(t, device) for t in (sums, hits, counts))
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


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by ``train``; a clear RunError if it is damaged or foreign."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise RunError(f"checkpoint not found: {path}") from None
    except Exception as e:  # noqa: BLE001 (any failure to unpickle means "not readable")
        raise RunError(f"cannot read checkpoint {path} (damaged or not an edvis checkpoint): {e}; "
                       "if it was cut short, delete it to resume from the epoch before") from None
    if not isinstance(ckpt, dict) or ckpt.get("schema") != CHECKPOINT_SCHEMA or "model_config" not in ckpt:
        raise RunError(f"{path} is not an edvis checkpoint of schema {CHECKPOINT_SCHEMA}")
    return ckpt


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
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
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
    if not main:
        log, progress = (lambda s: None), Silent()
    progress = progress or Progress()
    requested = runtime or Runtime()
    rt = requested.resolved(device)
    run = Run(Path(run_dir))
    ds = open_dataset(data_root)
    mc = ModelConfig(num_classes=ds.num_classes, **model_config)
    if cfg.batch_size % processes:
        raise ValueError(f"--batch-size {cfg.batch_size} must be a multiple of the number of processes ({processes})")
    if cfg.mosaic > 0 and mc.map_size % 2:
        raise ValueError(f"--mosaic needs maps whose side is even, to split them into quarters; {mc.name} at "
                         f"{mc.image_size} px has {mc.map_size}×{mc.map_size} maps (use --mosaic 0 or another --image-size)")
    runtime_record = {**asdict(rt), "device": str(device), "processes": processes}
    wanted = {"model": mc.to_dict(), "train": asdict(cfg), "dataset": ds.record(), "runtime": runtime_record}
    wanted = json.loads(json.dumps(wanted))  # as it reads back from config.json (tuples → lists)
    done = run.checkpoint_epochs()
    if done and run.config_path.exists():  # binding once an epoch is saved
        _check_same(run.read_config(), wanted, run.config_path)
    if resume and not done:
        raise RunError(f"--resume: {run.checkpoint_dir} holds no checkpoint to resume from")
    log(f"run {run.root}: {ds.num_classes} classes, {len(ds.train)} train / {len(ds.val)} val images "
        f"({ds.layout} at {ds.root})")
    log(_describe(cfg, mc, rt, device, processes))
    if device.type != "cuda" and (requested.amp or requested.channels_last):
        log("note: on the CPU training runs in float32 in the default memory format; "
            "--amp and --channels-last apply on CUDA only")

    torch.manual_seed(cfg.seed)
    model = build_model(mc)
    if cfg.pretrained and not done:  # a resumed run continues from its checkpoint instead
        # Before anything is written: weights that cannot be had leave no run behind.
        log(f"encoder starts from {load_pretrained(model, cfg.pretrained)}")
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
            log(f"all {cfg.epochs} epochs already trained")
            return rows
        log(f"resuming after epoch {start}")
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
        log(f"decoding {len(ds.train) + len(ds.val)} images into memory ...")
    train_split = ImageSplit(ds.train, mc.image_size, rt.preload)
    val_split = ImageSplit(ds.val, mc.image_size, rt.preload)
    if rt.preload:
        log(f"decoded {len(train_split) + len(val_split)} images in {time.monotonic() - t0:.1f}s")
    sampler = train_sampler(train_split, _seed(cfg.seed, 0), rank, processes)
    local_batch = cfg.batch_size // processes
    train_loader = make_loader(train_split, sampler, local_batch, rt.workers, pin, _seed(cfg.seed, 1, rank))
    val_loader = make_loader(val_split, ShardSampler(len(val_split), rank, processes), 256, rt.workers, pin,
                             _seed(cfg.seed, 2, rank))

    steps_per_epoch = len(train_loader)
    k = min(5, ds.num_classes)
    for epoch in range(start + 1, cfg.epochs + 1):
        net.train()
        sampler.set_epoch(epoch)
        torch.manual_seed(_seed(cfg.seed, epoch, rank, 0))  # dropout masks
        gen = torch.Generator().manual_seed(_seed(cfg.seed, epoch, rank, 1))  # augmentation
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
        seen, loss_sum, right, right5 = _all_sum(sums.cpu(), device).tolist()
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
                "schema": CHECKPOINT_SCHEMA,
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
            with atomic.atomic_path(run.checkpoint(epoch)) as tmp:
                torch.save(ckpt, tmp)
            run.write_metrics(rows)
        progress.done(
            f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.3f} top-1 {row['train_top1']:.3f} | "
            f"val loss {row['val_loss']:.3f} top-1 {row['val_top1']:.3f} top-5 {row['val_top5']:.3f} | "
            f"lr {lr:.2e}  {row['images_per_s']:.0f} img/s  {row['seconds']:.0f}s"
        )
    return rows
