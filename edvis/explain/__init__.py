"""The explain stage: standard explanation methods (pytorch-grad-cam) over every epoch × setting. torch.

``cams`` wraps the pytorch-grad-cam classes so that they return raw maps at the target layer's
own resolution (the methods, the layers, what "raw" means); ``stage`` runs one method over a
run's checkpoints and rendered settings into a render store of its own, ``RUN/explain/<method>/``
(the unit format is in its docstring); ``sanity`` writes the maps of the sanity checks
(cascading randomisation, random logit) to ``RUN/explain/sanity.npz``.
"""

from edvis.explain.cams import CLASS_NAMES, DEFAULT_LAYER, LAYERS, METHODS, Explainer, LogitsOnly, layer_path
from edvis.explain.sanity import CASCADE, OWN, SANITY_FORMAT, SANITY_IMAGES, randomise, sanity_path, sanity_run
from edvis.explain.stage import EXPLAIN_FORMAT, SCORECAM_IMAGES, explain_images, explain_run

__all__ = [
    "CASCADE", "CLASS_NAMES", "DEFAULT_LAYER", "EXPLAIN_FORMAT", "LAYERS", "METHODS", "OWN", "SANITY_FORMAT",
    "SANITY_IMAGES", "SCORECAM_IMAGES", "Explainer", "LogitsOnly", "explain_images", "explain_run", "layer_path",
    "randomise", "sanity_path", "sanity_run",
]
