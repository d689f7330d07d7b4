"""The ``browser:`` section of a project file, and a request's own ``meta["browser"]``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from framework import FetchError, FwError, option
from framework.config import KeyPath, Source, build, convert

__all__ = ["INSTALL", "BrowserOptions", "PageOptions", "Step", "page_options"]

#: What a page waits for before it counts as loaded (Playwright's ``wait_until``).
LoadState = Literal["commit", "domcontentloaded", "load", "networkidle"]
#: Playwright's resource types that ``block`` may name.
Resource = Literal[
    "document",
    "stylesheet",
    "image",
    "media",
    "font",
    "script",
    "texttrack",
    "xhr",
    "fetch",
    "eventsource",
    "websocket",
    "manifest",
    "other",
]

#: A page action and the type of its argument.
_STEPS: Mapping[str, Any] = {
    "click": str,  # a CSS selector
    "wait_for": str,  # a CSS selector
    "scroll": int,  # times
    "wait": float,  # seconds
    "evaluate": str,  # JavaScript, awaited if it returns a promise
}


@dataclass(frozen=True)
class Step:
    """One page action: ``kind`` is click, wait_for, scroll, wait or evaluate."""

    kind: str
    value: Any


def _steps(raw: Any, source: Source, path: KeyPath) -> tuple[Step, ...]:
    """Read ``[{click: button.more}, {scroll: 3}, ...]``, one action per mapping."""
    if not isinstance(raw, list):
        raise source.error(path, "expected a list of actions such as [{click: button.more}]")
    return tuple(_step(item, source, (*path, i)) for i, item in enumerate(raw))


def _step(raw: Any, source: Source, at: KeyPath) -> Step:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise source.error(at, f"expected one action as a mapping, one of: {', '.join(_STEPS)}")
    ((kind, value),) = raw.items()
    if kind not in _STEPS:
        raise source.error((*at, str(kind)), f"unknown action; one of: {', '.join(_STEPS)}")
    value = convert(_STEPS[kind], value, source, (*at, kind))
    if isinstance(value, int | float) and value < 0:
        raise source.error((*at, kind), f"must be at least 0, got {value}")
    return Step(kind, value)


def _folder(raw: Any, source: Source, path: KeyPath) -> str | None:
    """A folder relative to the project file."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        raise source.error(path, "expected a folder")
    return os.path.abspath(source.file.parent / raw)  # noqa: PTH100


def _executable(raw: Any, source: Source, path: KeyPath) -> str | None:
    """An executable file, relative to the project file."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        raise source.error(path, "expected the path of a Chromium executable")
    found = Path(source.file.parent, raw).expanduser()
    if not found.is_file() or not os.access(found, os.X_OK):
        raise source.error(path, f"{found} is not an executable file: {INSTALL}")
    return str(found)


def _pattern(pattern: str) -> str:
    if not pattern or "/" in pattern:
        raise ValueError(f"{pattern!r} is not a host pattern such as *.example.com")
    return pattern.lower()


#: What to do when no browser is found: said by errors at check time and at launch.
INSTALL = (
    "install Chromium (Debian/Ubuntu: apt-get install chromium), or Playwright's own "
    "(playwright install chromium), or set browser.executable_path"
)


@dataclass(frozen=True)
class PageOptions:
    """How one page is rendered: what to wait for, what to do on it, what to keep of it.

    These keys may also be given for one request in ``meta["browser"]``.
    """

    wait_until: LoadState = option(
        "load",
        doc="The load state a page must reach: commit, domcontentloaded, load (every "
        "resource the page had when it was parsed), networkidle (no request for 0.5 s).",
    )
    wait_for: str | None = option(
        None, doc="A CSS selector that must be on the page before it is taken."
    )
    actions: tuple[Step, ...] = option(
        (),
        doc="Page actions, in order, after the wait: {click: SELECTOR}, {wait_for: "
        "SELECTOR}, {scroll: N}, {wait: SECONDS}, {evaluate: JAVASCRIPT}.",
        parse=_steps,
    )
    scroll: int = option(
        0,
        doc="Scroll to the bottom this many times after the actions, each time waiting up "
        "to scroll_wait for the page to grow (infinite scroll); stops early when it does not.",
        minimum=0,
        maximum=10_000,
    )
    scroll_wait: float = option(
        2.0, doc="Seconds one scroll waits for the page to grow.", minimum=0
    )
    wait: float = option(
        0.0, doc="Seconds to wait at the end, before the page is taken.", minimum=0
    )
    screenshot: bool = option(
        False,
        doc="Save a full-page PNG of each rendered page in browser.files; its path is in "
        "response.meta['screenshot'].",
    )
    pdf: bool = option(
        False,
        doc="Save a PDF of each rendered page in browser.files; its path is in "
        "response.meta['pdf'].",
    )


@dataclass(frozen=True)
class BrowserOptions(PageOptions):
    """The ``browser:`` section: which pages are rendered, and by what."""

    render: tuple[str, ...] = option(
        (),
        doc="Hosts whose pages are rendered, by pattern as under domains (movie.example.com, "
        "*.example.com, * for every host); Request(render=True/False) decides for one request.",
        each=_pattern,
    )
    timeout: float | None = option(
        None,
        doc="Seconds rendering one page may take after its document arrived, waits and "
        "actions included; default: the project's timeout.",
        minimum=0.001,
    )
    block: tuple[Resource, ...] = option(
        ("image", "font", "media"),
        doc="Resource types the browser does not load; [] loads everything.",
    )
    concurrency: int = option(
        4, doc="Pages rendering at once (each holds a browser tab).", minimum=1, maximum=256
    )
    executable_path: str | None = option(
        None,
        doc="The Chromium to run; default: chromium, chromium-browser or google-chrome on "
        "PATH, else Playwright's own (playwright install chromium).",
        parse=_executable,
    )
    args: tuple[str, ...] = option((), doc="Extra Chromium command-line switches.")
    files: str | None = option(
        None,
        doc="Folder for screenshots and PDFs (relative to the project file), named by the "
        "SHA-1 of the page's URL; default: browser-files beside the project file.",
        parse=_folder,
    )

    def page(self) -> PageOptions:
        """The page options alone."""
        return PageOptions(**{f.name: getattr(self, f.name) for f in fields(PageOptions)})


def page_options(base: PageOptions, meta: Any) -> PageOptions:
    """Apply a request's ``meta["browser"]`` to the project's page options.

    A bad value fails the request (``invalid_meta``), naming the key.
    """
    if not isinstance(meta, Mapping):
        raise FetchError("invalid_meta", "meta['browser'] must be a mapping of page options")
    source = Source(Path("meta['browser']"), {})
    raw = {f.name: _raw(getattr(base, f.name)) for f in fields(PageOptions)} | dict(meta)
    try:
        return build(PageOptions, raw, source)
    except FwError as exc:
        raise FetchError("invalid_meta", str(exc).removeprefix("meta['browser']:1: ")) from None


def _raw(value: Any) -> Any:
    """Turn a built value back into what YAML would hold, to build it again."""
    if isinstance(value, tuple):
        return [{step.kind: step.value} for step in value]
    return value
