"""The static site of a run. Imports no torch.

``build_site(run, out)`` reads the run, its render store and ``analysis.json`` into view objects,
then writes the pages. ``picks`` holds the seeded choices of images, ``plots`` the matplotlib
figures.
"""

from edvis.site import picks, plots
from edvis.site.build import (
    SiteError,
    build_site,
    choose_timeline,
    collect,
    js_json,
    normalise_maps,
    render,
    setting_slug,
    slugify,
)

__all__ = [
    "SiteError", "build_site", "choose_timeline", "collect", "js_json", "normalise_maps", "picks", "plots", "render",
    "setting_slug", "slugify",
]
