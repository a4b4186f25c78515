"""The gallery in a real browser: headless Chromium on the tiny demo site, served and from file://.

Skipped when Chromium or chromedriver is missing, unless EDVIS_BROWSER_TESTS=required (as in CI).
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from . import harness
from .conftest import DOCS, SCREENSHOTS, WITH_DOCS

MODES = ["http", "file"]


def browser_errors(page: harness.PageReport) -> list[str]:
    """The page's console errors, less Chromium's own request for /favicon.ico at the server root.

    Chromium asks every HTTP origin for /favicon.ico by itself; the 404 is the browser's, not
    the page's (no page links to it), so it is left out.
    """
    return [e for e in page.errors if not re.search(r"^network: https?://[^/]+/favicon\.ico ", e)]


def class_page(site: Path, index: int) -> str:
    """The site path of class ``index``'s page."""
    (page,) = sorted((site / "classes").glob(f"{index:03d}-*.html"))
    return page.relative_to(site).as_posix()


def grid_digests(driver: Any) -> list[str]:
    """Pixel digests of the class page's image grid canvases, in page order."""
    count = driver.execute_script("return document.querySelectorAll('canvas').length")
    grid = driver.execute_script(
        "const all = Array.from(document.querySelectorAll('canvas'));"
        "return Array.from(document.querySelectorAll('#grid canvas')).map(c => all.indexOf(c));"
    )
    assert grid and count, "the class page has no #grid canvases"
    return [harness.canvas_pixels(driver, i)[1] for i in grid]


def expected_changed_maps(run: Path, cls: int, a: int, b: int) -> int:
    """How many of class ``cls``'s validation images have a different drawn map at epochs a and b.

    Computed from the render store, independently of the site code: each true-class map is
    scaled to 0..255 by its own maximum and rounded, as the page draws it.
    """
    from edvis.run import RenderStore, Unit

    store = RenderStore(run / "render")
    labels = np.asarray(store.manifest()["val"]["labels"])

    def drawn(epoch: int) -> np.ndarray:
        m = np.maximum(store.read(Unit("clean", epoch))["map_true"].astype(np.float64)[labels == cls], 0)
        peak = m.reshape(len(m), -1).max(axis=1)[:, None, None]
        return np.rint(255 * np.divide(m, peak, out=np.zeros_like(m), where=peak > 0))

    return int((drawn(a) != drawn(b)).any(axis=(1, 2)).sum())


# -- the crawl: every page, image, canvas and link --------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_every_page_loads_without_console_errors(crawls: dict[str, harness.Crawl], mode: str) -> None:
    pages = crawls[mode].pages
    assert "index.html" in pages and len(pages) >= 4
    errors = {p.path: browser_errors(p) for p in pages.values() if browser_errors(p)}
    assert errors == {}


@pytest.mark.parametrize("mode", MODES)
def test_every_image_and_canvas_is_drawn(crawls: dict[str, harness.Crawl], mode: str) -> None:
    bad = []
    canvases = 0
    for page in crawls[mode].pages.values():
        for img in page.images:
            if not (img["complete"] and min(img["natural"]) > 0):
                bad.append(f"{page.path}: image {img['src']} did not load")
            elif not img["hidden"] and min(img["box"]) <= 0:
                bad.append(f"{page.path}: image {img['src']} is shown at size {img['box']}")
        for c in page.canvases:
            canvases += 1
            if min(c["size"]) <= 0 or min(c["box"]) <= 0:
                bad.append(f"{page.path}: canvas {c['label'] or c['index']} has size {c['size']} shown at {c['box']}")
        bad += [f"{page.path}: canvas {label!r} is blank" for label in page.blank_canvases]
    assert bad == []
    # three class pages, each with its three images in the grid and in timelines at both epochs
    assert canvases >= 3 * (3 + 3 * harness.DEMO_EPOCHS)


@pytest.mark.parametrize("mode", MODES)
def test_every_internal_link_resolves_and_every_page_is_reached(
    crawls: dict[str, harness.Crawl], demo: tuple[Path, Path], mode: str
) -> None:
    crawl = crawls[mode]
    broken = crawl.broken if WITH_DOCS else [b for b in crawl.broken if f" → {DOCS[0]}" not in b]
    assert broken == []
    site = demo[1]
    every_page = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    gallery = {p for p in every_page if not p.startswith(DOCS)}
    assert gallery - set(crawl.pages) == set(), "pages no link leads to"
    assert len(crawl.links) > 10


def test_screenshots_of_every_page_are_saved(crawls: dict[str, harness.Crawl]) -> None:
    for page in crawls["http"].pages.values():
        assert page.screenshot is not None and page.screenshot.parent == SCREENSHOTS
        with Image.open(page.screenshot) as shot:
            assert shot.size == harness.WINDOW
            assert len(shot.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 8  # not an empty page


@pytest.mark.skipif(not WITH_DOCS, reason="mkdocs-material is not installed, so the demo site has no docs")
@pytest.mark.parametrize("mode", MODES)
def test_docs_load_without_console_errors_and_resolve_their_links(
    driver: Any, demo: tuple[Path, Path], roots: dict[str, str], mode: str
) -> None:
    crawl = harness.crawl(driver, demo[1], roots[mode], start=DOCS[0] + "index.html")
    assert {p.path: browser_errors(p) for p in crawl.pages.values() if browser_errors(p)} == {}
    assert crawl.broken == []
    assert {"docs/cli.html", "docs/model.html", "docs/paper.html", "docs/tour.html"} <= set(crawl.pages)
    images = [i for p in crawl.pages.values() for i in p.images]
    assert any(i["src"].endswith("img/model.svg") for i in images)
    assert all(i["complete"] and min(i["natural"]) > 0 for i in images)


@pytest.mark.skipif(not WITH_DOCS, reason="mkdocs-material is not installed, so the demo site has no docs")
def test_docs_search_finds_a_flag(driver: Any, roots: dict[str, str]) -> None:
    import time

    from selenium.webdriver.common.by import By

    harness.open_page(driver, roots["http"] + DOCS[0] + "index.html")
    driver.execute_script("document.getElementById('__search').checked = true")  # open the search box
    driver.find_element(By.CSS_SELECTOR, "input.md-search__input").send_keys("torchrun")
    deadline = time.monotonic() + harness.PAGE_TIMEOUT
    found: list[str] = []
    while not found and time.monotonic() < deadline:
        # read in one script: the result list is rebuilt as the index answers, so element handles go stale
        found = driver.execute_script(
            "return Array.from(document.querySelectorAll('.md-search-result__item a')).map(a => a.href)"
        )
        time.sleep(0.1)
    assert any("/docs/training.html" in href for href in found), found


# -- hostile text ----------------------------------------------------------------------------------


def test_no_page_opened_a_dialog(crawls: dict[str, harness.Crawl]) -> None:
    for mode in MODES:
        assert {p.path: p.dialogs for p in crawls[mode].pages.values() if p.dialogs} == {}


@pytest.mark.parametrize("mode", MODES)
def test_hostile_class_name_is_text_not_markup(
    driver: Any, demo: tuple[Path, Path], roots: dict[str, str], mode: str
) -> None:
    from selenium.webdriver.common.by import By

    name = harness.HOSTILE_NAME
    page = class_page(demo[1], harness.HOSTILE_CLASS)

    harness.open_page(driver, roots[mode] + urllib.parse.quote(page))
    assert harness.dialogs(driver) == []
    assert driver.find_element(By.TAG_NAME, "h1").text == name
    assert driver.title.startswith(name + " · ")
    # the <b> and <script> in the name made no element; no inline script holds its text
    assert driver.execute_script("return document.querySelectorAll('main b, main script').length") == 0
    inline = driver.execute_script("return Array.from(document.scripts).filter(s => !s.src).map(s => s.text)")
    assert not any("alert(1)" in text for text in inline)
    labels = [c.get_attribute("aria-label") for c in driver.find_elements(By.CSS_SELECTOR, "#grid canvas")]
    assert labels and all(f"true class {name}:" in label for label in labels)

    harness.open_page(driver, roots[mode] + "classes.html")
    assert harness.dialogs(driver) == []
    link = driver.find_element(By.CSS_SELECTOR, f"a[href='{page}']")
    assert driver.execute_script("return arguments[0].textContent", link) == name
    assert driver.execute_script("return arguments[0].children.length", link) == 0


# -- the epoch slider ------------------------------------------------------------------------------


def test_epoch_slider_redraws_the_maps(driver: Any, demo: tuple[Path, Path], roots: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    run, site = demo
    harness.open_page(driver, roots["http"] + class_page(site, 0))
    before = grid_digests(driver)
    shown = driver.find_element(By.CSS_SELECTOR, "#images .epoch-now").text
    assert shown == str(harness.DEMO_EPOCHS)

    slider = driver.find_element(By.ID, "epoch")
    assert slider.is_displayed()
    slider.send_keys(Keys.ARROW_LEFT)  # from the keyboard: one epoch back
    after = grid_digests(driver)

    assert driver.find_element(By.CSS_SELECTOR, "#images .epoch-now").text == "1"
    changed = sum(a != b for a, b in zip(before, after))
    assert changed == expected_changed_maps(run, 0, 1, harness.DEMO_EPOCHS) > 0


def test_epoch_slider_is_kept_in_the_url(driver: Any, demo: tuple[Path, Path], roots: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    site = demo[1]
    for mode in MODES:
        url = roots[mode] + class_page(site, 0)
        harness.open_page(driver, url)
        driver.find_element(By.ID, "epoch").send_keys(Keys.ARROW_LEFT)
        moved = grid_digests(driver)
        assert urllib.parse.urlsplit(driver.current_url).query == "epoch=1"

        harness.open_page(driver, url + "?epoch=1")  # a shared link opens at its epoch
        assert driver.find_element(By.CSS_SELECTOR, "#images .epoch-now").text == "1"
        assert driver.find_element(By.ID, "epoch").get_attribute("value") == "0"
        assert grid_digests(driver) == moved


def test_the_faithfulness_slider_shows_one_epochs_curves(driver: Any, roots: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    harness.open_page(driver, roots["http"] + "faithfulness.html")

    def shown() -> list[str]:
        return [f.get_attribute("data-epoch-panel") for f in driver.find_elements(By.CSS_SELECTOR, "[data-epoch-panel]")
                if f.is_displayed()]

    assert shown() == [str(harness.DEMO_EPOCHS)]
    driver.find_element(By.ID, "epoch").send_keys(Keys.ARROW_LEFT)
    assert shown() == ["1"] and driver.find_element(By.CSS_SELECTOR, "#curves .epoch-now").text == "1"


# -- the class index -------------------------------------------------------------------------------


def final_top1_by_class(run: Path) -> list[float]:
    """Each class's top-1 accuracy at the last epoch, from the render store's clean unit."""
    from edvis.run import RenderStore, Unit

    store = RenderStore(run / "render")
    labels = np.asarray(store.manifest()["val"]["labels"])
    top1 = store.read(Unit("clean", harness.DEMO_EPOCHS))["top5"][:, 0]
    return [float((top1[labels == c] == c).mean()) for c in range(3)]


def test_class_index_sorts_and_filters(driver: Any, demo: tuple[Path, Path], roots: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By

    names = ["disc", harness.HOSTILE_NAME, "ring"]
    harness.open_page(driver, roots["http"] + "classes.html")
    table = driver.find_element(By.ID, "class-index")

    def shown() -> list[str]:
        return [driver.execute_script("return arguments[0].textContent", r.find_element(By.CSS_SELECTOR, "td.text a"))
                for r in table.find_elements(By.CSS_SELECTOR, "tbody tr") if r.is_displayed()]

    def sort_by(heading: str) -> None:
        head = next(h for h in table.find_elements(By.CSS_SELECTOR, "thead th") if h.text.strip() == heading)
        head.find_element(By.CSS_SELECTOR, "button").click()

    assert shown() == names
    sort_by("Class")
    assert shown() == sorted(names, key=str.lower)  # "<" sorts before letters
    sort_by("Class")
    assert shown() == sorted(names, key=str.lower, reverse=True)
    sort_by("Top-1")  # ascending, ties in class order
    top1 = final_top1_by_class(demo[0])
    assert shown() == [names[c] for c in sorted(range(3), key=lambda c: (top1[c], c))]

    box = driver.find_element(By.ID, "class-filter")
    assert box.is_displayed()
    box.send_keys("ÆRØ")  # non-ASCII letters, any case
    assert shown() == [harness.HOSTILE_NAME]
    assert driver.find_element(By.ID, "class-count").text == "1 of 3 classes"
    box.clear()
    box.send_keys("ring")
    assert shown() == ["ring"]
    box.clear()
    box.send_keys("nothing like it")
    assert shown() == []
    assert driver.find_element(By.ID, "class-count").text == "0 of 3 classes"


# -- the harness itself ----------------------------------------------------------------------------


def test_missing_browser_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    monkeypatch.setattr(harness, "CHROMIUM", Path(sys.executable))  # any executable file
    monkeypatch.setattr(harness, "CHROMEDRIVER", tmp_path / "no-chromedriver")
    reason = harness.missing()
    if reason is not None and "selenium" in reason:
        pytest.skip(reason)
    assert reason == f"{tmp_path / 'no-chromedriver'} not found (apt-get install -y chromium-driver)"
