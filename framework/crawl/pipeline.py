"""Take items from spider callbacks to the exporters: ``item_scraped``, limits, writes."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from framework.crawl.stats import Stats
from framework.errors import CrawlAborted, DropItem
from framework.exporters import Exporter
from framework.hooks.events import EventHook
from framework.http import Request, Response
from framework.spider import Spider

__all__ = ["ItemPipeline"]

log = logging.getLogger("fw")

#: Told of an item an exporter could not take: the error, its kind, the request, a message.
Report = Callable[[BaseException, str, Request | None, str], Awaitable[None]]


class ItemPipeline:
    """Hand each item to ``item_scraped`` and then to every exporter, up to ``max_items``."""

    def __init__(
        self,
        exporters: Sequence[Exporter],
        item_scraped: EventHook,
        stats: Stats,
        spider: Spider,
        *,
        max_items: int | None,
        report: Report,
        stop: Callable[[str], None],
    ) -> None:
        self._exporters = tuple(exporters)
        self._item_scraped, self._stats, self._spider = item_scraped, stats, spider
        self._limit, self._report, self._stop = max_items, report, stop
        self._taken = 0  # items past the limit check, counted before any await: exact limits

    async def accept(
        self, items: list[dict[str, Any]], response: Response | None
    ) -> list[dict[str, Any]]:
        """Return the items that pass ``item_scraped`` and the ``max_items`` limit.

        ``response`` is None for items of an errback. Accepting is separate from writing
        so that a persistent frontier can write a page's items and acknowledge the page
        in one uninterrupted step.
        """
        accepted = []
        for item in items:
            if self._limit is not None and self._taken >= self._limit:
                break
            self._taken += 1  # before the await: concurrent pages must not pass the limit
            if await self._accepted(item, response):
                accepted.append(item)
            else:
                self._taken -= 1
        if self._limit is not None and self._taken >= self._limit:
            self._stop("max_items reached")
        return accepted

    async def write(self, items: list[dict[str, Any]], request: Request) -> None:
        """Write accepted items to every exporter."""
        for item in items:
            for exporter in self._exporters:
                await self._write(exporter, item, request)
            self._stats.items += 1

    def checkpoint(self) -> dict[str, Any]:
        """Return every exporter's position, by ``format:path``."""
        return {_key(e): e.checkpoint() for e in self._exporters}

    def rewind(self, checkpoints: Mapping[str, Any]) -> None:
        """Cut every exporter back to its position in ``checkpoints``."""
        for exporter in self._exporters:
            if _key(exporter) in checkpoints:
                exporter.rewind(checkpoints[_key(exporter)])

    async def _accepted(self, item: dict[str, Any], response: Response | None) -> bool:
        if not self._item_scraped:
            return True
        try:
            await self._item_scraped(item=item, response=response, spider=self._spider)
        except DropItem as exc:
            self._stats.dropped += 1
            log.debug("item dropped (%s): %s", exc, item)
            return False
        return True

    async def _write(self, exporter: Exporter, item: dict[str, Any], request: Request) -> None:
        """Write one item; a failing disk aborts the crawl, an unwritable item does not."""
        try:
            outcome: Awaitable[None] | None = exporter.write(item)
            if inspect.isawaitable(outcome):
                await outcome
        except BrokenPipeError:
            if exporter.path != "-":
                raise CrawlAborted(
                    f"exporter {exporter.format} ({exporter.path}) failed: Broken pipe"
                ) from None
            # `fw run -o - | head` is done reading: stop quietly, as Unix tools do.
            self._exporters = tuple(e for e in self._exporters if e is not exporter)
            self._stop("stdout closed")
        except OSError as exc:
            raise CrawlAborted(
                f"exporter {exporter.format} ({exporter.path}) failed: {exc.strerror or exc}"
            ) from exc
        except Exception as exc:  # the item itself: a value no exporter can write
            await self._report(
                exc,
                "item_error",
                request,
                f"spider {self._spider.name}: exporter {exporter.format} "
                f"cannot write this item: {type(exc).__name__}: {exc}",
            )


def _key(exporter: Exporter) -> str:
    return f"{exporter.format}:{exporter.path}"
