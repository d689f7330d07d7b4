"""Fetch layers: plugins that fetch some requests themselves, such as a headless browser.

A layer sits between the middlewares and fw's downloader, inside ``--record`` and
``--replay``: what it answers is recorded and replayed like any response, and robots.txt,
politeness, retries and the frontier treat its requests like every other. It is opened
with the crawl and closed with it, and it is handed what a fetcher needs: the layer below
(in the end, the downloader), the crawl's cookie jar and a way to build responses that
``css()``/``xpath()`` can query.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, ClassVar

from aiohttp.abc import AbstractCookieJar
from multidict import CIMultiDict, CIMultiDictProxy

from framework.config.project import Project
from framework.errors import CrawlAborted, FetchError, reportable
from framework.fetch.credentials import without_credentials
from framework.fetch.downloader import DEFAULT_HEADERS, Downloader, Fetcher
from framework.fetch.parsers import Parsers
from framework.http import Request, Response, media_type
from framework.middleware import Handler, checked_answer, plugin_failure

__all__ = ["FetchContext", "FetchLayer", "Layered", "layered"]

log = logging.getLogger("fw")


@dataclass(frozen=True)
class FetchContext:
    """What a fetch layer works with, handed to ``FetchLayer.open``."""

    #: The layer below: ``await fetch(request)`` fetches a request as fw would without
    #: this layer (in the end, over aiohttp; no redirects followed).
    fetch: Handler
    #: The crawl's cookie jar, which the downloader reads and fills (aiohttp's).
    cookies: AbstractCookieJar
    #: The validated project: ``timeout``, ``headers``, ``max_response_size``, ``cookies``.
    project: Project
    parsers: Parsers
    #: What fw sends with every request to any host: its defaults (``User-Agent``) and the
    #: project's headers less their credentials, which fw adds per host to its own requests.
    headers: Mapping[str, str]

    def response(
        self, url: str, status: int, headers: Mapping[str, str], body: bytes, request: Request
    ) -> Response:
        """Build the response to ``request``, parsed by the parser for its Content-Type."""
        parser = self.parsers.for_type(media_type(headers))
        return Response(url, status, headers, body, request, parser)


class FetchLayer:
    """Subclass this, set ``name`` and write ``fetch(request)``; register it with
    ``register_fetch_layers``.

    ``open(context)`` runs when the crawl opens its fetcher (launch what you need there)
    and ``close()`` when it closes it; ``fetch`` answers a request itself or passes it on
    with ``await self.context.fetch(request)``. Raise ``FetchError(kind, message,
    retryable=...)`` for a failure: it is retried, counted and listed like a network
    error. ``options`` is the layer's section of the project file.
    """

    #: The section of the project file that configures this layer.
    name: ClassVar[str] = ""
    #: A frozen dataclass describing that section, or None.
    Options: ClassVar[type[Any] | None] = None

    def __init__(self, options: Any = None) -> None:
        self.options = options
        self._context: FetchContext | None = None

    @property
    def context(self) -> FetchContext:
        """What ``open`` was given."""
        assert self._context is not None, f"fetch layer '{self.name}' is not open"
        return self._context

    async def open(self, context: FetchContext) -> None:
        """Get ready to fetch; the default keeps ``context``. Call it from an override."""
        self._context = context

    async def fetch(self, request: Request) -> Response:
        """Answer ``request``; the default passes it to the layer below."""
        return await self.context.fetch(request)

    async def close(self) -> None:
        """Release what ``open`` took; called once the crawl is done with fetching."""


def layered(
    downloader: Downloader, layers: Sequence[FetchLayer], project: Project, parsers: Parsers
) -> Fetcher:
    """Put ``layers`` above ``downloader``, if there are any."""
    return Layered(downloader, layers, project, parsers) if layers else downloader


class Layered:
    """A fetcher: the downloader below fetch layers, opened and closed together."""

    def __init__(
        self,
        downloader: Downloader,
        layers: Sequence[FetchLayer],
        project: Project,
        parsers: Parsers,
    ) -> None:
        self._downloader, self._layers = downloader, tuple(layers)
        self._project, self._parsers = project, parsers
        self._stack = AsyncExitStack()
        self._fetch: Handler = downloader.fetch

    async def __aenter__(self) -> Layered:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self._downloader)
            fetch: Handler = self._downloader.fetch
            for layer in reversed(self._layers):  # the first registered is the outermost
                jar, project = self._downloader.cookies, self._project
                context = FetchContext(fetch, jar, project, self._parsers, _headers(project))
                await _open(layer, context)
                stack.push_async_callback(_close, layer)
                fetch = partial(_guarded, layer)
            self._fetch = fetch
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def fetch(self, request: Request) -> Response:
        """Fetch ``request`` through the layers."""
        return await self._fetch(request)


def _headers(project: Project) -> Mapping[str, str]:
    headers = CIMultiDict(DEFAULT_HEADERS)
    headers.update(without_credentials(project.headers) or {})
    return CIMultiDictProxy(headers)


async def _open(layer: FetchLayer, context: FetchContext) -> None:
    try:
        await layer.open(context)
    except (CrawlAborted, FetchError):
        raise
    except BaseException as exc:
        if not reportable(exc):
            raise
        raise CrawlAborted(
            f"fetch layer '{layer.name}' failed to open: {type(exc).__name__}: {exc}"
        ) from exc


async def _close(layer: FetchLayer) -> None:
    try:
        await layer.close()
    except BaseException as exc:  # nothing of the crawl's is lost: its pages are settled
        if not reportable(exc):
            raise
        log.warning("fetch layer '%s' failed to close: %s: %s", layer.name, type(exc).__name__, exc)


async def _guarded(layer: FetchLayer, request: Request) -> Response:
    """Run one layer; a bug in it fails this request, named, instead of the crawl."""
    who = f"fetch layer '{layer.name}'"
    try:
        return checked_answer(who, await layer.fetch(request))
    except (FetchError, CrawlAborted):
        raise
    except BaseException as exc:
        if not reportable(exc):
            raise
        raise plugin_failure(who, exc) from exc
