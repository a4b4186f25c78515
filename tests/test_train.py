import json

import pytest
import torch

from edvis.run import Run, RunError
from edvis.synthetic import write_dataset
from edvis.train import RECIPES, lr_factor, load_checkpoint, resolve_config, train

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), classes=3, seed=0, train_per_class=4, val_per_class=2)


def _quiet(_msg: str) -> None:
    pass


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


def test_checkpoint_per_epoch_metrics_and_resume_equal_straight_run(tiny_data, tmp_path):
    cfg = resolve_config("demo", epochs=3, batch_size=4, rotation=10.0)
    rows = train(tmp_path / "a", tiny_data, {"variant": "author"}, cfg, CPU, log=_quiet)
    run = Run(tmp_path / "a")
    assert run.checkpoint_epochs() == [1, 2, 3]
    lines = run.metrics_path.read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    keys = {"train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5", "lr", "seconds", "images_per_s"}
    assert keys <= set(rows[0])
    for r in rows:  # 6 validation images: accuracies are multiples of 1/6
        assert round(r["val_top1"] * 6, 6) == int(round(r["val_top1"] * 6))
        assert r["val_top5"] == 1.0  # 3 classes: the top 5 hold every class

    # Interrupt after epoch 2 (as if killed before the third checkpoint was written) and resume.
    train(tmp_path / "b", tiny_data, {"variant": "author"}, cfg, CPU, log=_quiet)
    b = Run(tmp_path / "b")
    b.checkpoint(3).unlink()
    train(tmp_path / "b", tiny_data, {"variant": "author"}, cfg, CPU, log=_quiet)
    wa = load_checkpoint(run.checkpoint(3))["model"]
    wb = load_checkpoint(b.checkpoint(3))["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [r["val_loss"] for r in b.read_metrics()] == [r["val_loss"] for r in rows]

    # Rerunning a finished run trains nothing; other settings are refused, naming them.
    assert train(tmp_path / "a", tiny_data, {"variant": "author"}, cfg, CPU, log=_quiet) == rows
    with pytest.raises(RunError, match=r"train\.lr"):
        train(tmp_path / "a", tiny_data, {"variant": "author"}, resolve_config("demo", epochs=3, batch_size=4,
              rotation=10.0, lr=0.1), CPU, log=_quiet)


def test_damaged_checkpoint_is_named(tmp_path):
    bad = tmp_path / "epoch_001.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="epoch_001.pt"):
        load_checkpoint(bad)
