"""The console in a real browser: Debian's chromium driven by Playwright, launched once.

Playwright cannot download its own browsers here, so the suite drives the system's chromium.
Without it the suite is skipped on a developer's machine (so `make test` passes on a fresh
clone with only Python and make) and fails loudly in CI, where a skip would hide a regression.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
MISSING = (
    f"browser tests need chromium at {CHROMIUM}: sudo apt-get install -y chromium (Debian),"
    " or the chromium package of your distribution"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        metavar="DIR",
        default=None,
        help="write the console's screenshots here (default: a temporary directory);"
        " `pytest tests/browser --screenshots docs/screenshots` makes the README's",
    )


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def chromium_or_skip() -> Path:
    """The browser's path; a skip without it, or a failure in CI (never skipped there)."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if in_ci():
        pytest.fail(f"CI=true and {MISSING} (.ci/run installs it)", pytrace=False)
    pytest.skip(MISSING)


# Package scope, not session: between calls the sync API leaves its event loop marked as
# running in the main thread, so it must be gone before the rest of the suite (which calls
# asyncio.run) runs. The package is the whole browser suite, so chromium still starts once.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    executable = chromium_or_skip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable))
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def screenshots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = request.config.getoption("screenshots", default=None)
    directory = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(autouse=True)
def _clean_tables() -> None:
    """Replaces the suite's per-test truncation: one live console and its incident serve a
    whole module (building the incident takes seconds), which cleans up once at its end."""
