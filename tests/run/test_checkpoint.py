"""Tests for edvis.run.checkpoint: the round trip, and what a damaged, missing or foreign file gives."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch

from edvis.run import CHECKPOINT_SCHEMA, RunError, checkpoint_digest, load_checkpoint, save_checkpoint
from edvis.run.digest import write_verified


def checkpoint() -> dict:
    return {
        "epoch": 2,
        "model_config": {"name": "cam-resnet18", "num_classes": 3, "image_size": 64},
        "train_config": {"epochs": 2, "lr": 0.002, "mean": (0.5, 0.5, 0.5)},
        "model": {"fc.weight": torch.arange(6.0).reshape(3, 2), "fc.bias": torch.zeros(3)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.002}]},
        "scaler": None,
        "metrics": {"epoch": 2, "val_top1": 0.5},
    }


def test_round_trip_keeps_every_entry_and_stamps_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "epoch_002.pt"  # the folder is created
    saved = checkpoint()
    save_checkpoint(path, saved)
    loaded = load_checkpoint(path)
    assert loaded["schema"] == CHECKPOINT_SCHEMA
    assert loaded.keys() - {"schema"} == saved.keys()
    assert all(torch.equal(loaded["model"][k], v) for k, v in saved["model"].items())
    assert {k: v for k, v in loaded.items() if k not in ("schema", "model")} == \
        {k: v for k, v in saved.items() if k != "model"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["epoch_002.pt", "epoch_002.pt.sha256"]  # no temporary


def test_a_checkpoint_loads_onto_the_device_asked_for(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c.pt", checkpoint())
    assert load_checkpoint(tmp_path / "c.pt", map_location=torch.device("cpu"))["model"]["fc.bias"].device.type == "cpu"


@pytest.mark.parametrize("keep", [0, 100, -100, "flip"])
def test_a_damaged_file_names_its_path(tmp_path: Path, keep: int | str) -> None:
    path = tmp_path / "epoch_001.pt"
    save_checkpoint(path, checkpoint())
    data = bytearray(path.read_bytes())
    if keep == "flip":  # a few bytes in the middle, the size kept
        data[len(data) // 2 : len(data) // 2 + 3] = bytes(255 - b for b in data[len(data) // 2 : len(data) // 2 + 3])
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(data[:keep] if keep >= 0 else data[:keep] + b"\0" * 100)
    with pytest.raises(RunError, match=re.escape(f"checkpoint {path} is damaged: its bytes")) as e:
        load_checkpoint(path)
    assert "`edvis train`" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(RunError, match="is damaged"):
        checkpoint_digest(path)


def test_a_file_that_is_no_checkpoint_at_all(tmp_path: Path) -> None:
    path = tmp_path / "epoch_001.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match=re.escape(f"checkpoint {path} has no recorded digest")):
        load_checkpoint(path)
    write_verified(path, b"not a checkpoint")  # recorded, but no pickle
    with pytest.raises(RunError, match=re.escape(f"cannot read checkpoint {path} (not an edvis checkpoint)")):
        load_checkpoint(path)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=re.escape(f"checkpoint not found: {tmp_path / 'epoch_009.pt'}")):
        load_checkpoint(tmp_path / "epoch_009.pt")


@pytest.mark.parametrize("foreign", [
    {"fc.weight": torch.zeros(3, 2)},  # a bare state dict
    {k: v for k, v in checkpoint().items() if k != "model_config"},  # no schema, no model_config
    [1, 2, 3],  # not a dict
])
def test_a_foreign_pickle_is_refused(tmp_path: Path, foreign: object) -> None:
    path = tmp_path / "epoch_001.pt"
    buf = io.BytesIO()
    torch.save(foreign, buf)
    write_verified(path, buf.getvalue())  # its digest recorded: what is refused is the content
    with pytest.raises(RunError, match=re.escape(f"{path} is not an edvis checkpoint of schema {CHECKPOINT_SCHEMA}")):
        load_checkpoint(path)


def test_another_schema_or_a_checkpoint_without_its_model_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "epoch_001.pt"
    save_checkpoint(path, {**checkpoint(), "schema": CHECKPOINT_SCHEMA + 1})
    with pytest.raises(RunError, match="is not an edvis checkpoint of schema"):
        load_checkpoint(path)
    save_checkpoint(path, {k: v for k, v in checkpoint().items() if k != "model_config"})
    with pytest.raises(RunError, match="is not an edvis checkpoint of schema"):
        load_checkpoint(path)
