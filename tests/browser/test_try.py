"""The Try it page in a real browser: onnxruntime-web runs the demo run's ONNX files.

The reference is onnxruntime in Python on the same ONNX files and ``load_image``'s pixels; the
maps and layer summaries are recomputed here with numpy, independently of the page's script.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from edvis.data import load_image
from edvis.run import RenderStore, Unit

from . import harness
from .test_browser import browser_errors

#: A page result as plain JSON: what the tests compare.
PLAIN = """
const plain = r => ({logits: r.logits, top5: r.top5, probs: r.probs, maps: r.maps, epoch: r.epoch, store: r.store,
  ms: r.ms, source: r.source, index: r.index,
  layers: r.layers.map(l => ({name: l.name, shape: l.shape, channels: l.channels, mean: Array.from(l.mean)}))});
"""
#: Runs the page's edvisTry.run(request) and returns its result.
RUN = PLAIN + """
const done = arguments[arguments.length - 1];
edvisTry.run(arguments[0]).then(r => done(plain(r)), e => done({error: String(e)}));
"""
#: Waits until the page shows a result of ``source`` (and epoch, unless null), then returns it.
WAIT_FOR = PLAIN + """
const [done, source, epoch] = [arguments[arguments.length - 1], arguments[0], arguments[1]];
const deadline = Date.now() + 25000;
(function wait() {
  const r = window.edvisTry && edvisTry.last;
  if (r && r.source === source && (epoch === null || r.epoch === epoch)) return done(plain(r));
  if (Date.now() > deadline) return done({error: "no result from " + source});
  setTimeout(wait, 50);
})();
"""
TOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def try_page(demo: tuple[Path, Path]) -> Path:
    """The demo site's try.html; without it (onnxruntime-web not installed) the tests skip, or fail
    where the browser tests are required."""
    if not (demo[1] / "try.html").is_file():
        reason = "the demo site has no try.html: onnxruntime-web is not installed (`make install` runs npm ci)"
        if os.environ.get(harness.REQUIRED_ENV) == "required":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return demo[1] / "try.html"


@pytest.fixture(scope="module")
def page(driver: Any, roots: dict[str, str]) -> Any:
    driver.get(roots["http"] + "try.html")
    harness.console_errors(driver)  # drain
    return driver


def run_page(driver: Any, request: dict[str, Any]) -> dict[str, Any]:
    result = driver.execute_async_script(RUN, request)
    assert "error" not in result, result
    return result


def session(run: Path, epoch: int) -> ort.InferenceSession:
    return ort.InferenceSession(str(run / "onnx" / f"epoch_{epoch:03d}.onnx"), providers=["CPUExecutionProvider"])


def validation(run: Path) -> tuple[Path, list[str], np.ndarray]:
    manifest = RenderStore(run / "render").manifest()
    return Path(manifest["dataset"]["root"]), manifest["val"]["files"], np.asarray(manifest["val"]["labels"])


def scaled(m: np.ndarray) -> np.ndarray:
    """A map scaled to its own maximum as 0..255 (negatives as zero), as the site draws it."""
    m = np.maximum(m.astype(np.float64), 0)
    return np.rint(m / m.max() * 255) if m.max() > 0 else np.zeros_like(m)


def epochs_shipped(site: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (site / "models").glob("epoch_*.onnx"))


def test_the_page_ships_the_pinned_runtime_and_the_verified_models(demo: tuple[Path, Path]) -> None:
    run, site = demo
    assert epochs_shipped(site) == [1, 2]  # two epochs trained: both, by default
    for e in (1, 2):
        assert (site / "models" / f"epoch_{e:03d}.onnx").read_bytes() == (run / "onnx" / f"epoch_{e:03d}.onnx").read_bytes()
    runtime = site / "vendor" / "onnxruntime-web"
    assert sorted(p.name for p in runtime.iterdir()) == ["LICENSE", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
                                                        "ort.wasm.min.js"]
    assert "ONNX Runtime Web v1.30.0" in (runtime / "ort.wasm.min.js").read_text(encoding="utf-8")[:200]
    assert "MIT License" in (runtime / "LICENSE").read_text(encoding="utf-8")
    text = (site / "try.html").read_text(encoding="utf-8")
    assert "http" not in text.split("<main")[1].replace("http.server", "").replace("http://localhost", "")  # no CDN


def test_five_validation_images_give_onnxruntime_pythons_logits_and_the_stores_top1(page: Any, demo: tuple[Path, Path]) -> None:
    run, _ = demo
    root, files, labels = validation(run)
    store = RenderStore(run / "render")
    for epoch in (2, 1):
        ref = session(run, epoch)
        top1 = store.read(Unit("clean", epoch))["top5"][:, 0]
        for i in (0, 2, 4, 6, 8):
            got = run_page(page, {"epoch": epoch, "index": i})
            logits, maps = ref.run(["logits", "maps"], {"images": load_image(root / files[i])[None]})
            assert np.abs(np.asarray(got["logits"]) - logits[0]).max() <= TOL, (epoch, i)
            assert got["top5"][0] == int(top1[i]) and got["store"]["pred"] == int(top1[i])
            order = np.argsort(-logits[0], kind="stable")[:3]
            assert got["top5"] == order.tolist()
            for k, drawn in zip(got["top5"], got["maps"]):
                assert np.abs(np.asarray(drawn) - scaled(maps[0, k]).reshape(-1)).max() <= 1, (epoch, i, k)


def test_every_tapped_layer_is_summarised_as_the_layers_page_does(page: Any, demo: tuple[Path, Path]) -> None:
    run, _ = demo
    root, files, _ = validation(run)
    ref = session(run, 2)
    names = [o.name for o in ref.get_outputs() if o.name.startswith("layer.")] + ["maps"]
    outputs = dict(zip(names, ref.run(names, {"images": load_image(root / files[3])[None]})))
    got = run_page(page, {"epoch": 2, "index": 3})
    assert [layer["name"] for layer in got["layers"]] == [n.removeprefix("layer.") for n in names]
    for layer, name in zip(got["layers"], names):
        act = outputs[name][0].astype(np.float64)  # (C, h, w)
        assert layer["shape"] == list(act.shape)
        means = act.reshape(len(act), -1).mean(axis=1)
        strongest = sorted(range(len(means)), key=lambda c: (-means[c], c))[:12]
        assert layer["channels"][:3] == strongest[:3], name  # the top channels (further down, float ties may swap)
        mean = act.mean(axis=0)
        expected = np.rint((mean - mean.min()) / (mean.max() - mean.min()) * 255) if mean.max() > mean.min() else 0 * mean
        assert np.abs(np.asarray(layer["mean"]) - expected.reshape(-1)).max() <= 1, name


def test_switching_the_epoch_redraws_other_maps(page: Any, demo: tuple[Path, Path]) -> None:
    from selenium.webdriver.support.ui import Select

    digests = {}
    for epoch in ("1", "2"):
        page.execute_script("edvisTry.last = null")
        Select(page.find_element("id", "try-epoch")).select_by_value(epoch)
        result = page.execute_async_script(WAIT_FOR, "validation", int(epoch))
        assert "error" not in result, result
        digests[epoch] = page.execute_script(
            "return Array.from(document.querySelectorAll('#try-result canvas.try-map')).slice(1).map(c => c.toDataURL())")
        assert len(digests[epoch]) == 3  # three classes: all three maps
    assert digests["1"] != digests["2"]


def test_an_uploaded_png_is_classified_as_pillow_would_resize_it(page: Any, demo: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = demo
    root, files, _ = validation(run)
    # a validation image stretched to 101 x 77 (nearest), so the page must shrink and stretch it back
    src = Image.open(root / files[5]).convert("RGB").resize((101, 77), Image.Resampling.NEAREST)
    upload = tmp_path / "mine.png"
    src.save(upload)
    page.execute_script("edvisTry.last = null")
    page.find_element("id", "try-file").send_keys(str(upload))
    got = page.execute_async_script(WAIT_FOR, "file", None)
    assert "error" not in got, (got, page.find_element("id", "try-status").text)
    logits = session(run, got["epoch"]).run(["logits"], {"images": load_image(upload)[None]})[0][0]
    assert np.abs(np.asarray(got["logits"]) - logits).max() <= TOL
    assert got["top5"][0] == int(np.argmax(logits))
    assert "mine.png" in page.find_element("id", "try-result").text


def test_the_page_logs_no_console_errors(page: Any) -> None:
    run_page(page, {"epoch": 1, "index": 1})
    report = harness.PageReport(url="", path="try.html", title="", errors=harness.console_errors(page), dialogs=[],
                                images=[], canvases=[])
    assert browser_errors(report) == []


def test_from_file_the_page_says_how_to_serve_the_folder(driver: Any, roots: dict[str, str]) -> None:
    driver.get(roots["file"] + "try.html")
    harness.settle(driver)
    note = driver.find_element("id", "try-serve")
    assert note.is_displayed() and "python3 -m http.server" in note.text
    assert not driver.find_element("id", "try-controls").is_displayed()
    errors = harness.console_errors(driver)
    assert browser_errors(harness.PageReport("", "try.html", "", errors, [], [], [])) == []


def test_the_fp16_copy_runs_in_the_browser_as_in_python(driver: Any, demo: tuple[Path, Path],
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    from edvis.compress import compress_epochs, fp16_path
    from edvis.run import Run
    from edvis.site import read_sources, write_site

    run, _ = demo
    compress_epochs(run, [2])  # beside the demo's own ONNX files, which stay as they are
    site = tmp_path_factory.mktemp("fp16") / "site"
    write_site(read_sources(run), site, draw_figures=False, try_epochs="2", try_precision="fp16")
    root, files, _ = validation(run)
    half = ort.InferenceSession(str(fp16_path(Run(run), 2)), providers=["CPUExecutionProvider"])
    with harness.serve(site) as url:
        driver.get(url + "try.html")
        got = run_page(driver, {"epoch": 2, "index": 4})
        errors = harness.console_errors(driver)
    logits = half.run(["logits"], {"images": load_image(root / files[4])[None]})[0][0]
    assert np.abs(np.asarray(got["logits"]) - logits).max() <= TOL
    assert "float16" in (site / "try.html").read_text(encoding="utf-8")
    assert browser_errors(harness.PageReport("", "try.html", "", errors, [], [], [])) == []
