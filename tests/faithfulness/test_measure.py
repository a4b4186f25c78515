"""Deletion and insertion curves and Average Drop inputs on a hand-built ONNX model whose
probabilities are computed here, with numpy, independently of edvis."""

from __future__ import annotations

import numpy as np
import pytest

from edvis.faithfulness import map_order, measure, ranks_of

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

H = W = 8  # pixels
G = 4  # cells of 2 × 2 pixels
C = 3  # classes
SCALE = 1 / 2000


def linear_model(weights: np.ndarray) -> bytes:
    """logits = SCALE · (image as float, flattened) @ weights: uint8 (B, H, W, 3) in, (B, C) out."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["raw"]),
        helper.make_node("Mul", ["raw", "scale"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(np.array([-1, H * W * 3], np.int64), "shape"),
             numpy_helper.from_array(weights.astype(np.float32), "w"),
             numpy_helper.from_array(np.array(SCALE, np.float32), "scale")]
    graph = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("images", TensorProto.UINT8, ["B", H, W, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", C])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def p_true(image: np.ndarray, weights: np.ndarray, label: int) -> float:
    z = image.reshape(-1).astype(np.float64) @ weights.astype(np.float32).astype(np.float64) * SCALE
    e = np.exp(z - z.max())
    return float(e[label] / e.sum())


def with_cells(image: np.ndarray, source: np.ndarray, cells: list[int]) -> np.ndarray:
    """``image`` with the 2 × 2 pixels of each cell in ``cells`` taken from ``source``, one by one."""
    out = image.copy()
    for cell in cells:
        r, c = divmod(cell, G)
        out[2 * r:2 * r + 2, 2 * c:2 * c + 2] = source[2 * r:2 * r + 2, 2 * c:2 * c + 2]
    return out


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(7)
    weights = rng.normal(size=(H * W * 3, C))
    session = ort.InferenceSession(linear_model(weights), providers=["CPUExecutionProvider"])
    images = rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    base = rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8)  # any baseline will do
    labels = np.array([2, 0])
    # Method 0 ranks cells by a map with ties; method 1 leaves image 1 out.
    maps = rng.integers(0, 3, (2, G, G)).astype(float)
    order = map_order(maps)
    ranks = np.stack([ranks_of(order), ranks_of(order[::-1])])
    covered = np.array([[True, True], [True, False]])
    masks = rng.uniform(size=(2, 2, H, W)).astype(np.float32)
    out = measure(session, images, base, labels, ranks, covered, masks, steps=4, batch=5)
    return weights, images, base, labels, maps, order, masks, out


def hand_order(m: np.ndarray) -> list[int]:
    """Cells by value, highest first, ties by index: by hand, without argsort."""
    flat = m.reshape(-1).tolist()
    return sorted(range(len(flat)), key=lambda c: (-flat[c], c))


def test_one_deletion_and_one_insertion_curve_by_hand(setup):
    weights, images, base, labels, maps, order, _, out = setup
    cells = hand_order(maps[0])
    assert order[0].tolist() == cells
    counts = [0, 4, 8, 12, 16]  # 16 cells, 4 steps
    want_del = [p_true(with_cells(images[0], base[0], cells[:k]), weights, 2) for k in counts]
    want_ins = [p_true(with_cells(base[0], images[0], cells[:k]), weights, 2) for k in counts]
    assert np.abs(out.deletion[0, 0] - want_del).max() < 1e-5
    assert np.abs(out.insertion[0, 0] - want_ins).max() < 1e-5
    assert want_del[0] != pytest.approx(want_del[2])  # the curve moves: the check can fail


def test_the_full_and_masked_probabilities_by_hand(setup):
    weights, images, _, labels, _, _, masks, out = setup
    for i in range(2):
        assert out.full[i] == pytest.approx(p_true(images[i], weights, labels[i]), abs=1e-6)
    masked = np.rint(images[1].astype(np.float32) * masks[0, 1][..., None]).astype(np.uint8)
    assert out.masked[0, 1] == pytest.approx(p_true(masked, weights, labels[1]), abs=1e-6)


def test_images_a_method_does_not_cover_are_left_out(setup):
    *_, out = setup
    assert np.isnan(out.deletion[1, 1]).all() and np.isnan(out.insertion[1, 1]).all() and np.isnan(out.masked[1, 1])
    assert np.isfinite(out.deletion[1, 0]).all()
    # Per image: the image and its blurred copy, and 2 · 3 interior points + 1 mask per (method, image) covered.
    assert out.inferences == 2 * 2 + 3 * 7
