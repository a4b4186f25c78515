"""Training-curve figures: the files, their sizes, and that their bytes depend only on the data."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edvis.figures import BASE_DPI, CURVE_COLUMNS, FIGSIZE, PNG_SCALE, training_curves, viridis_lut


def metrics(n: int = 4) -> list[dict]:
    return [
        {"epoch": e, "train_loss": 4.0 / e, "val_loss": 4.4 / e, "train_top1": 0.1 * e,
         "val_top1": 0.09 * e, "train_top5": 0.2 * e, "val_top5": 0.18 * e, "lr": 0.1,
         "seconds": 10.0, "images_per_s": 900.0}
        for e in range(1, n + 1)
    ]


def test_writes_png_svg_csv(tmp_path: Path) -> None:
    paths = training_curves(metrics(), tmp_path / "figs" / "curves")
    assert paths == {ext: tmp_path / "figs" / f"curves.{ext}" for ext in ("png", "svg", "csv")}
    assert all(p.is_file() for p in paths.values())
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in paths.values())
    assert not list((tmp_path / "figs").glob("*.tmp-*"))


def test_csv_holds_the_metrics(tmp_path: Path) -> None:
    rows = metrics(5)
    path = training_curves(list(reversed(rows)), tmp_path / "c")["csv"]  # any input order
    with open(path, newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert tuple(table[0]) == CURVE_COLUMNS
    assert len(table) == 1 + len(rows)
    for line, row in zip(table[1:], rows):
        assert int(line[0]) == row["epoch"]
        for col, cell in zip(CURVE_COLUMNS[1:], line[1:]):
            assert float(cell) == row[col]  # written exactly (repr of the float)


def test_missing_values_are_empty_cells(tmp_path: Path) -> None:
    rows = metrics(3)
    del rows[1]["val_top5"]
    path = training_curves(rows, tmp_path / "c")["csv"]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[2].endswith(",")  # val_top5 is the last column
    assert lines[2].count(",") == len(CURVE_COLUMNS) - 1


def test_png_is_twice_the_nominal_size(tmp_path: Path) -> None:
    path = training_curves(metrics(), tmp_path / "c")["png"]
    with Image.open(path) as im:
        assert im.size == (FIGSIZE[0] * BASE_DPI * PNG_SCALE, FIGSIZE[1] * BASE_DPI * PNG_SCALE)
        assert im.size == (1600, 640)
        assert "Software" not in im.info
        pixels = np.asarray(im.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # something was drawn


def test_svg_is_xml_with_labels(tmp_path: Path) -> None:
    path = training_curves(metrics(), tmp_path / "c")["svg"]
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = path.read_text(encoding="utf-8")
    assert "<dc:date>" not in text  # no timestamp
    for label in ("epoch", "accuracy (%)", "cross-entropy loss", "validation top-1", "train top-5"):
        assert f"<!-- {label} -->" in text  # matplotlib comments each text element


def test_bytes_are_deterministic(tmp_path: Path) -> None:
    a = training_curves(metrics(), tmp_path / "a" / "c")
    b = training_curves(metrics(), tmp_path / "b" / "c")
    for ext in ("png", "svg", "csv"):
        assert a[ext].read_bytes() == b[ext].read_bytes(), ext


def test_single_epoch_and_empty(tmp_path: Path) -> None:
    assert training_curves(metrics(1), tmp_path / "one")["png"].is_file()
    with pytest.raises(ValueError, match="no metrics"):
        training_curves([], tmp_path / "none")


def test_viridis_lut() -> None:
    lut = viridis_lut()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert tuple(lut[0]) == (68, 1, 84) and tuple(lut[-1]) == (253, 231, 37)
    assert (np.diff(lut.astype(int).sum(axis=1)) >= -3).all()  # brightness rises (nearly) monotonically
