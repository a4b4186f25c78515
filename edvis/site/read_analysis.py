"""Reader of ``RUN/analysis/analysis.json`` (``edvis analyze``, schema 2): the one owner of every
aggregate number the site shows (accuracy, flips, confusions, histogram, calibration, Table 1).
The site refuses to build without it, or when it is stale or of another schema."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edvis.run import RenderStore, Run, digest
from edvis.site.site_error import SiteError

SCHEMA = 2


@dataclass(frozen=True)
class Analysis:
    """analysis.json (``data``); ``note`` is kept empty (the pages' "run edvis analyze" notes)."""

    data: dict[str, Any]
    note: str = ""
    sha256: str = ""  # of the bytes read (verified against the digest recorded beside it)

    def __bool__(self) -> bool:
        return bool(self.data)

    def _list(self, key: str) -> list[Any]:
        value = (self.data or {}).get(key, [])
        return value if isinstance(value, list) else []

    def class_entries(self) -> dict[int, dict[str, Any]]:
        """Every entry of ``classes`` by class index (the last of any repeated index)."""
        return {c.get("index"): c for c in self._list("classes") if isinstance(c, dict)}

    def table(self) -> list[dict[str, Any]]:
        """The per-setting table (calibration, map correlation, ...) at the final epoch."""
        return [row for row in self._list("table") if isinstance(row, dict)]

    def setting(self, name: str) -> dict[str, Any]:
        """The table's row of setting ``name`` ({} when there is none)."""
        return {row.get("setting"): row for row in self.table()}.get(name, {})

    def reliability(self, setting: str) -> dict[str, Any] | None:
        """The reliability bins of ``setting``, when present."""
        return next((x for x in self._list("reliability") if isinstance(x, dict) and x.get("setting") == setting), None)

    def models(self) -> list[dict[str, Any]]:
        """Localisation per model (this one first)."""
        return [m for m in self._list("models") if isinstance(m, dict)]

    def has_boxes(self) -> bool:
        loc = (self.data or {}).get("localisation")
        return isinstance(loc, dict) and bool(loc.get("has_boxes"))

    def corruption(self) -> dict[str, Any] | None:
        value = (self.data or {}).get("corruption")
        return value if isinstance(value, dict) else None

    def classes_count(self) -> int:
        return int((self.data or {}).get("classes_count") or 0)

    def epoch_row(self, setting: str, epoch: int) -> dict[str, Any]:
        """``epoch_rows``' row of ``setting`` at ``epoch`` ({} when there is none)."""
        return next((row for row in self._list("epoch_rows") if isinstance(row, dict)
                     and row.get("setting") == setting and row.get("epoch") == epoch), {})

    def accuracy_by_epoch(self, setting: str, epochs: list[int]) -> tuple[list[float], list[float]]:
        """Top-1 and top-5 of ``setting`` at each of ``epochs``."""
        rows = [self.epoch_row(setting, e) for e in epochs]
        return [row.get("top1") for row in rows], [row.get("top5") for row in rows]  # type: ignore[misc]

    def flips(self, setting: str, epoch: int) -> dict[str, int]:
        """The flip counts of a perturbed setting at ``epoch`` against the clean images."""
        row = self.epoch_row(setting, epoch)
        return {k: int(row.get(k) or 0) for k in ("right_to_wrong", "wrong_to_right", "wrong_to_wrong")}

    def class_top1(self, setting: str, classes: int, epoch: int) -> np.ndarray:
        """(C,) top-1 of each class under ``setting`` at ``epoch``; NaN where there is none (the
        classes' entries hold the final epoch only)."""
        out = np.full(classes, np.nan)
        if epoch != (self.data or {}).get("final_epoch"):
            return out
        for c, entry in self.class_entries().items():
            row = next((x for x in entry.get("settings", []) if x.get("setting") == setting), {})
            if isinstance(c, int) and 0 <= c < classes and row.get("top1") is not None:
                out[c] = row["top1"]
        return out

    def confused_pairs(self, setting: str) -> list[dict[str, Any]]:
        """The most confused pairs of classes under ``setting`` at the final epoch, most first."""
        entry = next((x for x in self._list("confused_pairs") if isinstance(x, dict) and x.get("setting") == setting), {})
        pairs = entry.get("pairs", [])
        return [p for p in pairs if isinstance(p, dict)]

    def histogram(self, setting: str) -> tuple[list[int], list[int]]:
        """The confidence histogram of ``setting`` at the final epoch: (right counts, wrong counts)."""
        h = next((x for x in self._list("confidence_histogram")
                  if isinstance(x, dict) and x.get("setting") == setting), {})
        return list(h.get("right", [])), list(h.get("wrong", []))

    def confusion(self) -> np.ndarray:
        """The clean confusion matrix at the final epoch, [true, predicted]."""
        value = (self.data or {}).get("confusion")
        return np.asarray(value.get("matrix", []) if isinstance(value, dict) else [], dtype=np.int64)

    def compare_settings(self, epoch: int) -> dict[str, tuple[float, float]] | None:
        """The compared run's (top-1, top-5) per setting at its final ``epoch``; None without them."""
        value = (self.data or {}).get("compare")
        rows = value.get("settings") if isinstance(value, dict) else None
        if not isinstance(rows, list) or not rows or any(r.get("epoch") != epoch for r in rows):
            return None
        return {str(r["setting"]): (r["top1"], r["top5"]) for r in rows}

    def faithfulness(self) -> dict[str, Any] | None:
        """The deletion, insertion and Average Drop record (``edvis faithfulness``), when measured."""
        value = (self.data or {}).get("faithfulness")
        return value if isinstance(value, dict) and value.get("rows") else None

    def sanity(self) -> dict[str, Any] | None:
        """The sanity checks' record (``edvis explain --sanity``), when present."""
        value = (self.data or {}).get("sanity")
        return value if isinstance(value, dict) and value.get("randomisation") else None

    def pattern_threshold(self) -> str:
        """The map similarity from which a class's pattern counts as formed, as text."""
        definitions = (self.data or {}).get("definitions")
        if isinstance(definitions, dict) and "pattern_threshold" in definitions:
            return str(definitions["pattern_threshold"])
        return "the threshold"


def read_analysis(run: Run, store: RenderStore, epochs: list[int]) -> Analysis:
    """RUN/analysis/analysis.json, schema 2, computed from exactly the units ``store`` holds at
    ``epochs``, its bytes verified against its recorded digest; else a SiteError."""
    path = run.analysis_dir / "analysis.json"
    if not path.is_file():
        raise SiteError(f"{path} is missing: run `edvis analyze` first")
    try:
        raw, sha = digest.read_verified(path, "analysis", "run `edvis analyze --force`")
        data = json.loads(raw.decode("utf-8"))
    except digest.IntegrityError as e:
        raise SiteError(str(e)) from None
    except (OSError, ValueError) as e:
        raise SiteError(f"cannot read {path}: {e}: run `edvis analyze --force`") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise SiteError(f"{path} has schema {data.get('schema') if isinstance(data, dict) else None!r}; "
                        f"this edvis reads schema {SCHEMA}: run `edvis analyze --force`")
    if data.get("epochs") != epochs:
        raise SiteError(f"{path} covers epochs {data.get('epochs')}, the render store {epochs}: "
                        "it is out of date: run `edvis analyze`")
    check_inputs(path, listed_inputs(data, "render", path), store)
    return Analysis(data, sha256=sha)


def listed_inputs(data: dict[str, Any], key: str, path: Path) -> dict[str, str]:
    inputs = data.get("inputs")
    listed = inputs.get(key) if isinstance(inputs, dict) else None
    if not isinstance(listed, dict) or not listed:
        raise SiteError(f"{path} does not list the files it was computed from: run `edvis analyze --force`")
    return {str(k): str(v) for k, v in listed.items()}


def check_inputs(path: Path, listed: dict[str, str], store: RenderStore, every: bool = True) -> None:
    """Refuse when the render units ``store`` holds are not those analysis.json (``path``) lists
    as its inputs, digest for digest (the digests recorded when the units were written; every
    unit the site reads is verified against them in turn). Without ``every``, units it does not
    list are allowed (a compared run's: only some of them are analysed)."""
    units = {f"{u.key}.npz": store.path(u) for u in store.units()}
    analysed = {k for k in listed if k.endswith(".npz") and not k.startswith("layers/")}
    for key in sorted(analysed - units.keys()):
        raise SiteError(f"render unit missing: {store.root / key} ({path} was computed from it): run `edvis render`")
    for key in sorted(units.keys() - analysed) if every else []:
        raise SiteError(f"{path} was computed without render unit {units[key]}: it is out of date: run `edvis analyze`")
    for key in sorted(analysed):
        if digest.recorded_digest(units[key]) != listed[key]:
            raise SiteError(f"render unit {units[key]} is not the one {path} was computed from (rendered again "
                            "since?): run `edvis analyze`")


def check_read(analysis: Analysis, store: RenderStore, key: str = "render") -> None:
    """After the pages are made: every unit the site read from ``store`` had the bytes
    analysis.json was computed from (a unit rewritten during the build is caught here)."""
    inputs = analysis.data.get("inputs", {})
    listed = inputs.get(key, {}) if isinstance(inputs, dict) else {}
    for name, sha in store.verified().items():
        if name in listed and listed[name] != sha:
            raise SiteError(f"render unit {store.root / name} changed while the site was built: build it again")
