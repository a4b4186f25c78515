import os
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edvis.data import load_images, open_dataset
from edvis.export import ParityError, check_parity, export_run, sha256_file
from edvis.models import ModelConfig, Uint8Input, build_model
from edvis.run import CHECKPOINT_SCHEMA, Run, RunError, save_checkpoint
from tests.conftest import flip


def _fake_run(root, num_classes=20, epochs=(1, 2), seed=0, name="edvis-resnet18"):
    """A run folder holding checkpoints of randomly initialised (BN statistics perturbed) models."""
    run = Run(root)
    mc = ModelConfig(num_classes=num_classes, variant="paper", name=name)
    for e in epochs:
        torch.manual_seed(seed + e)
        model = build_model(mc)
        with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode is really exercised
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
        run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(run.checkpoint(e), {"schema": CHECKPOINT_SCHEMA, "epoch": e, "model_config": mc.to_dict(),
                                            "model": model.state_dict()})
    return run


@pytest.fixture(scope="module")
def real_images(tiny_subset_root):
    ds = open_dataset(tiny_subset_root)
    return load_images([s.path for s in ds.val[:16]])


def test_export_names_axes_and_parity_on_random_and_real_images(tmp_path, real_images):
    run = _fake_run(tmp_path)
    assert export_run(tmp_path, check_images=real_images) == [1, 2]
    model = onnx.load(str(run.onnx(1)))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["logits", "maps", "layer.conv1", "layer.layer1", "layer.layer2",
                                                    "layer.layer3", "layer.layer4", "layer.expand", "layer.up1"]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    info = run.read_export_record(1)
    assert info["sha256"] == sha256_file(run.onnx(1))
    assert info["parity"]["real_maps_max_abs"] <= 1e-3

    # Independent check: onnxruntime on a batch of 5 real images vs the checkpoint in PyTorch.
    session = ort.InferenceSession(str(run.onnx(2)), providers=["CPUExecutionProvider"])
    logits, maps = session.run(["logits", "maps"], {"images": real_images[:5]})
    assert maps.shape == (5, 20, 8, 8)
    ckpt = torch.load(run.checkpoint(2), weights_only=False)
    m = build_model(ckpt["model_config"])
    m.load_state_dict(ckpt["model"])
    m.eval()
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    x = (torch.from_numpy(real_images[:5]).permute(0, 3, 1, 2).float() / 255 - torch.tensor(cfg.mean).view(1, 3, 1, 1)) \
        / torch.tensor(cfg.std).view(1, 3, 1, 1)
    with torch.no_grad():
        want_logits, want_maps = m(x)
    np.testing.assert_allclose(logits, want_logits.numpy(), atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(maps, want_maps.numpy(), atol=1e-4, rtol=1e-3)
    # The exposed layers are what the model's own submodules compute.
    (layer4,) = session.run(["layer.layer4"], {"images": real_images[:5]})
    with torch.no_grad():
        want_layer4 = m.encoder(x)  # (5, 512, 2, 2)
        want_expand = m.decoder.expand(want_layer4)
    np.testing.assert_allclose(layer4, want_layer4.numpy(), atol=1e-4, rtol=1e-3)
    (expand,) = session.run(["layer.expand"], {"images": real_images[:5]})
    np.testing.assert_allclose(expand, want_expand.numpy(), atol=1e-4, rtol=1e-3)


def test_up_to_date_exports_are_skipped_and_stale_ones_redone(tmp_path):
    run = _fake_run(tmp_path, num_classes=4)
    export_run(tmp_path)
    assert export_run(tmp_path) == []
    _fake_run(tmp_path, num_classes=4, epochs=(2,), seed=10)  # epoch 2 retrained
    assert export_run(tmp_path) == [2]
    assert run.onnx_epochs() == [1, 2]




def test_a_damaged_onnx_file_is_exported_again_from_its_sound_checkpoint(tmp_path):
    run = _fake_run(tmp_path, num_classes=4, epochs=(1,))
    export_run(tmp_path)
    good = run.onnx(1).read_bytes()
    flip(run.onnx(1))
    with pytest.raises(RunError, match=re.escape(f"ONNX file {run.onnx(1)} is damaged")):
        run.read_onnx(1)
    assert export_run(tmp_path) == [1]
    assert run.read_onnx(1)[0] == good  # the same bytes again (the export is deterministic)


def test_a_damaged_checkpoint_is_refused_naming_it_and_train(tmp_path):
    run = _fake_run(tmp_path, num_classes=4, epochs=(1,))
    flip(run.checkpoint(1))
    with pytest.raises(RunError, match=re.escape(f"checkpoint {run.checkpoint(1)} is damaged")) as e:
        export_run(tmp_path)
    assert "`edvis train`" in str(e.value)
    assert run.onnx_epochs() == []


def test_a_checkpoint_changed_in_place_is_exported_again(tmp_path):
    # Same size, same mtime, other weights: the digest, not the stamp, says it changed.
    run = _fake_run(tmp_path, num_classes=4, epochs=(1,))
    export_run(tmp_path)
    st = run.checkpoint(1).stat()
    _fake_run(tmp_path, num_classes=4, epochs=(1,), seed=10)
    os.utime(run.checkpoint(1), ns=(st.st_atime_ns, st.st_mtime_ns))
    assert run.checkpoint(1).stat().st_size == st.st_size
    assert export_run(tmp_path) == [1]


def test_parity_check_fails_for_a_different_model(tmp_path):
    run = _fake_run(tmp_path, num_classes=4, epochs=(1,))
    export_run(tmp_path)
    torch.manual_seed(123)
    other = Uint8Input(build_model({"num_classes": 4, "variant": "paper"}), (0.5,) * 3, (0.25,) * 3).eval()
    with pytest.raises(ParityError, match="differ"):
        check_parity(other, run.onnx(1), 64)


def test_no_checkpoints_is_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="no checkpoints"):
        export_run(tmp_path)


def test_cam_baseline_exports_the_same_outputs_with_its_own_map_size(tmp_path, real_images):
    run = _fake_run(tmp_path, num_classes=5, epochs=(1,), name="cam-resnet18")
    export_run(tmp_path, check_images=real_images)
    model = onnx.load(str(run.onnx(1)))
    assert [o.name for o in model.graph.output] == ["logits", "maps", "layer.conv1", "layer.layer1",
                                                    "layer.layer2", "layer.layer3", "layer.layer4"]
    session = ort.InferenceSession(str(run.onnx(1)), providers=["CPUExecutionProvider"])
    logits, maps = session.run(["logits", "maps"], {"images": real_images[:3]})
    assert logits.shape == (3, 5) and maps.shape == (3, 5, 2, 2)  # 64 px / 32
    # The CAM includes the class bias, so its spatial mean is the logit, inside the graph too.
    np.testing.assert_allclose(maps.mean(axis=(2, 3)), logits, atol=1e-4, rtol=1e-4)


def _torchvision_run(root, arch, size=64, classes=3):
    """A run of one randomly initialised torchvision model (BatchNorm statistics perturbed)."""
    from tests.bench.bench_torchvision import torchvision_run

    return torchvision_run(root, arch, size, classes)


# Three families (a plain head, a moved head, squeeze-excitation blocks) with their taps here; the
# other families' parity below; all eleven models of docs/own-model.md in tests/bench/bench_torchvision.py.
@pytest.mark.parametrize("arch, taps", [
    ("resnet18", ["relu", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]),
    ("mobilenet_v3_small", ["features.0.2", "features.1", "features.3", "features.8", "features.12.2"]),
    ("efficientnet_b0", ["features.1.0", "features.2.1", "features.3.1", "features.5.2", "features.8.2"]),
])
def test_torchvision_models_export_cam_maps_and_stage_taps_with_parity(tmp_path, real_images, arch, taps):
    run, model = _torchvision_run(tmp_path, arch)
    export_run(tmp_path, check_images=real_images)
    session = ort.InferenceSession(str(run.onnx(1)), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "maps", *(f"layer.{t}" for t in taps)]
    assert session.get_outputs()[1].shape[1:] == [3, 2, 2]  # static: the renderer reads the map size from it
    logits, maps, *layers = session.run(None, {"images": real_images[:3]})
    assert logits.shape == (3, 3) and maps.shape == (3, 3, 2, 2)
    np.testing.assert_allclose(maps.mean(axis=(2, 3)), logits, atol=1e-4, rtol=1e-4)  # CAM identity in the graph
    # Against torchvision's modules run by hand in PyTorch: the last tap is the feature map's source.
    x = Uint8Input(model, model.config.mean, model.config.std).normalise(torch.from_numpy(real_images[:3]))
    with torch.no_grad():
        want_logits, want_maps = model(x)
    np.testing.assert_allclose(logits, want_logits.numpy(), atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(maps, want_maps.numpy(), atol=1e-4, rtol=1e-3)
    sides = [a.shape[-1] for a in layers]
    assert sides == sorted(sides, reverse=True) and len(set(sides)) == len(sides)  # one tap per resolution
    assert sides[-1] == 2  # the last one at the maps' resolution
    p = run.read_export_record(1)["parity"]
    assert p["real_maps_max_abs"] <= 1e-3 and p["random_logits_max_abs"] <= 1e-3


@pytest.mark.parametrize("arch", ["regnet_y_400mf", "mobilenet_v2", "convnext_tiny", "densenet121"])
def test_every_other_family_exports_with_parity(tmp_path, real_images, arch):
    """RegNet, MobileNetV2, ConvNeXt (LayerNorm2d moved ahead of the pooling) and DenseNet
    (functional ReLU before the pooling): the ONNX file's logits and maps equal PyTorch's."""
    run, model = _torchvision_run(tmp_path, arch)
    export_run(tmp_path, check_images=real_images)
    session = ort.InferenceSession(str(run.onnx(1)), providers=["CPUExecutionProvider"])
    logits, maps = session.run(["logits", "maps"], {"images": real_images[:3]})
    x = Uint8Input(model, model.config.mean, model.config.std).normalise(torch.from_numpy(real_images[:3]))
    with torch.no_grad():
        want_logits, want_maps = model(x)
    np.testing.assert_allclose(logits, want_logits.numpy(), atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(maps, want_maps.numpy(), atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(maps.mean(axis=(2, 3)), logits, atol=1e-4, rtol=1e-4)  # CAM identity in the graph
    assert run.read_export_record(1)["parity"]["real_maps_max_abs"] <= 1e-3
