"""Render pages that need JavaScript in headless Chromium (Playwright), as ordinary responses.

``browser: {render: ["*.example.com"]}`` in a project, or ``Request(render=True)`` in a
spider, and the callback gets what the browser shows, not what the server sent; every
other request is fetched as before. docs/browser.md is the reference.
"""

from __future__ import annotations

from collections.abc import Callable

from framework import FetchLayer, hookimpl

from .layer import BrowserLayer
from .options import BrowserOptions

__all__ = ["BrowserLayer", "Options"]

#: The ``browser:`` section, checked with the project even when no page is rendered.
Options = BrowserOptions


@hookimpl(trylast=True)  # bundled: any installed plugin may override it
def register_fetch_layers(register: Callable[[type[FetchLayer]], None]) -> None:
    """Provide the browser layer."""
    register(BrowserLayer)
