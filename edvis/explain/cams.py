"""The standard methods, as pytorch-grad-cam computes them, at the target layer's own resolution.

| name        | pytorch-grad-cam class | uses                                              |
| ----------- | ---------------------- | ------------------------------------------------- |
| `gradcam`   | `GradCAM`              | gradients, averaged over space                    |
| `gradcam++` | `GradCAMPlusPlus`      | gradients (2nd and 3rd powers)                    |
| `xgradcam`  | `XGradCAM`             | gradients × activations                           |
| `layercam`  | `LayerCAM`             | positive gradients, position by position          |
| `eigencam`  | `EigenCAM`             | the first principal component (no class, no grad) |
| `scorecam`  | `ScoreCAM`             | one forward pass per channel of the layer         |

The raw map. pytorch-grad-cam's ``BaseCAM.compute_cam_per_layer`` takes each method's
``get_cam_image`` (the weighted sum of the layer's activations, (B, h, w)), clips it at zero,
min-max normalises it per image and resizes it to the input (``scale_cam_image``). Every edvis map
is kept as computed (raw, before any normalisation, at its own resolution), so the classes are
subclassed with one change: ``compute_cam_per_layer`` returns ``get_cam_image``'s output of the
single target layer, and ``aggregate_multi_layers`` passes it through. The weights and the maps
are the library's own code; the clipping at zero is left to the reader (``np.maximum(m, 0)``
gives the published methods' maps before scaling), so that a map keeps its sign (EigenCAM's sign
is that of the principal component, as the library computes it).

The networks return ``(logits, maps)``; ``LogitsOnly`` hands pytorch-grad-cam the logits, and
``ClassifierOutputTarget(c)`` picks class ``c``'s logit. The input is the float normalised image
``Uint8Input.normalise`` makes of uint8 pixels, as in the exported graph.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from edvis.errors import UsageError

# The tapped layers of edvis.export.TAPS (name → submodule path), and the model's own map layer.
LAYERS: dict[str, dict[str, str]] = {
    "edvis-resnet18": {"conv1": "encoder.2", "layer1": "encoder.4", "layer2": "encoder.5", "layer3": "encoder.6",
                       "layer4": "encoder.7", "expand": "decoder.expand", "up1": "decoder.up1", "maps": "decoder.up2"},
    "cam-resnet18": {"conv1": "encoder.2", "layer1": "encoder.4", "layer2": "encoder.5", "layer3": "encoder.6",
                     "layer4": "encoder.7"},
}
DEFAULT_LAYER = {"edvis-resnet18": "maps", "cam-resnet18": "layer4"}
METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "eigencam", "scorecam")
CLASS_NAMES = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
               "layercam": "LayerCAM", "eigencam": "EigenCAM", "scorecam": "ScoreCAM"}
CLASS_FREE = ("eigencam",)  # the same map for every class


class LogitsOnly(nn.Module):
    """A ``(logits, maps)`` network seen as a classifier: returns the logits (B, C)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)[0]


def layer_path(model_name: str, layer: str | None, image_size: int = 64) -> tuple[str, str]:
    """(layer name, submodule path) of ``--layer`` (None: the model's default); a UsageError
    naming --layer and the valid names for any other. A torchvision model's layers are its taps
    (``edvis.models.torchvision_taps`` at ``image_size``), the last of them its default."""
    names = LAYERS.get(model_name)
    default = DEFAULT_LAYER.get(model_name)
    if names is None and model_name.startswith("torchvision:"):
        from edvis.models import torchvision_taps

        taps = torchvision_taps(model_name, image_size)
        names, default = dict(taps), taps[-1][0]
    if names is None:
        raise UsageError(f"edvis explain knows no layers of the model {model_name!r}")
    name = default if layer is None else layer
    if name not in names:
        raise UsageError(f"--layer must be one of {', '.join(names)} for {model_name}, got {name!r}")
    return name, names[name]


def check_method(method: str) -> str:
    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)} or all, got {method!r}")
    return method


class _RawMaps:
    """Mixin over a pytorch-grad-cam class: the map of the one target layer as ``get_cam_image``
    returns it, without the library's clipping, min-max normalisation and resize."""

    def compute_cam_per_layer(self, input_tensor: Tensor, targets: list[Any], eigen_smooth: bool) -> list[np.ndarray]:
        acts = [a.cpu().data.numpy() for a in self.activations_and_grads.activations]  # type: ignore[attr-defined]
        grads = [g.cpu().data.numpy() for g in self.activations_and_grads.gradients]  # type: ignore[attr-defined]
        # Score-CAM's masked forward passes add activations later; the first is the input's.
        cam = self.get_cam_image(input_tensor, self.target_layers[0], targets,  # type: ignore[attr-defined]
                                 acts[0], grads[0] if grads else None, eigen_smooth)
        return [np.asarray(cam, dtype=np.float32)]

    def aggregate_multi_layers(self, cam_per_target_layer: list[np.ndarray]) -> np.ndarray:
        return cam_per_target_layer[0]


@functools.cache
def raw_class(method: str) -> type:
    """The pytorch-grad-cam class of ``method`` with the raw-map mixin in front."""
    import pytorch_grad_cam

    base = getattr(pytorch_grad_cam, CLASS_NAMES[check_method(method)])
    return type(f"Raw{base.__name__}", (_RawMaps, base), {})


@contextmanager
def _quiet_score_cam() -> Iterator[None]:
    """Score-CAM draws a tqdm progress bar per image; silence it while it runs."""
    from pytorch_grad_cam import score_cam

    original = score_cam.tqdm
    score_cam.tqdm = types.SimpleNamespace(tqdm=functools.partial(original.tqdm, disable=True))
    try:
        yield
    finally:
        score_cam.tqdm = original


class Explainer:
    """One method on one network's layer: ``maps(x, classes)`` → raw maps (B, h, w) float32."""

    def __init__(self, model: nn.Module, model_name: str, method: str, layer: str | None = None,
                 batch_size: int = 64) -> None:
        self.layer, path = layer_path(model_name, layer, getattr(getattr(model, "config", None), "image_size", 64))
        self.method = check_method(method)
        self.classifier = LogitsOnly(model).eval()
        self.cam = raw_class(method)(self.classifier, [model.get_submodule(path)])
        self.cam.batch_size = batch_size  # Score-CAM: masked images per forward pass

    def logits(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.classifier(x)

    def maps(self, x: Tensor, classes: np.ndarray) -> np.ndarray:
        """Each image's map for its class in ``classes`` (B,) (ignored by class-free methods)."""
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        targets = [ClassifierOutputTarget(int(c)) for c in classes]
        with _quiet_score_cam():
            out = self.cam(x, targets)
        self.cam.activations_and_grads.clear()
        return out

    def close(self) -> None:
        self.cam.activations_and_grads.release()
