"""Batches for training: a dataset split behind a torch DataLoader, sharded across processes.

Images come out as uint8 (B, H, W, 3) with int64 labels (B,); normalisation and augmentation
happen afterwards on the training device (``edvis.data``), from generators the training loop
seeds. Loader workers therefore draw no random numbers, so their number cannot change results.

A split is either decoded once into memory (``preload``, 12 KiB an image at 64×64: 1.2 GB
for Tiny ImageNet's 100,000 training images) or decoded from its files on every pass, in the
workers (for datasets larger than memory). Either way files are read where they are, in the
dataset's own layout (see ``edvis.data.dataset``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from edvis.data import DatasetError, Sample, load_image, load_images


@dataclass(frozen=True)
class LoadFailure:
    """A decoding error in a loader worker, carried to the main process to be raised there
    with its own message (the DataLoader would otherwise wrap it in a worker traceback)."""

    message: str


Batch = tuple[Tensor, Tensor]


class ImageSplit(Dataset):
    """A split's images and labels; batches are fetched whole through ``__getitems__``."""

    def __init__(self, samples: tuple[Sample, ...] | list[Sample], size: int, preload: bool, threads: int = 2) -> None:
        self.paths = [s.path for s in samples]
        self.labels = torch.tensor([s.label for s in samples], dtype=torch.int64)  # (N,)
        self.size = size
        self.images: Tensor | None = None  # (N, H, W, 3) uint8 when preloaded
        if preload:
            self.images = torch.from_numpy(load_images(self.paths, size=size, workers=threads))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        """One image (H, W, 3) uint8 and its label."""
        images, labels = unpack(self.__getitems__([i]))
        return images[0], int(labels[0])

    def __getitems__(self, indices: list[int]) -> Batch | LoadFailure:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        if self.images is not None:
            return self.images[idx], self.labels[idx]
        try:
            images = np.stack([load_image(self.paths[i], self.size) for i in indices])
        except DatasetError as e:
            return LoadFailure(str(e))
        return torch.from_numpy(images), self.labels[idx]


def unpack(batch: Batch | LoadFailure) -> Batch:
    """The batch, or the DatasetError a worker met while decoding it."""
    if isinstance(batch, LoadFailure):
        raise DatasetError(batch.message)
    return batch


def _as_is(batch: Any) -> Any:
    return batch  # __getitems__ already returns a whole batch


def _seed_worker(worker_id: int) -> None:
    # Workers draw no random numbers today; should an image-level transform ever be added, its
    # Python and numpy generators follow torch's per-worker seed, itself derived from the
    # loader's seeded generator, instead of being copies of the parent's state.
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


class ShardSampler(Sampler[int]):
    """Every ``world``-th index from ``rank``, in order, with no padding (for evaluation:
    each image is counted exactly once across processes)."""

    def __init__(self, n: int, rank: int = 0, world: int = 1) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def train_sampler(split: Sized, seed: int, rank: int = 0, world: int = 1) -> DistributedSampler:
    """Shuffled shards of ``split``; call ``set_epoch`` before each epoch.

    The permutation depends on (seed, epoch) only; process ``rank`` takes every ``world``-th
    image of it (padded by repeats to equal shard sizes). Batch i of every shard together is
    positions [i·B, (i+1)·B) of the permutation, B the global batch: the images one process
    with batch B would see at step i.
    """
    return DistributedSampler(split, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)


def make_loader(
    split: ImageSplit, sampler: Sampler[int], batch_size: int, workers: int, pin_memory: bool, seed: int
) -> DataLoader:
    """A DataLoader yielding ``uint8 (b, H, W, 3), int64 (b,)`` batches (or a LoadFailure)."""
    return DataLoader(
        split,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=_as_is,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        worker_init_fn=_seed_worker if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )
