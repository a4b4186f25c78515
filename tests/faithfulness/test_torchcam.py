"""Average Drop and Increase in Confidence against torch-cam's ClassificationMetric.

torch-cam (torchcam.metrics.ClassificationMetric) takes the extractor's CAM, already min-max
normalised at its own resolution, upsamples it bilinearly (align_corners=False) to the input,
multiplies the input by it, and reports mean(relu(Y − O) / (Y + 1e-7)) and mean(Y < O) as
fractions. edvis upsamples first and then min-max scales, multiplies the uint8 image and rounds
the product to uint8 (the ONNX model's input), and reports percentages. Like for like here:

* the maps have their maximum in cell (0, 0) and their minimum in the last cell, so bilinear
  upsampling (whose corner pixels take the corner cells' values) keeps both, and scaling before
  or after upsampling gives the same mask;
* the torch model rounds its input first, so torch-cam's unrounded product reaches it as edvis's
  rounded one does (both round half to even);
* the model sees raw pixel values 0…255 in both (no normalisation of the input).

What remains is float arithmetic: onnxruntime against PyTorch, 1e-4 percentage points.
"""

from __future__ import annotations

import contextlib
from functools import partial

import numpy as np
import pytest

from edvis.analyze.faithfulness import average_drop, increase
from edvis.faithfulness import ad_masks, map_order, measure, ranks_of

torch = pytest.importorskip("torch")
metrics = pytest.importorskip("torchcam.metrics")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SIZE, G, C, K = 16, 4, 4, 12


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, C, 3, padding=1)

    def forward(self, x):  # x: (N, 3, H, W) pixel values
        return torch.relu(self.conv(torch.round(x) / 255)).mean(dim=(2, 3)) * 40


def as_onnx(net: Net) -> bytes:
    """The same network, uint8 (B, H, W, 3) in, as edvis's ONNX files take images."""
    from onnx import TensorProto, helper, numpy_helper

    w, b = net.conv.weight.detach().numpy(), net.conv.bias.detach().numpy()
    nodes = [helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Div", ["nchw", "d"], ["s"]),
             helper.make_node("Conv", ["s", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Mul", ["f", "m"], ["logits"])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array(255, np.float32), "d"), numpy_helper.from_array(np.array(40, np.float32), "m")]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("images", TensorProto.UINT8, ["B", SIZE, SIZE, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", C])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


class GivenMaps:
    """A torch-cam extractor that returns given maps, min-max normalised as torch-cam's extractors do."""

    def __init__(self, model: torch.nn.Module, maps: np.ndarray) -> None:
        self.model = model
        lo = maps.min(axis=(1, 2), keepdims=True)
        self.maps = torch.from_numpy((maps - lo) / (maps.max(axis=(1, 2), keepdims=True) - lo)).float()

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):
        yield


def test_average_drop_and_increase_match_torchcam():
    torch.manual_seed(0)
    net = Net().eval()
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (K, SIZE, SIZE, 3), dtype=np.uint8)
    labels = rng.integers(0, C, K)
    maps = rng.uniform(0.1, 0.9, (K, G, G))
    maps[:, 0, 0], maps[:, -1, -1] = 1.0, 0.0  # extremes in corner cells: see the module's docstring
    metric = metrics.ClassificationMetric(GivenMaps(net, maps), partial(torch.softmax, dim=-1))
    metric.update(torch.from_numpy(images).permute(0, 3, 1, 2).float(), class_idx=[int(c) for c in labels])
    theirs = metric.summary()

    session = ort.InferenceSession(as_onnx(net), providers=["CPUExecutionProvider"])
    ranks = ranks_of(map_order(maps))[None]
    out = measure(session, images, images, labels, ranks, np.ones((1, K), bool), ad_masks(maps, SIZE)[None], steps=2)
    assert average_drop(out.full, out.masked[0]) == pytest.approx(100 * theirs["avg_drop"], abs=1e-4)
    assert increase(out.full, out.masked[0]) == pytest.approx(100 * theirs["conf_increase"], abs=1e-9)
    assert 0 < theirs["avg_drop"] and 0 < theirs["conf_increase"] < 1  # neither is trivially 0 or 1
