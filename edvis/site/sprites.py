"""Sprite sheets and map data files: ``data/<key>.png`` and ``data/<key>.js`` of a :class:`Pack`.

A pack's sprite sheet holds its validation images in a grid of ten columns (a perturbation
pack's odd cells perturbed as they were rendered); its data file the maps as base64 uint8 with
the predictions behind them. Images are decoded once and kept while pages other than the class
pages share them.

Sheets of images at most ``SPRITE_MAX_PX`` are lossless PNG: exactly the pixels the renderer
read (the Try it page feeds them to the model). Larger images are reduced to fit a cell, so
their pixels are not the model's input anyway, and their sheets are JPEG (``data/<key>.jpg``,
quality 90, no chroma subsampling): a class sheet of 50 photographs at 128 px weighs 0.44 MB
instead of 1.80 MB as PNG, which would take a class page past 2 MB (docs/site.md).
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edvis.data import PERTURBATIONS, apply
from edvis.site.read_run import Dataset
from edvis.site.views import Pack
from edvis.site.writing import Writer, building

SPRITE_COLUMNS = 10  # Tiny ImageNet has 50 validation images per class: a 10 x 5 sheet
MAP_ALPHA = 0.5
# Side of an image in a sprite sheet at most: the largest canvas that shows one (TILE_PX). Larger
# images are reduced (Lanczos) to this, so a 224-px class sheet weighs what a 128-px one does.
SPRITE_MAX_PX = 128


def sprite_px(image_size: int) -> int:
    """Side of one image in the sprite sheets of a site whose images are ``image_size`` px."""
    return min(image_size, SPRITE_MAX_PX)


def reduce_images(pixels: np.ndarray, side: int) -> np.ndarray:
    """(K, H, W, 3) uint8 images resized to side × side (unchanged when already that size)."""
    if pixels.shape[1:3] == (side, side):
        return pixels
    return np.stack([np.asarray(Image.fromarray(p).resize((side, side), Image.Resampling.LANCZOS)) for p in pixels])


class Images:
    """Validation images, decoded on demand (and kept, except for class sprites)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.cache: dict[int, np.ndarray] = {}

    def load(self, i: int, keep: bool = True) -> np.ndarray:
        if i in self.cache:
            return self.cache[i]
        from edvis.data import load_image  # lazily: only the sprites need the image decoder

        image = load_image(Path(self.dataset.root) / self.dataset.files[i], size=self.dataset.image_size)
        if keep:
            self.cache[i] = image
        return image


def sprite_pixels(pack: Pack, images: Images) -> np.ndarray:
    """(K, H, W, 3) uint8: the pack's images; a perturbation pack's odd cells perturbed."""
    keep = not pack.key[:1].isdigit()  # class sprites are read once; other pages share images
    pixels = np.stack([images.load(i, keep=keep) for i in pack.cells])
    name = pack.perturbation
    if name and name in PERTURBATIONS:  # an unknown setting (from another edvis) keeps the originals
        n = images.dataset.num_val
        keys = np.asarray([pack.perturbation_seed * n + i for i in pack.cells[1::2]], dtype=np.int64)
        pixels[1::2] = apply(name, pixels[1::2], keys)  # as rendered: key seed * N + i
    return pixels


def sprite_ext(image_size: int) -> str:
    """The sprite sheets' format for a site of ``image_size``-px images: png, or jpg when reduced."""
    return "png" if image_size <= SPRITE_MAX_PX else "jpg"


def sheet_png(pixels: np.ndarray, columns: int, fmt: str = "png") -> bytes:
    """Images (K, H, W, 3) in a grid of ``columns`` columns, as PNG bytes (``fmt`` jpg: JPEG)."""
    n, h, w = pixels.shape[:3]
    cols = max(1, min(n, columns))
    rows = max(1, math.ceil(n / cols))
    sheet = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = pixels[i]
    out = io.BytesIO()
    if fmt == "jpg":
        Image.fromarray(sheet).save(out, format="JPEG", quality=90, subsampling=0)
    else:
        Image.fromarray(sheet).save(out, format="PNG", compress_level=3)  # optimize=True: 5x the time, 1% smaller
    return out.getvalue()


def pack_data(pack: Pack, image_size: int) -> dict[str, Any]:
    """The data object of ``data/<key>.js``."""
    data: dict[str, Any] = {
        "epochs": pack.epochs,
        "map_size": int(pack.maps.shape[-1]),
        "image_size": image_size,  # the pixel grid of boxes and peaks
        "sprite_px": sprite_px(image_size),  # an image's side in the sprite sheet
        "columns": SPRITE_COLUMNS,
        "alpha": MAP_ALPHA,
        "sprite": pack.sprite_id,
        "shape": list(pack.maps.shape),
        "maps": base64.b64encode(np.ascontiguousarray(pack.maps).tobytes(order="C")).decode("ascii"),
        **pack.extra,
    }
    if pack.perturbation is not None:
        data["perturbation"] = pack.perturbation
    if pack.pred is not None and pack.prob is not None:
        data["pred"] = pack.pred.tolist()
        data["prob"] = [[round(float(p), 4) for p in row] for row in pack.prob]  # as Tile.prob
    if pack.truth is not None:
        data["truth"] = pack.truth
    if pack.files is not None:
        data["files"] = pack.files
    return data


def write_pack(writer: Writer, pack: Pack, images: Images) -> None:
    """``data/<key>.png`` (the sprite sheet; ``.jpg`` for reduced images) and ``data/<key>.js`` (the
    maps), for one data object; sets the pack's ``sprite_ext``, which its page's links follow."""
    pack.sprite_ext = sprite_ext(images.dataset.image_size)
    if pack.has_sprite:
        with building(writer.path(pack.sprite)):  # a validation image that cannot be read names the sheet
            pixels = reduce_images(sprite_pixels(pack, images), sprite_px(images.dataset.image_size))
            writer.file(pack.sprite, sheet_png(pixels, SPRITE_COLUMNS, pack.sprite_ext))
    with building(writer.path(pack.js)):
        writer.data(pack.key, pack_data(pack, images.dataset.image_size), pack.js)
