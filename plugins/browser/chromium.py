"""The crawl's headless Chromium: found, launched when first needed, launched again after a
crash or a hang, with a shared context per proxy whose pages are reused."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from framework import CrawlAborted, Response

from .options import INSTALL, BrowserOptions
from .relay import Relay

if TYPE_CHECKING:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        CDPSession,
        Page,
        Playwright,
        ProxySettings,
        Route,
    )
    from playwright.async_api import Request as BrowserRequest

__all__ = ["Chromium", "find_chromium"]

log = logging.getLogger("fw.browser")

#: Looked for on PATH when no executable_path is set, in this order.
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
#: Seconds a launch, a health check or a close may take before fw gives up on the browser.
_LAUNCH_TIMEOUT, _CHECK_TIMEOUT, _CLOSE_TIMEOUT = 60.0, 5.0, 10.0
#: Pages one tab renders before it is closed: a reused tab's renderer grows by megabytes
#: with every page it loads (155 MB to 273 MB in 30 pages, measured); a new one starts afresh.
_TAB_USES = 20


def find_chromium(configured: str | None) -> str | None:
    """Return the Chromium to launch; None means Playwright's own build."""
    if configured is not None:
        return configured
    return next(filter(None, map(shutil.which, _NAMES)), None)


@dataclass(frozen=True)
class Setup:
    """What every page of the crawl shares: identity, cookies, blocked resources."""

    user_agent: str
    #: The project's headers but their credentials, sent with every request the browser
    #: makes, to any host. The browser's own requests (a page's scripts, images,
    #: ``fetch()`` calls) get no credentials from ``headers:``: a header added to one goes
    #: along its redirects, to whatever host they lead. Cookies are the jar's, per site.
    headers: Mapping[str, str]
    #: Keep one context for the crawl, cookies and all; else a new one per page.
    shared: bool


class Chromium:
    """Launch, share, check and relaunch one headless Chromium.

    ``page()`` hands out a tab, launching the browser if it is not running (first use,
    or after a crash); ``done(page)`` takes it back for reuse, ``discard(page)`` closes it.
    """

    def __init__(self, options: BrowserOptions, setup: Setup) -> None:
        self._options, self._setup = options, setup
        self._blocked = frozenset(options.block)
        self._lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._cdp: CDPSession | None = None
        #: The shared contexts (cookies and cache kept), one per proxy their tabs go through.
        self._contexts: dict[str | None, BrowserContext] = {}
        self._idle: dict[str | None, list[Page]] = {}
        self._uses: dict[Page, int] = {}
        self._proxies: dict[Page, str | None] = {}
        self._relays: dict[str, Relay] = {}
        self._relay_urls: dict[str, asyncio.Future[str]] = {}
        self._pid: int | None = None
        #: The answer each tab's next navigation gets: the document fw fetched.
        self.documents: dict[Page, Response] = {}
        self.launches = 0
        self.version = ""

    # -- the browser ------------------------------------------------------------------------

    async def start(self) -> None:
        """Launch the browser now, if it does not run."""
        await self._running()

    async def _running(self) -> Browser:
        async with self._lock:
            if self._browser is None or not self._browser.is_connected():
                await self._drop()
                self._browser = await self._launch()
            return self._browser

    async def _launch(self) -> Browser:
        try:
            from playwright.async_api import Error, async_playwright
        except ImportError:
            raise CrawlAborted(
                "browser: Playwright is not installed: pip install 'fwcrawl[browser]'"
            ) from None
        if self._playwright is None:
            self._playwright = await async_playwright().start()
        executable = find_chromium(self._options.executable_path)
        try:
            browser = await self._playwright.chromium.launch(
                executable_path=executable,
                headless=True,
                args=["--disable-dev-shm-usage", *self._options.args],
                timeout=_LAUNCH_TIMEOUT * 1000,
            )
        except Error as exc:
            raise _no_launch(executable, exc) from exc
        self.launches += 1
        if self.launches > 1:
            log.warning("browser: Chromium was gone (crashed, killed or hung); launched again")
        self.version = browser.version
        self._cdp = await browser.new_browser_cdp_session()
        self._pid = await _browser_pid(self._cdp)
        return browser

    async def responsive(self) -> bool:
        """Tell whether the browser still answers; a hung one is killed, to be relaunched."""
        cdp = self._cdp
        if cdp is None or self._browser is None or not self._browser.is_connected():
            return False
        try:
            await asyncio.wait_for(cdp.send("Browser.getVersion"), _CHECK_TIMEOUT)
        except Exception:
            log.warning("browser: Chromium stopped answering; killing it")
            self._kill()
            return False
        return True

    def _kill(self) -> None:
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self._pid, signal.SIGKILL)

    async def _drop(self) -> None:
        """Let go of a browser that is gone or going; its pages went with it."""
        self._idle.clear()
        self._uses.clear()
        self._proxies.clear()
        self._contexts.clear()
        self.documents.clear()
        self._cdp = None
        browser, self._browser = self._browser, None
        if browser is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(browser.close(), _CLOSE_TIMEOUT)

    async def close(self) -> None:
        """Close the browser and Playwright."""
        async with self._lock:
            browser = self._browser
            if browser is not None and browser.is_connected():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(browser.close(), _CLOSE_TIMEOUT)
            await self._drop()
            for relay in self._relays.values():
                await relay.close()
            playwright, self._playwright = self._playwright, None
            if playwright is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(playwright.stop(), _CLOSE_TIMEOUT)

    @property
    def connected(self) -> bool:
        """Whether the browser runs."""
        return self._browser is not None and self._browser.is_connected()

    # -- tabs -------------------------------------------------------------------------------

    async def page(self, proxy: str | None = None) -> Page:
        """Return a tab whose own requests go through ``proxy`` (a proxy's URL, or None
        for none): an idle one of the shared context for that proxy, or a new one."""
        browser = await self._running()
        idle = self._idle.get(proxy, [])
        while idle:
            page = idle.pop()
            if not page.is_closed():
                return page
        if not self._setup.shared:
            return await (await self._new_context(browser, proxy)).new_page()
        async with self._lock:  # one shared context per proxy, however many tabs open at once
            if proxy not in self._contexts:
                self._contexts[proxy] = await self._new_context(browser, proxy)
            context = self._contexts[proxy]
        page = await context.new_page()
        self._proxies[page] = proxy
        return page

    def done(self, page: Page) -> None:
        """Take a tab back to reuse it (a tab of its own context is closed instead)."""
        self.documents.pop(page, None)
        uses = self._uses[page] = self._uses.get(page, 0) + 1
        proxy = self._proxies.get(page)
        shared = self._contexts.get(proxy) is page.context
        # Never more idle than may render at once, however many proxies they went through.
        room = sum(map(len, self._idle.values())) < self._options.concurrency
        if shared and room and uses < _TAB_USES and not page.is_closed():
            self._idle.setdefault(proxy, []).append(page)
        else:
            self.discard(page)

    def discard(self, page: Page) -> None:
        """Close a tab that failed or is used up, in the background: a hung one may take a
        while."""
        self.documents.pop(page, None)
        self._uses.pop(page, None)
        self._proxies.pop(page, None)
        task = asyncio.ensure_future(_close_tab(page, not self._setup.shared))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _new_context(self, browser: Browser, proxy: str | None) -> BrowserContext:
        context = await browser.new_context(
            user_agent=self._setup.user_agent,
            extra_http_headers=dict(self._setup.headers),
            proxy=None if proxy is None else await self._relayed(proxy),
        )
        await context.route("**/*", self._route)
        return context

    async def _relayed(self, proxy: str) -> ProxySettings:
        """The context's proxy: a relay to ``proxy`` that holds its credentials."""
        if proxy not in self._relays:  # started once, however many tabs ask at once
            relay = self._relays[proxy] = Relay(proxy)
            self._relay_urls[proxy] = asyncio.ensure_future(relay.start())
        # Loopback too, as fw's own requests: Chromium would go to 127.0.0.1 directly.
        return {"server": await self._relay_urls[proxy], "bypass": "<-loopback>"}

    async def _route(self, route: Route, request: BrowserRequest) -> None:
        """Answer a tab's navigation with the document fw fetched; block unwanted types."""
        try:
            if request.resource_type in self._blocked:
                await route.abort("blockedbyclient")
            elif not _is_page_load(request):
                await route.continue_()
            elif document := self.documents.pop(request.frame.page, None):
                await route.fulfill(
                    status=document.status, headers=_served(document.headers), body=document.body
                )
            else:  # a script navigating away: fw fetches pages itself, politely, or not at all
                await route.fulfill(status=204)  # which browsers do not navigate to
        except Exception as exc:  # the tab closed meanwhile: nobody waits for the answer
            log.debug("browser: routing %s: %s", request.url, exc)


def _is_page_load(request: BrowserRequest) -> bool:
    """Whether ``request`` loads a tab's document (not a frame's, not a resource)."""
    return request.is_navigation_request() and request.frame.parent_frame is None


def _served(headers: Mapping[str, str]) -> dict[str, str]:
    """The document's headers as the browser should see them: the body is decoded."""
    dropped = {"content-length", "content-encoding", "transfer-encoding", "set-cookie"}
    return {name: value for name, value in headers.items() if name.lower() not in dropped}


async def _close_tab(page: Page, with_context: bool) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(page.close(run_before_unload=False), _CLOSE_TIMEOUT)
        if with_context:
            await asyncio.wait_for(page.context.close(), _CLOSE_TIMEOUT)


async def _browser_pid(cdp: CDPSession) -> int | None:
    """The browser process's id, to kill it if it hangs."""
    info: Any = await cdp.send("SystemInfo.getProcessInfo")
    return next((p["id"] for p in info["processInfo"] if p["type"] == "browser"), None)


def _no_launch(executable: str | None, error: Exception) -> CrawlAborted:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if executable is None:
        return CrawlAborted(f"browser: no Chromium found ({first}); {INSTALL}")
    return CrawlAborted(f"browser: cannot launch {executable}: {first}")
