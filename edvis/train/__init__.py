"""Training (torch): augmentation, the loader, recipes, one step and evaluation, and the epoch loop.

``train(run, data, model_config, cfg, device)`` trains into a run folder, one checkpoint per
epoch (the format is :mod:`edvis.run.checkpoint`), and resumes after the last complete one.
"""

from edvis.train.augment import augment, cutmix, mosaic, quarter_logits, to_float
from edvis.train.config import RECIPE_VARIANTS, RECIPES, Runtime, TrainConfig, lr_factor, make_optimizer, resolve_config
from edvis.train.loader import ImageSplit, ShardSampler, make_loader, train_sampler
from edvis.train.loop import Progress, train
from edvis.train.parallel import distributed, world
from edvis.train.step import evaluate, topk_hits, train_step

__all__ = [
    "RECIPES", "RECIPE_VARIANTS", "ImageSplit", "Progress", "Runtime", "ShardSampler", "TrainConfig", "augment", "cutmix",
    "distributed", "evaluate", "lr_factor", "make_loader", "make_optimizer", "mosaic", "quarter_logits", "resolve_config",
    "to_float", "topk_hits", "train", "train_sampler", "train_step", "world",
]
