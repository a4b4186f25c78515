"""``edvis explain``: a standard method's maps for every epoch checkpoint × rendered setting.

```
RUN/explain/<method>/
  manifest.json                the render store's manifest, with map_size = the layer's
                               resolution and the keys method and layer
  <setting>/epoch_NNN.npz      one unit (edvis.run.store), over the images of ``index``
```

A unit holds the arrays of a render unit, computed with PyTorch from the epoch's checkpoint:

| array       | dtype   | shape     | meaning                                                   |
| ----------- | ------- | --------- | --------------------------------------------------------- |
| `probs`     | float16 | (K, C)    | softmax of the logits                                     |
| `top5`      | int16   | (K, 5)    | class indices, most probable first                        |
| `top5_prob` | float32 | (K, 5)    | their probabilities                                       |
| `map_true`  | float16 | (K, S, S) | the method's raw map of the true class (edvis.explain.cams)|
| `map_pred`  | float16 | (K, S, S) | the method's raw map of the top-1 class                   |
| `index`     | int64   | (K,)      | the validation indices (manifest order) of the K images   |
| `meta`      | str     | ()        | JSON, see below                                           |

``meta``: perturbation, epoch, params (of the perturbation), format (``EXPLAIN_FORMAT``), method,
layer, checkpoint_sha256 (the digest of the checkpoint's bytes), images (K) and seed. There is no
``map_top5``. S is the resolution of the layer explained (8 at 64 px for the edvis network's
``maps``, 2 for ``layer4``).

The images: the validation files the render manifest lists, decoded as ``edvis render`` decodes
them, and perturbed as it does: image ``i`` of setting ``s`` with key ``seed * N + i`` (N
validation images), so with the render's ``--seed`` (default 0 for both) they are the very images
rendered. ``images`` None is every validation image, except for ``scorecam`` (one forward pass
per channel of the layer per image and class), whose default is the seeded subset of
``SCORECAM_IMAGES`` images of ``edvis.data.image_subset``; an integer K is that subset of K.

A unit whose meta records the same format, method, layer, checkpoint digest, images and seed is
skipped, so a rerun after one more epoch explains only that epoch.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edvis.data import PERTURBATIONS, apply, image_subset, load_images, open_dataset
from edvis.errors import UsageError
from edvis.explain.cams import CLASS_FREE, Explainer, check_method, layer_path
from edvis.models import Uint8Input, build_model
from edvis.run import (
    DamagedError,
    RenderStore,
    Run,
    RunError,
    StoreError,
    Unit,
    check_model_config,
    digest,
    load_checkpoint,
    select_epochs,
    summarise,
)

log = logging.getLogger(__name__)

EXPLAIN_FORMAT = 1  # version of what an explanation unit holds; units of another are computed again
SCORECAM_IMAGES = 64  # Score-CAM's default subset
SCORECAM_BATCH = 4  # Score-CAM: images at a time (each makes one masked copy per channel)
DEFAULT_BATCH = {"cpu": 64, "cuda": 256}
PROGRESS_S = 30.0  # seconds between progress lines within a unit


@dataclass
class _Plan:
    """What an explanation has to do."""

    run: Run
    manifest: dict[str, Any]  # the render store's
    model_name: str
    method: str
    layer: str
    index: np.ndarray  # (K,) validation indices
    seed: int
    settings: list[str]  # clean first
    epochs: list[int]
    todo: list[Unit]  # epoch-major
    store: RenderStore

    def meta(self, unit: Unit, sha: str | None) -> dict[str, Any]:
        return {"format": EXPLAIN_FORMAT, "method": self.method, "layer": self.layer, "checkpoint_sha256": sha,
                "images": len(self.index), "seed": self.seed, "params": PERTURBATIONS[unit.perturbation].params}


def explain_run(run_dir: str | Path, method: str, layer: str | None = None, images: int | None = None, seed: int = 0,
                batch_size: int | None = None, device: str | torch.device = "cpu", settings: list[str] | None = None,
                data_root: str | Path | None = None, epochs: str | None = None) -> list[Unit]:
    """Compute ``method``'s maps at ``layer`` for every (rendered setting, epoch checkpoint) unit not
    yet up to date in ``RUN/explain/<method>``; returns the units computed. ``settings`` (default:
    every setting the render store records) must have been rendered; ``epochs`` (default all) is a
    spec for :func:`edvis.run.select_epochs`; ``data_root`` is the dataset folder if it moved since
    rendering."""
    plan = _plan(Run(Path(run_dir)), method, layer, images, seed, settings, epochs)
    total = len(plan.epochs) * len(plan.settings)
    if not plan.todo:
        log.info(f"explain: {method}: all {len(plan.epochs)} epochs × {len(plan.settings)} setting(s) up to date")
        return []
    device = torch.device(device)
    batch = batch_size or DEFAULT_BATCH.get(device.type, 64)
    clean, labels = decode(plan.run, plan.manifest, plan.index, data_root)
    keys = plan.seed * len(plan.manifest["val"]["labels"]) + plan.index  # render's noise stream per image
    log.info(f"explain: {method} at layer {plan.layer}: {len(plan.todo)} of {total} unit(s) × {len(plan.index)} images "
             f"on {device}, batch {batch}")
    done: list[Unit] = []
    start = shown = time.monotonic()
    k = len(plan.index)

    def within(unit: Unit, images: int) -> None:
        """A line within a unit every PROGRESS_S (Score-CAM's units take minutes at 224 px)."""
        nonlocal shown
        now = time.monotonic()
        if now - shown < PROGRESS_S or images == k:
            return
        shown = now
        rate = (len(done) * k + images) / (now - start)
        left = ((len(plan.todo) - len(done)) * k - images) / rate
        log.info(f"explain: {method} {unit.key} ({len(done) + 1}/{len(plan.todo)}) {images}/{k} images, "
                 f"{rate:.1f} img/s, {left:.0f}s left")

    for epoch in sorted({u.epoch for u in plan.todo}):
        model, sha = load_model(plan.run, epoch, device)
        explainer = Explainer(model.model, plan.model_name, method, plan.layer, batch_size=batch)
        try:
            for unit in [u for u in plan.todo if u.epoch == epoch]:
                x = clean if unit.perturbation == "clean" else apply(unit.perturbation, clean, keys)
                arrays = explain_images(explainer, model, x, labels, batch, device, partial(within, unit))
                _write(plan, unit, arrays, sha)
                done.append(unit)
                rate = len(done) * len(plan.index) / (time.monotonic() - start)
                left = (len(plan.todo) - len(done)) * len(plan.index) / rate
                log.info(f"explain: {method} {unit.key} ({len(done)}/{len(plan.todo)}) {rate:.1f} img/s, {left:.0f}s left")
                shown = time.monotonic()
        finally:
            explainer.close()
    return done


def _plan(run: Run, method: str, layer: str | None, images: int | None, seed: int,
          settings: list[str] | None, spec: str | None = None) -> _Plan:
    """Read the run, its render manifest and the method's store; list the units not up to date."""
    check_method(method)
    config = run.read_config()
    model_name = config["model"].get("name", "edvis-resnet18")
    layer_name, _ = layer_path(model_name, layer, int(config["model"].get("image_size", 64)))
    epochs = run.checkpoint_epochs()
    if not epochs:
        raise RunError(f"no checkpoints in {run.checkpoint_dir} (run `edvis train` first)")
    epochs = select_epochs(spec, epochs)
    render = RenderStore(run.render_dir)
    manifest = render.manifest()
    rendered = manifest.get("settings") or render.perturbations()  # a render before "settings": its units
    if settings is None:
        names = ["clean"] + sorted(set(rendered) - {"clean"})
    else:
        unknown = [s for s in settings if s not in rendered]
        if unknown:
            raise UsageError(f"--settings: {unknown} were not rendered (rendered: {', '.join(rendered)}); run `edvis render`")
        names = sorted(set(settings), key=lambda s: (s != "clean", s))
    index = _index(np.asarray(manifest["val"]["labels"], np.int64), method, images, seed)
    store = RenderStore(run.explain_dir(method))
    held = _stored_layer(store)
    if held and held != layer_name:
        raise UsageError(f"--layer {layer_name}: {store.root} holds maps of layer {held!r}; "
                         f"pass --layer {held} or delete that folder to explain another layer")
    plan = _Plan(run, manifest, model_name, method, layer_name, index, seed, names, epochs, [], store)
    shas = {e: digest.recorded_digest(run.checkpoint(e)) for e in epochs}
    plan.todo = [u for e in epochs for u in (Unit(s, e) for s in names)
                 if shas[e] is None or held == "" or not _same(_meta_or_none(store, u), plan.meta(u, shas[e]))]
    return plan


def _stored_layer(store: RenderStore) -> str | None:
    """The layer an existing store holds maps of; None without a manifest, "" when it is damaged
    (every unit is then computed again, and the manifest written anew)."""
    if not store.manifest_path.exists():
        return None
    try:
        return store.manifest().get("layer")
    except DamagedError as e:
        log.info(f"explain: {str(e).split(';')[0]}: writing the store again")
        return ""


def _index(labels: np.ndarray, method: str, images: int | None, seed: int) -> np.ndarray:
    """The validation indices a unit covers (see the module docstring)."""
    if images is not None and images < 1:
        raise UsageError(f"--images must be >= 1, got {images}")
    if images is None and method != "scorecam":
        return np.arange(len(labels), dtype=np.int64)
    return image_subset(labels, SCORECAM_IMAGES if images is None else images, seed)


def _meta_or_none(store: RenderStore, unit: Unit) -> dict[str, Any] | None:
    try:
        return store.meta(unit)
    except StoreError as e:  # damaged, foreign or without a digest: computed again
        log.info(f"explain: {str(e).split(';')[0]}: computing it again")
        return None


def _same(have: dict[str, Any] | None, want: dict[str, Any]) -> bool:
    return have is not None and all(have.get(k) == v for k, v in want.items() if k != "params")


def decode(run: Run, manifest: dict[str, Any], index: np.ndarray,
           data_root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validation images ``index`` of the render ``manifest``, uint8 (K, H, W, 3), and their labels
    (K,), from the dataset the render store was rendered from (refused if its fingerprint differs)."""
    dataset = manifest["dataset"]
    root = Path(data_root or dataset["root"])
    if open_dataset(root).fingerprint() != dataset["fingerprint"]:
        raise RunError(f"the dataset at {root} is not the one {run.render_dir} was rendered from; "
                       "pass --data with that dataset")
    files = manifest["val"]["files"]
    clean = load_images([root / files[i] for i in index], size=manifest["image_size"], workers=os.cpu_count() or 1)
    return clean, np.asarray(manifest["val"]["labels"], np.int64)[index]


def load_model(run: Run, epoch: int, device: torch.device) -> tuple[Uint8Input, str]:
    """The epoch's network, wrapped to take uint8 images, in eval mode on ``device``, and the
    digest of the checkpoint's bytes."""
    path = run.checkpoint(epoch)
    ckpt, sha = load_checkpoint(path, with_digest=True)
    mc = ckpt["model_config"]
    check_model_config(mc, run.read_config()["model"], path, f"the run {run.root}")
    model = build_model(mc)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise RunError(f"{path}: its weights do not fit its own model_config: {str(e)[:300]}") from None
    return Uint8Input(model, mc["mean"], mc["std"]).to(device).eval(), sha


def image_batch(method: str, batch: int) -> int:
    """Images per call of a method: ``batch``, but at most SCORECAM_BATCH for Score-CAM."""
    return min(batch, SCORECAM_BATCH) if method == "scorecam" else batch


def explain_images(explainer: Explainer, wrapped: Uint8Input, images: np.ndarray, labels: np.ndarray, batch: int,
                   device: torch.device, on_batch: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """A unit's arrays (but ``index``) for uint8 ``images`` (K, H, W, 3) of classes ``labels`` (K,);
    ``on_batch`` is told the images explained so far after each batch."""
    step = image_batch(explainer.method, batch)
    inputs = [wrapped.normalise(torch.from_numpy(images[i : i + step]).to(device)) for i in range(0, len(images), step)]
    logits = np.concatenate([explainer.logits(x).cpu().numpy() for x in inputs])
    # The predictions exactly as a render unit has them (the maps are placed below).
    out = summarise(logits, np.zeros((*logits.shape, 1, 1), np.float32), labels)
    pred = out["top5"][:, 0].astype(np.int64)
    true_maps, pred_maps = [], []
    for n, x in enumerate(inputs):
        rows = slice(n * step, n * step + len(x))
        mt = explainer.maps(x, labels[rows])
        mp = mt.copy()
        other = np.flatnonzero(pred[rows] != labels[rows])
        if len(other) and explainer.method not in CLASS_FREE:  # where the top-1 class is the true one, it is its map
            mp[other] = explainer.maps(x[torch.as_tensor(other, device=x.device)], pred[rows][other])
        true_maps.append(mt)
        pred_maps.append(mp)
        if on_batch is not None:
            on_batch(rows.start + len(x))
    out["map_true"] = np.concatenate(true_maps).astype(np.float16)
    out["map_pred"] = np.concatenate(pred_maps).astype(np.float16)
    return out


def _write(plan: _Plan, unit: Unit, arrays: dict[str, np.ndarray], sha: str) -> None:
    """Write one unit (creating or extending the store's manifest first)."""
    plan.store.init({**{k: v for k, v in plan.manifest.items() if k != "schema"}, "settings": plan.settings,
                     "map_size": int(arrays["map_true"].shape[-1]), "method": plan.method, "layer": plan.layer})
    plan.store.write(unit, {**arrays, "index": plan.index}, plan.meta(unit, sha))
