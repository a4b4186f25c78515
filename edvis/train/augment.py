"""Batch transforms on the training device: normalisation and augmentation.

Batches arrive as uint8 (B, H, W, 3) from ``edvis.train.loader``; everything here draws its random
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

    The target only says how much of each class there is, not where: on the embedded dataset
    CutMix did not make the maps point at objects (docs/model.md); :func:`mosaic` does better.
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


def mosaic(x: Tensor, labels: Tensor, generator: torch.Generator, prob: float) -> tuple[Tensor, Tensor | None]:
    """Quarter mosaics: with probability ``prob``, each image of the batch becomes a mosaic of four
    batch images, each shrunk to half size (2×2 average) and put in one quarter.

    Mosaic i holds image i top left and images ``perm_k[i]`` in the other quarters, for three
    random permutations of the batch, so every image appears once in every quarter. Returns the
    images (B, 3, H, W) and the quarter labels (B, 4) in the order top left, top right, bottom
    left, bottom right, or ``(x, None)`` when the batch is left as it is.

    The labels let the training loss ask each quarter of a class map to answer for its own
    quarter of the image (:func:`quarter_logits`, at any map side): a plain classification target never says
    *where*, and at 64 px the encoder's 2×2 cells each see the whole image.
    """
    if prob <= 0 or float(torch.rand(1, generator=generator)) >= prob:
        return x, None
    b = x.shape[0]
    # (4, B) on the CPU, where the generator draws; moved to the device in one copy.
    perms = torch.stack([torch.arange(b)] + [torch.randperm(b, generator=generator) for _ in range(3)]).to(x.device)
    small = F.avg_pool2d(x, 2)  # (B, 3, H/2, W/2)
    tl, tr, bl, br = (small[p] for p in perms)
    out = torch.cat([torch.cat([tl, tr], dim=3), torch.cat([bl, br], dim=3)], dim=2)
    return out, labels[perms.to(labels.device)].T  # (B, 4)


def quarter_logits(maps: Tensor) -> Tensor:
    """(B, C, S, S) maps → (B, 4, C): the mean of each quarter of every map, in the order top left,
    top right, bottom left, bottom right. Their mean over the quarters is the logits.

    Each cell counts by the share of its area inside the quarter: for an even S, the quarter's
    cells; for an odd S (a ResNet's 7×7 at 224 px), the middle row and column count half in each
    of their two quarters, the middle cell a quarter in each of the four.
    """
    s = maps.shape[-1]
    i = torch.arange(s, device=maps.device, dtype=maps.dtype)
    top = (s / 2 - i).clamp(0, 1)  # share of cell row i in [0, S/2): 1, …, 1, (½), 0, …, 0
    halves = torch.stack([top, 1 - top]) / (s / 2)  # (2, S): each half's weights, summing to 1
    return torch.einsum("bcij,pi,qj->bpqc", maps, halves, halves).flatten(1, 2)
