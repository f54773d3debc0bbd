"""Headless Chromium for the browser tests: Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from stack.config import REPO_ROOT

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"


def chromium_path() -> str:
    """Debian's chromium; installed with apt when missing and running as root."""
    path = shutil.which("chromium")
    if path is None and os.geteuid() == 0:
        install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        if subprocess.run(install, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, check=False)
            subprocess.run(install, capture_output=True, check=False)
        path = shutil.which("chromium")
    if path is None:
        pytest.fail("the browser tests need Debian's chromium: sudo apt-get install -y chromium")
    return path


@contextmanager
def headless_chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser: object, port: int, path: str, ready_text: str) -> object:
    """A new page at `path`, once `ready_text` is visible and no skeleton is left."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page.goto(f"http://127.0.0.1:{port}/{path}", wait_until="domcontentloaded")
    # the first *visible* match: a data grid also keeps its cells as hidden text, and
    # which of the two comes first in the page depends on the order things render
    page.get_by_text(ready_text, exact=False).filter(visible=True).first.wait_for(timeout=45_000)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=30_000
    )
    return page


def screenshot(page: object, shot: str) -> Path:
    page.wait_for_timeout(800)  # type: ignore[attr-defined]  # let charts finish drawing
    target = ARTIFACTS / f"{shot}.png"
    page.screenshot(path=str(target), full_page=True)  # type: ignore[attr-defined]
    page.close()  # type: ignore[attr-defined]
    assert target.stat().st_size > 10_000
    return target
