"""``layers.html``: every layer's output at once for the images of ``RUN/render/layers/``, at
each epoch with a layers file (``data/layers-NNN.js``, one per epoch: each image's strongest
channels per layer and their mean, scaled to 0..255)."""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from edvis.site import picks
from edvis.site.read_store import iter_layers
from edvis.site.views import Pack
from edvis.site.views_pages import LayerCell, LayerImage, LayerInfo, LayersPage

if TYPE_CHECKING:
    from edvis.site.sources import Sources

log = logging.getLogger(__name__)

LAYER_CHANNELS = 12


def layers_page(src: Sources) -> LayersPage | None:
    """The layers page, when the store has layers files; read one file at a time, keeping only
    the small per-image summaries."""
    epochs = src.store.layer_epochs()
    if not epochs:
        return None
    log.info(f"site: reading {len(epochs)} layer file(s) from {src.store.root / 'layers'}")
    ds = src.dataset
    cells: list[int] = []
    infos: list[LayerInfo] = []
    packs, files = {}, {}
    for f in iter_layers(src.store, ds.num_val):
        if f.epoch == epochs[-1] or not infos:
            infos = [_info(m, ds.num_classes) for m in f.meta["layers"]]
        cells += [int(i) for i in f.index if int(i) not in cells]
        images = [{"cell": cells.index(int(i)), "index": int(i), "layers": [_summary(a[j]) for _, a in f.outputs]}
                  for j, i in enumerate(f.index)]
        packs[f.epoch] = {"epoch": f.epoch, "images": images}
        files[f.epoch] = f"data/layers-{f.epoch:03d}.js"
    shown = []
    for image in packs[epochs[-1]]["images"]:
        i = image["index"]
        file, truth = ds.files[i], ds.truth(i)
        layers = [LayerCell(n, info, [_channel(ch, file, info, ds.names) for ch in layer["channels"]])
                  for n, (info, layer) in enumerate(zip(infos, image["layers"]))]
        shown.append(LayerImage(cells.index(i), file, truth, layers))
    sprite = Pack(key="layers", epochs=epochs, maps=np.zeros((0, 1, 1, 1), np.uint8), cells=cells)
    return LayersPage(epochs, infos, shown, packs, files, sprite, LAYER_CHANNELS)


def _info(m: dict[str, Any], num_classes: int) -> LayerInfo:
    # maps channel k is class k's; so is up1's, as the last (group) convolution turns up1
    # channel k into map k alone
    return LayerInfo(str(m.get("key", "")), str(m.get("name", m.get("key", ""))),
                     tuple(int(v) for v in m.get("shape", ())),
                     str(m.get("name")) in ("up1", "maps") and (m.get("shape") or [0])[0] == num_classes)


def _summary(a: np.ndarray) -> dict[str, Any]:
    """One image's output of one layer (ch, h, w): its strongest channels and the mean over all."""
    act = a.astype(np.float32)
    chosen = picks.top_channels(act, LAYER_CHANNELS)
    mean = act.mean(axis=0)
    grids = np.stack([picks.scale_minmax(picks.block_mean(g)) for g in [*(act[ch] for ch in chosen), mean]])
    return {
        "h": int(grids.shape[1]), "w": int(grids.shape[2]), "channels": chosen,
        "means": [round(float(act[ch].mean()), 4) for ch in chosen],
        "range": [[round(float(act[ch].min()), 4), round(float(act[ch].max()), 4)] for ch in chosen]
        + [[round(float(mean.min()), 4), round(float(mean.max()), 4)]],
        "data": base64.b64encode(grids.tobytes()).decode("ascii"),
    }


def _channel(ch: int, file: str, info: LayerInfo, names: list[str]) -> tuple[int, str, str]:
    """(channel, caption, description) of one of a layer's strongest channels."""
    if info.class_channels:
        return ch, names[ch], f"{file}: {info.name} channel {ch} ({names[ch]})"
    return ch, f"#{ch}", f"{file}: {info.name} channel {ch}"
