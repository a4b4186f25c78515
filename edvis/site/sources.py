"""What the readers give, gathered once: the run, its dataset, analysis.json, the clean renders
and the compared run. The perturbed settings and the layers files are read later, one at a
time, by the pages that show them (``perturbations.py``, ``layers.py``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edvis.errors import UsageError
from edvis.run import WRITE_SANITY_AGAIN, IntegrityError, RenderStore, Run, StoreError, complete_epochs, read_sanity
from edvis.site.read_analysis import Analysis, read_analysis
from edvis.site.read_compare import Model, model_label, read_compare
from edvis.site.read_run import Dataset, RunInfo, check_dataset, read_config, read_dataset, read_run
from edvis.site.read_store import CLEAN, CleanRenders, read_clean
from edvis.site.site_error import SiteError

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Sources:
    """Everything the pages are made from that is read before any of them is."""

    run: RunInfo
    dataset: Dataset
    analysis: Analysis
    clean: CleanRenders
    store: RenderStore
    compared: Model | None  # the run given with ``--compare``
    timeline_images: int = 3
    seed: int = 0
    base_url: str = ""  # ends with "/" when given
    sanity_maps: np.ndarray | None = None  # (M, T + 1, K, S, S) of RUN/explain/sanity.npz, when analysed
    sanity_sha256: str = ""

    @property
    def epochs(self) -> list[int]:
        return self.clean.epochs


def read_sources(
    run_dir: Path,
    timeline_images: int = 3,
    seed: int = 0,
    compare: Path | None = None,
    data_root: Path | None = None,
    base_url: str = "",
    precision: str = "fp32",
) -> Sources:
    """Read the config, metrics, manifest, clean render units and analysis.json of the run in
    ``run_dir`` (and the clean units of ``compare``); see :func:`edvis.site.build_site`."""
    if timeline_images < 0:
        raise UsageError(f"--timeline-images must be >= 0, got {timeline_images}")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    run = Run(Path(run_dir), precision)  # another precision: its own ONNX files, store and analysis
    config = read_config(run)
    store = RenderStore(run.render_dir)
    manifest = store.manifest()
    if not store.epochs(CLEAN):
        raise SiteError(f"no rendered epochs in {store.root / CLEAN} (run `edvis render` first)")
    try:
        epochs = complete_epochs(store, run.onnx_epochs())
    except StoreError as e:
        raise SiteError(str(e)) from None
    dataset = read_dataset(manifest, config, data_root)
    check_dataset(dataset, data_root)
    analysis = read_analysis(run, store, epochs)
    log.info(f"site: reading {len(epochs)} clean unit(s) from {store.root}")
    clean = read_clean(store, epochs, dataset.labels, dataset.map_size)
    info = read_run(run, store, epochs, config)
    compared = None
    if compare is not None:
        compared = read_compare(Path(compare), manifest, analysis, run.analysis_dir / "analysis.json",
                                model_label(info))
    sanity, sha = read_sanity_maps(run, analysis)
    return Sources(
        run=info, dataset=dataset, analysis=analysis, clean=clean, store=store, compared=compared,
        timeline_images=timeline_images, seed=seed, base_url=base_url.rstrip("/") + "/" if base_url else "",
        sanity_maps=sanity, sanity_sha256=sha,
    )


def read_sanity_maps(run: Run, analysis: Analysis) -> tuple[np.ndarray | None, str]:
    """The maps of RUN/explain/sanity.npz when analysis.json has its record: verified against
    the file's digest and against the one analysis.json was computed from."""
    if analysis.sanity() is None:
        return None, ""
    path = run.sanity_path
    try:
        f = read_sanity(path, ("maps",))
    except FileNotFoundError:
        raise SiteError(f"{path} is missing, though analysis.json was computed from it: {WRITE_SANITY_AGAIN}") from None
    except (IntegrityError, StoreError) as e:
        raise SiteError(str(e)) from None
    listed = (analysis.data.get("inputs") or {}).get("sanity", {})
    if listed.get("explain/sanity.npz") != f.sha256:
        raise SiteError(f"{path} is not the one analysis.json was computed from: run `edvis analyze`")
    return np.asarray(f.arrays["maps"], np.float32), f.sha256
