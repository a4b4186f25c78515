"""Tests for edvis.run.store: a unit's arrays, the manifest, and when two stores hold the same validation set."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest

from edvis.errors import UsageError
from edvis.run import RenderStore, StoreError, Unit, same_validation_set, softmax, summarise


def test_softmax_by_hand_and_stable_for_large_logits():
    p = softmax(np.array([[0.0, math.log(2.0), 0.0], [1000.0, 1000.0, 1000.0]]))
    np.testing.assert_allclose(p[0], [0.25, 0.5, 0.25], rtol=1e-6)
    np.testing.assert_allclose(p[1], [1 / 3] * 3, rtol=1e-6)


def test_summarise_picks_true_and_top1_maps():
    # Class c's map is filled with the value 10 + c, so each picked map says which class it is.
    n, c = 2, 6
    maps = np.broadcast_to((10.0 + np.arange(c))[None, :, None, None], (n, c, 8, 8)).astype(np.float32)
    logits = np.array([[0, 0, 3, 1, 2, 0.5], [5, 0, 0, 0, 0, 0]], dtype=np.float32)
    labels = np.array([4, 0])
    out = summarise(logits, maps, labels, top5_maps=True)
    assert out["top5"].tolist() == [[2, 4, 3, 5, 0], [0, 1, 2, 3, 4]]  # ties: lower index first
    assert out["top5"].dtype == np.int16 and out["probs"].dtype == np.float16
    e = np.exp([0, 0, 3, 1, 2, 0.5])
    np.testing.assert_allclose(out["top5_prob"][0], (e / e.sum())[[2, 4, 3, 5, 0]], rtol=1e-6)
    assert (out["map_true"][0] == 14).all() and (out["map_pred"][0] == 12).all()
    assert (out["map_true"][1] == 10).all() and (out["map_pred"][1] == 10).all()
    assert out["map_top5"].shape == (2, 5, 8, 8)
    assert out["map_top5"][0, :, 0, 0].tolist() == [12, 14, 13, 15, 10]  # classes 2, 4, 3, 5, 0
    assert "map_top5" not in summarise(logits, maps, labels)


def manifest(fingerprint: str = "f1", labels: tuple[int, ...] = (0, 1, 1)) -> dict:
    return {
        "dataset": {"root": "/data", "fingerprint": fingerprint, "wnids": ["a", "b"], "names": ["a", "b"]},
        "val": {"files": [f"val/{i}.png" for i in range(len(labels))], "labels": list(labels),
                "boxes": [[0, 0, 3, 3]] + [None] * (len(labels) - 1)},
        "image_size": 64,
        "map_size": 8,
    }


def changed(edit) -> dict:
    m = copy.deepcopy(manifest())
    edit(m)
    return m


def test_same_validation_set_holds_for_equal_sets_whatever_else_differs():
    a = manifest()
    assert same_validation_set(a, copy.deepcopy(a))
    # Another root, map size or schema is still the same validation set (e.g. a CAM run).
    other = changed(lambda m: (m["dataset"].update(root="/elsewhere"), m.update(map_size=2, schema=1)))
    assert same_validation_set(a, other) and same_validation_set(other, a)
    # A manifest without boxes reads as one whose images have none.
    unboxed = changed(lambda m: m["val"].update(boxes=[None, None, None]))
    assert same_validation_set(unboxed, changed(lambda m: m["val"].pop("boxes")))
    # Rendered at another image size: boxes in other pixels, the same images and labels.
    larger = changed(lambda m: (m.update(image_size=224),
                                m["val"].update(boxes=[b and [3 * v for v in b] for b in m["val"]["boxes"]])))
    assert larger["val"]["boxes"] != a["val"]["boxes"]
    assert same_validation_set(a, larger) and same_validation_set(larger, a)
    assert not same_validation_set(a, changed(lambda m: (m.update(image_size=224), m["val"]["labels"].reverse())))


@pytest.mark.parametrize("edit", [
    lambda m: m["dataset"].update(fingerprint="f2"),
    lambda m: m["dataset"].pop("fingerprint"),
    lambda m: m["val"]["files"].reverse(),
    lambda m: m["val"]["labels"].__setitem__(2, 0),
    lambda m: m["val"]["boxes"].__setitem__(0, [0, 0, 2, 3]),
    lambda m: m["val"]["boxes"].__setitem__(1, [0, 0, 1, 1]),
    lambda m: m.pop("val"),
], ids=["fingerprint", "no fingerprint", "files", "labels", "box", "added box", "no val"])
def test_same_validation_set_fails_on_any_difference(edit):
    assert not same_validation_set(manifest(), changed(edit))
    assert not same_validation_set(changed(edit), manifest())


def test_same_validation_set_needs_a_fingerprint():
    bare = changed(lambda m: m["dataset"].pop("fingerprint"))
    assert not same_validation_set(bare, copy.deepcopy(bare))


def test_init_keeps_an_identical_manifest_and_refuses_another_dataset(tmp_path: Path):
    store = RenderStore(tmp_path / "render")
    store.init(manifest())
    assert store.manifest() == {"schema": 1, **manifest()}
    mtime = store.manifest_path.stat().st_mtime_ns
    RenderStore(store.root).init(manifest())
    assert store.manifest_path.stat().st_mtime_ns == mtime  # not rewritten
    with pytest.raises(StoreError, match="was rendered from another dataset"):
        RenderStore(store.root).init(manifest(fingerprint="f2"))


def test_units_round_trip_and_layers_are_not_a_setting(tmp_path: Path):
    store = RenderStore(tmp_path)
    logits = np.array([[2.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    maps = np.zeros((2, 2, 4, 4), dtype=np.float32)
    store.write(Unit("gray", 3), summarise(logits, maps, np.array([0, 1])), {"seed": 0})
    store.write_layers(3, np.array([1]), [("conv1", np.ones((1, 2, 4, 4)))], {"seed": 0})
    assert store.units() == [Unit("gray", 3)] and store.perturbations() == ["gray"] and store.layer_epochs() == [3]
    assert store.meta(Unit("gray", 3)) == {"epoch": 3, "perturbation": "gray", "seed": 0}
    assert store.meta(Unit("clean", 3)) is None
    assert store.read(Unit("gray", 3))["top5"].tolist() == [[0, 1], [1, 0]]
    meta, index, layers = store.read_layers(3)
    assert index.tolist() == [1] and [(n, a.dtype, a.shape) for n, a in layers] == [("conv1", np.float16, (1, 2, 4, 4))]
    with pytest.raises(ValueError, match="lacks arrays"):
        store.write(Unit("gray", 4), {"probs": np.zeros((1, 2))}, {})
    with pytest.raises(StoreError, match="render unit missing"):
        store.read(Unit("clean", 3))


def test_a_unit_of_a_subset_keeps_its_index_and_a_whole_unit_reads_without_one(tmp_path: Path):
    store = RenderStore(tmp_path / "store")
    store.init(manifest())
    logits = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
    arrays = summarise(logits, np.zeros((2, 2, 8, 8), np.float32), np.array([0, 1]))
    store.write(Unit("clean", 1), {**arrays, "index": np.array([2, 0], np.int32)}, {})
    store.write(Unit("clean", 2), arrays, {})
    got = RenderStore(store.root).read(Unit("clean", 1))
    assert got["index"].tolist() == [2, 0] and got["index"].dtype == np.int64
    assert "index" not in RenderStore(store.root).read(Unit("clean", 2))
    with pytest.raises(UsageError, match=r"index must be \(2,\) integers"):
        store.write(Unit("clean", 3), {**arrays, "index": np.array([0, 1, 2])}, {})
