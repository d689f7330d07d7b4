"""Take each item through the item steps and the ``item_scraped`` hooks, to be exported.

The steps come from the ``item_step`` hook, in the order pluggy calls it; each may await
(a download through ``Downloads``), transform the item, or reject it: ``InvalidItem`` is
an ``item_invalid`` failure (counted, logged with its field and reason, its page listed
in the failures file), ``DropItem`` a quiet drop. Items of one page go through their
steps concurrently, so that a page of twenty films waits for twenty posters at once.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from framework.crawl.failures import Failures
from framework.crawl.stats import Stats
from framework.errors import DropItem, InvalidItem, reportable
from framework.hooks.events import EventHook
from framework.http import Request, Response
from framework.items import Fetch, ItemContext, ItemStep, Report, snapshot
from framework.spider import Spider

__all__ = ["NamedStep", "Pipeline", "Refused"]

log = logging.getLogger("fw")

Item = dict[str, Any]
#: A step and the plugin that provided it, named in its errors.
NamedStep = tuple[str, ItemStep]


class Refused(enum.Enum):
    """Why an item is not exported: a step or hook dropped it (``DropItem``, on purpose),
    or it is invalid (``InvalidItem``: a failure of its page)."""

    DROPPED = "dropped"
    INVALID = "invalid"


class Pipeline:
    """Run items through the steps, then ``item_scraped``; ``Refused`` for an item not to
    export."""

    def __init__(
        self,
        steps: Sequence[NamedStep],
        item_scraped: EventHook,
        failures: Failures,
        stats: Stats,
        spider: Spider,
        fetch: Fetch | None = None,
    ) -> None:
        self._steps, self._item_scraped = tuple(steps), item_scraped
        self._failures, self._stats, self._spider = failures, stats, spider
        self._fetch = fetch or _no_downloads

    def __bool__(self) -> bool:
        """Whether items have anything to go through."""
        return bool(self._steps or self._item_scraped)

    async def each(
        self, items: list[Item], request: Request, response: Response | None
    ) -> list[Item | Refused]:
        """Run every item of one page; return each one's outcome, in order."""
        if not self._steps or len(items) < 2:
            return [await self.run(item, request, response) for item in items]
        try:
            async with asyncio.TaskGroup() as group:
                runs = [group.create_task(self.run(i, request, response)) for i in items]
        except BaseExceptionGroup as failed:  # a crawl-ending error: raise it as it was
            raise _first(failed) from None
        return [run.result() for run in runs]

    async def run(self, item: Item, request: Request, response: Response | None) -> Item | Refused:
        """Take one item through every step and ``item_scraped``; say why if refused."""
        try:
            if self._steps:
                context = ItemContext(
                    self._spider, request, response, self._fetch, self._reporter(request)
                )
                item = await self._stepped(item, context)
            if self._item_scraped:
                await self._item_scraped(item=item, response=response, spider=self._spider)
        except InvalidItem as exc:
            await self._invalid(exc, request)
            return Refused.INVALID
        except DropItem as exc:
            self._stats.dropped += 1
            log.debug("item dropped (%s): %s", exc, item)
            return Refused.DROPPED
        return item

    async def _stepped(self, item: Item, context: ItemContext) -> Item:
        for plugin, step in self._steps:
            try:  # on a copy: a step that fails half-way leaves the item as it was
                result: Any = step.process(snapshot(item), context)
                if inspect.isawaitable(result):
                    result = await result
            except DropItem:
                raise
            except BaseException as exc:  # the step's bug: the item goes on as it was
                if not reportable(exc):
                    raise
                await self._failures.plugin_failed(
                    plugin, f"{type(step).__name__}.process", exc, {"request": context.request}
                )
                continue
            if isinstance(result, Mapping):
                item = result if isinstance(result, dict) else dict(result)
            else:
                error = TypeError(f"returned {type(result).__name__}, not the item (a dict)")
                await self._failures.plugin_failed(
                    plugin, f"{type(step).__name__}.process", error, {"request": context.request}
                )
        return item

    def _reporter(self, request: Request) -> Report:
        async def report(kind: str, message: str, error: BaseException) -> None:
            await self._failures.report(error, kind, request, message)

        return report

    async def _invalid(self, exc: InvalidItem, request: Request) -> None:
        where = f"field {exc.field}: " if exc.field else ""
        message = f"spider {self._spider.name}: item not exported: {where}{exc.reason}"
        # Listed: once the spider or the site is fixed, --retry-failed fetches the page again.
        await self._failures.report(exc, "item_invalid", request, message, listed=True)

    def close(self) -> None:
        """Tell every step the crawl is over; a step that raises is logged and counted."""
        for plugin, step in self._steps:
            try:
                step.close()
            except BaseException as exc:
                if not reportable(exc):
                    raise
                self._stats.errors["plugin_error"] += 1
                log.error(
                    "plugin_error: plugin '%s': %s.close raised %s: %s",
                    plugin,
                    type(step).__name__,
                    type(exc).__name__,
                    exc,
                )


async def _no_downloads(request: Request, *, max_size: int | None = None) -> Response:
    raise RuntimeError("this crawl was built without downloads for item steps")


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
