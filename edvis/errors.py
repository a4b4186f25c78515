"""One exception hierarchy. Imports nothing of edvis.

Every failure edvis expects (a missing or damaged file, a flag out of range, a dataset that does
not parse) raises an :class:`EdvisError` whose message names the file or argument at fault and,
where there is one, the command that mends it. The command line catches ``EdvisError`` alone:
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["EdvisError", "UsageError"]


class EdvisError(Exception):
    """An expected failure; the message names the file or argument at fault."""


class UsageError(EdvisError, ValueError):
    """A flag or argument holds a value edvis cannot use; the message names it."""
