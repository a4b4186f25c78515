"""One optimiser step and one evaluation pass: what the epoch loop (:mod:`edvis.train.loop`) runs
per batch.

Losses are computed in float32 whatever the forward pass ran in; evaluation adds sums (never
averages) over the processes of a torch.distributed group.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edvis.models import ModelConfig
from edvis.train.augment import quarter_logits, to_float
from edvis.train.loader import unpack
from edvis.train.parallel import all_sum


def train_step(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    x: Tensor,
    targets: Tensor,
    amp: bool,
    quarters: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One optimiser step on (B, 3, H, W) images and (B,) labels or (B, C) soft targets.

    With ``quarters`` (B, 4), the labels of a :func:`edvis.train.augment.mosaic` batch, the loss adds
    the cross-entropy of each quarter of the maps (:func:`edvis.train.augment.quarter_logits`) against
    its quarter's label, and the returned logits are the quarters' (B, 4, C). Otherwise returns
    the logits (B, C). ``amp`` runs the forward pass under float16 autocast (CUDA); the loss is
    always computed in float32.
    """
    with torch.autocast(x.device.type, dtype=torch.float16, enabled=amp):
        logits, maps = net(x)
    loss = F.cross_entropy(logits.float(), targets)
    if quarters is not None:
        logits = quarter_logits(maps.float())  # (B, 4, C)
        loss = loss + F.cross_entropy(logits.flatten(0, 1), quarters.flatten())
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss.detach(), logits.detach()


def topk_hits(logits: Tensor, labels: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(N,) bool each: the label is the top class, and among the ``k`` top classes of (N, C) logits."""
    topk = logits.topk(k, dim=1).indices
    return topk[:, 0] == labels, (topk == labels[:, None]).any(1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    mc: ModelConfig,
    device: torch.device,
    amp: bool = False,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Loss, top-1, top-5 and per-class top-1 over the images ``loader`` yields, in eval mode.

    Under torch.distributed each process evaluates its own shard and the sums (losses, counts of
    hits, images per class) are added over processes before dividing: never an average of
    averages.
    """
    model.eval()
    num_classes = mc.num_classes
    sums = torch.zeros(4, dtype=torch.float64)  # images, loss, top-1 hits, top-5 hits
    hits = torch.zeros(num_classes, dtype=torch.int64)
    counts = torch.zeros(num_classes, dtype=torch.int64)
    k = min(5, num_classes)
    for batch in loader:
        images, labels = unpack(batch)
        x = to_float(images.to(device, non_blocking=True), mc.mean, mc.std)  # (B, 3, H, W)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits, _ = model(x)
        logits = logits.float().cpu()  # (B, C)
        right1, right5 = topk_hits(logits, labels, k)
        sums += torch.tensor([
            len(labels),
            F.cross_entropy(logits, labels, reduction="sum").item(),
            int(right1.sum()),
            int(right5.sum()),
        ], dtype=torch.float64)
        hits += torch.bincount(labels[right1], minlength=num_classes)
        counts += torch.bincount(labels, minlength=num_classes)
    sums, hits, counts = (all_sum(t, device) for t in (sums, hits, counts))
    n = sums[0].item()
    per_class = [(h / c) if c else None for h, c in zip(hits.tolist(), counts.tolist())]
    return {"loss": sums[1].item() / n, "top1": sums[2].item() / n, "top5": sums[3].item() / n,
            "class_top1": per_class}
