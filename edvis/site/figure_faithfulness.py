"""The faithfulness figures (drawn with matplotlib like ``plots.py``'s, from analysis.json's
numbers): the mean deletion and insertion curves of every method at one epoch, and the AUCs over
the measured epochs. Each writes ``.png`` (2x), ``.svg`` and ``.csv`` beside its stem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

from edvis.run import REFERENCE_MAPS
from edvis.site import plots
from edvis.site.faithfulness import method_label


def _style_of(k: int, method: str) -> dict[str, Any]:
    if method in REFERENCE_MAPS:
        return {"color": "#777777", "ls": "--" if method == "centre" else ":", "lw": 1.4}
    return {"color": plots.OKABE_ITO[k % len(plots.OKABE_ITO)], "ls": "-", "lw": 2.2 if method == "model" else 1.3}


def curves_figure(curves: list[dict[str, Any]], epoch: int, setting: str, stem: Path, csv: bool = True) -> None:
    """Deletion (left) and insertion (right) curves, one line per method, at ``epoch``."""
    stem = Path(stem)
    if csv:
        rows = [(c["method"], f, d, i) for c in curves for f, d, i in zip(c["fractions"], c["deletion"], c["insertion"])]
        plots.write_csv(stem.with_name(f"{stem.name}.csv"), ("method", "fraction", "deletion", "insertion"), rows)
    with matplotlib.rc_context(plots._RC):
        fig = plots._figure((8.0, 3.4))
        axes = fig.subplots(1, 2, sharey=True)
        for k, c in enumerate(curves):
            for ax, key in zip(axes, ("deletion", "insertion")):
                values = [v if v is not None else float("nan") for v in c[key]]
                ax.plot(c["fractions"], values, label=method_label(c["method"]), **_style_of(k, c["method"]))
        for ax, key in zip(axes, ("deletion", "insertion")):
            ax.set_title(f"{key.capitalize()} ({setting}, epoch {epoch})")
            ax.set_xlabel(f"fraction of cells {'deleted' if key == 'deletion' else 'inserted'}")
            ax.set_xlim(0, 1)
            plots._style(ax)
        axes[0].set_ylabel("true class probability")
        axes[0].set_ylim(0, 1)
        axes[1].legend(frameon=False, fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
        plots._save(fig, stem)


def auc_figure(rows: list[dict[str, Any]], methods: list[str], setting: str, stem: Path) -> None:
    """Deletion and insertion AUC over the measured epochs, one line per method."""
    stem = Path(stem)
    rows = sorted(rows, key=lambda r: (methods.index(r["method"]) if r["method"] in methods else 99, r["epoch"]))
    plots.write_csv(stem.with_name(f"{stem.name}.csv"),
                    ("method", "epoch", "deletion_auc", "insertion_auc", "average_drop", "increase"),
                    [(r["method"], r["epoch"], r.get("deletion_auc"), r.get("insertion_auc"), r.get("average_drop"),
                      r.get("increase")) for r in rows])
    epochs = sorted({r["epoch"] for r in rows})
    with matplotlib.rc_context(plots._RC):
        fig = plots._figure((8.0, 3.4))
        axes = fig.subplots(1, 2)
        for k, m in enumerate(methods):
            mine = {r["epoch"]: r for r in rows if r["method"] == m}
            if not mine:
                continue
            for ax, key in zip(axes, ("deletion_auc", "insertion_auc")):
                ys = [mine[e].get(key) if e in mine else None for e in epochs]
                ax.plot(epochs, [y if y is not None else float("nan") for y in ys], marker="o", ms=3,
                        label=method_label(m), **_style_of(k, m))
        for ax, title in zip(axes, ("Deletion AUC (lower: more faithful)", "Insertion AUC (higher: more faithful)")):
            ax.set_title(f"{title}, {setting}", fontsize="medium")
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            plots._style(ax)
        axes[1].legend(frameon=False, fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
        plots._save(fig, stem)


def sanity_figure(view: Any, dataset: Any, images: Any, stem: Path, title: str, per_image: int = 2) -> None:
    """For the first ``per_image`` images of the sanity checks: a row per method, its map of the
    true class at each randomisation step (each map scaled to its own maximum)."""
    from edvis.site.read_store import normalise_maps
    from edvis.site.text import short

    rows, data = [], []
    for k, i in enumerate(view.index[:per_image]):
        for m, method in enumerate(view.methods):
            maps = normalise_maps(view.maps[m, :, k])  # (T + 1, S, S) uint8
            row = [plots.Cell(image=images.load(i), top=short(dataset.truth(i)), bottom=short(method_label(method), 22))]
            row += [plots.Cell(map=maps[t], top=short(step, 14)) for t, step in enumerate(view.steps)]
            rows.append(row)
            data.append({"file": dataset.files[i], "class": dataset.truth(i), "method": method,
                         "maps": [{"step": step, "map": [[round(v / 255, 3) for v in r] for r in maps[t].tolist()]}
                                  for t, step in enumerate(view.steps)]})
    plots.map_mosaic(rows, stem, f"{title} (epoch {view.epoch})",
                     {"title": title, "epoch": view.epoch, "layer": view.layer, "steps": view.steps, "images": data})
