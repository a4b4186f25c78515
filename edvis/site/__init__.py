"""The static site of a run. Imports no torch.

``build_site(run, out)`` reads the run (:func:`read_sources`: its config, metrics, clean
render units, ``analysis.json`` and a compared run), then makes and writes the pages
(:func:`write_site`), one page family at a time. ``picks`` holds the seeded choices of
images, ``plots`` the matplotlib figures.

```
sources.py          what the readers give, read once
read_run.py         config.json, metrics.jsonl, hashes, the manifest's dataset
read_store.py       the render store: clean units, each perturbed setting, layers files
read_analysis.py    analysis.json (schema 2): every aggregate number the pages show
read_compare.py     the models of Table 1: this run and the one given with --compare
views.py            view objects shared by the pages (tiles, data files, charts, navigation)
views_pages.py      each page family's view objects
index.py, classes.py, galleries.py, errors.py, perturbations.py, layers.py, compare.py
                    one module per page family: readers' output in, view objects out
figures.py          the figures for papers and their data (figure_maps.py: the map mosaics)
plots.py            drawing the figures with matplotlib
writing.py          the Jinja environment, atomic writes, data files, static files
sprites.py          sprite sheets and map data files
trypage.py          try.html: the shipped epochs' ONNX files and onnxruntime-web, verified and copied
build.py            build_site: read, make, write
```
"""

from edvis.site import picks, plots
from edvis.site.build import build_site, write_site
from edvis.site.classes import choose_timeline
from edvis.site.faithfulness import verdict_sentence
from edvis.site.read_store import normalise_maps
from edvis.site.site_error import SiteError
from edvis.site.sources import read_sources
from edvis.site.text import setting_slug, slugify
from edvis.site.trypage import try_epochs
from edvis.site.writing import js_json

__all__ = [
    "SiteError", "build_site", "choose_timeline", "js_json", "normalise_maps", "picks", "plots", "read_sources",
    "setting_slug", "slugify", "try_epochs", "verdict_sentence", "write_site",
]
