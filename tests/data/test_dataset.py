"""Tests for edvis.data.dataset: layout reading, ordering, errors, image decoding, fingerprints."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edvis.data import (
    Dataset,
    DatasetError,
    Sample,
    load_image,
    load_images,
    open_dataset,
)

# --- helpers --------------------------------------------------------------------------------


def solid(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> Path:
    """Write a single-colour RGB image (format from the suffix) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def make_tiny(
    root: Path,
    wnids: tuple[str, ...] = ("n001", "n002"),
    train_files: dict[str, list[str]] | None = None,
    boxes: dict[str, str] | None = None,
    val_lines: list[str] | None = None,
    words: str | None = "n001\tcat, house cat\nn002\tdog, domestic dog, Canis familiaris\n",
) -> Path:
    """Build a small Tiny ImageNet tree: by default two classes, two train and two val images."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(w + "\n" for w in wnids))
    if words is not None:
        (root / "words.txt").write_text(words)
    if train_files is None:
        train_files = {w: [f"{w}_0.JPEG", f"{w}_1.JPEG"] for w in wnids}
    for wnid, files in train_files.items():
        (root / "train" / wnid / "images").mkdir(parents=True, exist_ok=True)
        for name in files:
            solid(root / "train" / wnid / "images" / name, (1, 2, 3))
    if boxes is None:
        boxes = {w: "".join(f"{f}\t1\t2\t30\t40\n" for f in train_files.get(w, [])) for w in wnids}
    for wnid, text in boxes.items():
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text(text)
    if val_lines is None:
        val_lines = ["val_0.JPEG\tn002\t0\t1\t62\t63", "val_1.JPEG\tn001\t5\t6\t7\t8"]
    (root / "val" / "images").mkdir(parents=True, exist_ok=True)
    for line in val_lines:
        solid(root / "val" / "images" / line.split("\t")[0], (4, 5, 6))
    (root / "val" / "val_annotations.txt").write_text("".join(line + "\n" for line in val_lines))
    return root


def raises_naming(path: Path | str, func: Callable[..., object], *args: object) -> DatasetError:
    """Assert ``func(*args)`` raises DatasetError whose message contains ``path``."""
    with pytest.raises(DatasetError) as info:
        func(*args)
    assert str(path) in str(info.value), str(info.value)
    return info.value


# --- the shared Tiny ImageNet subset --------------------------------------------------------

SCHOOL_BUS, BROWN_BEAR, BEER_BOTTLE = "n04146614", "n02132136", "n02823428"
# Mode "L" (grayscale) JPEGs among the subset's val images.
GRAY_VAL = ("val_1062", "val_3367", "val_4606", "val_6072", "val_7061", "val_8014", "val_9001")


@pytest.fixture(scope="module")
def tiny(tiny_subset_root: Path) -> Dataset:
    return open_dataset(tiny_subset_root)


def test_subset_counts(tiny: Dataset) -> None:
    assert tiny.layout == "tiny-imagenet"
    assert tiny.num_classes == 20
    assert len(tiny.wnids) == len(tiny.names) == 20
    assert len(tiny.train) == 10_000
    assert len(tiny.val) == 1_000
    assert Counter(s.label for s in tiny.train) == {label: 500 for label in range(20)}
    assert Counter(s.label for s in tiny.val) == {label: 50 for label in range(20)}


def test_subset_classes_follow_wnids_order(tiny: Dataset) -> None:
    # wnids.txt starts with school bus, brown bear; words.txt gives
    # "school bus", "brown bear, bruin, Ursus arctos", "lion, king of beasts, Panthera leo".
    assert tiny.wnids[:2] == (SCHOOL_BUS, BROWN_BEAR)
    names = dict(zip(tiny.wnids, tiny.names))
    assert names[SCHOOL_BUS] == "school bus"
    assert names[BROWN_BEAR] == "brown bear"
    assert names["n02129165"] == "lion"
    assert names["n03977966"] == "police van"
    assert names["n02123045"] == "tabby"


def test_subset_val_label_and_box(tiny: Dataset) -> None:
    # val_annotations.txt: "val_7.JPEG  n02823428  5  0  57  63"; n02823428 is line 16 of wnids.txt.
    first = tiny.val[0]
    assert first.path == tiny.root / "val" / "images" / "val_7.JPEG"
    assert first.label == 15
    assert tiny.wnids[first.label] == BEER_BOTTLE
    assert first.box == (5, 0, 57, 63)
    # "val_8.JPEG  n04146614  0  31  60  60"
    assert tiny.val[1].path.name == "val_8.JPEG"
    assert (tiny.val[1].label, tiny.val[1].box) == (0, (0, 31, 60, 60))


def test_subset_train_boxes_and_order(tiny: Dataset) -> None:
    # n04146614_boxes.txt: "n04146614_10.JPEG  1  19  63  41"; natural order puts _10 after _9.
    assert [s.path.name for s in tiny.train[8:12]] == [
        "n04146614_8.JPEG",
        "n04146614_9.JPEG",
        "n04146614_10.JPEG",
        "n04146614_11.JPEG",
    ]
    assert tiny.train[10].box == (1, 19, 63, 41)
    assert tiny.train[10].label == 0
    # n02132136_boxes.txt: "n02132136_7.JPEG  6  0  44  63"; class 1 starts at index 500.
    bear7 = tiny.train[507]
    assert bear7.path == tiny.root / "train" / BROWN_BEAR / "images" / "n02132136_7.JPEG"
    assert (bear7.label, bear7.box) == (1, (6, 0, 44, 63))


def test_subset_samples_are_absolute_and_boxes_in_range(tiny: Dataset) -> None:
    for s in tiny.train + tiny.val:
        assert s.path.is_absolute()
        assert s.box is not None
        x0, y0, x1, y1 = s.box
        assert 0 <= x0 <= x1 <= 63 and 0 <= y0 <= y1 <= 63, s


def test_subset_val_order_is_natural(tiny: Dataset) -> None:
    numbers = [int(s.path.stem.split("_")[1]) for s in tiny.val]
    assert numbers == sorted(numbers)
    assert numbers[:3] == [7, 8, 39]


def test_subset_grayscale_jpegs_load_as_rgb(tiny: Dataset) -> None:
    by_stem = {s.path.stem: s for s in tiny.val}
    for stem in GRAY_VAL:
        path = by_stem[stem].path
        with Image.open(path) as im:
            assert im.mode == "L"
            gray = np.asarray(im)
        rgb = load_image(path)
        assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
        for channel in range(3):
            assert np.array_equal(rgb[:, :, channel], gray)


def test_subset_load_images_matches_load_image(tiny: Dataset) -> None:
    paths = [s.path for s in tiny.val[:40]]
    batch = load_images(paths, workers=3)
    assert batch.shape == (40, 64, 64, 3) and batch.dtype == np.uint8
    for i in (0, 17, 39):
        assert np.array_equal(batch[i], load_image(paths[i]))


def test_subset_fingerprint_is_stable(tiny: Dataset, tiny_subset_root: Path) -> None:
    fp = tiny.fingerprint()
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert tiny.fingerprint() == fp
    assert open_dataset(tiny_subset_root).fingerprint() == fp


def test_dataset_module_does_not_import_torch() -> None:
    code = "import sys, edvis.data.dataset; sys.exit('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2])
    assert result.returncode == 0


# --- synthetic Tiny ImageNet layout ---------------------------------------------------------


def test_tiny_layout_labels_names_boxes(tmp_path: Path) -> None:
    root = make_tiny(tmp_path / "tiny")
    ds = open_dataset(root)
    assert ds.layout == "tiny-imagenet"
    assert ds.root == root.resolve()
    assert ds.wnids == ("n001", "n002")
    assert ds.names == ("cat", "dog")
    assert ds.train == (
        Sample(root / "train/n001/images/n001_0.JPEG", 0, (1, 2, 30, 40)),
        Sample(root / "train/n001/images/n001_1.JPEG", 0, (1, 2, 30, 40)),
        Sample(root / "train/n002/images/n002_0.JPEG", 1, (1, 2, 30, 40)),
        Sample(root / "train/n002/images/n002_1.JPEG", 1, (1, 2, 30, 40)),
    )
    assert ds.val == (
        Sample(root / "val/images/val_0.JPEG", 1, (0, 1, 62, 63)),
        Sample(root / "val/images/val_1.JPEG", 0, (5, 6, 7, 8)),
    )


def test_tiny_class_index_is_wnids_line_order_not_sorted(tmp_path: Path) -> None:
    root = make_tiny(tmp_path / "tiny", wnids=("n002", "n001"))
    ds = open_dataset(root)
    assert ds.wnids == ("n002", "n001")
    assert ds.names == ("dog", "cat")
    assert [s.label for s in ds.val] == [0, 1]  # val_0 is n002, val_1 is n001


def test_tiny_names_fall_back_to_wnid(tmp_path: Path) -> None:
    ds = open_dataset(make_tiny(tmp_path / "a", words="n002\tdog\n"))
    assert ds.names == ("n001", "dog")
    ds = open_dataset(make_tiny(tmp_path / "b", words=None))
    assert ds.names == ("n001", "n002")


def test_tiny_missing_boxes_give_none(tmp_path: Path) -> None:
    root = make_tiny(
        tmp_path / "tiny",
        boxes={"n001": "n001_1.JPEG\t3\t4\t5\t6\n"},  # n001_0 has no line; n002 has no file
        val_lines=["val_0.JPEG\tn002"],  # file and wnid only
    )
    ds = open_dataset(root)
    assert [s.box for s in ds.train] == [None, (3, 4, 5, 6), None, None]
    assert ds.val == (Sample(root / "val/images/val_0.JPEG", 1, None),)


def test_tiny_natural_order_and_extensions(tmp_path: Path) -> None:
    files = ["x_10.JPEG", "x_2.jpg", "x_1.PNG", "x_3.webp"]
    val = [f"val_{i}.JPEG\tn001\t0\t0\t1\t1" for i in (10, 2, 0, 1)]
    root = make_tiny(
        tmp_path / "tiny", wnids=("n001",), train_files={"n001": files}, boxes={}, val_lines=val
    )
    (root / "train/n001/images/notes.txt").write_text("not an image")
    ds = open_dataset(root)
    assert [s.path.name for s in ds.train] == ["x_1.PNG", "x_2.jpg", "x_3.webp", "x_10.JPEG"]
    assert [s.path.name for s in ds.val] == [
        "val_0.JPEG",
        "val_1.JPEG",
        "val_2.JPEG",
        "val_10.JPEG",
    ]


def test_tiny_class_count_is_not_assumed(tmp_path: Path) -> None:
    wnids = tuple(f"n{i:03d}" for i in range(7))
    val = [f"v_{i}.JPEG\tn{i:03d}\t0\t0\t1\t1" for i in range(7)]
    root = make_tiny(tmp_path / "tiny", wnids=wnids, words=None, val_lines=val)
    ds = open_dataset(root)
    assert ds.num_classes == 7
    assert [s.label for s in ds.val] == list(range(7))


# --- imagefolder layout ---------------------------------------------------------------------


def test_imagefolder_layout(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    solid(root / "train/dog/d1.png", (0, 0, 0))
    solid(root / "train/dog/more/d0.png", (0, 0, 0))  # nested folders are searched too
    solid(root / "train/cat/c10.jpg", (0, 0, 0))
    solid(root / "train/cat/c2.PNG", (0, 0, 0))
    (root / "train/cat/readme.txt").write_text("ignored")
    solid(root / "val/dog/v1.png", (0, 0, 0))
    solid(root / "val/cat/v2.png", (0, 0, 0))
    (root / "val/empty").mkdir(parents=True)  # an empty val class folder is not an error...
    (root / "train/empty").mkdir(parents=True)
    solid(root / "train/empty/e.bmp", (0, 0, 0))  # ...once train has that class
    ds = open_dataset(root)
    assert ds.layout == "imagefolder"
    assert ds.wnids == ds.names == ("cat", "dog", "empty")
    assert ds.train == (
        Sample(root / "train/cat/c2.PNG", 0, None),
        Sample(root / "train/cat/c10.jpg", 0, None),
        Sample(root / "train/dog/d1.png", 1, None),
        Sample(root / "train/dog/more/d0.png", 1, None),
        Sample(root / "train/empty/e.bmp", 2, None),
    )
    assert ds.val == (
        Sample(root / "val/cat/v2.png", 0, None),
        Sample(root / "val/dog/v1.png", 1, None),
    )
    assert len(ds.fingerprint()) == 64


# --- errors ---------------------------------------------------------------------------------


def test_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    err = raises_naming(missing, open_dataset, missing)
    assert str(err) == f"dataset folder not found: {missing}"


def test_unrecognised_layout(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()  # no wnids.txt, no val/
    err = raises_naming(tmp_path, open_dataset, tmp_path)
    assert "wnids.txt" in str(err) and "train/" in str(err) and "val/" in str(err)


def test_tiny_missing_val_annotations(tmp_path: Path) -> None:
    root = make_tiny(tmp_path / "tiny")
    (root / "val/val_annotations.txt").unlink()
    raises_naming(root / "val/val_annotations.txt", open_dataset, root)


def test_tiny_annotation_names_missing_file(tmp_path: Path) -> None:
    root = make_tiny(tmp_path / "tiny")
    (root / "val/images/val_1.JPEG").unlink()
    err = raises_naming(root / "val/images/val_1.JPEG", open_dataset, root)
    assert str(root / "val/val_annotations.txt") in str(err)


def test_tiny_annotation_names_unknown_wnid(tmp_path: Path) -> None:
    root = make_tiny(tmp_path / "tiny", val_lines=["val_0.JPEG\tn999\t0\t0\t1\t1"])
    err = raises_naming(root / "val/val_annotations.txt", open_dataset, root)
    assert "n999" in str(err)


def test_tiny_class_without_training_images(tmp_path: Path) -> None:
    root = make_tiny(tmp_path / "tiny", train_files={"n001": ["a.JPEG"], "n002": []})
    raises_naming(root / "train/n002/images", open_dataset, root)


def test_tiny_missing_train_class_folder(tmp_path: Path) -> None:
    root = make_tiny(tmp_path / "tiny", train_files={"n001": ["a.JPEG"]}, boxes={})
    raises_naming(root / "train/n002", open_dataset, root)


def test_tiny_malformed_boxes_line(tmp_path: Path) -> None:
    root = make_tiny(tmp_path / "tiny", boxes={"n001": "n001_0.JPEG\t1\t2\tthree\t4\n"})
    raises_naming(root / "train/n001/n001_boxes.txt", open_dataset, root)


def test_tiny_duplicate_wnid(tmp_path: Path) -> None:
    root = make_tiny(tmp_path / "tiny", wnids=("n001", "n002", "n001"))
    raises_naming(root / "wnids.txt", open_dataset, root)


def test_imagefolder_val_class_not_in_train(tmp_path: Path) -> None:
    solid(tmp_path / "train/cat/a.png", (0, 0, 0))
    solid(tmp_path / "val/cow/b.png", (0, 0, 0))
    raises_naming(tmp_path / "val/cow", open_dataset, tmp_path)


def test_imagefolder_class_without_training_images(tmp_path: Path) -> None:
    solid(tmp_path / "train/cat/a.png", (0, 0, 0))
    (tmp_path / "train/dog").mkdir()
    (tmp_path / "val").mkdir()
    raises_naming(tmp_path / "train/dog", open_dataset, tmp_path)


def test_truncated_jpeg(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = tmp_path / "whole.jpg"
    Image.fromarray(noise).save(whole, quality=90)
    data = whole.read_bytes()
    for name, cut in (("half.jpg", len(data) // 2), ("no_end.jpg", len(data) - 2)):
        path = tmp_path / name
        path.write_bytes(data[:cut])
        err = raises_naming(path, load_image, path)
        assert str(err).startswith(f"cannot read image {path}: ")
    assert load_image(whole).shape == (64, 64, 3)  # the intact file is fine


def test_zero_byte_and_non_image_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.JPEG"
    empty.write_bytes(b"")
    assert str(raises_naming(empty, load_image, empty)) == f"cannot read image {empty}: empty file"
    text = tmp_path / "text.JPEG"
    text.write_text("hello, not a picture\n")
    raises_naming(text, load_image, text)
    missing = tmp_path / "missing.png"
    raises_naming(missing, load_image, missing)


# --- image modes (pixel values worked out by hand) ------------------------------------------


def save_pixels(path: Path, mode: str, pixels: Sequence[int | tuple[int, ...]]) -> Path:
    """Save a square image of ``mode`` whose column x holds ``pixels[x]``."""
    n = len(pixels)
    im = Image.new(mode, (n, n))
    for x, value in enumerate(pixels):
        for y in range(n):
            im.putpixel((x, y), value)
    im.save(path)
    return path


def first_row(path: Path) -> list[tuple[int, int, int]]:
    """Load a square image at its own size (so nothing is resampled) and return row 0 as RGB."""
    with Image.open(path) as im:
        n = im.size[0]
    rgb = load_image(path, size=n)
    assert rgb.shape == (n, n, 3) and rgb.dtype == np.uint8
    return [tuple(int(c) for c in rgb[0, x]) for x in range(n)]


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    path = save_pixels(tmp_path / "a.png", "RGBA", [(10, 20, 30, 0), (200, 100, 50, 255)])
    assert first_row(path) == [(10, 20, 30), (200, 100, 50)]


def test_la_drops_alpha(tmp_path: Path) -> None:
    path = save_pixels(tmp_path / "la.png", "LA", [(100, 0), (7, 255)])
    assert first_row(path) == [(100, 100, 100), (7, 7, 7)]


def test_grayscale_l(tmp_path: Path) -> None:
    path = save_pixels(tmp_path / "l.png", "L", [0, 77, 255])
    assert first_row(path) == [(0, 0, 0), (77, 77, 77), (255, 255, 255)]


def test_bilevel(tmp_path: Path) -> None:
    path = save_pixels(tmp_path / "b.bmp", "1", [0, 1])
    assert first_row(path) == [(0, 0, 0), (255, 255, 255)]


def test_palette_png_and_gif(tmp_path: Path) -> None:
    for name in ("p.png", "p.gif"):
        im = Image.new("P", (3, 3))
        im.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0])
        for x in range(3):
            for y in range(3):
                im.putpixel((x, y), x)
        im.save(tmp_path / name)
        rgb = load_image(tmp_path / name, size=3)
        assert [tuple(int(c) for c in rgb[1, x]) for x in range(3)] == [
            (10, 20, 30),
            (200, 100, 50),
            (0, 255, 0),
        ]


def test_cmyk(tmp_path: Path) -> None:
    # R = 255 * (1 - C/255) * (1 - K/255), likewise G from M and B from Y.
    pixels = [(0, 0, 0, 0), (255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 0, 255), (0, 0, 0, 128)]
    path = save_pixels(tmp_path / "c.tif", "CMYK", pixels)
    assert first_row(path) == [
        (255, 255, 255),
        (0, 255, 255),
        (255, 0, 255),
        (0, 0, 0),
        (127, 127, 127),
    ]


@pytest.mark.parametrize(("mode", "name"), [("I;16", "g16.png"), ("I", "g32.tif")])
def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path, mode: str, name: str) -> None:
    # value * 255 / 65535 = value / 257: 65535 -> 255, 32896 -> 128, 257 -> 1.
    path = save_pixels(tmp_path / name, mode, [0, 257, 32896, 65535])
    assert first_row(path) == [(0, 0, 0), (1, 1, 1), (128, 128, 128), (255, 255, 255)]


def test_other_sizes_are_resized(tmp_path: Path) -> None:
    flat = solid(tmp_path / "flat.png", (10, 20, 30), size=(100, 50))
    assert np.array_equal(load_image(flat), np.full((64, 64, 3), (10, 20, 30), np.uint8))

    halves = np.zeros((96, 128, 3), np.uint8)
    halves[:, :64] = (255, 0, 0)
    halves[:, 64:] = (0, 0, 255)
    Image.fromarray(halves).save(tmp_path / "halves.png")
    rgb = load_image(tmp_path / "halves.png")
    assert rgb.shape == (64, 64, 3)
    # Left columns come only from red source pixels, right ones only from blue ones.
    assert (rgb[:, :30] == (255, 0, 0)).all()
    assert (rgb[:, 34:] == (0, 0, 255)).all()
    assert (rgb[:, 31, 0] > rgb[:, 31, 2]).all() and (rgb[:, 32, 2] > rgb[:, 32, 0]).all()

    assert load_image(tmp_path / "halves.png", size=32).shape == (32, 32, 3)


def test_resize_is_bilinear(tmp_path: Path) -> None:
    # Columns alternate 0, 200 at 128 px wide. Halving with a bilinear (triangle) filter, output
    # column x is centred on source x' = 2x + 1 with taps 2x-1..2x+2 weighted 1:3:3:1, i.e.
    # (200 + 0 + 3 * 200 + 3 * 0) / 8 = 100 away from the borders; nearest would give 0 or 200.
    stripes = np.zeros((128, 128), np.uint8)
    stripes[:, 1::2] = 200
    Image.fromarray(stripes).save(tmp_path / "stripes.png")
    rgb = load_image(tmp_path / "stripes.png")
    assert (rgb[:, 1:63] == 100).all()


# --- load_images ----------------------------------------------------------------------------


def test_load_images_keeps_order(tmp_path: Path) -> None:
    paths = [solid(tmp_path / f"{i}.png", (i, 2 * i, 255 - i)) for i in range(50)]
    for workers in (1, 4):
        batch = load_images(paths, workers=workers)
        assert batch.shape == (50, 64, 64, 3) and batch.dtype == np.uint8
        assert [tuple(int(c) for c in batch[i, 5, 5]) for i in range(50)] == [
            (i, 2 * i, 255 - i) for i in range(50)
        ]


def test_load_images_empty() -> None:
    assert load_images([], size=16).shape == (0, 16, 16, 3)


def test_load_images_reports_earliest_bad_image(tmp_path: Path) -> None:
    paths = [solid(tmp_path / f"{i}.png", (0, 0, 0)) for i in range(300)]
    for i in (120, 250):
        paths[i].write_bytes(b"")
    raises_naming(paths[120], load_images, paths, 64, 4)


# --- fingerprint ----------------------------------------------------------------------------


def test_fingerprint_stable_and_sensitive(tmp_path: Path) -> None:
    root = make_tiny(tmp_path / "tiny")
    ds = open_dataset(root)
    fp = ds.fingerprint()
    assert ds.fingerprint() == fp
    assert open_dataset(root).fingerprint() == fp

    relabelled = dataclasses.replace(ds, val=(dataclasses.replace(ds.val[0], label=0), ds.val[1]))
    assert relabelled.fingerprint() != fp
    reboxed = dataclasses.replace(ds, val=(dataclasses.replace(ds.val[0], box=None), ds.val[1]))
    assert reboxed.fingerprint() != fp

    # The same relabelling made on disk: val_0 from n002 to n001.
    annotations = root / "val/val_annotations.txt"
    annotations.write_text(annotations.read_text().replace("\tn002\t", "\tn001\t"))
    assert open_dataset(root).fingerprint() != fp


def test_fingerprint_sees_file_size_changes(tmp_path: Path) -> None:
    root = make_tiny(tmp_path / "tiny")
    fp = open_dataset(root).fingerprint()
    solid(root / "val/images/val_1.JPEG", (4, 5, 6), size=(64, 65))
    assert open_dataset(root).fingerprint() != fp


# --- values checked at the door ------------------------------------------------------------------


@pytest.mark.parametrize("wnid", ["../x", "a/b", "..", "."])
def test_a_class_id_that_leads_out_of_the_dataset_is_refused_with_its_line(tmp_path: Path, wnid: str) -> None:
    root = make_tiny(tmp_path / "ds")
    (root / "wnids.txt").write_text(f"n001\n{wnid}\n")
    error = raises_naming(f"{root / 'wnids.txt'}:2", open_dataset, root)
    assert f"class id {wnid!r} is not a plain name" in str(error)


def test_a_val_file_name_that_leads_out_is_refused_with_its_line(tmp_path: Path) -> None:
    root = make_tiny(tmp_path / "ds")
    solid(root / "val" / "outside.JPEG", (1, 2, 3))
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn002\n../outside.JPEG\tn001\n")
    raises_naming(f"{root / 'val' / 'val_annotations.txt'}:2", open_dataset, root)


@pytest.mark.parametrize("box", ["-1\t0\t10\t10", "0\t-5\t10\t10", "0\t0\t70000\t10"])
def test_a_box_outside_any_image_is_refused_with_its_line(tmp_path: Path, box: str) -> None:
    root = make_tiny(tmp_path / "ds", val_lines=["val_0.JPEG\tn002\t0\t1\t62\t63", f"val_1.JPEG\tn001\t{box}"])
    error = raises_naming(f"{root / 'val' / 'val_annotations.txt'}:2", open_dataset, root)
    assert "lies outside any image" in str(error)


def test_a_symlink_loop_in_an_imagefolder_adds_nothing(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            solid(root / split / cls / "x.png", (1, 2, 3))
            solid(root / split / cls / "y.png", (4, 5, 6))
    (root / "train" / "a" / "loop").symlink_to(root / "train" / "a")  # a → a/loop → a → ...
    (root / "train" / "a" / "again.png").symlink_to(root / "train" / "a" / "x.png")  # a duplicate
    (root / "train" / "a" / "sub").mkdir()
    (root / "train" / "a" / "sub" / "up").symlink_to(root / "train" / "a")  # a longer loop
    ds = open_dataset(root)
    counts = Counter(s.label for s in ds.train)
    assert counts == {0: 2, 1: 2}, [str(s.path) for s in ds.train]
    assert len({s.path.resolve() for s in ds.train}) == len(ds.train)


def test_a_symlinked_duplicate_in_a_tiny_imagenet_class_counts_once(tmp_path: Path) -> None:
    root = make_tiny(tmp_path / "ds")
    images = root / "train" / "n001" / "images"
    (images / "n001_9.JPEG").symlink_to(images / "n001_0.JPEG")
    assert Counter(s.label for s in open_dataset(root).train) == {0: 2, 1: 2}


@pytest.mark.parametrize("link", ["file", "folder"])
def test_a_link_leading_outside_the_dataset_root_is_refused_naming_it(tmp_path: Path, link: str) -> None:
    root = tmp_path / "ds"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            solid(root / split / cls / "x.png", (1, 2, 3))
    elsewhere = tmp_path / "elsewhere"
    solid(elsewhere / "secret.png", (9, 9, 9))
    where = root / "train" / "b" / ("stolen.png" if link == "file" else "more")
    where.symlink_to(elsewhere / "secret.png" if link == "file" else elsewhere)
    error = raises_naming(str(where), open_dataset, root)
    assert "outside the dataset root" in str(error)


def test_a_tiny_imagenet_class_folder_linked_from_outside_is_refused(tmp_path: Path) -> None:
    root = make_tiny(tmp_path / "ds")
    images = root / "train" / "n001" / "images"
    images.rename(tmp_path / "outside")
    images.symlink_to(tmp_path / "outside")
    raises_naming(str(images), open_dataset, root)


def test_links_that_stay_inside_the_root_are_followed(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            solid(root / split / cls / "x.png", (1, 2, 3))
    solid(root / "pool" / "z.png", (7, 7, 7))
    (root / "train" / "a" / "z.png").symlink_to(root / "pool" / "z.png")
    assert Counter(s.label for s in open_dataset(root).train) == {0: 2, 1: 1}


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` × ``height`` (no pixel data worth decoding)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) +
                     chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(("width", "height"), [(9000, 9000), (30000, 30000)])
def test_an_image_over_the_pixel_limit_is_refused_naming_it(tmp_path: Path, width: int, height: int,
                                                            recwarn: pytest.WarningsRecorder) -> None:
    path = _png_header(tmp_path / "big.png", width, height)
    error = raises_naming(path, load_image, path)
    assert "edvis' limit of 67,108,864" in str(error) and "MAX_PIXELS" in str(error)
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]


def test_the_subset_takes_classes_in_turn_and_is_seeded() -> None:
    from edvis.data import image_subset

    labels = np.array([0] * 10 + [1] * 3 + [2] * 5)
    pick = image_subset(labels, 9, seed=3)
    assert len(pick) == 9 and len(set(pick)) == 9 and list(pick) == sorted(pick)
    assert np.bincount(labels[pick], minlength=3).tolist() == [3, 3, 3]  # in turn: three rounds
    counts = np.bincount(labels[image_subset(labels, 12, seed=3)], minlength=3).tolist()
    assert counts[1] == 3 and sorted([counts[0], counts[2]]) == [4, 5]  # class 1 runs out after 3 rounds
    assert image_subset(labels, 9, seed=3).tolist() == pick.tolist()
    assert image_subset(labels, 9, seed=4).tolist() != pick.tolist()
    assert image_subset(labels, 50).tolist() == list(range(18))
    with pytest.raises(ValueError, match="size must be >= 0"):
        image_subset(labels, -1)


def test_load_images_too_large_for_memory_is_a_dataset_error(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    # 4 × 10^6 × 10^6 × 3 bytes = 1.2e13 B = 11175.9 GiB: no machine here allocates that.
    with pytest.raises(DatasetError, match=r"4 images of 1000000 × 1000000 px \(11175\.9 GiB decoded\) do not fit"):
        load_images([tmp_path / "a.png"] * 4, size=1_000_000)
