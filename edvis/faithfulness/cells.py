"""The cells a map is ranked on, the orders and masks, and the perturbed images. Numpy only.

* **Cells.** The render store's map grid, G × G (``manifest["map_size"]``, 8 at 64 px); each cell
  is image_size / G pixels square, cell ``c`` at row ``c // G``, column ``c % G``. Every method's
  map of the true class is resized to G × G (:func:`resize_bilinear`: bilinear, the sampling of
  ``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)``, no
  antialiasing) before ranking, so every method is ranked on the same cells.
* **Orders.** :func:`map_order`: cells by value, highest first, ties broken by cell index (a
  stable argsort of −value). The references: :func:`centre_order` (cells by the distance of
  their centre from the image centre, nearest first, ties by index) and :func:`random_order` (a
  permutation per image from ``numpy.random.default_rng([seed, image_index])``).
* **Steps.** :func:`step_counts`: k_t = round(t · G² / T) cells for t = 0 … T, rounded half up.
* **Deletion** at step t: the image with its k_t first-ranked cells replaced by the blurred copy;
  **insertion**: the blurred copy with those cells restored (:func:`compose`).
* **Blur.** Gaussian, σ = 5 · image_size / 64 pixels (5 px at 64 px, :func:`blur_sigma`), kernel
  size 2 · ceil(3σ) + 1 (:func:`blur_ksize`), reflect-101 borders: ``edvis.data.perturb.gaussian_blur``.
* **Average Drop masks** (:func:`ad_masks`): the map upsampled to the image (bilinear, as above),
  then scaled to [0, 1] by min-max per image; a constant map (max = min) gives an all-zero mask.
  The masked image is ``rint(image · mask)`` as uint8 (:func:`masked_images`).
"""

from __future__ import annotations

import math

import numpy as np

from edvis.data.perturb import gaussian_blur
from edvis.errors import UsageError

BLUR_SIGMA_64 = 5.0  # σ in pixels at 64 px


def blur_sigma(image_size: int) -> float:
    """σ of the deletion baseline's blur: 5 px at 64 px, in proportion otherwise."""
    return BLUR_SIGMA_64 * image_size / 64


def blur_ksize(sigma: float) -> int:
    """Kernel size of that blur: 2 · ceil(3σ) + 1 (31 for σ = 5)."""
    return 2 * math.ceil(3 * sigma) + 1


def blurred(images: np.ndarray, sigma: float) -> np.ndarray:
    """The blurred copies of uint8 (K, H, W, 3) images (reflect-101 borders, rounded half to even)."""
    ksize = blur_ksize(sigma)
    out = np.empty_like(images)
    for i, image in enumerate(images):
        out[i] = gaussian_blur(image, sigma, ksize)
    return out


def resize_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (N, h, w) maps to (N, H, W) float64, bilinearly with align_corners=False semantics:
    output pixel x samples the input at (x + 0.5) · w / W − 0.5, clamped at 0 below, from its two
    neighbours (the last one repeated at the far edge)."""
    maps = np.asarray(maps, dtype=np.float64)
    (h, w), (H, W) = maps.shape[1:], size
    y0, y1, wy = _axis(h, H)
    x0, x1, wx = _axis(w, W)
    rows = maps[:, y0] * (1 - wy)[None, :, None] + maps[:, y1] * wy[None, :, None]  # (N, H, w)
    return rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx


def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (lower, upper) and upper weights of one axis (torch's area_pixel_compute_source_index)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, src - lo


def map_order(maps: np.ndarray) -> np.ndarray:
    """(N, G²) cell indices of (N, G, G) maps, highest value first, ties by cell index."""
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    return np.argsort(-flat, axis=1, kind="stable")


def centre_distance(grid: int) -> np.ndarray:
    """(G²,) distance of each cell's centre from the image centre, in cells."""
    c = np.arange(grid) + 0.5 - grid / 2
    return np.hypot(c[:, None], c[None, :]).reshape(-1)


def centre_order(grid: int) -> np.ndarray:
    """(G²,) cells by the distance of their centre from the image centre, nearest first, ties by index."""
    return np.argsort(centre_distance(grid), kind="stable")


def centre_map(grid: int) -> np.ndarray:
    """(G, G) the centre reference as a map: 1 − distance / the largest distance."""
    d = centre_distance(grid)
    return (1 - d / d.max() if d.max() > 0 else np.ones_like(d)).reshape(grid, grid)


def random_order(grid: int, seed: int, index: int) -> np.ndarray:
    """(G²,) a random order of the cells: ``default_rng([seed, index]).permutation(G²)``."""
    return np.random.default_rng([seed, int(index)]).permutation(grid * grid)


def order_map(order: np.ndarray, grid: int) -> np.ndarray:
    """(G, G) a map whose :func:`map_order` is ``order``: the first cell 1, the last 0, evenly between."""
    n = grid * grid
    values = np.empty(n)
    values[order] = (n - 1 - np.arange(n)) / max(n - 1, 1)
    return values.reshape(grid, grid)


def ranks_of(orders: np.ndarray) -> np.ndarray:
    """(…, G²) each cell's rank (0 = first) from orders (…, G²) of cell indices."""
    orders = np.asarray(orders)
    ranks = np.empty_like(orders)
    np.put_along_axis(ranks, orders, np.broadcast_to(np.arange(orders.shape[-1]), orders.shape), axis=-1)
    return ranks


def step_counts(cells: int, steps: int) -> np.ndarray:
    """(T + 1,) cells deleted or inserted at each step: round(t · cells / T), half up."""
    if steps < 1:
        raise UsageError(f"--steps must be >= 1, got {steps}")
    return np.floor(np.arange(steps + 1) * cells / steps + 0.5).astype(np.int64)


def pixel_ranks(ranks: np.ndarray, image_size: int) -> np.ndarray:
    """(…, H, W) each pixel's cell rank, from ranks (…, G²)."""
    grid = math.isqrt(ranks.shape[-1])
    if grid * grid != ranks.shape[-1] or image_size % grid:
        raise UsageError(f"a {image_size}-pixel image does not divide into {grid} × {grid} cells")
    side = image_size // grid
    r = ranks.reshape(*ranks.shape[:-1], grid, grid)
    return np.repeat(np.repeat(r, side, axis=-2), side, axis=-1)


def compose(image: np.ndarray, blur: np.ndarray, pixel_rank: np.ndarray, k: int, insertion: bool) -> np.ndarray:
    """One curve point of one image (H, W, 3): deletion replaces the cells ranked below ``k`` by
    the blurred copy; insertion starts from the blurred copy and restores them."""
    chosen = (pixel_rank < k)[..., None]
    return np.where(chosen, image, blur) if insertion else np.where(chosen, blur, image)


def ad_masks(maps: np.ndarray, image_size: int) -> np.ndarray:
    """(N, H, W) float32 masks from (N, h, w) maps: upsampled bilinearly to the image, then scaled
    to [0, 1] by min-max per image; a constant map gives an all-zero mask."""
    up = resize_bilinear(maps, (image_size, image_size))
    lo = up.min(axis=(1, 2), keepdims=True)
    span = up.max(axis=(1, 2), keepdims=True) - lo
    out = np.where(span > 0, (up - lo) / np.where(span > 0, span, 1), 0.0)
    return out.astype(np.float32)


def masked_images(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """uint8 ``rint(image · mask)`` (the product in float32) of (N, H, W, 3) images and (N, H, W) masks."""
    return np.rint(images.astype(np.float32) * masks[..., None]).clip(0, 255).astype(np.uint8)
