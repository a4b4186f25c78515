"""Reader of the render store (``RUN/render/``): the clean units, each perturbed setting, and the
layers files, one unit at a time, keeping only what the pages show.

The clean units become one :class:`CleanRenders` (every validation image's true-class map at
every rendered epoch, as uint8, and its top-1 prediction); a perturbed setting keeps its
accuracy per epoch, its final epoch's per-class accuracy and flips (all from analysis.json),
and the maps of the few rows its page shows (:class:`SettingRenders`); a layers file is handed over one epoch at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edvis.analyze.metrics import topk_correct
from edvis.data import PERTURBATIONS, order_settings
from edvis.run import RenderStore, Unit
from edvis.site.read_analysis import Analysis
from edvis.site.site_error import SiteError

log = logging.getLogger(__name__)

CLEAN = "clean"


def normalise_maps(maps: np.ndarray) -> np.ndarray:
    """Scale each map by its own maximum to 0..255 uint8 (map / max(map)); all-zero stays zero.

    ``maps`` has shape (N, S, S). Negative and non-finite values (which a ReLU output never
    holds) are treated as zero.
    """
    m = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    m = np.maximum(m, 0.0)
    peak = m.max(axis=(1, 2), keepdims=True)
    scaled = np.divide(m, peak, out=np.zeros_like(m), where=peak > 0)
    return np.rint(scaled * 255.0).astype(np.uint8)


def unit_seed(store: RenderStore, unit: Unit) -> int:
    """The seed the unit was rendered with (perturbation keys are seed * N + i); 0 when unknown."""
    meta = store.meta(unit) or {}
    value = meta.get("seed", 0)
    return int(value) if isinstance(value, int) and value >= 0 else 0


@dataclass(eq=False)
class CleanRenders:
    """What the render store says about every clean validation image, one row per epoch."""

    epochs: list[int]
    maps: np.ndarray  # (E, N, S, S) uint8: the true class's map, scaled per map to 0..255
    pred: np.ndarray  # (E, N) top-1 class index
    prob: np.ndarray  # (E, N) top-1 probability
    hit1: np.ndarray  # (E, N) top-1 is the true class
    top5: np.ndarray  # (N, k) at the final epoch
    top5_prob: np.ndarray  # (N, k) at the final epoch
    map_pred: np.ndarray  # (N, S, S) uint8 at the final epoch: the top-1 class's map
    map_top5: np.ndarray | None  # (N, k, S, S) uint8 at the final epoch, when rendered
    seed: int  # the render's seed

    @property
    def final_epoch(self) -> int:
        return self.epochs[-1]


def read_clean(store: RenderStore, epochs: list[int], labels: np.ndarray, map_size: int) -> CleanRenders:
    """Read every clean unit, keeping only what the site shows."""
    n, e_count = len(labels), len(epochs)
    maps = np.zeros((e_count, n, map_size, map_size), dtype=np.uint8)
    pred = np.zeros((e_count, n), dtype=np.int64)
    prob = np.zeros((e_count, n), dtype=np.float64)
    hit1 = np.zeros((e_count, n), dtype=bool)
    final: dict[str, np.ndarray] = {}
    for e, epoch in enumerate(epochs):
        unit = Unit(CLEAN, epoch)
        last = e == e_count - 1
        keys = ("top5", "top5_prob", "map_true") + (("map_pred",) if last else ())
        arrays = store.read(unit, keys, optional=("map_top5",) if last else ())
        top5 = np.asarray(arrays["top5"], dtype=np.int64)
        if top5.shape[0] != n or arrays["map_true"].shape != (n, map_size, map_size):
            raise SiteError(
                f"{store.path(unit)} holds {top5.shape[0]} images of maps "
                f"{arrays['map_true'].shape[1:]}, the manifest {n} of {(map_size, map_size)}"
            )
        maps[e] = normalise_maps(arrays["map_true"])
        pred[e] = top5[:, 0]
        prob[e] = np.asarray(arrays["top5_prob"], dtype=np.float64)[:, 0]
        hit1[e] = topk_correct(top5, labels, 1)
        if last:
            final = arrays
        del arrays
    top5 = np.asarray(final["top5"], dtype=np.int64)
    map_top5 = None
    if "map_top5" in final and final["map_top5"].shape[:2] == top5.shape:
        mt = final["map_top5"]
        map_top5 = normalise_maps(mt.reshape(-1, map_size, map_size)).reshape(mt.shape)
    return CleanRenders(
        epochs=epochs, maps=maps, pred=pred, prob=prob, hit1=hit1, top5=top5,
        top5_prob=np.asarray(final["top5_prob"], dtype=np.float64),
        map_pred=normalise_maps(final["map_pred"]), map_top5=map_top5,
        seed=unit_seed(store, Unit(CLEAN, epochs[-1])),
    )


@dataclass(frozen=True)
class Rows:
    """The validation images a perturbation page shows: random ones, then random flips not among them."""

    random: list[int]
    flips: list[int]

    @property
    def shown(self) -> list[int]:
        return self.random + [i for i in self.flips if i not in self.random]


@dataclass(eq=False)
class SettingRenders:
    """One perturbed setting: accuracy per epoch, flips and per-class top-1 at its final epoch,
    and the shown rows' true-class maps and predictions, clean (even) and perturbed (odd)."""

    name: str
    epochs: list[int]
    top1: list[float]
    top5: list[float]
    class_top1: np.ndarray = field(repr=False)  # (C,) at its final epoch; NaN without images
    flips: dict[str, int]
    rows: Rows
    maps: np.ndarray = field(repr=False)  # (2R, E, S, S) uint8
    pred: np.ndarray = field(repr=False)  # (2R, E)
    prob: np.ndarray = field(repr=False)  # (2R, E)
    seed: int = 0

    @property
    def final_epoch(self) -> int:
        return self.epochs[-1]

    @property
    def known(self) -> bool:
        """edvis.data.perturb can recompute its images."""
        return self.name in PERTURBATIONS


def perturbed_settings(store: RenderStore) -> list[str]:
    """The store's settings other than clean, in the paper's order."""
    return [name for name in order_settings(store.perturbations()) if name != CLEAN]


def read_setting(store: RenderStore, name: str, clean: CleanRenders, labels: np.ndarray, analysis: Analysis,
                 choose: Callable[[np.ndarray], Rows]) -> SettingRenders | None:
    """The setting ``name`` at the epochs that also have a clean unit (None when there is none).

    Its accuracy, flips and per-class top-1 come from ``analysis``; the store gives the shown
    rows' maps and predictions. ``choose`` gets the images whose top-1 flips at its final epoch
    and picks the rows to keep.
    """
    epochs = [e for e in store.epochs(name) if e in clean.epochs]
    if not epochs:
        log.info(f"site: setting {name} has no epoch with a clean unit; left out")
        return None
    log.info(f"site: reading {len(epochs)} unit(s) of {name}")

    def read(epoch: int) -> dict[str, np.ndarray]:
        arrays = store.read(Unit(name, epoch), ("top5", "top5_prob", "map_true"), ())
        if len(arrays["top5"]) != len(labels):
            raise SiteError(f"{store.path(Unit(name, epoch))} holds {len(arrays['top5'])} images, "
                            f"the manifest {len(labels)}")
        return arrays

    final = read(epochs[-1])  # read once: it also serves the last epoch below
    pred_final = np.asarray(final["top5"], dtype=np.int64)[:, 0]
    rows = choose(np.flatnonzero(pred_final != clean.pred[clean.epochs.index(epochs[-1])]))
    idx = np.asarray(rows.shown, dtype=np.int64)
    size = clean.maps.shape[-1]
    maps = np.zeros((2 * len(idx), len(epochs), size, size), dtype=np.uint8)
    pred = np.zeros((2 * len(idx), len(epochs)), dtype=np.int64)
    prob = np.zeros((2 * len(idx), len(epochs)), dtype=np.float64)
    for e, epoch in enumerate(epochs):
        arrays = final if epoch == epochs[-1] else read(epoch)
        ce = clean.epochs.index(epoch)
        maps[0::2, e] = clean.maps[ce, idx]  # clean and perturbed rows interleave
        maps[1::2, e] = normalise_maps(arrays["map_true"][idx])
        pred[0::2, e], pred[1::2, e] = clean.pred[ce, idx], np.asarray(arrays["top5"], dtype=np.int64)[idx, 0]
        prob[0::2, e] = clean.prob[ce, idx]
        prob[1::2, e] = np.asarray(arrays["top5_prob"], dtype=np.float64)[idx, 0]
    top1, top5 = analysis.accuracy_by_epoch(name, epochs)
    return SettingRenders(
        name=name, epochs=epochs, top1=top1, top5=top5,
        class_top1=analysis.class_top1(name, analysis.classes_count(), epochs[-1]),
        flips=analysis.flips(name, epochs[-1]), rows=rows,
        maps=maps, pred=pred, prob=prob, seed=unit_seed(store, Unit(name, epochs[-1])),
    )


@dataclass(frozen=True)
class LayersEpoch:
    """One layers file: the chosen images' indices and every layer's outputs for them."""

    epoch: int
    meta: dict[str, Any]
    index: np.ndarray  # (M,) validation indices
    outputs: list[tuple[str, np.ndarray]]  # (layer key, (M, channels, h, w))


def iter_layers(store: RenderStore, num_val: int) -> Iterator[LayersEpoch]:
    """RUN/render/layers/epoch_NNN.npz in epoch order, one file at a time, checked."""
    for e in store.layer_epochs():
        meta, index, outputs = store.read_layers(e)
        path = store.layers_path(e)
        index = np.asarray(index, dtype=np.int64)
        if len(index) and (index.min() < 0 or index.max() >= num_val):
            raise SiteError(f"{path}: image indices must lie in [0, {num_val}), got {index.min()}..{index.max()}")
        for name, a in outputs:
            if a.ndim != 4 or a.shape[0] != len(index):
                raise SiteError(f"{path}: layer {name} has shape {a.shape}, expected ({len(index)}, channels, h, w)")
        yield LayersEpoch(e, meta, index, outputs)
