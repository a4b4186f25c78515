"""The explanation methods side by side with the model's own maps, on the class pages and the
galleries: one row per image, the image, the model's map of its true class and each method's.

The methods' maps come from ``RUN/explain/<method>/`` (:func:`edvis.site.read_compare.read_methods`)
at the final epoch, each at its own resolution: the rows cover only images that every method
explained (``edvis explain --images K`` explains a seeded subset), and a page shows none when no
image of it was explained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edvis.site.text import class_name
from edvis.site.views import Pack, Tile

if TYPE_CHECKING:
    from edvis.site.read_compare import Model
    from edvis.site.read_run import Dataset



@dataclass(frozen=True)
class MethodsRow:
    """One image: the image alone, the model's own map of its true class, then each method's."""

    index: int
    file: str
    image: Tile
    tiles: list[Tile]


def covered_by_all(methods: list[Model], num_val: int) -> np.ndarray:
    """(N,) bool: the validation images every one of ``methods`` (map sources) has a map of (all of
    them without methods, or for sources that cover every image)."""
    ok = np.ones(num_val, bool)
    for m in methods:
        if m.covered is not None:
            ok &= m.covered
    return ok


def method_rows(ds: Dataset, methods: list[Model], images: list[int], host: str, cell_of: Callable[[int], int],
                own: Callable[[int], Tile], epoch: int) -> tuple[list[MethodsRow], list[Pack]]:
    """The rows of ``images`` (validation indices) and the data objects of their method maps.

    ``host`` is the page's data object whose sprite sheet holds each image at ``cell_of(i)``;
    ``own(i)`` is the tile of the model's own true-class map of image ``i`` at ``epoch``. The methods' maps go
    into one data object per map size, ``<host>-m<S>``, sharing the host's sprite sheet.
    """
    if not methods or not images:
        return [], []
    sizes = sorted({m.map_size for m in methods})
    keys = {s: f"{host}-m{s}" for s in sizes}
    members = {s: [m for m in methods if m.map_size == s] for s in sizes}
    packs = [Pack(key=keys[s], epochs=[epoch], sprite_key=host,
                  maps=np.stack([m.maps[i] for m in members[s] for i in images])[:, None])
             for s in sizes]
    rows = []
    for j, i in enumerate(images):
        truth = ds.truth(i)
        image = Tile(host, None, cell_of(i), 0, alt=f"{ds.files[i]}, true class {truth}", label=truth)
        tiles = [own(i)]
        for m in methods:
            seq = members[m.map_size].index(m) * len(images) + j
            tiles.append(Tile(keys[m.map_size], seq, cell_of(i), 0, label=m.label,
                              alt=f"{ds.files[i]}, true class {truth}: {m.label}'s map of "
                                  f"{class_name(ds.names, int(ds.labels[i]))} at epoch {epoch}"))
        rows.append(MethodsRow(i, ds.files[i], image, tiles))
    return rows, packs
