"""The curves and Average Drop inputs of a set of images under several orders, by onnxruntime.

For K images, M methods and T steps the model sees, per image, the image itself and its blurred
copy (shared by every method: deletion's last point and insertion's first are the blurred copy,
deletion's first and insertion's last the image) and, per method it covers, T − 1 deletion and
T − 1 insertion images and one masked image: 2 + M · (2T − 1) inferences. They are composed in
batches (never all at once) and the model's logits turned into the true class's softmax
probability. Numpy and onnxruntime only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from edvis.faithfulness.cells import masked_images, pixel_ranks, step_counts

DELETION, INSERTION, MASKED, FULL, BLURRED = range(5)


@dataclass
class Curves:
    """What :func:`measure` returns (NaN where a method does not cover an image)."""

    deletion: np.ndarray  # (M, K, T + 1) float32
    insertion: np.ndarray  # (M, K, T + 1) float32
    full: np.ndarray  # (K,) float32: p_true of the image (Y)
    masked: np.ndarray  # (M, K) float32: p_true of the image times the method's mask (O)
    inferences: int  # images the model was run on


def softmax_true(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) softmax probability of ``labels`` from (N, C) logits, in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e[np.arange(len(labels)), labels] / e.sum(axis=1)


def _jobs(covered: np.ndarray, steps: int) -> np.ndarray:
    """(J, 4) int64 rows (kind, image, method, step) of every inference to make."""
    K = covered.shape[1]
    rows = [(FULL, i, 0, 0) for i in range(K)] + [(BLURRED, i, 0, 0) for i in range(K)]
    for m, i in zip(*np.nonzero(covered)):
        rows += [(kind, i, m, t) for kind in (DELETION, INSERTION) for t in range(1, steps)]
        rows.append((MASKED, i, m, 0))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def _batches(jobs: np.ndarray, images: np.ndarray, blur: np.ndarray, prank: np.ndarray, masked: np.ndarray,
             counts: np.ndarray, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(job rows, uint8 (B, H, W, 3) inputs) in batches of at most ``batch``."""
    for start in range(0, len(jobs), batch):
        j = jobs[start:start + batch]
        kind, i, m, t = j.T
        image, base = images[i], blur[i]
        chosen = (prank[m, i] < counts[t][:, None, None])[..., None]
        out = np.where(chosen, base, image)  # deletion
        ins = kind == INSERTION
        out[ins] = np.where(chosen[ins], image[ins], base[ins])
        out[kind == MASKED] = masked[m[kind == MASKED], i[kind == MASKED]]
        out[kind == FULL] = image[kind == FULL]
        out[kind == BLURRED] = base[kind == BLURRED]
        yield j, out


def measure(session: Any, images: np.ndarray, blur: np.ndarray, labels: np.ndarray, ranks: np.ndarray,
            covered: np.ndarray, masks: np.ndarray, steps: int, batch: int = 128) -> Curves:
    """Deletion and insertion curves and Average Drop inputs of ``images`` (K, H, W, 3) uint8.

    ``blur`` (K, H, W, 3) uint8 is their blurred copy, ``labels`` (K,) their true classes,
    ``ranks`` (M, K, G²) each cell's rank under each method (0 = deleted first), ``covered``
    (M, K) bool which images each method has a map of, ``masks`` (M, K, H, W) float32 the Average
    Drop masks in [0, 1]. ``session`` is an onnxruntime session with input ``images`` and output
    ``logits``.
    """
    M, K = covered.shape
    size = images.shape[1]
    counts = step_counts(ranks.shape[-1], steps)
    prank = pixel_ranks(ranks, size).astype(np.int16 if ranks.shape[-1] < 32767 else np.int32)
    masked = masked_images(np.broadcast_to(images, (M, *images.shape)).reshape(-1, *images.shape[1:]),
                           masks.reshape(-1, size, size)).reshape(M, K, *images.shape[1:])
    jobs = _jobs(covered, steps)
    deletion = np.full((M, K, steps + 1), np.nan, np.float32)
    insertion = np.full((M, K, steps + 1), np.nan, np.float32)
    full = np.full(K, np.nan, np.float32)
    blurred_p = np.full(K, np.nan, np.float32)
    out_masked = np.full((M, K), np.nan, np.float32)
    for j, inputs in _batches(jobs, images, blur, prank, masked, counts, batch):
        (logits,) = session.run(["logits"], {"images": np.ascontiguousarray(inputs)})
        p = softmax_true(logits, labels[j[:, 1]]).astype(np.float32)
        for kind, target in ((DELETION, deletion), (INSERTION, insertion)):
            sel = j[:, 0] == kind
            target[j[sel, 2], j[sel, 1], j[sel, 3]] = p[sel]
        sel = j[:, 0] == MASKED
        out_masked[j[sel, 2], j[sel, 1]] = p[sel]
        full[j[j[:, 0] == FULL, 1]] = p[j[:, 0] == FULL]
        blurred_p[j[j[:, 0] == BLURRED, 1]] = p[j[:, 0] == BLURRED]
    # The shared end points: deleting nothing or inserting everything is the image itself.
    deletion[:, :, 0] = insertion[:, :, steps] = full[None]
    deletion[:, :, steps] = insertion[:, :, 0] = blurred_p[None]
    deletion[~covered] = insertion[~covered] = np.nan
    return Curves(deletion, insertion, full, out_masked, len(jobs))
