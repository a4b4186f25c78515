"""Tests for edvis.run.folder: epoch files, config.json's schema, metrics.jsonl, model checks and labels."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edvis.run import RUN_SCHEMA, Run, RunError, check_model_config, model_label


def test_epochs_come_from_well_named_files_only(tmp_path: Path) -> None:
    run = Run(tmp_path)
    assert run.checkpoint_epochs() == [] and run.onnx_epochs() == []
    run.checkpoint_dir.mkdir()
    run.onnx_dir.mkdir()
    for name in ("epoch_002.pt", "epoch_010.pt", "epoch_1000.pt", ".epoch_003.pt.tmp-x", "epoch_04.pt", "epoch_005.onnx"):
        (run.checkpoint_dir / name).write_bytes(b"")
    (run.onnx_dir / "epoch_002.onnx").write_bytes(b"")
    assert run.checkpoint_epochs() == [2, 10, 1000]
    assert run.onnx_epochs() == [2]
    assert run.checkpoint(7) == tmp_path / "checkpoints" / "epoch_007.pt"


def test_config_round_trip_is_stamped_and_other_schemas_are_refused(tmp_path: Path) -> None:
    run = Run(tmp_path)
    with pytest.raises(RunError, match="not a training run"):
        run.read_config()
    run.write_config({"model": {"name": "cam-resnet18"}})
    assert run.read_config() == {"model": {"name": "cam-resnet18"}, "schema": RUN_SCHEMA}
    run.config_path.write_text('{"schema": 99}')
    with pytest.raises(RunError, match=re.escape(f"{run.config_path} has schema 99")):
        run.read_config()
    run.config_path.write_text("[1, 2]")
    with pytest.raises(RunError, match="a JSON object"):
        run.read_config()


def test_metrics_are_rewritten_whole_in_epoch_order(tmp_path: Path) -> None:
    run = Run(tmp_path)
    assert run.read_metrics() == []
    run.write_metrics([{"epoch": 2, "loss": 0.5}, {"epoch": 1, "loss": 1.0}])
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]
    run.metrics_path.write_text(run.metrics_path.read_text() + "{cut\n")
    with pytest.raises(RunError, match=re.escape(f"{run.metrics_path}:3: not JSON")):
        run.read_metrics()


def test_export_record_must_match_its_onnx_file(tmp_path: Path) -> None:
    run = Run(tmp_path)
    with pytest.raises(RunError, match="missing or damaged export record"):
        run.read_export_record(1)
    run.onnx_dir.mkdir()
    run.export_record(1).write_text('{"size": 4, "sha256": "x"}')
    with pytest.raises(RunError, match="ONNX file missing"):
        run.read_export_record(1)
    run.onnx(1).write_bytes(b"abc")
    with pytest.raises(RunError, match="is 3 bytes but was exported as 4"):
        run.read_export_record(1)
    run.onnx(1).write_bytes(b"abcd")
    assert run.read_export_record(1)["sha256"] == "x"


def test_check_model_config_names_every_difference() -> None:
    check_model_config({"name": "a", "mean": (0.5, 0.5)}, {"name": "a", "mean": [0.5, 0.5]}, Path("c.pt"), "x")
    with pytest.raises(RunError, match=r"c\.pt holds another model than the run r: num_classes 5 \(expected 3\); "
                                       r"variant 'author' \(expected 'paper'\)"):
        check_model_config({"num_classes": 5, "variant": "author"}, {"num_classes": 3, "variant": "paper"},
                           Path("c.pt"), "the run r")


def test_model_label() -> None:
    assert model_label({"name": "edvis-resnet18", "variant": "paper"}, "run") == "edvis-resnet18 (paper)"
    assert model_label({"name": "cam-resnet18", "variant": "paper"}, "run") == "cam-resnet18"
    assert model_label({}, "run") == "run"
    assert model_label({"name": "edvis-resnet18", "variant": "author", "stem": "nopool", "decoder": "resize"},
                       "run") == "edvis-resnet18 (author, nopool stem, resize decoder)"
    assert model_label({"name": "cam-resnet18", "variant": "paper", "stem": "cifar"}, "run") == "cam-resnet18 (cifar stem)"
    assert model_label({"name": "edvis-resnet18", "variant": "paper", "stem": "paper", "decoder": "transposed"},
                       "run") == "edvis-resnet18 (paper)"


def test_select_epochs_by_number_first_and_last():
    from edvis.errors import UsageError
    from edvis.run import select_epochs

    assert select_epochs(None, [1, 2, 5]) == [1, 2, 5] == select_epochs(" all ", [1, 2, 5])
    assert select_epochs("last,first,2,last", [1, 2, 5]) == [1, 2, 5]
    assert select_epochs("5", [1, 2, 5]) == [5] and select_epochs("first", []) == []
    with pytest.raises(UsageError, match=r"--epochs: there is no epoch 3 \(epochs 1…5\)"):
        select_epochs("3", [1, 2, 5])
    with pytest.raises(UsageError, match="--epochs must be all or a comma list"):
        select_epochs("1,x", [1, 2, 5])
