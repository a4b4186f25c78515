"""Deletion, insertion and Average Drop / Increase in Confidence of every map source, computed by
onnxruntime on a seeded subset of validation images (``edvis faithfulness``). Imports no torch.

``cells`` holds the definitions (cells, orders, steps, blur, masks; numpy only), ``measure`` runs
the perturbed images through a session, ``stage`` plans, reads the map sources and writes
RUN/faithfulness/<setting>/epoch_NNN.npz.
"""

from edvis.faithfulness.cells import (
    ad_masks,
    blur_ksize,
    blur_sigma,
    blurred,
    centre_map,
    centre_order,
    compose,
    map_order,
    masked_images,
    order_map,
    random_order,
    ranks_of,
    resize_bilinear,
    step_counts,
)
from edvis.faithfulness.measure import Curves, measure, softmax_true
from edvis.faithfulness.stage import FORMAT, FaithfulnessError, faithfulness_run, read_meta

__all__ = [
    "FORMAT", "Curves", "FaithfulnessError", "ad_masks", "blur_ksize", "blur_sigma", "blurred",
    "centre_map", "centre_order", "compose", "faithfulness_run", "map_order", "masked_images", "measure",
    "order_map", "random_order", "ranks_of", "read_meta", "resize_bilinear", "softmax_true",
    "step_counts",
]
