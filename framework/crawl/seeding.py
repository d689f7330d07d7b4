"""Take a crawl's start requests in batches, as the frontier has room for them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

from framework.crawl.failures import Failures
from framework.errors import CloseSpider
from framework.frontier import Counts
from framework.http import Request
from framework.spider import CallbackResult, Spider, results, unknown_callback

__all__ = ["Seeder"]

_BATCH = 100
#: Start requests wait while this many requests are queued, so an endless start_requests
#: cannot fill memory; they resume below the low mark.
_HIGH, _LOW = 10_000, 5_000


class Seeder:
    """Batch what ``start()`` yields: the spider's start requests, or the ones retried.

    ``counts`` reads the frontier's sizes, for its room; ``close_reason`` is the reason
    the spider gave if ``start_requests`` raised ``CloseSpider``.
    """

    def __init__(
        self,
        start: Callable[[], CallbackResult],
        counts: Callable[[], Counts],
        failures: Failures,
        spider: Spider,
    ) -> None:
        self._start, self._counts, self._failures, self._spider = start, counts, failures, spider
        self._room = asyncio.Event()
        self._stopped = False
        #: Why the spider closed the crawl while starting it (``CloseSpider``), if it did.
        self.close_reason: str | None = None

    async def batches(self) -> AsyncGenerator[list[Request]]:
        """Yield the start requests a batch at a time, waiting for room between batches.

        What start_requests yielded before it raised is kept, as a callback's results are.
        """
        batch: list[Request] = []
        try:
            async for request in results(self._start()):
                if self._stopped:
                    break
                if not isinstance(request, Request):
                    await self._misfit(f"{type(request).__name__}; expected a Request")
                    continue
                if (mistake := unknown_callback(self._spider, request)) is not None:
                    await self._misfit(mistake)
                    continue
                batch.append(request)
                if len(batch) >= _BATCH:
                    yield batch
                    batch = []
                    await self._wait_for_room()
        except CloseSpider as exc:
            self.close_reason = exc.reason
        except Exception as exc:
            await self._failures.spider_error(exc, None, "start_requests")
        if batch:
            yield batch

    def stop(self) -> None:
        """Take no more start requests."""
        self._stopped = True
        self._room.set()

    def claimed(self) -> None:
        """Note that a request was claimed: the queue may have room for more seeds now."""
        if not self._room.is_set() and self._counts().pending < _LOW:
            self._room.set()

    async def _misfit(self, what: str) -> None:
        message = f"spider {self._spider.name}: start_requests yielded {what}"
        await self._failures.report(TypeError(message), "spider_error", None, message)

    async def _wait_for_room(self) -> None:
        """Let workers run, and wait while the frontier is full of unclaimed requests."""
        await asyncio.sleep(0)  # a generator that never awaits must not starve the loop
        while not self._stopped and self._counts().pending >= _HIGH:
            self._room.clear()
            await self._room.wait()
