"""The sanity checks of explanations, from ``RUN/explain/sanity.npz`` (``edvis explain --sanity``):
arrays in, numbers out. Numpy only.

* **Model-parameter randomisation** (Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS
  2018): each method's map of the true class after the layers are re-initialised, one more at
  each step from the last layer down, against its map from the trained network: the Spearman
  rank correlation of the cells and the SSIM. A method whose maps stay alike (near 1) while the
  weights that made the prediction are gone explains something other than the model.
* **Random logit** (Sixt, Granz and Landgraf, When Explanations Lie, ICML 2020): the map of the
  true class against that of a random other class, on the trained network; near 1, the method
  does not tell the classes apart.

**Spearman**: the Pearson correlation of the cells' ranks (ties get their average rank), per
image; NaN where a map is constant. **SSIM** (Wang et al., 2004), per image, on maps each scaled
to [0, 1] by its own minimum and maximum (data range 1): the mean over every w×w window lying
inside the map (w = 7, or the map's side when smaller, made odd; a map under 3 cells a side, such
as CAM's 2×2, is one window) of
((2·μa·μb + C1)(2·σab + C2)) / ((μa² + μb² + C1)(σa² + σb² + C2)), with sample (co)variances
and C1 = 0.01², C2 = 0.03²: scikit-image's ``structural_similarity`` with ``win_size=w``,
``data_range=1`` and its default uniform window (which refuses windows under 3).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["rank_correlation", "sanity_section", "ssim"]

SSIM_WINDOW = 7
DEFINITIONS = {
    "randomisation": "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018: layers re-initialised from "
                     "the last down, one more per step; each map compared with the trained network's",
    "random_logit": "Sixt, Granz and Landgraf, When Explanations Lie, ICML 2020: the true class's map compared "
                    "with a random other class's",
    "spearman": "rank correlation of the cells, ties at their average rank, per image",
    "ssim": "Wang et al. 2004 on maps min-max scaled to [0, 1]; mean over the windows inside the map "
            "(7x7, or the map's side when smaller), sample covariances, C1 = 0.01^2, C2 = 0.03^2",
}


def _ranks(x: np.ndarray) -> np.ndarray:
    """(N, D) average ranks (1 … D) of each row's values; ties share the mean of their ranks."""
    order = np.argsort(x, axis=1, kind="stable")
    ranks = np.empty_like(x, dtype=np.float64)
    n, d = x.shape
    for i in range(n):
        xs = x[i, order[i]]
        r = np.arange(1, d + 1, dtype=np.float64)
        starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
        ends = np.r_[starts[1:], d]
        for s, e in zip(starts, ends):
            r[s:e] = (s + 1 + e) / 2
        ranks[i, order[i]] = r
    return ranks


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) Spearman's rank correlation of maps ``a`` and ``b`` (N, S, S), per image; NaN where
    either map is constant."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=1) / np.where(den > 0, den, 1), np.nan)


def _unit(x: np.ndarray) -> np.ndarray:
    """Each (S, S) map of (N, S, S) scaled to [0, 1] by its own min and max (a constant map: 0)."""
    lo = x.min(axis=(1, 2), keepdims=True)
    span = x.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (x - lo) / np.where(span > 0, span, 1), 0.0)


def ssim(a: np.ndarray, b: np.ndarray, window: int = SSIM_WINDOW) -> np.ndarray:
    """(N,) SSIM of maps ``a`` and ``b`` (N, S, S), each min-max scaled to [0, 1] (see above)."""
    a, b = _unit(np.asarray(a, np.float64)), _unit(np.asarray(b, np.float64))
    side = min(a.shape[1], a.shape[2])
    w = min(window, side)
    w = side if w < 3 else w - (w + 1) % 2  # odd; a map under 3 cells a side is one window
    wa, wb = sliding_window_view(a, (w, w), axis=(1, 2)), sliding_window_view(b, (w, w), axis=(1, 2))
    n = w * w
    ma, mb = wa.mean(axis=(-2, -1)), wb.mean(axis=(-2, -1))
    va = (wa * wa).mean(axis=(-2, -1)) - ma * ma
    vb = (wb * wb).mean(axis=(-2, -1)) - mb * mb
    cov = (wa * wb).mean(axis=(-2, -1)) - ma * mb
    va, vb, cov = (v * n / (n - 1) for v in (va, vb, cov))  # sample (co)variances
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return s.mean(axis=(1, 2))


def _mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return round(float(x.mean()), 4) if x.size else None


def sanity_section(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, Any]:
    """analysis.json's ``sanity`` record from sanity.npz's arrays and meta: per method, the mean
    Spearman and SSIM against the trained network's maps at every randomisation step, and of the
    true class's map against a random other class's."""
    maps = np.asarray(arrays["maps"], np.float64)  # (M, T + 1, K, S, S)
    other = np.asarray(arrays["other_class_maps"], np.float64)  # (M, K, S, S)
    methods, steps = list(meta["methods"]), list(meta["steps"])
    rows = []
    for m, method in enumerate(methods):
        trained = maps[m, 0]
        for t, step in enumerate(steps):
            rows.append({"method": method, "step": step, "spearman": _mean(rank_correlation(trained, maps[m, t])),
                         "ssim": _mean(ssim(trained, maps[m, t]))})
    logit = [{"method": method, "spearman": _mean(rank_correlation(maps[m, 0], other[m])),
              "ssim": _mean(ssim(maps[m, 0], other[m]))} for m, method in enumerate(methods)]
    return {"definitions": DEFINITIONS, "epoch": meta.get("epoch"), "methods": methods, "steps": steps,
            "images": int(len(arrays["index"])), "index": [int(i) for i in arrays["index"]],
            "layer": meta.get("layer"), "randomisation": rows, "random_logit": logit}
