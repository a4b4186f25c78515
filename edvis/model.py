"""The encoder-decoder network whose last layer explains its own prediction.

ResNet-18 without its pooling and classifier encodes a 64×64 image to (512, 2, 2). A 1×1
convolution expands that to one channel per class, two transposed convolutions decode
2 → 4 → 8, and the last one is a *group* convolution (groups = classes), so each 8×8 output
map is computed from its own class's channel only. The logits are the maps' global average:
the maps are the model's explanation, with no gradient or classifier weight involved.

Two variants, named after their source:

* ``paper``: as the paper's text describes it: BatchNorm after each of the three layers,
  plain ``Dropout(0.3)`` after the first two.
* ``author``: as the author's code has it: ``InstanceNorm2d(affine=True)`` after the expand
  step, BatchNorm after the two transposed convolutions, ``Dropout2d(0.3)`` after the first two.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torchvision.models import resnet18

VARIANTS = ("paper", "author")
MODEL_NAMES = ("edvis-resnet18",)

# Tiny ImageNet channel statistics, as in the author's code.
TINY_MEAN = (0.4802, 0.4481, 0.3975)
TINY_STD = (0.2302, 0.2265, 0.2262)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored in every checkpoint."""

    num_classes: int
    name: str = "edvis-resnet18"
    variant: str = "author"
    dropout: float = 0.3
    image_size: int = 64
    mean: tuple[float, float, float] = TINY_MEAN
    std: tuple[float, float, float] = TINY_STD

    def __post_init__(self) -> None:
        if self.name not in MODEL_NAMES:
            raise ValueError(f"model name must be one of {MODEL_NAMES}, got {self.name!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")
        if self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {self.image_size}")

    @property
    def map_size(self) -> int:
        return self.image_size // 8  # encoder /32, decoder ×4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def resnet18_encoder() -> nn.Sequential:
    """torchvision's ResNet-18 up to ``layer4``: (B, 3, H, W) → (B, 512, H/32, W/32)."""
    net = resnet18(weights=None)
    return nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
    )


class ClassMapDecoder(nn.Module):
    """(B, 512, 2, 2) → (B, C, 8, 8): expand to one channel per class, then decode twice."""

    def __init__(
        self,
        num_classes: int,
        expand_norm: Callable[[int], nn.Module],
        dropout: Callable[[], nn.Module],
        in_channels: int = 512,
    ) -> None:
        super().__init__()
        c = num_classes
        self.expand = nn.Sequential(
            nn.Conv2d(in_channels, c, 1, bias=False), expand_norm(c), nn.ReLU(inplace=True), dropout()
        )
        self.up1 = nn.Sequential(
            nn.ConvTranspose2d(c, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True), dropout()
        )
        # groups=c: class k's map sees only channel k of the layer below.
        self.up2 = nn.Sequential(
            nn.ConvTranspose2d(c, c, 4, 2, 1, bias=False, groups=c), nn.BatchNorm2d(c), nn.ReLU(inplace=True)
        )

    def forward(self, f: Tensor) -> Tensor:
        x = self.expand(f)  # (B, C, 2, 2)
        x = self.up1(x)  # (B, C, 4, 4)
        return self.up2(x)  # (B, C, 8, 8)


class EncoderDecoderNet(nn.Module):
    """Returns ``(logits, maps)``: logits (B, C) are the spatial mean of maps (B, C, 8, 8)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        if config.variant == "paper":
            expand_norm: Callable[[int], nn.Module] = nn.BatchNorm2d
            dropout: Callable[[], nn.Module] = lambda: nn.Dropout(config.dropout)
        else:
            expand_norm = lambda c: nn.InstanceNorm2d(c, affine=True)
            dropout = lambda: nn.Dropout2d(config.dropout)
        self.encoder = resnet18_encoder()
        self.decoder = ClassMapDecoder(config.num_classes, expand_norm, dropout)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        maps = self.decoder(self.encoder(x))  # (B, C, 8, 8)
        return maps.mean(dim=(2, 3)), maps


def build_model(config: ModelConfig | dict[str, Any]) -> nn.Module:
    """Build the network named by ``config`` (a ModelConfig or its ``to_dict()``)."""
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    return EncoderDecoderNet(config)


class Uint8Input(nn.Module):
    """Wrap a model so it takes what an image file holds: uint8 (B, H, W, 3) RGB.

    Normalisation then lives inside the exported graph, and the renderer needs no torch.
    """

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, 3, 1, 1)))
        self.register_buffer("shift", (torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = images.permute(0, 3, 1, 2).float() * self.scale - self.shift  # (B, 3, H, W)
        return self.model(x)
