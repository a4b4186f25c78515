"""Image perturbations for rendering the validation set under stress. Imports no torch.

Every perturbation maps a ``uint8`` image of shape ``(H, W, 3)`` (RGB) to a new ``uint8`` image
of the same shape and never modifies its input. Two groups are provided:

* the seed paper's set: ``gray``, ``blur3``, ``blur5``, ``bgr``, ``brg``, ``sp0.0005``,
  ``sp0.005`` (see :func:`paper_set`);
* severity sweeps 1-5 for ``gaussian_noise``, ``gaussian_blur``, ``contrast``, ``brightness``,
  ``jpeg`` and ``occlusion``, named ``<kind>-<severity>`` (parameters in :data:`SEVERITIES`);

plus ``clean``, the identity. All settings live in :data:`PERTURBATIONS`.

Determinism: a random perturbation draws from
``np.random.default_rng([key, stable_hash(name)])``, where ``key`` is a non-negative integer
chosen by the caller (the renderer combines the image's index in the validation set with a run
seed) and :func:`stable_hash` is the CRC-32 of the setting's name. The output therefore depends
only on (image, setting, key), never on batch size, order or sharding.
"""

from __future__ import annotations

import io
import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from edvis.errors import UsageError

__all__ = [
    "GREY",
    "OPENCV_FIXED_KERNELS",
    "PAPER_SETTINGS",
    "PERTURBATIONS",
    "SEVERITIES",
    "Perturbation",
    "apply",
    "blur",
    "blur_kernel",
    "brightness",
    "channels",
    "contrast",
    "gaussian_blur",
    "gaussian_kernel_1d",
    "gaussian_noise",
    "gray",
    "jpeg",
    "occlusion",
    "opencv_sigma",
    "paper_set",
    "salt_pepper",
    "stable_hash",
]

GREY = 128
"""The value an occlusion patch is filled with, in every channel."""

# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _check_image(image: Any, arg: str = "image") -> np.ndarray:
    """Return ``image`` if it is a uint8 array of shape (H, W, 3) with H, W >= 1."""
    if not isinstance(image, np.ndarray):
        raise UsageError(f"{arg} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise UsageError(f"{arg} must have dtype uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise UsageError(f"{arg} must have shape (H, W, 3), got {image.shape}")
    return image


def _check_key(key: Any) -> int:
    """Return ``key`` as a Python int if it is a non-negative integer (bool excluded)."""
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
        raise UsageError(f"key must be a non-negative integer, got {key!r}")
    if key < 0:
        raise UsageError(f"key must be a non-negative integer, got {key}")
    return int(key)


def _check_number(value: Any, arg: str, *, low: float, high: float | None = None,
                  low_inclusive: bool = True) -> float:
    """Return ``value`` as a float if it is a finite real number within the given bounds."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise UsageError(f"{arg} must be a number, got {value!r}")
    value = float(value)
    too_low = value < low if low_inclusive else value <= low
    if not math.isfinite(value) or too_low or (high is not None and value > high):
        bounds = f"{'[' if low_inclusive else '('}{low}, {high if high is not None else 'inf'}]"
        raise UsageError(f"{arg} must be in {bounds}, got {value}")
    return value


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Round half to even and clip to [0, 255], as uint8."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def stable_hash(name: str) -> int:
    """A hash of ``name`` that is the same in every process: the CRC-32 of its UTF-8 bytes.

    Python's built-in ``hash`` of a string is salted per process, so it must not seed noise.
    """
    if not isinstance(name, str):
        raise UsageError(f"name must be a str, got {type(name).__name__}")
    return zlib.crc32(name.encode("utf-8"))


# --------------------------------------------------------------------------------------------
# Deterministic perturbations
# --------------------------------------------------------------------------------------------


def gray(image: np.ndarray) -> np.ndarray:
    """Grey scale: ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B``, rounded, in all 3 channels."""
    _check_image(image)
    luma = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.repeat(_to_uint8(luma)[:, :, None], 3, axis=2)


def channels(image: np.ndarray, order: str) -> np.ndarray:
    """Reorder the channels: ``order`` is a permutation of "RGB", naming each output channel's source.

    ``channels(image, "BGR")`` puts the input's B in output channel 0, G in 1 and R in 2.
    """
    _check_image(image)
    if not isinstance(order, str) or sorted(order.upper()) != ["B", "G", "R"]:
        raise UsageError(f"order must be a permutation of 'RGB', got {order!r}")
    source = ["RGB".index(c) for c in order.upper()]
    return image[:, :, source].copy()


def _check_ksize(ksize: Any) -> int:
    """Return ``ksize`` as an int if it is a positive odd integer (bool excluded)."""
    if isinstance(ksize, (bool, np.bool_)) or not isinstance(ksize, (int, np.integer)) or ksize < 1 \
            or ksize % 2 == 0:
        raise UsageError(f"ksize must be a positive odd integer, got {ksize!r}")
    return int(ksize)


def opencv_sigma(ksize: int) -> float:
    """OpenCV's σ rule for sigma 0: ``σ = 0.3 · ((ksize − 1) · 0.5 − 1) + 0.8`` (2.6 for ksize 15).

    OpenCV samples a Gaussian of this σ only for ksize 11 and up. For ksize 1, 3, 5, 7 and 9
    (σ 0.5, 0.8, 1.1, 1.4 and 1.7 by the rule) it takes the fixed kernels of
    :data:`OPENCV_FIXED_KERNELS` instead, and so does :func:`blur`.
    """
    ksize = _check_ksize(ksize)
    return 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8


OPENCV_FIXED_KERNELS: dict[int, tuple[int, ...]] = {
    1: (256,),
    3: (64, 128, 64),
    5: (16, 64, 96, 64, 16),
    7: (8, 28, 56, 72, 56, 28, 8),
    9: (4, 13, 30, 51, 60, 51, 30, 13, 4),
}
"""OpenCV's fixed 1-D Gaussian kernels for sigma 0, in 1/256 units (each sums to 256).

``cv2.getGaussianKernel(k, 0)`` returns ``OPENCV_FIXED_KERNELS[k] / 256`` for these k, e.g.
[1, 2, 1] / 4 for k = 3 and [1, 4, 6, 4, 1] / 16 for k = 5; they are not sampled Gaussians of
σ = :func:`opencv_sigma`. Every weight is a multiple of 1/256, so OpenCV's 8-bit fixed-point
path applies them without rounding.
"""


def blur_kernel(ksize: int) -> np.ndarray:
    """The 1-D kernel :func:`blur` uses: ``cv2.getGaussianKernel(ksize, 0)``, float64, sums to 1."""
    ksize = _check_ksize(ksize)
    if ksize not in OPENCV_FIXED_KERNELS:
        raise UsageError(f"ksize must be one of {sorted(OPENCV_FIXED_KERNELS)} "
                         f"(the sizes OpenCV has fixed kernels for), got {ksize}")
    return np.array(OPENCV_FIXED_KERNELS[ksize], dtype=np.float64) / 256


def gaussian_kernel_1d(ksize: int, sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian of odd length ``ksize``: weights ∝ exp(−x² / (2σ²)), x centred."""
    ksize = _check_ksize(ksize)
    sigma = _check_number(sigma, "sigma", low=0.0, low_inclusive=False)
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
    weights = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return weights / weights.sum()


def _pad_reflect101(values: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Pad ``radius`` values on both sides of ``axis`` with OpenCV's ``BORDER_REFLECT_101``.

    numpy's ``"reflect"`` mode is reflect-101 (gfedcb|abcdefgh|gfedcba), repeated as often as
    needed when the kernel is wider than the image; a length-1 axis repeats its one value, as
    OpenCV's ``borderInterpolate`` does.
    """
    widths = [(0, 0)] * values.ndim
    widths[axis] = (radius, radius)
    return np.pad(values, widths, mode="reflect")


def _convolve_separable(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve rows then columns with a symmetric 1-D kernel; reflect-101 border.

    The arithmetic follows ``kernel``'s dtype: float64 weights give a float64 sum, integer
    weights an exact integer sum (int64).
    """
    radius = len(kernel) // 2
    dtype = np.int64 if np.issubdtype(kernel.dtype, np.integer) else np.float64
    out = image.astype(dtype)
    height, width = out.shape[:2]
    padded = _pad_reflect101(out, radius, axis=1)
    out = sum(w * padded[:, i:i + width] for i, w in enumerate(kernel.tolist()))
    padded = _pad_reflect101(out, radius, axis=0)
    return sum(w * padded[i:i + height] for i, w in enumerate(kernel.tolist()))


def gaussian_blur(image: np.ndarray, sigma: float, ksize: int | None = None) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` (pixels), separable, reflect-101 border.

    Without ``ksize`` the kernel size follows OpenCV's rule for 8-bit images,
    ``ksize = round(6σ + 1) | 1`` (so the kernel spans about ±3σ). The kernel is
    :func:`gaussian_kernel_1d`; the sum is computed in float64 and rounded half to even. This is
    close to, not equal to, ``cv2.GaussianBlur(image, (ksize, ksize), sigma)``: OpenCV rounds
    each weight to a multiple of 1/256 first, and the two differ by up to 2 grey levels
    (measured by tests/data/test_perturb.py on the registered ``gaussian_blur-*`` settings).
    """
    _check_image(image)
    sigma = _check_number(sigma, "sigma", low=0.0, low_inclusive=False)
    if ksize is None:
        ksize = round(6 * sigma + 1) | 1
    kernel = gaussian_kernel_1d(ksize, sigma)
    return _to_uint8(_convolve_separable(image, kernel))


def blur(image: np.ndarray, ksize: int) -> np.ndarray:
    """The paper's blur: exactly what ``cv2.GaussianBlur(image, (ksize, ksize), 0)`` computes.

    ``ksize`` is 1, 3, 5, 7 or 9, the sizes for which OpenCV uses a fixed kernel
    (:data:`OPENCV_FIXED_KERNELS`, in 1/256 units) rather than one derived from σ. The kernel is
    applied to rows, then columns, in exact integer arithmetic with a reflect-101 border
    (OpenCV's default); the sum ``S`` (in 1/65536 units) is rounded half up,
    ``(S + 32768) >> 16``, as OpenCV's 8-bit fixed-point path does. The result equals OpenCV's
    bit for bit.
    """
    _check_image(image)
    blur_kernel(ksize)  # validates ksize, naming it
    kernel = np.array(OPENCV_FIXED_KERNELS[int(ksize)], dtype=np.int64)
    total = _convolve_separable(image, kernel)
    return ((total + (1 << 15)) >> 16).astype(np.uint8)


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend toward the image mean: ``mean + factor · (image − mean)``, rounded and clipped.

    ``mean`` is the mean of all H·W·3 values of the image. ``factor`` < 1 lowers contrast
    (0 gives a flat image); ``factor`` > 1 raises it and clips at 0 and 255.
    """
    _check_image(image)
    factor = _check_number(factor, "factor", low=0.0)
    values = image.astype(np.float64)
    mean = values.mean()
    return _to_uint8(mean + factor * (values - mean))


def brightness(image: np.ndarray, offset: float) -> np.ndarray:
    """Add ``offset`` (uint8 units, may be negative) to every value, rounded and clipped."""
    _check_image(image)
    offset = _check_number(offset, "offset", low=-255.0, high=255.0)
    return _to_uint8(image.astype(np.float64) + offset)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode as JPEG with Pillow at ``quality`` (1-95) and decode again.

    Pillow's defaults apply otherwise (4:2:0 chroma subsampling, no optimisation); libjpeg is
    deterministic, so no seed is involved.
    """
    _check_image(image)
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) \
            or not 1 <= quality <= 95:
        raise UsageError(f"quality must be an integer in [1, 95], got {quality!r}")
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()


# --------------------------------------------------------------------------------------------
# Random perturbations: each takes a numpy Generator, built by Perturbation from the key
# --------------------------------------------------------------------------------------------


def _check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise UsageError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def salt_pepper(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper noise, the paper's eq. 12: ``M = round(amount · H · W · C)`` values set.

    ``M`` distinct (y, x, c) positions are drawn without replacement; the first ``⌊M/2⌋`` of
    them are set to 0 and the rest to 255. Channels are hit independently.
    """
    _check_image(image)
    amount = _check_number(amount, "amount", low=0.0, high=1.0)
    _check_rng(rng)
    total = image.size
    count = round(amount * total)
    positions = rng.choice(total, size=count, replace=False)
    out = image.copy()
    flat = out.reshape(-1)
    flat[positions[: count // 2]] = 0
    flat[positions[count // 2:]] = 255
    return out


def gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add independent N(0, σ²) noise to every value (σ in uint8 units), rounded and clipped."""
    _check_image(image)
    sigma = _check_number(sigma, "sigma", low=0.0)
    _check_rng(rng)
    noise = rng.normal(0.0, sigma, size=image.shape)
    return _to_uint8(image.astype(np.float64) + noise)


def occlusion(image: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Fill a square patch with :data:`GREY` (128) in all channels, at a seeded position.

    The side is ``max(1, round(fraction · min(H, W)))`` pixels; the top-left corner is drawn
    uniformly so that the whole square lies inside the image.
    """
    _check_image(image)
    fraction = _check_number(fraction, "fraction", low=0.0, high=1.0, low_inclusive=False)
    _check_rng(rng)
    height, width = image.shape[:2]
    side = max(1, round(fraction * min(height, width)))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    out = image.copy()
    out[top:top + side, left:left + side] = GREY
    return out


# --------------------------------------------------------------------------------------------
# Settings and registry
# --------------------------------------------------------------------------------------------

# kind -> (function, whether it takes an rng). Parameters are passed as keyword arguments.
_KINDS: dict[str, tuple[Callable[..., np.ndarray], bool]] = {
    "clean": (lambda image: image.copy(), False),
    "gray": (gray, False),
    "blur": (blur, False),
    "channels": (channels, False),
    "salt_pepper": (salt_pepper, True),
    "gaussian_noise": (gaussian_noise, True),
    "gaussian_blur": (gaussian_blur, False),
    "contrast": (contrast, False),
    "brightness": (brightness, False),
    "jpeg": (jpeg, False),
    "occlusion": (occlusion, True),
}

PAPER_SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "gray": ("gray", {}),
    "blur3": ("blur", {"ksize": 3}),
    "blur5": ("blur", {"ksize": 5}),
    "bgr": ("channels", {"order": "BGR"}),
    "brg": ("channels", {"order": "BRG"}),
    "sp0.0005": ("salt_pepper", {"amount": 0.0005}),
    "sp0.005": ("salt_pepper", {"amount": 0.005}),
}
"""The seed paper's seven settings: name -> (kind, parameters)."""

SEVERITIES: dict[str, tuple[str, tuple[float, ...]]] = {
    "gaussian_noise": ("sigma", (8, 16, 24, 32, 48)),
    "gaussian_blur": ("sigma", (0.5, 1.0, 1.5, 2.0, 3.0)),
    "contrast": ("factor", (0.75, 0.5, 0.35, 0.2, 0.1)),
    "brightness": ("offset", (16, 32, 48, 64, 96)),
    "jpeg": ("quality", (75, 50, 30, 15, 5)),
    "occlusion": ("fraction", (0.1, 0.2, 0.3, 0.4, 0.5)),
}
"""Severity sweeps: kind -> (parameter name, values for severities 1 to 5)."""


@dataclass(frozen=True)
class Perturbation:
    """One named setting: a kind of perturbation with fixed parameters.

    Calling it with an image and an integer ``key`` returns the perturbed image; random kinds
    draw from ``np.random.default_rng([key, stable_hash(name)])``.
    """

    name: str
    kind: str
    params: dict = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise UsageError(f"kind must be one of {sorted(_KINDS)}, got {self.kind!r}")

    @property
    def random(self) -> bool:
        """Whether the output depends on ``key``."""
        return _KINDS[self.kind][1]

    def __call__(self, image: np.ndarray, key: int) -> np.ndarray:
        """Perturb one uint8 (H, W, 3) image; ``key`` (a non-negative int) seeds random kinds."""
        _check_image(image)
        key = _check_key(key)
        function, takes_rng = _KINDS[self.kind]
        if takes_rng:
            rng = np.random.default_rng([key, stable_hash(self.name)])
            return function(image, rng=rng, **self.params)
        return function(image, **self.params)


def _build_registry() -> dict[str, Perturbation]:
    registry = {"clean": Perturbation("clean", "clean", {})}
    for name, (kind, params) in PAPER_SETTINGS.items():
        registry[name] = Perturbation(name, kind, dict(params))
    for kind, (param, values) in SEVERITIES.items():
        for severity, value in enumerate(values, start=1):
            name = f"{kind}-{severity}"
            registry[name] = Perturbation(name, kind, {param: value})
    return registry


PERTURBATIONS: dict[str, Perturbation] = _build_registry()
"""Every setting by its stable name: "clean", the paper's set, and "<kind>-<1..5>"."""


def paper_set() -> list[str]:
    """The seed paper's seven settings, in its order: gray, blur3, blur5, bgr, brg, sp0.0005, sp0.005."""
    return list(PAPER_SETTINGS)


def apply(name: str, images: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Apply setting ``name`` to a batch: uint8 (N, H, W, 3) images, one integer key each.

    Image ``i`` is perturbed exactly as ``PERTURBATIONS[name](images[i], keys[i])``, so the
    result does not depend on how the validation set is batched, ordered or sharded.
    """
    if not isinstance(name, str) or name not in PERTURBATIONS:
        raise UsageError(f"name must be one of {sorted(PERTURBATIONS)}, got {name!r}")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
            or images.shape[3] != 3:
        shape = getattr(images, "shape", None)
        dtype = getattr(images, "dtype", type(images).__name__)
        raise UsageError(f"images must be a uint8 array of shape (N, H, W, 3), "
                         f"got dtype {dtype} shape {shape}")
    keys = np.asarray(keys)
    if keys.ndim != 1 or len(keys) != len(images) or not (
            np.issubdtype(keys.dtype, np.integer) or len(keys) == 0):
        raise UsageError(f"keys must be a 1-D integer array of length {len(images)}, "
                         f"got dtype {keys.dtype} shape {keys.shape}")
    if len(keys) and keys.min() < 0:
        raise UsageError(f"keys must be non-negative, got minimum {keys.min()}")
    perturbation = PERTURBATIONS[name]
    out = np.empty_like(images)
    for i, (image, key) in enumerate(zip(images, keys)):
        out[i] = perturbation(image, int(key))
    return out


CLEAN = "clean"  # the unperturbed images: a setting name, never a perturbation
_SWEEP = re.compile(r"^(?P<kind>.+)-(?P<severity>[1-9]\d*)$")


# -- setting names and their order ----------------------------------------------------------


def setting_kind(name: str) -> tuple[str, int | None]:
    """(kind, severity) of a setting name: ``gaussian_noise-3`` → (gaussian_noise, 3);
    a setting outside a sweep has severity None and its registered kind (or its name)."""
    m = _SWEEP.match(name)
    if m:
        return m["kind"], int(m["severity"])
    p = PERTURBATIONS.get(name)
    return (p.kind if p else name), None


def order_settings(names: list[str]) -> list[str]:
    """Clean first, then the registry's order (the paper's set, then the sweeps), then others by name."""
    known = list(PERTURBATIONS)
    return sorted(set(names), key=lambda s: (s != CLEAN, known.index(s) if s in known else len(known), s))
