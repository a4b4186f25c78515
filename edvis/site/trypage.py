"""``try.html``: the run's own ONNX model in the visitor's browser, by onnxruntime-web.

```
OUT/
  try.html                         pick a validation image or drop your own, pick an epoch: the
                                   top-5 classes, their maps over the image, every tapped layer
  models/epoch_NNN.onnx            the shipped epochs' ONNX files, byte for byte RUN/onnx/'s
                                   (sha256 checked against the export record and the render store)
  models/epoch_NNN.fp16.onnx       instead, with ``--try-precision fp16``: RUN/onnx/'s fp16 copies
                                   (``edvis.compress``), their measured deviation stated on the page
  vendor/onnxruntime-web/          ort.wasm.min.js, ort-wasm-simd-threaded.{mjs,wasm} and LICENSE:
                                   onnxruntime-web's single-threaded WebAssembly runtime, pinned
  data/try.js                      the shipped epochs, each validation image's class sprite cell
                                   and the store's top-1 at those epochs
  data/try-NNN.png                 images over SPRITE_MAX_PX only: class NNN's first few
                                   validation images at the model's input size
```

onnxruntime-web comes from the npm registry: ``templates/vendor/package.json`` pins it and
``make install`` runs ``npm ci`` there once, so later builds need no network. Without those
files the site is built without this page (one log line says so), unless ``--try-epochs`` asked
for it, which then fails. Validation images are taken from the class pages' sprite sheets, which
hold exactly what ``load_image`` gave the renderer (lossless PNG at the model's input size), so
the page's logits for them are the store's. Images larger than a sprite cell
(``SPRITE_MAX_PX``, e.g. 224 px) are reduced in those sheets, so the page has its own sheets,
``data/try-NNN.png``, of the first :data:`LARGE_PER_CLASS` images of each class at the model's
input size, and offers those.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edvis.errors import UsageError
from edvis.run import Run, RunError, select_epochs
from edvis.run.digest import sha256_bytes
from edvis.site.layers import LAYER_CHANNELS
from edvis.site.picks import even_epochs
from edvis.site.site_error import SiteError
from edvis.site.sprites import MAP_ALPHA, SPRITE_COLUMNS, SPRITE_MAX_PX, Images, sheet_png
from edvis.site.writing import TEMPLATES_DIR, Writer

if TYPE_CHECKING:
    from edvis.site.sources import Sources

log = logging.getLogger(__name__)

ORT_VERSION = "1.30.0"  # as templates/vendor/package.json pins it
VENDOR = TEMPLATES_DIR / "vendor"
ORT_PACKAGE = VENDOR / "node_modules" / "onnxruntime-web"
#: The files of onnxruntime-web's WebAssembly-only build (in its dist/), single-threaded use.
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
ORT_LICENSE = VENDOR / "LICENSE.onnxruntime-web"  # the package ships none; onnxruntime's MIT licence
RUNTIME_DIR = "vendor/onnxruntime-web"
MODELS_DIR = "models"
DEFAULT_EPOCHS = 3  # the first, the middle and the final epoch (even_epochs)
MAX_PIXELS = 1 << 26  # as edvis.data's load_image, which refuses larger images
CLASS_LAYERS = ("up1", "maps")  # layers whose channel k is class k's (as on the layers page)
MAX_FILE_BYTES = 100 * 10**6  # static hosts' usual cap on one file
# Images over SPRITE_MAX_PX: the validation images of each class the page offers, on its own
# full-size sheet (about 0.1 MB an image as a lossless PNG of a 224-px photograph)
LARGE_PER_CLASS = 3
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class TryModel:
    """One shipped epoch's ONNX file."""

    epoch: int
    file: str  # site path
    sha256: str
    size: int

    @property
    def size_text(self) -> str:
        return f"{self.size / 1e6:.1f} MB"


@dataclass
class TryPage:
    """try.html and its data object (``data/try.js``)."""

    models: list[TryModel]
    runtime_bytes: int = 0
    classes: list[tuple[int, str]] = field(default_factory=list)  # (index, name) with images shipped
    precision: str = "fp32"
    fp32_bytes: int = 0  # what the fp32 files would have weighed
    deviation: dict[str, Any] | None = None  # fp16: the worst of the epochs' measured deviations
    per_class: int = 0  # images over SPRITE_MAX_PX: the validation images offered per class (else all)

    @property
    def last(self) -> int:
        return self.models[-1].epoch

    @property
    def model_bytes(self) -> int:
        return sum(m.size for m in self.models)

    @property
    def cost_text(self) -> str:
        return f"{(self.model_bytes + self.runtime_bytes) / 1e6:.0f} MB"

    @property
    def fp32_text(self) -> str:
        return f"{self.fp32_bytes / 1e6:.0f} MB"

    @property
    def runtime_text(self) -> str:
        return f"{self.runtime_bytes / 1e6:.1f} MB"

    @property
    def version(self) -> str:
        return ORT_VERSION

    @property
    def channels(self) -> int:
        return LAYER_CHANNELS


def runtime_missing() -> str | None:
    """Why onnxruntime-web cannot be shipped from this installation, or None when it can."""
    manifest = ORT_PACKAGE / "package.json"
    try:
        version = json.loads(manifest.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return f"onnxruntime-web is not installed in {VENDOR} (`make install` runs `npm ci` there)"
    if version != ORT_VERSION:
        return f"{manifest} is version {version}, not the pinned {ORT_VERSION} (run `npm ci` in {VENDOR})"
    for name in ORT_FILES:
        if not (ORT_PACKAGE / "dist" / name).is_file():
            return f"{ORT_PACKAGE / 'dist' / name} is missing (run `npm ci` in {VENDOR})"
    if not ORT_LICENSE.is_file():
        return f"{ORT_LICENSE} is missing"
    return None


def try_epochs(run: Run, rendered: list[int], spec: str | None) -> list[int]:
    """The epochs ``--try-epochs`` ships: ``none``; the default (None): the final rendered epoch and
    a few evenly spaced ones among those whose ONNX file is there; or ``select_epochs``' syntax
    (``all``, ``first``, ``last``, numbers) over the ``rendered`` epochs."""
    if spec is not None and spec.strip() == "none":
        return []
    if spec is None:
        return even_epochs([e for e in rendered if run.onnx(e).is_file()], DEFAULT_EPOCHS)
    try:
        return select_epochs(spec, rendered)
    except UsageError as e:
        raise UsageError(str(e).replace("--epochs", "--try-epochs", 1) + " (the rendered epochs)") from None


def store_precision(src: Sources) -> str:
    """The precision of the ONNX files the site's store was rendered from (``--precision``)."""
    return str(src.store.manifest().get("precision", "fp32"))


def _run(src: Sources) -> Run:
    """The run, naming the ONNX files of the site's precision: the page ships the files the store
    was rendered from, so that its numbers are the store's."""
    return Run(Path(src.store.root).parent, store_precision(src))


def plan_try(src: Sources, spec: str | None, precision: str = "fp32") -> list[int]:
    """The epochs the Try it page will ship, or [] (with one log line) when there is no page; a
    page asked for by ``spec`` that cannot be made is an error."""
    if precision not in PRECISIONS:
        raise UsageError(f"--try-precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and store_precision(src) != "fp32":
        raise UsageError(f"--try-precision fp16 halves the float32 files; this site is built from the "
                         f"{store_precision(src)} ones (--precision): leave --try-precision out")
    epochs = try_epochs(_run(src), list(src.epochs), spec)
    if not epochs:
        if spec is None:
            log.info("site: no Try it page: the run has no exported ONNX file of a rendered epoch")
        return []
    missing = runtime_missing()
    if missing is not None:
        if spec is not None:
            raise SiteError(f"--try-epochs: cannot ship the Try it page: {missing}")
        log.info(f"site: no Try it page: {missing}")
        return []
    return epochs


def write_try(writer: Writer, src: Sources, epochs: list[int], sprites: dict[int, tuple[str, list[int]]],
              precision: str = "fp32") -> TryPage:
    """Copy the runtime and the epochs' ONNX files into the site, verified, and write ``data/try.js``.

    ``sprites`` maps a class to its sprite sheet (site path) and the validation indices in it, in
    cell order (the class pages' sheets). With ``precision`` fp16 the ONNX files shipped are the
    fp16 copies ``edvis.compress`` wrote beside them.
    """
    runtime = _copy_runtime(writer)
    run = _run(src)
    rendered = dict(src.run.onnx_hashes)
    models = [_copy_model(writer, run, e, rendered.get(e, ""), precision == "fp16") for e in epochs]
    page = TryPage(models=[m for m, _ in models], runtime_bytes=runtime, precision=precision,
                   fp32_bytes=sum(r["source_size"] if r else m.size for m, r in models))
    if precision == "fp16":
        page.deviation = _worst([r for _, r in models if r])
    ds = src.dataset
    if ds.image_size > SPRITE_MAX_PX:  # the class sheets hold reduced images: full-size sheets of a few
        sprites = _full_size_sheets(writer, src, sprites)
        page.per_class = LARGE_PER_CLASS
    page.classes = [(c, ds.name(c)) for c in sorted(sprites)]
    writer.data("try", _data(src, page, sprites, run))
    log.info(f"site: Try it page: {len(models)} epoch(s) of {precision} ONNX ({', '.join(m.size_text for m in page.models)}) "
             f"and onnxruntime-web {ORT_VERSION} ({page.runtime_text}): {page.cost_text} in all")
    return page


def _full_size_sheets(writer: Writer, src: Sources, sprites: dict[int, tuple[str, list[int]]]
                      ) -> dict[int, tuple[str, list[int]]]:
    """``data/try-NNN.png`` for each class of ``sprites``: its first :data:`LARGE_PER_CLASS`
    images as ``load_image`` gives them to the renderer, in one row; the new class → (sheet, cells)."""
    images = Images(src.dataset)
    out = {}
    for c, (_, cells) in sorted(sprites.items()):
        cells = cells[:LARGE_PER_CLASS]
        sheet = f"data/try-{c:03d}.png"
        writer.file(sheet, sheet_png(np.stack([images.load(i, keep=False) for i in cells]), SPRITE_COLUMNS))
        out[c] = (sheet, cells)
    return out


def _copy_runtime(writer: Writer) -> int:
    total = 0
    for name in ORT_FILES:
        total += len(data := (ORT_PACKAGE / "dist" / name).read_bytes())
        writer.file(f"{RUNTIME_DIR}/{name}", data)
    writer.file(f"{RUNTIME_DIR}/LICENSE", ORT_LICENSE.read_bytes())
    return total


def _copy_model(writer: Writer, run: Run, epoch: int, rendered_sha: str, half: bool) -> tuple[TryModel, dict | None]:
    """The epoch's ONNX bytes (or its fp16 copy's), verified against its export record and the
    render store, into the site; with the copy's record."""
    try:
        data, record = run.read_onnx(epoch)
    except RunError as e:
        raise SiteError(f"the Try it page cannot ship epoch {epoch}: {e}") from None
    sha = str(record.get("sha256", ""))
    if rendered_sha and sha != rendered_sha:
        raise SiteError(f"{run.onnx(epoch)} is not the ONNX file the render store was made from "
                        "(exported again since?): run `edvis render`")
    half_record = None
    if half:
        data, half_record = _read_half(run, epoch, sha)
        sha = half_record["sha256"]
    if len(data) > MAX_FILE_BYTES:
        log.warning(f"site: the ONNX file of epoch {epoch} is {len(data) / 1e6:.0f} MB, over the 100 MB many "
                    "static hosts accept for one file")
    file = f"{MODELS_DIR}/epoch_{epoch:03d}{'.fp16' if half else ''}.onnx"
    writer.file(file, data)
    return TryModel(epoch, file, sha, len(data)), half_record


def _read_half(run: Run, epoch: int, source_sha: str) -> tuple[bytes, dict[str, Any]]:
    """RUN/onnx/epoch_NNN.fp16.onnx and its record (as ``edvis.compress`` writes them), verified."""
    path, record_path = run.onnx_dir / f"epoch_{epoch:03d}.fp16.onnx", run.onnx_dir / f"epoch_{epoch:03d}.fp16.json"
    fix = "`edvis site --try-precision fp16` writes it"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise SiteError(f"{e.filename} is missing: {fix}") from None
    except (OSError, ValueError) as e:
        raise SiteError(f"{record_path} cannot be read ({e}): {fix}") from None
    if record.get("source_sha256") != source_sha:
        raise SiteError(f"{path} was made from another ONNX file than {run.onnx(epoch)}: {fix} again")
    if record.get("sha256") != sha256_bytes(data):
        raise SiteError(f"{path} does not match the sha256 of its record {record_path} (damaged?): {fix} again")
    return data, record


def _worst(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The worst deviation over the epochs' fp16 records, and the text the page states."""
    worst = {"images": min(r["images"] for r in records),
             "top1_agreement": min(r["top1_agreement"] for r in records),
             **{k: max(r[k] for r in records)
                for k in ("max_map_abs_diff", "max_map_rel_diff", "max_drawn_diff", "max_logit_abs_diff")}}
    worst["text"] = (
        f"Measured with onnxruntime over the {worst['images']} validation images at each shipped epoch, the float16 "
        f"weights change a map value by at most {worst['max_map_abs_diff']:.2g} "
        f"({100 * worst['max_map_rel_diff']:.3g}% of the largest map value), a drawn top-5 map by at most "
        f"{worst['max_drawn_diff']} of 255 colour levels, a logit by at most {worst['max_logit_abs_diff']:.2g}, "
        f"and the top-1 class is the fp32 model's for {100 * worst['top1_agreement']:.2f}% of the images.")
    return worst


def _data(src: Sources, page: TryPage, sprites: dict[int, tuple[str, list[int]]], run: Run) -> dict[str, Any]:
    """The data object of ``data/try.js``."""
    ds, clean = src.dataset, src.clean
    at = {e: k for k, e in enumerate(clean.epochs)}
    store = {}
    for m in page.models:
        e = at.get(m.epoch)
        if e is not None:
            store[str(m.epoch)] = {"pred": clean.pred[e].tolist(),
                                   "prob": [round(float(p), 4) for p in clean.prob[e]]}
    record = run.read_export_record(page.last)
    outputs = [str(o) for o in record.get("outputs", [])]
    return {
        "runtime": f"{RUNTIME_DIR}/",
        "models": [{"epoch": m.epoch, "file": m.file, "sha256": m.sha256, "size": m.size} for m in page.models],
        "precision": page.precision,
        "image_size": ds.image_size,
        "map_size": ds.map_size,
        "alpha": MAP_ALPHA,
        "columns": SPRITE_COLUMNS,
        "channels": LAYER_CHANNELS,
        "layers": [o for o in outputs if o.startswith("layer.")] + ["maps"],
        "class_layers": list(CLASS_LAYERS),
        "max_pixels": MAX_PIXELS,
        "classes": {str(c): {"sprite": sprite, "cells": cells} for c, (sprite, cells) in sorted(sprites.items())},
        "files": ds.files,
        "labels": ds.labels.tolist(),
        "store": store,
    }
