"""Screenshots of a built site's main pages for the docs' tour.

    python -m tests.browser.screenshots --site site --out docs/img

Serves SITE on 127.0.0.1, opens each main page that exists in headless Chromium (see
``harness``), and writes ``OUT/site-<page>.png``: the top of the page at a fixed viewport size,
reduced to a 256-colour palette to keep the files small. Also fails, naming the page, if a
page logs a console error, so a broken build never ends up in the docs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from . import harness

#: (name, page, id of the element to scroll to) in tour order; pages the site does not have are skipped.
PAGES = [
    ("home", "index.html", None),
    ("classes", "classes.html", None),
    ("class", None, "images"),  # the page of --class-index, at its image grid
    ("galleries", "galleries.html", None),
    ("errors", "errors.html", None),
    ("perturbations", "perturbations.html", None),
    ("perturbation", "perturbations/gray.html", None),
    ("layers", "layers.html", None),
    ("compare", "compare.html", None),
    ("figures", "figures.html", None),
]


def class_page(site: Path, index: int) -> str | None:
    """The path of class ``index``'s page inside ``site``, if it has one."""
    found = sorted((site / "classes").glob(f"{index:03d}-*.html"))
    return found[0].relative_to(site).as_posix() if found else None


def shoot(site: Path, out: Path, class_index: int, window: tuple[int, int], log=print) -> list[Path]:
    """Write one PNG per existing main page of ``site`` into ``out``; returns their paths."""
    if not (site / "index.html").is_file():
        raise FileNotFoundError(f"{site / 'index.html'} not found: build the site first (make site)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with harness.serve(site) as base, harness.browser(window) as driver:
        for name, page, anchor in PAGES:
            page = page or class_page(site, class_index)
            if page is None or not (site / page).is_file():
                continue
            harness.set_viewport(driver, *window)
            harness.open_page(driver, base + page)
            harness.settle_and_measure(driver)  # every lazy image loaded, every canvas drawn
            harness.set_viewport(driver, *window)
            if anchor:
                driver.execute_script("document.getElementById(arguments[0]).scrollIntoView()", anchor)
            harness.settle(driver)
            errors = [e for e in harness.console_errors(driver) if "/favicon.ico " not in e]
            if errors:
                raise RuntimeError(f"{page}: console errors: {errors}")
            shot = harness.screenshot(driver, clip=window)
            path = out / f"site-{name}.png"
            shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
            log(f"screenshots: {page} → {path} ({path.stat().st_size // 1024} KB)")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--site", type=Path, default=Path("site"), help="the built site (default site)")
    p.add_argument("--out", type=Path, default=Path("docs/img"), help="folder for the PNGs (default docs/img)")
    p.add_argument("--class-index", type=int, default=3, help="class whose page is shown (default 3)")
    p.add_argument("--width", type=int, default=1100, help="viewport width in CSS pixels (default 1100)")
    p.add_argument("--height", type=int, default=720, help="viewport height in CSS pixels (default 720)")
    a = p.parse_args(argv)
    try:
        shoot(a.site, a.out, a.class_index, (a.width, a.height))
    except (FileNotFoundError, RuntimeError, harness.BrowserMissing) as e:
        print(f"screenshots: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
