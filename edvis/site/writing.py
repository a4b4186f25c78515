"""Writing the site's files: the one Jinja environment, pages, data files and static files.

Every file is written atomically (a temporary file renamed into place) and only inside the
output folder; a failure while building a file is re-raised as a :class:`SiteError` naming it
(:func:`building`). Pages are rendered with autoescaping on and undefined names refused, so
text read from the dataset is always text, never markup. Data for the browser is JavaScript
assigning ``window.EDVIS[key]`` (:func:`js_assign`): ASCII JSON in which ``<``, ``>`` and ``&``
are escaped, so nothing in it can close a ``<script>``.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from edvis.run import atomic
from edvis.site.site_error import SiteError

#: Where the page templates and the static files (``templates/static/``) live: package data of edvis.
TEMPLATES_DIR = Path(str(importlib.resources.files("edvis") / "templates"))

TILE_PX = 128  # canvas size of a tile (2x the 64 px images)
SMALL_PX = 96  # canvas size of a timeline or gallery map tile
LEGEND_STOPS = 17


def environment() -> jinja2.Environment:
    """The one Jinja2 environment: templates from TEMPLATES_DIR, autoescaped, strict."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@contextlib.contextmanager
def building(path: Path) -> Iterator[None]:
    """Re-raise any failure as a SiteError that names the file being built."""
    try:
        yield
    except SiteError:
        raise
    except Exception as e:
        raise SiteError(f"while building {path}: {e}") from e


def write(path: Path, content: str | bytes) -> None:
    """Write ``content`` (text as UTF-8) atomically."""
    atomic.write_bytes(path, content.encode("utf-8") if isinstance(content, str) else content)


def inside(out_dir: Path, relative: str) -> Path:
    """``out_dir / relative``, refusing any path that would land outside ``out_dir``."""
    path = (out_dir / relative).resolve()
    if not path.is_relative_to(out_dir):
        raise SiteError(f"refusing to write {path}: outside the output folder {out_dir}")
    return path


def js_json(value: Any) -> str:
    """JSON for embedding in JavaScript or HTML: ASCII only, with ``<``, ``>``, ``&`` escaped."""
    text = json.dumps(value, ensure_ascii=True, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def js_assign(key: str, value: Any) -> str:
    """A line of JavaScript setting ``EDVIS[key]``; safe to load even if strings hold ``</script>``."""
    return (
        "window.EDVIS = window.EDVIS || {};\n"
        f"window.EDVIS[{js_json(key)}] = {js_json(value)};\n"
    )


def legend_gradient(lut: np.ndarray) -> str:
    """A CSS linear-gradient through evenly spaced entries of the lookup table."""
    stops = np.linspace(0, len(lut) - 1, LEGEND_STOPS).round().astype(int)
    colours = ", ".join("#{:02x}{:02x}{:02x}".format(*lut[i]) for i in stops)
    return f"linear-gradient(to right, {colours})"


class Writer:
    """Writes files under one output folder; pages get the context every template shares."""

    def __init__(self, out_dir: Path, common: dict[str, Any]) -> None:
        self.out_dir = Path(out_dir).resolve()
        self.env = environment()
        self.common = dict(common)

    def path(self, relative: str) -> Path:
        return inside(self.out_dir, relative)

    def file(self, relative: str, content: str | bytes) -> Path:
        """Write one file of the site."""
        path = self.path(relative)
        with building(path):
            write(path, content)
        return path

    def data(self, key: str, value: Any, relative: str | None = None) -> Path:
        """``data/<key>.js`` (or ``relative``) assigning ``value`` to ``EDVIS[key]``."""
        return self.file(relative or f"data/{key}.js", js_assign(key, value))

    def page(self, template: str, relative: str, **extra: Any) -> Path:
        """Render ``template`` into ``relative``; ``root`` leads from it back to the site's top."""
        path = self.path(relative)
        with building(path):
            root = "../" * relative.count("/")
            write(path, self.env.get_template(template).render(root=root, here=relative, **self.common, **extra))
        return path

    def static(self) -> None:
        """Copy ``templates/static/`` to ``static/``."""
        for src in sorted((TEMPLATES_DIR / "static").iterdir()):
            if src.is_file():
                self.file(f"static/{src.name}", src.read_bytes())
