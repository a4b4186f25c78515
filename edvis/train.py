"""Training: the epoch loop, one checkpoint per epoch, a metrics log, and resume.

A checkpoint is a plain dict holding what is needed to rebuild the model (``model_config``),
to continue training (optimiser, scheduler and RNG states) and to know where it came from
(``train_config``, ``dataset``). It is written atomically, so a killed run never leaves a
checkpoint that looks complete but is not; rerunning the same command resumes after the last
complete epoch.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from edvis import atomic
from edvis.data import InMemorySplit, augment, cutmix, to_float
from edvis.dataset import open_dataset
from edvis.model import ModelConfig, build_model
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
    seed: int = 0

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
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"--{name.replace('_', '-')}: invalid value {getattr(self, name)!r}")


RECIPES: dict[str, TrainConfig] = {
    # Sized for the embedded dataset on two CPU cores: a from-scratch ResNet-18 needs a high
    # Adam learning rate and several hundred steps before shapes (not only colours) separate.
    # CutMix splits targets by area, which pushes class evidence to where the object is.
    "demo": TrainConfig(cutmix=0.5),
    # The author's code: SGD, lr 1e-4, batch 100, 80 epochs, CosineAnnealingLR(T_max=80, 1e-7)
    # stepped once per epoch, RandomRotation(20) + horizontal flip.
    "author": TrainConfig(
        recipe="author", epochs=80, batch_size=100, optimizer="sgd", lr=1e-4, momentum=0.9,
        weight_decay=1e-4, schedule="cosine", schedule_unit="epoch", eta_min=1e-7,
        hflip=True, rotation=20.0,
    ),
}


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
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


class Progress:
    """One status line per interval (rewritten in place on a terminal)."""

    def __init__(self, stream: Any = None, interval: float = 2.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval
        self.last = 0.0

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()


@torch.no_grad()
def evaluate(
    model: nn.Module, split: InMemorySplit, num_classes: int, mc: ModelConfig, device: torch.device, batch_size: int = 256
) -> dict[str, Any]:
    """Loss, top-1, top-5 and per-class top-1 over ``split``, in eval mode."""
    model.eval()
    loss_sum, top1, top5 = 0.0, 0, 0
    hits = torch.zeros(num_classes, dtype=torch.long)
    counts = torch.zeros(num_classes, dtype=torch.long)
    k = min(5, num_classes)
    for images, labels in split.batches(batch_size, shuffle=False):
        x = to_float(images.to(device), mc.mean, mc.std)
        logits, _ = model(x)
        logits, labels = logits.float().cpu(), labels
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        topk = logits.topk(k, dim=1).indices
        right1 = topk[:, 0] == labels
        top1 += int(right1.sum())
        top5 += int((topk == labels[:, None]).any(1).sum())
        hits += torch.bincount(labels[right1], minlength=num_classes)
        counts += torch.bincount(labels, minlength=num_classes)
    n = len(split)
    per_class = [(h / c) if c else None for h, c in zip(hits.tolist(), counts.tolist())]
    return {"loss": loss_sum / n, "top1": top1 / n, "top5": top5 / n, "class_top1": per_class}


def _check_same(existing: dict[str, Any], wanted: dict[str, Any], path: Path) -> None:
    diffs = []
    for section in ("model", "train", "dataset"):
        old, new = existing.get(section, {}), wanted[section]
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


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by ``train``; a clear RunError if it is damaged or foreign."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise RunError(f"checkpoint not found: {path}") from None
    except Exception as e:
        raise RunError(f"cannot read checkpoint {path} (damaged or not an edvis checkpoint): {e}") from None
    if not isinstance(ckpt, dict) or ckpt.get("schema") != CHECKPOINT_SCHEMA or "model_config" not in ckpt:
        raise RunError(f"{path} is not an edvis checkpoint of schema {CHECKPOINT_SCHEMA}")
    return ckpt


def _logged_rows(run: Run, done: list[int]) -> list[dict[str, Any]]:
    """The metrics rows of the epochs in ``done``, from metrics.jsonl or else their checkpoints.

    A kill between a checkpoint's rename and the metrics write loses that epoch's row from
    metrics.jsonl only: every checkpoint carries its own row.
    """
    logged = {r["epoch"]: r for r in run.read_metrics() if r["epoch"] in done}
    rows = []
    for e in done:
        row = logged.get(e) or load_checkpoint(run.checkpoint(e)).get("metrics")
        if row is None:
            raise RunError(f"{run.checkpoint(e)} holds no metrics row and {run.metrics_path} lacks epoch {e}")
        rows.append(row)
    return rows


def train(
    run_dir: str | Path,
    data_root: str | Path,
    model_config: dict[str, Any],
    cfg: TrainConfig,
    device: torch.device,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Train into ``run_dir``, resuming after its last complete epoch; returns all metrics rows.

    ``model_config`` holds ModelConfig fields other than ``num_classes``, which comes from the
    dataset.
    """
    run = Run(Path(run_dir))
    progress = progress or Progress()
    ds = open_dataset(data_root)
    mc = ModelConfig(num_classes=ds.num_classes, **model_config)
    wanted = {"model": mc.to_dict(), "train": asdict(cfg), "dataset": ds.record()}
    wanted = json.loads(json.dumps(wanted))  # as it reads back from config.json (tuples → lists)
    if run.checkpoint_epochs() and run.config_path.exists():  # binding once an epoch is saved
        _check_same(run.read_config(), wanted, run.config_path)
    run.write_config(wanted)
    log(f"run {run.root}: {ds.num_classes} classes, {len(ds.train)} train / {len(ds.val)} val images "
        f"({ds.layout} at {ds.root})")
    log("config: " + ", ".join(f"{k}={v}" for k, v in asdict(cfg).items()) + f", variant={mc.variant}")

    torch.manual_seed(cfg.seed)
    model = build_model(mc).to(device)
    opt = make_optimizer(model, cfg)
    done = run.checkpoint_epochs()
    start = 0
    rows: list[dict[str, Any]] = []
    if done:
        last = run.checkpoint(done[-1])
        ckpt = load_checkpoint(last, map_location=device)
        check_model_config(ckpt["model_config"], mc.to_dict(), last, f"the run {run.root}")
        try:
            model.load_state_dict(ckpt["model"])
        except (RuntimeError, KeyError) as e:
            raise RunError(f"{last}: its weights do not fit its own model_config: {str(e)[:300]}") from None
        opt.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"])
        start = ckpt["epoch"]
        rows = _logged_rows(run, done)
        if start >= cfg.epochs:
            log(f"all {cfg.epochs} epochs already trained")
            return rows
        log(f"resuming after epoch {start}")

    t0 = time.monotonic()
    train_split = InMemorySplit.load(ds.train, mc.image_size)
    val_split = InMemorySplit.load(ds.val, mc.image_size)
    log(f"decoded {len(train_split) + len(val_split)} images in {time.monotonic() - t0:.1f}s")

    steps_per_epoch = math.ceil(len(train_split) / cfg.batch_size)
    for epoch in range(start + 1, cfg.epochs + 1):
        model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        t_epoch = time.monotonic()
        seen, loss_sum, right, right5 = 0, 0.0, 0, 0
        for i, (images, labels) in enumerate(train_split.batches(cfg.batch_size, True, gen)):
            step = (epoch - 1) * steps_per_epoch + i
            lr = cfg.lr * lr_factor(step, steps_per_epoch, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            x = augment(to_float(images.to(device), mc.mean, mc.std), gen, cfg.hflip, cfg.rotation)
            labels = labels.to(device)
            x, targets = cutmix(x, labels, ds.num_classes, gen, cfg.cutmix)
            logits, _ = model(x)
            loss = F.cross_entropy(logits, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(labels)
            loss_sum += loss.item() * len(labels)
            topk = logits.detach().topk(min(5, ds.num_classes), dim=1).indices
            right += int((topk[:, 0] == labels).sum())
            right5 += int((topk == labels[:, None]).any(1).sum())
            rate = seen / (time.monotonic() - t_epoch)
            progress.update(
                f"epoch {epoch}/{cfg.epochs}  batch {i + 1}/{steps_per_epoch}  "
                f"loss {loss_sum / seen:.3f}  top-1 {right / seen:.3f}  {rate:.0f} img/s",
                force=i + 1 == steps_per_epoch,
            )
        train_seconds = time.monotonic() - t_epoch
        val = evaluate(model, val_split, ds.num_classes, mc, device)
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
            "seconds": time.monotonic() - t_epoch,
            "images_per_s": seen / train_seconds,
        }
        ckpt = {
            "schema": CHECKPOINT_SCHEMA,
            "epoch": epoch,
            "model_config": mc.to_dict(),
            "train_config": asdict(cfg),
            "dataset": wanted["dataset"],
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "metrics": row,
        }
        with atomic.atomic_path(run.checkpoint(epoch)) as tmp:
            torch.save(ckpt, tmp)
        rows.append(row)
        run.write_metrics(rows)
        progress.done(
            f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.3f} top-1 {row['train_top1']:.3f} | "
            f"val loss {row['val_loss']:.3f} top-1 {row['val_top1']:.3f} top-5 {row['val_top5']:.3f} | "
            f"lr {lr:.2e}  {row['images_per_s']:.0f} img/s  {row['seconds']:.0f}s"
        )
    return rows
