"""The run folder: where each stage reads and writes. Imports no torch.

```
RUN/
  config.json              resolved training configuration
  metrics.jsonl            one JSON object per finished epoch
  checkpoints/epoch_001.pt one per epoch (plain dicts, see edvis.train)
  onnx/epoch_001.onnx      one per epoch (see edvis.export)
  onnx/epoch_001.json      its sha256, source checkpoint and parity figures
  render/                  the render store (see edvis.run.store)
  analysis/                analysis.json and CSV tables (see edvis.analyze)
  onnx-int8/, render-int8/, analysis-int8/   the same for an approximation of the float32
                           files (``Run(root, "int8")``; fp16 likewise; see edvis.precision)
```

config.json carries ``"schema": RUN_SCHEMA``; a run written before the field existed counts as
schema 1. A run of another schema is refused with the path, not half read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edvis.errors import EdvisError, UsageError
from edvis.run import atomic

_EPOCH_FILE = re.compile(r"^epoch_(\d{3,})\.(pt|onnx)$")

RUN_SCHEMA = 1
# The precisions a run's ONNX files may come in; fp32 is what `edvis export` writes.
PRECISIONS = ("fp32", "fp16", "int8")
# The reference map sources of the faithfulness measures, beside the model and the explanation
# methods in faithfulness_dir: every other source is compared with them.
REFERENCE_MAPS = ("centre", "random")


class RunError(EdvisError):
    """A run folder is missing something or holds something unreadable; names the path."""


@dataclass(frozen=True)
class Run:
    root: Path
    # Which ONNX files, render store and analysis this names: fp32's are onnx/, render/ and
    # analysis/; another precision's carry its name (onnx-int8/, …) so results never mix.
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")

    def command(self, stage: str) -> str:
        """The command that writes this precision's files of ``stage`` (export, render, analyze),
        for messages: ```edvis export``` for float32, ```edvis export --precision int8``` else."""
        return f"`edvis {stage}`" if self.precision == "fp32" else f"`edvis {stage} --precision {self.precision}`"

    def _named(self, folder: str) -> Path:
        return self.root / (folder if self.precision == "fp32" else f"{folder}-{self.precision}")

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
        return self._named("onnx")

    @property
    def render_dir(self) -> Path:
        return self._named("render")

    @property
    def analysis_dir(self) -> Path:
        return self._named("analysis")

    def explain_dir(self, method: str) -> Path:
        """The render store of an explanation method (``edvis explain``): units of the same
        format as ``render/``'s, whose maps are the method's."""
        return self.root / "explain" / method

    @property
    def sanity_path(self) -> Path:
        """The maps of the sanity checks (``edvis explain --sanity``; :mod:`edvis.run.sanity_file`)."""
        return self.root / "explain" / "sanity.npz"

    @property
    def faithfulness_dir(self) -> Path:
        """Deletion, insertion and Average Drop curves (``edvis faithfulness``)."""
        return self.root / "faithfulness"

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoint_dir / f"epoch_{epoch:03d}.pt"

    def onnx(self, epoch: int) -> Path:
        return self.onnx_dir / f"epoch_{epoch:03d}.onnx"

    def export_record(self, epoch: int) -> Path:
        """JSON beside each ONNX file: its sha256, source checkpoint and parity figures."""
        return self.onnx_dir / f"epoch_{epoch:03d}.json"

    def read_export_record(self, epoch: int) -> dict[str, Any]:
        """The epoch's export record, after checking that its ONNX file has the recorded size."""
        path = self.export_record(epoch)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            size = record["size"]
        except (FileNotFoundError, ValueError, KeyError, TypeError) as e:
            raise RunError(f"missing or damaged export record {path} (run {self.command('export')}): {e}") from None
        onnx = self.onnx(epoch)
        try:
            actual = onnx.stat().st_size
        except FileNotFoundError:
            raise RunError(f"ONNX file missing: {onnx} (run {self.command('export')})") from None
        if actual != size:
            raise RunError(
                f"{onnx} is {actual} bytes but was exported as {size} (truncated or replaced); "
                f"run {self.command('export')} to write it again"
            )
        return record

    def read_onnx(self, epoch: int) -> tuple[bytes, dict[str, Any]]:
        """The epoch's ONNX bytes (read once, verified against the sha256 of its export record)
        and that record. A RunError naming the file and `edvis export` if they do not match."""
        from edvis.run.digest import IntegrityError, read_verified

        record = self.read_export_record(epoch)
        try:
            data, _ = read_verified(self.onnx(epoch), "ONNX file", f"run {self.command('export')} to export it again",
                                    expected=str(record.get("sha256")))
        except FileNotFoundError:
            raise RunError(f"ONNX file missing: {self.onnx(epoch)} (run {self.command('export')})") from None
        except IntegrityError as e:
            raise RunError(str(e)) from None
        return data, record

    def checkpoint_epochs(self) -> list[int]:
        return _epochs_in(self.checkpoint_dir, "pt")

    def onnx_epochs(self) -> list[int]:
        return _epochs_in(self.onnx_dir, "onnx")

    def read_config(self) -> dict[str, Any]:
        """The run's configuration; a RunError if it is missing, damaged or of another schema."""
        try:
            config = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"not a training run (no config.json): {self.root}") from None
        except (OSError, ValueError) as e:
            raise RunError(f"cannot read {self.config_path}: {e}") from None
        if not isinstance(config, dict):
            raise RunError(f"{self.config_path} does not hold a run configuration (a JSON object)")
        schema = config.get("schema", 1)
        if schema != RUN_SCHEMA:
            raise RunError(
                f"{self.config_path} has schema {schema!r}; this edvis reads run schema {RUN_SCHEMA}: "
                "use the edvis version that wrote it, or train into a new run folder"
            )
        return config

    def write_config(self, config: dict[str, Any]) -> None:
        """Write config.json (atomically), stamped with the run schema."""
        atomic.write_json(self.config_path, {**config, "schema": RUN_SCHEMA})

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


def check_model_config(found: dict[str, Any], expected: dict[str, Any], path: Path, where: str) -> None:
    """Raise a RunError naming ``path`` when the model it holds is not the one ``where`` describes.

    Both are ModelConfig dicts; they are compared as JSON, so tuples equal lists.
    """
    found, expected = json.loads(json.dumps(found)), json.loads(json.dumps(expected))
    diffs = [
        f"{key} {found.get(key)!r} (expected {expected.get(key)!r})"
        for key in sorted(set(found) | set(expected))
        if found.get(key) != expected.get(key)
    ]
    if diffs:
        raise RunError(f"{path} holds another model than {where}: {'; '.join(diffs)}")


def _epochs_in(folder: Path, ext: str) -> list[int]:
    if not folder.is_dir():
        return []
    epochs = []
    for p in folder.iterdir():
        m = _EPOCH_FILE.match(p.name)
        if m and m.group(2) == ext:
            epochs.append(int(m.group(1)))
    return sorted(epochs)


def model_label(model: dict[str, Any], fallback: str) -> str:
    """A run's model as tables name it: config.json's model name, and for the edvis network its
    variant, e.g. "edvis-resnet18 (paper)"; a stem or decoder other than the paper's is named too,
    e.g. "edvis-resnet18 (paper, nopool stem, resize decoder)"; ``fallback`` (the run folder's
    name) without a name."""
    name = str(model.get("name") or fallback)
    # Only the edvis network has variants; a CAM baseline's config carries the default unused.
    parts = [str(model["variant"])] if model.get("variant") and name == "edvis-resnet18" else []
    if model.get("stem") not in (None, "", "paper"):
        parts.append(f"{model['stem']} stem")
    if model.get("decoder") not in (None, "", "transposed"):
        parts.append(f"{model['decoder']} decoder")
    return f"{name} ({', '.join(parts)})" if parts else name


def select_epochs(spec: str | None, exported: list[int]) -> list[int]:
    """The epochs of ``exported`` that ``--epochs`` names: ``all`` (or None), or a comma list of epoch
    numbers and the words ``first`` and ``last``; an epoch not in ``exported`` is refused."""
    if not exported:
        return []
    if spec is None or spec.strip() == "all":
        return list(exported)
    out = []
    for item in (s.strip() for s in spec.split(",")):
        named = {"first": exported[0], "last": exported[-1]}
        if item in named:
            epoch = named[item]
        else:
            try:
                epoch = int(item)
            except ValueError:
                raise UsageError(f"--epochs must be all or a comma list of epochs, first and last, got {spec!r}") from None
            if epoch not in exported:
                raise UsageError(f"--epochs: there is no epoch {epoch} (epochs {exported[0]}…{exported[-1]})")
        if epoch not in out:
            out.append(epoch)
    return sorted(out)
