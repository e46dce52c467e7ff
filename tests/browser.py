"""Debian's headless Chromium driven by Playwright, for the tests of the pages the gateway
serves (the dashboard, the API reference). Never ``playwright install``: no browser download."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# No internet here: without the background-networking flags Chromium keeps trying to reach
# Google's services, and the refused connections pile up.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
UI_TIMEOUT_MS = 30_000


@contextmanager
def chromium() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: apt-get install -y chromium (never `playwright install`)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def collect_problems(page: Page) -> list[str]:
    """A list that fills with the page's uncaught errors and console errors, for the test to
    assert empty at the end. Responses with an error status (a 400 a test provokes) are logged
    as "Failed to load resource"; anything else logged as an error (a CSP refusal, a script
    error) is a bug."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on("console", lambda message: problems.append(f"console: {message.text}")
            if message.type == "error" and "Failed to load resource" not in message.text
            else None)
    return problems


@contextmanager
def checked_page(browser: Browser, base_url: str, **options: Any) -> Iterator[Page]:
    """A page of a new browser context on ``base_url`` (more context ``options`` as given),
    failing the test, once the page is closed, for any error it logged."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1360, "height": 900},
                                  **options)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    problems = collect_problems(page)
    yield page
    context.close()
    assert not problems, problems

