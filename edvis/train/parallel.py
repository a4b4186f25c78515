"""Several training processes (torchrun): the process group, sums over processes, and seeds
that depend on (seed, epoch, rank) only."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["all_sum", "distributed", "seed_of", "world"]


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


def all_sum(t: Tensor, device: torch.device) -> Tensor:
    """``t`` summed over all processes (``t`` itself when there is one), on the CPU."""
    if world()[1] == 1:
        return t
    t = t.to(device)  # NCCL reduces CUDA tensors only
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu()


def seed_of(*keys: int) -> int:
    """An independent 63-bit seed for each tuple of keys (e.g. seed, epoch, rank, stream)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(2, np.uint64)[0] >> np.uint64(1))
