"""``compare.html``: this model's true-class maps beside the compared run's (``--compare``) and
this run's explanation methods' (``edvis explain``) for the same randomly chosen images with a
box, each map's peak marked, and the models' accuracy and localisation side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edvis.analyze.metrics import map_peaks
from edvis.site import picks
from edvis.site.methods import covered_by_all
from edvis.site.read_store import CLEAN
from edvis.site.text import MISSING, class_name, pct, pts
from edvis.site.views import Pack, Tile
from edvis.site.views_pages import ComparePage, CompareRow

if TYPE_CHECKING:
    from edvis.site.read_compare import Model
    from edvis.site.sources import Sources

COMPARE_IMAGES = 24
LOCALISATION = ("pointing", "centre_pointing", "energy_in_box", "energy_centre", "energy_uniform")


def localisation_cells(m: dict[str, Any] | None) -> list[str]:
    """A model's localisation numbers from analysis.json, in the order the tables show them; after
    the centre baseline, the 95% interval of pointing − centre (from "+1.20 to +5.60 pts"); last,
    the pointing game and the centre's on small objects, the first with their count."""
    m = m or {}
    cells = [pct(m.get(key)) for key in LOCALISATION]
    lo, hi = (pts(m.get(f"pointing_vs_centre_{b}")) for b in ("lo", "hi"))
    interval = MISSING if MISSING in (lo, hi) else f"{lo.removesuffix(' pts')} to {hi}".replace("-", "−")
    small, n = pct(m.get("pointing_small")), m.get("small_images")
    small = f"{small} of {n:,}" if small != MISSING and isinstance(n, int) else small
    return cells[:2] + [interval] + cells[2:] + [small, pct(m.get("centre_pointing_small"))]


def compare_page(src: Sources, a: Model, others: list[Model]) -> ComparePage:
    """This model's maps beside ``others``' (a compared run and this run's explanation methods),
    each at its final epoch, for the same chosen images (with a box, and covered by every method)."""
    ds = src.dataset
    models = [a, *others]
    ok = covered_by_all(models, ds.num_val)
    have_box = [i for i in range(ds.num_val) if ok[i] and ds.boxes[i] is not None]
    pool = np.asarray(have_box if have_box else np.flatnonzero(ok))
    chosen = picks.choose(pool, COMPARE_IMAGES, picks.rng(src.seed, "compare"))
    keys = [("compare-a" if k == 0 else "compare-b" if k == 1 else f"compare-{chr(ord('a') + k)}") for k in range(len(models))]
    packs = [Pack(key=key, epochs=[m.epoch], maps=m.maps[chosen][:, None], cells=chosen,
                  sprite_key=None if key == "compare-a" else "compare-a") for m, key in zip(models, keys)]
    peaks = [map_peaks(m.maps[chosen].astype(np.float32), ds.image_size) if len(chosen) else np.zeros((0, 2), int)
             for m in models]
    rows = []
    for j, i in enumerate(chosen):
        truth = ds.truth(i)
        tiles = []
        for m, key, peaks_of in zip(models, keys, peaks):
            k = int(m.pred[i])
            p = round(float(m.prob[i]), 4)
            verdict = "right" if k == ds.labels[i] else "wrong"
            peak = tuple(int(v) for v in peaks_of[j])
            tiles.append(Tile(key, j, j, 0, label=m.label, name=class_name(ds.names, k), prob=p, verdict=verdict,
                              box=ds.boxes[i], peak=peak,  # type: ignore[arg-type]
                              alt=f"{ds.files[i]}, true class {truth}: {m.label}'s map of it at epoch "
                                  f"{m.epoch}, peak at {peak}; predicted {class_name(ds.names, k)} "
                                  f"({100 * p:.1f}%), {verdict}"))
        rows.append(CompareRow(i, ds.files[i], truth, tiles))
    localisation = src.analysis.models() if len(src.analysis.models()) > 1 else []
    runs = [a] + [m for m in others if not m.method]
    table = []
    for n, model in enumerate(runs):
        top1, top5 = (pct(v) for v in model.settings[CLEAN]) if CLEAN in model.settings else (MISSING, MISSING)
        table.append((model.label, model.epoch, top1, top5,
                      localisation_cells(localisation[n] if n < len(localisation) else None)))
    return ComparePage(a=a, others=others, models=table, has_localisation=bool(localisation), rows=rows, packs=packs)
