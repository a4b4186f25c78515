"""The faithfulness summaries, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edvis.analyze.faithfulness import auc, average_drop, fractions, increase, method_rows, section


def test_auc_of_known_curves():
    assert auc(np.array([1.0, 0.5, 0.0]), np.array([0, 0.5, 1])) == pytest.approx(0.5)
    assert auc(np.array([1.0, 1.0, 0.0]), np.array([0, 0.25, 1])) == pytest.approx(0.25 + 0.375)  # uneven steps
    both = auc(np.array([[0.0, 1.0], [1.0, 1.0]]), np.array([0.0, 1.0]))
    assert both.tolist() == [0.5, 1.0]
    assert math.isnan(auc(np.array([1.0, np.nan, 0.0]), np.array([0, 0.5, 1])))
    assert fractions(np.array([0, 16, 64]), 64).tolist() == [0, 0.25, 1]


def test_average_drop_and_increase_by_hand():
    full = np.array([0.8, 0.5, 0.4, 0.9])
    masked = np.array([0.4, 0.6, 0.4, np.nan])  # drops 0.5, 0 (a rise), 0; the last image unknown
    assert average_drop(full, masked) == pytest.approx(100 * 0.5 / 3)
    assert increase(full, masked) == pytest.approx(100 / 3)  # only the second rose; equal is no increase
    assert math.isnan(average_drop(full[:0], masked[:0])) and math.isnan(increase(full[:0], masked[:0]))


def fake_file(setting="clean", epoch=3):
    meta = {"setting": setting, "epoch": epoch, "methods": ["model", "centre"], "steps": 2, "map_size": 2,
            "images": 3, "seed": 0, "sigma": 5.0}
    deletion = np.array([[[1.0, 0.5, 0.0], [0.8, 0.8, 0.0], [0.6, 0.2, 0.2]],
                         [[1.0, 1.0, 0.0], [0.8, 0.4, 0.0], [np.nan] * 3]], np.float32)
    arrays = {"labels": np.array([0, 1, 1]), "deletion": deletion, "insertion": deletion[:, :, ::-1].copy(),
              "full": np.array([1.0, 0.8, 0.6], np.float32),
              "masked": np.array([[0.5, 0.8, 0.9], [1.0, 0.4, np.nan]], np.float32),
              "covered": np.array([[True, True, True], [True, True, False]])}
    return arrays, meta


def test_the_rows_of_one_file_by_hand():
    rows = method_rows(*fake_file())
    # step counts round(t · 4 / 2) = 0, 2, 4 cells: fractions 0, 0.5, 1
    model, centre = rows
    assert model["deletion_auc"] == pytest.approx(np.mean([0.5, 0.6, 0.3]))  # (1+.5)/4+(.5+0)/4, (.8+.8)/4+.8/4, ...
    assert centre["deletion_auc"] == pytest.approx(np.mean([0.75, 0.4]))
    assert centre["covered"] == 2 and centre["images"] == 3
    assert model["average_drop"] == pytest.approx(100 * np.mean([0.5, 0, 0])) and model["increase"] == pytest.approx(100 / 3)
    # against the centre, on images 0 and 1 (the centre lacks image 2): deletion 0.5 - 0.75 and
    # 0.6 - 0.4, mean -0.025, s = 0.45 / √2, half-width 1.959964 · s / √2 = 0.440992
    assert model["deletion_vs_centre"] == pytest.approx(-0.025)
    assert model["deletion_vs_centre_lo"] == pytest.approx(-0.025 - 0.440992, abs=1e-6)
    assert model["deletion_vs_centre_hi"] == pytest.approx(-0.025 + 0.440992, abs=1e-6)
    # insertion curves are the deletion curves reversed: the same trapezoid areas, the same differences
    assert model["insertion_vs_centre"] == pytest.approx(-0.025)
    assert "deletion_vs_random" not in model  # no random reference in this file
    assert "deletion_vs_centre" not in centre  # a reference is not compared with the references


def test_the_section_keeps_mean_curves_and_per_class_aucs_at_the_final_epoch():
    a1, m1 = fake_file(epoch=1)
    a3, m3 = fake_file(epoch=3)
    record, csv = section([(a3, m3), (a1, m1)], classes=2)
    assert record["methods"] == ["model", "centre"] and record["epochs"] == [1, 3] and record["steps"] == 2
    assert [(r["epoch"], r["method"]) for r in record["rows"]] == [(1, "model"), (1, "centre"), (3, "model"), (3, "centre")]
    curve = record["curves"][1]  # centre at epoch 1: images 0 and 1
    assert curve["deletion"] == pytest.approx([0.9, 0.7, 0.0]) and curve["fractions"] == [0, 0.5, 1]
    classes = [c for c in record["classes"] if c["method"] == "model"]
    assert {c["epoch"] for c in record["classes"]} == {3}
    assert [c["images"] for c in classes] == [1, 2]
    assert classes[1]["deletion_auc"] == pytest.approx(0.45)  # images 1 and 2: 0.6 and 0.3
    assert csv.splitlines()[0].startswith('"setting","epoch","method"') and len(csv.splitlines()) == 5
