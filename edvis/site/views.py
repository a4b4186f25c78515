"""The view objects the pages are rendered from: typed, made by the page modules from what the
readers give, with every number already turned into text. The templates only place them.

Shared here: :class:`SiteView` (what every page's frame shows), :class:`Tile` (a canvas and its
caption), :class:`Pack` (a data file for the browser), :class:`Chart`, :class:`Slider`,
:class:`ClassRef`, and the figures' :class:`Catalogue`. The run page's views follow; the other page
families' are in ``views_pages.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from markupsafe import Markup

from edvis.site.text import pct


@dataclass(frozen=True)
class NavItem:
    """A page in the site's navigation; ``blurb`` says what it holds on the run page."""

    href: str
    label: str
    blurb: str | Markup = ""
    optional: bool = False  # a page only some runs have (layers, compare)


@dataclass(frozen=True)
class SiteView:
    """What every page's frame shows and what several pages share."""

    run_name: str
    model_name: str
    variant: str
    num_classes: int
    num_val: int
    fingerprint: str
    seed: int
    image_size: int
    map_size: int
    epochs: list[int]  # the rendered epochs
    nav: list[NavItem]

    @property
    def final_epoch(self) -> int:
        return self.epochs[-1]

    @property
    def epoch_count(self) -> int:
        return len(self.epochs)

    @property
    def fingerprint_short(self) -> str:
        return self.fingerprint[:16]

    @property
    def map_cells(self) -> int:
        return self.map_size * self.map_size

    @property
    def explore(self) -> list[NavItem]:
        """The pages the run page describes: every page with a blurb."""
        return [item for item in self.nav if item.blurb]


@dataclass(frozen=True)
class ClassRef:
    """A class as other pages link to it."""

    index: int
    key: str  # zero-padded index, the stem of its data files
    wnid: str
    name: str
    slug: str

    @property
    def page(self) -> str:
        return f"classes/{self.key}-{self.slug}.html"


@dataclass(frozen=True)
class Tile:
    """One canvas and its caption: a sprite cell, a map over it, or both.

    ``src`` names the data object (``window.EDVIS[src]``) holding the maps, ``seq`` the map
    sequence in it and ``epoch_index`` the entry of that sequence; ``cell`` is the image's
    place in that object's sprite sheet. A ``follow`` tile changes with the page's epoch slider.
    """

    src: str
    seq: int | None
    cell: int | None
    epoch_index: int
    alt: str
    label: str = ""  # first caption line, e.g. "epoch 5"
    name: str = ""  # the class named in the caption
    prob: float | None = None
    verdict: str = ""  # "right", "wrong" or "" (no mark)
    follow: bool = False
    box: tuple[int, int, int, int] | None = None
    peak: tuple[int, int] | None = None  # where the upsampled map peaks, in image pixels
    link: str = ""  # page of the class named in the caption

    @property
    def prob_text(self) -> str:
        return "" if self.prob is None else f"{100 * self.prob:.1f}%"

    @property
    def mark(self) -> str:
        return {"right": "✓", "wrong": "✗"}.get(self.verdict, "")

    @property
    def box_text(self) -> str:
        return "" if self.box is None else " ".join(str(v) for v in self.box)

    @property
    def peak_text(self) -> str:
        return "" if self.peak is None else " ".join(str(v) for v in self.peak)


@dataclass(eq=False)
class Pack:
    """A data object for the browser: a sprite sheet and maps, written as ``data/<key>.{png,js}``
    (the sheet ``.jpg`` for images reduced to fit a cell: see edvis.site.sprites).

    ``maps`` is (Q, E, S, S) uint8, each map scaled to its own maximum; ``cells`` the validation
    indices in the sprite. ``perturbation`` names the setting whose odd cells are perturbed.
    """

    key: str
    epochs: list[int]
    maps: np.ndarray
    cells: list[int] = field(default_factory=list)
    pred: np.ndarray | None = None  # (Q, E) top-1 class of the image behind each sequence
    prob: np.ndarray | None = None  # (Q, E) its probability
    truth: list[int] | None = None  # (Q,) true class
    files: list[str] | None = None  # (Q,) validation file
    extra: dict[str, Any] = field(default_factory=dict)
    sprite_key: str | None = None  # share another pack's sprite sheet
    perturbation: str | None = None
    perturbation_seed: int = 0
    sprite_ext: str = "png"  # set by edvis.site.sprites.write_pack from the site's image size

    @property
    def js(self) -> str:
        return f"data/{self.key}.js"

    @property
    def sprite(self) -> str:
        return f"data/{self.sprite_key or self.key}.{self.sprite_ext}"

    @property
    def sprite_id(self) -> str:
        return f"sprite-{self.sprite_key or self.key}"

    @property
    def has_sprite(self) -> bool:
        return self.sprite_key is None and bool(self.cells)


@dataclass(frozen=True)
class Chart:
    """A small line chart drawn as inline SVG: polylines in a ``width`` x ``height`` box."""

    width: int
    height: int
    lines: list[tuple[str, str, str]]  # (label, css class, "x,y x,y ...")
    xticks: list[tuple[float, str]]  # (x, text)
    yticks: list[tuple[float, float, str]]  # (y, y of its text, text)
    title: str
    label: str  # the chart's description
    grid_x2: int  # where the grid lines end
    xtick_y: int  # where the epoch labels sit


@dataclass(frozen=True)
class Slider:
    """The epoch slider of a page whose maps follow it."""

    epochs: list[int]

    @property
    def shown(self) -> bool:
        return len(self.epochs) > 1

    @property
    def max_index(self) -> int:
        return len(self.epochs) - 1

    @property
    def epochs_text(self) -> str:
        return " ".join(str(e) for e in self.epochs)

    @property
    def last(self) -> int:
        return self.epochs[-1]


@dataclass(frozen=True)
class FigureEntry:
    """A figure for papers: stable file names, a description, a citation line."""

    name: str
    title: str
    alt: str
    files: dict[str, str]  # extension -> path inside the site
    paper: str = ""  # which of the paper's figures it corresponds to
    citation: str = ""

    @property
    def downloads(self) -> list[tuple[str, str]]:
        """(label, path) of each file, e.g. ("PNG", "figures/training.png")."""
        return [(ext.upper(), path) for ext, path in self.files.items()]

    @property
    def png(self) -> str:
        return self.files.get("png", "")

    @property
    def link(self) -> str:
        """What the picture links to: the SVG, else the PNG."""
        return self.files.get("svg") or self.files.get("png", "")


@dataclass(frozen=True)
class Catalogue:
    """Every figure the build writes, in the order figures.html lists them."""

    entries: list[FigureEntry]
    absolute: bool  # citation lines carry the site's address (``--base-url``)

    def get(self, name: str) -> FigureEntry | None:
        return next((f for f in self.entries if f.name == name), None)


# -- the run page -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochRow:
    """One row of the run's accuracy table (from metrics.jsonl); text already formatted."""

    epoch: int
    train_loss: str
    val_loss: str
    val_top1: str
    val_top5: str
    lr: str
    seconds: str
    best: bool


@dataclass(frozen=True)
class TableRow:
    """A row of the Table-1-style table: one setting, top-1/top-5 per model (None: not rendered)."""

    setting: str
    link: str
    cells: list[tuple[float | None, float | None]]

    @property
    def texts(self) -> list[tuple[str, str]]:
        return [(pct(a), pct(b)) for a, b in self.cells]


@dataclass(frozen=True)
class LocalisationRow:
    """One model's localisation numbers (analysis.json): pointing game, centre baseline, energy
    in the box, centred Gaussian, flat map."""

    model: Any
    epoch: Any
    cells: list[str]


@dataclass(frozen=True)
class RunPage:
    """index.html: the run, Table 1, localisation, training curves, configuration."""

    dataset_name: str  # the dataset folder's name: no path of the building machine
    layout: str
    model_text: str
    precision_text: str  # which ONNX files the maps come from
    recipe_text: str
    epochs_text: str
    settings: list[tuple[str, str]]  # (setting, its page or "")
    compared: tuple[str, str] | None  # (label, run name) of the compared model
    hashes: list[tuple[str, str]]  # (file, sha256 or "—")
    inputs_file: str  # inputs.sha256: every file read, with its digest
    inputs_count: int
    model_labels: list[str]
    model_epochs_text: str
    table: list[TableRow]
    localisation: list[LocalisationRow]
    has_compare: bool
    metric_rows: list[EpochRow]
    config_rows: list[tuple[str, str]]

    @property
    def metrics_open(self) -> bool:
        return len(self.metric_rows) <= 20

    @property
    def metric_span(self) -> tuple[int, int]:
        return self.metric_rows[0].epoch, self.metric_rows[-1].epoch
