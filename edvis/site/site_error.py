"""The site's error: a :class:`SiteError` names the file or argument at fault."""

from __future__ import annotations

from edvis.errors import EdvisError


class SiteError(EdvisError):
    """The site could not be built; names the file or argument at fault."""
