"""The encoder-decoder network whose last layer explains its own prediction.

ResNet-18 without its pooling and classifier encodes a 64×64 image to (512, 2, 2) (with the
paper's stem; see ``stem`` below). A 1×1 convolution expands that to one channel per class, two
transposed convolutions decode 2 → 4 → 8, and the last one is a *group* convolution (groups = classes), so each 8×8 output
map is computed from its own class's channel only. The logits are the maps' global average:
the maps are the model's explanation, with no gradient or classifier weight involved.

Two variants, named after their source:

* ``paper``: as the paper's text describes it: BatchNorm after each of the three layers,
  plain ``Dropout(0.3)`` after the first two.
* ``author``: as the author's code has it: ``InstanceNorm2d(affine=True)`` after the expand
  step, BatchNorm after the two transposed convolutions, ``Dropout2d(0.3)`` after the first two.

Two options refine the network beyond the paper's (the defaults are the paper's, and a config
without them, from before they existed, builds the same network):

* ``stem``: how the encoder starts. ``paper``: torchvision's stride-2 7×7 conv1 and the max-pool,
  encoder output H/32 (2×2 cells at 64 px, 8×8 maps). ``nopool``: the same conv1, no max-pool,
  H/16 (4×4 cells, 16×16 maps). ``cifar``: a stride-1 3×3 conv1 and no max-pool, H/8 (8×8 cells,
  32×32 maps), as is common for 64-px Tiny ImageNet; it costs about 16× the paper stem's compute.
* ``decoder``: ``transposed``, the paper's two transposed convolutions (kernel 4, stride 2), whose
  stride-2 phases leave a fixed checkerboard in the maps (Odena et al., 2016); or ``resize``: twice a
  nearest-neighbour ×2 upsampling followed by a 3×3 convolution, the second again a group
  convolution (groups = classes), so each class still has its own map.

The baseline the paper compares with, ``cam-resnet18``, is a plain ResNet-18 classifier (global
average pooling, one linear layer) whose maps are class activation maps (Zhou et al., 2016):
the same ``(logits, maps)`` interface, so every later stage treats both models alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet18

from edvis.errors import EdvisError, UsageError

VARIANTS = ("paper", "author")
STEMS = ("paper", "nopool", "cifar")
DECODERS = ("transposed", "resize")
# The encoder's output stride for each stem.
STEM_STRIDE = {"paper": 32, "nopool": 16, "cifar": 8}
# Fields added after checkpoints were first written: left out of ``to_dict()`` at their default,
# so a run with the paper's stem and decoder keeps the config it had before they existed.
_NEW_FIELD_DEFAULTS = {"stem": "paper", "decoder": "transposed"}
MODEL_NAMES = ("edvis-resnet18", "cam-resnet18")
TORCHVISION = "torchvision:"  # --model torchvision:NAME: edvis.models.torchvision_cam

# Tiny ImageNet channel statistics, as in the author's code.
TINY_MEAN = (0.4802, 0.4481, 0.3975)
TINY_STD = (0.2302, 0.2265, 0.2262)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored in every checkpoint.

    ``variant`` and ``dropout`` shape the edvis decoder only; ``cam-resnet18`` ignores them.
    ``stem`` shapes the encoder of both networks; ``decoder`` is the edvis network's.
    """

    num_classes: int
    name: str = "edvis-resnet18"
    variant: str = "paper"
    dropout: float = 0.3
    image_size: int = 64
    mean: tuple[float, float, float] = TINY_MEAN
    std: tuple[float, float, float] = TINY_STD
    stem: str = "paper"
    decoder: str = "transposed"

    def __post_init__(self) -> None:
        if self.name.startswith(TORCHVISION):
            from edvis.models.torchvision_cam import check_name

            check_name(self.name)
        elif self.name not in MODEL_NAMES:
            raise UsageError(f"model name must be one of {MODEL_NAMES} or torchvision:NAME, got {self.name!r}")
        if self.variant not in VARIANTS:
            raise UsageError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.stem not in STEMS:
            raise UsageError(f"stem must be one of {STEMS}, got {self.stem!r}")
        if self.decoder not in DECODERS:
            raise UsageError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.stem != "paper" and self.name.startswith(TORCHVISION):
            raise UsageError(f"stem {self.stem!r} is for edvis-resnet18 and cam-resnet18; {self.name} keeps its own")
        if self.decoder != "transposed" and self.name != "edvis-resnet18":
            raise UsageError(f"decoder {self.decoder!r} is the edvis network's; {self.name} has no decoder")
        if self.num_classes < 1:
            raise UsageError(f"num_classes must be positive, got {self.num_classes}")
        if self.image_size < 32:
            raise UsageError(f"image_size must be 32 or more, got {self.image_size}")
        if self.name == "edvis-resnet18" and self.image_size % 32:
            raise UsageError(f"image_size must be a multiple of 32, got {self.image_size}")

    @property
    def map_size(self) -> int:
        """Side of the square maps the model returns: a torchvision model's last feature map (found
        by a shape-only probe); the encoder's output side for the CAM baseline (ceil(H/32) with the
        paper's stem, ceil(H/16) nopool, H/8 cifar: each stride-2 step rounds up), four times
        that for edvis (decoder ×4)."""
        if self.name.startswith(TORCHVISION):
            from edvis.models.torchvision_cam import probe

            return probe(self.name, self.image_size)[0]
        cells = -(-self.image_size // STEM_STRIDE[self.stem])  # the last convolutional features
        if self.name == "cam-resnet18":
            return cells
        return cells * 4

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, default in _NEW_FIELD_DEFAULTS.items():
            if d[k] == default:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def resnet18_encoder(stem: str = "paper") -> nn.Sequential:
    """torchvision's ResNet-18 up to ``layer4``: (B, 3, H, W) → (B, 512, H/s, W/s), s the stem's
    stride (``STEM_STRIDE``). The indices stay those of the paper's stem whatever the stem (a
    dropped max-pool is an Identity), so weights and layer taps name the same modules."""
    net = resnet18(weights=None)
    conv1: nn.Module = net.conv1
    pool: nn.Module = net.maxpool
    if stem == "cifar":
        conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's
    if stem in ("nopool", "cifar"):
        pool = nn.Identity()
    return nn.Sequential(conv1, net.bn1, net.relu, pool, net.layer1, net.layer2, net.layer3, net.layer4)


def _upsample_x2(c: int, groups: int, kind: str) -> list[nn.Module]:
    """×2 upsampling of (B, c, h, w): a transposed convolution (kernel 4, stride 2, padding 1), or
    a nearest-neighbour resize then a 3×3 convolution (padding 1); no bias either way."""
    if kind == "resize":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, 1, 1, bias=False, groups=groups)]
    return [nn.ConvTranspose2d(c, c, 4, 2, 1, bias=False, groups=groups)]


class ClassMapDecoder(nn.Module):
    """(B, 512, h, w) → (B, C, 4h, 4w): expand to one channel per class, then decode twice.

    ``kind`` ``transposed`` (the paper's) or ``resize`` (see ``_upsample_x2``); the norms, ReLUs and
    dropouts after each step are the same for both, and so are the module names (expand, up1, up2).
    """

    def __init__(
        self,
        num_classes: int,
        expand_norm: Callable[[int], nn.Module],
        dropout: Callable[[], nn.Module],
        in_channels: int = 512,
        kind: str = "transposed",
    ) -> None:
        super().__init__()
        c = num_classes
        self.expand = nn.Sequential(
            nn.Conv2d(in_channels, c, 1, bias=False), expand_norm(c), nn.ReLU(inplace=True), dropout()
        )
        self.up1 = nn.Sequential(*_upsample_x2(c, 1, kind), nn.BatchNorm2d(c), nn.ReLU(inplace=True), dropout())
        # groups=c: class k's map sees only channel k of the layer below.
        self.up2 = nn.Sequential(*_upsample_x2(c, c, kind), nn.BatchNorm2d(c), nn.ReLU(inplace=True))

    def forward(self, f: Tensor) -> Tensor:
        x = self.expand(f)  # (B, C, h, w)
        x = self.up1(x)  # (B, C, 2h, 2w)
        return self.up2(x)  # (B, C, 4h, 4w)


class EncoderDecoderNet(nn.Module):
    """Returns ``(logits, maps)``: logits (B, C) are the spatial mean of maps (B, C, S, S)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        if config.variant == "paper":
            expand_norm: Callable[[int], nn.Module] = nn.BatchNorm2d
            dropout: Callable[[], nn.Module] = lambda: nn.Dropout(config.dropout)
        else:
            expand_norm = lambda c: nn.InstanceNorm2d(c, affine=True)
            dropout = lambda: nn.Dropout2d(config.dropout)
        self.encoder = resnet18_encoder(config.stem)
        self.decoder = ClassMapDecoder(config.num_classes, expand_norm, dropout, kind=config.decoder)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        maps = self.decoder(self.encoder(x))  # (B, C, S, S)
        return maps.mean(dim=(2, 3)), maps


class CamNet(nn.Module):
    """The baseline: ResNet-18 with global average pooling and a linear classifier.

    Returns ``(logits, maps)`` like :class:`EncoderDecoderNet`. ``maps`` (B, C, H/32, W/32) are
    class activation maps (Zhou et al., 2016, eq. 6), M_c(x, y) = Σ_k w_k^c f_k(x, y), over the
    last convolutional features f (B, 512, H/32, W/32), *plus the class bias* b_c. With the bias
    included, the spatial mean of a class's map is exactly its logit, as for the edvis model:
    GAP(M_c) = Σ_k w_k^c GAP(f_k) + b_c. Unlike edvis maps, CAMs may be negative.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = resnet18_encoder(config.stem)
        self.fc = nn.Linear(512, config.num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.encoder(x)  # (B, 512, h, w)
        logits = self.fc(f.mean(dim=(2, 3)))  # (B, C)
        # The classifier applied at every position: a 1×1 convolution with the fc weights.
        maps = F.conv2d(f, self.fc.weight[:, :, None, None], self.fc.bias)  # (B, C, h, w)
        return logits, maps


def build_model(config: ModelConfig | dict[str, Any]) -> nn.Module:
    """Build the network named by ``config`` (a ModelConfig or its ``to_dict()``)."""
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    if config.name.startswith(TORCHVISION):
        from edvis.models.torchvision_cam import TorchvisionCam

        return TorchvisionCam(config)
    if config.name == "cam-resnet18":
        return CamNet(config)
    return EncoderDecoderNet(config)


# torchvision's ResNet-18 module names → their index in resnet18_encoder()'s Sequential.
_ENCODER_INDEX = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}


class PretrainedError(EdvisError):
    """Pretrained weights that cannot be fetched or do not fit the encoder; names the cause."""


def encoder_state_from_resnet18(state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """Rename a torchvision ResNet-18 state dict to ``resnet18_encoder()``'s keys.

    ``fc.*`` (the ImageNet classifier) is dropped, a ``module.`` prefix (a DistributedDataParallel
    save) is stripped; any other key outside the encoder is an error naming ``source``.
    """
    out: dict[str, Tensor] = {}
    foreign = []
    for key, value in state.items():
        key = key.removeprefix("module.")
        head, _, rest = key.partition(".")
        if head == "fc":
            continue
        if head not in _ENCODER_INDEX or not rest:
            foreign.append(key)
            continue
        out[f"{_ENCODER_INDEX[head]}.{rest}"] = value
    if foreign:
        raise PretrainedError(
            f"{source}: not a torchvision ResNet-18 state dict (unexpected keys: {_few(foreign)})"
        )
    return out


def load_encoder_weights(model: nn.Module, state: dict[str, Any], source: str) -> str:
    """Copy a torchvision ResNet-18 state dict into ``model.encoder``, strictly.

    Every encoder parameter and buffer must be present with its exact shape; ``fc.*`` is
    ignored. The one exception is the ``cifar`` stem's 3×3 conv1, which the 7×7 ImageNet conv1
    does not fit: it keeps its initialisation (bn1 and everything after are loaded). Errors name
    ``source`` (the file or the weights' name). Returns what was left out, or "".
    """
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise PretrainedError(f"{source}: not a state dict (a dict of tensors)")
    renamed = encoder_state_from_resnet18(state, source)
    encoder: nn.Module = model.encoder  # type: ignore[assignment]
    own = encoder.state_dict()
    missing = [k for k in own if k not in renamed]
    if missing:
        raise PretrainedError(f"{source}: ResNet-18 weights missing: {_few(_torchvision_names(missing))}")
    kept = ""
    stem = getattr(getattr(model, "config", None), "stem", "paper")
    if stem == "cifar" and renamed["0.weight"].shape != own["0.weight"].shape:
        kept = (f"conv1 left at its initialisation: the cifar stem's conv1 is {tuple(own['0.weight'].shape)}, "
                f"the weights' {tuple(renamed['0.weight'].shape)}")
        renamed["0.weight"] = own["0.weight"]
    wrong = [k for k in own if renamed[k].shape != own[k].shape]
    if wrong:
        k = wrong[0]
        raise PretrainedError(
            f"{source}: {_torchvision_names([k])[0]} has shape {tuple(renamed[k].shape)}, "
            f"ResNet-18 needs {tuple(own[k].shape)}"
            + (f" (and {len(wrong) - 1} more mismatches)" if len(wrong) > 1 else "")
        )
    encoder.load_state_dict(renamed, strict=True)
    return kept


def _torchvision_names(keys: list[str]) -> list[str]:
    back = {str(i): name for name, i in _ENCODER_INDEX.items()}
    return [back[k.partition(".")[0]] + "." + k.partition(".")[2] for k in keys]


def _few(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


class Uint8Input(nn.Module):
    """Wrap a model so it takes what an image file holds: uint8 (B, H, W, 3) RGB.

    Normalisation then lives inside the exported graph, and the renderer needs no torch.
    """

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, 3, 1, 1)))
        self.register_buffer("shift", (torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1))

    def normalise(self, images: Tensor) -> Tensor:
        """uint8 (B, H, W, 3) → the float (B, 3, H, W) input the wrapped model takes."""
        return images.permute(0, 3, 1, 2).float() * self.scale - self.shift

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.model(self.normalise(images))


def pretrained_state(spec: str) -> tuple[dict[str, Tensor], str]:
    """The ResNet-18 weights ``--pretrained`` names, and a label for error messages.

    ``imagenet``: torchvision's ``ResNet18_Weights.IMAGENET1K_V1`` through its weights API
    (downloaded once into the torch hub cache, ``$TORCH_HOME/hub/checkpoints``). Anything else
    is the path of a saved torchvision ResNet-18 state dict. Raises PretrainedError naming the
    cause when the weights cannot be had: training never silently starts from scratch.
    """
    if spec == "imagenet":
        from torchvision.models import ResNet18_Weights

        weights = ResNet18_Weights.IMAGENET1K_V1
        return fetch_weights(weights, "torchvision's ResNet18_Weights.IMAGENET1K_V1", "ResNet-18 state dict"), \
            "torchvision ResNet18_Weights.IMAGENET1K_V1"
    return read_state_dict(spec, "a ResNet-18 state dict"), str(Path(spec).expanduser())


def fetch_weights(weights: Any, label: str, local: str) -> dict[str, Tensor]:
    """The state dict of torchvision ``weights`` (a weights enum member), from the torch hub cache
    or downloaded once into it; PretrainedError naming ``label``, its URL and the cause when it
    cannot be had, with the way round it (the cache, or ``--pretrained PATH`` to a local ``local``)."""
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; RuntimeError: bad hash
        cause = getattr(e, "reason", None) or e
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise PretrainedError(
            f"--pretrained imagenet: cannot fetch {label} from {weights.url} ({type(e).__name__}: {cause}); "
            f"without network access, put that file in {cache} or pass --pretrained PATH to a local {local}"
        ) from None


def read_state_dict(spec: str, what: str) -> Any:
    """What ``torch.load`` reads (weights only) from the file ``--pretrained spec`` names."""
    path = Path(spec).expanduser()
    if not path.is_file():
        raise PretrainedError(f"--pretrained: {path} is not a file (give 'imagenet' or the path of {what})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (unpickling fails in many ways: all mean "not readable")
        raise PretrainedError(f"--pretrained: cannot read a state dict from {path}: {_one_line(e)}") from None


def _one_line(e: Exception) -> str:
    """What ``torch.load`` said, as one line: its type and first line of text (the weights-only
    refusal's own reason when that is what it is; its text spans a dozen lines)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(e).splitlines()]
    lines = [line for line in lines if line]
    refusal = [line for line in lines if line.startswith("WeightsUnpickler error:")]
    if refusal:
        return (refusal[0].removeprefix("WeightsUnpickler error: ").split(". Please")[0]
                + " (not a plain state dict of tensors: save net.state_dict())")
    text = lines[0][:200] if lines else ""
    return f"not a file torch.save wrote ({type(e).__name__}{': ' + text if text else ''})"


def load_pretrained(model: nn.Module, spec: str) -> str:
    """Start ``model``'s encoder from the weights ``spec`` names (see :func:`pretrained_state`).

    Returns a description of the weights loaded (and of what was not, for the cifar stem's conv1).
    A torchvision model starts from its own weights (:meth:`TorchvisionCam.load_pretrained`).
    """
    own = getattr(model, "load_pretrained", None)
    if own is not None:
        return str(own(spec))
    state, source = pretrained_state(spec)
    kept = load_encoder_weights(model, state, source)
    return f"{source} ({kept})" if kept else source
