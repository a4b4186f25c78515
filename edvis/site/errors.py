"""``errors.html`` at the final epoch: from analysis.json the most confused pairs of classes, the
confidence histogram and calibration per setting; from the store the most confident mistakes
and the maps of every image shown."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edvis.site import picks
from edvis.site.read_store import CLEAN
from edvis.site.text import class_name, num, pct
from edvis.site.views import ClassRef, Pack, Tile
from edvis.site.views_pages import ErrorsPage, PairView

if TYPE_CHECKING:
    from edvis.site.sources import Sources

ERROR_PAIRS = 20
PAIR_EXAMPLES = 3
CONFIDENT_MISTAKES = 24
CALIBRATION = (("top1", "pct"), ("mean_confidence", "pct"), ("ece", ".4f"), ("auroc", ".4f"), ("sharpness", ".2f"),
               ("spearman_right", ".3f"), ("spearman_wrong", ".3f"))


def errors_page(src: Sources, refs: list[ClassRef]) -> ErrorsPage:
    """The errors page and its data object (``data/errors.*``)."""
    r, ds = src.clean, src.dataset
    labels, names = ds.labels, ds.names
    pred, prob = r.pred[-1], r.prob[-1]
    epoch = r.final_epoch
    cells: list[int] = []
    seqs: list[np.ndarray] = []

    def tile(i: int, which: str, label: str = "") -> Tile:
        if i not in cells:
            cells.append(i)
        truth, k = ds.truth(i), int(pred[i])
        p = round(float(prob[i]), 4)
        if which == "pred":
            seqs.append(r.map_pred[i])
            alt = (f"{ds.files[i]}, true class {truth}: map of the predicted class {class_name(names, k)} "
                   f"({100 * p:.1f}%) at epoch {epoch}")
            return Tile("errors", len(seqs) - 1, cells.index(i), 0, alt=alt, label=label or f"true: {truth}",
                        name=class_name(names, k), prob=p, verdict="wrong" if k != labels[i] else "right",
                        box=ds.boxes[i])
        seqs.append(r.maps[-1, i])
        alt = f"{ds.files[i]}, true class {truth}: map of the true class at epoch {epoch}"
        return Tile("errors", len(seqs) - 1, cells.index(i), 0, alt=alt, label=label or "its true class",
                    name=truth, box=ds.boxes[i])

    pairs = []
    for p in src.analysis.confused_pairs(CLEAN)[:ERROR_PAIRS]:
        pairs.append(PairView(refs[p["a"]], refs[p["b"]], p["a_as_b"], p["b_as_a"],
                              [tile(i, "pred") for i in p["images_a_as_b"][:PAIR_EXAMPLES]],
                              [tile(i, "pred") for i in p["images_b_as_a"][:PAIR_EXAMPLES]]))
    mistakes = [(tile(i, "pred"), tile(i, "true"))
                for i in picks.confident_mistakes(labels, pred, prob, CONFIDENT_MISTAKES)]
    maps = np.stack(seqs)[:, None] if seqs else np.zeros((0, 1, ds.map_size, ds.map_size), np.uint8)
    clean_row = src.analysis.setting(CLEAN)
    return ErrorsPage(
        epoch=epoch, right=int(clean_row.get("n_right") or 0), wrong=int(clean_row.get("n_wrong") or 0), pairs=pairs,
        mistakes=mistakes, hist=src.analysis.histogram(CLEAN), auroc=clean_row.get("auroc"),
        ece=clean_row.get("ece"), reliability=src.analysis.reliability(CLEAN), calibration=_calibration(src),
        pack=Pack(key="errors", epochs=[epoch], maps=maps, cells=cells),
    )


def _calibration(src: Sources) -> list[tuple[str, list[str]]]:
    """analysis.json's calibration and map sharpness per setting, as (setting, cells)."""
    return [(str(row.get("setting")), [pct(row.get(key)) if fmt == "pct" else num(row.get(key), fmt)
                                       for key, fmt in CALIBRATION])
            for row in src.analysis.table()]
