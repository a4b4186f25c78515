"""The perturbation pages: ``perturbations.html`` (every setting against the clean images) and
``perturbations/<setting>.html`` (chosen images, original and perturbed, with their maps).

The settings are read here, one at a time (:func:`setting_pages`); each keeps its accuracy,
flips and per-class top-1 (analysis.json's) and the data file of its page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edvis.site import picks
from edvis.site.read_store import CLEAN, Rows, perturbed_settings, read_setting
from edvis.site.text import class_name, num, pct, setting_slug, true_map_alt
from edvis.site.views import Pack, Tile
from edvis.site.views_pages import CleanRow, Corruption, PerturbationsPage, SettingPage

if TYPE_CHECKING:
    from edvis.site.read_store import SettingRenders
    from edvis.site.sources import Sources

PERTURB_ROWS = 8
PERTURB_FLIPS = 8


def clean_accuracy(src: Sources) -> tuple[list[float], list[float]]:
    """The clean images' top-1 and top-5 at each rendered epoch (analysis.json's)."""
    return src.analysis.accuracy_by_epoch(CLEAN, src.epochs)


def setting_pages(src: Sources) -> list[SettingPage]:
    """Every perturbed setting with a rendered epoch that also has a clean unit, in order."""
    names = perturbed_settings(src.store)
    slugs, used = {}, {setting_slug(CLEAN)}
    for name in names:
        slug = setting_slug(name)
        while slug in used:
            slug += "-x"
        used.add(slug)
        slugs[name] = slug
    random_rows = picks.choose(np.arange(src.dataset.num_val), PERTURB_ROWS, picks.rng(src.seed, "perturbation-rows"))
    clean_top1 = clean_accuracy(src)[0]
    out = []
    for name in names:
        def choose(flipped: np.ndarray, name: str = name) -> Rows:
            return Rows(random_rows, picks.choose(flipped, PERTURB_FLIPS, picks.rng(src.seed, f"flips:{name}")))

        s = read_setting(src.store, name, src.clean, src.dataset.labels, src.analysis, choose)
        if s is not None:
            out.append(_page(src, s, slugs[name], clean_top1[src.clean.epochs.index(s.final_epoch)]))
    return out


def _page(src: Sources, s: SettingRenders, slug: str, clean_top1: float) -> SettingPage:
    """One setting's page: each shown image clean and perturbed, following the slider."""
    ds = src.dataset
    rows = s.rows.shown
    pack = Pack(
        key=f"pert-{slug}", epochs=s.epochs, maps=s.maps, cells=[i for i in rows for _ in (0, 1)], pred=s.pred,
        prob=s.prob, truth=[int(ds.labels[i]) for i in rows for _ in (0, 1)],
        files=[ds.files[i] for i in rows for _ in (0, 1)], perturbation=s.name, perturbation_seed=s.seed,
    )
    page = SettingPage(
        name=s.name, slug=slug, epochs=s.epochs, top1=s.top1, top5=s.top5, clean_top1=clean_top1, flips=s.flips,
        num_val=ds.num_val, seed=s.seed, known=s.known, random_count=len(s.rows.random),
        has_flip_rows=bool(s.rows.flips), analysis=src.analysis.setting(s.name), class_top1=s.class_top1,
        pack=pack, rows=rows,
    )
    last = len(s.epochs) - 1
    for j, i in enumerate(rows):
        truth = ds.truth(i)
        pair = []
        for side, seq in (("original", 2 * j), (s.name, 2 * j + 1)):
            k = int(s.pred[seq, last])
            p = round(float(s.prob[seq, last]), 4)
            verdict = "right" if k == ds.labels[i] else "wrong"
            pair.append(Tile(
                src=pack.key, seq=seq, cell=seq, epoch_index=last, follow=True, label=side,
                alt=true_map_alt(ds.files[i], truth, s.epochs[-1], class_name(ds.names, k), p, verdict)
                + ("" if side == "original" else f" ({s.name})"),
                name=class_name(ds.names, k), prob=p, verdict=verdict,
            ))
        change = "flip" if s.pred[2 * j, last] != s.pred[2 * j + 1, last] else ""
        page.tiles.append((pair[0], pair[1], change))
    return page


def perturbations_page(src: Sources, settings: list[SettingPage]) -> PerturbationsPage:
    """perturbations.html."""
    top1, top5 = clean_accuracy(src)
    clean = CleanRow(src.clean.final_epoch, pct(top1[-1]), pct(top5[-1]),
                     num(src.analysis.setting(CLEAN).get("ece"), ".4f"))
    summary = ", ".join([f"{CLEAN} {pct(top1[-1])}"] + [f"{s.name} {pct(s.top1[-1])}" for s in settings])
    return PerturbationsPage(clean=clean, settings=settings, plot_summary=summary,
                             corruption=_corruption(src))


def _corruption(src: Sources) -> Corruption | None:
    """analysis.json's severity sweeps, when it has any."""
    corr = src.analysis.corruption()
    kinds = corr.get("kinds") if corr else None
    if not corr or not kinds:
        return None
    rows = [(str(k.get("kind")), str(k.get("epoch")), ", ".join(str(v) for v in k.get("severities", [])),
             [pct(k.get("mean_error")), pct(k.get("clean_error")), num(k.get("relative_ce"), ".3f")])
            for k in kinds if isinstance(k, dict) and k.get("epoch") == corr.get("epoch")]
    mean = corr.get("mean_relative_ce", "")
    return Corruption(str(corr.get("reference", "")), rows, None if mean is None else num(mean, ".3f"))
