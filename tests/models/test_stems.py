"""The stem and decoder options of the edvis network: shapes, the class maps' structure, old
configs, pretrained weights and the ONNX export."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from edvis.cli import main
from edvis.data import write_dataset
from edvis.export import export_run
from edvis.models import DECODERS, STEMS, ModelConfig, build_model, load_pretrained
from edvis.run import CHECKPOINT_SCHEMA, Run, check_model_config, save_checkpoint

# At 64 px: encoder cells 2, 4, 8 (strides 32, 16, 8), edvis maps four times that.
MAP_SIDE = {"paper": 8, "nopool": 16, "cifar": 32}


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("decoder", DECODERS)
def test_each_stem_and_decoder_gives_its_map_size_and_logits_are_the_maps_mean(stem, decoder):
    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=3, stem=stem, decoder=decoder)
    model = build_model(cfg).eval()
    with torch.no_grad():
        logits, maps = model(torch.randn(2, 3, 64, 64))
    side = MAP_SIDE[stem]
    assert cfg.map_size == side
    assert maps.shape == (2, 3, side, side) and logits.shape == (2, 3)
    # The mean over the side² cells, summed in float64 by hand.
    by_hand = maps.double().sum(dim=(2, 3)) / side**2
    assert torch.allclose(logits.double(), by_hand, rtol=0, atol=1e-6)
    assert (maps >= 0).all()


@pytest.mark.parametrize("stem", STEMS)
def test_the_cam_baseline_keeps_the_encoders_cells(stem):
    cfg = ModelConfig(num_classes=4, name="cam-resnet18", stem=stem)
    with torch.no_grad():
        _, maps = build_model(cfg).eval()(torch.randn(1, 3, 64, 64))
    assert cfg.map_size == MAP_SIDE[stem] // 4 and maps.shape == (1, 4, cfg.map_size, cfg.map_size)


def test_stems_change_only_conv1_and_the_pool():
    paper, nopool, cifar = (build_model(ModelConfig(num_classes=2, stem=s)).encoder for s in ("paper", "nopool", "cifar"))
    assert isinstance(paper[3], nn.MaxPool2d) and isinstance(nopool[3], nn.Identity) and isinstance(cifar[3], nn.Identity)
    assert paper[0].kernel_size == nopool[0].kernel_size == (7, 7) and paper[0].stride == (2, 2)
    assert cifar[0].kernel_size == (3, 3) and cifar[0].stride == (1, 1) and cifar[0].padding == (1, 1)


def test_resize_decoder_upsamples_by_nearest_then_a_3x3_convolution_grouped_last():
    dec = build_model(ModelConfig(num_classes=5, decoder="resize")).decoder
    for block, groups in ((dec.up1, 1), (dec.up2, 5)):
        assert isinstance(block[0], nn.Upsample) and block[0].mode == "nearest" and block[0].scale_factor == 2
        conv = block[1]
        assert type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
        assert conv.groups == groups and conv.bias is None
        assert isinstance(block[2], nn.BatchNorm2d) and isinstance(block[3], nn.ReLU)
    assert type(dec.expand[3]) is nn.Dropout and type(dec.up1[4]) is nn.Dropout and len(dec.up2) == 4


def test_author_variant_keeps_its_norm_and_dropout_with_the_resize_decoder():
    dec = build_model(ModelConfig(num_classes=5, variant="author", decoder="resize")).decoder
    assert isinstance(dec.expand[1], nn.InstanceNorm2d) and dec.expand[1].affine
    assert type(dec.expand[3]) is nn.Dropout2d and type(dec.up1[4]) is nn.Dropout2d


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_class_map_is_its_own_channel_through_the_last_layer_computed_by_hand(decoder):
    """The last layer's input channel k alone makes map k: changing channel j ≠ k leaves map k
    bit-for-bit unchanged, and map k is what a one-channel convolution of channel k gives."""
    torch.manual_seed(0)
    c = 4
    model = build_model(ModelConfig(num_classes=c, stem="nopool", decoder=decoder)).eval()
    up2 = model.decoder.up2
    with torch.no_grad():
        bn = up2[-2]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        h = torch.rand(1, c, 8, 8)  # what up1 hands to the group convolution
        base = up2(h)
        bumped = h.clone()
        bumped[0, 2] += torch.rand(8, 8) * 5  # class 2's channel only
        out = up2(bumped)
        assert torch.equal(out[0, [0, 1, 3]], base[0, [0, 1, 3]])
        assert not torch.equal(out[0, 2], base[0, 2])
        conv = up2[-3]
        for k in range(c):
            x = h[:, k:k + 1]
            if decoder == "resize":
                x = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # nearest ×2
                y = F.conv2d(x, conv.weight[k:k + 1], padding=1)
            else:
                y = F.conv_transpose2d(x, conv.weight[k:k + 1], stride=2, padding=1)
            y = (y - bn.running_mean[k]) / torch.sqrt(bn.running_var[k] + bn.eps) * bn.weight[k] + bn.bias[k]
            assert torch.allclose(base[0, k], y[0, 0].clamp(min=0), atol=1e-5)


def test_a_config_from_before_the_options_builds_the_papers_network_and_keeps_its_dict():
    old = {"num_classes": 6, "name": "edvis-resnet18", "variant": "paper", "dropout": 0.3, "image_size": 64,
           "mean": [0.4802, 0.4481, 0.3975], "std": [0.2302, 0.2265, 0.2262]}
    cfg = ModelConfig.from_dict(old)
    assert (cfg.stem, cfg.decoder, cfg.map_size) == ("paper", "transposed", 8)
    # The same dict back: a checkpoint written before the options compares equal to a new one.
    check_model_config(old, cfg.to_dict(), "ckpt", "the run")
    assert set(cfg.to_dict()) == set(old)
    state = build_model(old).state_dict()
    assert state["encoder.0.weight"].shape == (64, 3, 7, 7)
    assert state["decoder.up1.0.weight"].shape == (6, 6, 4, 4)  # ConvTranspose2d(C, C, 4)
    assert state["decoder.up2.0.weight"].shape == (6, 1, 4, 4)  # groups = C
    assert "encoder.3.weight" not in state  # index 3, the max-pool, has no weights
    # A non-default option is recorded.
    assert ModelConfig(num_classes=6, stem="nopool", decoder="resize").to_dict()["stem"] == "nopool"
    assert ModelConfig.from_dict(ModelConfig(num_classes=6, stem="cifar").to_dict()).stem == "cifar"


def test_bad_options_are_refused_naming_them():
    with pytest.raises(ValueError, match="stem must be one of"):
        ModelConfig(num_classes=3, stem="wide")
    with pytest.raises(ValueError, match="decoder must be one of"):
        ModelConfig(num_classes=3, decoder="bilinear")
    with pytest.raises(ValueError, match="cam-resnet18 has no decoder"):
        ModelConfig(num_classes=3, name="cam-resnet18", decoder="resize")
    with pytest.raises(ValueError, match="torchvision:resnet18 keeps its own"):
        ModelConfig(num_classes=3, name="torchvision:resnet18", stem="nopool")


def test_train_flags_reach_the_run_and_a_bad_one_is_one_line(tmp_path, capsys):
    data = write_dataset(tmp_path / "data", classes=2, seed=0, train_per_class=2, val_per_class=1)
    def argv(run):
        return ["train", "--data", str(data), "--run", str(run), "--device", "cpu", "--epochs", "1", "--workers", "0"]

    run = tmp_path / "run"
    assert main([*argv(run), "--stem", "nopool", "--decoder", "resize"]) == 0
    err = capsys.readouterr().err
    assert "stem=nopool, variant=paper, dropout=0.3, decoder=resize, image_size=64, maps=16x16" in err
    model = json.loads((run / "config.json").read_text())["model"]
    assert (model["stem"], model["decoder"]) == ("nopool", "resize")
    # Without the flags nothing new is recorded: the config a run had before the options existed.
    assert main(argv(tmp_path / "plain")) == 0
    assert "stem" not in json.loads((tmp_path / "plain" / "config.json").read_text())["model"]
    capsys.readouterr()
    assert main([*argv(tmp_path / "bad"), "--stem", "wide"]) == 2
    assert capsys.readouterr().err.startswith("edvis: error: --stem: invalid choice: 'wide'")


def test_pretrained_weights_fill_the_cifar_stem_except_conv1(tmp_path):
    torch.manual_seed(1)
    src = resnet18(weights=None)
    path = tmp_path / "r18.pt"
    torch.save(src.state_dict(), path)
    model = build_model(ModelConfig(num_classes=3, stem="cifar"))
    conv1_before = model.encoder[0].weight.detach().clone()
    said = load_pretrained(model, str(path))
    assert said == f"{path} (conv1 left at its initialisation: the cifar stem's conv1 is (64, 3, 3, 3), " \
                   "the weights' (64, 3, 7, 7))"
    assert torch.equal(model.encoder[0].weight, conv1_before)
    assert torch.equal(model.encoder[1].weight, src.bn1.weight)
    assert torch.equal(model.encoder[7][1].conv2.weight, src.layer4[1].conv2.weight)
    nopool = build_model(ModelConfig(num_classes=3, stem="nopool"))
    assert load_pretrained(nopool, str(path)) == str(path)
    assert torch.equal(nopool.encoder[0].weight, src.conv1.weight)


@pytest.mark.parametrize(("stem", "decoder"), [("nopool", "resize"), ("cifar", "transposed")])
def test_export_parity_for_the_options(tmp_path, stem, decoder):
    mc = ModelConfig(num_classes=3, stem=stem, decoder=decoder)
    torch.manual_seed(0)
    model = build_model(mc)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode is exercised
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    run = Run(tmp_path)
    run.checkpoint_dir.mkdir(parents=True)
    save_checkpoint(run.checkpoint(1), {"schema": CHECKPOINT_SCHEMA, "epoch": 1, "model_config": mc.to_dict(),
                                        "model": model.state_dict()})
    assert export_run(tmp_path) == [1]
    images = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    session = ort.InferenceSession(str(run.onnx(1)), providers=["CPUExecutionProvider"])
    logits, maps, up1 = session.run(["logits", "maps", "layer.up1"], {"images": images})
    side = MAP_SIDE[stem]
    assert maps.shape == (2, 3, side, side) and up1.shape == (2, 3, side // 2, side // 2)
    mean, std = torch.tensor(mc.mean).view(1, 3, 1, 1), torch.tensor(mc.std).view(1, 3, 1, 1)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        want_logits, want_maps = model.eval()(x)
    np.testing.assert_allclose(maps, want_maps.numpy(), atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(logits, want_logits.numpy(), atol=1e-4, rtol=1e-3)
