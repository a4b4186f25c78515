import hashlib
from pathlib import Path

import numpy as np
import pytest

from edvis.data import CATALOGUE, MAX_CLASSES, draw, load_image, open_dataset, write_dataset


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = write_dataset(tmp_path / "a", classes=3, seed=7, train_per_class=4, val_per_class=2)
    b = write_dataset(tmp_path / "b", classes=3, seed=7, train_per_class=4, val_per_class=2)
    c = write_dataset(tmp_path / "c", classes=3, seed=8, train_per_class=4, val_per_class=2)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_an_image_does_not_depend_on_how_many_are_drawn(tmp_path):
    small = write_dataset(tmp_path / "s", classes=2, seed=1, train_per_class=2, val_per_class=1)
    large = write_dataset(tmp_path / "l", classes=4, seed=1, train_per_class=5, val_per_class=1)
    rel = "train/red-blob/images/red-blob_1.JPEG"
    assert (small / rel).read_bytes() == (large / rel).read_bytes()


def test_written_in_the_tiny_imagenet_layout(tmp_path):
    root = write_dataset(tmp_path / "d", classes=4, seed=0, train_per_class=3, val_per_class=5)
    ds = open_dataset(root)
    assert ds.layout == "tiny-imagenet"
    assert list(ds.wnids) == [s.wnid for s in CATALOGUE[:4]]
    assert list(ds.names) == ["disc", "red blob", "ring", "square"]
    assert len(ds.train) == 12 and len(ds.val) == 20
    assert np.bincount([s.label for s in ds.val]).tolist() == [5, 5, 5, 5]
    for s in ds.train + ds.val:
        x0, y0, x1, y1 = s.box
        assert 0 <= x0 < x1 <= 63 and 0 <= y0 < y1 <= 63
    assert load_image(ds.val[0].path).shape == (64, 64, 3)


def test_box_encloses_the_drawn_object():
    # A red blob on muted clutter: the strongly red pixels are the object, and the box is theirs.
    spec = next(s for s in CATALOGUE if s.wnid == "red-blob")
    img, (x0, y0, x1, y1) = draw(spec, np.random.default_rng(3))
    r, g, b = (img[..., k].astype(int) for k in range(3))
    red = (r - np.maximum(g, b)) > 100
    ys, xs = np.nonzero(red)
    assert red.sum() > 150  # radius ≥ 9 px with aspect ≥ 0.6: area ≥ π·9·5.4 ≈ 150
    assert abs(xs.min() - x0) <= 1 and abs(xs.max() - x1) <= 1
    assert abs(ys.min() - y0) <= 1 and abs(ys.max() - y1) <= 1


def test_colour_classes_are_chromatic_and_shape_classes_are_not():
    for spec in CATALOGUE:
        img, (x0, y0, x1, y1) = draw(spec, np.random.default_rng(11))
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        if spec.shape in ("ring", "cross", "bar", "triangle"):
            continue  # the box centre may be background for these
        px = img[cy, cx].astype(int)
        spread = px.max() - px.min()
        assert (spread > 60) == (spec.hue is not None), (spec.name, px)


def test_rejects_bad_class_counts(tmp_path):
    with pytest.raises(ValueError, match="--classes"):
        write_dataset(tmp_path, classes=MAX_CLASSES + 1)
    with pytest.raises(ValueError, match="--classes"):
        write_dataset(tmp_path, classes=0)
