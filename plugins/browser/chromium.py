"""The crawl's headless Chromium: found, launched when first needed, launched again after a
crash or a hang, with a shared context per proxy whose pages are reused."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections import OrderedDict
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from framework import CrawlAborted, Response

from .options import INSTALL, BrowserOptions
from .relay import Relay
from .upstream import Upstream, browser_environment

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
#: Proxies whose shared contexts (their cache, their idle tabs) are kept: past them, the
#: least recently used one no tab renders in is closed.
_CONTEXTS = 8


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
        #: Chromium's checks on pages reaching local addresses are off (``args``): a relay
        #: connecting to a site itself, where Chromium cannot check, lets them through too.
        self._local = bool(_CHECKS_OFF & _disabled_features(options.args))
        #: The hosts of the pages rendered: their own resources may be on a local address.
        self.pages: set[str] = set()
        self._lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._cdp: CDPSession | None = None
        #: The shared contexts (cookies and cache kept), one per proxy their tabs' own
        #: requests go through, the least recently used first.
        self._contexts: OrderedDict[Upstream | None, BrowserContext] = OrderedDict()
        self._idle: dict[Upstream | None, list[Page]] = {}
        self._uses: dict[Page, int] = {}
        self._upstreams: dict[Page, Upstream | None] = {}  # of each open tab
        self._lent: set[Page] = set()  # the tabs rendering now
        self._relays: dict[BrowserContext, Relay] = {}  # of each context with a proxy
        self._closing: set[asyncio.Task[None]] = set()  # tabs and contexts closing
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
                # WebRTC's UDP would go around every proxy, telling the site this
                # machine's address: a page's own traffic leaves through its proxy or not at all.
                args=[
                    "--disable-dev-shm-usage",
                    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
                    *self._options.args,
                ],
                env=browser_environment(),  # proxies reach it through relays, by context
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
        self._upstreams.clear()
        self._lent.clear()
        self._contexts.clear()
        self.documents.clear()
        self._cdp = None
        browser, self._browser = self._browser, None
        if browser is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(browser.close(), _CLOSE_TIMEOUT)
        relays, self._relays = list(self._relays.values()), {}
        for relay in relays:
            await relay.close()

    async def close(self) -> None:
        """Close the browser and Playwright, once the tabs closing have; a browser that
        does not close in time (hung) is killed, or it would outlive fw."""
        await asyncio.gather(*self._closing, return_exceptions=True)  # each has a timeout
        async with self._lock:
            browser = self._browser
            if browser is not None and browser.is_connected():
                try:
                    await asyncio.wait_for(browser.close(), _CLOSE_TIMEOUT)
                except BaseException as exc:  # hung, or fw quits meanwhile
                    self._kill()
                    if not isinstance(exc, Exception):
                        raise
            await self._drop()
            playwright, self._playwright = self._playwright, None
            if playwright is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(playwright.stop(), _CLOSE_TIMEOUT)

    @property
    def connected(self) -> bool:
        """Whether the browser runs."""
        return self._browser is not None and self._browser.is_connected()

    # -- tabs -------------------------------------------------------------------------------

    async def page(self, proxy: Upstream | None = None) -> Page:
        """Return a tab whose own requests go through ``proxy``: an idle one of the shared
        context for that proxy, or a new one."""
        browser = await self._running()
        page = self._reused(proxy) or await self._new_page(browser, proxy)
        if proxy in self._contexts:  # the most recently used now, the last to be closed
            self._contexts.move_to_end(proxy)
        self._lent.add(page)
        return page

    def _reused(self, proxy: Upstream | None) -> Page | None:
        idle = self._idle.get(proxy, [])
        while idle:
            page = idle.pop()
            if not page.is_closed():
                return page
        return None

    async def _new_page(self, browser: Browser, proxy: Upstream | None) -> Page:
        if not self._setup.shared:
            page = await (await self._new_context(browser, proxy)).new_page()
        else:
            async with self._lock:  # one shared context per proxy, however many tabs open
                context = self._contexts.get(proxy)
                if context is None:
                    context = self._contexts[proxy] = await self._new_context(browser, proxy)
                    self._evict(keep=proxy)
                page = await context.new_page()  # before another eviction could close it
        self._upstreams[page] = proxy
        # A popup (window.open) is no page fw asked for: left open, each would hold its
        # memory for as long as the context lives.
        page.on("popup", self._close_popup)
        return page

    def _close_popup(self, popup: Page) -> None:
        self._background(self._close_tab(popup, with_context=False))

    def _evict(self, keep: Upstream | None) -> None:
        """Close the least recently used shared contexts past ``_CONTEXTS`` that no tab
        renders in: a rotating pool of many proxies must not keep a context for each."""
        busy = {self._upstreams.get(page) for page in self._lent} | {keep}
        for proxy in [p for p in self._contexts if p not in busy]:
            if len(self._contexts) <= _CONTEXTS:
                return
            context = self._contexts.pop(proxy)
            for page in self._idle.pop(proxy, []):
                self._uses.pop(page, None)
                self._upstreams.pop(page, None)
            self._background(self._close_context(context))

    def done(self, page: Page) -> None:
        """Take a tab back to reuse it (a tab of its own context is closed instead)."""
        self.documents.pop(page, None)
        self._lent.discard(page)
        uses = self._uses[page] = self._uses.get(page, 0) + 1
        proxy = self._upstreams.get(page)
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
        self._lent.discard(page)
        self._uses.pop(page, None)
        self._upstreams.pop(page, None)
        self._background(self._close_tab(page, with_context=not self._setup.shared))

    async def _new_context(self, browser: Browser, proxy: Upstream | None) -> BrowserContext:
        """A context whose tabs' own requests go through ``proxy``, by a relay of its own."""
        relay = None if proxy is None else Relay(proxy.url, local=self._local, pages=self.pages)
        try:
            settings: ProxySettings | None = None
            if relay is not None:  # loopback hosts too, as fw's own requests: the relay says
                settings = {"server": await relay.start(), "bypass": "<-loopback>"}
            context = await browser.new_context(
                user_agent=self._setup.user_agent,
                extra_http_headers=dict(self._setup.headers),
                proxy=settings,
                accept_downloads=False,  # a page's download bypasses max_response_size
            )
        except BaseException:
            if relay is not None:
                await relay.close()
            raise
        if relay is not None:
            self._relays[context] = relay
        await context.route("**/*", self._route)
        return context

    async def _close_tab(self, page: Page, *, with_context: bool) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(page.close(run_before_unload=False), _CLOSE_TIMEOUT)
        if with_context:
            await self._close_context(page.context)

    async def _close_context(self, context: BrowserContext) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(context.close(), _CLOSE_TIMEOUT)
        if (relay := self._relays.pop(context, None)) is not None:
            await relay.close()

    def _background(self, closing: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(closing)
        self._closing.add(task)
        task.add_done_callback(self._closed)

    def _closed(self, task: asyncio.Task[None]) -> None:
        self._closing.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.debug("browser: closing a tab: %s", error)

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


#: Chromium's features whose absence lets pages reach local addresses.
_CHECKS_OFF = frozenset({"LocalNetworkAccessChecks", "BlockInsecurePrivateNetworkRequests"})


def _disabled_features(args: Sequence[str]) -> set[str]:
    """The features ``--disable-features=A,B`` switches off, over all such arguments."""
    found: set[str] = set()
    for arg in args:
        name, _, value = arg.partition("=")
        if name == "--disable-features":
            found.update(feature.strip() for feature in value.split(","))
    return found


def _is_page_load(request: BrowserRequest) -> bool:
    """Whether ``request`` loads a tab's document (not a frame's, not a resource)."""
    return request.is_navigation_request() and request.frame.parent_frame is None


def _served(headers: Mapping[str, str]) -> dict[str, str]:
    """The document's headers as the browser should see them: the body is decoded."""
    dropped = {"content-length", "content-encoding", "transfer-encoding", "set-cookie"}
    return {name: value for name, value in headers.items() if name.lower() not in dropped}


async def _browser_pid(cdp: CDPSession) -> int | None:
    """The browser process's id, to kill it if it hangs."""
    info: Any = await cdp.send("SystemInfo.getProcessInfo")
    return next((p["id"] for p in info["processInfo"] if p["type"] == "browser"), None)


def _no_launch(executable: str | None, error: Exception) -> CrawlAborted:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if executable is None:
        return CrawlAborted(f"browser: no Chromium found ({first}); {INSTALL}")
    return CrawlAborted(f"browser: cannot launch {executable}: {first}")
