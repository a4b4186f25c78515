"""``compare.html``: this model's true-class maps beside the compared run's (``--compare``) for the
same randomly chosen images with a box, each map's peak marked, and both models' accuracy and
localisation side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edvis.analyze.metrics import map_peaks
from edvis.site import picks
from edvis.site.read_store import CLEAN
from edvis.site.text import MISSING, class_name, pct
from edvis.site.views import Pack, Tile
from edvis.site.views_pages import ComparePage, CompareRow

if TYPE_CHECKING:
    from edvis.site.read_compare import Model
    from edvis.site.sources import Sources

COMPARE_IMAGES = 24
LOCALISATION = ("pointing", "centre_pointing", "energy_in_box", "energy_centre", "energy_uniform")


def localisation_cells(m: dict[str, Any] | None) -> list[str]:
    """A model's localisation numbers from analysis.json, in the order the tables show them."""
    return [pct((m or {}).get(key)) for key in LOCALISATION]


def compare_page(src: Sources, a: Model, b: Model) -> ComparePage:
    """Both models' maps of the chosen images, at each one's final epoch, and their data objects."""
    ds = src.dataset
    have_box = [i for i in range(ds.num_val) if ds.boxes[i] is not None]
    pool = np.asarray(have_box if have_box else range(ds.num_val))
    chosen = picks.choose(pool, COMPARE_IMAGES, picks.rng(src.seed, "compare"))
    models = ((a, "compare-a"), (b, "compare-b"))
    packs = [Pack(key=key, epochs=[model.epoch], maps=model.maps[chosen][:, None], cells=chosen,
                  sprite_key=None if key == "compare-a" else "compare-a") for model, key in models]
    peaks = [map_peaks(model.maps[chosen].astype(np.float32), ds.image_size) if len(chosen) else np.zeros((0, 2), int)
             for model, _ in models]
    rows = []
    for j, i in enumerate(chosen):
        truth = ds.truth(i)
        tiles = []
        for (model, key), peaks_of in zip(models, peaks):
            k = int(model.pred[i])
            p = round(float(model.prob[i]), 4)
            verdict = "right" if k == ds.labels[i] else "wrong"
            peak = tuple(int(v) for v in peaks_of[j])
            tiles.append(Tile(key, j, j, 0, label=model.label, name=class_name(ds.names, k), prob=p, verdict=verdict,
                              box=ds.boxes[i], peak=peak,  # type: ignore[arg-type]
                              alt=f"{ds.files[i]}, true class {truth}: {model.label}'s map of it at epoch "
                                  f"{model.epoch}, peak at {peak}; predicted {class_name(ds.names, k)} "
                                  f"({100 * p:.1f}%), {verdict}"))
        rows.append(CompareRow(i, ds.files[i], truth, tiles))
    localisation = src.analysis.models() if len(src.analysis.models()) > 1 else []
    table = []
    for n, model in enumerate((a, b)):
        top1, top5 = (pct(v) for v in model.settings[CLEAN]) if CLEAN in model.settings else (MISSING, MISSING)
        table.append((model.label, model.epoch, top1, top5,
                      localisation_cells(localisation[n] if n < len(localisation) else None)))
    return ComparePage(a=a, b=b, models=table, has_localisation=bool(localisation), rows=rows, packs=packs)
