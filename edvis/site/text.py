"""Text for the pages: numbers as percentages and points, slugs for file names, short captions.

Every function returns plain text; the templates escape it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

SLUG_MAX = 40
MISSING = "—"


def pct(x: Any) -> str:
    """A fraction as a percentage with two decimals; "—" when missing."""
    if isinstance(x, (int, float)) and math.isfinite(x):
        return f"{100 * x:.2f}%"
    return MISSING


def pts(x: Any) -> str:
    """A difference of fractions in percentage points, signed; "—" when missing."""
    if isinstance(x, (int, float)) and math.isfinite(x):
        return f"{round(100 * x, 2) + 0.0:+.2f} pts"  # + 0.0: no "-0.00"
    return MISSING


def num(x: Any, fmt: str) -> str:
    """A number in ``format`` spec ``fmt``; "—" when missing, never "-0.00"."""
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        text = format(x, fmt)
        return text[1:] if re.fullmatch(r"-0\.?0*", text) else text
    return MISSING


def short(text: str, n: int = 20) -> str:
    """``text`` cut to ``n`` characters, the last an ellipsis."""
    return text if len(text) <= n else text[: n - 1] + "…"


def plural(count: int, word: str) -> str:
    """``"1 image"``, ``"3 images"``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def ordinal(n: int | float) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``21st``..."""
    suffix = ("st" if n % 10 == 1 and n % 100 != 11 else "nd" if n % 10 == 2 and n % 100 != 12
              else "rd" if n % 10 == 3 and n % 100 != 13 else "th")
    return f"{n}{suffix}"


def class_name(names: list[str], k: int) -> str:
    """The name of class ``k``, or ``class k`` outside the list."""
    return names[k] if 0 <= k < len(names) else f"class {k}"


def true_map_alt(file: str, truth: str, epoch: int, pred: str, prob: float, verdict: str) -> str:
    """The description of a tile showing an image's true-class map."""
    return f"{file}, true class {truth}: its map at epoch {epoch}; predicted {pred} ({100 * prob:.1f}%), {verdict}"


def slugify(name: str) -> str:
    """Lowercase ASCII ``[a-z0-9-]`` of ``name``, at most 40 characters; "class" if nothing is left."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    slug = slug[:SLUG_MAX].rstrip("-")
    return slug or "class"


def setting_slug(name: str) -> str:
    """A file-name part for a setting: ``[a-z0-9.-]``, never starting with a dot."""
    slug = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-.")
    slug = re.sub(r"\.{2,}", ".", slug)[:SLUG_MAX].strip("-.")
    return slug or "setting"
