"""Bad input gets one clear line naming the path, and a non-zero exit, not a traceback."""

import json
import subprocess
import sys
from dataclasses import fields

import pytest
import torch
from PIL import Image

from edvis.cli import build_parser
from edvis.data import write_dataset
from edvis.run import Run
from edvis.train import TrainConfig


def _edvis(*args):
    return subprocess.run([sys.executable, "-m", "edvis", *args], check=False, capture_output=True, text=True)


def test_every_verb_has_help_for_every_flag():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"synth", "data", "train", "export", "render", "explain", "faithfulness", "analyze", "site",
                                "gpu-check"}
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.help, f"edvis {name} {action.option_strings} has no help"


def test_missing_dataset_folder(tmp_path):
    missing = tmp_path / "nowhere"
    r = _edvis("train", "--data", str(missing), "--run", str(tmp_path / "run"), "--device", "cpu")
    assert r.returncode == 2
    assert str(missing) in r.stderr and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("edvis: error:")]
    assert len(errors) == 1 and str(missing) in errors[0]


@pytest.mark.parametrize("problem", ["not-an-image", "empty-class"])
def test_bad_imagefolder(tmp_path, problem):
    root = tmp_path / "ds"
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            d = root / split / cls
            d.mkdir(parents=True)
            Image.new("RGB", (64, 64), (10, 20, 30)).save(d / "a.png")
    if problem == "not-an-image":
        bad = root / "train" / "dog" / "b.jpg"
        bad.write_text("this is text, not a JPEG")
    else:
        (root / "train" / "dog" / "a.png").unlink()
        bad = root / "train" / "dog"
    r = _edvis("train", "--data", str(root), "--run", str(tmp_path / "run"), "--device", "cpu", "--epochs", "1")
    assert r.returncode == 2, r.stderr
    assert str(bad) in r.stderr and "Traceback" not in r.stderr


def test_site_without_a_run(tmp_path):
    r = _edvis("site", "--run", str(tmp_path / "missing"), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert "missing" in r.stderr and "Traceback" not in r.stderr


def test_every_training_setting_has_a_flag():
    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    dests = {a.dest for a in train._actions}
    assert {f.name for f in fields(TrainConfig)} <= dests  # "recipe" is --recipe itself
    a = build_parser().parse_args(["train", "--data", "d", "--model", "cam-resnet18", "--no-amp", "--no-channels-last",
                                   "--workers", "3", "--no-hflip", "--pretrained", "imagenet", "--resume"])
    assert (a.model, a.amp, a.channels_last, a.workers, a.hflip, a.pretrained, a.resume) == (
        "cam-resnet18", False, False, 3, False, "imagenet", True)
    a = build_parser().parse_args(["train", "--data", "d", "--run-dir", "r"])
    assert (a.amp, a.channels_last, a.preload, a.hflip, a.lr, str(a.run)) == (True, True, True, None, None, "r")


def test_train_prints_and_saves_the_resolved_config(tmp_path):
    data = write_dataset(tmp_path / "data", classes=2, seed=0, train_per_class=2, val_per_class=1)
    r = _edvis("train", "--data", str(data), "--run", str(tmp_path / "run"), "--device", "cpu", "--recipe", "author",
               "--epochs", "1", "--model", "cam-resnet18", "--momentum", "0.5", "--workers", "0")
    assert r.returncode == 0, r.stderr
    assert "recipe='author', epochs=1, batch_size=100, optimizer='sgd', lr=0.0001, momentum=0.5" in r.stderr
    assert "model=cam-resnet18" in r.stderr and "maps=2x2" in r.stderr
    assert "--amp and --channels-last apply on CUDA only" in r.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "epoch_001.pt", weights_only=False)
    for saved in (config["train"], ckpt["train_config"]):
        assert (saved["momentum"], saved["rotation"], saved["eta_min"], saved["batch_size"]) == (0.5, 20.0, 1e-7, 100)
    assert config["runtime"]["amp"] is False and ckpt["runtime"]["channels_last"] is False


def test_site_bad_seed_and_missing_compare_run(tmp_path):
    import numpy as np

    from edvis.data import open_dataset
    from edvis.run import RenderStore, Unit

    data = tmp_path / "data"
    for rel in ("val/a/a.png", "train/a/t.png", "train/b/t.png"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), (10, 20, 30)).save(data / rel)
    store = RenderStore(tmp_path / "run" / "render")
    store.init({"dataset": {"root": str(data), "fingerprint": open_dataset(data).fingerprint(), "wnids": ["a", "b"],
                            "names": ["a", "b"]},
                "val": {"files": ["val/a/a.png"], "labels": [0], "boxes": [None]}, "image_size": 64, "map_size": 8})
    maps = np.ones((1, 8, 8), np.float16)
    store.write(Unit("clean", 1), {"probs": np.array([[0.6, 0.4]], np.float16), "top5": np.array([[0, 1]], np.int16),
                                   "top5_prob": np.array([[0.6, 0.4]], np.float32), "map_true": maps, "map_pred": maps},
                meta={})
    run, out = str(tmp_path / "run"), str(tmp_path / "out")
    assert _edvis("analyze", "--run", run).returncode == 0
    r = _edvis("site", "--run", run, "--out", out, "--seed", "-1")
    assert r.returncode == 2 and "edvis: error: --seed must be >= 0, got -1" in r.stderr
    missing = tmp_path / "missing"
    r = _edvis("site", "--run", run, "--out", out, "--compare", str(missing))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"edvis: error: --compare {missing}: no render store at {missing / 'render'}" in r.stderr


def test_the_decoder_variant_follows_the_recipe_unless_given(tmp_path):
    data = write_dataset(tmp_path / "data", classes=2, seed=0, train_per_class=2, val_per_class=1)
    cases = {"demo": ([], "paper"), "photo": (["--recipe", "photo"], "paper"), "author": (["--recipe", "author"], "author"),
             "override": (["--recipe", "author", "--variant", "paper"], "paper")}
    configs = {}
    for name, (flags, variant) in cases.items():
        run = tmp_path / name
        r = _edvis("train", "--data", str(data), "--run", str(run), "--device", "cpu", "--epochs", "1", "--workers", "0",
                   *flags)
        assert r.returncode == 0, r.stderr
        assert f"variant={variant}," in r.stderr
        configs[name] = json.loads((run / "config.json").read_text())
        assert configs[name]["model"]["variant"] == variant, name
    # The photo recipe is the demo's without the quarter mosaics (docs/training.md).
    demo, photo = configs["demo"]["train"], configs["photo"]["train"]
    assert (demo["mosaic"], photo["mosaic"]) == (0.8, 0.0)
    assert {k: v for k, v in photo.items() if k not in ("recipe", "mosaic")} == \
        {k: v for k, v in demo.items() if k not in ("recipe", "mosaic")}


def test_mosaic_trains_a_model_whose_maps_have_an_odd_side(tmp_path):
    # cam-resnet18 at 96 px has 3×3 maps (96 / 32); the demo recipe mosaics, sharing the middle
    # row and column between quarters by area.
    data = write_dataset(tmp_path / "data", classes=2, seed=0, train_per_class=2, val_per_class=1)
    r = _edvis("train", "--data", str(data), "--run", str(tmp_path / "run"), "--device", "cpu", "--epochs", "1",
               "--model", "cam-resnet18", "--image-size", "96", "--workers", "0", "--mosaic", "1")
    assert r.returncode == 0, r.stderr
    assert Run(tmp_path / "run").checkpoint_epochs() == [1]


@pytest.mark.parametrize("model, message", [
    ("torchvision:vit_b_16", "edvis: error: --model torchvision:vit_b_16: between its last linear layer heads.head "
                             "and a global average pooling stands getitem"),
    ("torchvision:resnet19", "edvis: error: --model torchvision:resnet19: torchvision has no classification model "
                             "'resnet19'"),
])
def test_a_torchvision_model_edvis_cannot_explain_is_one_line_before_training(tmp_path, capsys, model, message):
    from edvis.cli import main

    data = write_dataset(tmp_path / "data", classes=2, seed=0, train_per_class=1, val_per_class=1)
    assert main(["train", "--data", str(data), "--run", str(tmp_path / "run"), "--device", "cpu",
                 "--model", model, "--workers", "0"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("edvis: error:")]
    assert len(errors) == 1 and errors[0].startswith(message) and "Traceback" not in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()
