"""The checkpoint format: one plain dict per epoch, ``RUN/checkpoints/epoch_NNN.pt``.

| key            | holds                                                            |
| -------------- | ---------------------------------------------------------------- |
| `schema`       | ``CHECKPOINT_SCHEMA``                                            |
| `epoch`        | the epoch just finished (1-based)                                |
| `model_config` | the ModelConfig dict that rebuilds the network (edvis.models)    |
| `train_config` | the TrainConfig dict it was trained with                         |
| `runtime`      | how it ran (workers, device, processes): a record, not binding   |
| `dataset`      | the dataset record (layout, fingerprint, classes)                |
| `model`        | the network's state dict                                         |
| `optimizer`    | the optimiser's state dict                                       |
| `scaler`       | the gradient scaler's state dict under AMP, else None            |
| `metrics`      | the epoch's metrics row, as metrics.jsonl has it                 |

A checkpoint is written atomically, so a killed run never leaves one that looks complete but is
not. torch is imported only when a checkpoint is read or written: the rest of ``edvis.run``
imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edvis.run import atomic
from edvis.run.folder import RunError

__all__ = ["CHECKPOINT_SCHEMA", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_SCHEMA = 1


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    """Write ``checkpoint`` (a dict as the table above describes) to ``path`` atomically."""
    import torch

    with atomic.atomic_path(path) as tmp:
        torch.save({"schema": CHECKPOINT_SCHEMA, **checkpoint}, tmp)


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; a RunError if it is damaged or foreign."""
    import torch

    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise RunError(f"checkpoint not found: {path}") from None
    except Exception as e:  # noqa: BLE001 (any failure to unpickle means "not readable")
        raise RunError(f"cannot read checkpoint {path} (damaged or not an edvis checkpoint): {e}; "
                       "if it was cut short, delete it to resume from the epoch before") from None
    if not isinstance(ckpt, dict) or ckpt.get("schema") != CHECKPOINT_SCHEMA or "model_config" not in ckpt:
        raise RunError(f"{path} is not an edvis checkpoint of schema {CHECKPOINT_SCHEMA}")
    return ckpt
