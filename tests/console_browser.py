"""Headless Chromium (Debian's ``chromium``, driven by Playwright) for the console's tests and screenshots.

Playwright cannot download its own browsers here, so it launches the system's. Without one the console
tests skip locally and fail in CI (``OPENASSISTANTS_TEST_REQUIRE_POSTGRES`` set), as the sandbox tests
do without bubblewrap.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY_STORAGE = "openassistants.apiKey"


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    """The browser's path; skips the calling module without one (fails in CI, which installs it)."""
    path = chromium_path()
    if path is None:
        if os.environ.get("OPENASSISTANTS_TEST_REQUIRE_POSTGRES"):  # set in CI, where .ci/run installs it
            raise RuntimeError("chromium is required in CI for the console's browser tests")
        pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)
    return path


@asynccontextmanager
async def launched_chromium(executable: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


async def new_context(
    browser: Browser,
    base_url: str,
    api_key: str | None,
    *,
    color_scheme: str = "light",
    viewport: tuple[int, int] = (1280, 860),
) -> BrowserContext:
    """A fresh profile (empty storage); with ``api_key``, the key is stored before the page's scripts run,
    as if the user had entered it earlier."""
    context = await browser.new_context(
        base_url=base_url,
        color_scheme=color_scheme,  # type: ignore[arg-type]
        viewport={"width": viewport[0], "height": viewport[1]},
        accept_downloads=True,
    )
    if api_key is not None:
        await context.add_init_script(
            f"if (!sessionStorage.getItem('seeded')) {{ localStorage.setItem({json.dumps(KEY_STORAGE)}, "
            f"{json.dumps(api_key)}); sessionStorage.setItem('seeded', '1'); }}"
        )
    return context


class PageErrors:
    """Uncaught exceptions and console errors of a page: a console that throws fails its test."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on(
            "console",
            lambda message: (
                self.errors.append(f"console.{message.type}: {message.text}")
                if message.type == "error" and "401" not in message.text
                else None
            ),
        )

    def assert_none(self) -> None:
        assert not self.errors, "the page reported errors:\n" + "\n".join(self.errors)
