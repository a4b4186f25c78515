"""Keeping a GPU busy with onnxruntime: batches prepared ahead on a CPU thread, outputs left on
the device until the batch is done (I/O binding), and a batch size chosen from free memory.

The CPU path of ``edvis render`` does not come here (its batches are plain ``session.run``
calls, as before); a CUDA session does. Imports no torch, and asks the GPU's free memory of
``nvidia-smi``, so that no CUDA library is loaded to find it out.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["BYTES_PER_PIXEL", "MAX_BATCH", "MIN_BATCH", "batch_for_memory", "cuda_free_bytes", "infer_bound",
           "prefetch"]

# Device memory one image takes while a batch runs (activations kept by onnxruntime's arena,
# cuDNN workspace), per input pixel: 2 MiB for a 64 × 64 image. A ResNet-18's float32
# activations at 64 px come to about 1 MiB an image; the rest is headroom.
BYTES_PER_PIXEL = 512
MIN_BATCH, MAX_BATCH = 32, 4096
# Share of the free memory a render may fill (the rest: other processes, fragmentation).
SHARE = 0.5


def batch_for_memory(free_bytes: int | None, image_size: int, share: float = SHARE, fallback: int = 1024) -> int:
    """Images per CUDA batch: the largest power of two whose images, at BYTES_PER_PIXEL bytes per
    pixel, fill at most ``share`` of ``free_bytes``, kept within [MIN_BATCH, MAX_BATCH];
    ``fallback`` when the free memory is unknown."""
    if not free_bytes or free_bytes <= 0:
        return fallback
    fits = int(free_bytes * share) // (BYTES_PER_PIXEL * image_size * image_size)
    if fits < MIN_BATCH:
        return MIN_BATCH
    return min(MAX_BATCH, 1 << (fits.bit_length() - 1))


def cuda_free_bytes(device: int | None = None) -> int | None:
    """Free memory in bytes of the GPU onnxruntime sees as device 0 (or ``device``, an index
    among CUDA_VISIBLE_DEVICES), as ``nvidia-smi`` reports it; None where it cannot say."""
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    index = device or 0
    target = visible[index] if index < len(visible) else str(index)
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits", f"--id={target}"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
        return int(out.split()[0]) << 20  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


_END = object()


def prefetch(images: np.ndarray, batch: int, depth: int = 2) -> Iterator[tuple[int, np.ndarray]]:
    """(start, contiguous batch) of ``images`` in order, each sliced and copied by a thread up to
    ``depth`` batches ahead of the consumer; an error in the thread is raised here."""
    ahead: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for i in range(0, len(images), batch):
                if not put((i, np.ascontiguousarray(images[i : i + batch]))):
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer, which raises it
            put(e)

    thread = threading.Thread(target=produce, name="edvis-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ahead.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def infer_bound(session: Any, images: np.ndarray, batch: int, device: str = "cuda") -> tuple[np.ndarray, np.ndarray]:
    """``images`` (N, H, W, 3) uint8 through ``session`` → logits, maps, as ``session.run`` in
    batches gives them: each batch bound as input (prepared ahead by :func:`prefetch`), its
    outputs kept on ``device`` while it runs and copied back once, when it is done."""
    logits, maps = None, None
    for i, chunk in prefetch(images, batch):
        binding = session.io_binding()
        binding.bind_cpu_input("images", chunk)
        binding.bind_output("logits", device)
        binding.bind_output("maps", device)
        session.run_with_iobinding(binding)
        lo, mp = binding.copy_outputs_to_cpu()
        if logits is None:  # preallocate once the output shapes are known
            logits = np.empty((len(images), *lo.shape[1:]), lo.dtype)
            maps = np.empty((len(images), *mp.shape[1:]), mp.dtype)
        logits[i : i + len(lo)], maps[i : i + len(mp)] = lo, mp
    return logits, maps
