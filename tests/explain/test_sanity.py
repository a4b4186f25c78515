"""``edvis explain --sanity`` on the tiny rendered run: the file's arrays, that the cascade changes
the weights it names (and only a copy of them), and that a rerun does nothing."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edvis.cli import main
from edvis.explain import CASCADE, OWN, randomise, sanity_path
from edvis.models import ModelConfig, build_model
from edvis.run import Run, checkpoint_digest, digest


@pytest.fixture(scope="module")
def sane(rendered_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    run = tmp_path_factory.mktemp("sanity") / "run"
    shutil.copytree(rendered_run, run)
    assert main(["explain", "--run", str(run), "--sanity", "--method", "gradcam", "--images", "4", "--device", "cpu"]) == 0
    data, _ = digest.read_verified(sanity_path(Run(run)), "sanity file", "")
    with np.load(io.BytesIO(data)) as z:
        return run, json.loads(str(z["meta"])), {k: z[k] for k in z.files if k != "meta"}


def test_the_file_holds_the_method_and_the_own_map_at_every_step(sane):
    run, meta, z = sane
    steps = ["original", "up2", "up1", "expand", "layer4", "layer3", "layer2", "layer1", "conv1"]
    assert meta["steps"] == steps and meta["methods"] == ["gradcam", OWN] and meta["images"] == 4
    assert z["maps"].shape == (2, 9, 4, 8, 8) and z["maps"].dtype == np.float16
    assert z["other_class_maps"].shape == (2, 4, 8, 8) and z["index"].shape == (4,)
    assert (z["other_class"] != z["labels"]).all()
    assert meta["checkpoint_sha256"] == checkpoint_digest(Run(run).checkpoint(1))  # the file itself is untouched


def test_grad_cam_of_the_trained_network_is_its_own_map_and_the_cascade_changes_the_own_map(sane):
    _, meta, z = sane
    g, own = meta["methods"].index("gradcam"), meta["methods"].index(OWN)
    maps = z["maps"].astype(np.float32)
    np.testing.assert_allclose(maps[g, 0] * 64, maps[own, 0], rtol=1e-2, atol=2e-3)
    assert not np.allclose(maps[own, 1], maps[own, 0], atol=1e-3)  # up2 re-initialised
    others = z["other_class_maps"].astype(np.float32)
    np.testing.assert_allclose(others[g] * 64, others[own], rtol=1e-2, atol=2e-3)
    assert not np.allclose(others[own], maps[own, 0], atol=1e-3)


def test_a_rerun_writes_nothing(sane, said):
    run, _, _ = sane
    before = sanity_path(Run(run)).stat().st_mtime_ns
    assert main(["explain", "--run", str(run), "--sanity", "--method", "gradcam", "--images", "4", "--device", "cpu"]) == 0
    assert sanity_path(Run(run)).stat().st_mtime_ns == before
    assert any("sanity checks of epoch 1 up to date" in line for line in said)


def test_randomise_redraws_the_weights_seeded_and_keeps_the_rest():
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3))
    path = dict(CASCADE["edvis-resnet18"])["up1"]
    module = model.get_submodule(path)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    randomise(module, 5)
    after = module.state_dict()
    weight = next(k for k in before if before[k].dim() >= 2)
    assert not torch.equal(before[weight], after[weight])
    assert all(torch.equal(before[k], after[k]) for k in before if before[k].dim() < 2)
    fan = after[weight][0].numel()
    assert abs(after[weight].std().item() - (2 / fan) ** 0.5) < 0.25 * (2 / fan) ** 0.5
    again = build_model(ModelConfig(num_classes=3)).get_submodule(path)
    randomise(again, 5)
    assert torch.equal(again.state_dict()[weight], after[weight])



def test_each_step_says_the_time_left(rendered_run, tmp_path, said, monkeypatch):
    """A clock that moves 10 s per map: step 0 computes gradcam's and the own map for the true and
    another class (40 s, so 20 s a later step), and the 8 steps after it take 160 s; step 1 takes
    20 s, and 7 × 20 s are left."""
    from types import SimpleNamespace

    from edvis.explain import sanity_run

    clock = [0.0]

    def maps(model, model_name, method, layer, x, classes, size, batch):
        clock[0] += 10.0
        return np.zeros((len(classes), size, size), np.float32)

    monkeypatch.setattr("edvis.explain.sanity.time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr("edvis.explain.sanity._maps", maps)
    run = tmp_path / "run"
    shutil.copytree(rendered_run, run)
    sanity_run(run, ["gradcam"], images=4)
    steps = [line for line in said if line.startswith("explain: sanity step")]
    assert steps[:2] == ["explain: sanity step 0/8 (original) done, 40s, 160s left",
                         "explain: sanity step 1/8 (up2) done, 60s, 140s left"]
    assert steps[-1] == "explain: sanity step 8/8 (conv1) done, 200s, 0s left"


def test_a_comma_list_of_methods_is_what_the_sanity_checks_compute(rendered_run, tmp_path):
    """`build.py --methods gradcam,eigencam` passes its list on: the sanity file holds those two
    and the own map, not the six (Score-CAM alone takes minutes a step at 224 px)."""
    run = tmp_path / "run"
    shutil.copytree(rendered_run, run)
    argv = ["explain", "--run", str(run), "--sanity", "--method", "eigencam,gradcam,eigencam", "--images", "2"]
    assert main(argv) == 0
    data, _ = digest.read_verified(sanity_path(Run(run)), "sanity file", "")
    with np.load(io.BytesIO(data)) as z:
        assert json.loads(str(z["meta"]))["methods"] == ["eigencam", "gradcam", OWN]
        assert z["maps"].shape[:2] == (3, 9)
