"""Middlewares: aiohttp-style wrappers around every fetch."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from framework.errors import CrawlAborted, FetchError, IgnoreRequest, Unchanged, reportable
from framework.http import Parser, Request, Response

if TYPE_CHECKING:
    from framework.config.project import Project

__all__ = ["Handler", "Middleware", "chain", "checked_answer", "opened", "plugin_failure"]

#: The rest of the chain: fetches a request and returns its response.
Handler = Callable[[Request], Awaitable[Response]]
#: Finds the parser registered for a media type.
ParserFor = Callable[[str], Parser | None]


class Middleware:
    """Subclass this, set ``name`` and write ``async __call__(request, handler)``.

    ``await handler(request)`` runs the rest of the chain and the fetch; a middleware may
    pass a changed request (``request.replace(...)``), return a response without calling
    the handler, raise ``IgnoreRequest`` (drop the request), or raise ``Unchanged`` (the
    page is as it was: no callback, its earlier links followed). Each attempt of a retried
    request passes through the chain again, and so does robots.txt (its request's meta
    has ``"robots.txt": True``). ``options`` is the middleware's section of the project
    file. Its methods marked ``@hookimpl`` are event hooks, called for its own crawl.

    A response the middleware makes itself gets the parser registered for its media type,
    as a downloaded one does; made with ``cached=True`` it stands for an answer that did
    not use the network (a cache hit), for which fw neither waits the host's delay nor
    learns the host's speed. ``open`` and ``close`` bracket each crawl. What it counts
    reaches ``--stats`` and the summary through ``stats()`` and ``summary()`` (by default,
    what ``counts`` holds); raising ``CrawlAborted`` stops the crawl with exit 1.
    """

    #: The section of the project file that configures this middleware.
    name: ClassVar[str] = ""
    #: A frozen dataclass describing that section, or None.
    Options: ClassVar[type[Any] | None] = None

    def __init__(self, options: Any = None) -> None:
        self.options = options
        #: What the middleware counted, by name: by default the summary shows a line
        #: ``<name>: 3 hits, 1 misses`` (in insertion order, zeros too) once one is not
        #: zero, and ``--stats`` has ``plugins: {<name>: {...}}``.
        self.counts: Counter[str] = Counter()

    @property
    def active(self) -> bool:
        """Whether this crawl needs the middleware; one that answers False (its section is
        not set, say) is left out of the chain, so that it costs no page anything."""
        return True

    async def open(self, project: Project) -> None:
        """Prepare for a crawl of ``project``, before its first request (may open files).

        An exception stops the crawl before it starts (exit 1), naming the middleware.
        """

    async def close(self) -> None:
        """Release what ``open`` took, after the crawl's last request, however it ended."""

    async def __call__(self, request: Request, handler: Handler) -> Response:
        """Handle one request; the default passes it on unchanged."""
        return await handler(request)

    def stats(self) -> Mapping[str, Any] | None:
        """Return what this middleware counted, JSON-ready, or None to add nothing.

        Read when the crawl ends: ``--stats`` shows it as ``plugins.<name>``. The default
        is ``counts``, if anything was counted.
        """
        return dict(self.counts) if any(self.counts.values()) else None

    def summary(self) -> Sequence[str]:
        """Return lines to add to the summary printed when the crawl ends; the default is
        one line of ``counts``, if anything was counted."""
        if not any(self.counts.values()):
            return ()
        return [f"{self.name}: " + ", ".join(f"{n} {what}" for what, n in self.counts.items())]


def chain(
    middlewares: Sequence[Middleware], fetch: Handler, parser_for: ParserFor | None = None
) -> Handler:
    """Wrap ``fetch`` so that ``middlewares[0]`` is the outermost.

    ``parser_for`` gives a response a middleware made without a parser its media type's.
    """
    if not middlewares:
        return fetch
    handler: Handler = partial(end_of_chain, fetch)
    for middleware in reversed(middlewares):
        handler = partial(_guarded, middleware, handler=handler, parser_for=parser_for)
    return handler


@contextlib.asynccontextmanager
async def opened(middlewares: Sequence[Middleware], project: Project) -> AsyncIterator[None]:
    """Open every middleware for a crawl of ``project``; close them after it, last first.

    A middleware that fails to open or close aborts the crawl (``CrawlAborted``), named.
    """
    async with contextlib.AsyncExitStack() as stack:
        for middleware in middlewares:
            await _call(middleware, "open", project)
            stack.push_async_callback(_call, middleware, "close")
        yield


async def _call(middleware: Middleware, what: str, *args: Any) -> None:
    try:
        await getattr(middleware, what)(*args)
    except CrawlAborted:
        raise
    except BaseException as exc:
        if not reportable(exc):
            raise
        raise CrawlAborted(
            f"middleware '{middleware.name}' failed to {what}: {type(exc).__name__}: {exc}"
        ) from exc


async def end_of_chain(fetch: Handler, request: Request) -> Response:
    """Fetch ``request`` behind the middlewares: a frame of its own, which tells the stall
    watchdog that the code holding the loop is the fetcher's, not a middleware's."""
    return await fetch(request)


async def _guarded(
    middleware: Middleware, request: Request, handler: Handler, parser_for: ParserFor | None
) -> Response:
    """Run one middleware; a bug in it fails this request, named, instead of the crawl."""
    who = f"middleware '{middleware.name}'"
    try:
        response = checked_answer(who, await middleware(request, handler))
    except (FetchError, IgnoreRequest, Unchanged, CrawlAborted):  # the last: a full --record
        raise
    except BaseException as exc:
        if not reportable(exc):
            raise
        raise plugin_failure(who, exc) from exc
    if parser_for is not None and not response.parseable:  # made by the middleware
        response.parse_with(parser_for(response.media_type))
    return response


def checked_answer(who: str, answer: object) -> Response:
    """Pass on what plugin code (``who``: a middleware, a fetch layer) answered a request
    with, if it is a Response; anything else fails the request as a ``plugin_error``."""
    if not isinstance(answer, Response):
        raise FetchError("plugin_error", f"{who} returned {type(answer).__name__}, not a Response")
    return answer


def plugin_failure(who: str, exc: BaseException) -> FetchError:
    """The failure of a request whose plugin code (``who``) raised ``exc``: the request
    fails, named, instead of the crawl."""
    return FetchError("plugin_error", f"{who} raised {type(exc).__name__}: {exc}")
