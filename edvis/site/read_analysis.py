"""Reader of ``RUN/analysis/analysis.json`` (``edvis analyze``): its numbers where the file exists
and covers the rendered epochs, else a note saying why the pages go without them."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from edvis.run import Run
from edvis.site.site_error import SiteError

log = logging.getLogger(__name__)

SCHEMAS = (1, 2)  # 2 adds fields (per-epoch top-5, flips, histogram, confusion); those read here are unchanged


@dataclass(frozen=True)
class Analysis:
    """analysis.json (``data``; None when absent or stale) and, without it, the reason (``note``)."""

    data: dict[str, Any] | None
    note: str = ""

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

    def pattern_threshold(self) -> str:
        """The map similarity from which a class's pattern counts as formed, as text."""
        definitions = (self.data or {}).get("definitions")
        if isinstance(definitions, dict) and "pattern_threshold" in definitions:
            return str(definitions["pattern_threshold"])
        return "the threshold"


def read_analysis(run: Run, epochs: list[int]) -> Analysis:
    """RUN/analysis/analysis.json when present and about the rendered epochs; else a note why not."""
    path = run.root / "analysis" / "analysis.json"
    if not path.is_file():
        return Analysis(None, "Run edvis analyze for these numbers.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SiteError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or data.get("schema") not in SCHEMAS:
        raise SiteError(f"{path} has schema {data.get('schema') if isinstance(data, dict) else None!r}; "
                        f"this edvis reads schemas {' and '.join(map(str, SCHEMAS))}: run `edvis analyze --force`")
    if data.get("epochs") != epochs:
        log.info(f"site: {path} covers epochs {data.get('epochs')}, the store {epochs}: its numbers are left out "
                 "(run `edvis analyze`)")
        return Analysis(None, "analysis.json is out of date: run edvis analyze again for these numbers.")
    return Analysis(data)

