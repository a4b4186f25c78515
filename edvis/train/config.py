"""What a training run computes (:class:`TrainConfig`, its recipes) and how it runs
(:class:`Runtime`); the learning-rate schedule and the optimiser they name."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import nn

from edvis.errors import UsageError

__all__ = ["RECIPES", "RECIPE_VARIANTS", "Runtime", "TrainConfig", "lr_factor", "make_optimizer", "resolve_config"]


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
    pretrained: str = ""  # "" (from scratch), "imagenet", or the path of a state dict of the architecture

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
                raise UsageError(f"--{name.replace('_', '-')}: invalid value {getattr(self, name)!r}")


RECIPES: dict[str, TrainConfig] = {
    # Sized for the embedded dataset on two CPU cores: a from-scratch ResNet-18 needs a high
    # Adam learning rate and several hundred steps before shapes (not only colours) separate.
    # Quarter mosaics with per-quarter targets are what make its maps point at objects
    # (docs/model.md has the measurements).
    "demo": TrainConfig(mosaic=0.8),
    # The demo's optimisation without the mosaics, for photographs: their objects are mostly large
    # and centred, and at half size in a quarter they lose what tells their classes apart (on Tiny
    # ImageNet the mosaics cost 0.12 to 0.23 of top-1; docs/model.md has the measurements).
    "photo": TrainConfig(recipe="photo"),
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
RECIPE_VARIANTS: dict[str, str] = {"demo": "paper", "photo": "paper", "author": "author"}


def resolve_config(recipe: str, **overrides: Any) -> TrainConfig:
    """The recipe's settings with every non-None override applied."""
    if recipe not in RECIPES:
        raise UsageError(f"--recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise UsageError(f"unknown training settings: {sorted(unknown)}")
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
            raise UsageError(f"--workers: invalid value {self.workers!r} (0 loads in the training process)")

    def resolved(self, device: torch.device) -> Runtime:
        """The settings in effect on ``device``: AMP and channels_last off on the CPU."""
        if device.type == "cuda":
            return self
        return replace(self, amp=False, channels_last=False)
