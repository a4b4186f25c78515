"""The explain stage: standard explanation methods (pytorch-grad-cam) over every epoch × setting. torch.

``cams`` wraps the pytorch-grad-cam classes so that they return raw maps at the target layer's
own resolution (the methods, the layers, what "raw" means); ``stage`` runs one method over a
run's checkpoints and rendered settings into a render store of its own, ``RUN/explain/<method>/``
(the unit format is in its docstring).
"""

from edvis.explain.cams import CLASS_NAMES, DEFAULT_LAYER, LAYERS, METHODS, Explainer, LogitsOnly, layer_path
from edvis.explain.stage import EXPLAIN_FORMAT, SCORECAM_IMAGES, explain_images, explain_run

__all__ = [
    "CLASS_NAMES", "DEFAULT_LAYER", "EXPLAIN_FORMAT", "LAYERS", "METHODS", "SCORECAM_IMAGES", "Explainer", "LogitsOnly",
    "explain_images", "explain_run", "layer_path",
]
