"""The Try it page's files: the epochs' ONNX files copied verified, onnxruntime-web's runtime and
its licence, and the validation images as the renderer read them. The page's numbers in a real
browser are checked in tests/browser/test_try.py.

Runs ``edvis site`` on conftest.py's rendered run (one epoch, exported), copied first.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edvis.cli import main
from edvis.data import load_image
from edvis.site import read_sources, write_site
from tests.conftest import flip, logged

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "templates" / "vendor" / "node_modules" / "onnxruntime-web" / "package.json"
needs_runtime = pytest.mark.skipif(not RUNTIME.is_file(), reason="onnxruntime-web is not installed (make install)")


@pytest.fixture
def run(rendered_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(rendered_run, tmp_path / "run"))


@pytest.fixture(scope="module")
def built(rendered_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """(site, log lines) of the rendered run's site with the default Try it page, figures not drawn."""
    out = tmp_path_factory.mktemp("try-site") / "site"
    with logged() as lines:
        write_site(read_sources(rendered_run), out, draw_figures=False)
    return out, lines


def build(run: Path, out: Path, **flags: str) -> None:
    write_site(read_sources(run), out, draw_figures=False, **flags)


def site(capsys: pytest.CaptureFixture[str], run: Path, out: Path, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["site", "--run", str(run), "--out", str(out), *extra])
    return code, capsys.readouterr().err


def try_data(out: Path) -> dict:
    text = (out / "data" / "try.js").read_text(encoding="utf-8")
    return json.loads(text.split('window.EDVIS["try"] = ', 1)[1].rstrip().rstrip(";"))


@needs_runtime
def test_the_page_ships_the_epochs_onnx_file_and_the_pinned_runtime(built: tuple[Path, list[str]], rendered_run: Path) -> None:
    out, said = built
    run = rendered_run
    assert (out / "models" / "epoch_001.onnx").read_bytes() == (run / "onnx" / "epoch_001.onnx").read_bytes()
    record = json.loads((run / "onnx" / "epoch_001.json").read_text())
    data = try_data(out)
    assert data["models"] == [{"epoch": 1, "file": "models/epoch_001.onnx", "sha256": record["sha256"], "size": record["size"]}]
    assert data["runtime"] == "vendor/onnxruntime-web/"
    for name in ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm", "LICENSE"):
        assert (out / "vendor" / "onnxruntime-web" / name).is_file(), name
    assert 'href="try.html"' in (out / "index.html").read_text(encoding="utf-8")
    page = (out / "try.html").read_text(encoding="utf-8")
    assert "onnxruntime-web 1.30.0" in page and "models/epoch_001.onnx" in page
    assert any("Try it page: 1 epoch(s) of fp32 ONNX" in line for line in said)
    assert f"{record['sha256']}  onnx/epoch_001.onnx\n" in (out / "inputs.sha256").read_text()  # read, so listed


@needs_runtime
def test_every_validation_image_is_on_a_sprite_cell_with_the_renderers_pixels(built: tuple[Path, list[str]],
                                                                               rendered_run: Path) -> None:
    out = built[0]
    data = try_data(out)
    manifest = json.loads((rendered_run / "render" / "manifest.json").read_text())
    root, files = Path(manifest["dataset"]["root"]), manifest["val"]["files"]
    seen = []
    for entry in data["classes"].values():
        with Image.open(out / entry["sprite"]) as sheet:
            pixels = np.asarray(sheet.convert("RGB"))
        for cell, i in enumerate(entry["cells"]):
            r, c = divmod(cell, data["columns"])
            got = pixels[r * 64:(r + 1) * 64, c * 64:(c + 1) * 64]
            assert np.array_equal(got, load_image(root / files[i])), files[i]
            seen.append(i)
    assert sorted(seen) == list(range(len(files)))
    assert data["files"] == files and data["labels"] == manifest["val"]["labels"]


@needs_runtime
def test_images_larger_than_a_sprite_cell_come_from_full_size_sheets_of_their_own(tmp_path: Path) -> None:
    # At 160 px the class sheets hold 128-px reductions; the page's cells must be the renderer's pixels.
    from tests.conftest import make_rendered_run

    large_per_class = 3  # docs/site.md: the first three validation images of each class
    run = make_rendered_run(tmp_path, classes=2, val_per_class=5, perturbations=(), image_size=160)
    out = tmp_path / "site"
    build(run, out)
    data = try_data(out)
    manifest = json.loads((run / "render" / "manifest.json").read_text())
    root, files, labels = Path(manifest["dataset"]["root"]), manifest["val"]["files"], manifest["val"]["labels"]
    assert data["image_size"] == 160 and sorted(data["classes"]) == ["0", "1"]
    for c, entry in data["classes"].items():
        assert entry["sprite"] == f"data/try-{int(c):03d}.png"
        assert entry["cells"] == [i for i, label in enumerate(labels) if label == int(c)][:large_per_class]
        with Image.open(out / entry["sprite"]) as sheet:
            pixels = np.asarray(sheet.convert("RGB"))
        assert pixels.shape == (160, 160 * large_per_class, 3)
        for cell, i in enumerate(entry["cells"]):  # as try.js reads them: cells of image_size px
            r, col = divmod(cell, data["columns"])
            got = pixels[r * 160:(r + 1) * 160, col * 160:(col + 1) * 160]
            assert np.array_equal(got, load_image(root / files[i], size=160)), files[i]
    with Image.open(out / "data" / "000.jpg") as sheet:  # the class page's own sheet: reduced, so JPEG
        assert sheet.format == "JPEG" and sheet.size == (128 * 5, 128)
        cells = np.asarray(sheet.convert("RGB"), dtype=np.float64)
    zeros = [i for i, label in enumerate(labels) if label == 0]
    for cell, i in enumerate(zeros):  # each cell is the image reduced with Lanczos, to JPEG's error
        want = np.asarray(Image.fromarray(load_image(root / files[i], size=160)).resize((128, 128), Image.Resampling.LANCZOS))
        assert np.abs(cells[:, cell * 128:(cell + 1) * 128] - want).mean() < 3.0, files[i]
    assert not (out / "data" / "000.png").exists()
    assert 'src="../data/000.jpg"' in next((out / "classes").glob("000-*.html")).read_text()
    assert f"offers the first {large_per_class} validation images of each class" in (out / "try.html").read_text()


def test_try_epochs_none_builds_no_page(rendered_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "site"
    build(rendered_run, out, try_epochs="none")
    assert not (out / "try.html").exists() and not (out / "models").exists()
    assert "try.html" not in (out / "index.html").read_text(encoding="utf-8")


def test_an_epoch_that_was_not_rendered_is_refused(capsys, run: Path, tmp_path: Path) -> None:
    code, err = site(capsys, run, tmp_path / "site", "--try-epochs", "1,7")
    assert code == 2
    assert "edvis: error: --try-epochs: there is no epoch 7" in err


@needs_runtime
def test_a_damaged_onnx_file_is_refused_not_shipped(capsys, run: Path, tmp_path: Path) -> None:
    flip(run / "onnx" / "epoch_001.onnx")  # its size kept: only the sha256 can tell
    out = tmp_path / "site"
    code, err = site(capsys, run, out)
    assert code == 2
    (line,) = [x for x in err.splitlines() if x.startswith("edvis: error:")]
    assert "Try it page cannot ship epoch 1" in line and "epoch_001.onnx" in line and "edvis export" in line
    assert not (out / "models" / "epoch_001.onnx").exists()


def test_without_onnx_files_the_site_has_no_try_page_and_says_so(said: list[str], run: Path, tmp_path: Path) -> None:
    shutil.rmtree(run / "onnx")
    out = tmp_path / "site"
    build(run, out)
    assert "site: no Try it page: the run has no exported ONNX file of a rendered epoch" in said
    assert not (out / "try.html").exists()
