"""Middlewares: aiohttp-style wrappers around every fetch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, ClassVar

from framework.errors import CrawlAborted, FetchError, IgnoreRequest
from framework.http import Request, Response

__all__ = ["Handler", "Middleware", "chain"]

#: The rest of the chain: fetches a request and returns its response.
Handler = Callable[[Request], Awaitable[Response]]


class Middleware:
    """Subclass this, set ``name`` and write ``async __call__(request, handler)``.

    ``await handler(request)`` runs the rest of the chain and the fetch; a middleware may
    pass a changed request (``request.replace(...)``), return a response without calling
    the handler, or raise ``IgnoreRequest``. Each attempt of a retried request passes
    through the chain again. ``options`` is the middleware's section of the project file.
    """

    #: The section of the project file that configures this middleware.
    name: ClassVar[str] = ""
    #: A frozen dataclass describing that section, or None.
    Options: ClassVar[type[Any] | None] = None

    def __init__(self, options: Any = None) -> None:
        self.options = options

    async def __call__(self, request: Request, handler: Handler) -> Response:
        """Handle one request; the default passes it on unchanged."""
        return await handler(request)


def chain(middlewares: Sequence[Middleware], fetch: Handler) -> Handler:
    """Wrap ``fetch`` so that ``middlewares[0]`` is the outermost."""
    if not middlewares:
        return fetch
    handler: Handler = partial(end_of_chain, fetch)
    for middleware in reversed(middlewares):
        handler = partial(_guarded, middleware, handler=handler)
    return handler


async def end_of_chain(fetch: Handler, request: Request) -> Response:
    """Fetch ``request`` behind the middlewares: a frame of its own, which tells the stall
    watchdog that the code holding the loop is the fetcher's, not a middleware's."""
    return await fetch(request)


async def _guarded(middleware: Middleware, request: Request, handler: Handler) -> Response:
    """Run one middleware; a bug in it fails this request, named, instead of the crawl."""
    try:
        response = await middleware(request, handler)
    except (FetchError, IgnoreRequest, CrawlAborted):  # the last from below: a full --record
        raise
    except Exception as exc:
        raise FetchError(
            "plugin_error", f"middleware '{middleware.name}' raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(response, Response):
        raise FetchError(
            "plugin_error",
            f"middleware '{middleware.name}' returned {type(response).__name__}, not a Response",
        )
    return response
