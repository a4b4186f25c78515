"""Drive Debian's Chromium through chromedriver against a built edvis site.

Shared by the browser tests (``tests/browser/test_browser.py``) and the docs' screenshot script
(``python -m tests.browser.screenshots``). Nothing here downloads a browser: it uses
``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (Debian's ``chromium`` and
``chromium-driver`` packages), or the paths in ``$EDVIS_CHROMIUM`` and ``$EDVIS_CHROMEDRIVER``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html.parser
import http.server
import io
import os
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("EDVIS_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("EDVIS_CHROMEDRIVER", "/usr/bin/chromedriver"))
#: ``EDVIS_BROWSER_TESTS=required`` (set by .ci/run) turns a missing browser into a failure.
REQUIRED_ENV = "EDVIS_BROWSER_TESTS"

#: Flags that work on a headless, sandbox-less, offline machine; the profile folder is added per launch.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
WINDOW = (1280, 900)
PAGE_TIMEOUT = 20.0  # seconds for one page to load and draw
MAX_HEIGHT = 8000  # tallest viewport in CSS pixels; a taller page is scrolled through

#: Runs before any script of every page: records alert/confirm/prompt instead of showing them.
TRAP_DIALOGS = """
window.__edvisDialogs = [];
for (const name of ["alert", "confirm", "prompt"]) {
  window[name] = function (message) { window.__edvisDialogs.push(name + ": " + String(message)); };
}
"""

#: Returns, for every <img> and <canvas>, what the tests check (JS, run in the page).
MEASURE = r"""
const out = {images: [], canvases: []};
for (const img of document.images) {
  const r = img.getBoundingClientRect();
  out.images.push({src: img.currentSrc || img.src, complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
                   box: [r.width, r.height],
                   hidden: img.closest("[hidden]") !== null || getComputedStyle(img).display === "none"});
}
let k = 0;
for (const c of document.querySelectorAll("canvas")) {
  const r = c.getBoundingClientRect();
  const item = {index: k++, id: c.id, label: c.getAttribute("aria-label") || "", size: [c.width, c.height],
                box: [r.width, r.height], rect: [r.left + scrollX, r.top + scrollY, r.right + scrollX, r.bottom + scrollY],
                readable: true, distinct: 0, opaque: 0, digest: ""};
  try {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    let h = 2166136261 >>> 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3]) item.opaque++;
      if (seen.size < 64) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2] | (d[i + 3] << 24));
      h = Math.imul(h ^ (d[i] + 7 * d[i + 1] + 31 * d[i + 2] + 127 * d[i + 3]), 16777619) >>> 0;
    }
    item.distinct = seen.size;
    item.digest = h.toString(16);
  } catch (e) {
    item.readable = false;  // tainted: an image of another origin (a file:// sprite) was drawn on it
  }
  out.canvases.push(item);
}
return out;
"""


#: Async: once the document and its images are done and two frames drawn, returns the page's
#: height, the trapped dialogs and MEASURE's result, in one round trip.
SETTLE_AND_MEASURE = r"""
const done = arguments[arguments.length - 1];
const deadline = Date.now() + arguments[0];
// lazy images outside the viewport are not loaded until scrolled to, so they do not count here
function waiting(i) {
  const r = i.getBoundingClientRect();
  return !i.complete && !(i.loading === "lazy" && (r.bottom < 0 || r.top > innerHeight));
}
function ready() {
  return document.readyState === "complete" && !Array.from(document.images).some(waiting);
}
function finish() {
  requestAnimationFrame(() => requestAnimationFrame(() => {
    const measured = (function () {""" + MEASURE + r"""})();
    done({height: document.documentElement.scrollHeight, dialogs: window.__edvisDialogs || [], ...measured});
  }));
}
(function wait() { if (ready() || Date.now() > deadline) finish(); else setTimeout(wait, 20); })();
"""


class BrowserMissing(RuntimeError):
    """Chromium, chromedriver or selenium is not installed."""


def missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (path.is_file() and os.access(path, os.X_OK)):
            return f"{path} not found (apt-get install -y {package})"
    return None


def launch(profile: Path, window: tuple[int, int] = WINDOW) -> Any:
    """A headless Chromium under chromedriver with a fresh profile in ``profile``; dialogs are trapped."""
    reason = missing()
    if reason:
        raise BrowserMissing(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.set_capability("unhandledPromptBehavior", "ignore")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    driver.set_script_timeout(PAGE_TIMEOUT + 10)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TRAP_DIALOGS})
    set_viewport(driver, *window)  # the viewport itself, not the window around it
    return driver


@contextlib.contextmanager
def browser(window: tuple[int, int] = WINDOW) -> Iterator[Any]:
    """:func:`launch` with a temporary profile, quit and removed on exit."""
    profile = Path(tempfile.mkdtemp(prefix="edvis-chromium-"))
    driver = None
    try:
        driver = launch(profile, window)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1 (a free port) from a thread; yields the base URL ending in ``/``."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="edvis-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- loading and measuring a page ----------------------------------------------------------------


def console_errors(driver: Any) -> list[str]:
    """The SEVERE browser-log entries since the last call (each call drains the log)."""
    return [f"{e.get('source', '')}: {e['message']}" for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def open_page(driver: Any, url: str) -> dict[str, Any]:
    """Load ``url``, wait until it has loaded and drawn everything, and measure it (see settle_and_measure)."""
    driver.get(url)
    return settle_and_measure(driver)


def settle(driver: Any) -> None:
    """Wait until the images in view are loaded (or failed) and two animation frames are drawn."""
    driver.execute_async_script(SETTLE_AND_MEASURE, int(PAGE_TIMEOUT * 1000))


def set_viewport(driver: Any, width: int, height: int) -> None:
    """Make the viewport exactly ``width`` × ``height`` CSS pixels, one device pixel each."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def settle_and_measure(driver: Any) -> dict[str, Any]:
    """Wait for the page, grow the viewport to its height (up to MAX_HEIGHT), and measure it.

    A page taller than that is scrolled through, so that every lazy image loads. Returns
    MEASURE's result with the page's ``height`` and the trapped ``dialogs``.
    """
    def run() -> dict[str, Any]:
        return driver.execute_async_script(SETTLE_AND_MEASURE, int(PAGE_TIMEOUT * 1000))

    width, height = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    found = run()
    if found["height"] > height and height < MAX_HEIGHT:
        height = min(MAX_HEIGHT, found["height"])
        set_viewport(driver, width, height)
        found = run()
    if found["height"] > height:
        for y in range(height, found["height"], height):
            driver.execute_script("window.scrollTo(0, arguments[0])", y)
            run()
        driver.execute_script("window.scrollTo(0, 0)")
        found = run()
    return found


def screenshot(driver: Any, clip: tuple[int, int] | None = None) -> Any:
    """The viewport (or the ``clip`` = (width, height) at its top left) as a PIL RGB image.

    Device pixels are CSS pixels (see :func:`set_viewport`).
    """
    from PIL import Image

    params: dict[str, Any] = {"format": "png"}
    if clip:  # in page coordinates: start at the scrolled-to point
        x, y = driver.execute_script("return [window.scrollX, window.scrollY]")
        params["clip"] = {"x": x, "y": y, "width": clip[0], "height": clip[1], "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", params)
    return Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")


def element_pixels(element: Any) -> tuple[int, str]:
    """(number of distinct colours, up to 64; a digest) of an element as the screen shows it."""
    import hashlib

    from PIL import Image

    element.parent.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    image = Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB")
    colours = image.getcolors(maxcolors=64)
    distinct = 64 if colours is None else len(colours)
    return distinct, hashlib.sha256(image.tobytes()).hexdigest()[:16]


def canvas_pixels(driver: Any, index: int) -> tuple[int, str]:
    """(distinct colours, digest) of the page's ``index``-th canvas: read back, or by screenshot when tainted."""
    found = driver.execute_script(MEASURE)["canvases"][index]
    if found["readable"]:
        return min(found["distinct"], 64) if found["opaque"] else 0, found["digest"]
    from selenium.webdriver.common.by import By

    return element_pixels(driver.find_elements(By.TAG_NAME, "canvas")[index])


def dialogs(driver: Any) -> list[str]:
    """alert/confirm/prompt calls the current page made (trapped, never shown)."""
    return driver.execute_script("return window.__edvisDialogs || []")


# -- crawling ------------------------------------------------------------------------------------


class _Links(html.parser.HTMLParser):
    """Every href/src of a page and every id it defines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("href", "src"):
                self.refs.append((tag, name, value))
            elif name in ("id", "name") and (name == "id" or tag == "a"):
                self.ids.add(value)


def parse_links(text: str) -> tuple[list[tuple[str, str, str]], set[str]]:
    """(the (tag, attribute, value) of every href and src, the set of ids) of an HTML document."""
    p = _Links()
    p.feed(text)
    p.close()
    return p.refs, p.ids


@dataclass
class PageReport:
    """What loading one HTML page in the browser showed."""

    url: str
    path: str  # relative to the site root, POSIX
    title: str
    errors: list[str]
    dialogs: list[str]
    images: list[dict[str, Any]]
    canvases: list[dict[str, Any]]
    blank_canvases: list[str] = field(default_factory=list)
    screenshot: Path | None = None


@dataclass
class Crawl:
    """Every HTML page reachable from the start page, and every internal link found on the way."""

    pages: dict[str, PageReport] = field(default_factory=dict)
    links: list[tuple[str, str, str]] = field(default_factory=list)  # (from page, raw ref, resolved site path)
    broken: list[str] = field(default_factory=list)


def site_path(root_url: str, url: str) -> str | None:
    """The path of ``url`` relative to the site's root URL, or None when it points elsewhere."""
    clean = urllib.parse.urldefrag(url)[0].split("?", 1)[0]
    if not clean.startswith(root_url):
        return None
    return urllib.parse.unquote(clean[len(root_url):]) or "index.html"


def crawl(
    driver: Any,
    site_dir: Path,
    root_url: str,
    start: str = "index.html",
    screenshots: Path | None = None,
    skip: tuple[str, ...] = (),
) -> Crawl:
    """Open every HTML page reachable from ``start`` under ``root_url`` (which serves ``site_dir``).

    For every page: console errors, trapped dialogs, images, canvases. Every internal href/src must
    name a file in ``site_dir`` and its ``#fragment`` an id on that page; failures go to
    ``Crawl.broken``. Paths starting with one of ``skip`` are checked for existence only, not
    opened (e.g. a separately built documentation folder). Links (``<a href>``) may point
    elsewhere; anything else fetched from outside the site is broken. With ``screenshots``, a
    PNG of the top of each page (WINDOW) is saved there. The viewport grows to the tallest page
    seen (up to MAX_HEIGHT), so lazy images load and lazily drawn canvases draw.
    """
    result = Crawl()
    queue = [start]
    ids: dict[str, set[str]] = {}
    seen = {start}
    while queue:
        rel = queue.pop(0)
        url = root_url + urllib.parse.quote(rel)
        found = open_page(driver, url)
        report = PageReport(url=url, path=rel, title=driver.title, errors=console_errors(driver),
                            dialogs=found["dialogs"], images=found["images"], canvases=found["canvases"])
        # A canvas is blank when nothing was drawn on it: every pixel transparent. A canvas the
        # page cannot read back (from file://) has had a loaded image of another origin drawn on
        # it, the only thing that clears a canvas's origin-clean flag, so it is not blank.
        for c in report.canvases:
            if c["readable"] and c["opaque"] == 0:
                report.blank_canvases.append(c["label"] or c["id"] or f"canvas #{c['index']}")
        if screenshots is not None:
            screenshots.mkdir(parents=True, exist_ok=True)
            report.screenshot = screenshots / (rel.replace("/", "__").removesuffix(".html") + ".png")
            screenshot(driver, clip=WINDOW).save(report.screenshot)  # the top of the page
        result.pages[rel] = report

        text = (site_dir / rel).read_text(encoding="utf-8")
        refs, ids[rel] = parse_links(text)
        for tag, _attr, ref in refs:
            absolute = urllib.parse.urljoin(url, ref)
            target = site_path(root_url, absolute)
            if target is None:
                # a link to elsewhere is fine; a resource fetched from elsewhere is not
                if tag != "a" and urllib.parse.urlparse(absolute).scheme in ("http", "https", "file"):
                    result.broken.append(f"{rel}: <{tag}> {ref} is fetched from outside the site")
                continue
            result.links.append((rel, ref, target))
            path = site_dir / target
            if target.endswith("/"):
                path = path / "index.html"
            if not path.is_file():
                result.broken.append(f"{rel}: {ref} → {target} does not exist")
                continue
            if target.endswith(".html") and target not in seen and not target.startswith(skip):
                seen.add(target)
                queue.append(target)

    for rel, ref, target in result.links:
        fragment = urllib.parse.urldefrag(ref)[1]
        if fragment and target in ids and urllib.parse.unquote(fragment) not in ids[target]:
            result.broken.append(f"{rel}: {ref} → no id {fragment!r} on {target}")
    return result


# -- the demo site the tests look at -------------------------------------------------------------

#: A class name that must show as text: markup, both quote kinds and non-ASCII letters, no comma
#: (words.txt keeps what comes before the first comma).
HOSTILE_NAME = "<script>alert(1)</script> \"Zoë's\" <b>bold</b> Ærøskøbing"
HOSTILE_CLASS = 1  # the class renamed to HOSTILE_NAME
DEMO_EPOCHS = 2


def build_demo_site(work: Path, docs: bool = True, log: Any = print) -> tuple[Path, Path]:
    """Build a tiny demo run and its site under ``work``; returns (run folder, site folder).

    Three embedded classes, four training and three validation images each, two epochs, then
    ``build.py`` and (with ``docs``) the docs into ``site/docs``, as ``make site`` does. Class 1
    is renamed to :data:`HOSTILE_NAME` in words.txt after the dataset is drawn, so every page
    that names it shows hostile text.
    """
    import runpy
    import sys

    from edvis.cli import main

    repo = Path(__file__).resolve().parents[2]
    data, run, out = work / "data", work / "run", work / "site"
    t0 = time.monotonic()
    if main(["synth", "--out", str(data), "--classes", "3", "--train-per-class", "4", "--val-per-class", "3"]):
        raise RuntimeError("edvis synth failed")
    words = data / "words.txt"
    lines = words.read_text(encoding="utf-8").splitlines()
    wnid = lines[HOSTILE_CLASS].split("\t", 1)[0]
    lines[HOSTILE_CLASS] = f"{wnid}\t{HOSTILE_NAME}"
    words.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if main(["train", "--data", str(data), "--run", str(run), "--epochs", str(DEMO_EPOCHS), "--batch-size", "12",
             "--device", "cpu"]):
        raise RuntimeError("edvis train failed")
    # build.py itself, in this process (torch is imported already): export → render → analyze → site
    argv, sys.argv = sys.argv, [str(repo / "build.py"), "--run", str(run), "--out", str(out)]
    try:
        runpy.run_path(str(repo / "build.py"), run_name="__main__")
    except SystemExit as e:
        if e.code:
            raise RuntimeError(f"build.py failed with status {e.code}") from e
    finally:
        sys.argv = argv
    if docs:
        build_docs(out / "docs")
    log(f"demo site built in {time.monotonic() - t0:.1f} s: {out}")
    return run, out


def build_docs(out: Path) -> None:
    """``mkdocs build --strict`` of this checkout's docs into ``out``, as ``make docs`` does."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(repo)}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=repo, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"mkdocs build failed:\n{proc.stderr}")
