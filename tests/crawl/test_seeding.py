"""Start requests reach the frontier as they come: in whole batches when they come fast,
soon after each one when ``start_requests`` waits for the next."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from framework.crawl.failures import Failures
from framework.crawl.seeding import Seeder
from framework.crawl.stats import Stats
from framework.frontier import Counts
from framework.http import Request
from framework.spider import CallbackResult, Spider
from tests.conftest import Serve, crawl, pages, write_project

WAITING = """
import asyncio
from framework import Request, Spider, hookimpl

class Waiting(Spider):
    name = "waiting"

    async def start_requests(self):
        self.fetched = asyncio.Event()
        yield Request(self.start_urls[0] + "first")
        await self.fetched.wait()  # URLs from a queue: the next comes after the first is in
        yield Request(self.start_urls[0] + "second")

    def parse(self, response):
        self.fetched.set()
        yield {"url": response.url}

@hookimpl
def register_spiders(register):
    register(Waiting)
"""


async def test_a_start_request_is_crawled_while_start_requests_waits_for_the_next(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(pages({"/first": "1", "/second": "2"}))
    (tmp_path / "waiting.py").write_text(WAITING, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"spider: waiting\nstart_urls: [{base}/]\nplugins: [./waiting.py]\nrobots: ignore\n",
    )
    async with asyncio.timeout(10):  # held until start_requests ends, it never would
        stats = await crawl(project)
    assert (stats.reason, stats.pages, stats.starts) == ("finished", 2, 2)


async def batch_sizes(start: CallbackResult, handed: asyncio.Event | None = None) -> list[int]:
    """Run a seeder as the engine does; return the size of each batch it hands over,
    setting ``handed`` after the first."""
    failures = Failures(Stats("t"), Spider())
    seeder = Seeder(lambda: start, lambda: Counts(0, 0, 0, 0), failures, Spider())
    sizes = []
    async with asyncio.timeout(5), asyncio.TaskGroup() as tasks:
        tasks.create_task(seeder.pull())
        async for batch in seeder.batches():
            sizes.append(len(batch))
            if handed is not None:
                handed.set()
    return sizes


def requests(n: int) -> Iterable[Request]:
    return (Request(f"http://127.0.0.1/{i}") for i in range(n))


async def test_start_requests_that_come_fast_come_in_whole_batches() -> None:
    assert await batch_sizes(requests(250)) == [100, 100, 50]


async def test_a_batch_is_handed_over_while_start_requests_waits() -> None:
    handed = asyncio.Event()

    async def start() -> AsyncIterator[Request]:
        for request in requests(3):
            yield request
        await handed.wait()  # for the 3 first to be handed over
        for request in requests(150):
            yield request

    assert await batch_sizes(start(), handed) == [3, 100, 50]
