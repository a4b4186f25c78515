"""Batch transforms on the training device: normalisation and augmentation.

Batches arrive as uint8 (B, H, W, 3) from ``edvis.loader``; everything here draws its random
numbers from a generator the training loop seeds, so results are a function of (seed, epoch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def to_float(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 (B, H, W, 3) → normalised float (B, 3, H, W), as the exported graph does it."""
    m = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images.permute(0, 3, 1, 2).float() / 255.0 - m) / s


def augment(
    x: Tensor, generator: torch.Generator, hflip: bool = True, rotation: float = 0.0
) -> Tensor:
    """Random horizontal flip and rotation by up to ±``rotation`` degrees, per image.

    ``x`` is a normalised float batch (B, 3, H, W); rotated-in corners are 0, the dataset's
    mean colour. Random numbers come from ``generator`` on the CPU, so the result does not
    depend on the device.
    """
    b = x.shape[0]
    if hflip:
        flip = torch.rand(b, generator=generator) < 0.5
        x = torch.where(flip.to(x.device).view(b, 1, 1, 1), x.flip(3), x)
    if rotation > 0:
        angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(rotation)
        cos, sin = torch.cos(angle), torch.sin(angle)
        zero = torch.zeros_like(cos)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x


def cutmix(
    x: Tensor, labels: Tensor, num_classes: int, generator: torch.Generator, prob: float
) -> tuple[Tensor, Tensor]:
    """CutMix (Yun et al., 2019): with probability ``prob``, paste a random box from a shuffled
    copy of the batch and mix the one-hot targets by area. Returns (images, soft targets (B, C)).

    Because the target splits by area, a class's evidence must sit where its pixels are: the
    pressure that makes maps point at objects, which plain classification does not exert on a
    2×2 bottleneck.
    """
    targets = F.one_hot(labels, num_classes).to(x.dtype)
    if prob <= 0 or float(torch.rand(1, generator=generator)) >= prob:
        return x, targets
    b, _, h, w = x.shape
    perm = torch.randperm(b, generator=generator).to(x.device)
    lam = float(torch.rand(1, generator=generator))  # Beta(1, 1)
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = (int(v) for v in torch.randint(0, h, (2,), generator=generator))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    kept = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return x, kept * targets + (1 - kept) * targets[perm]
