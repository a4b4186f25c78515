import pytest
import torch
from torch import nn

from edvis.model import ModelConfig, Uint8Input, build_model


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
