"""``galleries.html``: random right and wrong predictions at the final epoch with the maps of
their top-5 classes (the paper's Figures 6 and 7), and two right images of one class with the
correlation of their maps (Figure 8)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edvis.site import picks
from edvis.site.methods import covered_by_all, method_rows
from edvis.site.text import class_name, true_map_alt
from edvis.site.views import ClassRef, Pack, Tile
from edvis.site.views_pages import GalleryPage, GalleryRow, SamePair

if TYPE_CHECKING:
    from edvis.site.read_compare import Model
    from edvis.site.sources import Sources

GALLERY_RIGHT = 12
GALLERY_WRONG = 12
SAME_CLASS_PAIRS = 6
GALLERY_METHODS = 8  # images shown with every explanation method's map


def gallery_page(src: Sources, refs: list[ClassRef], methods: list[Model] | None = None) -> GalleryPage:
    """The galleries and their data objects (``data/gallery.*``, and ``data/gallery-m<S>.js`` of
    the explanation ``methods``' maps beside the model's own)."""
    r, ds = src.clean, src.dataset
    labels, names, pred = ds.labels, ds.names, r.pred[-1]
    right = picks.choose(np.flatnonzero(pred == labels), GALLERY_RIGHT, picks.rng(src.seed, "gallery-right"))
    wrong = picks.choose(np.flatnonzero(pred != labels), GALLERY_WRONG, picks.rng(src.seed, "gallery-wrong"))
    pairs = picks.same_class_pairs(labels, pred, SAME_CLASS_PAIRS, picks.rng(src.seed, "same-class-pairs"))
    k = r.top5.shape[1] if r.map_top5 is not None else 1
    methods = methods or []
    explained = picks.choose(np.flatnonzero(covered_by_all(methods, ds.num_val)), GALLERY_METHODS,
                             picks.rng(src.seed, "gallery-methods")) if methods else []
    cells = right + wrong + [i for pair in pairs for i in pair]
    cells += [i for i in dict.fromkeys(explained) if i not in cells]
    seqs: list[np.ndarray] = []
    epoch = r.final_epoch

    def add(m: np.ndarray) -> int:
        seqs.append(m)
        return len(seqs) - 1

    def row(i: int) -> GalleryRow:
        cell, truth = cells.index(i), ds.truth(i)
        image = Tile("gallery", None, cell, 0, alt=f"{ds.files[i]}, true class {truth}", label=truth,
                     link=refs[labels[i]].page)
        tiles = []
        for rank in range(k):
            c = int(r.top5[i, rank])
            p = round(float(r.top5_prob[i, rank]), 4)
            m = r.map_top5[i, rank] if r.map_top5 is not None else r.map_pred[i]
            tiles.append(Tile("gallery", add(m), cell, 0, name=class_name(names, c), prob=p,
                              verdict="right" if c == labels[i] else "", label=f"top-{rank + 1}",
                              link=refs[c].page if c < len(refs) else "",
                              alt=f"{ds.files[i]}, true class {truth}: map of {class_name(names, c)}, "
                                  f"ranked {rank + 1} with {100 * p:.1f}% at epoch {epoch}"))
        return GalleryRow(image, tiles)

    right_rows = [row(i) for i in right]
    wrong_rows = [row(i) for i in wrong]
    pair_rows = []
    for i, j in pairs:
        c = int(labels[i])
        tiles = []
        for x in (i, j):
            p = round(float(r.prob[-1, x]), 4)
            tiles.append(Tile("gallery", add(r.maps[-1, x]), cells.index(x), 0, name=names[c], prob=p,
                              verdict="right", label=ds.files[x].rsplit("/", 1)[-1],
                              alt=true_map_alt(ds.files[x], names[c], epoch, names[c], p, "right")))
        pair_rows.append(SamePair(refs[c], tiles, picks.map_correlation(r.maps[-1, i], r.maps[-1, j])))

    def own(i: int) -> Tile:
        k, p = int(pred[i]), round(float(r.prob[-1, i]), 4)
        verdict = "right" if k == labels[i] else "wrong"
        return Tile("gallery", add(r.maps[-1, i]), cells.index(i), 0, label="own map", name=class_name(names, k),
                    prob=p, verdict=verdict, alt=true_map_alt(ds.files[i], ds.truth(i), epoch, class_name(names, k), p, verdict))

    rows, packs = method_rows(ds, methods, explained, "gallery", cells.index, own, epoch)
    maps = np.stack(seqs)[:, None] if seqs else np.zeros((0, 1, ds.map_size, ds.map_size), np.uint8)
    return GalleryPage(epoch=epoch, has_top5=r.map_top5 is not None, k=k, right=right_rows, wrong=wrong_rows,
                       pairs=pair_rows, pack=Pack(key="gallery", epochs=[epoch], maps=maps, cells=cells),
                       right_ids=right, wrong_ids=wrong, pair_ids=pairs, methods=[m.label for m in methods],
                       method_rows=rows, method_packs=packs)
