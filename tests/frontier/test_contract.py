"""The frontier contract: every backend — memory, SQLite, Redis — behaves alike here.

Each test runs against each backend from one factory fixture: dedup, priorities, per-host
slots, settling a lease once, retries, delays and completion. What only one backend does
(a lease that expires, state that outlives the process, exact waits on a fake clock) is
tested beside it: ``test_local.py``, ``test_sqlite.py``, ``test_redis.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from framework.fetch.politeness import HostPolicy, Politeness
from framework.frontier import ONCE, Counts, Frontier, Lease, LeaseLost, Settlement
from framework.frontier.memory import MemoryFrontier
from framework.frontier.redis import RedisFrontier
from framework.frontier.sqlite import SqliteFrontier
from framework.http import Request
from tests.frontier.leases import ack, fail, urls_claimed
from tests.redis_server import RedisServer, redis_binary

#: What ``claim`` answers while every host with requests is at its limit: a local backend
#: waits until it is told (a settle, an add); a shared one asks again soon, since other
#: workers tell it nothing (claim.lua's POLL).
IDLE = {"memory": float("inf"), "sqlite": float("inf"), "redis": 0.05}


@dataclass
class Backend:
    """Opens frontiers of one backend; ``idle`` is its answer when nothing is ready."""

    name: str
    opened: list[Frontier]
    folder: Path
    server: RedisServer | None = None

    @property
    def idle(self) -> float:
        return IDLE[self.name]

    async def __call__(self, concurrency: int = 8, delay: float = 0.0) -> Frontier:
        politeness = Politeness(HostPolicy(concurrency, delay), {})
        frontier: Frontier
        if self.name == "memory":
            frontier = MemoryFrontier(politeness, jitter=lambda: 0.5)
        elif self.name == "sqlite":
            frontier = SqliteFrontier(self.folder / "crawl.db", politeness, jitter=lambda: 0.5)
        else:
            assert self.server is not None
            url = f"{self.server.url}?prefix=fw:contract:"
            frontier = RedisFrontier(url, politeness, name="contract", jitter=lambda: 0.5)
        await frontier.open()
        self.opened.append(frontier)
        return frontier


Make = Callable[..., Awaitable[Frontier]]


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Build frontiers of each backend in turn; a fresh state for every test."""
    backend = Backend(request.param, [], tmp_path)
    if backend.name == "redis":
        if redis_binary() is None:
            pytest.skip("no redis-server to run")
        backend.server = RedisServer(tmp_path)
        backend.server.start()
    yield backend
    for frontier in backend.opened:
        await frontier.close()
    if backend.server is not None:
        backend.server.stop()


def req(url: str, priority: int = 0, **kwargs: Any) -> Request:
    return Request(url, priority=priority, **kwargs)


async def lease_of(frontier: Frontier, timeout: float = 5.0) -> Lease:
    """Claim until a lease comes, sleeping as long as the frontier says to wait."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not isinstance(got := await frontier.claim(), Lease):
        assert got is not None, "the crawl ended before a lease came"
        assert loop.time() + got < deadline, f"no lease within {timeout}s (told to wait {got})"
        await asyncio.sleep(got)
    return got


# -------------------------------------------------------------------------------------------
# Dedup
# -------------------------------------------------------------------------------------------


async def test_add_drops_requests_seen_before_by_fingerprint(make: Backend) -> None:
    frontier = await make()
    first = [req("http://a.test/p?x=1&y=2"), req("http://a.test/q")]
    assert await frontier.add(first) == first
    again = [
        req("http://a.test/p?y=2&x=1"),  # the same query in another order
        req("http://a.test/q#section"),  # a fragment is not a different page
        req("http://a.test/r"),
    ]
    assert await frontier.add(again) == [again[2]]
    assert frontier.counts() == Counts(pending=3, delayed=0, leased=0, seen=3)


@pytest.mark.parametrize(
    "request_",
    [
        Request("http://a.test/plain?q=1"),  # stored as its URL alone
        Request("http://a.test/item", callback="parse_item", depth=3),
        Request(
            "http://a.test/form",
            method="POST",
            body=b"\x00a=1\n",
            headers={"X-Token": "t\tab"},
            callback="parse",
            errback="failed",
            priority=-2,
            meta={"page": 2, "tags": ["x", None], "note": "line\nbreak\ttab"},
            dont_filter=True,
            retries=1,
            redirects=2,
        ),
    ],
    ids=["url-only", "callback", "every-field"],
)
async def test_a_request_comes_back_as_it_was_added(make: Backend, request_: Request) -> None:
    frontier = await make()
    await frontier.add([request_])
    lease = await frontier.claim()
    assert isinstance(lease, Lease)
    assert lease.request == request_


async def test_add_drops_duplicates_within_one_batch(make: Backend) -> None:
    frontier = await make()
    batch = [req("http://a.test/1"), req("http://a.test/1#top"), req("http://a.test/2")]
    assert await frontier.add(batch) == [batch[0], batch[2]]
    assert await urls_claimed(frontier) == ["http://a.test/1", "http://a.test/2"]


async def test_method_and_body_are_part_of_the_fingerprint(make: Backend) -> None:
    frontier = await make()
    batch = [
        req("http://a.test/f"),
        req("http://a.test/f", method="POST", body=b"a=1"),
        req("http://a.test/f", method="POST", body=b"a=2"),
        req("http://a.test/f", method="POST", body=b"a=1"),
    ]
    assert await frontier.add(batch) == batch[:3]


async def test_dont_filter_bypasses_dedup(make: Backend) -> None:
    frontier = await make()
    await frontier.add([req("http://a.test/")])
    again = req("http://a.test/", dont_filter=True)
    assert await frontier.add([again, again]) == [again, again]
    assert frontier.counts().pending == 3
    assert await urls_claimed(frontier) == ["http://a.test/"] * 3


async def test_a_dont_filter_request_with_a_once_key_is_queued_once_per_key(
    make: Backend,
) -> None:
    # --retry-failed's requests: they pass the dedup, but a rerun must not queue them anew.
    frontier = await make()
    await frontier.add([req("http://a.test/")])
    once = [req("http://a.test/", dont_filter=True, meta={ONCE: key, "n": 1}) for key in (7, 8, 7)]
    assert await frontier.add(once) == once[:2]
    assert await frontier.add(once) == []
    leases = [await lease_of(frontier) for _ in range(3)]
    assert [lease.request.meta for lease in leases] == [{}, {"n": 1}, {"n": 1}]  # stored bare
    assert frontier.counts().seen == 3


async def test_the_failed_entry_of_a_once_key_is_queued_again_and_only_then(
    make: Backend,
) -> None:
    # A retry of a failures-file line that failed again: it is retried from its next line,
    # but a rerun after a kill must not queue what the killed retry still holds.
    if make.name == "memory":
        pytest.skip("nothing survives a memory frontier's run to be retried")
    frontier = await make()
    once = req("http://a.test/", dont_filter=True, meta={ONCE: 7})
    assert await frontier.add([once]) == [once]
    assert await frontier.add([once]) == []  # queued
    lease = await lease_of(frontier)
    assert await frontier.add([once]) == []  # leased
    await fail(frontier, lease, "http_503")
    assert frontier.counts() == Counts(pending=0, delayed=0, leased=0, seen=1)
    assert frontier.counts().failed == 1
    assert await frontier.add([once, once]) == [once]  # failed: queued again, once
    assert frontier.counts() == Counts(pending=1, delayed=0, leased=0, seen=1)
    assert frontier.counts().failed == 0
    await ack(frontier, await lease_of(frontier))
    assert await frontier.add([once]) == []  # done
    assert frontier.counts().done == 1


async def test_a_retry_takes_over_the_failure_of_the_request_it_retries(make: Backend) -> None:
    # Counted once, as the retry ends: a page a retry fetched is not "failed" as well.
    if make.name == "memory":
        pytest.skip("nothing survives a memory frontier's run to be retried")
    frontier = await make()
    original, other = req("http://a.test/"), req("http://a.test/other")
    assert await frontier.add([original, other]) == [original, other]
    await fail(frontier, await lease_of(frontier), "http_503")
    await fail(frontier, await lease_of(frontier), "http_503")
    assert frontier.counts().failed == 2
    retry = req("http://a.test/", dont_filter=True, meta={ONCE: 7})
    assert await frontier.add([retry]) == [retry]
    assert frontier.counts() == Counts(pending=1, delayed=0, leased=0, seen=2)
    assert frontier.counts().failed == 1  # the other's failure stays
    await ack(frontier, await lease_of(frontier))
    assert (frontier.counts().done, frontier.counts().failed) == (1, 1)
    assert await frontier.add([original]) == []  # its fingerprint is still seen
    again = req("http://a.test/", dont_filter=True, meta={ONCE: 8})  # a second listing
    assert await frontier.add([again]) == [again]
    assert (frontier.counts().failed, frontier.counts().seen) == (1, 3)  # nothing to take


async def test_a_retry_takes_over_the_failure_of_a_request_without_a_dedup_key(
    make: Backend,
) -> None:
    # dont_filter: a start URL, or a page a redirect reached during a retry.
    if make.name == "memory":
        pytest.skip("nothing survives a memory frontier's run to be retried")
    frontier = await make()
    original = req("http://a.test/again", dont_filter=True)
    for _ in range(3):  # sent three times, failed three times: listed once
        assert await frontier.add([original]) == [original]
        await fail(frontier, await lease_of(frontier), "http_503")
    assert frontier.counts().failed == 3
    retry = req("http://a.test/again", dont_filter=True, meta={ONCE: 7})
    assert await frontier.add([retry]) == [retry]
    assert (frontier.counts().failed, frontier.counts().seen) == (0, 1)
    await ack(frontier, await lease_of(frontier))
    assert (frontier.counts().done, frontier.counts().failed) == (1, 0)


# -------------------------------------------------------------------------------------------
# Priority
# -------------------------------------------------------------------------------------------


async def test_higher_priority_first_within_a_host_and_first_come_among_equals(
    make: Backend,
) -> None:
    frontier = await make()
    await frontier.add(
        [
            req("http://a.test/low", -1),
            req("http://a.test/first"),
            req("http://a.test/high", 5),
            req("http://a.test/second"),
            req("http://a.test/mid", 2),
        ]
    )
    assert await urls_claimed(frontier) == [
        "http://a.test/high",
        "http://a.test/mid",
        "http://a.test/first",
        "http://a.test/second",
        "http://a.test/low",
    ]


async def test_the_host_with_the_best_request_goes_first(make: Backend) -> None:
    frontier = await make()
    await frontier.add(
        [
            req("http://a.test/3", 3),
            req("http://a.test/0", 0),
            req("http://b.test/2", 2),
            req("http://c.test/9", 9),
            req("http://b.test/1", 1),
        ]
    )
    # After each claim the host is filed again by its next best request.
    assert await urls_claimed(frontier) == [
        "http://c.test/9",
        "http://a.test/3",
        "http://b.test/2",
        "http://b.test/1",
        "http://a.test/0",
    ]


async def test_a_better_request_moves_an_already_ready_host_up(make: Backend) -> None:
    frontier = await make()
    await frontier.add([req("http://a.test/0"), req("http://b.test/5", 5)])
    await frontier.add([req("http://a.test/10", 10)])  # a is filed already, with rank 0
    assert await urls_claimed(frontier) == [
        "http://a.test/10",
        "http://b.test/5",
        "http://a.test/0",
    ]


# -------------------------------------------------------------------------------------------
# Per-host slots, and settling a lease once
# -------------------------------------------------------------------------------------------


async def test_a_host_at_its_limit_waits_while_other_hosts_are_served(make: Backend) -> None:
    frontier = await make(concurrency=2)
    await frontier.add(
        [
            req("http://a.test/1", 9),
            req("http://a.test/2", 8),
            req("http://a.test/3", 7),
            req("http://b.test/1"),
        ]
    )
    first = [(await lease_of(frontier)).request.url for _ in range(3)]
    # a's third request outranks b's, but a has two in flight.
    assert first == ["http://a.test/1", "http://a.test/2", "http://b.test/1"]
    assert await frontier.claim() == make.idle
    assert frontier.counts() == Counts(pending=1, delayed=0, leased=3, seen=4)


async def test_ack_frees_the_slot_and_queues_the_new_discoveries(make: Backend) -> None:
    frontier = await make(concurrency=1)
    await frontier.add([req("http://a.test/1"), req("http://a.test/2")])
    lease = await lease_of(frontier)
    assert await frontier.claim() == make.idle
    found = [
        req("http://a.test/2"),
        req("http://b.test/new"),
        req("http://a.test/new", 5),
        req("http://b.test/new#again"),
    ]
    assert await ack(frontier, lease, found) == [found[1], found[2]]
    assert frontier.counts() == Counts(pending=3, delayed=0, leased=0, seen=4)
    assert await urls_claimed(frontier) == ["http://a.test/new", "http://b.test/new"]
    assert await frontier.claim() == make.idle  # a/2 waits for a's slot


async def test_fail_frees_the_slot(make: Backend) -> None:
    frontier = await make(concurrency=1)
    await frontier.add([req("http://a.test/1"), req("http://a.test/2")])
    lease = await lease_of(frontier)
    assert await frontier.claim() == make.idle
    await fail(frontier, lease, "http_500")
    assert frontier.counts() == Counts(pending=1, delayed=0, leased=0, seen=2)
    assert (await lease_of(frontier)).request.url == "http://a.test/2"


@pytest.mark.parametrize("second", ["ack", "retry", "fail"])
async def test_a_lease_is_settled_once(make: Backend, second: str) -> None:
    frontier = await make(concurrency=1)
    await frontier.add([req("http://a.test/1"), req("http://a.test/2")])
    lease = await lease_of(frontier)
    await ack(frontier, lease, [])
    settle = {
        "ack": lambda: ack(frontier, lease, [req("http://a.test/3")]),
        "retry": lambda: frontier.retry(lease, lease.request, 0.0),
        "fail": lambda: fail(frontier, lease, "x"),
    }[second]
    with pytest.raises(LeaseLost):
        await settle()
    # Nothing was queued or freed by the stale settlement.
    assert frontier.counts() == Counts(pending=1, delayed=0, leased=0, seen=2)
    assert (await lease_of(frontier)).request.url == "http://a.test/2"


async def test_one_settle_settles_many_leases_and_skips_one_settled_already(
    make: Backend,
) -> None:
    frontier = await make(concurrency=3)
    await frontier.add([req("http://a.test/1"), req("http://a.test/2"), req("http://a.test/3")])
    one, two, three = [await lease_of(frontier) for _ in range(3)]
    await ack(frontier, two)
    found = await frontier.settle(
        [
            Settlement(one, [req("http://a.test/4")]),
            Settlement(two, [req("http://a.test/5")]),  # settled already: nothing happens
            Settlement(three, [req("http://a.test/4"), req("http://a.test/6")], "http_500"),
        ]
    )
    assert found == [[req("http://a.test/4")], None, [req("http://a.test/6")]]
    counts = frontier.counts()
    assert counts == Counts(pending=2, delayed=0, leased=0, seen=5)
    assert (counts.done, counts.failed) == (2, 1)


async def test_leases_name_their_host(make: Backend) -> None:
    frontier = await make()
    await frontier.add([req("http://A.Test:8080/x")])
    lease = await lease_of(frontier)
    assert (lease.host, lease.request.url) == ("a.test", "http://A.Test:8080/x")


# -------------------------------------------------------------------------------------------
# Retries and delays, on the real clock
# -------------------------------------------------------------------------------------------


async def test_a_retry_is_held_back_then_claimed_with_its_count(make: Backend) -> None:
    frontier = await make(concurrency=1)
    await frontier.add([req("http://a.test/1"), req("http://a.test/2")])
    lease = await lease_of(frontier)
    again = lease.request.replace(retries=1)
    await frontier.retry(lease, again, 0.3)
    assert frontier.counts().delayed == 1
    other = await lease_of(frontier)
    assert other.request.url == "http://a.test/2"  # the retry freed the host's slot
    await ack(frontier, other, [])
    waited = await frontier.claim()
    assert isinstance(waited, float) and 0 < waited <= 0.3
    lease = await lease_of(frontier)
    assert lease.request == again  # queued again although its fingerprint was seen


async def test_a_delay_spaces_the_starts_of_one_host_only(make: Backend) -> None:
    frontier = await make(delay=0.4)  # jitter 0.5 leaves it at 0.4 s
    await frontier.add([req("http://a.test/1"), req("http://a.test/2"), req("http://b.test/1")])
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await urls_claimed(frontier) == ["http://a.test/1", "http://b.test/1"]
    waited = await frontier.claim()  # 0.4 s, moved to the nearest wave of 1/16 s
    assert isinstance(waited, float) and 0 < waited <= 0.4 + 1 / 32
    assert (await lease_of(frontier)).request.url == "http://a.test/2"
    # The server's clock may tick apart a little.
    assert loop.time() - started >= 0.4 - 1 / 32 - 0.01


async def nothing_within(frontier: Frontier, seconds: float) -> bool:
    """Claim for ``seconds`` as a worker would; True if no lease came."""
    try:
        lease = await lease_of(frontier, timeout=seconds)
    except AssertionError:
        return True
    await ack(frontier, lease)
    return False


async def test_a_refunded_turn_lets_the_hosts_next_request_start_at_once(make: Backend) -> None:
    if make.name == "redis":
        pytest.skip("Redis shares a host's pace among workers: a refund does nothing")
    frontier = await make(delay=30)  # without the refund, the second waits 30 s
    await frontier.add([req("http://a.test/1"), req("http://a.test/2"), req("http://a.test/3")])
    first = await lease_of(frontier)
    await frontier.refund(first)  # answered from a cache: the host was not visited
    await ack(frontier, first)
    second = await lease_of(frontier, timeout=1)
    assert second.request.url == "http://a.test/2"
    await ack(frontier, second)  # not refunded: the host was visited
    assert await nothing_within(frontier, 0.5)


async def test_a_refund_changes_nothing_once_the_host_rested_or_started_another(
    make: Backend,
) -> None:
    frontier = await make(delay=30)
    await frontier.add([req("http://a.test/1"), req("http://a.test/2")])
    first = await lease_of(frontier)
    await frontier.tune("a.test", pause=60)  # a Retry-After meanwhile: the rest stands
    await frontier.refund(first)
    await ack(frontier, first)
    assert await nothing_within(frontier, 0.5)
    await frontier.refund(first)  # twice: still nothing
    assert await nothing_within(frontier, 0.5)


# -------------------------------------------------------------------------------------------
# Completion
# -------------------------------------------------------------------------------------------


async def test_claim_is_none_when_nothing_was_added(make: Backend) -> None:
    frontier = await make()
    assert await frontier.claim() is None


async def test_claim_is_none_once_every_request_is_settled(make: Backend) -> None:
    frontier = await make()
    await frontier.add([req("http://a.test/1"), req("http://b.test/1")])
    one, two = await lease_of(frontier), await lease_of(frontier)
    await ack(frontier, one, [])
    await fail(frontier, two, "timeout")
    assert await frontier.claim() is None
    assert frontier.counts() == Counts(pending=0, delayed=0, leased=0, seen=2)
