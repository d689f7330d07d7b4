"""The browser plugin's tests need a real Chromium: found here once, or loudly skipped.

Where none is installed the tests skip, and the run ends with a line saying so and what
to install. With ``FW_REQUIRE_BROWSER=1`` (``.ci/run`` sets it) a missing Chromium or
Playwright fails them instead: CI must never pass without rendering a page.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import pytest
from fwcrawl_plugins.browser.chromium import find_chromium

_MISSING: list[str] = []


def chromium_problem() -> str | None:
    """Say why the browser tests cannot run here, or None if they can."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install -e '.[test]')"
    if find_chromium(None) is None:
        return "no Chromium on PATH (apt-get install chromium)"
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium the browser plugin will run; skip (or fail in CI) without one."""
    problem = chromium_problem()
    if problem is None:
        found = find_chromium(None)
        assert found is not None
        return found
    if os.environ.get("FW_REQUIRE_BROWSER") == "1":
        pytest.fail(f"FW_REQUIRE_BROWSER=1 and {problem}", pytrace=False)
    _MISSING.append(problem)
    pytest.skip(f"BROWSER TESTS NOT RUN: {problem}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _MISSING:
        terminalreporter.write_sep(
            "!", f"the browser plugin was NOT tested: {_MISSING[0]}", red=True, bold=True
        )
