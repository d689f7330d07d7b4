"""The item pipeline: the steps an item takes between the spider and the exporters.

A plugin adds a step by returning an ``ItemStep`` from the ``item_step`` hook, once per
crawl. Each item a callback yields goes through every step in turn, then through the
``item_scraped`` hooks, and only then to the exporters; its page is acknowledged only
once all of them are done with it, so a crawl killed while a step waits loses nothing
(a persistent frontier gives the page back, and its items are made again).
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from framework.http import Request, Response
    from framework.spider import Spider

__all__ = ["Fetch", "ItemContext", "ItemStep", "Report", "snapshot"]

Item = dict[str, Any]

#: Values that cannot change after they are yielded: kept as they are, not copied.
_UNCHANGING = frozenset({str, int, float, bool, bytes, type(None)})


def snapshot(item: Item) -> Item:
    """Return a copy of ``item`` as it is now, with the lists and dicts in it copied too.

    An item is exported once its callback has finished: one that yields a dict (or a list
    inside it) and then changes it must not change what it yielded before; a plugin that
    fails half-way through changing an item must leave it as it was.
    """
    copied = dict(item)
    for key, value in copied.items():
        if type(value) not in _UNCHANGING:
            copied[key] = _copy_of(value)
    return copied


def _copy_of(value: object) -> object:
    try:
        return copy.deepcopy(value)
    except Exception:  # a value nothing can copy (a generator): the exporters judge it as is
        return value


class Fetch(Protocol):
    """How a step downloads: ``await context.fetch(request, max_size=...)``."""

    async def __call__(self, request: Request, *, max_size: int | None = None) -> Response:
        """Fetch ``request`` as the crawl fetches pages and return its 2xx response.

        The request waits in a queue of the crawl's downloads until its host may be
        visited (per-host concurrency, delay, rate, robots.txt ``Crawl-delay`` and
        throttling, as for pages), then goes through robots.txt, the middlewares and the
        downloader; redirects are followed to any host and failures retried with backoff.
        It does not count against ``max_pages``, nor is it checked against
        ``allowed_domains`` (files often live on another host). ``max_size`` replaces
        ``max_response_size`` for this body.

        Raises ``FetchError`` once it failed for good; the failure is counted by its kind
        (``http_404``, ``timeout``, ``too_large``, ``robots``) and logged with the URL.
        """


class Report(Protocol):
    """How a step counts a failure of its own: ``await context.report(kind, message, error)``."""

    async def __call__(self, kind: str, message: str, error: BaseException) -> None:
        """Count a failure of ``kind`` in the summary and ``--stats``, log ``message``
        with the item's URL, and tell the ``crawl_error`` hooks; the item goes on."""


@dataclass(frozen=True)
class ItemContext:
    """What a step knows about an item besides the item itself."""

    spider: Spider
    #: The request whose callback (or errback) yielded the item.
    request: Request
    #: Its response; None for an item of an errback.
    response: Response | None
    #: Download something for the item (see ``Fetch``); the item's page waits for it.
    fetch: Fetch
    #: Count a failure the step met without rejecting the item (see ``Report``).
    report: Report


class ItemStep:
    """Subclass this and write ``process(item, context)``; ``item_step`` returns one per crawl.

    fw calls ``columns`` once before the exporters open, ``process`` for each item (it may
    be ``async def``; items of one page go through it concurrently), and ``close`` once
    when the crawl ends, however it ended.
    """

    def columns(self, columns: list[str] | None) -> list[str] | None:
        """Return the fields items have after this step, in order, given those before it.

        ``None`` means "not known up front"; fw gives the result of the last step to the
        exporters (``Exporter.columns``), so that a CSV header lists every field from the
        first row. The default keeps what came before.
        """
        return columns

    def process(self, item: Item, context: ItemContext) -> Item | Awaitable[Item]:
        """Return the item to pass on: ``item`` changed in place, or a new dict.

        Raise ``InvalidItem(reason, field=...)`` to reject it as breaking its schema
        (counted ``item_invalid``, logged, its page listed in the failures file), or
        ``DropItem`` to leave it out quietly (counted as dropped). Any other exception is
        the step's bug: reported as ``plugin_error``, and the item goes on as it was.
        """
        return item

    def close(self) -> None:
        """Finish: the crawl's last item has gone through (say what the step did)."""
