"""The data of the figures of maps (the paper's Figures 3-12, the compared maps, the layers):
which images, which maps, which captions, and the JSON written beside each; see ``figures.py``."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edvis.site import picks, plots
from edvis.site.classes import class_page
from edvis.site.sprites import Images, sprite_pixels
from edvis.site.text import class_name, short
from edvis.site.views import FigureEntry

if TYPE_CHECKING:
    from edvis.site.figures import Pages

FIGURE_ROWS = 6  # rows of a map figure for papers


def map_data(m: np.ndarray) -> list[list[float]]:
    """A uint8 map as rows of fractions of its maximum (3 decimals), for a figure's JSON."""
    return [[round(v / 255, 3) for v in row] for row in m.tolist()]


def timelines_figure(p: Pages, entry: FigureEntry, stem: Path, images: Images) -> None:
    """Figures 3-5: three images of three classes, their true-class map at up to 16 epochs."""
    src, r = p.src, p.src.clean
    with_rows = [row.ref.index for row in p.rows if row.has_timelines]
    entries = src.analysis.class_entries()
    rows, data = [], []
    for c in picks.choose(with_rows, 3, picks.rng(src.seed, "timelines-figure")):
        cls = class_page(src, p.refs, p.settings, c, entries.get(c, {}))  # made again: pages are not kept
        t = cls.timelines[0]
        img = images.load(t.index)
        row = [plots.Cell(image=img, top=short(cls.name), bottom=short(t.file.rsplit("/", 1)[-1]))]
        for tile in t.tiles:
            row.append(plots.Cell(image=img, map=r.maps[tile.epoch_index, t.index], top=tile.label,
                                  bottom=f"{tile.mark} {short(tile.name, 14)} {tile.prob_text}"))
        rows.append(row)
        data.append({"file": t.file, "class": cls.name, "epochs": [tile.label for tile in t.tiles],
                     "pred": [tile.name for tile in t.tiles], "prob": [tile.prob for tile in t.tiles],
                     "maps": [map_data(r.maps[tile.epoch_index, t.index]) for tile in t.tiles]})
    plots.map_mosaic(rows, stem, entry.title, {"title": entry.title, "images": data})


def gallery_figure(p: Pages, entry: FigureEntry, stem: Path, images: Images) -> None:
    """Figures 6-7: random right (or wrong) predictions, each with its top-5 maps."""
    r, ds, g = p.src.clean, p.src.dataset, p.gallery
    ids = (g.right_ids if entry.name == "gallery-right" else g.wrong_ids)[:FIGURE_ROWS]
    rows, data = [], []
    for i in ids:
        img = images.load(i)
        row = [plots.Cell(image=img, top=f"true: {short(ds.truth(i))}")]
        tops = []
        for rank in range(g.k):
            c = int(r.top5[i, rank])
            m = r.map_top5[i, rank] if r.map_top5 is not None else r.map_pred[i]
            pr = float(r.top5_prob[i, rank])
            row.append(plots.Cell(image=img, map=m, top=f"top-{rank + 1}",
                                  bottom=f"{short(class_name(ds.names, c), 14)} {100 * pr:.1f}%"))
            tops.append({"class": class_name(ds.names, c), "prob": round(pr, 4), "map": map_data(m)})
        rows.append(row)
        data.append({"file": ds.files[i], "class": ds.truth(i), "top": tops})
    plots.map_mosaic(rows, stem, f"{entry.title} (epoch {g.epoch})",
                     {"title": entry.title, "epoch": g.epoch, "images": data})


def pairs_figure(p: Pages, entry: FigureEntry, stem: Path, images: Images) -> None:
    """Figure 8: two right predictions of one class, side by side with their maps."""
    r, ds, g = p.src.clean, p.src.dataset, p.gallery
    rows, data = [], []
    for i, j in g.pair_ids[:FIGURE_ROWS]:
        row, pair = [], []
        for x in (i, j):
            row += [plots.Cell(image=images.load(x), top=short(ds.files[x].rsplit("/", 1)[-1])),
                    plots.Cell(map=r.maps[-1, x], top=short(ds.truth(x)), bottom=f"{100 * r.prob[-1, x]:.1f}%")]
            pair.append({"file": ds.files[x], "prob": round(float(r.prob[-1, x]), 4), "map": map_data(r.maps[-1, x])})
        rows.append(row)
        corr = picks.map_correlation(r.maps[-1, i], r.maps[-1, j])
        data.append({"class": ds.truth(i), "images": pair, "map_correlation": corr})
    plots.map_mosaic(rows, stem, f"{entry.title} (epoch {g.epoch})",
                     {"title": entry.title, "epoch": g.epoch, "pairs": data})


def perturbation_figure(p: Pages, entry: FigureEntry, stem: Path, images: Images) -> None:
    """Figures 9-12: original and perturbed images, each with its true-class map and prediction."""
    ds = p.src.dataset
    s = next(x for x in p.settings if x.figure == entry.name)
    pack = s.pack
    assert pack.pred is not None and pack.prob is not None
    pixels = sprite_pixels(pack, images)
    last = len(s.epochs) - 1
    rows, data = [], []
    for j, i in enumerate(s.rows[:FIGURE_ROWS]):
        row, sides = [], []
        for side, seq in (("original", 2 * j), (s.name, 2 * j + 1)):
            k, pr = int(pack.pred[seq, last]), float(pack.prob[seq, last])
            mark = "✓" if k == ds.labels[i] else "✗"
            row += [plots.Cell(image=pixels[seq], top=short(side)),
                    plots.Cell(image=pixels[seq], map=pack.maps[seq, last], top=f"{short(ds.truth(i), 14)} map",
                               bottom=f"{mark} {short(class_name(ds.names, k), 14)} {100 * pr:.1f}%")]
            sides.append({"setting": side, "pred": class_name(ds.names, k), "prob": round(pr, 4),
                          "map": map_data(pack.maps[seq, last])})
        rows.append(row)
        data.append({"file": ds.files[i], "class": ds.truth(i), "sides": sides})
    plots.map_mosaic(rows, stem, f"{entry.title} (epoch {s.final_epoch})",
                     {"title": entry.title, "epoch": s.final_epoch, "setting": s.name, "images": data})


def compare_figure(p: Pages, entry: FigureEntry, stem: Path, images: Images) -> None:
    """Every model's and method's true-class maps of the same images, the box drawn."""
    cmp, ds = p.compare, p.src.dataset
    assert cmp is not None
    rows, data = [], []
    for shown in cmp.rows[:FIGURE_ROWS]:
        i = shown.index
        img = images.load(i)
        row = [plots.Cell(image=img, top=short(shown.truth), box=ds.boxes[i])]
        record: dict[str, Any] = {"file": ds.files[i], "class": shown.truth, "box": ds.boxes[i], "models": []}
        for model, tile in zip([cmp.a, *cmp.others], shown.tiles):
            m = model.maps[i]
            row.append(plots.Cell(image=img, map=m, box=ds.boxes[i], top=short(model.label, 18),
                                  bottom=f"{tile.mark} {short(tile.name, 14)} {tile.prob_text}"))
            record["models"].append({"model": model.label, "epoch": model.epoch, "pred": tile.name,
                                     "prob": tile.prob, "peak": list(tile.peak or ()), "map": map_data(m)})
        rows.append(row)
        data.append(record)
    plots.map_mosaic(rows, stem, entry.title, {"title": entry.title, "images": data})


def layers_figure(p: Pages, entry: FigureEntry, stem: Path, images: Images) -> None:
    """Each layer's mean over channels for the first chosen images, at the last epoch with layers."""
    lay, ds = p.layers, p.src.dataset
    assert lay is not None
    epoch = lay.last
    rows, data = [], []
    for image in lay.packs[epoch]["images"][:4]:
        i = image["index"]
        row = [plots.Cell(image=images.load(i), top=short(ds.truth(i)))]
        record: dict[str, Any] = {"file": ds.files[i], "class": ds.truth(i), "layers": []}
        for info, layer in zip(lay.infos, image["layers"]):
            grids = np.frombuffer(base64.b64decode(layer["data"]), np.uint8).reshape(-1, layer["h"], layer["w"])
            row.append(plots.Cell(map=grids[-1], top=short(info.name, 14), bottom=f"{layer['h']}×{layer['w']}"))
            record["layers"].append({"layer": info.name, "mean_over_channels": map_data(grids[-1])})
        rows.append(row)
        data.append(record)
    plots.map_mosaic(rows, stem, f"{entry.title} (epoch {epoch})", {"title": entry.title, "epoch": epoch, "images": data})
