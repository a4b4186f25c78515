"""The Try it page in headless Chromium: latency per image of onnxruntime-web (single-threaded
WebAssembly) on the exported ResNet-18, against onnxruntime in Python on one thread.

A 12-class edvis-resnet18 (freshly initialised: the weights do not change the cost) is exported,
rendered and analysed on a small embedded validation set (one image per class: the page needs a
rendered run), the site is built without figures and served on 127.0.0.1. The page classifies
validation images at the last epoch, one warm-up first; ``model`` is session.run alone,
``page`` the whole request (pixels from the sprite, inference, summaries, drawing). Skipped,
with one row saying why, where Chromium, chromedriver or onnxruntime-web is missing.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

IMAGES = 20  # timed requests, after one warm-up
CLASSES = 12  # the embedded dataset's most; 200 add about 2% to the ResNet-18's multiply-adds at 64x64
TARGET = 4.0  # the browser within 4x of native onnxruntime on one thread

TIME_PAGE = """
const done = arguments[arguments.length - 1];
const [count, epoch, n] = [arguments[0], arguments[1], arguments[2]];
(async () => {
  const model = [], page = [];
  await edvisTry.run({epoch: epoch, index: 0});
  for (let k = 0; k < count; k++) {
    const t0 = performance.now();
    const r = await edvisTry.run({epoch: epoch, index: k % n});
    page.push(performance.now() - t0);
    model.push(r.ms);
  }
  return {model: model, page: page};
})().then(done, e => done({error: String(e)}));
"""


def _run(work: Path) -> Path:
    """A rendered, analysed run of a CLASSES-class model on one embedded validation image per class."""
    from tests.conftest import make_rendered_run

    return make_rendered_run(work, classes=CLASSES, train_per_class=1, val_per_class=1, perturbations=())


def _python_ms(onnx: Path, images: np.ndarray) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    sess.run(None, {"images": images[:1]})
    times = []
    for k in range(IMAGES):
        t = time.perf_counter()
        sess.run(None, {"images": images[k % len(images)][None]})  # every output, as the page asks
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def run() -> list[dict]:
    from edvis.site import read_sources, write_site
    from tests.browser import harness

    missing = harness.missing()
    runtime = REPO / "templates" / "vendor" / "node_modules" / "onnxruntime-web" / "dist" / "ort.wasm.min.js"
    if missing is None and not runtime.is_file():
        missing = f"{runtime} not found (make install)"
    if missing is not None:
        print(f"bench_try: skipped: {missing}", file=sys.stderr)
        return [{"benchmark": "try it: onnxruntime-web in Chromium (ms per image)", "measured": f"skipped: {missing}",
                 "ratio": None, "target": f"≤ {TARGET:g}× Python", "met": None}]
    with tempfile.TemporaryDirectory(prefix="edvis-bench-try-") as tmp:
        work = Path(tmp)
        run_dir = _run(work)
        site = work / "site"
        write_site(read_sources(run_dir), site, draw_figures=False)
        from edvis.data import load_images
        from edvis.run import RenderStore

        manifest = RenderStore(run_dir / "render").manifest()
        root = Path(manifest["dataset"]["root"])
        images = load_images([root / f for f in manifest["val"]["files"]])
        python = _python_ms(run_dir / "onnx" / "epoch_001.onnx", images)
        with harness.browser() as driver, harness.serve(site) as url:
            driver.get(url + "try.html")
            got = driver.execute_async_script(TIME_PAGE, IMAGES, 1, len(images))
        if "error" in got:
            raise RuntimeError(f"try.html: {got['error']}")
    model, page = statistics.median(got["model"]), statistics.median(got["page"])
    version = json.loads((runtime.parent.parent / "package.json").read_text())["version"]
    return [
        {"benchmark": f"try it: onnxruntime-web {version} in Chromium, 1 thread, "
                      f"ResNet-18 ({CLASSES} classes), every output, vs onnxruntime in Python, 1 thread (ms per image)",
         "measured": f"{model:.0f} vs {python:.0f} ms", "ratio": model / python, "target": f"≤ {TARGET:g}",
         "met": model / python <= TARGET},
        {"benchmark": "try it: a whole request in the page (sprite pixels, inference, top-5 maps, every layer drawn) "
                      "(ms per image)",
         "measured": f"{page:.0f} ms", "ratio": None, "target": "reported", "met": None},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
