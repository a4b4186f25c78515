"""Numbers behind the pictures: pure numpy, arrays in, arrays out. Imports no torch.

Accuracy and confusion, calibration (ECE, reliability bins, AUROC of the top-1 probability,
the confidence histogram of right and wrong predictions), map sharpness and its rank
correlation with confidence, learning dynamics per class (epochs reaching a share of the final
accuracy, map similarity to the final epoch, "pattern formed", learning order), the effect of a
perturbation against the clean images (flip counts among them), severity
sweeps as a relative corruption error, and localisation (pointing game, map energy in the box,
centre-prior baselines). ``docs/analysis.md`` states every definition.

A number that is undefined for the data given (AUROC when every prediction is right, the
correlation of a constant map, a class without images) is returned as NaN, never raised;
``edvis.analyze`` writes NaN as ``null``.
"""

from __future__ import annotations

import math

import numpy as np

ECE_BINS = 15
"""Reliability bins: equal-width on the top-1 probability, bin b = [b/15, (b+1)/15)."""

HIST_BINS = 20
"""Confidence-histogram bins: equal-width on the top-1 probability, bin b = [b/20, (b+1)/20)."""

PATTERN_THRESHOLD = 0.8
"""A class's pattern is formed from the epoch its mean map similarity to the final epoch
stays at or above this value."""

CENTRE_SIGMA = 0.25
"""Standard deviation of the centre-prior map, as a share of the image side."""


# -- maps on the image grid ---------------------------------------------------------------------


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
    """(N, S, S) → (N, size, size) float32, bilinear."""
    w = bilinear_matrix(maps.shape[-1], size).astype(np.float32)  # (size, S)
    return w @ maps.astype(np.float32) @ w.T


def peaks(up: np.ndarray) -> np.ndarray:
    """(N, 2) pixel (x, y) of the maximum of each (N, H, W) image. Where several pixels share
    the maximum, the one nearest their centroid (the first in row-major order among equals):
    bilinear resizing clamps at the border, so a map whose hottest cell lies on its edge has a
    plateau there, and a 2×2 map's plateau is a whole 16×16 corner of a 64×64 image; its
    middle, not its first pixel, is where the map points."""
    n, h, w = up.shape
    top = up == up.max(axis=(1, 2), keepdims=True)  # (N, H, W)
    idx = top.reshape(n, -1).argmax(axis=1)  # the first maximum
    tied = np.flatnonzero(top.sum(axis=(1, 2)) > 1)
    if len(tied):
        t = top[tied]
        count = t.sum(axis=(1, 2))
        yy, xx = np.arange(h), np.arange(w)
        cx = (t.sum(axis=1) * xx).sum(axis=1) / count  # (T,)
        cy = (t.sum(axis=2) * yy).sum(axis=1) / count
        d = (xx[None, None, :] - cx[:, None, None]) ** 2 + (yy[None, :, None] - cy[:, None, None]) ** 2
        idx[tied] = np.where(t, d, np.inf).reshape(len(tied), -1).argmin(axis=1)
    return np.stack([idx % w, idx // w], axis=1)


def map_peaks(maps: np.ndarray, size: int) -> np.ndarray:
    """(N, 2) pixel (x, y) of each map's maximum once upsampled to size × size (:func:`peaks`)."""
    return peaks(upsample(maps, size))


def inside(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N,) bool: point (x, y) within the inclusive box (x0, y0, x1, y1)."""
    x, y = points[:, 0], points[:, 1]
    return (x >= boxes[:, 0]) & (x <= boxes[:, 2]) & (y >= boxes[:, 1]) & (y <= boxes[:, 3])


def box_masks(boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column membership of the inclusive boxes (x0, y0, x1, y1):
    (N, size) bool for y and (N, size) bool for x."""
    px = np.arange(size)
    in_x = (px >= boxes[:, 0:1]) & (px <= boxes[:, 2:3])
    in_y = (px >= boxes[:, 1:2]) & (px <= boxes[:, 3:4])
    return in_y, in_x


def energy_share(images: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N,) share of each non-negative (N, H, W) image's total inside its inclusive box;
    NaN where the image sums to 0 (nothing to share)."""
    in_y, in_x = box_masks(boxes, images.shape[-1])
    rows = (images * in_x[:, None, :]).sum(axis=2)  # (N, H): each row's mass inside x0..x1
    inner = (rows * in_y).sum(axis=1)
    total = images.sum(axis=(1, 2))
    out = np.full(len(images), np.nan)
    ok = total > 0
    out[ok] = inner[ok] / total[ok]
    return out


def centre_prior(size: int, sigma: float = CENTRE_SIGMA) -> np.ndarray:
    """(size, size) isotropic Gaussian centred on the image, standard deviation
    ``sigma · size`` pixels: the map of a model that always looks at the middle."""
    c = (size - 1) / 2
    d = (np.arange(size) - c) ** 2
    return np.exp(-(d[:, None] + d[None, :]) / (2 * (sigma * size) ** 2))


SMALL_OBJECT = 0.25  # a box covering less than this share of the image is a small object


def box_area_share(boxes: np.ndarray, size: int) -> np.ndarray:
    """(N,) share of the size × size image the inclusive box covers (a uniform map's energy share)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return (w * h) / (size * size)


def localisation(maps: np.ndarray, boxes: np.ndarray, size: int, chunk: int = 256) -> dict[str, float]:
    """Localisation summary of (N, S, S) maps against (N, 4) boxes on a size × size image.

    ``pointing``: share of maps whose upsampled peak (:func:`peaks`) lies in the box;
    ``centre_pointing``: the same for the image's middle pixel; ``energy_in_box``: mean share of
    the upsampled map, clipped at 0, inside the box, over maps with positive energy;
    ``energy_centre``: mean share of :func:`centre_prior` in the box;
    ``energy_uniform``: mean :func:`box_area_share`; ``pointing_vs_centre_lo`` and ``_hi``: the
    95% interval of pointing − centre_pointing (:func:`paired_interval` of the per-image hits);
    ``small_images``, ``pointing_small`` and ``centre_pointing_small``: the count and the two
    pointing games over the images whose box covers less than :data:`SMALL_OBJECT` of the image,
    the pointing game's "difficult" set (Zhang et al., 2016, less its distractor-class condition,
    which one label per image cannot meet), where a centre prior is no longer nearly always right.
    Maps are upsampled ``chunk`` at a time.
    """
    n = len(maps)
    if n == 0:
        nan = float("nan")
        return {"pointing": nan, "centre_pointing": nan, "energy_in_box": nan,
                "energy_centre": nan, "energy_uniform": nan, "pointing_vs_centre_lo": nan, "pointing_vs_centre_hi": nan,
                "small_images": 0, "pointing_small": nan, "centre_pointing_small": nan}
    hits = np.empty(n, dtype=bool)
    energy = np.empty(n)
    prior = np.empty(n)
    centre = centre_prior(size)
    for i in range(0, n, chunk):
        b = boxes[i : i + chunk]
        up = upsample(maps[i : i + chunk], size)  # (chunk, size, size)
        hits[i : i + chunk] = inside(peaks(up), b)
        energy[i : i + chunk] = energy_share(np.maximum(up, 0), b)
        prior[i : i + chunk] = energy_share(np.broadcast_to(centre, up.shape), b)
    centre_hits = inside(np.full((n, 2), size // 2), boxes)
    _, lo, hi = paired_interval(hits.astype(np.float64) - centre_hits)
    area = box_area_share(boxes, size)
    small = area < SMALL_OBJECT
    return {
        "pointing": float(hits.mean()),
        "centre_pointing": float(centre_hits.mean()),
        "energy_in_box": nanmean(energy),
        "energy_centre": float(prior.mean()),
        "energy_uniform": float(area.mean()),
        "pointing_vs_centre_lo": lo,
        "pointing_vs_centre_hi": hi,
        "small_images": int(small.sum()),
        "pointing_small": nanmean(hits[small]),  # NaN when no box is small
        "centre_pointing_small": nanmean(centre_hits[small]),
    }


# -- accuracy and confusion ---------------------------------------------------------------------


def topk_correct(top: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(N,) bool: the label is among the first ``k`` columns of the ranked predictions (N, ≥1)."""
    return (top[:, :k] == labels[:, None]).any(axis=1)


def class_means(values: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """(C,) mean of per-image ``values`` over each class's images, ignoring NaN values;
    NaN for a class with no (non-NaN) value."""
    values = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(values)
    counts = np.bincount(labels[ok], minlength=classes)
    sums = np.bincount(labels[ok], weights=values[ok], minlength=classes)
    out = np.full(classes, np.nan)
    out[counts > 0] = sums[counts > 0] / counts[counts > 0]
    return out


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    return np.bincount(labels * classes + preds, minlength=classes * classes).reshape(classes, classes)


def confused_pairs(labels: np.ndarray, preds: np.ndarray, classes: int, k: int = 20,
                   max_images: int = 100) -> list[dict]:
    """The ``k`` most confused unordered class pairs (a < b), by a-as-b plus b-as-a count,
    ties by (a, b). Each record holds both counts and the indices of the images concerned
    (at most ``max_images`` per direction, in index order)."""
    m = confusion_matrix(labels, preds, classes)
    a, b = np.triu_indices(classes, k=1)
    total = m[a, b] + m[b, a]
    order = np.lexsort((b, a, -total))
    out = []
    for i in order[:k]:
        if total[i] == 0:
            break
        ai, bi = int(a[i]), int(b[i])
        out.append({
            "a": ai, "b": bi, "a_as_b": int(m[ai, bi]), "b_as_a": int(m[bi, ai]), "total": int(total[i]),
            "images_a_as_b": np.flatnonzero((labels == ai) & (preds == bi))[:max_images].tolist(),
            "images_b_as_a": np.flatnonzero((labels == bi) & (preds == ai))[:max_images].tolist(),
        })
    return out


# -- confidence -----------------------------------------------------------------------------


def reliability(conf: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Reliability-diagram data: ``bins`` equal-width bins on the top-1 probability, bin
    b = [b/bins, (b+1)/bins) (found as floor(bins·p); p = 1 goes to the last bin).

    Returns (bins,) arrays ``lower``, ``upper``, ``count``, ``accuracy`` (share right) and
    ``confidence`` (mean probability); the last two are NaN for an empty bin.
    """
    conf = np.asarray(conf, dtype=np.float64)
    idx = np.clip((conf * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    right = np.bincount(idx, weights=correct.astype(np.float64), minlength=bins)
    total = np.bincount(idx, weights=conf, minlength=bins)
    acc = np.full(bins, np.nan)
    mean = np.full(bins, np.nan)
    acc[count > 0] = right[count > 0] / count[count > 0]
    mean[count > 0] = total[count > 0] / count[count > 0]
    edges = np.arange(bins + 1) / bins
    return {"lower": edges[:-1], "upper": edges[1:], "count": count, "accuracy": acc, "confidence": mean}


def confidence_histogram(conf: np.ndarray, correct: np.ndarray, bins: int = HIST_BINS,
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(bins,) int64 counts of the right and of the wrong predictions per equal-width bin of the
    top-1 probability, bin b = [b/bins, (b+1)/bins) (found as floor(bins·p); p = 1 goes to the
    last bin, as in :func:`reliability`)."""
    conf = np.asarray(conf, dtype=np.float64)
    idx = np.clip(np.floor(conf * bins).astype(np.int64), 0, bins - 1)
    right = np.asarray(correct, dtype=bool)
    return np.bincount(idx[right], minlength=bins), np.bincount(idx[~right], minlength=bins)


def ece(conf: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: Σ_b (n_b / N) · |accuracy_b − confidence_b| over the
    :func:`reliability` bins; NaN for no images."""
    r = reliability(conf, correct, bins)
    n = r["count"].sum()
    if n == 0:
        return float("nan")
    ok = r["count"] > 0
    return float((r["count"][ok] * np.abs(r["accuracy"][ok] - r["confidence"][ok])).sum() / n)


def rankdata(x: np.ndarray) -> np.ndarray:
    """(N,) 1-based ranks of ``x``, ties sharing the mean of their ranks."""
    x = np.asarray(x)
    n = len(x)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    first = np.r_[True, xs[1:] != xs[:-1]] if n else np.zeros(0, dtype=bool)
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], n]
    ranks = np.empty(n)
    ranks[order] = ((starts + 1 + ends) / 2)[group]  # positions start..end-1 hold ranks start+1..end
    return ranks


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` separating ``positive`` from the rest: the
    Mann–Whitney probability that a random positive outscores a random negative, ties
    counting half. NaN when either group is empty."""
    pos = np.asarray(positive, dtype=bool)
    n_pos = int(pos.sum())
    n_neg = len(pos) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(scores)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# -- maps -------------------------------------------------------------------------------------


def sharpness(maps: np.ndarray) -> np.ndarray:
    """(N,) peak-to-mean ratio of each (S, S) map after shifting it to a minimum of 0:
    max(m − min m) / mean(m − min m). 1 for a flat map (the constant map included),
    S² for a single hot cell."""
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    shifted = flat - flat.min(axis=1, keepdims=True)
    mean = shifted.mean(axis=1)
    out = np.ones(len(maps))
    ok = mean > 0
    out[ok] = shifted.max(axis=1)[ok] / mean[ok]
    return out


def fixed_pattern_share(maps: np.ndarray) -> float:
    """The share of the spatial variance of one class's maps (N, S, S) that a single fixed
    pattern, scaled per map, explains: σ₁² / Σ σ_k² of the (N, S²) matrix of the maps with each
    map's own mean removed (σ its singular values; the first right singular vector is the
    pattern). 1 when every map is a multiple of one pattern plus a constant; 1/r when the maps'
    variance is spread evenly over r orthogonal patterns (so never below 1/min(N, S² − 1)); NaN
    when every map is constant. The maps' mean (their logit) does not count as variance."""
    x = maps.reshape(len(maps), -1).astype(np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    total = float(np.sum(x * x))
    if not len(x) or total <= 0:
        return float("nan")
    s = np.linalg.svd(x, compute_uv=False)
    return float(s[0] ** 2 / total)


def parity_share(maps: np.ndarray) -> float:
    """The share of the spatial variance of maps (N, S, S), S even, that is a checkerboard of
    period 2: the energy of each map's projection on the four patterns constant over the cells
    of one parity (row mod 2, column mod 2), each map with its own mean removed, over the maps'
    whole energy. 1 for maps that depend only on the cells' parity (the stride-2 pattern a
    transposed convolution can leave), 0 for maps whose four parity classes have equal means;
    NaN when every map is constant."""
    x = maps.astype(np.float64)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    total = float(np.sum(x * x))
    if not len(x) or total <= 0:
        return float("nan")
    phases = np.stack([x[:, a::2, b::2].mean(axis=(1, 2)) for a in (0, 1) for b in (0, 1)], axis=1)  # (N, 4)
    return float(np.sum(phases**2) * x[0].size / 4 / total)


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) Pearson correlation of a[i] and b[i], each flattened (e.g. two (N, S, S) map sets);
    NaN where either is constant."""
    x = a.reshape(len(a), -1).astype(np.float64)
    y = b.reshape(len(b), -1).astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    y -= y.mean(axis=1, keepdims=True)
    den = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    out = np.full(len(x), np.nan)
    ok = den > 0
    out[ok] = np.clip((x * y).sum(axis=1)[ok] / den[ok], -1.0, 1.0)
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of the tie-averaged ranks); NaN for fewer than
    two values or when either side is constant."""
    if len(x) < 2:
        return float("nan")
    return float(pearson_rows(rankdata(x)[None], rankdata(y)[None])[0])


# -- learning dynamics --------------------------------------------------------------------------


def first_reaching(acc: np.ndarray, epochs: np.ndarray, fraction: float) -> np.ndarray:
    """(C,) the first epoch whose accuracy is at least ``fraction`` of the final epoch's,
    from (E, C) per-class accuracy at ``epochs`` (E,); NaN where the final accuracy is 0 or NaN.
    """
    final = acc[-1]
    hit = acc >= fraction * final - 1e-12  # the last row always hits when final > 0
    out = np.asarray(epochs, dtype=np.float64)[hit.argmax(axis=0)]
    out[~(final > 0)] = np.nan
    return out


def pattern_formed(similarity: np.ndarray, epochs: np.ndarray, threshold: float = PATTERN_THRESHOLD) -> np.ndarray:
    """(C,) the first epoch from which the (E, C) similarity stays ≥ ``threshold`` through the
    last epoch (NaN similarity counts as below); NaN if the last epoch itself is below."""
    ok = np.nan_to_num(similarity, nan=-np.inf) >= threshold
    stays = np.logical_and.accumulate(ok[::-1], axis=0)[::-1]  # stays[e] = all(ok[e:])
    out = np.asarray(epochs, dtype=np.float64)[stays.argmax(axis=0)]
    out[~stays[-1]] = np.nan
    return out


def learning_order(epoch_90: np.ndarray, mean_acc: np.ndarray) -> np.ndarray:
    """(C,) class indices, first learned first: by the epoch reaching 90% of the final
    accuracy, then by the higher mean accuracy over all epochs, then by index; NaN last."""
    e = np.nan_to_num(epoch_90, nan=np.inf)
    m = -np.nan_to_num(mean_acc, nan=-np.inf)
    return np.lexsort((np.arange(len(e)), m, e))


# -- perturbations ------------------------------------------------------------------------------


def flip_counts(labels: np.ndarray, clean_pred: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    """How the top-1 predictions ``pred`` (N,) of a perturbed setting differ from the same
    images' clean ones ``clean_pred``: ``right_to_wrong`` (right on the clean image, wrong
    perturbed), ``wrong_to_right``, and ``wrong_to_wrong`` (wrong both times, the predicted
    class changed)."""
    clean_right, right = clean_pred == labels, pred == labels
    return {
        "right_to_wrong": int((clean_right & ~right).sum()),
        "wrong_to_right": int((~clean_right & right).sum()),
        "wrong_to_wrong": int((~clean_right & ~right & (pred != clean_pred)).sum()),
    }


def relative_ce(errors: np.ndarray, clean_error: float) -> float:
    """Relative corruption error: mean top-1 error over a sweep's severities divided by the
    same model's clean top-1 error; NaN for no severities or a clean error of 0."""
    if len(errors) == 0 or not clean_error > 0:
        return float("nan")
    return float(np.mean(errors) / clean_error)


Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def paired_interval(diff: np.ndarray, limits: tuple[float, float] = (-1.0, 1.0)) -> tuple[float, float, float]:
    """(mean, low, high) of per-image paired differences (NaN values left out): the mean and its
    95% interval by the normal approximation, mean ± Z95 · s / √n with s the sample standard
    deviation (ddof 1), clipped to ``limits``, the range the difference can take (differences
    of shares or of AUCs in [0, 1]: -1 to 1; the approximation overshoots it for a few images).
    NaN mean with no value; NaN bounds with fewer than two."""
    d = np.asarray(diff, dtype=np.float64)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(d.mean())
    if len(d) < 2:
        return mean, float("nan"), float("nan")
    half = Z95 * float(d.std(ddof=1)) / math.sqrt(len(d))
    return mean, max(mean - half, limits[0]), min(mean + half, limits[1])


def nanmean(x: np.ndarray) -> float:
    """Mean of the non-NaN values; NaN when there are none."""
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else float("nan")
