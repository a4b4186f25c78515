"""The Faithfulness page, from a hand-made faithfulness record in the fake run's analysis.json:
every number on the page is one of the record's, and each verdict follows from them by hand."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from edvis.site import build_site
from tests.site.test_build import NAMES, Page, page, quick_build, runs, write_analysis  # noqa: F401 (fixture)

# At epoch 3: the model's ranking beats both references on both measures; Grad-CAM's beats random
# on both and the centre prior on neither.
FINAL = {"model": (0.2, 0.7, 10.0, 40.0), "gradcam": (0.4, 0.5, 30.0, 20.0), "centre": (0.3, 0.6, 20.0, 25.0),
         "random": (0.5, 0.4, 50.0, 5.0)}
FRACTIONS = [0.0, 0.5, 1.0]


def record() -> dict:
    rows, curves, classes = [], [], []
    for epoch in (1, 3):
        for m, (d, i, ad, ai) in FINAL.items():
            shift = 0.0 if epoch == 3 else 0.05
            rows.append({"setting": "clean", "epoch": epoch, "method": m, "images": 6, "covered": 6 if m != "gradcam" else 5,
                         "deletion_auc": d + shift, "insertion_auc": i - shift, "average_drop": ad, "increase": ai})
            curves.append({"setting": "clean", "epoch": epoch, "method": m, "fractions": FRACTIONS,
                           "deletion": [0.9, d, 0.1], "insertion": [0.1, i, 0.9]})
    for c in (0, 2):
        for m, (d, i, _, _) in FINAL.items():
            classes.append({"setting": "clean", "epoch": 3, "method": m, "index": c, "images": 2,
                            "deletion_auc": d + c / 100, "insertion_auc": i})
    return {"methods": list(FINAL), "steps": 2, "images": 6, "seed": 0, "sigma": 5.0, "map_size": 8,
            "settings": ["clean"], "epochs": [1, 3], "rows": rows, "curves": curves, "classes": classes}


@pytest.fixture(scope="module")
def site(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    tmp = tmp_path_factory.mktemp("faith")
    run = Path(shutil.copytree(runs["run"], tmp / "run"))
    path = run / "analysis" / "analysis.json"
    write_analysis(path, {**json.loads(path.read_text(encoding="utf-8")), "faithfulness": record()})
    build_site(run, tmp / "site")
    return tmp / "site"


def test_the_page_states_each_verdict_with_its_numbers(site: Path) -> None:
    p = page(site / "faithfulness.html")
    assert ("The model's own maps at epoch 3: deletion AUC 0.200, insertion AUC 0.700; against the centre prior on "
            "both (deletion 0.300, insertion 0.600); against the random order on both (deletion 0.500, insertion "
            "0.400): it beats both references on both measures.") in p.words
    assert ("Grad-CAM at epoch 3: deletion AUC 0.400, insertion AUC 0.500; against the centre prior on neither "
            "(deletion 0.300, insertion 0.600); against the random order on both (deletion 0.500, insertion 0.400): "
            "it does not beat both references on both measures.") in p.words
    table = p.tables["faithfulness-final"]
    assert table[1:] == [["the model's own maps", "0.200", "0.700", "10.0", "40.0", "6 of 6"],
                         ["Grad-CAM", "0.400", "0.500", "30.0", "20.0", "5 of 6"],
                         ["centre prior", "0.300", "0.600", "20.0", "25.0", "6 of 6"],
                         ["random order", "0.500", "0.400", "50.0", "5.0", "6 of 6"]]


def test_every_measured_epoch_has_its_row_per_method(site: Path) -> None:
    rows = page(site / "faithfulness.html").tables["faithfulness-epochs"][1:]
    assert [(r[0], r[1]) for r in rows] == [(e, m) for e in ("1", "3") for m in
                                            ("the model's own maps", "Grad-CAM", "centre prior", "random order")]
    assert rows[0][2:] == ["0.250", "0.650", "10.0", "40.0"]  # epoch 1: shifted by 0.05 in the record
    assert rows[4][2:] == ["0.200", "0.700", "10.0", "40.0"]


def test_the_class_table_and_the_nav(site: Path) -> None:
    p = page(site / "faithfulness.html")
    rows = p.tables["faithfulness-classes"]
    assert rows[0][:4] == ["Class", "Images", "the model's own maps D", "the model's own maps I"]
    assert [r[0] for r in rows[1:]] == [NAMES[0], NAMES[2]]
    assert rows[2][2:4] == ["0.220", "0.700"]  # class 2: 0.2 + 2/100
    assert "faithfulness.html" in page(site / "index.html").links


def test_each_measured_epoch_has_its_curves_and_the_figures_their_data(site: Path) -> None:
    html = (site / "faithfulness.html").read_text(encoding="utf-8")
    for e in (1, 3):
        assert (site / "figures" / f"faithfulness-curves-e{e:03d}.png").is_file()
        assert f'data-epoch-panel="{e}"' in html
    assert 'data-epochs="1 3"' in html
    with open(site / "figures" / "faithfulness-curves.csv", newline="", encoding="utf-8") as f:
        got = [(r["method"], float(r["fraction"]), float(r["deletion"])) for r in csv.DictReader(f)]
    assert got == [(m, fr, v) for m, (d, *_) in FINAL.items() for fr, v in zip(FRACTIONS, [0.9, d, 0.1])]
    with open(site / "figures" / "faithfulness-epochs.csv", newline="", encoding="utf-8") as f:
        aucs = {(r["method"], int(r["epoch"])): float(r["deletion_auc"]) for r in csv.DictReader(f)}
    assert aucs[("model", 1)] == pytest.approx(0.25) and aucs[("random", 3)] == pytest.approx(0.5)
    figures = page(site / "figures.html")
    assert "fig-faithfulness-curves" in (site / "figures.html").read_text(encoding="utf-8")
    assert any(link.endswith("figures/faithfulness-epochs.svg") for link in figures.links)


def test_without_a_record_there_is_no_page(runs: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    out = quick_build(runs["run"], tmp_path / "site").parent
    assert not (out / "faithfulness.html").exists()
    assert "faithfulness.html" not in page(out / "index.html").links


@pytest.fixture(scope="module")
def sanity_site(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    import io

    import numpy as np

    from edvis.analyze import analyze_run
    from edvis.run import digest

    tmp = tmp_path_factory.mktemp("sanity")
    run = Path(shutil.copytree(runs["run"], tmp / "run"))
    trained = np.random.default_rng(0).random((2, 8, 8))
    maps = np.stack([np.stack([trained, trained * 3]), np.stack([trained, 1 - trained])])  # (2 methods, 2 steps, 2, 8, 8)
    buf = io.BytesIO()
    np.savez(buf, index=np.array([0, 1]), labels=np.array([0, 1]), other_class=np.array([1, 2]),
             maps=maps.astype(np.float16), other_class_maps=maps[:, 0].astype(np.float16),
             meta=np.array(json.dumps({"methods": ["gradcam", "own"], "steps": ["original", "up2"], "epoch": 3,
                                       "layer": "maps"})))
    (run / "explain").mkdir()
    digest.write_verified(run / "explain" / "sanity.npz", buf.getvalue())
    analyze_run(run)
    build_site(run, tmp / "site")
    return tmp / "site"


def test_the_sanity_checks_are_shown_with_their_figure(sanity_site: Path) -> None:
    p = page(sanity_site / "faithfulness.html")
    table = p.tables["sanity-randomisation"]
    assert table[1] == ["Grad-CAM", "1.00 / 1.00", "1.00 / 1.00"]  # scaled by 3: the same ranks and scaled map
    assert table[2][:2] == ["the model's own maps", "1.00 / 1.00"] and table[2][2].startswith("-1.00 / ")  # reversed
    assert p.tables["sanity-logit"][1:] == [["Grad-CAM", "1.00", "1.00"], ["the model's own maps", "1.00", "1.00"]]
    assert ("Grad-CAM: rank correlation 1.00 with its trained maps once every layer down to up2 is re-initialised; "
            "its maps stay alike: they do not follow the weights.") in p.words
    assert "The model's own maps: rank correlation -1.00" in p.words and "its maps change with the weights." in p.words
    figure = json.loads((sanity_site / "figures" / "sanity-maps.json").read_text(encoding="utf-8"))
    assert [(im["file"][-10:], im["method"]) for im in figure["images"]] == [
        ("img_00.png", "gradcam"), ("img_00.png", "own"), ("img_01.png", "gradcam"), ("img_01.png", "own")]
    assert (sanity_site / "figures" / "sanity-maps.png").is_file()
    listed = (sanity_site / "inputs.sha256").read_text()
    assert "  explain/sanity.npz\n" in listed
    assert "faithfulness-curves" not in (sanity_site / "figures.html").read_text(encoding="utf-8")  # not measured


EXPLAINED = [0, 1, 2, 5, 8]  # the validation images the fake Grad-CAM explained


def method_hot_cell(n: int) -> tuple[int, int]:
    """Where the fake Grad-CAM map of image n peaks: elsewhere than the model's own map."""
    return 7 - n % 8, n % 8


def explained_run(run: Path) -> Path:
    """``run`` with a Grad-CAM store whose clean unit at the final epoch explains :data:`EXPLAINED`."""
    import numpy as np

    from edvis.run import RenderStore, Unit, summarise
    from tests.site.test_build import N_VAL, fake_probs, label_of

    manifest = {k: v for k, v in RenderStore(run / "render").manifest().items() if k != "schema"}
    store = RenderStore(run / "explain" / "gradcam")
    store.init({**manifest, "method": "gradcam", "layer": "maps"})
    index = np.array(EXPLAINED)
    maps = np.zeros((N_VAL, len(NAMES), 8, 8), np.float32)
    for n in index:
        maps[(n, label_of(n), *method_hot_cell(n))] = 2.0
    with np.errstate(divide="ignore"):  # a probability of 0 is a logit of -inf
        logits = np.log(fake_probs(3))[index]
    arrays = summarise(logits, maps[index], np.array([label_of(n) for n in index]))
    store.write(Unit("clean", 3), {**arrays, "index": index}, {"method": "gradcam", "layer": "maps"})
    return run


def test_the_compare_page_shows_an_explanation_methods_maps(runs: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    import numpy as np

    from tests.site.test_build import data_object

    run = explained_run(Path(shutil.copytree(runs["run"], tmp_path / "run")))
    out = quick_build(run, tmp_path / "site").parent
    p = page(out / "compare.html")
    assert "Grad-CAM (8×8)" in p.words and "that every method explained" in p.words
    shown_files = re.findall(r"img_(\d\d)\.\w+ · ", p.words)  # one per row, in order
    assert shown_files and set(shown_files) <= {f"{n:02d}" for n in EXPLAINED}  # images the method covers, no other
    b = data_object(out, "compare-b")
    assert b["shape"] == [len(shown_files), 1, 8, 8]
    n = int(shown_files[0])
    first = np.frombuffer(base64.b64decode(b["maps"]), np.uint8).reshape(b["shape"])[0, 0]
    assert first[method_hot_cell(n)] == 255 and first.sum() == 255  # the method's own hot cell, scaled to its maximum
    assert "compare.html" in page(out / "index.html").links


def method_rows(html: str) -> dict[int, list[dict[str, str]]]:
    """Each row of the methods section: validation index -> its canvases' attributes, in order."""
    section = html[html.index('<section id="methods">'):]
    section = section[:section.index("</section>")]
    rows = {}
    for chunk in section.split('class="gallery-row methods-row" data-index="')[1:]:
        n, rest = chunk.split('"', 1)
        rows[int(n)] = [Page(f"<canvas {c.split('>', 1)[0]}>").canvases[0] for c in rest.split("<canvas ")[1:]]
    return rows


def decoded(site: Path, key: str):
    import numpy as np

    from tests.site.test_build import data_object

    d = data_object(site, key)
    return np.frombuffer(base64.b64decode(d["maps"]), np.uint8).reshape(d["shape"])


@pytest.mark.parametrize("where", ["galleries", "class"])
def test_galleries_and_class_pages_show_each_methods_map_beside_the_models_own(
        runs: dict[str, Path], tmp_path: Path, where: str) -> None:  # noqa: F811
    from tests.site.test_build import colour, hot_pixel, label_of, sprite_cell

    run = explained_run(Path(shutil.copytree(runs["run"], tmp_path / "run")))
    out = quick_build(run, tmp_path / "site").parent
    if where == "galleries":
        path, host, expected = out / "galleries.html", "gallery", set(EXPLAINED)
    else:  # class 2's explained images: 2 and 5 (labels interleave)
        path = next((out / "classes").glob("002-*.html"))
        host, expected = path.stem.split("-")[0], {n for n in EXPLAINED if label_of(n) == 2}
    html = path.read_text(encoding="utf-8")
    rows = method_rows(html)
    assert set(rows) == expected  # every explained image (fewer than the page's limit), and no other
    assert "Grad-CAM" in page(path).words and "Explanation methods side by side" in page(path).words
    own_maps, method_maps = decoded(out, host), decoded(out, f"{host}-m8")
    for n, (image, own, gradcam) in rows.items():
        cell = int(image["data-cell"])
        assert own["data-cell"] == gradcam["data-cell"] == str(cell)  # one image behind the row
        assert tuple(sprite_cell(out, f"data/{host}.png", cell)[32, 32]) == colour(n)  # and it is image n
        assert image.get("data-seq") is None and own["data-src"] == host and gradcam["data-src"] == f"{host}-m8"
        own_map = own_maps[int(own["data-seq"]), int(own["data-epoch-index"])]
        assert own_map[hot_pixel(n, 3)] == 255 and own_map.sum() == 255  # the model's own true-class map, epoch 3
        m = method_maps[int(gradcam["data-seq"]), 0]
        assert m[method_hot_cell(n)] == 255 and m.sum() == 255  # Grad-CAM's map of the same image
    assert any(link.endswith(f"data/{host}-m8.js") for link in page(path).links)  # the page loads its data


def test_pages_without_methods_have_no_methods_section(runs: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    out = quick_build(Path(shutil.copytree(runs["run"], tmp_path / "run")), tmp_path / "site").parent
    assert '<section id="methods">' not in (out / "galleries.html").read_text(encoding="utf-8")
    assert not list((out / "data").glob("*-m8.js"))


def test_with_paired_intervals_a_measure_is_better_only_when_its_interval_excludes_zero() -> None:
    from edvis.site import verdict_sentence

    refs = {"centre": {"deletion_auc": 0.172, "insertion_auc": 0.300},
            "random": {"deletion_auc": 0.267, "insertion_auc": 0.268}}
    row = {"deletion_auc": 0.170, "insertion_auc": 0.314,
           # against the centre: deletion straddles 0 (a tie), insertion above 0 (better)
           "deletion_vs_centre": -0.002, "deletion_vs_centre_lo": -0.007, "deletion_vs_centre_hi": 0.003,
           "insertion_vs_centre": 0.014, "insertion_vs_centre_lo": 0.009, "insertion_vs_centre_hi": 0.019,
           "deletion_vs_random": -0.097, "deletion_vs_random_lo": -0.11, "deletion_vs_random_hi": -0.08,
           "insertion_vs_random": 0.046, "insertion_vs_random_lo": 0.03, "insertion_vs_random_hi": 0.06}
    text = verdict_sentence("model", row, refs, 12)
    assert ("against the centre prior (deletion 0.172, insertion 0.300), paired over the images both cover: "
            "deletion −0.002 (95% interval −0.007 to +0.003, no clear difference) and insertion +0.014 "
            "(95% interval +0.009 to +0.019, better)") in text
    assert "deletion −0.097 (95% interval −0.110 to −0.080, better)" in text
    assert text.endswith("it does not beat both references on both measures.")
    wins = {**row, "deletion_vs_centre_hi": -0.001}
    assert verdict_sentence("model", wins, refs, 12).endswith("it beats both references on both measures.")
    worse = {**row, "insertion_vs_centre": -0.02, "insertion_vs_centre_lo": -0.03, "insertion_vs_centre_hi": -0.01}
    assert "(95% interval −0.030 to −0.010, worse)" in verdict_sentence("model", worse, refs, 12)
