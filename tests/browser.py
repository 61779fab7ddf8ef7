"""Debian's Chromium, headless, driven by Playwright for Python, against the app served over
real HTTP (``devtools.host.LocalHost``) with Azurite and the simulator behind it.

The platform's sign-in is played by the browser context: it sends the principal header App
Service Authentication would add to each request (the app, in local mode, believes it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from devtools.host import LocalHost
from tests.app_harness import App

CHROMIUM = Path(os.environ.get("EXPORTER_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium keeps trying Google's hosts, which this
# machine's closed network refuses; as root it needs --no-sandbox.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SCREENSHOTS = os.environ.get("EXPORTER_SCREENSHOTS")  # a folder: the tests save each main view there


@dataclass
class Site:
    app: App
    host: LocalHost
    browser: Any
    foreign_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    async def page_as(self, who: dict[str, str]) -> Any:
        context = await self.browser.new_context(extra_http_headers=who, viewport={"width": 1100, "height": 760})
        page = await context.new_page()
        origin = urlsplit(self.host.url).netloc
        page.on("request", lambda request: None if urlsplit(request.url).netloc == origin
                else self.foreign_requests.append(request.url))
        page.on("console", lambda message: self.console_errors.append(message.text)
                if message.type == "error" else None)
        page.on("pageerror", lambda error: self.console_errors.append(str(error)))

        async def refuse(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            await dialog.dismiss()
        page.on("dialog", refuse)
        return page

    def url(self, hash_: str = "") -> str:
        return f"{self.host.url}/api/ui{hash_}"


async def screenshot(page: Any, name: str, full_page: bool = False) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=full_page)


@pytest.fixture
async def chromium():
    if not CHROMIUM.exists():
        if os.environ.get("EXPORTER_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield browser
        await browser.close()


@pytest.fixture
async def site(managed: App, chromium: Any):
    host = await LocalHost("function-key", "master-key", poll_seconds=0.05).start()
    yield Site(managed, host, chromium)
    await host.stop()
