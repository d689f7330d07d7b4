"""The local frontiers: dedup, priorities, per-host limits and delays, lease settlement.

Every test runs against the memory and the SQLite backend, which schedule alike. Time is
a fake clock the tests advance and the jitter is fixed, so every wait is exact.
"""

from __future__ import annotations

import math
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from framework.fetch.politeness import HostPolicy, Politeness
from framework.frontier import Counts, Frontier, Lease, LeaseLost, Settlement
from framework.frontier.memory import MemoryFrontier
from framework.frontier.sqlite import SqliteFrontier
from framework.http import Request
from tests.frontier.leases import ack, fail

#: With this jitter a host's delay is scaled by 0.5 + 0.25: ``delay * 0.75``.
JITTER = 0.25


class Clock:
    """A clock that only moves when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


_made: list[Frontier] = []


@pytest.fixture(autouse=True, params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Run each test on both backends; ``make`` builds the current one."""
    global _backend, _state
    _backend, _state = request.param, tmp_path / "crawl.db"
    yield _backend
    for frontier in _made:
        _finish(frontier.close())
    _made.clear()


_backend, _state = "memory", Path()


def make(concurrency: int = 8, delay: float = 0.0) -> tuple[Frontier, Clock]:
    clock = Clock()
    politeness = Politeness(HostPolicy(concurrency, delay), {})
    frontier: Frontier
    if _backend == "sqlite":
        frontier = SqliteFrontier(
            _state, politeness, clock=clock, wall=clock, jitter=lambda: JITTER
        )
    else:
        frontier = MemoryFrontier(politeness, clock=clock, jitter=lambda: JITTER)
    _finish(frontier.open())
    _made.append(frontier)
    return frontier, clock


def _finish(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never awaits (the local backends' open and close) to its end."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("expected a coroutine that does not await")


def req(url: str, priority: int = 0, **kwargs: Any) -> Request:
    return Request(url, priority=priority, **kwargs)


async def lease_of(frontier: Frontier) -> Lease:
    """Claim, insisting on a lease rather than a wait."""
    got = await frontier.claim()
    assert isinstance(got, Lease), f"expected a lease, got {got!r}"
    return got


async def urls_claimed(frontier: Frontier) -> list[str]:
    """Claim until the frontier has nothing ready; return the URLs in claim order."""
    urls = []
    while isinstance(got := await frontier.claim(), Lease):
        urls.append(got.request.url)
    return urls


# ---------------------------------------------------------------------------------------------
# Dedup
# ---------------------------------------------------------------------------------------------


async def test_add_drops_requests_seen_before_by_fingerprint() -> None:
    frontier, _ = make()
    first = [req("http://a.test/p?x=1&y=2"), req("http://a.test/q")]
    assert await frontier.add(first) == first
    again = [
        req("http://a.test/p?y=2&x=1"),  # the same query in another order
        req("http://a.test/q#section"),  # a fragment is not a different page
        req("http://a.test/r"),
    ]
    assert await frontier.add(again) == [again[2]]
    assert frontier.counts() == Counts(pending=3, delayed=0, leased=0, seen=3)


async def test_add_drops_duplicates_within_one_batch() -> None:
    frontier, _ = make()
    batch = [req("http://a.test/1"), req("http://a.test/1#top"), req("http://a.test/2")]
    assert await frontier.add(batch) == [batch[0], batch[2]]
    assert await urls_claimed(frontier) == ["http://a.test/1", "http://a.test/2"]


async def test_method_and_body_are_part_of_the_fingerprint() -> None:
    frontier, _ = make()
    batch = [
        req("http://a.test/f"),
        req("http://a.test/f", method="POST", body=b"a=1"),
        req("http://a.test/f", method="POST", body=b"a=2"),
        req("http://a.test/f", method="POST", body=b"a=1"),
    ]
    assert await frontier.add(batch) == batch[:3]


async def test_dont_filter_bypasses_dedup() -> None:
    frontier, _ = make()
    await frontier.add([req("http://a.test/")])
    again = req("http://a.test/", dont_filter=True)
    assert await frontier.add([again, again]) == [again, again]
    assert frontier.counts().pending == 3
    assert await urls_claimed(frontier) == ["http://a.test/"] * 3


# ---------------------------------------------------------------------------------------------
# Priority
# ---------------------------------------------------------------------------------------------


async def test_higher_priority_first_within_a_host_and_first_come_among_equals() -> None:
    frontier, _ = make()
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


async def test_the_host_with_the_best_request_goes_first() -> None:
    frontier, _ = make()
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


async def test_a_better_request_moves_an_already_ready_host_up() -> None:
    frontier, _ = make()
    await frontier.add([req("http://a.test/0"), req("http://b.test/5", 5)])
    await frontier.add([req("http://a.test/10", 10)])  # a is filed already, with rank 0
    assert await urls_claimed(frontier) == [
        "http://a.test/10",
        "http://b.test/5",
        "http://a.test/0",
    ]


async def test_a_ready_host_keeps_its_place_when_an_equal_request_arrives() -> None:
    frontier, _ = make()
    await frontier.add([req("http://a.test/1"), req("http://b.test/1")])
    await frontier.add([req("http://a.test/2")])
    assert await urls_claimed(frontier) == ["http://a.test/1", "http://b.test/1", "http://a.test/2"]


# ---------------------------------------------------------------------------------------------
# Per-host concurrency
# ---------------------------------------------------------------------------------------------


async def test_a_host_at_its_limit_waits_while_other_hosts_are_served() -> None:
    frontier, _ = make(concurrency=2)
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
    assert await frontier.claim() == math.inf
    assert frontier.counts() == Counts(pending=1, delayed=0, leased=3, seen=4)


async def test_ack_frees_the_slot_and_queues_the_new_discoveries() -> None:
    frontier, _ = make(concurrency=1)
    await frontier.add([req("http://a.test/1"), req("http://a.test/2")])
    lease = await lease_of(frontier)
    assert await frontier.claim() == math.inf
    found = [
        req("http://a.test/2"),
        req("http://b.test/new"),
        req("http://a.test/new", 5),
        req("http://b.test/new#again"),
    ]
    assert await ack(frontier, lease, found) == [found[1], found[2]]
    assert frontier.counts() == Counts(pending=3, delayed=0, leased=0, seen=4)
    assert await urls_claimed(frontier) == ["http://a.test/new", "http://b.test/new"]
    assert await frontier.claim() == math.inf  # a/2 waits for a's slot


async def test_ack_without_discoveries_frees_the_slot() -> None:
    frontier, _ = make(concurrency=1)
    await frontier.add([req("http://a.test/1"), req("http://a.test/2")])
    lease = await lease_of(frontier)
    assert await ack(frontier, lease, []) == []
    assert (await lease_of(frontier)).request.url == "http://a.test/2"


async def test_fail_frees_the_slot() -> None:
    frontier, _ = make(concurrency=1)
    await frontier.add([req("http://a.test/1"), req("http://a.test/2")])
    lease = await lease_of(frontier)
    assert await frontier.claim() == math.inf
    await fail(frontier, lease, "http_error")
    assert frontier.counts() == Counts(pending=1, delayed=0, leased=0, seen=2)
    assert (await lease_of(frontier)).request.url == "http://a.test/2"


@pytest.mark.parametrize("second", ["ack", "retry", "fail"])
async def test_a_lease_is_settled_once(second: str) -> None:
    frontier, _ = make(concurrency=1)
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


async def test_one_settle_settles_many_leases_and_skips_one_settled_already() -> None:
    frontier, _ = make(concurrency=3)
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
    assert frontier.counts() == Counts(pending=2, delayed=0, leased=0, seen=5)
    counts = frontier.counts()
    assert (counts.done, counts.failed) == (2, 1)


async def test_leases_name_their_host() -> None:
    frontier, _ = make()
    await frontier.add([req("http://A.Test:8080/x")])
    lease = await lease_of(frontier)
    assert (lease.host, lease.request.url) == ("a.test", "http://A.Test:8080/x")


# ---------------------------------------------------------------------------------------------
# Nothing to claim
# ---------------------------------------------------------------------------------------------


async def test_claim_is_none_when_nothing_was_added() -> None:
    frontier, _ = make()
    assert await frontier.claim() is None


async def test_claim_is_none_when_all_is_leased_even_with_leases_out() -> None:
    frontier, _ = make(concurrency=1, delay=10)
    await frontier.add([req("http://a.test/1"), req("http://b.test/1")])
    await lease_of(frontier)
    await lease_of(frontier)
    assert frontier.counts().leased == 2
    assert await frontier.claim() is None


# ---------------------------------------------------------------------------------------------
# Delay between requests to one host
# ---------------------------------------------------------------------------------------------


async def test_delay_spaces_claims_to_one_host_by_the_jittered_delay() -> None:
    frontier, clock = make(delay=2.0)
    await frontier.add([req(f"http://a.test/{n}") for n in range(3)])
    await lease_of(frontier)  # at 1000: the next one may start at 1000 + 2 * 0.75
    assert await frontier.claim() == pytest.approx(1.5)
    clock.now = 1001.0
    assert await frontier.claim() == pytest.approx(0.5)
    clock.now = 1001.5 - 1e-9
    assert isinstance(await frontier.claim(), float)
    clock.now = 1001.5
    assert (await lease_of(frontier)).request.url == "http://a.test/1"
    assert await frontier.claim() == pytest.approx(1.5)  # counted from this start
    clock.now = 1003.0
    assert (await lease_of(frontier)).request.url == "http://a.test/2"


async def test_the_delay_counts_from_the_start_not_the_end() -> None:
    frontier, clock = make(delay=2.0)
    await frontier.add([req("http://a.test/1"), req("http://a.test/2")])
    lease = await lease_of(frontier)
    clock.now = 1001.0
    await ack(frontier, lease, [])  # settling the lease does not restart the delay
    assert await frontier.claim() == pytest.approx(0.5)


async def test_a_delayed_host_does_not_block_other_hosts() -> None:
    frontier, clock = make(delay=4.0)
    await frontier.add(
        [
            req("http://a.test/1", 5),
            req("http://a.test/2", 5),
            req("http://b.test/1"),
            req("http://c.test/1"),
        ]
    )
    assert await urls_claimed(frontier) == ["http://a.test/1", "http://b.test/1", "http://c.test/1"]
    assert await frontier.claim() == pytest.approx(3.0)
    clock.now += 3.0
    assert (await lease_of(frontier)).request.url == "http://a.test/2"


async def test_a_better_request_does_not_cut_a_hosts_delay_short() -> None:
    frontier, clock = make(delay=2.0)
    await frontier.add([req("http://a.test/1"), req("http://b.test/1")])
    await lease_of(frontier)  # a.test, now resting until 1001.5
    await frontier.add([req("http://a.test/urgent", 100)])
    assert (await lease_of(frontier)).request.url == "http://b.test/1"
    assert await frontier.claim() == pytest.approx(1.5)
    clock.now = 1001.5
    assert (await lease_of(frontier)).request.url == "http://a.test/urgent"


async def test_no_delay_means_no_wait() -> None:
    frontier, _ = make(delay=0.0)
    await frontier.add([req(f"http://a.test/{n}") for n in range(3)])
    assert len(await urls_claimed(frontier)) == 3


# ---------------------------------------------------------------------------------------------
# Retry
# ---------------------------------------------------------------------------------------------


async def test_retry_holds_the_request_back_until_its_time() -> None:
    frontier, clock = make(concurrency=1)
    await frontier.add([req("http://a.test/1")])
    lease = await lease_of(frontier)
    again = lease.request.replace(retries=1)
    await frontier.retry(lease, again, 5.0)
    assert frontier.counts() == Counts(pending=0, delayed=1, leased=0, seen=1)
    assert await frontier.claim() == pytest.approx(5.0)
    clock.now = 1004.0
    assert await frontier.claim() == pytest.approx(1.0)
    clock.now = 1005.0
    lease = await lease_of(frontier)
    assert lease.request == again  # queued again although its fingerprint was seen
    assert frontier.counts() == Counts(pending=0, delayed=0, leased=1, seen=1)


async def test_retry_frees_the_slot_for_the_hosts_other_requests() -> None:
    frontier, _ = make(concurrency=1)
    await frontier.add([req("http://a.test/1"), req("http://a.test/2")])
    lease = await lease_of(frontier)
    assert await frontier.claim() == math.inf
    await frontier.retry(lease, lease.request, 60.0)
    assert (await lease_of(frontier)).request.url == "http://a.test/2"
    assert await frontier.claim() == pytest.approx(60.0)


async def test_a_due_retry_competes_by_priority() -> None:
    frontier, clock = make()
    await frontier.add([req("http://a.test/retried", 1)])
    lease = await lease_of(frontier)
    await frontier.retry(lease, lease.request, 1.0)
    await frontier.add([req("http://a.test/low"), req("http://b.test/high", 2)])
    clock.now += 1.0
    assert await urls_claimed(frontier) == [
        "http://b.test/high",
        "http://a.test/retried",
        "http://a.test/low",
    ]


async def test_the_wait_is_for_the_soonest_of_a_retry_and_a_rested_host() -> None:
    frontier, clock = make(concurrency=1, delay=10.0)
    await frontier.add([req("http://a.test/1"), req("http://b.test/1"), req("http://b.test/2")])
    a = await lease_of(frontier)
    b = await lease_of(frontier)
    await ack(frontier, b, [])  # b.test may start again at 1007.5
    await frontier.retry(a, a.request, 3.0)  # a.test/1 is due at 1003
    assert await frontier.claim() == pytest.approx(3.0)
    clock.now = 1003.0
    assert await frontier.claim() == pytest.approx(4.5)  # a/1 is queued, a rests till 1007.5
    clock.now = 1007.5
    assert sorted(await urls_claimed(frontier)) == ["http://a.test/1", "http://b.test/2"]
