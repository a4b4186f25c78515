"""The embedded default dataset: procedurally drawn 64×64 scenes, written in the Tiny ImageNet layout.

It is built to show what edvis is for, not only to exercise the plumbing:

* *colour classes* (red, green, blue, yellow blobs) differ only by hue, so grayscale and channel
  shuffles hurt them, and a BGR shuffle turns one into another;
* *shape classes* (disc, ring, square, diamond, triangle, cross) are drawn in achromatic tones, so
  only shape tells them apart, with two confusable pairs (ring vs disc, square vs diamond) and a
  thin shape (cross) that blur wipes out;
* every object sits at a random place on textured clutter and has a ground-truth box, so a map
  has something to point at.

Every image comes from its own random stream keyed by (seed, split, class, index), so the bytes
of one image do not depend on how many others are drawn. Same seed, same bytes (for one Pillow
version: JPEG encoding is Pillow's).
"""

from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edvis.errors import UsageError
from edvis.run import atomic

SIZE = 64  # default image side, as in Tiny ImageNet
_SS = 4  # supersampling factor for anti-aliased edges

Mask = Callable[[np.ndarray, np.ndarray, float], np.ndarray]  # (u, v, radius) -> bool


@dataclass(frozen=True)
class ClassSpec:
    wnid: str
    name: str
    shape: str  # key into _SHAPES
    hue: float | None  # degrees for colour classes; None → achromatic
    rotation: float  # base rotation in degrees
    jitter: float  # ± random rotation in degrees


# Order matters: the first N are used for `--classes N`, so early ones mix both kinds.
CATALOGUE: tuple[ClassSpec, ...] = (
    ClassSpec("disc", "disc", "disc", None, 0, 0),
    ClassSpec("red-blob", "red blob", "blob", 0, 0, 180),
    ClassSpec("ring", "ring", "ring", None, 0, 0),
    ClassSpec("square", "square", "square", None, 0, 20),
    ClassSpec("green-blob", "green blob", "blob", 120, 0, 180),
    ClassSpec("diamond", "diamond", "square", None, 45, 20),
    ClassSpec("cross", "thin cross", "cross", None, 0, 30),
    ClassSpec("blue-blob", "blue blob", "blob", 225, 0, 180),
    ClassSpec("triangle", "triangle", "triangle", None, 0, 30),
    ClassSpec("yellow-blob", "yellow blob", "blob", 55, 0, 180),
    ClassSpec("bar", "thin bar", "bar", None, 0, 180),
    ClassSpec("magenta-blob", "magenta blob", "blob", 300, 0, 180),
)
MAX_CLASSES = len(CATALOGUE)


def _shape_disc(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    return u**2 + v**2 <= r**2


def _shape_ring(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    d2 = u**2 + v**2
    return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)


def _shape_square(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    return np.maximum(abs(u), abs(v)) <= 0.78 * r


def _shape_triangle(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    # Equilateral, circumradius r, apex up: inside all three edge half-planes.
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
        a = math.radians(90 + 120 * k + 180)  # outward normal of the edge opposite vertex k
        inside &= u * math.cos(a) - v * math.sin(a) <= 0.5 * r
    return inside


def _shape_cross(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    half = 1.6  # pixels: thin, so a 5×5 blur nearly erases it
    return ((abs(u) <= half) | (abs(v) <= half)) & (np.maximum(abs(u), abs(v)) <= r)


def _shape_bar(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    return (abs(v) <= 1.6) & (abs(u) <= 1.1 * r)


def _shape_blob(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    # An ellipse; its aspect comes in through the caller's anisotropic (u, v).
    return u**2 + v**2 <= r**2


_SHAPES: dict[str, Mask] = {
    "disc": _shape_disc,
    "ring": _shape_ring,
    "square": _shape_square,
    "triangle": _shape_triangle,
    "cross": _shape_cross,
    "bar": _shape_bar,
    "blob": _shape_blob,
}


def _smooth_noise(rng: np.random.Generator, cells: int, size: int) -> np.ndarray:
    """(size, size) values in [0, 1]: a coarse random grid, bilinearly upsampled."""
    grid = rng.random((cells + 1, cells + 1))
    t = np.linspace(0, cells, size)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Muted, textured clutter (size, size, 3) float in [0, 255]."""
    h, s, v = rng.random(), rng.uniform(0.05, 0.3), rng.uniform(0.35, 0.65)
    base = np.array(colorsys.hsv_to_rgb(h, s, v)) * 255
    texture = (_smooth_noise(rng, int(rng.integers(3, 9)), size) - 0.5) * rng.uniform(30, 70)
    img = base[None, None, :] + texture[:, :, None]
    # Distractor strokes: short, low-contrast lines in muted colours.
    yy, xx = np.mgrid[0:size, 0:size]
    unit = size / SIZE
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = rng.uniform(0, size, 2)
        ang = rng.uniform(0, math.pi)
        length = rng.uniform(8, 24) * unit
        dx, dy = math.cos(ang), math.sin(ang)
        along = (xx - x0) * dx + (yy - y0) * dy
        across = -(xx - x0) * dy + (yy - y0) * dx
        stroke = (abs(across) <= 0.8) & (along >= 0) & (along <= length)
        col = np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.2, 0.8))) * 255
        img[stroke] = 0.5 * img[stroke] + 0.5 * col
    return img


def _object_colour(spec: ClassSpec, rng: np.random.Generator, bg_mean: float) -> np.ndarray:
    if spec.hue is not None:
        h = ((spec.hue + rng.uniform(-12, 12)) % 360) / 360
        return np.array(colorsys.hsv_to_rgb(h, rng.uniform(0.7, 1.0), rng.uniform(0.65, 1.0))) * 255
    # Achromatic, and always well away from the background's brightness.
    level = rng.uniform(0, 60) if bg_mean > 127 else rng.uniform(195, 255)
    return np.full(3, level)


def draw(
    spec: ClassSpec, rng: np.random.Generator, size: int = SIZE
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One scene: uint8 (size, size, 3) and the object's box (x0, y0, x1, y1), inclusive."""
    img = _background(rng, size)
    r = rng.uniform(9, 15) * size / SIZE
    aspect = rng.uniform(0.6, 1.0) if spec.shape == "blob" else 1.0
    cx, cy = rng.uniform(r + 1, size - 1 - r, 2)
    theta = math.radians(spec.rotation + rng.uniform(-spec.jitter, spec.jitter))
    # Supersampled pixel centres in object coordinates (u along the rotated x axis).
    t = (np.arange(size * _SS) + 0.5) / _SS
    yy, xx = np.meshgrid(t, t, indexing="ij")
    dx, dy = xx - cx, yy - cy
    u = dx * math.cos(theta) + dy * math.sin(theta)
    v = (-dx * math.sin(theta) + dy * math.cos(theta)) / aspect
    fine = _SHAPES[spec.shape](u, v, r)
    cover = fine.reshape(size, _SS, size, _SS).mean(axis=(1, 3))  # (size, size) in [0, 1]
    colour = _object_colour(spec, rng, float(img.mean()))
    img = img * (1 - cover[:, :, None]) + colour[None, None, :] * cover[:, :, None]
    img += rng.normal(0, 5, img.shape)  # sensor noise
    ys, xs = np.nonzero(cover >= 0.5)
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), box


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def write_dataset(
    out: str | Path,
    classes: int = 10,
    seed: int = 0,
    train_per_class: int = 300,
    val_per_class: int = 50,
    size: int = SIZE,
) -> Path:
    """Write the embedded dataset to ``out`` in the Tiny ImageNet layout; returns ``out``.

    Files already present with the right bytes are left alone, so a rerun is cheap and an
    interrupted run resumes; ``wnids.txt`` is written last and marks the dataset complete.
    """
    if not 1 <= classes <= MAX_CLASSES:
        raise UsageError(f"--classes must be between 1 and {MAX_CLASSES}, got {classes}")
    if train_per_class < 1 or val_per_class < 1:
        raise UsageError("--train-per-class and --val-per-class must be at least 1")
    out = Path(out)
    specs = CATALOGUE[:classes]
    for c, spec in enumerate(specs):
        lines = []
        for i in range(train_per_class):
            img, box = draw(spec, np.random.default_rng([seed, 0, c, i]), size)
            name = f"{spec.wnid}_{i}.JPEG"
            _write_if_changed(out / "train" / spec.wnid / "images" / name, _jpeg(img))
            lines.append(f"{name}\t{box[0]}\t{box[1]}\t{box[2]}\t{box[3]}\n")
        _write_if_changed(out / "train" / spec.wnid / f"{spec.wnid}_boxes.txt", "".join(lines).encode())
    # Validation: classes interleaved in a seeded order, as in Tiny ImageNet's val/images.
    order = [(c, i) for c in range(classes) for i in range(val_per_class)]
    perm = np.random.default_rng([seed, 1]).permutation(len(order))
    lines = []
    for k, j in enumerate(perm):
        c, i = order[j]
        img, box = draw(specs[c], np.random.default_rng([seed, 1, c, i]), size)
        name = f"val_{k}.JPEG"
        _write_if_changed(out / "val" / "images" / name, _jpeg(img))
        lines.append(f"{name}\t{specs[c].wnid}\t{box[0]}\t{box[1]}\t{box[2]}\t{box[3]}\n")
    _write_if_changed(out / "val" / "val_annotations.txt", "".join(lines).encode())
    words = "".join(f"{s.wnid}\t{s.name}\n" for s in specs)
    _write_if_changed(out / "words.txt", words.encode())
    _write_if_changed(out / "wnids.txt", "".join(f"{s.wnid}\n" for s in specs).encode())
    return out


def _write_if_changed(path: Path, data: bytes) -> None:
    try:
        if path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    atomic.write_bytes(path, data)
