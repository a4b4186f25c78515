"""Training throughput on this machine: images/s of full training steps, both models.

A step is what the training loop does per batch: uint8 images → normalised floats → the author
recipe's augmentation (flip, rotation up to 20°) → forward, cross-entropy, backward, SGD step.
64 px, batch 64, 200 classes (Tiny ImageNet), float32 on the CPU. The two models alternate in
blocks of steps so that load from other processes falls on both alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from edvis.models import ModelConfig, build_model
from edvis.train import RECIPES, augment, make_optimizer, to_float, train_step

MODELS = ("edvis-resnet18", "cam-resnet18")
BATCH, CLASSES, SIZE = 64, 200, 64
WARMUP, BLOCKS, STEPS_PER_BLOCK = 3, 4, 5  # 20 timed steps a model


def _stepper(name: str) -> Callable[[], None]:
    torch.manual_seed(0)
    mc = ModelConfig(num_classes=CLASSES, name=name, image_size=SIZE)
    model = build_model(mc).train()
    cfg = RECIPES["author"]
    opt = make_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (BATCH, SIZE, SIZE, 3), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=gen)

    def step() -> None:
        x = augment(to_float(images, mc.mean, mc.std), gen, cfg.hflip, cfg.rotation)
        train_step(model, opt, scaler, x, labels, amp=False)

    return step


def run() -> list[dict]:
    steppers = {name: _stepper(name) for name in MODELS}
    seconds = dict.fromkeys(MODELS, 0.0)
    for step in steppers.values():
        for _ in range(WARMUP):
            step()
    for _ in range(BLOCKS):
        for name, step in steppers.items():
            t = time.perf_counter()
            for _ in range(STEPS_PER_BLOCK):
                step()
            seconds[name] += time.perf_counter() - t
    rate = {name: BLOCKS * STEPS_PER_BLOCK * BATCH / s for name, s in seconds.items()}
    return [{
        "benchmark": f"train: img/s, cam-resnet18 vs edvis-resnet18 ({SIZE} px, batch {BATCH}, {CLASSES} classes, "
                     f"{torch.get_num_threads()} threads)",
        "measured": f"{rate['cam-resnet18']:.0f} vs {rate['edvis-resnet18']:.0f}",
        "ratio": rate["cam-resnet18"] / rate["edvis-resnet18"],
        "target": None,
        "met": None,
    }]
