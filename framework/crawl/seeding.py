"""Feed a crawl's start requests to the frontier in batches, as room allows."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from framework.crawl.reports import Reporter
from framework.errors import CloseSpider
from framework.frontier import Frontier
from framework.http import Request
from framework.spider import CallbackResult, results

__all__ = ["Seeder"]

_BATCH = 100
#: Start requests wait while this many requests are queued, so an endless start_requests
#: cannot fill memory; they resume below the low mark.
_HIGH, _LOW = 10_000, 5_000

#: Filters requests and adds them to the frontier (the engine's ``_schedule``).
Schedule = Callable[[Sequence[Request]], Awaitable[None]]


class Seeder:
    """Schedule what ``start()`` yields: the spider's start requests, or the ones retried."""

    def __init__(
        self,
        start: Callable[[], CallbackResult],
        schedule: Schedule,
        frontier: Frontier,
        reporter: Reporter,
        *,
        spider: str,
        close: Callable[[str], None],
    ) -> None:
        self._start, self._schedule, self._frontier = start, schedule, frontier
        self._reporter, self._spider, self._close = reporter, spider, close
        self._room = asyncio.Event()
        self._stopped = False

    async def run(self) -> None:
        """Schedule every start request; ``CloseSpider`` from the spider stops the crawl.

        What start_requests yielded before it raised is kept, as a callback's results are.
        """
        batch: list[Request] = []
        try:
            await self._take(batch)
        except CloseSpider as exc:
            self._close(f"closed by spider: {exc.reason}")
        except Exception as exc:
            await self._reporter.spider_error(exc, None, "start_requests")
        await self._schedule(batch)

    def stop(self) -> None:
        """Take no more start requests."""
        self._stopped = True
        self._room.set()

    def claimed(self) -> None:
        """Note that a request was claimed: the queue may have room for more seeds now."""
        if not self._room.is_set() and self._frontier.counts().pending < _LOW:
            self._room.set()

    async def _take(self, batch: list[Request]) -> None:
        """Schedule the start requests, full batches at a time; ``batch`` keeps the rest."""
        async for request in results(self._start()):
            if self._stopped:
                break
            if not isinstance(request, Request):
                await self._reporter.report(
                    TypeError(),
                    "spider_error",
                    None,
                    f"spider {self._spider}: start_requests yielded "
                    f"{type(request).__name__}; expected a Request",
                )
                continue
            batch.append(request)
            if len(batch) >= _BATCH:
                await self._schedule(batch)
                batch.clear()
                await self._wait_for_room()

    async def _wait_for_room(self) -> None:
        """Let workers run, and wait while the frontier is full of unclaimed requests."""
        await asyncio.sleep(0)  # a generator that never awaits must not starve the loop
        while not self._stopped and self._frontier.counts().pending >= _HIGH:
            self._room.clear()
            await self._room.wait()
