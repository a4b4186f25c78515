"""The run page (``index.html``: the run, its file hashes, Table 1, localisation, training
curves, configuration) and what every page's frame shows (:class:`SiteView`, the navigation)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from edvis.data import order_settings
from edvis.site.compare import localisation_cells
from edvis.site.read_run import local_name
from edvis.site.text import MISSING, num, pct
from edvis.site.views import EpochRow, LocalisationRow, NavItem, RunPage, SiteView, TableRow

if TYPE_CHECKING:
    from edvis.site.read_compare import Model
    from edvis.site.sources import Sources
    from edvis.site.views_pages import SettingPage


def site_view(src: Sources, layers: bool, compare: Model | None, faithfulness: bool = False,
              methods: bool = False, try_it: bool = False) -> SiteView:
    """The frame of every page; ``layers``, ``compare``, ``faithfulness`` and ``try_it`` say whether those pages exist."""
    run, ds = src.run, src.dataset
    nav = [
        NavItem("index.html", "Run"),
        NavItem("classes.html", "Classes", f"all {ds.num_classes}, sortable by accuracy and by when they were learned; "
                                           "a page each with its images and maps at every epoch."),
        NavItem("galleries.html", "Galleries",
                "random right and wrong predictions with their top-5 maps, and pairs of one class."),
        NavItem("errors.html", "Errors", "the most confused pairs, confident mistakes, confidence and calibration."),
        NavItem("perturbations.html", "Perturbations",
                "accuracy under each setting, and images before and after with their maps."),
    ]
    if layers:
        nav.append(NavItem("layers.html", "Layers", Markup("every layer's output for chosen images."), optional=True))
    if compare is not None or methods:
        what = [Markup("{}'s").format(compare.label)] if compare is not None else []
        what += ["the explanation methods'"] if methods else []
        nav.append(NavItem("compare.html", "Compare", Markup("this model's maps beside {}.").format(Markup(" and ").join(what)),
                           optional=True))
    if faithfulness:
        nav.append(NavItem("faithfulness.html", "Faithfulness",
                           "whether the score depends on the bright cells: deletion, insertion and Average Drop "
                           "for every method and two references, per epoch.", optional=True))
    if try_it:
        nav.append(NavItem("try.html", "Try it", "the model of a shipped epoch run in your browser on a validation image "
                                                 "or your own: its top-5 maps and every layer at once.", optional=True))
    nav.append(NavItem("figures.html", "Figures", "every figure as PNG, SVG and data, with a citation line."))
    return SiteView(
        run_name=run.name, model_name=run.model_name, variant=run.variant, num_classes=ds.num_classes,
        num_val=ds.num_val, fingerprint=ds.fingerprint, seed=src.seed, image_size=ds.image_size,
        map_size=ds.map_size, epochs=src.epochs, nav=nav,
    )


def table1(models: list[Model], settings: list[SettingPage]) -> list[TableRow]:
    """Table 1: a row per setting any model rendered, top-1/top-5 per model at its final epoch."""
    names = order_settings(sorted({n for m in models for n in m.settings}))
    pages = {s.name: s.page for s in settings}
    return [TableRow(n, pages.get(n, ""), [m.settings.get(n, (None, None)) for m in models]) for n in names]


INPUTS = "inputs.sha256"
# Which ONNX files the maps come from, as the run page says it (the store's manifest records a
# precision other than fp32; see edvis.precision).
PRECISION_TEXT = {
    "fp32": "float32: the exported ONNX files",
    "fp16": "float16: the ONNX files converted to float16 (onnx-fp16/; measured against float32 in onnx-fp16/report.json)",
    "int8": "int8: the ONNX files quantised statically (onnx-int8/; measured against float32 in onnx-int8/report.json)",
}


def precision_of(src: Sources) -> str:
    """The precision of the ONNX files the store was rendered from (fp32 unless its manifest says)."""
    return str(src.store.manifest().get("precision", "fp32"))


def _folder(name: str, src: Sources) -> str:
    """A run folder's name at the site's precision: render → render-int8, …"""
    precision = precision_of(src)
    return name if precision == "fp32" else f"{name}-{precision}"


def inputs_read(src: Sources) -> list[tuple[str, str]]:
    """(path in the run, sha256 of the bytes read) of every file the site was made from: the
    run's config and metrics, analysis.json, and each file of the render store it read."""
    store = [(f"{_folder('render', src)}/{name}", sha) for name, sha in src.store.verified().items()]
    sanity = [("explain/sanity.npz", src.sanity_sha256)] if src.sanity_sha256 else []
    return sorted(src.run.hashes + [(f"{_folder('analysis', src)}/analysis.json", src.analysis.sha256)] + store + sanity)


def run_page(src: Sources, models: list[Model], settings: list[SettingPage], inputs: int = 0) -> RunPage:
    """index.html; ``inputs`` files are listed in inputs.sha256."""
    run, ds, epochs = src.run, src.dataset, src.epochs
    planned = f" of {run.epochs_planned}" if run.epochs_planned else ""
    loc = src.analysis.models() if src.analysis.has_boxes() else []
    return RunPage(
        dataset_name=local_name(str(ds.root)), layout=ds.layout,
        model_text=(run.model_name or MISSING) + (f", variant {run.variant}" if run.variant else "")
        + (f", {run.stem} stem" if run.stem not in ("", "paper") else "")
        + (f", {run.decoder} decoder" if run.decoder not in ("", "transposed") else "")
        + f"; maps {ds.map_size}×{ds.map_size} at {ds.image_size} × {ds.image_size} px images",
        precision_text=PRECISION_TEXT.get(precision_of(src), precision_of(src)),
        recipe_text=run.recipe or MISSING,
        epochs_text=f"{len(run.metrics)} trained{planned}; {len(epochs)} rendered ({epochs[0]}–{epochs[-1]})",
        settings=[("clean", "")] + [(s.name, s.page) for s in settings],
        compared=(models[1].label, models[1].run_name) if len(models) > 1 else None,
        hashes=run.hashes + [(f"{_folder('analysis', src)}/analysis.json", src.analysis.sha256),
                             (f"{_folder('render', src)}/manifest.json", src.store.digest(src.store.manifest_path) or MISSING)]
        + [(f"{_folder('onnx', src)}/epoch_{e:03d}.onnx", sha or MISSING) for e, sha in run.onnx_hashes],
        inputs_file=INPUTS, inputs_count=inputs,
        model_labels=[m.label for m in models],
        model_epochs_text=" (" + "; ".join(f"{m.label}: {m.epoch}" for m in models) + ")" if models else "",
        table=table1(models, settings),
        localisation=[LocalisationRow(m.get("model"), m.get("epoch"), localisation_cells(m)) for m in loc],
        has_compare=len(models) > 1, metric_rows=metric_rows(run.metrics), config_rows=run.config_rows,
    )


def metric_rows(metrics: list[dict[str, Any]]) -> list[EpochRow]:
    """metrics.jsonl as table rows; the best validation top-1 is marked."""
    scores = [r.get("val_top1") for r in metrics]
    finite = [s for s in scores if isinstance(s, (int, float)) and math.isfinite(s)]
    best = max(finite) if finite else None
    return [
        EpochRow(
            epoch=int(r["epoch"]),
            train_loss=num(r.get("train_loss"), ".4f"),
            val_loss=num(r.get("val_loss"), ".4f"),
            val_top1=pct(r.get("val_top1")),
            val_top5=pct(r.get("val_top5")),
            lr=num(r.get("lr"), ".3g"),
            seconds=num(r.get("seconds"), ".0f"),
            best=best is not None and r.get("val_top1") == best,
        )
        for r in metrics
    ]
