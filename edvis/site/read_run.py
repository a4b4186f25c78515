"""Reader of the run folder: config.json, metrics.jsonl, the file hashes, and the dataset as the
render store's manifest describes it (class names, validation files, labels, boxes)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edvis.run import RenderStore, Run, Unit
from edvis.site.read_store import CLEAN
from edvis.site.site_error import SiteError
from edvis.site.text import class_name


@dataclass(frozen=True)
class RunInfo:
    """The run's own files: what it is, how it was trained, and the sha256 of what it holds."""

    name: str
    model_name: str
    variant: str
    recipe: str
    epochs_planned: str
    config_rows: list[tuple[str, str]]
    metrics: list[dict[str, Any]]
    hashes: list[tuple[str, str]] = field(default_factory=list)  # (path in the run, sha256)
    stem: str = ""  # the encoder's stem and the edvis decoder, "" when the config has none (the paper's)
    decoder: str = ""
    onnx_hashes: list[tuple[int, str]] = field(default_factory=list)  # (epoch, sha256 or "")


@dataclass(frozen=True)
class Dataset:
    """The validation set the run was rendered on, from the store's manifest (and the config)."""

    root: str
    layout: str
    fingerprint: str
    wnids: list[str]
    names: list[str]
    labels: np.ndarray = field(repr=False)  # (N,) int64
    files: list[str] = field(repr=False)
    boxes: list[tuple[int, int, int, int] | None] = field(repr=False)
    num_classes: int = 0
    image_size: int = 64
    map_size: int = 8

    @property
    def num_val(self) -> int:
        return len(self.files)

    def name(self, k: int) -> str:
        return class_name(self.names, k)

    def truth(self, i: int) -> str:
        """The name of validation image ``i``'s class."""
        return self.names[self.labels[i]]


def read_config(run: Run) -> dict[str, Any]:
    return run.read_config() if run.config_path.exists() else {}


def read_run(run: Run, store: RenderStore, epochs: list[int], config: dict[str, Any]) -> RunInfo:
    """The run's config, metrics and hashes (the ONNX files of the rendered ``epochs``)."""
    model = config.get("model", {}) if isinstance(config.get("model"), dict) else {}
    hashes, onnx = _hashes(run, store, epochs)
    return RunInfo(
        name=run.root.resolve().name,
        model_name=str(model.get("name", "")),
        # Only the edvis network has variants; a CAM baseline's config carries the default unused.
        variant=str(model.get("variant", "")) if model.get("name", "edvis-resnet18") == "edvis-resnet18" else "",
        recipe=str(_get(config, "train", "recipe", default="")),
        epochs_planned=str(_get(config, "train", "epochs", default="")),
        config_rows=_flatten(config),
        metrics=run.read_metrics(),
        hashes=hashes,
        stem=str(model.get("stem", "")),
        decoder=str(model.get("decoder", "")),
        onnx_hashes=onnx,
    )


def read_dataset(manifest: dict[str, Any], config: dict[str, Any], data_root: Path | None) -> Dataset:
    """The manifest's validation set; class names fall back to wnids, then to ``class k``."""
    dataset = manifest.get("dataset", {})
    val = manifest["val"]
    files = [str(f) for f in val["files"]]
    wnids = [str(w) for w in dataset.get("wnids", [])]
    names = [str(n) for n in dataset.get("names", [])] or list(wnids)
    num_classes = len(wnids) or len(names) or int(_get(config, "model", "num_classes", default=0))
    wnids += [""] * (num_classes - len(wnids))
    names += [wnids[i] or f"class {i}" for i in range(len(names), num_classes)]
    return Dataset(
        root=str(data_root or dataset.get("root") or _get(config, "dataset", "root", default="")),
        layout=str(dataset.get("layout", _get(config, "dataset", "layout", default=""))),
        fingerprint=str(dataset.get("fingerprint", _get(config, "dataset", "fingerprint", default=""))),
        wnids=wnids,
        names=names,
        labels=np.asarray(val["labels"], dtype=np.int64),
        files=files,
        boxes=[tuple(int(v) for v in b) if b else None for b in val.get("boxes", [None] * len(files))],
        num_classes=num_classes,
        image_size=int(manifest.get("image_size", 64)),
        map_size=int(manifest.get("map_size", 8)),
    )


def _hashes(run: Run, store: RenderStore, epochs: list[int]) -> tuple[list[tuple[str, str]], list[tuple[int, str]]]:
    """sha256 of the run's small files, and of each rendered epoch's ONNX file as the renderer
    computed it from the bytes it ran (kept in the clean unit, whose own bytes are verified);
    an export record that names another file is refused: the units were not made from it."""
    files = []
    for path in (run.config_path, run.metrics_path):
        if path.is_file():
            files.append((path.relative_to(run.root).as_posix(), hashlib.sha256(path.read_bytes()).hexdigest()))
    onnx = []
    for epoch in epochs:
        sha = str((store.meta(Unit(CLEAN, epoch)) or {}).get("onnx_sha256", ""))
        if run.export_record(epoch).is_file():
            recorded = ""
            with contextlib.suppress(Exception):
                recorded = str(run.read_export_record(epoch).get("sha256", ""))
            if recorded != sha:
                raise SiteError(f"{store.path(Unit(CLEAN, epoch))} was rendered from another ONNX file than "
                                f"{run.onnx(epoch)} (exported again since?): run `edvis render`")
        onnx.append((epoch, sha))
    return files, onnx


def check_dataset(dataset: Dataset, given: Path | None) -> None:
    """Refuse a dataset folder that is not the one the store was rendered from: its fingerprint
    (classes, every file's path, label, box and size) must be the manifest's."""
    from edvis.data import DatasetError, open_dataset  # the index only; no image is opened

    where = f"--data {given}" if given is not None else f"the dataset folder {dataset.root}"
    try:
        found = open_dataset(dataset.root).fingerprint()
    except DatasetError as e:
        hint = "" if given is not None else " (give its new place with --data)"
        raise SiteError(f"{where}: {e}{hint}") from None
    if found != dataset.fingerprint:
        raise SiteError(f"{where} is not the dataset this run was rendered from: its fingerprint is {found[:12]}, "
                        f"the render store's {dataset.fingerprint[:12]}")


def _get(config: dict[str, Any], *keys: str, default: Any = None) -> Any:
    node: Any = config
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


# Settings that hold a path of the machine that trained: a hosted site shows only the last part.
MACHINE_PATHS = frozenset({"dataset.root", "train.pretrained"})


def local_name(path: str) -> str:
    """The last part of a path of the building machine (``/home/me/data/tiny`` → ``tiny``), which
    is all a hosted site says of it; text that is no path comes back as it is."""
    return Path(path).name if "/" in path or "\\" in path else path


def _flatten(config: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The config as (dotted key, value text) rows, nested dicts expanded, keys sorted."""
    rows = []
    for key in sorted(config, key=str):
        value = config[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(_flatten(value, f"{name}."))
        elif isinstance(value, str):
            rows.append((name, local_name(value) if name in MACHINE_PATHS else value))
        else:
            rows.append((name, json.dumps(value, sort_keys=True, ensure_ascii=False)))
    return rows
