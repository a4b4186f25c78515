"""The view objects of the page families but the run page (see ``views.py`` for it and the shared ones)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edvis.site.text import MISSING, num, pct, plural, pts
from edvis.site.views import Chart, ClassRef, Pack, Slider, Tile

if TYPE_CHECKING:
    from edvis.site.read_compare import Model

# -- classes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassAccuracy:
    """One class's accuracy on its validation images at one rendered epoch."""

    epoch: int
    top1: float | None
    top5: float | None
    similarity: float | None = None  # analysis.json: map correlation with the final epoch

    @property
    def top1_text(self) -> str:
        return pct(self.top1)

    @property
    def top5_text(self) -> str:
        return pct(self.top5)

    @property
    def similarity_text(self) -> str:
        return num(self.similarity, ".2f")


@dataclass(frozen=True)
class Timeline:
    """One validation image followed through the rendered epochs."""

    image: int  # its place among the class's images
    index: int  # its validation index
    file: str
    tiles: list[Tile]


@dataclass(frozen=True)
class Confusion:
    """Another class that this class's images are predicted as (or that is predicted as this one)."""

    other: ClassRef
    count: int
    tiles: list[Tile] = field(default_factory=list)

    @property
    def count_text(self) -> str:
        return plural(self.count, "image")


@dataclass(frozen=True)
class SettingRow:
    """One perturbation setting on a class page: the class's top-1 under it and the change."""

    name: str
    page: str
    top1: float | None
    drop: float | None
    flip_rate: str = MISSING  # analysis.json's, when it has the class's settings
    map_corr: str = MISSING

    @property
    def top1_text(self) -> str:
        return pct(self.top1)

    @property
    def change_text(self) -> str:
        return pts(None if self.drop is None else -self.drop)


@dataclass(eq=False)
class ClassPage:
    """classes/NNN-<slug>.html: everything about one class, and its data file."""

    ref: ClassRef
    prev: ClassRef | None
    next: ClassRef | None
    image_count: int
    accuracy: list[ClassAccuracy]
    chart: Chart
    learning: str | None  # sentences from analysis.json; None without its entry
    has_analysis: bool
    settings: list[SettingRow]
    settings_more: bool  # analysis.json has the class's flip rates and map correlations
    slider: Slider
    tiles: list[Tile] = field(default_factory=list)
    mean_tile: Tile | None = None
    mean_count: int = 0
    timelines: list[Timeline] = field(default_factory=list)
    confused: list[Confusion] = field(default_factory=list)
    mistaken: list[Confusion] = field(default_factory=list)
    pack: Pack | None = field(default=None, repr=False)
    methods: list[str] = field(default_factory=list)  # the explanation methods' labels
    method_rows: list[Any] = field(default_factory=list)  # edvis.site.methods.MethodsRow
    method_packs: list[Pack] = field(default_factory=list, repr=False)

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def index(self) -> int:
        return self.ref.index

    @property
    def key(self) -> str:
        return self.ref.key

    @property
    def wnid(self) -> str:
        return self.ref.wnid

    @property
    def images_text(self) -> str:
        return plural(self.image_count, "validation image")

    @property
    def final(self) -> ClassAccuracy:
        return self.accuracy[-1]

    @property
    def clean_top1_text(self) -> str:
        return self.final.top1_text

    @property
    def timeline_images_text(self) -> str:
        return plural(len(self.timelines), "image")

    @property
    def timeline_epochs(self) -> int:
        return len(self.timelines[0].tiles) if self.timelines else 0

    @property
    def confused_total(self) -> int:
        return sum(c.count for c in self.confused)


@dataclass(frozen=True)
class ClassRow:
    """One row of classes.html, kept for the whole build (the page itself is not)."""

    ref: ClassRef
    image_count: int
    top1: list[float | None]  # per rendered epoch
    top5: list[float | None]
    learning: list[tuple[str, str]]  # (sort value, text) of epoch 50%, epoch 90%, pattern formed, rank
    worst: tuple[str, float] | None  # (setting, top-1 drop) of the setting that hurts it most
    has_timelines: bool = False

    @property
    def filter_text(self) -> str:
        return f"{self.ref.name.lower()} {self.ref.wnid.lower()}"

    @property
    def accuracy_cells(self) -> list[tuple[str, str]]:
        """(sort value, text) of its final top-1 and top-5 and its mean top-1 over the epochs."""
        vals = [v for v in self.top1 if v is not None]
        mean = sum(vals) / len(vals) if vals else None
        return [(_value(v), pct(v)) for v in (self.top1[-1], self.top5[-1], mean)]

    @property
    def worst_cell(self) -> tuple[str, str]:
        if self.worst is None:
            return "", MISSING
        name, drop = self.worst
        return str(-drop), f"{name} ({pts(-drop)})"


@dataclass(frozen=True)
class ClassIndex:
    """classes.html."""

    rows: list[ClassRow]
    pattern_threshold: str
    has_settings: bool

    @property
    def count(self) -> int:
        return len(self.rows)


def _value(x: Any) -> str:
    """A number as a ``data-value`` for sorting; empty when missing."""
    return "" if x is None else str(x)


# -- galleries and errors -----------------------------------------------------------------------


@dataclass(frozen=True)
class GalleryRow:
    """One image of a gallery: the image alone, then its maps with their captions."""

    image: Tile
    maps: list[Tile]


@dataclass(frozen=True)
class SamePair:
    """Two right predictions of one class and the correlation of their maps."""

    cls: ClassRef
    tiles: list[Tile]
    corr: float | None

    @property
    def corr_text(self) -> str:
        return num(self.corr, ".2f")


@dataclass(eq=False)
class GalleryPage:
    """galleries.html: random right and wrong predictions, and same-class pairs, at the final epoch."""

    epoch: int
    has_top5: bool
    k: int  # maps per image
    right: list[GalleryRow]
    wrong: list[GalleryRow]
    pairs: list[SamePair]
    pack: Pack
    right_ids: list[int]
    wrong_ids: list[int]
    pair_ids: list[tuple[int, int]]
    methods: list[str] = field(default_factory=list)  # the explanation methods' labels
    method_rows: list[Any] = field(default_factory=list)  # edvis.site.methods.MethodsRow
    method_packs: list[Pack] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class PairView:
    """Two classes mixed up at the final epoch, with example images each way."""

    a: ClassRef
    b: ClassRef
    a_as_b: int
    b_as_a: int
    a_tiles: list[Tile]
    b_tiles: list[Tile]

    @property
    def total(self) -> int:
        return self.a_as_b + self.b_as_a


@dataclass(eq=False)
class ErrorsPage:
    """errors.html: confused pairs, confident mistakes, confidence and calibration."""

    epoch: int
    right: int
    wrong: int
    pairs: list[PairView]
    mistakes: list[tuple[Tile, Tile]]  # (predicted class's map, true class's map)
    hist: tuple[list[int], list[int]]  # right and wrong counts per confidence bin
    auroc: float | None
    ece: float | None
    reliability: dict[str, Any] | None  # analysis.json's bins for the clean images
    calibration: list[tuple[str, list[str]]]  # (setting, its cells)
    pack: Pack

    @property
    def auroc_text(self) -> str | None:
        return None if self.auroc is None else num(self.auroc, ".4f")

    @property
    def ece_text(self) -> str:
        return num(self.ece, ".4f")

    @property
    def reliability_bins(self) -> int:
        return len(self.reliability["bins"]) if self.reliability else 0

    @property
    def calibration_note(self) -> str:
        return "analysis.json holds no calibration table."


# -- perturbations --------------------------------------------------------------------------------


@dataclass(eq=False)
class SettingPage:
    """perturbations/<setting>.html, and the setting's row on perturbations.html."""

    name: str
    slug: str
    epochs: list[int]
    top1: list[float]
    top5: list[float]
    clean_top1: float  # the clean images' top-1 at this setting's final epoch
    flips: dict[str, int]
    num_val: int
    seed: int
    known: bool
    random_count: int
    has_flip_rows: bool
    analysis: dict[str, Any]  # its row of analysis.json's table
    class_top1: np.ndarray = field(repr=False)  # (C,) at its final epoch; NaN without images
    pack: Pack = field(repr=False)
    tiles: list[tuple[Tile, Tile, str]] = field(default_factory=list)  # (clean, perturbed, change)
    rows: list[int] = field(default_factory=list)  # validation indices shown

    @property
    def page(self) -> str:
        return f"perturbations/{self.slug}.html"

    @property
    def figure(self) -> str:
        return f"perturbation-{self.slug}"

    @property
    def final_epoch(self) -> int:
        return self.epochs[-1]

    @property
    def slider(self) -> Slider:
        return Slider(self.epochs)

    @property
    def flip_total(self) -> int:
        return sum(self.flips.values())

    @property
    def texts(self) -> dict[str, str]:
        """Its numbers as the pages print them."""
        a = self.analysis
        return {
            "top1": pct(self.top1[-1]), "top5": pct(self.top5[-1]), "clean_top1": pct(self.clean_top1),
            "change": pts(self.top1[-1] - self.clean_top1),
            "flip_share": pct(self.flip_total / self.num_val) if self.num_val else MISSING,
            "map_corr": num(a.get("map_corr"), ".3f"), "p_true_change": pts(a.get("p_true_change")),
            "ece": num(a.get("ece"), ".4f"),
        }


@dataclass(frozen=True)
class CleanRow:
    """The clean images' row on perturbations.html."""

    epoch: int
    top1: str
    top5: str
    ece: str


@dataclass(frozen=True)
class Corruption:
    """analysis.json's severity sweeps at their epoch: (kind, epoch, severities, cells) rows."""

    reference: str
    rows: list[tuple[str, str, str, list[str]]]
    mean_relative_ce: str | None


@dataclass(frozen=True)
class PerturbationsPage:
    """perturbations.html: every setting against the clean images."""

    clean: CleanRow
    settings: list[SettingPage]
    plot_summary: str  # every setting's final top-1, for the figure's description
    corruption: Corruption | None


# -- layers and compare ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerInfo:
    key: str
    name: str
    shape: tuple[int, ...]
    class_channels: bool  # channel k is class k's (the maps)

    @property
    def class_flag(self) -> int:
        return 1 if self.class_channels else 0

    @property
    def shape_text(self) -> str:
        return "×".join(str(v) for v in self.shape)

    @property
    def channel_count(self) -> str:
        return str(self.shape[0]) if self.shape else ""


@dataclass(frozen=True)
class LayerCell:
    """One layer's output for one image: its mean and its strongest channels (slot, caption, label)."""

    layer: int
    info: LayerInfo
    channels: list[tuple[int, str, str]]  # (channel, caption, description)

    @property
    def mean_slot(self) -> int:
        return len(self.channels)


@dataclass(frozen=True)
class LayerImage:
    """One chosen image on the layers page."""

    cell: int  # in the layers sprite sheet
    file: str
    truth: str
    layers: list[LayerCell]


@dataclass(eq=False)
class LayersPage:
    """layers.html, and each epoch's data object (``data/layers-NNN.js``)."""

    epochs: list[int]
    infos: list[LayerInfo]
    images: list[LayerImage]
    packs: dict[int, dict[str, Any]] = field(repr=False)  # epoch -> data object
    pack_files: dict[int, str] = field(repr=False)
    sprite: Pack = field(repr=False)
    channels: int = 12

    @property
    def last(self) -> int:
        return self.epochs[-1]

    @property
    def epochs_text(self) -> str:
        return " ".join(str(e) for e in self.epochs)

    @property
    def options(self) -> list[tuple[int, str, bool]]:
        """(epoch, its data file, selected) for the epoch selector."""
        return [(e, self.pack_files[e], e == self.last) for e in self.epochs] if len(self.epochs) > 1 else []

    @property
    def scripts(self) -> list[str]:
        return ["data/layers.js", self.pack_files[self.last]]


@dataclass(frozen=True)
class CompareRow:
    """One image on the compare page: its true class and both models' tiles."""

    index: int
    file: str
    truth: str
    tiles: list[Tile]


@dataclass(eq=False)
class ComparePage:
    """compare.html: this model's maps beside the compared run's and the explanation methods'."""

    a: Model
    others: list[Model]  # the compared run (when given), then this run's explanation methods
    models: list[tuple[str, int, str, str, list[str]]]  # (label, epoch, top-1, top-5, localisation cells)
    has_localisation: bool
    rows: list[CompareRow]
    packs: list[Pack] = field(repr=False)

    @property
    def b(self) -> Model | None:
        """The compared run, when there is one."""
        return next((m for m in self.others if not m.method), None)

    @property
    def methods(self) -> list[Model]:
        return [m for m in self.others if m.method]

    @property
    def data_files(self) -> list[str]:
        return [pack.js for pack in self.packs]
