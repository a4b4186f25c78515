"""CSV tables that are safe to open in a spreadsheet. Imports no torch.

Every CSV edvis writes (the analysis's tables, the site's figure data) goes through
:func:`csv_text`, so one rule protects them all against CSV ("formula") injection, following
OWASP's guidance (https://owasp.org/www-community/attacks/CSV_Injection):

* a **text** cell (a class name, a wnid, a setting, model or file name, a column header) that
  starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a single quote ``'``
  in front (:func:`spreadsheet_safe`), so a spreadsheet shows it as text instead of evaluating
  it: ``=HYPERLINK("http://x")`` is written ``'=HYPERLINK("http://x")``;
* every text cell is wrapped in double quotes, each double quote inside it doubled (as
  RFC 4180 has it), so no separator inside it (a comma, or the semicolon some locales split
  on) can start a new cell;
* a **number** (``int``, ``float`` and numpy's) is written as is, never quoted nor prefixed:
  ``-0.25`` stays a negative number. NaN, infinity and ``None`` become an empty cell.

JSON needs none of this: edvis writes the exact text there.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from edvis.errors import UsageError

__all__ = ["FORMULA_STARTS", "csv_cell", "csv_text", "spreadsheet_safe"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""The first characters that make a spreadsheet read a cell as a formula (OWASP's list)."""


def spreadsheet_safe(text: str) -> str:
    """``text`` with a ``'`` in front when it starts with one of :data:`FORMULA_STARTS`.

    ``spreadsheet_safe("=1+2") == "'=1+2"``, ``spreadsheet_safe("-2+3") == "'-2+3"``;
    any other text comes back unchanged (``"n01443537"``, ``"goldfish, Carassius auratus"``).
    Apply it to text only, never to a number edvis formats itself.
    """
    if not isinstance(text, str):
        raise UsageError(f"text must be a str, got {type(text).__name__}")
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _quoted(text: str) -> str:
    return '"' + spreadsheet_safe(text).replace('"', '""') + '"'


def csv_cell(value: Any, number: Callable[[float], str] = str) -> str:
    """One cell of :func:`csv_text`, as it appears in the file.

    ``None`` → empty; a ``str`` → :func:`spreadsheet_safe`, then double-quoted; a bool →
    ``True`` or ``False``; an integer → its digits; any other real number → ``number(value)``
    (default ``str``), or empty when it is NaN or infinite; a list or tuple of numbers → their
    cells joined by spaces (``[1, 2, 3]`` → ``1 2 3``).
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return _quoted(value)
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return number(value) if math.isfinite(float(value)) else ""
    if isinstance(value, (list, tuple)) and not any(isinstance(v, (str, list, tuple)) for v in value):
        return " ".join(csv_cell(v, number) for v in value)
    raise UsageError(f"value must be text, a number, a list of numbers or None, got {value!r:.80}")


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[Any]],
             number: Callable[[float], str] = str) -> str:
    """A CSV table: the header ``columns``, then one line per row, ``\\n`` after each line.

    Each cell is written by :func:`csv_cell` (text made :func:`spreadsheet_safe` and
    double-quoted, numbers as they are, formatted by ``number``). The csv module and
    spreadsheets read it back; a row shorter or longer than ``columns`` is refused.
    """
    columns = list(columns)
    if not all(isinstance(c, str) for c in columns):
        raise UsageError(f"columns must be strings, got {columns!r}")
    lines = [",".join(_quoted(c) for c in columns)]
    for i, row in enumerate(rows):
        row = list(row)
        if len(row) != len(columns):
            raise UsageError(f"rows[{i}] has {len(row)} cells, columns has {len(columns)}")
        try:
            line = ",".join(csv_cell(v, number) for v in row)
        except UsageError as e:
            raise UsageError(f"rows[{i}]: {e}") from None
        lines.append(line or '""')  # a lone empty cell, or the line would read as no row
    return "\n".join(lines) + "\n"
