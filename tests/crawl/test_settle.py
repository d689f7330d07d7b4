"""The settle path: pages that finish together are written and settled in one step.

A real SQLite frontier and a real JSON-lines export; the frontier is told to lose one
lease, as a Redis lease that expired while its page was handled would be.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fwcrawl_plugins.exporters.jsonl import JsonLinesExporter

from framework.crawl.failures import Failures
from framework.crawl.pipeline import Pipeline
from framework.crawl.settle import Settler
from framework.crawl.stats import Stats
from framework.fetch.politeness import HostPolicy, Politeness
from framework.frontier import Frontier, Lease, LeaseLost, Saved, Settlement
from framework.frontier.memory import MemoryFrontier
from framework.frontier.sqlite import SqliteFrontier
from framework.hooks.events import EventHook
from framework.http import Request
from framework.spider import Spider


class Losing(SqliteFrontier):
    """Record each settle's batch, and answer that the lease of ``lost`` URLs was lost."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, Politeness(HostPolicy(100, 0.0), {}))
        self.lost: set[str] = set()
        self.batches: list[list[str]] = []
        self.checkpoints: list[Mapping[str, Any] | None] = []
        #: The positions stored with no page: where the exports began.
        self.opening: list[Mapping[str, Any] | None] = []

    async def settle(
        self, settlements: Sequence[Settlement], checkpoint: Mapping[str, Any] | None = None
    ) -> list[list[Request] | None]:
        if not settlements:
            self.opening.append(checkpoint)
            return await super().settle(settlements, checkpoint)
        self.batches.append([s.lease.request.url for s in settlements])
        self.checkpoints.append(checkpoint)
        found = await super().settle(settlements, checkpoint)
        return [
            None if s.lease.request.url in self.lost else new
            for s, new in zip(settlements, found, strict=True)
        ]


class Crawl:
    """A frontier, an export and a running settler, as the runner wires them."""

    def __init__(self, folder: Path) -> None:
        self.frontier = Losing(folder / "crawl.db")
        self.export = JsonLinesExporter(str(folder / "items.jsonl"))
        self.stats = Stats("test")
        self.committer = self.settler(self.frontier)

    def settler(self, frontier: Frontier, max_items: int | None = None) -> Settler:
        return Settler(
            frontier,
            [self.export],
            Pipeline(
                (),
                EventHook("item_scraped", [], _never),
                Failures(self.stats, Spider()),
                self.stats,
                Spider(),
            ),
            Failures(self.stats, Spider()),
            self.stats,
            Spider(),
            max_items=max_items,
        )

    def open(self, stack: AsyncExitStack) -> None:
        self.committer.open(stack, Saved())

    async def leases(self, *paths: str) -> list[Lease]:
        await self.frontier.add([Request(f"http://a.test/{path}") for path in paths])
        leases = [await self.frontier.claim() for _ in paths]
        assert all(isinstance(lease, Lease) for lease in leases)
        return leases  # type: ignore[return-value]

    def exported(self) -> list[str]:
        return [
            json.loads(line)["page"] for line in Path(self.export.path).read_text().splitlines()
        ]


async def _never(*args: Any) -> None:
    raise AssertionError(f"nothing should be reported: {args}")


@pytest.fixture
async def crawl(tmp_path: Path) -> AsyncIterator[Crawl]:
    crawl = Crawl(tmp_path)
    await crawl.frontier.open()
    async with AsyncExitStack() as exports:
        crawl.open(exports)
        await crawl.committer.began()
        running = asyncio.create_task(crawl.committer.run())
        yield crawl
        crawl.committer.close()
        await asyncio.wait_for(running, 5)
    await crawl.frontier.close()


def page(lease: Lease, items: int = 1) -> tuple[Settlement, list[dict[str, Any]]]:
    url = lease.request.url
    return Settlement(lease, [Request(url + "/next")]), [{"page": url}] * items


async def test_pages_finished_together_are_settled_in_one_step(crawl: Crawl) -> None:
    leases = await crawl.leases("1", "2", "3")
    found = await asyncio.gather(*(crawl.committer.commit(*page(lease)) for lease in leases))
    assert crawl.frontier.batches == [[lease.request.url for lease in leases]]
    assert [[r.url for r in new] for new in found] == [[f"http://a.test/{n}/next"] for n in "123"]
    assert crawl.exported() == [lease.request.url for lease in leases]
    # The positions stored with the settle are the export's end, where a resume cuts back to.
    assert crawl.frontier.checkpoints == [
        {f"jsonl:{crawl.export.path}": Path(crawl.export.path).stat().st_size, "": False}
    ]


async def test_a_page_settled_alone_waits_for_no_one(crawl: Crawl) -> None:
    (lease,) = await crawl.leases("1")
    await asyncio.wait_for(crawl.committer.commit(*page(lease)), 5)
    assert crawl.frontier.batches == [["http://a.test/1"]]


async def test_a_lost_lease_in_a_batch_takes_only_its_own_items_out(crawl: Crawl) -> None:
    first, lost, last = await crawl.leases("1", "2", "3")
    crawl.frontier.lost = {lost.request.url}
    outcomes = await asyncio.gather(
        *(crawl.committer.commit(*page(lease, items=2)) for lease in (first, lost, last)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], LeaseLost)
    assert not isinstance(outcomes[0], BaseException)
    assert not isinstance(outcomes[2], BaseException)
    assert len(crawl.frontier.batches) == 1
    assert crawl.exported() == [first.request.url] * 2 + [last.request.url] * 2
    assert crawl.stats.items == 4
    # The positions stored included the lost items: the next settle stores them anew.
    (next_one,) = await crawl.leases("4")
    await crawl.committer.commit(Settlement(next_one), [])
    assert crawl.frontier.checkpoints[-1] == {
        f"jsonl:{crawl.export.path}": Path(crawl.export.path).stat().st_size,
        "": False,  # open: a crawl killed now has its exports closed by the next run
    }


async def test_where_the_exports_begin_is_stored_before_the_first_page(crawl: Crawl) -> None:
    # A crawl killed while writing its first page resumes cut back to this, not appending.
    [one] = await crawl.leases("1")
    await crawl.committer.commit(*page(one))
    assert crawl.frontier.opening == [{f"jsonl:{crawl.export.path}": 0, "": False}]
    assert crawl.frontier.batches == [["http://a.test/1"]]


async def test_a_settle_that_carries_no_new_items_stores_no_positions_again(crawl: Crawl) -> None:
    one, two = await crawl.leases("1", "2")
    await crawl.committer.commit(*page(one))
    await crawl.committer.commit(Settlement(two), [])
    assert crawl.frontier.checkpoints[0] is not None
    assert crawl.frontier.checkpoints[1] is None


async def test_close_lets_queued_pages_be_settled_first(tmp_path: Path) -> None:
    crawl = Crawl(tmp_path)
    await crawl.frontier.open()
    async with AsyncExitStack() as exports:
        crawl.open(exports)
        leases = await crawl.leases("1", "2")
        commits = [asyncio.create_task(crawl.committer.commit(*page(lease))) for lease in leases]
        crawl.committer.close()
        # Tasks start in the order they were made: both pages are queued before run() starts.
        await asyncio.wait_for(crawl.committer.run(), 5)
        assert [len(found) for found in await asyncio.gather(*commits)] == [1, 1]
    assert crawl.exported() == [lease.request.url for lease in leases]
    await crawl.frontier.close()


async def test_a_memory_frontiers_pages_are_batched_too(tmp_path: Path) -> None:
    class Recording(MemoryFrontier):
        batches: ClassVar[list[int]] = []

        async def settle(
            self, settlements: Sequence[Settlement], checkpoint: Mapping[str, Any] | None = None
        ) -> list[list[Request] | None]:
            self.batches.append(len(settlements))
            assert checkpoint is None or checkpoint == {}  # it stores no positions
            return await super().settle(settlements, checkpoint)

    crawl, frontier = Crawl(tmp_path), Recording(Politeness(HostPolicy(100, 0.0), {}))
    crawl.committer = crawl.settler(frontier)
    await frontier.add([Request(f"http://a.test/{n}") for n in range(3)])
    leases = [await frontier.claim() for _ in range(3)]
    async with AsyncExitStack() as exports:
        crawl.open(exports)
        await crawl.committer.began()
        running = asyncio.create_task(crawl.committer.run())
        await asyncio.gather(
            *(crawl.committer.commit(*page(lease)) for lease in leases if isinstance(lease, Lease))
        )
        crawl.committer.close()
        await asyncio.wait_for(running, 5)
    assert Recording.batches == [3]
    assert len(crawl.exported()) == 3


async def test_max_items_on_a_resumable_crawl_takes_whole_pages_only(crawl: Crawl) -> None:
    settler = crawl.settler(crawl.frontier, max_items=2)
    request = Request("http://a.test/")

    def items(n: int) -> list[dict[str, Any]]:
        return [{"n": i} for i in range(n)]

    assert await settler.accept(items(3), None, request=request) == (
        items(3),
        False,
    )  # a run's first
    assert settler.stop_reason == "max_items reached"
    assert await settler.accept(items(1), None, request=request) is None  # handed back whole
    assert await settler.accept([], None, request=request) == ([], False)  # nothing to cut: settled
