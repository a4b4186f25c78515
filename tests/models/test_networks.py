import urllib.error

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from edvis.models import (
    ModelConfig,
    PretrainedError,
    Uint8Input,
    build_model,
    load_pretrained,
)


@pytest.mark.parametrize("variant", ["paper", "author"])
def test_shapes_and_logits_are_map_means(variant):
    torch.manual_seed(0)
    model = build_model({"num_classes": 7, "variant": variant}).eval()
    x = torch.randn(3, 3, 64, 64)
    logits, maps = model(x)
    assert maps.shape == (3, 7, 8, 8)
    assert logits.shape == (3, 7)
    # logits are the global average of the maps: compare with an explicit sum / 64
    assert torch.allclose(logits, maps.sum(dim=(2, 3)) / 64, atol=1e-6)
    assert (maps >= 0).all()  # the last layer is a ReLU


def test_variants_use_the_layers_their_sources_name():
    paper = build_model(ModelConfig(num_classes=5, variant="paper"))
    author = build_model(ModelConfig(num_classes=5, variant="author"))
    assert isinstance(paper.decoder.expand[1], nn.BatchNorm2d)
    assert isinstance(author.decoder.expand[1], nn.InstanceNorm2d) and author.decoder.expand[1].affine
    assert type(paper.decoder.expand[3]) is nn.Dropout and type(paper.decoder.up1[3]) is nn.Dropout
    assert type(author.decoder.expand[3]) is nn.Dropout2d and type(author.decoder.up1[3]) is nn.Dropout2d
    for m in (paper, author):
        assert m.decoder.up1[0].groups == 1
        assert m.decoder.up2[0].groups == 5


def test_each_class_map_sees_only_its_own_channel():
    torch.manual_seed(0)
    model = build_model({"num_classes": 6}).eval()
    h = torch.rand(1, 6, 4, 4)  # what up1 hands to the group convolution
    base = model.decoder.up2(h)
    bumped = h.clone()
    bumped[0, 2] += 5.0  # change class 2's channel only
    out = model.decoder.up2(bumped)
    changed = (out - base).abs().flatten(2).amax(2)[0]
    assert changed[2] > 0
    assert torch.equal(changed[[0, 1, 3, 4, 5]], torch.zeros(5))


def test_uint8_wrapper_normalises_like_the_training_transform():
    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=4)
    model = build_model(cfg).eval()
    images = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    by_hand = (images.permute(0, 3, 1, 2).float() / 255 - mean) / std
    got = Uint8Input(model, cfg.mean, cfg.std)(images)
    want = model(by_hand)
    assert torch.allclose(got[0], want[0], atol=1e-5) and torch.allclose(got[1], want[1], atol=1e-5)


def test_config_round_trips_and_rejects_bad_values():
    cfg = ModelConfig(num_classes=3, variant="paper")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="variant"):
        ModelConfig(num_classes=3, variant="nope")
    with pytest.raises(ValueError, match="image_size"):
        ModelConfig(num_classes=3, image_size=50)


def test_map_size_follows_each_model():
    assert ModelConfig(num_classes=3).map_size == 8  # encoder /32, decoder ×4
    assert ModelConfig(num_classes=3, name="cam-resnet18").map_size == 2  # layer4 features, /32
    assert ModelConfig(num_classes=3, name="cam-resnet18", image_size=128).map_size == 4
    with pytest.raises(ValueError, match="model name"):
        ModelConfig(num_classes=3, name="vgg")


def test_cam_equals_class_weighted_sum_of_layer4_features():
    torch.manual_seed(0)
    model = build_model({"num_classes": 3, "name": "cam-resnet18"}).eval()
    with torch.no_grad():
        model.fc.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))  # a bias that shows up if mishandled
    features = {}
    model.encoder[7].register_forward_hook(lambda m, i, out: features.setdefault("layer4", out.detach()))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, maps = model(x)
    f = features["layer4"].numpy()  # (2, 512, 2, 2)
    w, b = model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy()  # (3, 512), (3,)
    # Zhou et al. eq. 6, M_c(x, y) = sum_k w_k^c f_k(x, y), plus the class bias.
    want = np.einsum("ck,bkyx->bcyx", w.astype(np.float64), f.astype(np.float64)) + b[None, :, None, None]
    assert maps.shape == (2, 3, 2, 2)
    np.testing.assert_allclose(maps.numpy(), want, rtol=1e-4, atol=1e-4)
    # The classifier on globally averaged features; equals the maps' spatial mean.
    want_logits = f.astype(np.float64).mean(axis=(2, 3)) @ w.T.astype(np.float64) + b
    np.testing.assert_allclose(logits.numpy(), want_logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(maps.mean(dim=(2, 3)).numpy(), want_logits, rtol=1e-4, atol=1e-4)


def _resnet18_state(seed=0, num_classes=1000):
    torch.manual_seed(seed)
    return resnet18(weights=None, num_classes=num_classes).state_dict()


@pytest.mark.parametrize("name", ["edvis-resnet18", "cam-resnet18"])
def test_pretrained_path_fills_every_encoder_tensor(tmp_path, name):
    state = _resnet18_state(seed=1, num_classes=10)  # fc of another size: ignored
    state["bn1.running_mean"] = torch.linspace(-1, 1, 64)  # buffers are copied too
    path = tmp_path / "r18.pt"
    torch.save(state, path)
    torch.manual_seed(0)
    model = build_model({"num_classes": 4, "name": name})
    assert load_pretrained(model, str(path)) == str(path)
    enc = model.encoder
    # The encoder is torchvision's stem and four stages, in this order.
    parts = {"conv1": enc[0], "bn1": enc[1], "layer1": enc[4], "layer2": enc[5], "layer3": enc[6], "layer4": enc[7]}
    compared = 0
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "fc":
            continue
        assert torch.equal(parts[head].state_dict()[rest], value), key
        compared += 1
    assert compared == len(enc.state_dict()) == 120  # 20 convs, 20 BN × 5 tensors


def test_pretrained_mismatch_names_the_file_and_the_key(tmp_path):
    model = build_model({"num_classes": 4})
    missing = _resnet18_state()
    del missing["layer2.0.downsample.1.weight"]
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(PretrainedError, match=r"missing\.pt.*layer2\.0\.downsample\.1\.weight"):
        load_pretrained(model, str(tmp_path / "missing.pt"))
    wrong = _resnet18_state()
    wrong["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(PretrainedError,
                       match=r"wrong\.pt: conv1\.weight has shape \(64, 3, 3, 3\), ResNet-18 needs \(64, 3, 7, 7\)"):
        load_pretrained(model, str(tmp_path / "wrong.pt"))
    foreign = {**_resnet18_state(), "layer5.0.weight": torch.zeros(1)}
    torch.save(foreign, tmp_path / "foreign.pt")
    with pytest.raises(PretrainedError, match=r"foreign\.pt: not a torchvision ResNet-18 state dict.*layer5\.0\.weight"):
        load_pretrained(model, str(tmp_path / "foreign.pt"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(PretrainedError, match=r"junk\.pt"):
        load_pretrained(model, str(tmp_path / "junk.pt"))
    with pytest.raises(PretrainedError, match=r"absent\.pt is not a file"):
        load_pretrained(model, str(tmp_path / "absent.pt"))


def test_pretrained_imagenet_without_network_names_the_cause(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty cache
    asked = []

    def offline(request, *args, **kwargs):
        asked.append(getattr(request, "full_url", request))
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    with pytest.raises(PretrainedError) as info:
        load_pretrained(build_model({"num_classes": 4}), "imagenet")
    msg = str(info.value)
    assert asked == [ResNet18_Weights.IMAGENET1K_V1.url]  # through torchvision's weights API
    assert "--pretrained imagenet: cannot fetch" in msg and "Temporary failure in name resolution" in msg
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in msg and "--pretrained PATH" in msg


@pytest.mark.parametrize("what", ["module", "text", "empty"])
def test_pretrained_unreadable_file_is_one_line_naming_it(tmp_path, what):
    """A pickled module (refused by weights-only loading, whose message spans many lines with
    terminal colour codes), a text file, an empty file: one line, naming the file and the cause."""
    path = tmp_path / f"{what}.pt"
    if what == "module":
        torch.save(nn.Linear(2, 2), path)
    else:
        path.write_text("hello\n" if what == "text" else "")
    with pytest.raises(PretrainedError) as info:
        load_pretrained(build_model({"num_classes": 4}), str(path))
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message and len(message) < 400, message
    assert message.startswith(f"--pretrained: cannot read a state dict from {path}: ")
    cause = message.removeprefix(f"--pretrained: cannot read a state dict from {path}: ")
    assert cause.strip()  # says something
    if what == "module":
        assert "torch.nn.modules.linear.Linear" in cause and "state_dict()" in cause
