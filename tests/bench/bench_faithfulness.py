"""The cost of the explanation methods (``edvis explain``, pytorch-grad-cam, torch) and of the
faithfulness measures (``edvis faithfulness``, onnxruntime) per image, on the edvis network at
full scale (200 classes, 64 px; freshly initialised: the cost does not depend on the weights),
and what a full Tiny ImageNet run would take with ``make site``'s subset and with every image.

Per method: the maps of the true and the top-1 class of 64 images (8 for Score-CAM) at the
model's own map layer, 2 torch threads. The measures: deletion, insertion (16 steps) and the
Average Drop image for 9 map sources (the model's maps, six methods, two references) of 64 images
through onnxruntime's CPU provider, batch 256.
"""

from __future__ import annotations

import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

CLASSES, SIZE, IMAGES, SOURCES, STEPS = 200, 64, 64, 9, 16
FULL_EPOCHS, FULL_IMAGES = 80, 10_000


def _model():
    import torch

    from edvis.models import ModelConfig, Uint8Input, build_model

    torch.manual_seed(0)
    net = build_model(ModelConfig(num_classes=CLASSES)).eval()
    return Uint8Input(net, (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)).eval()


def _explain_costs(wrapped) -> dict[str, float]:
    """Seconds per image of each method (true and top-1 maps)."""
    import torch

    from edvis.explain import METHODS, Explainer

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    out = {}
    for method in METHODS:
        k = 8 if method == "scorecam" else IMAGES
        x = wrapped.normalise(torch.from_numpy(rng.integers(0, 256, (k, SIZE, SIZE, 3), dtype=np.uint8)))
        ex = Explainer(wrapped.model, "edvis-resnet18", method, batch_size=64)
        try:
            classes = rng.integers(0, CLASSES, k)
            ex.maps(x[:2], classes[:2])  # warm-up
            t = time.perf_counter()
            ex.maps(x, classes)
            ex.maps(x, (classes + 1) % CLASSES)
            out[method] = (time.perf_counter() - t) / k
        finally:
            ex.close()
    return out


def _measure_cost(wrapped) -> float:
    """Seconds per image and map source of deletion + insertion + Average Drop."""
    import onnxruntime as ort
    import torch

    from edvis.faithfulness import measure

    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        example = torch.zeros((2, SIZE, SIZE, 3), dtype=torch.uint8)
        torch.onnx.export(wrapped, (example,), str(path), dynamo=False, input_names=["images"],
                          output_names=["logits", "maps"], dynamic_axes={"images": {0: "batch"}})
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (IMAGES, SIZE, SIZE, 3), dtype=np.uint8)
    blur = (images // 2).astype(np.uint8)
    ranks = np.stack([np.stack([rng.permutation(64) for _ in range(IMAGES)]) for _ in range(SOURCES)])
    masks = rng.random((SOURCES, IMAGES, SIZE, SIZE), dtype=np.float32)
    t = time.perf_counter()
    measure(session, images, blur, rng.integers(0, CLASSES, IMAGES), ranks, np.ones((SOURCES, IMAGES), bool),
            masks, STEPS, batch=256)
    return (time.perf_counter() - t) / (IMAGES * SOURCES)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds < 48 * 3600 else f"{seconds / 86400:.1f} days"


def run() -> list[dict]:
    wrapped = _model()
    costs = _explain_costs(wrapped)
    rows = [{"benchmark": f"explain: {m}, true and top-1 maps (ms per image)", "measured": f"{1000 * s:.1f} ms",
             "ratio": None, "target": "reported", "met": None} for m, s in costs.items()]
    per = _measure_cost(wrapped)
    rows.append({"benchmark": "faithfulness: deletion + insertion + Average Drop (ms per image and map source)",
                 "measured": f"{1000 * per:.1f} ms ({2 * STEPS + 1} inferences)", "ratio": None, "target": "reported",
                 "met": None})
    # A full Tiny ImageNet run, clean images, every epoch: the six methods and the 9 sources measured.
    for images, what in ((IMAGES, f"the {IMAGES}-image subset"), (FULL_IMAGES, "all 10,000 images")):
        explain = sum(costs[m] * (min(images, IMAGES) if m == "scorecam" else images) for m in costs) * FULL_EPOCHS
        faith = per * images * SOURCES * FULL_EPOCHS
        rows.append({"benchmark": f"full run, 80 epochs, {what}: explain + faithfulness on the CPU (extrapolated)",
                     "measured": f"{_hours(explain)} + {_hours(faith)}", "ratio": None, "target": "reported", "met": None})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
