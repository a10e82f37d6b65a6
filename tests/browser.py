"""Open a page in a real headless browser (Debian's Chromium through Playwright) and report what it saw.

Playwright's own browser download is never used: the browser is the system's /usr/bin/chromium
(`.ci/run` installs it). Without it the browser tests skip, unless SYNTHTUNE_REQUIRE_BROWSER=1
(set by `.ci/run`) makes a missing browser a failure.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("SYNTHTUNE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def require_browser() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("SYNTHTUNE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (SYNTHTUNE_REQUIRE_BROWSER=1)")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")


def open_page(path: Path, screenshot: Path) -> dict:
    """Load a file:// page; returns console errors, failed requests, each image's natural size and the page text."""
    from playwright.sync_api import sync_playwright

    executable = require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors, failed = [], []
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda request: failed.append(request.url[:80]))
            page.goto(Path(path).resolve().as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
            page.screenshot(path=str(screenshot), full_page=True)
            return {"errors": errors, "failed": failed, "images": images, "text": page.inner_text("body")}
        finally:
            browser.close()


def is_blank(png: Path) -> bool:
    """Whether a screenshot is one flat colour (nothing rendered)."""
    from PIL import Image

    image = Image.open(png).convert("L")
    low, high = image.getextrema()
    return high - low < 10
