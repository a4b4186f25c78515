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

A checkpoint is written atomically with its digest beside it (``epoch_NNN.pt.sha256``, see
edvis.run.digest), so a killed run never leaves one that looks complete but is not, and a
damaged one is refused when read. torch is imported only when a checkpoint is read or written:
the rest of ``edvis.run`` imports no torch.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from edvis.run import digest
from edvis.run.folder import RunError

__all__ = ["CHECKPOINT_SCHEMA", "checkpoint_digest", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_SCHEMA = 1
REBUILD = "delete it (and its .sha256) and rerun `edvis train` to train that epoch again"


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> str:
    """Write ``checkpoint`` (a dict as the table above describes) to ``path`` atomically, with its
    digest; returns the digest."""
    import torch

    buf = io.BytesIO()
    torch.save({"schema": CHECKPOINT_SCHEMA, **checkpoint}, buf)
    return digest.write_verified(path, buf.getvalue())


def checkpoint_digest(path: Path) -> str:
    """The checkpoint's digest, verified against its record (the bytes are read and hashed)."""
    try:
        return digest.read_verified(path, "checkpoint", REBUILD)[1]
    except FileNotFoundError:
        raise RunError(f"checkpoint not found: {path}") from None
    except digest.IntegrityError as e:
        raise RunError(str(e)) from None


def load_checkpoint(path: Path, map_location: Any = "cpu", with_digest: bool = False) -> Any:
    """Load a checkpoint written by :func:`save_checkpoint`, after verifying its digest; a RunError
    if it is damaged or foreign. With ``with_digest``: (checkpoint, digest of the bytes read)."""
    import torch

    try:
        data, sha = digest.read_verified(path, "checkpoint", REBUILD)
    except FileNotFoundError:
        raise RunError(f"checkpoint not found: {path}") from None
    except digest.IntegrityError as e:
        raise RunError(str(e)) from None
    try:
        ckpt = torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 (any failure to unpickle means "not readable")
        raise RunError(f"cannot read checkpoint {path} (not an edvis checkpoint): {e}; {REBUILD}") from None
    if not isinstance(ckpt, dict) or ckpt.get("schema") != CHECKPOINT_SCHEMA or "model_config" not in ckpt:
        raise RunError(f"{path} is not an edvis checkpoint of schema {CHECKPOINT_SCHEMA}")
    return (ckpt, sha) if with_digest else ckpt
