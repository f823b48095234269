"""The dashboard as a browser shows it: Debian's chromium, headless, driven by Playwright over
its DevTools protocol (no browser download). CI installs chromium, so there its absence fails
the test rather than skipping it."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from tests.support import REPO

CHROMIUM = shutil.which("chromium")
# Where the screenshots are written, beside the test run's output.
SCREENSHOTS = REPO / "test-output"


@asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    async with async_playwright() as playwright:
        found = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",  # (CI runs as root)
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield found
        finally:
            await found.close()


async def opened(chromium: Browser, url: str, errors: list[str]) -> Page:
    """A page at `url`, its console errors and uncaught exceptions gathered in `errors`."""
    page = await chromium.new_page(viewport={"width": 1280, "height": 1100})

    def said(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", said)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(url)
    return page


async def counts(page: Page, table: str) -> dict[str, int]:
    """A table of counts on the page (`#by-state`, `#by-compliance`): each row's key and number."""
    rows = page.locator(f"{table} tr")
    return {
        str(await row.get_attribute("data-key")): int(await row.locator("td").nth(1).inner_text())
        for row in await rows.all()
    }


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / name
    await page.screenshot(path=str(path), full_page=True)
    return path
