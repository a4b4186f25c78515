"""The networks: built from a plain config dict, shared by training, export and explanation.

``build_model(cfg)`` rebuilds any network a checkpoint names; ``Uint8Input`` wraps one so that it
takes what an image file holds (uint8 NHWC RGB), as the exported graph does.
"""

from edvis.models.networks import (
    DECODERS,
    MODEL_NAMES,
    STEMS,
    TINY_MEAN,
    TINY_STD,
    VARIANTS,
    CamNet,
    ClassMapDecoder,
    EncoderDecoderNet,
    ModelConfig,
    PretrainedError,
    Uint8Input,
    build_model,
    load_pretrained,
)
from edvis.models.torchvision_cam import HeadError, TorchvisionCam, torchvision_taps

__all__ = [
    "DECODERS", "STEMS",
    "MODEL_NAMES", "TINY_MEAN", "TINY_STD", "VARIANTS", "CamNet", "ClassMapDecoder", "EncoderDecoderNet", "ModelConfig",
    "HeadError", "PretrainedError", "TorchvisionCam", "Uint8Input", "build_model", "load_pretrained", "torchvision_taps",
]
