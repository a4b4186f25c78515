"""The flag types and defaults every ``edvis`` command shares, and the device choice."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from edvis.errors import UsageError

DEFAULT_RUN = "runs/default"
DEFAULT_PERTURBATIONS = ["paper"]


def number(kind: type, low: float | None = None, high: float | None = None, high_open: bool = False) -> Callable[[str], Any]:
    """An argparse ``type``: ``kind`` (int or float) in [low, high] (or [low, high) with
    ``high_open``), refused with "must be ..., got X" (the parser names the flag)."""
    what = "an integer" if kind is int else "a number"
    bounds = [f">= {low:g}"] if low is not None else []
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    want = " and ".join(bounds) or what

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if (low is not None and value < low) or (high is not None and (value >= high if high_open else value > high)):
            raise argparse.ArgumentTypeError(f"must be {want}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


COUNT, POSITIVE, SEED = number(int, 0), number(int, 1), number(int, 0)
FRACTION = number(float, 0, 1)


COUNT, POSITIVE, SEED = number(int, 0), number(int, 1), number(int, 0)
FRACTION = number(float, 0, 1)


def pick_device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available to PyTorch")
    return torch.device(name)


MODELS = ("edvis-resnet18", "cam-resnet18")


def model_name(text: str) -> str:
    """An argparse ``type`` for ``--model``: one of :data:`MODELS` or ``torchvision:NAME`` (which
    names torchvision knows is checked when the model config is made)."""
    if text in MODELS or (text.startswith("torchvision:") and len(text) > len("torchvision:")):
        return text
    raise argparse.ArgumentTypeError(f"must be {', '.join(MODELS)} or torchvision:NAME, got {text!r}")
