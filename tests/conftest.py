"""Shared test fixtures."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The shared data lives beside the checkout, never inside it (see ../shared/data/README.md).
TINY_SUBSET = Path(__file__).resolve().parents[1].parent / "shared/data/tiny-imagenet-200-subset20"


@pytest.fixture(scope="session")
def tiny_subset_root() -> Path:
    """Root of the 20-class Tiny ImageNet subset; skips the test when it is not present."""
    if not (TINY_SUBSET / "wnids.txt").is_file():
        pytest.skip(f"shared Tiny ImageNet subset not found at {TINY_SUBSET}")
    return TINY_SUBSET


@contextlib.contextmanager
def logged() -> Iterator[list[str]]:
    """The messages edvis logs inside the block, as a list that fills while it runs."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("edvis")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def said() -> Iterator[list[str]]:
    """The messages edvis logs during the test."""
    with logged() as lines:
        yield lines


def make_rendered_run(root: Path, classes: int = 3, train_per_class: int = 2, val_per_class: int = 3,
                      perturbations: tuple[str, ...] = ("paper",), image_size: int = 64) -> Path:
    """ROOT/run, through every stage but training and the site: an embedded dataset in ROOT/data,
    one freshly initialised checkpoint (seed 0), exported, rendered under ``perturbations`` and
    analysed. Also the Try it bench's run."""
    from dataclasses import asdict

    import torch

    from edvis.analyze import analyze_run
    from edvis.data import open_dataset, write_dataset
    from edvis.export import export_run
    from edvis.models import ModelConfig, build_model
    from edvis.render import render_run
    from edvis.run import Run, save_checkpoint
    from edvis.train import resolve_config

    data = write_dataset(root / "data", classes=classes, seed=0, train_per_class=train_per_class,
                         val_per_class=val_per_class)
    run = Run(root / "run")
    mc = ModelConfig(num_classes=classes, image_size=image_size)
    cfg = asdict(resolve_config("demo", epochs=1))
    run.write_config({"model": mc.to_dict(), "train": cfg, "dataset": open_dataset(data).record()})
    torch.manual_seed(0)
    save_checkpoint(run.checkpoint(1), {"epoch": 1, "model_config": mc.to_dict(), "train_config": cfg,
                                        "model": build_model(mc).state_dict()})
    export_run(run.root)
    render_run(run.root, provider="cpu", perturbations=list(perturbations))
    analyze_run(run.root)
    return run.root


@pytest.fixture(scope="session")
def rendered_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small run through every stage but training and the site: three embedded classes (three
    validation images each), one freshly initialised checkpoint, exported, rendered under the
    paper's perturbations and analysed. Made once; copy it before changing it."""
    return make_rendered_run(tmp_path_factory.mktemp("rendered"))


def flip(path: Path, count: int = 3) -> None:
    """Damage ``path``: change ``count`` bytes in its middle, keeping its size and mtime."""
    st = path.stat()
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + count] = bytes(b ^ 0xFF for b in raw[mid : mid + count])
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
