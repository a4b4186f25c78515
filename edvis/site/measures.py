"""The numbers the site computes from the render store itself, each in one function.

Per-setting accuracy, class accuracy, flips, confusion counts and the confidence histogram
are worked out here from the arrays the readers hand over. ``analysis.json`` holds (or will
hold) most of them: taking one from there instead is a change to its function alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edvis.analyze.metrics import class_means, confused_pairs, topk_correct
from edvis.site import picks

HIST_BINS = 20


def hits(top5: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(N,) top-1 hits of ranked predictions (N, k), and the top-1 and top-5 accuracy."""
    hit1 = topk_correct(top5, labels, 1)
    return hit1, float(hit1.mean()), float(topk_correct(top5, labels, 5).mean())


def accuracy(top5: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Top-1 and top-5 accuracy of ranked predictions (N, k)."""
    return hits(top5, labels)[1:]


def accuracy_by_epoch(hit1: np.ndarray, hit5: np.ndarray) -> tuple[list[float], list[float]]:
    """Top-1 and top-5 accuracy at each epoch, from (E, N) hits."""
    return [float(h.mean()) for h in hit1], [float(h.mean()) for h in hit5]


def class_accuracy(hit1: np.ndarray, hit5: np.ndarray, members: np.ndarray) -> list[tuple[float | None, float | None]]:
    """One class's (top-1, top-5) at each epoch over its images ``members``; None without images."""
    if not len(members):
        return [(None, None)] * len(hit1)
    return [(float(hit1[e, members].mean()), float(hit5[e, members].mean())) for e in range(len(hit1))]


def class_top1(hit: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """(C,) top-1 accuracy of each class from (N,) hits; NaN for a class without images."""
    return class_means(hit, labels, classes)


def flips(labels: np.ndarray, clean_pred: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    """How a setting's top-1 predictions ``pred`` differ from the clean ones at the same epoch."""
    clean_hit, hit = clean_pred == labels, pred == labels
    return {
        "right_to_wrong": int((clean_hit & ~hit).sum()),
        "wrong_to_right": int((~clean_hit & hit).sum()),
        "wrong_to_wrong": int((~clean_hit & ~hit & (pred != clean_pred)).sum()),
    }


def confused_with(labels: np.ndarray, pred: np.ndarray, c: int) -> list[tuple[int, list[int]]]:
    """The classes class ``c``'s images are predicted as, with those images; most first."""
    return picks.confused_with(labels, pred, c)


def mistaken_for(labels: np.ndarray, pred: np.ndarray, c: int) -> list[tuple[int, int]]:
    """The classes whose images are predicted as ``c``, with their counts; most first."""
    return picks.mistaken_for(labels, pred, c)


def most_confused(labels: np.ndarray, pred: np.ndarray, classes: int, k: int, examples: int) -> list[dict[str, Any]]:
    """The ``k`` pairs of classes most mixed up, with up to ``examples`` images each way."""
    return confused_pairs(labels, pred, classes, k, examples)


def confidence_histogram(prob: np.ndarray, right: np.ndarray) -> tuple[list[int], list[int]]:
    """Counts of right and of wrong predictions per top-1 probability bin (HIST_BINS bins)."""
    return picks.histogram(prob, right, HIST_BINS)
