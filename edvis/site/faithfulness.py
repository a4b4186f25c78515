"""``faithfulness.html``: whether the maps are faithful, by the field's measures, per epoch.

Every number comes from analysis.json's ``faithfulness`` record (``edvis faithfulness``, then
``edvis analyze``): deletion and insertion AUCs (Petsiuk et al., 2018), Average Drop and Increase
in Confidence (Chattopadhay et al., 2018), for the model's own maps, every explanation method
measured and the two references (the centre prior and random orders). The page shows one
setting in full (clean when measured): the curves at each measured epoch (one epoch slider), the
AUCs over epochs, one sentence per method on whether it beats both references at the final
epoch, and a sortable table per class. The page is left out when the record is absent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edvis.run import REFERENCE_MAPS
from edvis.site.text import MISSING, num
from edvis.site.views import ClassRef, Slider

if TYPE_CHECKING:
    from edvis.site.sources import Sources

LABELS = {
    "model": "the model's own maps", "own": "the model's own maps", "centre": "centre prior", "random": "random order",
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM", "layercam": "LayerCAM", "eigencam": "EigenCAM",
    "scorecam": "Score-CAM",
}
MEASURES = ("deletion_auc", "insertion_auc", "average_drop", "increase")


def method_label(name: str) -> str:
    return LABELS.get(name, name)


@dataclass(frozen=True)
class MethodRow:
    """A method's (or reference's) numbers at the final epoch of the page's setting."""

    name: str
    label: str
    cells: list[str]  # deletion AUC, insertion AUC, Average Drop (%), Increase (%)
    covered: str  # "64 of 64"
    reference: bool
    verdict: str  # one sentence, with the numbers; "" for a reference


@dataclass(frozen=True)
class EpochPanel:
    """The curves at one measured epoch (shown when the slider is on it)."""

    epoch: int
    image: str  # figures/faithfulness-curves-eNNN.png
    alt: str


@dataclass(frozen=True)
class ClassFaithRow:
    ref: ClassRef
    images: int
    values: list[tuple[str, str]]  # per method: (data-value, text) of deletion then insertion AUC


@dataclass(eq=False)
class SanityView:
    """The sanity checks (``edvis explain --sanity``, then ``edvis analyze``): per method, how alike
    its maps stay as the layers are re-initialised, and its true and random other class's maps."""

    epoch: int | None
    layer: str
    images: int
    steps: list[str]
    rows: list[tuple[str, list[str]]]  # (method label, "Spearman / SSIM" per step)
    logit: list[tuple[str, str, str]]  # (method label, Spearman, SSIM)
    index: list[int] = field(default_factory=list)  # the images' validation indices
    methods: list[str] = field(default_factory=list)
    maps: Any = field(default=None, repr=False)  # (M, T + 1, K, S, S) from sanity.npz, for the figure
    verdicts: list[str] = field(default_factory=list)


@dataclass(eq=False)
class FaithfulnessPage:
    setting: str
    settings: list[str]
    final_epoch: int
    images: int
    steps: int
    sigma: float
    map_size: int
    methods: list[MethodRow]
    slider: Slider
    panels: list[EpochPanel]
    class_methods: list[str]  # the labels of the per-class table's column groups
    class_rows: list[ClassFaithRow]
    other_settings: list[tuple[str, list[MethodRow]]]  # the other measured settings at their final epoch
    curves: dict[int, list[dict[str, Any]]] = field(default_factory=dict, repr=False)  # epoch -> per method
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)  # the page's setting, every epoch
    sanity: SanityView | None = None
    by_epoch: list[tuple[int, list[MethodRow]]] = field(default_factory=list)  # every measured epoch

    @property
    def has_measures(self) -> bool:
        return bool(self.methods)

    @property
    def definitions_note(self) -> str:
        return (f"{self.images} validation images (seeded, the same for every method and epoch), {self.map_size}×"
                f"{self.map_size} cells, {self.steps} steps, blur σ = {self.sigma:g} px")


def faithfulness_page(src: Sources, refs: list[ClassRef]) -> FaithfulnessPage | None:
    """The page, or None when analysis.json holds neither a faithfulness nor a sanity record."""
    record = src.analysis.faithfulness()
    sanity = sanity_view(src)
    rows = [r for r in (record or {}).get("rows", []) if isinstance(r, dict)]
    settings = [s for s in (record or {}).get("settings", []) if any(r.get("setting") == s for r in rows)]
    if not settings:
        if sanity is None:
            return None
        return FaithfulnessPage(setting="", settings=[], final_epoch=0, images=0, steps=0, sigma=0, map_size=0,
                                methods=[], slider=Slider([]), panels=[], class_methods=[], class_rows=[],
                                other_settings=[], sanity=sanity)
    assert record is not None
    setting = "clean" if "clean" in settings else settings[0]
    methods = _ordered([str(m) for m in record.get("methods", [])])
    mine = [r for r in rows if r.get("setting") == setting]
    epochs = sorted({int(r["epoch"]) for r in mine})
    final = epochs[-1]
    curves: dict[int, list[dict[str, Any]]] = {e: [] for e in epochs}
    for c in record.get("curves", []):
        if isinstance(c, dict) and c.get("setting") == setting and c.get("epoch") in curves:
            curves[int(c["epoch"])].append(c)
    panels = [EpochPanel(e, f"figures/faithfulness-curves-e{e:03d}.png",
                         f"Deletion and insertion curves of every method at epoch {e} ({setting} images): the true "
                         f"class's probability against the fraction of cells deleted or inserted.") for e in epochs]
    class_methods, class_rows = _class_table(record, setting, final, methods, refs)
    return FaithfulnessPage(
        setting=setting, settings=settings, final_epoch=final, images=int(record.get("images") or 0),
        steps=int(record.get("steps") or 0), sigma=float(record.get("sigma") or 0),
        map_size=int(record.get("map_size") or 0), methods=method_rows(mine, final, methods), slider=Slider(epochs),
        panels=panels, class_methods=class_methods, class_rows=class_rows,
        other_settings=[(s, method_rows([r for r in rows if r.get("setting") == s],
                                        max(int(r["epoch"]) for r in rows if r.get("setting") == s), methods))
                        for s in settings if s != setting],
        curves=curves, rows=mine, sanity=sanity, by_epoch=[(e, method_rows(mine, e, methods)) for e in epochs],
    )


def sanity_view(src: Sources) -> SanityView | None:
    """The sanity checks' numbers from analysis.json and their maps from RUN/explain/sanity.npz."""
    record = src.analysis.sanity()
    if record is None:
        return None
    steps = [str(t) for t in record.get("steps", [])]
    methods = [str(m) for m in record.get("methods", [])]
    by = {(r.get("method"), r.get("step")): r for r in record.get("randomisation", []) if isinstance(r, dict)}
    rows = [(method_label(m), [f"{num(by.get((m, t), {}).get('spearman'), '.2f')} / "
                               f"{num(by.get((m, t), {}).get('ssim'), '.2f')}" for t in steps]) for m in methods]
    logit = [(method_label(str(r.get("method"))), num(r.get("spearman"), ".2f"), num(r.get("ssim"), ".2f"))
             for r in record.get("random_logit", []) if isinstance(r, dict)]
    verdicts = []
    last = steps[-1] if steps else None
    for m in methods:
        rho = by.get((m, last), {}).get("spearman")
        if _finite(rho) and last is not None:
            alike = "stay alike: they do not follow the weights" if rho >= 0.5 else "change with the weights"
            verdicts.append(f"{_sentence_case(method_label(m))}: rank correlation {rho:.2f} with its trained maps once "
                            f"every layer down to {last} is re-initialised; its maps {alike}.")
    return SanityView(epoch=record.get("epoch"), layer=str(record.get("layer") or ""),
                      images=int(record.get("images") or 0),
                      steps=steps, rows=rows, logit=logit, index=[int(i) for i in record.get("index", [])],
                      methods=methods, maps=src.sanity_maps, verdicts=verdicts)


def _ordered(methods: list[str]) -> list[str]:
    """The model's own maps first, the references last, the methods between in their order."""
    own = [m for m in methods if m == "model"]
    refs = [m for m in REFERENCE_MAPS if m in methods]
    return own + [m for m in methods if m != "model" and m not in REFERENCE_MAPS] + refs


def method_rows(rows: list[dict[str, Any]], epoch: int, methods: list[str]) -> list[MethodRow]:
    """Each method's numbers at ``epoch``, with its verdict against the references."""
    at = {r.get("method"): r for r in rows if r.get("epoch") == epoch}
    out = []
    for m in methods:
        r = at.get(m)
        if r is None:
            continue
        cells = [num(r.get("deletion_auc"), ".3f"), num(r.get("insertion_auc"), ".3f"),
                 num(r.get("average_drop"), ".1f"), num(r.get("increase"), ".1f")]
        covered = f"{r.get('covered', MISSING)} of {r.get('images', MISSING)}"
        verdict = "" if m in REFERENCE_MAPS else verdict_sentence(m, r, {k: at[k] for k in REFERENCE_MAPS if k in at}, epoch)
        out.append(MethodRow(m, method_label(m), cells, covered, m in REFERENCE_MAPS, verdict))
    return out


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _signed(v: float) -> str:
    return f"{v:+.3f}".replace("-", "−")


def _paired(row: dict[str, Any], ref: str) -> list[tuple[str, float, float, float]] | None:
    """(measure, difference, low, high) of ``row``'s paired differences from reference ``ref``
    (edvis.analyze.faithfulness), or None when the record has no finite interval."""
    out = []
    for k in ("deletion", "insertion"):
        v = [row.get(f"{k}_vs_{ref}{b}") for b in ("", "_lo", "_hi")]
        if not all(_finite(x) for x in v):
            return None
        out.append((k, float(v[0]), float(v[1]), float(v[2])))
    return out


def verdict_sentence(method: str, row: dict[str, Any], refs: dict[str, dict[str, Any]], epoch: int) -> str:
    """Whether ``method``'s ranking beats each reference on deletion (lower AUC) and insertion
    (higher AUC) at ``epoch``, with the numbers. With the paired differences' 95% intervals in the
    record, a measure is better or worse only when its interval excludes 0; without them, by the
    means alone."""
    d, i = row.get("deletion_auc"), row.get("insertion_auc")
    if not (_finite(d) and _finite(i)) or not refs:
        return f"{_sentence_case(method_label(method))}: not enough images measured at epoch {epoch} to compare."
    paired = {name: _paired(row, name) for name in refs}
    if all(p is not None for p in paired.values()):
        return _interval_verdict(method, d, i, refs, paired, epoch)  # type: ignore[arg-type]
    parts, wins = [], 0
    for name, ref in refs.items():
        rd, ri = ref.get("deletion_auc"), ref.get("insertion_auc")
        if not (_finite(rd) and _finite(ri)):
            continue
        on = [k for k, ok in (("deletion", d < rd), ("insertion", i > ri)) if ok]
        wins += len(on) == 2
        what = "on both" if len(on) == 2 else f"on {on[0]} only" if on else "on neither"
        parts.append(f"the {method_label(name)} {what} (deletion {rd:.3f}, insertion {ri:.3f})")
    overall = "it beats both references on both measures" if wins == len(parts) == 2 else \
        "it does not beat both references on both measures"
    return (f"{_sentence_case(method_label(method))} at epoch {epoch}: deletion AUC {d:.3f}, insertion AUC {i:.3f}; "
            f"against " + "; against ".join(parts) + f": {overall}.")


def _interval_verdict(method: str, d: float, i: float, refs: dict[str, dict[str, Any]],
                      paired: dict[str, list[tuple[str, float, float, float]]], epoch: int) -> str:
    parts, better = [], 0
    for name, diffs in paired.items():
        words = []
        for k, mean, lo, hi in diffs:
            good, bad = (hi < 0, lo > 0) if k == "deletion" else (lo > 0, hi < 0)
            better += good
            words.append(f"{k} {_signed(mean)} (95% interval {_signed(lo)} to {_signed(hi)}, "
                         f"{'better' if good else 'worse' if bad else 'no clear difference'})")
        ref = refs[name]
        parts.append(f"against the {method_label(name)} (deletion {num(ref.get('deletion_auc'), '.3f')}, insertion "
                     f"{num(ref.get('insertion_auc'), '.3f')}), paired over the images both cover: " + " and ".join(words))
    overall = ("it beats both references on both measures" if better == 2 * len(paired) == 4 else
               "it does not beat both references on both measures")
    return (f"{_sentence_case(method_label(method))} at epoch {epoch}: deletion AUC {d:.3f}, insertion AUC {i:.3f}; "
            + "; ".join(parts) + f": {overall}.")


def _class_table(record: dict[str, Any], setting: str, epoch: int, methods: list[str],
                 refs: list[ClassRef]) -> tuple[list[str], list[ClassFaithRow]]:
    entries = [c for c in record.get("classes", []) if isinstance(c, dict) and c.get("setting") == setting
               and c.get("epoch") == epoch]
    shown = [m for m in methods if any(c.get("method") == m for c in entries)]
    by = {(c.get("index"), c.get("method")): c for c in entries}
    rows = []
    for k in sorted({c.get("index") for c in entries if isinstance(c.get("index"), int)}):
        if not 0 <= k < len(refs):
            continue
        values: list[tuple[str, str]] = []
        images = 0
        for m in shown:
            c = by.get((k, m), {})
            images = max(images, int(c.get("images") or 0))
            for key in ("deletion_auc", "insertion_auc"):
                v = c.get(key)
                values.append(("" if not _finite(v) else f"{v:.6f}", num(v, ".3f")))
        rows.append(ClassFaithRow(refs[k], images, values))
    return [method_label(m) for m in shown], rows
