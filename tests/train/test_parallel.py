"""Two processes (torchrun, gloo on the CPU) train like one process with the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edvis.data import open_dataset
from edvis.models import ModelConfig, build_model
from edvis.run import Run, load_checkpoint
from edvis.train import ImageSplit, ShardSampler, evaluate, make_loader, resolve_config, train, train_sampler

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


def _same_image_dataset(root: Path) -> Path:
    """3 classes × 8 training images that are all one image, and 3 × 3 distinct val images.

    With distinct images, BatchNorm over each process's 4 images instead of the global 8 makes
    two-process training differ from one process by as much as training moves the weights
    (measured here: the distance between the two runs' weights was 1.3 times the distance
    either moved). With one image repeated, every process's batch statistics equal the global
    ones, and the summed gradients are equal in exact arithmetic (BatchNorm's backward is
    linear in the incoming gradient); what is left is floating-point rounding, which the
    near-zero variances of a single image's 2×2 layer4 features amplify.
    """
    rng = np.random.default_rng(0)
    same = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    for c in ("a", "b", "c"):
        for split, n in (("train", 8), ("val", 3)):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                image = same if split == "train" else Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
                image.save(root / split / c / f"{i}.png")
    return root


def test_shards_of_a_global_batch_are_the_one_process_batch():
    split = list(range(24))  # the sampler needs only the split's length
    one = train_sampler(split, seed=7)
    two = [train_sampler(split, seed=7, rank=r, world=2) for r in (0, 1)]
    for s in (one, *two):
        s.set_epoch(3)
    order = list(one)
    shards = [list(s) for s in two]
    assert sorted(order) == list(range(24))
    for i in range(3):  # global batch 8 = two shards of 4
        assert sorted(shards[0][4 * i : 4 * i + 4] + shards[1][4 * i : 4 * i + 4]) == sorted(order[8 * i : 8 * i + 8])
    assert list(ShardSampler(9, 0, 2)) == [0, 2, 4, 6, 8] and list(ShardSampler(9, 1, 2)) == [1, 3, 5, 7]


def test_two_processes_train_like_one(tmp_path):
    data = _same_image_dataset(tmp_path / "data")
    two = tmp_path / "two"
    flags = ["--recipe", "author", "--epochs", "2", "--batch-size", "8", "--lr", "0.002", "--no-hflip",
             "--rotation", "0", "--dropout", "0", "--workers", "0", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "edvis", "train", "--data", str(data), "--run-dir", str(two), *flags],
        check=False, capture_output=True, text=True, env=env, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("epoch 2/2: train loss") == 1  # rank 0 alone reports
    assert "processes=2" in r.stderr
    rows2 = Run(two).read_metrics()

    cfg = resolve_config("author", epochs=2, batch_size=8, lr=0.002, hflip=False, rotation=0.0)
    rows1 = train(tmp_path / "one", data, {"dropout": 0.0}, cfg, CPU)

    # Tolerances, against what was measured here: train loss 4e-5 and val loss 1e-4 relative
    # (validation also sees BatchNorm's running variance, updated with the unbiased n/(n-1) of
    # each process's n = 4·H·W values instead of 8·H·W); the runs' weights 1.2% of the distance
    # training moved them, where one process with batch 4 (what two unsynchronised processes
    # would amount to) ends 124% of it away.
    for a, b in zip(rows1, rows2, strict=True):
        assert (a["epoch"], a["steps"], a["train_images"], a["lr"]) == (b["epoch"], b["steps"], b["train_images"], b["lr"])
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-3)
        assert b["val_top1"] == a["val_top1"] and b["val_class_top1"] == a["val_class_top1"]
    torch.manual_seed(0)  # the initial weights, as train() draws them
    w0 = build_model(ModelConfig(num_classes=3, dropout=0.0)).state_dict()
    w1 = load_checkpoint(Run(tmp_path / "one").checkpoint(2))["model"]
    w2 = load_checkpoint(Run(two).checkpoint(2))["model"]
    learnt = [k for k in w0 if w0[k].is_floating_point() and "running" not in k]
    norm = lambda a, b: sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in learnt) ** 0.5
    assert norm(w1, w2) < 0.1 * norm(w1, w0)

    # The validation figures of the two-process run are sums over both shards (5 + 4 images),
    # not an average of the two shards' averages: they equal one process evaluating the same
    # checkpoint, up to the order of the loss sum.
    ckpt = load_checkpoint(Run(two).checkpoint(2))
    mc = ModelConfig.from_dict(ckpt["model_config"])
    model = build_model(mc)
    model.load_state_dict(ckpt["model"])
    val = ImageSplit(open_dataset(data).val, 64, preload=True)
    got = evaluate(model, make_loader(val, ShardSampler(len(val)), 256, 0, False, 0), mc, CPU)
    assert got["top1"] == rows2[-1]["val_top1"] and got["class_top1"] == rows2[-1]["val_class_top1"]
    assert got["loss"] == pytest.approx(rows2[-1]["val_loss"], rel=1e-6)
