"""The dataset's error: what every reader of a dataset raises."""

from __future__ import annotations

from edvis.errors import EdvisError

__all__ = ["DatasetError"]


class DatasetError(EdvisError):
    """A dataset folder, annotation file or image that cannot be used; the message names it."""
