import json
import re
import urllib.error

import pytest
import torch
from PIL import Image
from torchvision.models import resnet18

from edvis.data import DatasetError, write_dataset
from edvis.models import PretrainedError
from edvis.run import Run, RunError, load_checkpoint
from edvis.train import (
    RECIPES,
    Runtime,
    lr_factor,
    resolve_config,
    train,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), classes=3, seed=0, train_per_class=4, val_per_class=2)




def test_author_schedule_matches_torch_cosine_annealing():
    cfg = RECIPES["author"]
    steps_per_epoch = 7
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.eta_min)
    for epoch in range(cfg.epochs):
        want = opt.param_groups[0]["lr"]
        for i in range(steps_per_epoch):
            got = cfg.lr * lr_factor(epoch * steps_per_epoch + i, steps_per_epoch, cfg)
            assert got == pytest.approx(want, rel=1e-9, abs=1e-15)
        opt.step()
        sched.step()


def test_step_schedule_runs_from_lr_to_eta_min():
    cfg = resolve_config("demo", epochs=2, lr=1.0, eta_min=0.0)
    assert lr_factor(0, 10, cfg) == 1.0
    assert lr_factor(10, 10, cfg) == pytest.approx(0.5)  # half way: cos(π/2) = 0
    assert lr_factor(20, 10, cfg) == pytest.approx(0.0, abs=1e-12)


def test_resolve_config_overrides_and_rejects():
    cfg = resolve_config("author", epochs=3, lr=None)
    assert cfg.epochs == 3 and cfg.lr == 1e-4 and cfg.optimizer == "sgd"
    with pytest.raises(ValueError, match="--recipe"):
        resolve_config("fast")
    with pytest.raises(ValueError, match="--batch-size"):
        resolve_config("demo", batch_size=0)


@pytest.mark.parametrize("model", [{"variant": "author"}, {"name": "cam-resnet18"}], ids=["edvis", "cam"])
def test_checkpoint_per_epoch_metrics_and_resume_equal_straight_run(tiny_data, tmp_path, model):
    cfg = resolve_config("demo", epochs=3, batch_size=4, rotation=10.0)
    rows = train(tmp_path / "a", tiny_data, model, cfg, CPU)
    run = Run(tmp_path / "a")
    assert run.checkpoint_epochs() == [1, 2, 3]
    lines = run.metrics_path.read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    keys = {"train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5", "lr", "seconds", "images_per_s"}
    assert keys <= set(rows[0])
    for r in rows:  # 6 validation images: accuracies are multiples of 1/6
        assert round(r["val_top1"] * 6, 6) == round(r["val_top1"] * 6)
        assert r["val_top5"] == 1.0  # 3 classes: the top 5 hold every class
        assert len(r["val_class_top1"]) == 3  # 2 images a class: each 0, 1/2 or 1
        assert all(v in (0.0, 0.5, 1.0) for v in r["val_class_top1"])
        assert sum(r["val_class_top1"]) / 3 == pytest.approx(r["val_top1"])

    # Run b loads with two worker processes, and is killed while writing its third checkpoint:
    # its bytes sit in the temporary file that the rename would have made epoch_003.pt. Resume
    # trains epoch 3 again. Neither the workers nor the interruption may change the weights.
    train(tmp_path / "b", tiny_data, model, cfg, CPU, runtime=Runtime(workers=2))
    b = Run(tmp_path / "b")
    b.checkpoint(3).rename(b.checkpoint_dir / ".epoch_003.pt.tmp-killed")
    assert b.checkpoint_epochs() == [1, 2]
    train(tmp_path / "b", tiny_data, model, cfg, CPU, runtime=Runtime(workers=2), resume=True)
    wa = load_checkpoint(run.checkpoint(3))["model"]
    wb = load_checkpoint(b.checkpoint(3))["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [r["val_loss"] for r in b.read_metrics()] == [r["val_loss"] for r in rows]

    # Rerunning a finished run trains nothing; other settings are refused, naming them.
    assert train(tmp_path / "a", tiny_data, model, cfg, CPU) == rows
    with pytest.raises(RunError, match=r"train\.lr"):
        train(tmp_path / "a", tiny_data, model, resolve_config("demo", epochs=3, batch_size=4,
              rotation=10.0, lr=0.1), CPU)
    # The stem, recorded only when not the paper's, still reads as the paper's in a run without it.
    with pytest.raises(RunError, match=r"model\.stem: 'paper' → 'nopool'"):
        train(tmp_path / "a", tiny_data, {**model, "stem": "nopool"}, cfg, CPU)

    # A last checkpoint cut short (copied or synced halfway) is reported, never loaded or skipped.
    last = b.checkpoint(3)
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(RunError, match=r"checkpoint .*epoch_003\.pt is damaged.*delete it .*`edvis train`"):
        train(tmp_path / "b", tiny_data, model, cfg, CPU)


def test_resume_flag_needs_a_checkpoint(tiny_data, tmp_path):
    with pytest.raises(RunError, match=r"--resume: .*checkpoints holds no checkpoint"):
        train(tmp_path / "r", tiny_data, {}, resolve_config("demo", epochs=1), CPU, resume=True)
    assert not Run(tmp_path / "r").checkpoint_epochs()


def test_training_starts_from_a_pretrained_state_dict(tiny_data, tmp_path, said):
    torch.manual_seed(5)
    state = resnet18(weights=None).state_dict()
    torch.save(state, tmp_path / "r18.pt")
    # A learning rate so small that one epoch leaves the convolutions where they started.
    cfg = resolve_config("author", epochs=1, batch_size=6, lr=1e-12, pretrained=str(tmp_path / "r18.pt"))
    train(tmp_path / "run", tiny_data, {"name": "cam-resnet18"}, cfg, CPU)
    assert f"encoder starts from {tmp_path / 'r18.pt'}" in said
    weights = load_checkpoint(Run(tmp_path / "run").checkpoint(1))["model"]
    for ours, theirs in (("encoder.0.weight", "conv1.weight"), ("encoder.7.1.conv2.weight", "layer4.1.conv2.weight")):
        assert torch.allclose(weights[ours], state[theirs], atol=1e-6)
    assert json.loads(Run(tmp_path / "run").config_path.read_text())["train"]["pretrained"] == str(tmp_path / "r18.pt")


def test_unreachable_imagenet_weights_stop_training_before_it_starts(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Network is unreachable")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    cfg = resolve_config("author", epochs=1, pretrained="imagenet")
    with pytest.raises(PretrainedError, match="--pretrained imagenet: cannot fetch .*Network is unreachable"):
        train(tmp_path / "run", tiny_data, {}, cfg, CPU)
    assert not (tmp_path / "run").exists()  # no config, no checkpoint: nothing started from scratch


def test_cpu_ignores_amp_and_channels_last():
    rt = Runtime(workers=1, amp=True, channels_last=True)
    assert rt.resolved(CPU) == Runtime(workers=1, amp=False, channels_last=False)
    assert rt.resolved(torch.device("cuda", 0)) == rt  # on CUDA they stay as asked
    with pytest.raises(ValueError, match="--workers"):
        Runtime(workers=-1)


def test_images_decoded_in_workers_report_a_bad_file(tmp_path):
    root = tmp_path / "ds"
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            Image.new("RGB", (64, 64), (10, 20, 30)).save(root / split / cls / "a.png")
    bad = root / "train" / "dog" / "b.jpg"
    bad.write_text("this is text, not a JPEG")
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        train(tmp_path / "run", root, {"name": "cam-resnet18"}, resolve_config("demo", epochs=1, batch_size=4), CPU,
              runtime=Runtime(workers=1, preload=False))


def test_a_metrics_row_lost_after_the_last_checkpoint_is_written_back(tiny_data, tmp_path):
    # A kill between the last checkpoint's rename and the metrics write: metrics.jsonl lacks that
    # epoch. Rerunning has no epoch left to train, yet must restore the row from the checkpoint.
    cfg = resolve_config("demo", epochs=2, batch_size=4)
    rows = train(tmp_path / "r", tiny_data, {}, cfg, CPU)
    run = Run(tmp_path / "r")
    lines = run.metrics_path.read_text().splitlines()
    run.metrics_path.write_text(lines[0] + "\n")
    assert [r["epoch"] for r in run.read_metrics()] == [1]
    assert train(tmp_path / "r", tiny_data, {}, cfg, CPU) == rows
    assert run.read_metrics() == rows  # epoch 2's row is back, value for value



def test_the_batch_line_gives_the_rate_and_the_time_left(tiny_data, tmp_path, monkeypatch):
    """A clock that moves 1 s each time the loop reads it: with a line after every batch the clock
    is read twice a batch (the progress line's interval, then the line itself), so each batch of 4
    images takes 2 s, 2 img/s, and the time left is 2 s for each batch left, this epoch's and the
    next's: 12 images in batches of 4, 2 epochs, 3 batches each."""
    import io
    from types import SimpleNamespace

    from edvis.train import Progress

    clock = [0.0]

    def tick() -> float:
        clock[0] += 1.0
        return clock[0]

    monkeypatch.setattr("edvis.train.loop.time", SimpleNamespace(monotonic=tick))
    out = io.StringIO()
    train(tmp_path / "run", tiny_data, {"variant": "author"}, resolve_config("photo", epochs=2, batch_size=4), CPU,
          progress=Progress(stream=out, interval=0.0))
    lines = [line for line in out.getvalue().splitlines() if "  batch " in line]
    assert [re.sub(r"  loss .* top-1 \S+", "", line) for line in lines] == [
        f"epoch {e}/2  batch {b}/3  2 img/s, {2 * (3 - b + 3 * (2 - e))}s left" for e in (1, 2) for b in (1, 2, 3)]
