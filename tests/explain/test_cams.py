"""The wiring of the standard methods: what pytorch-grad-cam and torch-cam compute on known networks.

The edvis network's logit of class c is the spatial mean of its map c, so at the map layer
(``maps``, the output of ``decoder.up2``) the gradient of logit c is 1/S² on channel c and zero
elsewhere: Grad-CAM's channel weights are (1/S²)·onehot(c) and its raw map is map_c / S².
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edvis.errors import UsageError
from edvis.explain import LAYERS, METHODS, Explainer, layer_path
from edvis.export import TAPS
from edvis.models import CamNet, ModelConfig, build_model


def _net(name: str = "edvis-resnet18", classes: int = 4, seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(num_classes=classes, name=name)).eval()
    x = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(seed + 1))
    return model, x


def test_grad_cam_on_the_map_layer_is_the_models_own_map_up_to_a_positive_factor():
    """Where the model's map is above 1e-6, raw Grad-CAM / own map is one constant > 0 (1/64 at
    8×8) to a relative 1e-4; where the map is zero, so is Grad-CAM (to 1e-7)."""
    model, x = _net()
    classes = np.array([0, 1, 2, 3, 1])
    explainer = Explainer(model, "edvis-resnet18", "gradcam")
    cam = explainer.maps(x, classes)
    explainer.close()
    with torch.no_grad():
        own = model(x)[1][torch.arange(5), torch.as_tensor(classes)].numpy()
    assert cam.shape == own.shape == (5, 8, 8)
    live = own > 1e-6
    assert live.sum() > 20 and (~live).sum() > 0  # both cases are checked
    ratio = cam[live] / own[live]
    assert ratio.min() > 0
    np.testing.assert_allclose(ratio, np.median(ratio), rtol=1e-4)
    np.testing.assert_allclose(np.median(ratio), 1 / 64, rtol=1e-4)
    assert np.abs(cam[~live]).max() < 1e-7


def test_grad_cam_of_another_class_is_not_this_classs_map():
    """The check above can fail: the map of a class is not that of another one."""
    model, x = _net()
    explainer = Explainer(model, "edvis-resnet18", "gradcam")
    cam = explainer.maps(x, np.zeros(5, int))
    explainer.close()
    with torch.no_grad():
        own = model(x)[1][:, 1].numpy()
    live = own > 1e-6
    ratio = cam[live] / own[live]
    assert not np.allclose(ratio, np.median(ratio), rtol=1e-2)


def test_the_baselines_in_graph_cam_is_torch_cams_cam():
    """CamNet's maps minus its fc bias, Σ_k w_k^c f_k, against torchcam.methods.CAM at layer4
    (``encoder.7``) with the fc weights. torchcam's CAM applies no ReLU (``_relu`` is False for
    CAM) and its min-max normalisation is switched off (``normalized=False``), so like is compared
    with like, within 1e-5."""
    torchcam = pytest.importorskip("torchcam.methods")
    model, x = _net("cam-resnet18", classes=6)
    assert isinstance(model, CamNet)
    classes = [0, 5, 2, 3, 1]
    with torch.no_grad():
        maps = model(x)[1]
    ours = (maps - model.fc.bias[None, :, None, None])[torch.arange(5), torch.as_tensor(classes)]
    with torchcam.CAM(model, target_layer="encoder.7", fc_layer="fc", input_shape=(3, 64, 64)) as extractor:
        with torch.no_grad():
            model(x)
        theirs = extractor(class_idx=classes, normalized=False)[0]
    assert theirs.shape == ours.shape == (5, 2, 2)
    assert (ours < 0).any()  # no ReLU on either side
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert not torch.allclose(maps[torch.arange(5), torch.as_tensor(classes)], theirs, atol=1e-5)  # the bias matters


@pytest.fixture(scope="module")
def nets() -> dict[str, tuple[torch.nn.Module, torch.Tensor]]:
    return {name: _net(name, classes=3) for name in ("edvis-resnet18", "cam-resnet18")}


# (model, --layer, map side); Score-CAM makes one forward pass per channel, so only on layers of
# one channel per class.
CASES = [("edvis-resnet18", None, 8), ("edvis-resnet18", "layer4", 2), ("cam-resnet18", None, 2),
         ("cam-resnet18", "layer3", 4)]
FEW_CHANNELS = [("edvis-resnet18", None, 8), ("edvis-resnet18", "up1", 4)]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_a_finite_raw_map_at_the_layers_resolution(method, nets):
    for name, layer, side in FEW_CHANNELS if method == "scorecam" else CASES:
        model, x = nets[name]
        explainer = Explainer(model, name, method, layer, batch_size=16)
        cam = explainer.maps(x[:2], np.array([0, 2]))
        explainer.close()
        assert cam.shape == (2, side, side) and cam.dtype == np.float32, (name, layer)
        assert np.isfinite(cam).all() and np.abs(cam).max() > 0, (name, layer)
        assert not (np.isclose(cam.max(axis=(1, 2)), 1) & np.isclose(cam.min(axis=(1, 2)), 0)).all()  # not min-max scaled


def test_the_layers_are_exports_taps_and_the_map_layer():
    for name, taps in TAPS.items():
        assert {k: v for k, v in LAYERS[name].items() if k != "maps"} == dict(taps)
    assert LAYERS["edvis-resnet18"]["maps"] == "decoder.up2"
    assert layer_path("cam-resnet18", None) == ("layer4", "encoder.7")


def test_an_unknown_layer_names_the_flag_and_the_valid_names():
    with pytest.raises(UsageError, match=r"--layer must be one of conv1, .*maps.*got 'nope'"):
        layer_path("edvis-resnet18", "nope")
    with pytest.raises(UsageError, match="--layer"):
        layer_path("cam-resnet18", "maps")
