"""The static site, built from a small fake run whose every number is known by construction."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import markupsafe
import numpy as np
import pytest
from PIL import Image

from edvis import figures
from edvis.run import Run
from edvis.site import SiteError, build_site, choose_timeline, js_json, normalise_maps, slugify
from edvis.store import RenderStore, Unit

NASTY = '<script>alert("x")</script> Ünïcode / ..'
NAMES = ["goldfish", NASTY, "tabby cat", "unused one", "unused two", "unused three"]
WNIDS = ["n001", "n002", "n003", "n004", "n005", "n006"]
SHOWN = 3  # classes 0..2 have validation images, the others none
PER_CLASS = 4
EPOCHS = [1, 2, 3]
VAL_TOP1 = {1: 0.1234, 2: 0.25, 3: 1 / 3}
ZERO_MAP = (5, 2)  # (validation index, epoch) whose map is all zero


# -- the fake run ---------------------------------------------------------------------------


def colour(n: int) -> tuple[int, int, int]:
    """A distinct solid colour for validation image n."""
    return (40 * n % 256, 255 - 20 * n, (90 + 60 * n) % 256)


def hot_pixel(n: int, epoch: int) -> tuple[int, int]:
    """Where the true-class map of validation image n peaks at an epoch."""
    return (n + epoch) % 8, (3 * n + 2 * epoch) % 8


def label_of(n: int) -> int:
    return n % SHOWN  # classes interleave in the validation list


def predicted(n: int, epoch: int) -> int:
    """Image j of a class is right from epoch j + 1 on, so class accuracy is epoch/4."""
    c, j = label_of(n), n // SHOWN
    return c if j < epoch else (c + 1) % SHOWN


def fake_probs(n_val: int, epoch: int) -> np.ndarray:
    probs = np.full((n_val, len(NAMES)), 0.1)
    for n in range(n_val):
        probs[n, predicted(n, epoch)] = 0.5
        if predicted(n, epoch) != label_of(n) and n % 2 == 0:
            probs[n, label_of(n)] = 0.0  # out of the top 5 too
    return probs / probs.sum(axis=1, keepdims=True)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    data = tmp_path / "dataset"
    n_val = SHOWN * PER_CLASS
    files = []
    for n in range(n_val):
        ext = "jpg" if n == 7 else "png"
        rel = f"val/{WNIDS[label_of(n)]}/img_{n:02d}.{ext}"
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), colour(n)).save(data / rel, quality=95)
        files.append(rel)
    labels = [label_of(n) for n in range(n_val)]

    run = tmp_path / "run"
    store = RenderStore(run / "render")
    store.init(
        {
            "dataset": {
                "root": str(data.resolve()),
                "layout": "imagefolder",
                "fingerprint": "f1ngerpr1nt0123456789",
                "wnids": WNIDS,
                "names": NAMES,
            },
            "val": {"files": files, "labels": labels, "boxes": [None] * n_val},
            "image_size": 64,
            "map_size": 8,
        }
    )
    for epoch in EPOCHS:
        probs = fake_probs(n_val, epoch)
        top5 = np.argsort(-probs, axis=1, kind="stable")[:, :5]
        maps = np.zeros((n_val, 8, 8), dtype=np.float16)
        for n in range(n_val):
            if (n, epoch) != ZERO_MAP:
                maps[(n, *hot_pixel(n, epoch))] = 1.5 * epoch
        store.write(
            Unit("clean", epoch),
            {
                "probs": probs.astype(np.float16),
                "top5": top5.astype(np.int16),
                "top5_prob": np.take_along_axis(probs, top5, axis=1).astype(np.float32),
                "map_true": maps,
                "map_pred": np.zeros_like(maps),
            },
            meta={},
        )

    config = {
        "dataset": {"root": str(data), "layout": "imagefolder", "fingerprint": "f1ngerpr1nt0123456789"},
        "model": {"name": "edvis-resnet18", "variant": "paper", "num_classes": len(NAMES)},
        "train": {"epochs": 5, "batch_size": 8, "optimizer": "sgd", "lr": 0.1, "seed": 0,
                  "note": "<b>not bold</b>"},
    }
    (run / "config.json").write_text(json.dumps(config), encoding="utf-8")
    Run(run).write_metrics(
        [
            {"epoch": e, "train_loss": 2.0 / e, "train_top1": 0.1 * e, "train_top5": 0.3 * e,
             "val_loss": 2.2 / e, "val_top1": VAL_TOP1[e], "val_top5": 0.2 * e, "lr": 0.1,
             "seconds": 12.5, "images_per_s": 1000.0}
            for e in EPOCHS
        ]
    )
    return run


@pytest.fixture
def site(run_dir: Path, tmp_path: Path) -> Path:
    index = build_site(run_dir, tmp_path / "site")
    assert index == (tmp_path / "site" / "index.html").resolve()
    return index.parent


# -- reading the output -----------------------------------------------------------------------


class Page(HTMLParser):
    """Links, tables (as rows of cell text) and figure captions of one HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.canvases: list[dict[str, str]] = []
        self.captions: list[str] = []
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None
        self._depth = 0
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for key in ("href", "src"):
            if key in a:
                self.links.append(a[key])
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id", f"table{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "canvas":
            self.canvases.append(a)
        elif tag == "figcaption":
            self._caption = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "figcaption" and self._caption is not None:
            self.captions.append(" ".join("".join(self._caption).split()))
            self._caption = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._caption is not None:
            self._caption.append(data)


def page(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


def class_data(site: Path, key: str) -> dict:
    text = (site / "data" / f"{key}.js").read_text(encoding="ascii")
    m = re.search(rf'^window\.EDVIS\["{key}"\] = (.*);$', text, re.M)
    assert m, text[:200]
    return json.loads(m.group(1))


def class_page(site: Path, c: int) -> Path:
    (path,) = (site / "classes").glob(f"{c:03d}-*.html")
    return path


def members(c: int) -> list[int]:
    return [n for n in range(SHOWN * PER_CLASS) if label_of(n) == c]


# -- the run page -----------------------------------------------------------------------------


def test_index_shows_run_and_epoch_accuracy(site: Path) -> None:
    html = (site / "index.html").read_text(encoding="utf-8")
    for text in ("edvis-resnet18", "paper", "imagefolder", "dataset.root", "optimizer", "sgd"):
        assert text in html
    rows = page(site / "index.html").tables["epochs"]
    body = [r for r in rows[1:]]
    assert [r[0] for r in body] == ["1", "2", "3"]
    assert [r[1].rstrip(" ★") for r in body] == ["12.34%", "25.00%", "33.33%"]
    assert [r[2] for r in body] == ["20.00%", "40.00%", "60.00%"]
    assert "★" in body[2][1] and "★" not in body[0][1]  # the best epoch is marked


def test_index_lists_every_class_escaped(site: Path) -> None:
    html = (site / "index.html").read_text(encoding="utf-8")
    for name, wnid in zip(NAMES, WNIDS):
        assert str(markupsafe.escape(name)) in html
        assert wnid in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Ünïcode / .." in html
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html  # config values are text as well


def test_no_raw_markup_from_data_anywhere(site: Path) -> None:
    for path in site.rglob("*"):
        if path.suffix == ".html":
            text = path.read_text(encoding="utf-8")
            assert "<script>alert" not in text, path
            assert "<b>not bold" not in text, path
        elif path.suffix == ".js" and path.parent.name == "data":
            text = path.read_text(encoding="ascii")  # also: ASCII only
            assert "<" not in text and ">" not in text, path


def test_final_class_accuracy_matches_probs(site: Path) -> None:
    n_val = SHOWN * PER_CLASS
    labels = np.array([label_of(n) for n in range(n_val)])
    probs = fake_probs(n_val, EPOCHS[-1])
    rows = page(site / "index.html").tables["class-accuracy"]
    by_name = {r[1]: r for r in rows[1:]}
    for c, name in enumerate(NAMES):
        mask = labels == c
        if not mask.any():
            assert by_name[name][3:] == ["0", "—", "—"]
            continue
        top1 = (probs[mask].argmax(axis=1) == c).mean()
        top5 = np.mean([c in np.argsort(-p, kind="stable")[:5] for p in probs[mask]])
        assert by_name[name][3] == str(PER_CLASS)
        assert by_name[name][4] == f"{100 * top1:.2f}%" == "75.00%"
        assert by_name[name][5] == f"{100 * top5:.2f}%"


def test_training_curves_are_linked(site: Path) -> None:
    links = page(site / "index.html").links
    for ext in ("png", "svg", "csv"):
        assert f"figures/training.{ext}" in links
        assert (site / "figures" / f"training.{ext}").is_file()


# -- the class pages --------------------------------------------------------------------------


def test_class_pages_have_safe_paths() -> None:
    assert slugify(NASTY) == "script-alert-x-script-unicode"
    assert slugify("Tabby Cat") == "tabby-cat"
    assert slugify("../..//") == "class"
    assert slugify("猫") == "class"
    assert slugify("a" * 39 + " b" * 10) == "a" * 39  # cut at 40, no trailing dash
    assert len(slugify("x" * 100)) == 40


def test_every_class_page_exists(site: Path) -> None:
    expected = [
        "000-goldfish.html",
        "001-script-alert-x-script-unicode.html",
        "002-tabby-cat.html",
        "003-unused-one.html",
        "004-unused-two.html",
        "005-unused-three.html",
    ]
    assert sorted(p.name for p in (site / "classes").iterdir()) == expected
    index_links = page(site / "index.html").links
    for name in expected:
        assert f"classes/{name}" in index_links
    assert "no validation images" in (site / "classes" / "004-unused-two.html").read_text("utf-8")


def test_links_resolve_inside_the_site(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) == 1 + len(NAMES)
    for path in pages:
        for link in page(path).links:
            assert not re.match(r"^[a-z]+:|^/", link), (path, link)  # relative only
            target = link.split("#")[0]
            if not target:
                continue
            resolved = (path.parent / target).resolve()
            assert resolved.is_relative_to(site.resolve()), (path, link)
            assert resolved.is_file(), (path, link)


def test_class_page_accuracy_per_epoch(site: Path) -> None:
    rows = page(class_page(site, 1)).tables["accuracy-table"]
    assert rows[0] == ["Epoch", "1", "2", "3"]
    assert rows[1] == ["Top-1", "25.00%", "50.00%", "75.00%"]


def test_class_page_shows_every_image_with_final_prediction(site: Path) -> None:
    p = page(class_page(site, 2))
    grid = [c for c in p.canvases if c["width"] == "128"]
    assert [int(c["data-image"]) for c in grid] == list(range(PER_CLASS))
    assert {c["data-epoch-index"] for c in grid} == {"2"}
    probs = fake_probs(SHOWN * PER_CLASS, 3)
    for j, n in enumerate(members(2)):
        k = predicted(n, 3)
        verdict = "right" if k == 2 else "wrong"
        prob = f"{100 * probs[n].max():.1f}%"
        assert p.captions[j].endswith(f"{verdict} {NAMES[k]} {prob}"), p.captions[j]
        assert grid[j]["aria-label"].endswith(f"predicted {NAMES[k]} ({prob}), {verdict}")
        assert f"img_{n:02d}" in grid[j]["aria-label"]


def test_timelines_follow_chosen_images_through_epochs(site: Path) -> None:
    p = page(class_page(site, 0))
    rows = [c for c in p.canvases if c["width"] == "96"]
    chosen = choose_timeline(PER_CLASS, 3, 0)
    assert chosen == sorted(set(chosen)) and len(chosen) == 3
    assert [(int(c["data-image"]), int(c["data-epoch-index"])) for c in rows] == [
        (i, e) for i in chosen for e in range(len(EPOCHS))
    ]
    timeline_captions = p.captions[PER_CLASS:]
    for (i, e), caption in zip([(i, e) for i in chosen for e in range(3)], timeline_captions):
        n = members(0)[i]
        k = predicted(n, EPOCHS[e])
        verdict = "✓ right" if k == 0 else "✗ wrong"
        assert caption.startswith(f"epoch {EPOCHS[e]} {verdict} {NAMES[k]} "), caption


def test_class_data_holds_normalised_maps(site: Path) -> None:
    for c in range(SHOWN):
        data = class_data(site, f"{c:03d}")
        assert data["epochs"] == EPOCHS and data["index"] == c
        maps = np.frombuffer(base64.b64decode(data["maps"]), dtype=np.uint8)
        maps = maps.reshape(PER_CLASS, len(EPOCHS), 8, 8)
        assert data["shape"] == list(maps.shape)
        for j, n in enumerate(members(c)):
            assert data["files"][j].endswith(f"img_{n:02d}.{'jpg' if n == 7 else 'png'}")
            for e, epoch in enumerate(EPOCHS):
                expected = np.zeros((8, 8), dtype=np.uint8)
                if (n, epoch) != ZERO_MAP:
                    expected[hot_pixel(n, epoch)] = 255
                np.testing.assert_array_equal(maps[j, e], expected, err_msg=f"image {n} epoch {epoch}")
                assert data["pred"][j][e] == predicted(n, epoch)
                assert data["prob"][j][e] == pytest.approx(fake_probs(12, epoch)[n].max(), abs=1e-4)


def test_common_data_holds_names_and_viridis(site: Path) -> None:
    text = (site / "data" / "common.js").read_text(encoding="ascii")
    values = dict(re.findall(r'^window\.EDVIS\["(\w+)"\] = (.*);$', text, re.M))
    assert json.loads(values["names"]) == NAMES
    lut = np.array(json.loads(values["lut"]), dtype=np.uint8).reshape(256, 3)
    np.testing.assert_array_equal(lut, figures.viridis_lut())
    assert tuple(lut[0]) == (68, 1, 84) and tuple(lut[255]) == (253, 231, 37)


def test_sprite_packs_class_images_in_order(site: Path) -> None:
    with Image.open(site / "data" / "001.png") as im:
        sheet = np.asarray(im.convert("RGB"))
    assert sheet.shape == (64, 64 * PER_CLASS, 3)
    for j, n in enumerate(members(1)):
        centre = sheet[32, 64 * j + 32].astype(int)
        assert np.abs(centre - colour(n)).max() <= 8, (n, centre)  # 8: one is a JPEG


# -- the build as a whole ---------------------------------------------------------------------


def test_two_builds_are_byte_identical(run_dir: Path, tmp_path: Path) -> None:
    a = build_site(run_dir, tmp_path / "a").parent
    b = build_site(run_dir, tmp_path / "b").parent
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    assert len(files_a) > 10
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_build_writes_nothing_outside_out_dir(run_dir: Path, tmp_path: Path) -> None:
    def snapshot() -> dict[Path, bytes]:
        return {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "out" not in p.parts}

    before = snapshot()
    build_site(run_dir, tmp_path / "out")
    assert snapshot() == before
    assert not list((tmp_path / "out").rglob("*.tmp-*"))


def test_files_are_readable_by_a_web_server(site: Path) -> None:
    for path in site.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o777 == 0o644, path


def test_failure_names_the_file_being_built(run_dir: Path, tmp_path: Path) -> None:
    manifest = RenderStore(run_dir / "render").manifest()
    broken = Path(manifest["dataset"]["root"]) / manifest["val"]["files"][4]
    broken.write_bytes(b"not an image")
    with pytest.raises(SiteError, match=r"data/001\.png") as info:
        build_site(run_dir, tmp_path / "out")
    assert broken.name in str(info.value)


def test_builds_without_config_or_metrics(run_dir: Path, tmp_path: Path) -> None:
    (run_dir / "config.json").unlink()
    (run_dir / "metrics.jsonl").unlink()
    index = build_site(run_dir, tmp_path / "out", timeline_images=0)
    html = index.read_text(encoding="utf-8")
    assert "no finished epoch" in html and "no config.json" in html
    assert not (tmp_path / "out" / "figures").exists()
    assert "Through the epochs" not in class_page(tmp_path / "out", 0).read_text("utf-8")


def test_requires_a_rendered_epoch(run_dir: Path, tmp_path: Path) -> None:
    for unit in RenderStore(run_dir / "render").units():
        RenderStore(run_dir / "render").path(unit).unlink()
    with pytest.raises(SiteError, match="no rendered epochs"):
        build_site(run_dir, tmp_path / "out")


# -- helpers ----------------------------------------------------------------------------------


def test_normalise_maps_per_map() -> None:
    maps = np.zeros((3, 8, 8), dtype=np.float16)
    maps[0, 1, 2] = 4.0
    maps[0, 5, 5] = 1.0
    maps[2] = 0.5
    out = normalise_maps(maps)
    assert out.dtype == np.uint8
    assert out[0, 1, 2] == 255 and out[0, 5, 5] == 64 and out[0].sum() == 255 + 64
    assert not out[1].any()  # all zero stays zero
    assert (out[2] == 255).all()


def test_choose_timeline_is_deterministic() -> None:
    assert choose_timeline(50, 3, 7) == choose_timeline(50, 3, 7)
    assert choose_timeline(50, 3, 7) == sorted(choose_timeline(50, 3, 7))
    assert choose_timeline(2, 3, 0) == [0, 1]
    assert choose_timeline(5, 0, 0) == []


def test_js_json_cannot_close_a_script() -> None:
    text = js_json({"name": "</script><!-- & é"})
    assert "<" not in text and ">" not in text and "&" not in text and text.isascii()
    assert json.loads(text) == {"name": "</script><!-- & é"}
