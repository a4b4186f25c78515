"""torchvision classifiers as (logits, maps) networks: the head found from the model, CAM identity,
refusals, map sizes and pretrained weights."""

import urllib.error

import pytest
import torch
from torch import nn
from torchvision.models import MobileNet_V3_Small_Weights, get_model

from edvis.errors import UsageError
from edvis.models import ModelConfig, PretrainedError, build_model, load_pretrained

# The smallest model of each family, and the torchvision net whose logits they must reproduce.
PLAIN_HEADS = ["resnet18", "regnet_y_400mf", "mobilenet_v2", "efficientnet_b0", "densenet121"]
MOVED_HEADS = ["mobilenet_v3_small", "convnext_tiny"]  # a per-position part before the last linear layer


def _perturb_bn(model):
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode is really exercised
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)


def _pair(arch, classes=4):
    """The edvis model of ``arch`` and torchvision's own net holding the same weights."""
    torch.manual_seed(0)
    model = build_model({"num_classes": classes, "name": f"torchvision:{arch}", "image_size": 64})
    _perturb_bn(model)
    try:
        with torch.device("meta"):  # no initialisation: every tensor is assigned below
            net = get_model(arch, weights=None, num_classes=classes)
    except NotImplementedError:  # RegNet's builder reads tensor values
        net = get_model(arch, weights=None, num_classes=classes)
    wanted = {**{k: v for k, v in model.body.state_dict().items()},
              **{f"{p}.{k}": v for p, m in zip(model.paths["moved"], model.moved) for k, v in m.state_dict().items()},
              **{f"{model.paths['fc']}.{k}": v for k, v in model.fc.state_dict().items()}}
    # Every torchvision tensor has its counterpart (strict).
    net.load_state_dict({k: v.clone() for k, v in wanted.items()}, strict=True, assign=True)
    return model.eval(), net.eval()


@pytest.mark.parametrize("arch", PLAIN_HEADS)
def test_pooled_linear_heads_give_torchvision_logits_and_maps_whose_mean_is_them(arch):
    model, net = _pair(arch)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, maps = model(x)
        want = net(x)
    assert maps.shape == (2, 4, 2, 2)  # 64 px / 32
    torch.testing.assert_close(logits, want, atol=1e-5, rtol=1e-4)  # torchvision's own forward
    torch.testing.assert_close(maps.sum(dim=(2, 3)) / 4, logits, atol=1e-5, rtol=1e-4)  # the CAM identity


@pytest.mark.parametrize("arch", MOVED_HEADS)
def test_moved_heads_apply_torchvision_classifier_at_each_position(arch):
    model, net = _pair(arch)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, maps = model(x)
        f = net.features(x)  # (2, K, 2, 2): what torchvision pools
        for y in range(2):
            for xx in range(2):
                cell = f[:, :, y:y + 1, xx:xx + 1]  # one position, as a pooled (B, K, 1, 1) tensor
                head = net.classifier(cell if arch == "convnext_tiny" else cell.flatten(1))
                torch.testing.assert_close(maps[:, :, y, xx], head, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(maps.mean(dim=(2, 3)), logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch, why", [
    ("vit_b_16", "between its last linear layer heads.head and a global average pooling stands getitem"),
    ("squeezenet1_0", "its output is not a linear layer"),
    ("alexnet", "stands AdaptiveAvgPool2d (avgpool)"),  # a 6×6 pooling, not a global one
])
def test_models_without_a_pooled_linear_head_are_refused_naming_them(arch, why):
    with pytest.raises(UsageError) as info:
        build_model({"num_classes": 3, "name": f"torchvision:{arch}", "image_size": 64})
    msg = str(info.value)
    assert msg.startswith(f"--model torchvision:{arch}: ") and why in msg and "\n" not in msg


def test_unknown_torchvision_names_and_too_small_images_are_usage_errors():
    with pytest.raises(UsageError, match=r"--model torchvision:resnet19: torchvision has no classification model"):
        ModelConfig(num_classes=3, name="torchvision:resnet19")
    with pytest.raises(UsageError, match=r"--image-size 64: too small for torchvision:inception_v3"):
        ModelConfig(num_classes=3, name="torchvision:inception_v3", image_size=64).map_size  # noqa: B018


@pytest.mark.parametrize("arch, size, side", [
    ("resnet18", 224, 7), ("resnet18", 200, 7), ("efficientnet_b0", 224, 7), ("densenet121", 96, 3),
    ("convnext_tiny", 128, 4), ("mobilenet_v2", 64, 2),
])
def test_map_size_is_the_last_feature_maps_side(arch, size, side):
    # Five stride-2 steps (ConvNeXt: a stride-4 stem and three stride-2 ones), each rounding up:
    # 224 → 7, 200 → 100, 50, 25, 13, 7; 96 → 3; 128 → 4.
    assert ModelConfig(num_classes=3, name=f"torchvision:{arch}", image_size=size).map_size == side


def test_any_image_size_builds_maps_of_that_side():
    model = build_model({"num_classes": 3, "name": "torchvision:resnet18", "image_size": 200}).eval()
    with torch.no_grad():
        logits, maps = model(torch.randn(1, 3, 200, 200))
    assert maps.shape == (1, 3, 7, 7) and logits.shape == (1, 3)


def test_taps_are_the_end_of_each_resolution():
    model = build_model({"num_classes": 3, "name": "torchvision:resnet18", "image_size": 64})
    assert [name for name, _ in model.taps()] == ["relu", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    assert all(path == f"body.{name}" for name, path in model.taps())


def test_pretrained_path_loads_a_torchvision_state_dict_and_a_fitting_classifier(tmp_path):
    torch.manual_seed(1)
    imagenet = get_model("mobilenet_v3_small", weights=None)  # 1000 classes
    torch.save(imagenet.state_dict(), tmp_path / "in1k.pt")
    model = build_model({"num_classes": 5, "name": "torchvision:mobilenet_v3_small", "image_size": 64})
    fc_before = model.fc.weight.clone()
    said = load_pretrained(model, str(tmp_path / "in1k.pt"))
    assert said == f"{tmp_path / 'in1k.pt'} (classifier classifier.3 left at its initialisation: 5 classes)"
    assert torch.equal(model.body.get_submodule("features.0.0").weight, imagenet.features[0][0].weight)
    assert torch.equal(model.moved[0].weight, imagenet.classifier[0].weight)  # the moved hidden layer
    assert torch.equal(model.fc.weight, fc_before)

    five = get_model("mobilenet_v3_small", weights=None, num_classes=5)
    torch.save({f"module.{k}": v for k, v in five.state_dict().items()}, tmp_path / "five.pt")  # a DDP save
    assert load_pretrained(model, str(tmp_path / "five.pt")).endswith("(classifier included)")
    assert torch.equal(model.fc.weight, five.classifier[3].weight)

    torch.save(get_model("mobilenet_v2", weights=None).state_dict(), tmp_path / "v2.pt")
    with pytest.raises(PretrainedError, match=r"v2\.pt: not a torchvision mobilenet_v3_small state dict \(missing"):
        load_pretrained(model, str(tmp_path / "v2.pt"))


def test_pretrained_imagenet_offline_is_one_line_naming_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty cache
    asked = []

    def offline(request, *args, **kwargs):
        asked.append(getattr(request, "full_url", request))
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    model = build_model({"num_classes": 4, "name": "torchvision:mobilenet_v3_small", "image_size": 64})
    with pytest.raises(PretrainedError) as info:
        load_pretrained(model, "imagenet")
    msg = str(info.value)
    assert asked == [MobileNet_V3_Small_Weights.DEFAULT.url]  # torchvision's weights API, its DEFAULT
    assert msg.startswith("--pretrained imagenet: cannot fetch torchvision MobileNet_V3_Small_Weights.IMAGENET1K_V1")
    assert "Temporary failure in name resolution" in msg and "\n" not in msg


class _FunctionalDropoutNet(nn.Module):
    """A pooled linear head whose dropout is the functional F.dropout, not a module."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(self.conv(x), 1), 1)
        return self.fc(nn.functional.dropout(x, 0.3, self.training))


def test_a_functional_dropout_in_the_head_is_applied_in_training_and_not_in_eval():
    from edvis.models import TorchvisionCam

    torch.manual_seed(0)
    config = ModelConfig(name="torchvision:resnet18", num_classes=4, image_size=32)
    model = TorchvisionCam(config, _FunctionalDropoutNet())
    x = torch.rand(2, 3, 32, 32)
    f = model.body(x)  # the traced net cut at the pooling: the conv
    pooled = f.mean(dim=(2, 3))
    torch.manual_seed(1)
    logits, _ = model.train()(x)
    torch.manual_seed(1)
    want = model.fc(nn.functional.dropout(pooled, 0.3, True))  # the same mask: the same generator state
    assert torch.allclose(logits, want)
    assert not torch.allclose(logits, model.fc(pooled))  # the trace did not fix dropout off
    logits, maps = model.eval()(x)
    assert torch.allclose(logits, model.fc(pooled)) and torch.allclose(maps.mean(dim=(2, 3)), logits, atol=1e-6)


def test_the_last_tap_is_the_feature_map_the_maps_are_made_of():
    # DenseNet ends its features with a functional ReLU: the last tap is after it, not norm5's output.
    model = build_model({"num_classes": 3, "name": "torchvision:densenet121", "image_size": 64}).eval()
    name, path = model.taps()[-1]
    assert (name, path) == ("features.norm5+relu", "body")
    seen = {}
    model.get_submodule(path).register_forward_hook(lambda m, a, out: seen.setdefault("f", out))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        _, maps = model(x)
    f = seen["f"]
    assert f.min() >= 0  # after the ReLU
    cam = torch.einsum("ck,bkhw->bchw", model.fc.weight, f) + model.fc.bias[:, None, None]
    torch.testing.assert_close(cam, maps)
