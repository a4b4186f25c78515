"""Build the static site of a run: read (``sources.py``), make each page's views, write. Imports no torch.

```
OUT/
  index.html                   the run: config, file hashes, Table 1 (top-1/top-5 per model and
                               setting), training curves
  classes.html                 every class, sortable and filterable in the browser
  classes/NNN-<slug>.html      one class: accuracy per epoch, mean map over right predictions,
                               every validation image with its map (one epoch slider, kept in the
                               URL as ?epoch=E), timelines, the classes it is confused with
  galleries.html               random right and wrong predictions with their top-5 maps (paper
                               Figures 6-7) and pairs of one class (Figure 8)
  errors.html                  most confused pairs, confident mistakes, confidence histogram,
                               reliability diagram
  perturbations.html           accuracy per setting and epoch; perturbations/<setting>.html:
                               original vs perturbed images with maps (Figures 9-12), the flips
  layers.html                  every layer's output for chosen images (when RUN/render/layers/ exists)
  compare.html                 this model's maps beside another run's (``--compare``) and this run's
                               explanation methods' (``edvis explain``)
  faithfulness.html            deletion, insertion and Average Drop of every method and the two
                               references, over the epochs (when ``edvis faithfulness`` measured them)
  figures.html                 every figure for papers: PNG (2x), SVG, data, citation line
  try.html                     the model of a few shipped epochs in the browser (onnxruntime-web):
                               models/epoch_NNN.onnx, vendor/onnxruntime-web/, data/try.js (trypage.py)
  inputs.sha256                every file of the run the site was made from, with the sha256 of
                               the bytes read (``sha256sum -c`` checks a run against it)
  figures/<name>.{png,svg,csv|json}
  data/common.js               class names and the viridis lookup table, for edvis.js
  data/<key>.png, data/<key>.js  sprite sheets of images and base64 uint8 maps, per page
  static/edvis.css, static/edvis.js   copied from templates/static/
```

:func:`read_sources` reads the run, its clean render units, analysis.json and the compared run;
:func:`write_site` makes the pages from them, one family at a time (``index.py``, ``classes.py``,
``galleries.py``, ``errors.py``, ``perturbations.py``, ``layers.py``, ``compare.py``,
``figures.py``), and writes them (``writing.py``, ``sprites.py``). The class pages are made and
written one class at a time, and the perturbed settings and layers files read one unit at a
time, so the build holds the clean renders and one page's arrays, not every page's. Links
are relative, nothing is fetched from elsewhere, and two builds from the same inputs are
byte-identical. ``RUN/analysis/analysis.json`` (``edvis analyze``) adds calibration, learning
dynamics and localisation numbers where it exists and covers the rendered epochs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import edvis
from edvis.run import Run, atomic
from edvis.site import figures, index, plots
from edvis.site.classes import class_index, class_pages, class_refs, class_row
from edvis.site.compare import compare_page
from edvis.site.errors import errors_page
from edvis.site.faithfulness import faithfulness_page, method_label
from edvis.site.galleries import gallery_page
from edvis.site.layers import layers_page
from edvis.site.perturbations import clean_accuracy, perturbations_page, setting_pages
from edvis.site.read_analysis import check_read
from edvis.site.read_compare import Model, read_methods, this_model
from edvis.site.read_store import CLEAN
from edvis.site.sources import Sources, read_sources
from edvis.site.sprites import Images, write_pack
from edvis.site.trypage import plan_try, write_try
from edvis.site.views import ClassRef
from edvis.site.views_pages import ClassRow, SettingPage
from edvis.site.writing import SMALL_PX, TILE_PX, Writer, js_assign, legend_gradient

log = logging.getLogger(__name__)

__all__ = ["build_site", "read_sources", "write_site"]


def build_site(
    run_dir: Path,
    out_dir: Path,
    timeline_images: int = 3,
    seed: int = 0,
    compare: Path | None = None,
    data_root: Path | None = None,
    base_url: str = "",
    precision: str = "fp32",
    try_epochs: str | None = None,
    try_precision: str = "fp32",
) -> Path:
    """Build the static site of the run in ``run_dir`` into ``out_dir``; return its index.html.

    ``timeline_images`` validation images per class get a row of their map at up to 16 epochs.
    ``seed`` fixes every random choice (timelines, galleries, perturbation rows, compared images).
    ``compare`` is another run rendered on the same validation set (e.g. the CAM baseline),
    shown beside this one. ``data_root`` is the dataset folder when it moved since rendering.
    ``base_url``, when given, makes the figures' citation lines absolute. Files already in
    ``out_dir`` that this build does not write are left alone. ``precision`` builds from the
    ONNX files, store and analysis of an approximation (see edvis.precision); the run page says
    which precision the maps come from. ``try_epochs`` names the epochs whose ONNX files the Try
    it page ships (default: the first, the middle and the final exported; ``none``: no page),
    ``try_precision`` fp32 or fp16 (the copies ``edvis.compress`` made).
    """
    src = read_sources(Path(run_dir), timeline_images=timeline_images, seed=seed, compare=compare,
                       data_root=data_root, base_url=base_url, precision=precision)
    if Path(out_dir).is_dir():
        atomic.sweep_temps(out_dir)  # what a killed build left behind
    return write_site(src, Path(out_dir), try_epochs=try_epochs, try_precision=try_precision)


def write_site(src: Sources, out_dir: Path, draw_figures: bool = True, try_epochs: str | None = None,
               try_precision: str = "fp32") -> Path:
    """Make and write every page of the site of ``src`` into ``out_dir``; return index.html's path.

    Without ``draw_figures`` the figures are listed and linked but not drawn (they take most
    of the time). ``try_epochs`` and ``try_precision``: see :func:`build_site`.
    """
    shipped = plan_try(src, try_epochs, try_precision)
    out_dir = Path(out_dir).resolve()
    lut = plots.viridis_lut()
    writer = Writer(out_dir, {"legend": legend_gradient(lut), "tile_px": TILE_PX, "small_px": SMALL_PX,
                              "version": edvis.__version__,
                              # `make docs` builds the documentation into OUT/docs/; link it only when it is there.
                              "docs": (out_dir / "docs" / "index.html").is_file()})
    images = Images(src.dataset)
    writer.static()
    writer.file("data/common.js", js_assign("names", src.dataset.names) + js_assign("lut", lut.reshape(-1).tolist()))

    settings = setting_pages(src)
    top1, top5 = clean_accuracy(src)
    finals = {CLEAN: (src.clean.final_epoch, top1[-1], top5[-1])}
    finals.update({s.name: (s.final_epoch, s.top1[-1], s.top5[-1]) for s in settings})
    models = [this_model(src.run, src.clean, finals, src.dataset.map_size)]
    models += [src.compared] if src.compared is not None else []
    layers = layers_page(src)
    writer.common["site"] = index.site_view(src, layers is not None, src.compared,
                                            faithfulness=src.analysis.faithfulness() is not None
                                            or src.analysis.sanity() is not None,
                                            methods=bool(list((Path(src.store.root).parent / "explain").glob("*/manifest.json"))),
                                            try_it=bool(shipped))
    refs = class_refs(src.dataset)
    methods = read_methods(Run(Path(src.store.root).parent), src.clean.final_epoch, src.dataset.num_val, method_label)
    sprites: dict[int, tuple[str, list[int]]] = {}  # class -> its sprite sheet and the images in it
    rows = _write_classes(writer, src, refs, settings, images, methods, sprites)
    try_it = write_try(writer, src, shipped, sprites, try_precision) if shipped else None

    compare = compare_page(src, models[0], models[1:] + methods) if len(models) > 1 or methods else None
    pages = figures.Pages(src=src, refs=refs, rows=rows, settings=settings, models=models,
                          table=index.table1(models, settings), gallery=gallery_page(src, refs, methods),
                          errors=errors_page(src, refs), compare=compare, layers=layers,
                          faithfulness=faithfulness_page(src, refs))
    catalogue = figures.catalogue(pages)
    writer.common["catalogue"] = catalogue
    packs = [pages.gallery.pack, *pages.gallery.method_packs, pages.errors.pack] + [s.pack for s in settings]
    packs += ([layers.sprite] if layers is not None else []) + (compare.packs if compare is not None else [])
    for pack in packs:
        write_pack(writer, pack, images)
    if layers is not None:
        for epoch, data in layers.packs.items():
            writer.data(f"layers-{epoch:03d}", data, layers.pack_files[epoch])
    if draw_figures:
        log.info(f"site: drawing {len(catalogue.entries)} figure(s)")
        figures.draw(pages, catalogue, writer, images)
    shipped_files = [(f"onnx/epoch_{m.epoch:03d}.onnx", m.sha256) for m in try_it.models] if try_it is not None else []
    _write_pages(writer, src, pages, models, shipped_files)
    if try_it is not None:
        writer.page("try.html", "try.html", t=try_it)
    return writer.path("index.html")


def _write_classes(writer: Writer, src: Sources, refs: list[ClassRef], settings: list[SettingPage],
                   images: Images, methods: list[Model], sprites: dict[int, tuple[str, list[int]]]) -> list[ClassRow]:
    """Each class's data file and page, one class at a time; returns what classes.html lists and
    fills ``sprites`` with each class's sprite sheet and the validation indices in it."""
    log.info(f"site: writing {len(refs)} class page(s)")
    entries = src.analysis.class_entries()
    rows = []
    for page in class_pages(src, refs, settings, methods):
        for pack in ([page.pack] if page.pack is not None else []) + page.method_packs:
            write_pack(writer, pack, images)
        if page.pack is not None and page.pack.has_sprite and not page.pack.perturbation:
            sprites[page.index] = (page.pack.sprite, list(page.pack.cells))
        writer.page("class.html", page.ref.page, cls=page)
        rows.append(class_row(page, entries.get(page.index, {})))
    return rows


def _write_pages(writer: Writer, src: Sources, pages: figures.Pages, models: list[Model],
                 shipped: list[tuple[str, str]]) -> None:
    """Every page but the class pages; with the run page, ``inputs.sha256``: every file of the run
    the site was made from, with the sha256 of the bytes read (``shipped``: the ONNX files copied)."""
    check_read(src.analysis, src.store)
    inputs = sorted(index.inputs_read(src) + shipped)
    writer.file(index.INPUTS, "".join(f"{sha}  {name}\n" for name, sha in inputs))
    writer.page("index.html", "index.html", run=index.run_page(src, models, pages.settings, len(inputs)))
    writer.page("classes.html", "classes.html", index=class_index(src, pages.rows, bool(pages.settings)))
    writer.page("galleries.html", "galleries.html", g=pages.gallery)
    writer.page("errors.html", "errors.html", er=pages.errors)
    writer.page("perturbations.html", "perturbations.html", pert=perturbations_page(src, pages.settings))
    for s in pages.settings:
        writer.page("perturbation.html", s.page, s=s)
    if pages.layers is not None:
        writer.page("layers.html", "layers.html", layers=pages.layers)
    if pages.compare is not None:
        writer.page("compare.html", "compare.html", compare=pages.compare)
    if pages.faithfulness is not None:
        writer.page("faithfulness.html", "faithfulness.html", f=pages.faithfulness)
    writer.page("figures.html", "figures.html")
