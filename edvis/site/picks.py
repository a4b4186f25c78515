"""What the site's pages pick and count: seeded choices of images and small summaries.

Pure numpy, arrays in, plain lists out; no file access and no torch. Every random choice takes
its own generator, made by :func:`rng` from the site's seed and a stream name, so adding a page
never changes which images another page shows.
"""

from __future__ import annotations

import zlib

import numpy as np

from edvis.analyze.metrics import pearson_rows
from edvis.errors import UsageError


def rng(seed: int, stream: str, *extra: int) -> np.random.Generator:
    """The generator of one named stream of choices: ``default_rng([seed, crc32(stream), *extra])``."""
    if seed < 0:
        raise UsageError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng([seed, zlib.crc32(stream.encode("utf-8")), *extra])


def choose(candidates: np.ndarray | list[int], k: int, gen: np.random.Generator) -> list[int]:
    """``min(k, len(candidates))`` of ``candidates`` drawn without replacement, in ascending order."""
    cand = np.asarray(candidates, dtype=np.int64)
    k = min(k, len(cand))
    if k <= 0:
        return []
    return sorted(int(i) for i in gen.choice(cand, size=k, replace=False))


def even_epochs(epochs: list[int], k: int) -> list[int]:
    """At most ``k`` of ``epochs`` spread evenly, always with the first and the last.

    >>> even_epochs([1, 2, 3, 4, 5, 6, 7, 8, 9], 4)
    [1, 4, 6, 9]
    """
    if k <= 0:
        return []
    if k == 1:
        return list(epochs[-1:])
    if len(epochs) <= k:
        return list(epochs)
    at = np.rint(np.linspace(0, len(epochs) - 1, k)).astype(int)
    return [epochs[i] for i in at]


def confident_mistakes(labels: np.ndarray, pred: np.ndarray, prob: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` wrong predictions with the highest top-1 probability.

    Ties are broken by the lower index. ``labels``, ``pred`` and ``prob`` have shape (N,).
    """
    wrong = np.flatnonzero(pred != labels)
    order = np.lexsort((wrong, -prob[wrong]))  # last key first: probability down, then index up
    return [int(i) for i in wrong[order][:k]]


def same_class_pairs(labels: np.ndarray, pred: np.ndarray, k: int, gen: np.random.Generator) -> list[tuple[int, int]]:
    """``k`` pairs of right predictions of one class, from ``k`` different classes, drawn from ``gen``.

    Only classes with at least two right predictions take part. Pairs come in class order, each
    pair in index order.
    """
    right = pred == labels
    counts = np.bincount(labels[right], minlength=int(labels.max(initial=-1)) + 1)
    classes = choose(np.flatnonzero(counts >= 2), k, gen)
    return [tuple(choose(np.flatnonzero(right & (labels == c)), 2, gen)) for c in classes]  # type: ignore[misc]


def mean_map(maps: np.ndarray) -> np.ndarray:
    """The mean of (M, S, S) uint8 maps (each already scaled to its own maximum), rescaled so
    its maximum is 255; all zero when ``M`` is 0 or every map is zero."""
    if len(maps) == 0:
        return np.zeros(maps.shape[1:], dtype=np.uint8)
    m = maps.astype(np.float64).mean(axis=0)
    peak = m.max()
    if peak <= 0:
        return np.zeros(m.shape, dtype=np.uint8)
    return np.rint(m / peak * 255.0).astype(np.uint8)


def map_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two maps' cells (analysis' ``pearson_rows``); None when either is constant."""
    r = float(pearson_rows(np.asarray(a)[None], np.asarray(b)[None])[0])
    return None if np.isnan(r) else r


def top_channels(act: np.ndarray, k: int) -> list[int]:
    """The ``k`` channels of ``act`` (C, h, w) with the largest mean activation, largest first;
    ties by the lower channel index."""
    means = np.asarray(act, dtype=np.float64).reshape(len(act), -1).mean(axis=1)
    order = np.lexsort((np.arange(len(means)), -means))
    return [int(i) for i in order[:k]]


def scale_minmax(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to 0..255 uint8 by its own minimum and maximum; a constant array gives zeros."""
    v = np.nan_to_num(np.asarray(x, dtype=np.float64))
    if v.size == 0:
        return np.zeros(v.shape, dtype=np.uint8)
    lo, hi = v.min(), v.max()
    if hi <= lo:
        return np.zeros(v.shape, dtype=np.uint8)
    return np.rint((v - lo) / (hi - lo) * 255.0).astype(np.uint8)


# Largest side of a layer's grid in the data file: the canvases are 40 and 96 px, so the larger
# outputs of large images (a ResNet's 112 × 112 stem at 224 px) are block-averaged to this or less.
LAYER_GRID_MAX = 48


def block_mean(x: np.ndarray, cap: int = LAYER_GRID_MAX) -> np.ndarray:
    """(…, h, w) averaged over k × k blocks, k = ceil(max(h, w) / cap), the edge blocks over the
    pixels they hold; unchanged when both sides are ``cap`` or less."""
    h, w = x.shape[-2:]
    k = -(-max(h, w) // cap)
    if k == 1:
        return x
    hh, ww = -(-h // k) * k, -(-w // k) * k
    pad = [(0, 0)] * (x.ndim - 2) + [(0, hh - h), (0, ww - w)]
    total = np.pad(x.astype(np.float64), pad).reshape(*x.shape[:-2], hh // k, k, ww // k, k).sum(axis=(-3, -1))
    count = np.pad(np.ones((h, w)), pad[-2:]).reshape(hh // k, k, ww // k, k).sum(axis=(1, 3))
    return total / count
