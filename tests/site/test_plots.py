"""Figures: the files, their sizes and data, and that their bytes depend only on the data."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edvis.site.plots import (
    BASE_DPI,
    CURVE_COLUMNS,
    FIGSIZE,
    MOSAIC_TILE,
    PNG_SCALE,
    Cell,
    accuracy_by_setting,
    class_heatmap,
    confidence_histogram,
    map_mosaic,
    reliability_diagram,
    training_curves,
    viridis_lut,
)


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


# -- plots and mosaics for the site ------------------------------------------------------------

def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_confidence_histogram_csv(tmp_path: Path) -> None:
    paths = confidence_histogram([1, 0, 3, 2], [0, 5, 1, 0], tmp_path / "h", auroc=0.75)
    assert set(paths) == {"png", "svg", "csv"}
    assert read_csv(paths["csv"]) == [["lower", "upper", "right", "wrong"], ["0.0", "0.25", "1", "0"],
                                      ["0.25", "0.5", "0", "5"], ["0.5", "0.75", "3", "1"], ["0.75", "1.0", "2", "0"]]
    assert "<!-- Top-1 probability of right and wrong predictions (AUROC 0.750) -->" in paths["svg"].read_text("utf-8")
    with pytest.raises(ValueError, match="same number"):
        confidence_histogram([1], [1, 2], tmp_path / "bad")


def test_reliability_and_accuracy_csv(tmp_path: Path) -> None:
    bins = [{"lower": 0.0, "upper": 0.5, "count": 0, "accuracy": None, "confidence": None},
            {"lower": 0.5, "upper": 1.0, "count": 4, "accuracy": 0.75, "confidence": 0.6}]
    rel = reliability_diagram(bins, tmp_path / "r", ece=0.15)
    assert read_csv(rel["csv"])[1:] == [["0.0", "0.5", "0", "", ""], ["0.5", "1.0", "4", "0.75", "0.6"]]
    acc = accuracy_by_setting({"clean": ([1, 2], [0.5, 0.75], [0.9, 1.0]), "gray": ([2], [0.25], [0.5])}, tmp_path / "a")
    assert read_csv(acc["csv"]) == [["setting", "epoch", "top1", "top5"], ["clean", "1", "0.5", "0.9"],
                                    ["clean", "2", "0.75", "1.0"], ["gray", "2", "0.25", "0.5"]]


def test_class_heatmap_checks_its_shape(tmp_path: Path) -> None:
    paths = class_heatmap(["a$b$", "c"], [1, 2], np.array([[0.5, 1.0], [np.nan, 0.25]]), tmp_path / "c")
    assert read_csv(paths["csv"])[1:] == [["a$b$", "1", "0.5"], ["a$b$", "2", "1.0"], ["c", "1", ""], ["c", "2", "0.25"]]
    assert "<!-- a$b$ -->" in paths["svg"].read_text("utf-8")  # a dollar is text, not mathematics
    with pytest.raises(ValueError, match=r"\(classes, epochs\)"):
        class_heatmap(["a"], [1, 2], np.zeros((2, 2)), tmp_path / "bad")


def test_map_mosaic_draws_maps_in_viridis(tmp_path: Path) -> None:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[:, :] = (200, 0, 0)
    full = np.full((8, 8), 255, dtype=np.uint8)
    rows = [[Cell(image=image, top="image $x$"), Cell(map=full, bottom="map"), Cell(image=image, map=full)]]
    paths = map_mosaic(rows, tmp_path / "m", "A title", {"answer": 42})
    assert json.loads(paths["json"].read_text("utf-8")) == {"answer": 42}
    with Image.open(paths["png"]) as im:
        pixels = np.asarray(im.convert("RGB")).astype(int)
    lut = viridis_lut()
    yellow = lut[255].astype(int)
    blend = np.rint(0.5 * np.array([200, 0, 0]) + 0.5 * yellow)
    found = {tuple(p) for p in pixels.reshape(-1, 3)}
    assert (200, 0, 0) in found and tuple(yellow) in found and tuple(blend.astype(int)) in found
    # one mosaic pixel is one PNG pixel: a run of MOSAIC_TILE pure-image pixels on some row
    runs = [(row == [200, 0, 0]).all(axis=1).sum() for row in pixels]
    assert max(runs) == MOSAIC_TILE
    svg = paths["svg"].read_text("utf-8")
    for text in ("A title", "image $x$", "map", "max", "½ max"):
        assert f"<!-- {text} -->" in svg
    again = map_mosaic(rows, tmp_path / "again", "A title", {"answer": 42})
    for ext in ("png", "svg", "json"):
        assert paths[ext].read_bytes() == again[ext].read_bytes()
    with pytest.raises(ValueError, match="no tiles"):
        map_mosaic([[]], tmp_path / "none", "t", {})


def test_figure_csvs_are_spreadsheet_safe(tmp_path):
    from edvis.site.plots import write_csv

    path = write_csv(tmp_path / "t.csv", ["class", "top1"], [["=HYPERLINK(\"x\")", -0.25], ["@SUM(A1)", None]])
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows == [["class", "top1"], ["'=HYPERLINK(\"x\")", "-0.25"], ["'@SUM(A1)", ""]]
