"""The run folder: where each stage reads and writes. Imports no torch.

```
RUN/
  config.json              resolved training configuration
  metrics.jsonl            one JSON object per finished epoch
  checkpoints/epoch_001.pt one per epoch (plain dicts, see edvis.train)
  onnx/epoch_001.onnx      one per epoch (see edvis.export)
  onnx/epoch_001.json      its sha256, source checkpoint and parity figures
  render/                  the render store (see edvis.store)
  analysis/                analysis.json and CSV tables (see edvis.analyze)
```
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edvis import atomic

_EPOCH_FILE = re.compile(r"^epoch_(\d{3,})\.(pt|onnx)$")


class RunError(Exception):
    """A run folder is missing something or holds something unreadable; names the path."""


@dataclass(frozen=True)
class Run:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def onnx_dir(self) -> Path:
        return self.root / "onnx"

    @property
    def render_dir(self) -> Path:
        return self.root / "render"

    @property
    def analysis_dir(self) -> Path:
        return self.root / "analysis"

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoint_dir / f"epoch_{epoch:03d}.pt"

    def onnx(self, epoch: int) -> Path:
        return self.onnx_dir / f"epoch_{epoch:03d}.onnx"

    def export_record(self, epoch: int) -> Path:
        """JSON beside each ONNX file: its sha256, source checkpoint and parity figures."""
        return self.onnx_dir / f"epoch_{epoch:03d}.json"

    def read_export_record(self, epoch: int) -> dict[str, Any]:
        path = self.export_record(epoch)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError) as e:
            raise RunError(f"missing or damaged export record {path} (run `edvis export`): {e}") from None

    def checkpoint_epochs(self) -> list[int]:
        return _epochs_in(self.checkpoint_dir, "pt")

    def onnx_epochs(self) -> list[int]:
        return _epochs_in(self.onnx_dir, "onnx")

    def read_config(self) -> dict[str, Any]:
        try:
            return json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"not a training run (no config.json): {self.root}") from None
        except (OSError, ValueError) as e:
            raise RunError(f"cannot read {self.config_path}: {e}") from None

    def read_metrics(self) -> list[dict[str, Any]]:
        """The per-epoch metrics, in epoch order; [] if training has not finished an epoch."""
        if not self.metrics_path.exists():
            return []
        rows = []
        for n, line in enumerate(self.metrics_path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise RunError(f"{self.metrics_path}:{n}: not JSON: {e}") from None
        return sorted(rows, key=lambda r: r["epoch"])

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        # Rewritten whole (it is small) so it always matches the checkpoints on disk.
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in sorted(rows, key=lambda r: r["epoch"]))
        atomic.write_text(self.metrics_path, text)


def _epochs_in(folder: Path, ext: str) -> list[int]:
    if not folder.is_dir():
        return []
    epochs = []
    for p in folder.iterdir():
        m = _EPOCH_FILE.match(p.name)
        if m and m.group(2) == ext:
            epochs.append(int(m.group(1)))
    return sorted(epochs)
