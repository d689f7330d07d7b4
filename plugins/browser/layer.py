"""The fetch layer that renders chosen requests in headless Chromium.

fw fetches the page's document itself, through the layer below (aiohttp: cookies, size
limit, timeout, redirects and status all as for any request); a 2xx HTML document is then
handed to a browser tab as the answer to its navigation, and the tab loads the rest
(scripts, XHR) itself. What the tab shows once ready becomes the response.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from multidict import CIMultiDict

from framework import FetchContext, FetchError, FetchLayer, Request, Response, open_new

from .chromium import Chromium, Setup
from .cookies import CookieSync
from .options import BrowserOptions, PageOptions, page_options
from .render import Deadline, Rendered, render
from .upstream import upstream

__all__ = ["BrowserLayer"]

log = logging.getLogger("fw.browser")

#: Documents a browser renders; anything else (JSON, images, PDFs) is handed over as fetched.
_HTML = ("text/html", "application/xhtml+xml", "")
#: Extra seconds past the render's own deadline before the browser is taken for hung.
_GRACE = 5.0


class BrowserLayer(FetchLayer):
    """Render the requests the project or the spider asks for in headless Chromium."""

    name = "browser"
    Options = BrowserOptions

    async def open(self, context: FetchContext) -> None:
        await super().open(context)
        options: BrowserOptions = self.options
        project = context.project
        own = {name.lower() for name in project.headers} - {"user-agent"}
        setup = Setup(  # the project's own headers: fw's default Accept would override the page's
            user_agent=context.headers.get("User-Agent", ""),
            headers={k: v for k, v in context.headers.items() if k.lower() in own},
            shared=project.cookies,
        )
        self._chromium = Chromium(options, setup)
        self._cookies = CookieSync(context.cookies) if project.cookies else None
        self._slots = asyncio.Semaphore(options.concurrency)
        self._page = options.page()
        self._timeout = options.timeout or project.timeout
        self._files = Path(options.files or project.file.parent / "browser-files")
        self._hosts: dict[str, bool] = {}
        self.rendered = 0
        if options.render:  # pages will be rendered: fail now if no browser can be
            await self._chromium.start()

    async def close(self) -> None:
        chromium = self._chromium
        if chromium.launches:
            relaunched = f"; launched again {chromium.launches - 1} times" * (chromium.launches > 1)
            log.info(
                "browser: %d pages rendered by %s%s", self.rendered, chromium.version, relaunched
            )
        await chromium.close()

    async def fetch(self, request: Request) -> Response:
        if not self._wants(request):
            return await self.context.fetch(request)
        clock = asyncio.get_running_loop().time
        started = clock()
        document = await self.context.fetch(request.replace(render=False))
        if document.latency is None:  # how fast the host is: waiting for a tab is not it
            document.latency = clock() - started
        if not 200 <= document.status < 300 or document.media_type not in _HTML:
            # A redirect, an error page, a PDF: fw handles it as fetched, answering the
            # request as asked (its redirect is rendered too).
            document.request = request
            return document
        options = self._page
        if "browser" in request.meta:
            options = page_options(self._page, request.meta["browser"])
        async with self._slots:
            rendered = await self._render(request, document, options)
        self.rendered += 1
        return await self._response(request, document, rendered)

    def _wants(self, request: Request) -> bool:
        """Render it if the request says so, else if its host matches ``render``."""
        if request.render is not None:
            return request.render
        if not self.options.render:
            return False
        host = (urlsplit(request.url).hostname or "").lower()
        wanted = self._hosts.get(host)
        if wanted is None:
            wanted = any(fnmatchcase(host, pattern) for pattern in self.options.render)
            self._hosts[host] = wanted
        return wanted

    async def _render(self, request: Request, document: Response, options: PageOptions) -> Rendered:
        """Render ``document`` in a tab; a failure is a FetchError naming what went wrong."""
        from playwright.async_api import Error

        chromium = self._chromium
        await chromium.start()  # a relaunch, if it crashed, is not charged to this page
        chromium.pages.add((urlsplit(request.url).hostname or "").lower())
        deadline, page = Deadline(self._timeout), None
        try:
            async with asyncio.timeout(self._timeout + _GRACE):  # a hung browser says nothing
                page = await chromium.page(upstream(request))
                if self._cookies is not None:
                    await self._cookies.to_browser(page.context)
                chromium.documents[page] = document
                rendered = await render(page, request.url, options, deadline)
                if self._cookies is not None:
                    await self._cookies.to_jar(page.context)
        except (TimeoutError, Error) as exc:
            if page is not None:
                chromium.discard(page)
            raise await self._failure(exc, deadline) from exc
        except BaseException:  # cancelled (the crawl cut short), or a bug: not reused
            if page is not None:
                chromium.discard(page)
            raise
        chromium.done(page)
        return rendered

    async def _failure(self, error: Exception, deadline: Deadline) -> FetchError:
        """Name a failed render: the browser crashed or hung, the page timed out, or broke."""
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        chromium = self._chromium
        timed_out = isinstance(error, TimeoutError | PlaywrightTimeout)
        if timed_out and not await chromium.responsive():
            return FetchError(
                "browser_crashed", "Chromium stopped answering; it was killed", retryable=True
            )
        if not chromium.connected:
            return FetchError("browser_crashed", "Chromium crashed or was killed", retryable=True)
        if timed_out:
            return FetchError(
                "render_timeout",
                f"waited {deadline.seconds:g}s for {deadline.waiting_for}",
                retryable=True,
            )
        message = _first_line(error)
        if "crash" in message.lower():
            return FetchError("browser_crashed", f"the tab crashed: {message}", retryable=True)
        return FetchError("render_error", f"while waiting for {deadline.waiting_for}: {message}")

    async def _response(self, request: Request, document: Response, rendered: Rendered) -> Response:
        """The response a callback gets: the rendered HTML, with the document's status."""
        body = rendered.html.encode("utf-8")
        limit = self.context.project.max_response_size
        if len(body) > limit:
            raise FetchError(
                "too_large", f"rendered page larger than max_response_size ({limit} bytes)"
            )
        headers = CIMultiDict(document.headers)
        # Nor do the document's validators describe the page its scripts made: a re-crawl
        # asking "changed since?" by them would miss every change the scripts fetch.
        dropped = (
            "Content-Length",
            "Content-Encoding",
            "Transfer-Encoding",
            "ETag",
            "Last-Modified",
        )
        for name in dropped:
            headers.popall(name, None)
        headers["Content-Type"] = "text/html; charset=utf-8"
        saved = await self._save(request.url, rendered)
        if saved:
            request = request.replace(meta={**request.meta, **saved})
        response = self.context.response(request.url, document.status, headers, body, request)
        response.latency = document.latency
        return response

    async def _save(self, url: str, rendered: Rendered) -> dict[str, str]:
        """Write the screenshot and PDF into ``files``; return their paths by meta key."""
        name = hashlib.sha1(url.encode("utf-8")).hexdigest()
        saved: dict[str, str] = {}
        for key, data, ext in (
            ("screenshot", rendered.screenshot, "png"),
            ("pdf", rendered.pdf, "pdf"),
        ):
            if data is None:
                continue
            path = self._files / f"{name}.{ext}"
            try:
                await asyncio.to_thread(_write, path, data)
            except OSError as exc:
                raise FetchError(
                    "browser_file", f"cannot write the {key} {path}: {exc.strerror or exc}"
                ) from exc
            saved[key] = str(path)
        return saved


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` whole or not at all: under a hidden name, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    try:
        with open_new(part) as file:
            file.write(data)
        part.replace(path)
    except OSError:
        part.unlink(missing_ok=True)
        raise


def _first_line(error: Any) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
