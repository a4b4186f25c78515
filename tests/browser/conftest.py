"""Fixtures of the browser tests: a tiny demo site, a headless Chromium, a local HTTP server."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import harness

#: Where the test run leaves a screenshot of every page (gitignored); $EDVIS_SCREENSHOTS overrides it.
SCREENSHOTS = Path(os.environ.get("EDVIS_SCREENSHOTS", Path(__file__).resolve().parent / "screenshots"))
#: The demo site gets the docs in site/docs (as `make site` does) when mkdocs is installed.
WITH_DOCS = importlib.util.find_spec("mkdocs") is not None
#: Pages under these paths belong to the docs, crawled by their own test, not with the gallery.
DOCS = ("docs/",)


def require_browser() -> None:
    """Skip when Chromium, chromedriver or selenium is missing, or fail if $EDVIS_BROWSER_TESTS=required."""
    reason = harness.missing()
    if reason is None:
        return
    if os.environ.get(harness.REQUIRED_ENV) == "required":
        pytest.fail(f"browser tests are required ({harness.REQUIRED_ENV}=required) but {reason}", pytrace=False)
    pytest.skip(f"browser tests need Chromium and chromedriver: {reason}")


@pytest.fixture(scope="package")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder, site folder) of the tiny demo build with a hostile class name."""
    require_browser()
    return harness.build_demo_site(tmp_path_factory.mktemp("browser-demo"), docs=WITH_DOCS)


@pytest.fixture(scope="package")
def driver(demo: tuple[Path, Path]) -> Iterator[Any]:
    with harness.browser() as d:
        yield d


@pytest.fixture(scope="package")
def base_url(demo: tuple[Path, Path]) -> Iterator[str]:
    """The demo site served over HTTP on 127.0.0.1."""
    with harness.serve(demo[1]) as url:
        yield url


@pytest.fixture(scope="package")
def roots(demo: tuple[Path, Path], base_url: str) -> dict[str, str]:
    """The site's root URL, served (``http``) and opened from disk (``file``)."""
    return {"http": base_url, "file": demo[1].as_uri() + "/"}


@pytest.fixture(scope="package")
def crawls(demo: tuple[Path, Path], driver: Any, roots: dict[str, str]) -> dict[str, harness.Crawl]:
    """The whole gallery crawled once over HTTP (saving a screenshot of each page) and once from file://."""
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    return {
        "http": harness.crawl(driver, demo[1], roots["http"], screenshots=SCREENSHOTS, skip=DOCS),
        "file": harness.crawl(driver, demo[1], roots["file"], skip=DOCS),
    }


def pytest_terminal_summary(terminalreporter: Any) -> None:
    shots = sorted(SCREENSHOTS.glob("*.png")) if SCREENSHOTS.is_dir() else []
    if shots and any("test_screenshots_of_every_page_are_saved" in r.nodeid for r in terminalreporter.stats.get("passed", [])):
        terminalreporter.write_line(f"browser screenshots: {len(shots)} pages in {SCREENSHOTS}")
