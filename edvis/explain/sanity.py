"""``edvis explain --sanity``: the maps the sanity checks of explanations compare. torch.

Two checks, on a few seeded validation images (clean), at the final epoch's checkpoint (a copy in
memory: the file is only read):

* cascading model-parameter randomisation (Adebayo et al., 2018): from the last layer down, one
  more layer re-initialised at each step, and at each step every method's map of the true class
  and the model's own map. A method whose maps stay alike while the weights that made the
  prediction are gone explains something other than the model.
* the random-logit test (Sixt et al., 2020): the map of the true class against that of a random
  other class, on the trained network. A method whose two maps are alike does not tell the
  classes apart.

No similarity is computed here; the analysis (numpy) reads the file.

```
RUN/explain/sanity.npz      written with its digest (RUN/explain/sanity.npz.sha256)
```

| array              | dtype   | shape               | meaning                                      |
| ------------------ | ------- | ------------------- | -------------------------------------------- |
| `index`            | int64   | (K,)                | the validation indices of the images         |
| `labels`           | int64   | (K,)                | their true classes                           |
| `other_class`      | int64   | (K,)                | a random class other than the true one, each |
| `maps`             | float16 | (M, T + 1, K, S, S) | map of the true class, per method and step   |
| `other_class_maps` | float16 | (M, K, S, S)        | map of ``other_class`` (step ``original``)   |
| `meta`             | str     | ()                  | JSON, see below                              |

``meta``: format (``SANITY_FORMAT``), epoch, checkpoint_sha256, methods (the M names: the
methods asked for, then ``own``, the model's own map), steps (``original``, then the layers in the
order they were re-initialised), layer (the methods' target layer), map_size (S), images (K), seed
and init. S is the side of the model's own maps; a method's map of another resolution (another
``--layer``) is resized to it bilinearly (``torch.nn.functional.interpolate``, align_corners
False). Maps are raw, as in the explanation stores (``edvis.explain.cams``).

Re-initialisation (``init``): every weight of the step's module with two or more dimensions
(convolutions, transposed convolutions, the classifier) is drawn from a normal distribution with
mean 0 and standard deviation sqrt(2 / fan), fan being the product of all its dimensions but the
first (Kaiming's normal initialisation), from ``torch.Generator`` seeded with
``seed * 1000 + step``; biases and the normalisation layers' scales and shifts keep their values.
The random other classes are drawn with ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edvis.data import image_subset
from edvis.explain.cams import METHODS, Explainer, check_method, layer_path
from edvis.explain.stage import decode, image_batch, load_model
from edvis.models import ModelConfig
from edvis.run import IntegrityError, RenderStore, Run, RunError, StoreError, digest, read_sanity, write_sanity

log = logging.getLogger(__name__)

SANITY_FORMAT = 1
SANITY_IMAGES = 8
OWN = "own"  # the model's own map, beside the methods
INIT = "kaiming-normal weights (fan = all dimensions but the first), seed * 1000 + step; 1-D parameters kept"
# The cascade, from the last layer down: (step name, submodule path).
CASCADE: dict[str, list[tuple[str, str]]] = {
    "edvis-resnet18": [("up2", "decoder.up2"), ("up1", "decoder.up1"), ("expand", "decoder.expand"),
                       ("layer4", "encoder.7"), ("layer3", "encoder.6"), ("layer2", "encoder.5"),
                       ("layer1", "encoder.4"), ("conv1", "encoder.0")],
    "cam-resnet18": [("fc", "fc"), ("layer4", "encoder.7"), ("layer3", "encoder.6"), ("layer2", "encoder.5"),
                     ("layer1", "encoder.4"), ("conv1", "encoder.0")],
}


def cascade(model_name: str, image_size: int) -> list[tuple[str, str]]:
    """The cascade of ``model_name``: :data:`CASCADE`'s, or for a torchvision model its classifier
    then its taps (``edvis.models.torchvision_taps``) from the last down."""
    if model_name.startswith("torchvision:"):
        from edvis.models import torchvision_taps

        return [("fc", "fc"), *reversed(torchvision_taps(model_name, image_size))]
    return CASCADE[model_name]


def sanity_path(run: Run) -> Path:
    return run.sanity_path


def randomise(module: nn.Module, seed: int) -> None:
    """Re-draw ``module``'s weights of two or more dimensions (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() >= 2:
                std = math.sqrt(2.0 / p[0].numel())
                p.copy_(torch.randn(p.shape, generator=generator) * std)


def sanity_run(run_dir: str | Path, methods: Sequence[str] = METHODS, layer: str | None = None,
               images: int = SANITY_IMAGES, seed: int = 0, batch_size: int | None = None,
               device: str | torch.device = "cpu", data_root: str | Path | None = None) -> Path | None:
    """Write ``RUN/explain/sanity.npz`` for the final checkpoint; None when it is up to date."""
    run = Run(Path(run_dir))
    methods = [check_method(m) for m in methods]
    model_name = run.read_config()["model"].get("name", "edvis-resnet18")
    image_size = int(run.read_config()["model"].get("image_size", 64))
    layer_name, _ = layer_path(model_name, layer, image_size)
    steps = cascade(model_name, image_size)
    epochs = run.checkpoint_epochs()
    if not epochs:
        raise RunError(f"no checkpoints in {run.checkpoint_dir} (run `edvis train` first)")
    manifest = RenderStore(run.render_dir).manifest()
    index = image_subset(np.asarray(manifest["val"]["labels"], np.int64), images, seed)
    meta = {"format": SANITY_FORMAT, "epoch": epochs[-1], "checkpoint_sha256": digest.recorded_digest(run.checkpoint(epochs[-1])),
            "methods": [*methods, OWN], "steps": ["original"] + [name for name, _ in steps],
            "layer": layer_name, "images": len(index), "seed": seed, "init": INIT}
    if _up_to_date(sanity_path(run), meta):
        log.info(f"explain: sanity checks of epoch {epochs[-1]} up to date ({sanity_path(run)})")
        return None
    device = torch.device(device)
    clean, labels = decode(run, manifest, index, data_root)
    wrapped, meta["checkpoint_sha256"] = load_model(run, epochs[-1], device)
    size = ModelConfig.from_dict(run.read_config()["model"]).map_size
    meta["map_size"] = size
    rng = np.random.default_rng(seed)
    classes = int(run.read_config()["model"]["num_classes"])
    if classes < 2:
        raise RunError(f"{run.root}: the random-logit test needs two classes or more, the model has {classes}")
    other = np.array([rng.choice([c for c in range(classes) if c != t]) for t in labels], np.int64)
    x = wrapped.normalise(torch.from_numpy(clean).to(device))
    maps = np.zeros((len(methods) + 1, len(meta["steps"]), len(index), size, size), np.float16)
    others = np.zeros((len(methods) + 1, len(index), size, size), np.float16)
    start = last = time.monotonic()
    for t, step in enumerate(meta["steps"]):
        if t:
            randomise(wrapped.model.get_submodule(dict(steps)[step]), seed * 1000 + t)
        for m, method in enumerate([*methods, OWN]):
            maps[m, t] = _maps(wrapped.model, model_name, method, layer_name, x, labels, size, batch_size or 64)
            if t == 0:
                others[m] = _maps(wrapped.model, model_name, method, layer_name, x, other, size, batch_size or 64)
        now = time.monotonic()
        # Step 0 computes every map twice (the true class and another), each later step once.
        left = (len(meta["steps"]) - 1 - t) * (now - last) / (2 if t == 0 else 1)
        last = now
        log.info(f"explain: sanity step {t}/{len(meta['steps']) - 1} ({step}) done, {now - start:.0f}s, "
                 f"{left:.0f}s left")
    arrays = {"index": index, "labels": labels, "other_class": other, "maps": maps, "other_class_maps": others}
    write_sanity(sanity_path(run), arrays, meta)
    log.info(f"explain: sanity checks of epoch {epochs[-1]}: {len(methods) + 1} maps × {len(meta['steps'])} steps × "
             f"{len(index)} images → {sanity_path(run)}")
    return sanity_path(run)


def _maps(model: nn.Module, model_name: str, method: str, layer: str, x: torch.Tensor, classes: np.ndarray,
          size: int, batch: int) -> np.ndarray:
    """Raw maps (K, size, size) of ``classes`` by ``method`` (``own``: the model's maps)."""
    if method == OWN:
        with torch.no_grad():
            own = model(x)[1]
        out = own[torch.arange(len(x), device=own.device), torch.as_tensor(classes, device=own.device)]
    else:
        explainer = Explainer(model, model_name, method, layer, batch_size=batch)
        step = image_batch(method, batch)
        try:
            out = torch.from_numpy(np.concatenate([explainer.maps(x[i : i + step], classes[i : i + step])
                                                   for i in range(0, len(x), step)]))
        finally:
            explainer.close()
    if out.shape[-1] != size:
        out = F.interpolate(out[:, None].float(), size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return out.detach().cpu().numpy().astype(np.float16)


def _up_to_date(path: Path, meta: dict[str, Any]) -> bool:
    """Whether ``path`` was written for the same checkpoint, methods, steps, images and seed."""
    try:
        have = read_sanity(path, keys=()).meta
    except (FileNotFoundError, IntegrityError, StoreError):
        return False
    return all(have.get(k) == v for k, v in meta.items())
