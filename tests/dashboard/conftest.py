"""Fixtures of the dashboard's tests: a real server with seeded studies, a dashboard
reading it, and headless Chromium (Debian's, driven by Playwright; it downloads nothing)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.seeding import seed
from tunewire.dashboard.cli import RunningDashboard, run_in_background
from tunewire.dashboard.settings import DashboardSettings
from tunewire.server.app import RunningServer
from tunewire.server.app import run_in_background as run_server

CHROMIUM = os.environ.get("TUNEWIRE_CHROMIUM", "/usr/bin/chromium")
# Without the networking flags Chromium's own background connections are refused on a
# closed network, and it waits on them.
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


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server on a SQLite file with the studies of `seeding.seed`."""
    folder = tmp_path_factory.mktemp("dashboard")
    server = run_server(f"sqlite:///{folder / 'seeded.db'}")
    try:
        seed(server.target)
        yield server
    finally:
        server.stop(0)


@pytest.fixture(scope="module")
def dashboard(seeded: RunningServer) -> Iterator[RunningDashboard]:
    running = run_in_background(DashboardSettings(server=seeded.target, port=0, poll_seconds=0.5))
    try:
        yield running
    finally:
        running.stop()


def browser_missing() -> str | None:
    """None when Playwright and Chromium are here, else what to install."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return (
            "Playwright is not installed (pip install playwright; it must not download a browser)"
        )
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium is not at {CHROMIUM} (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium; skipped with the reason when it is missing here (never in CI)."""
    missing = browser_missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page that records dialogs (an XSS probe that ran would open one) and script errors."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.dialogs = []
    tab.errors = []
    tab.on("dialog", lambda d: (tab.dialogs.append(d.message), d.dismiss()))
    tab.on("pageerror", lambda e: tab.errors.append(str(e)))
    try:
        yield tab
    finally:
        context.close()


def screenshot_folder(tmp_path: Path) -> Path:
    """Where screenshots go: TUNEWIRE_DASHBOARD_SCREENSHOTS (e.g. docs) or the test's folder."""
    return Path(os.environ.get("TUNEWIRE_DASHBOARD_SCREENSHOTS") or tmp_path)
