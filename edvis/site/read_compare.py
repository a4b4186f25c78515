"""Reader of the models in Table 1 and on the compare page: this run's, and the run given with
``--compare`` (its final epoch: accuracy per setting from analysis.json, clean predictions and
maps from its render store)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edvis.run import RenderStore, Run, StoreError, Unit, digest
from edvis.run import model_label as label_of
from edvis.site.read_analysis import Analysis, check_inputs, check_read, listed_inputs
from edvis.site.read_run import RunInfo, read_config
from edvis.site.read_store import CLEAN, CleanRenders, normalise_maps
from edvis.site.site_error import SiteError

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Model:
    """A run whose numbers appear in Table 1: this one, or the one passed with ``--compare``."""

    label: str
    run_name: str
    epoch: int
    settings: dict[str, tuple[float, float]]  # setting -> (top1, top5) at ``epoch``
    map_size: int
    pred: np.ndarray = field(repr=False)  # (N,) final clean top-1
    prob: np.ndarray = field(repr=False)
    maps: np.ndarray = field(repr=False)  # (N, S, S) uint8 true-class maps
    covered: np.ndarray | None = field(default=None, repr=False)  # (N,) bool: images it has maps of (None: all)
    method: str = ""  # an explanation method of this run's model (``edvis explain``), not another model


def model_label(run: RunInfo) -> str:
    """This run's model as Table 1 names it."""
    return label_of({"name": run.model_name, "variant": run.variant, "stem": run.stem, "decoder": run.decoder},
                    run.name)


def this_model(run: RunInfo, clean: CleanRenders, settings: dict[str, tuple[int, float, float]],
               map_size: int) -> Model:
    """This run at its final rendered epoch; ``settings`` maps a setting to (final epoch, top-1, top-5)."""
    return Model(
        label=model_label(run), run_name=run.name, epoch=clean.final_epoch,
        settings={name: (t1, t5) for name, (epoch, t1, t5) in settings.items() if epoch == clean.final_epoch},
        map_size=map_size, pred=clean.pred[-1], prob=clean.prob[-1], maps=clean.maps[-1],
    )


def read_methods(run: Run, epoch: int, num_val: int, map_label: Any) -> list[Model]:
    """The explanation methods of this run (``RUN/explain/<method>/``, ``edvis explain``) with a
    clean unit at ``epoch``: their true-class maps of the images they cover. A unit computed from
    another checkpoint than the run's is refused."""
    out = []
    for root in sorted(p for p in (run.root / "explain").glob("*") if (p / "manifest.json").is_file()):
        store = RenderStore(root)
        if not store.path(Unit(CLEAN, epoch)).is_file():
            continue
        # Read once: the metadata then comes from the bytes read and verified.
        unit = store.read(Unit(CLEAN, epoch), ("top5", "top5_prob", "map_true"), ("index",))
        meta = store.meta(Unit(CLEAN, epoch)) or {}
        ckpt = run.checkpoint(epoch)
        recorded = digest.recorded_digest(ckpt) if ckpt.is_file() else None
        if recorded is not None and meta.get("checkpoint_sha256") not in (None, recorded):
            raise SiteError(f"{store.path(Unit(CLEAN, epoch))} was computed from another checkpoint than {ckpt}: "
                            f"run `edvis explain --method {root.name}`")
        index = np.asarray(unit.get("index", np.arange(num_val)), np.int64)
        maps = np.zeros((num_val, *unit["map_true"].shape[1:]), np.uint8)
        maps[index] = normalise_maps(unit["map_true"])
        pred, prob, covered = np.full(num_val, -1), np.zeros(num_val), np.zeros(num_val, bool)
        pred[index], prob[index], covered[index] = unit["top5"][:, 0], unit["top5_prob"][:, 0], True
        out.append(Model(label=map_label(root.name), run_name=run.root.resolve().name, epoch=epoch, settings={},
                         map_size=int(maps.shape[1]), pred=pred, prob=prob, maps=maps, covered=covered, method=root.name))
    return out


def read_compare(run_dir: Path, manifest: dict[str, Any], analysis: Analysis, analysis_path: Path,
                 mine: str) -> Model:
    """The run given with ``--compare``, checked to be rendered on this run's validation set;
    its label gets its folder's name when it equals ``mine`` (this model's label). Its top-1 and
    top-5 per setting are ``analysis``'s (``edvis analyze --compare``); the store gives its maps."""
    run = Run(run_dir)
    store = RenderStore(run.render_dir)
    try:
        other = store.manifest()
    except StoreError as e:
        raise SiteError(f"--compare {run_dir}: {e}") from None
    mine_val, other_val = manifest["val"], other.get("val", {})
    if (other.get("dataset", {}).get("fingerprint") != manifest.get("dataset", {}).get("fingerprint")
            or other_val.get("files") != mine_val.get("files") or other_val.get("labels") != mine_val.get("labels")):
        raise SiteError(f"--compare {run_dir}: {store.manifest_path} describes another validation set than "
                        f"this run's render store (dataset fingerprint, files or labels differ)")
    epochs = store.epochs(CLEAN)
    if not epochs:
        raise SiteError(f"--compare {run_dir}: no rendered epochs in {store.root / CLEAN}")
    config = read_config(run)
    model = config.get("model", {}) if isinstance(config.get("model"), dict) else {}
    label = label_of(model, run_dir.resolve().name)
    if label == mine:
        label += f" [{run_dir.resolve().name}]"
    epoch = epochs[-1]
    settings = analysis.compare_settings(epoch)
    if settings is None:
        raise SiteError(f"{analysis_path}: no top-1/top-5 of {run_dir} at its epoch {epoch} (compare.settings): "
                        f"run `edvis analyze --compare {run_dir}`")
    check_inputs(analysis_path, listed_inputs(analysis.data, "compare", analysis_path), store, every=False)
    log.info(f"site: reading {run_dir} (compared), epoch {epoch}")
    clean = store.read(Unit(CLEAN, epoch), ("top5", "top5_prob", "map_true"), ())
    check_read(analysis, store, "compare")
    top5 = np.asarray(clean["top5"], dtype=np.int64)
    return Model(label=label, run_name=run_dir.resolve().name, epoch=epoch, settings=settings,
                 map_size=int(other.get("map_size", 8)), pred=top5[:, 0],
                 prob=np.asarray(clean["top5_prob"], dtype=np.float64)[:, 0], maps=normalise_maps(clean["map_true"]))
