"""The seeded subset of validation images on which the costly measures are computed (Score-CAM,
deletion and insertion): the same images for every method, epoch and setting, so that their
numbers compare image for image."""

from __future__ import annotations

import numpy as np

__all__ = ["image_subset"]


def image_subset(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``size`` validation images (all of them when ``size`` ≥ their number),
    spread over the classes: classes take turns, in an order drawn with
    ``numpy.random.default_rng(seed)``, each giving its next image (its images also shuffled by
    that generator) until ``size`` are taken."""
    labels = np.asarray(labels, dtype=np.int64)
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if size >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(labels))
    queues = [list(rng.permutation(np.flatnonzero(labels == c))) for c in classes]
    taken: list[int] = []
    while len(taken) < size:
        for q in queues:
            if q and len(taken) < size:
                taken.append(int(q.pop(0)))
    return np.sort(np.asarray(taken, dtype=np.int64))
