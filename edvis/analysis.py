"""Numbers behind the pictures: pure numpy, arrays in, arrays out. Imports no torch.

So far: the pointing game (does the true class's map, upsampled to the image, peak inside the
object's box?) and its centre-prior baseline.
"""

from __future__ import annotations

import numpy as np


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of 1-D bilinear resizing with half-pixel centres
    (``align_corners=False``, as PyTorch's and Pillow's bilinear resize use)."""
    x = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    x = np.clip(x, 0, n_in - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    w = np.zeros((n_out, n_in))
    np.add.at(w, (np.arange(n_out), lo), 1 - (x - lo))
    np.add.at(w, (np.arange(n_out), hi), x - lo)
    return w


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S) → (N, size, size), bilinear."""
    w = bilinear_matrix(maps.shape[-1], size)
    return np.einsum("ij,njk,lk->nil", w, maps.astype(np.float32), w)


def map_peaks(maps: np.ndarray, size: int) -> np.ndarray:
    """(N, 2) pixel (x, y) of each upsampled map's maximum (first in row-major order on ties)."""
    up = upsample(maps, size).reshape(len(maps), -1)
    idx = up.argmax(axis=1)
    return np.stack([idx % size, idx // size], axis=1)


def inside(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N,) bool: point (x, y) within the inclusive box (x0, y0, x1, y1)."""
    x, y = points[:, 0], points[:, 1]
    return (x >= boxes[:, 0]) & (x <= boxes[:, 2]) & (y >= boxes[:, 1]) & (y <= boxes[:, 3])


def pointing_game(maps: np.ndarray, boxes: np.ndarray, size: int) -> dict[str, float]:
    """Share of images whose map peaks inside the box, next to a centre prior that always
    points at the image's middle pixel (size // 2, size // 2)."""
    hits = inside(map_peaks(maps, size), boxes)
    centre = inside(np.full((len(boxes), 2), size // 2), boxes)
    return {"pointing": float(hits.mean()), "centre_baseline": float(centre.mean())}
