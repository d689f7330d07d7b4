"""The local frontiers' scheduling, exactly: every wait on a fake clock.

Every test runs against the memory and the SQLite backend, which schedule alike through
``hosts.py``. Time is a fake clock the tests advance and the jitter is fixed, so every
wait is exact. What every backend does alike is in ``test_contract.py``.
"""

from __future__ import annotations

import math
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from framework.fetch.politeness import HostPolicy, Politeness
from framework.frontier import Counts, Frontier, Lease
from framework.frontier.memory import MemoryFrontier
from framework.frontier.sqlite import SqliteFrontier
from framework.http import Request
from tests.frontier.leases import ack, urls_claimed

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


def make(
    concurrency: int = 8, delay: float = 0.0, jitter: float = JITTER, rate: float | None = None
) -> tuple[Frontier, Clock]:
    clock = Clock()
    politeness = Politeness(HostPolicy(concurrency, delay, rate), {})
    frontier: Frontier
    if _backend == "sqlite":
        frontier = SqliteFrontier(
            _state, politeness, clock=clock, wall=clock, jitter=lambda: jitter
        )
    else:
        frontier = MemoryFrontier(politeness, clock=clock, jitter=lambda: jitter)
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


# ---------------------------------------------------------------------------------------------
# Priority
# ---------------------------------------------------------------------------------------------


async def test_a_ready_host_keeps_its_place_when_an_equal_request_arrives() -> None:
    frontier, _ = make()
    await frontier.add([req("http://a.test/1"), req("http://b.test/1")])
    await frontier.add([req("http://a.test/2")])
    assert await urls_claimed(frontier) == ["http://a.test/1", "http://b.test/1", "http://a.test/2"]


# ---------------------------------------------------------------------------------------------
# Per-host concurrency
# ---------------------------------------------------------------------------------------------


async def test_ack_without_discoveries_frees_the_slot() -> None:
    frontier, _ = make(concurrency=1)
    await frontier.add([req("http://a.test/1"), req("http://a.test/2")])
    lease = await lease_of(frontier)
    assert await ack(frontier, lease, []) == []
    assert (await lease_of(frontier)).request.url == "http://a.test/2"


# ---------------------------------------------------------------------------------------------
# Nothing to claim
# ---------------------------------------------------------------------------------------------


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


async def test_hosts_started_apart_come_due_together_at_the_nearest_wave() -> None:
    frontier, clock = make(delay=2.0)
    urls = ["http://a.test/1", "http://a.test/2", "http://b.test/1", "http://b.test/2"]
    await frontier.add([req(url) for url in urls])
    await lease_of(frontier)  # a.test at 1000: due at 1001.5, a wave of 1/2 s
    clock.now = 1000.04
    await lease_of(frontier)  # b.test: due at 1001.54, so at the same wave
    assert await frontier.claim() == pytest.approx(1001.5 - 1000.04)
    clock.now = 1001.5
    assert {(await lease_of(frontier)).request.url for _ in "ab"} == {urls[1], urls[3]}


async def test_a_turn_past_the_middle_of_a_wave_waits_for_the_next() -> None:
    frontier, clock = make(delay=2.0)
    await frontier.add([req("http://a.test/1"), req("http://a.test/2")])
    clock.now = 1000.3
    await lease_of(frontier)  # due at 1001.8, nearer the wave at 1002 than 1001.5
    assert await frontier.claim() == pytest.approx(1.7)


async def test_a_start_late_in_its_wave_counts_the_delay_from_the_turn() -> None:
    frontier, clock = make(delay=2.0)  # 1.5 s once jittered; waves of 1/2 s
    await frontier.add([req(f"http://a.test/{n}") for n in range(3)])
    await lease_of(frontier)  # at 1000: its turn comes at 1001.5
    clock.now = 1001.9  # other hosts of the wave went first
    await lease_of(frontier)
    assert await frontier.claim() == pytest.approx(1003.0 - 1001.9)  # not 1003.5: no drift


async def test_a_start_a_wave_or_more_late_counts_the_delay_from_the_start() -> None:
    frontier, clock = make(delay=2.0)
    await frontier.add([req(f"http://a.test/{n}") for n in range(3)])
    await lease_of(frontier)  # its turn comes at 1001.5
    clock.now = 1002.3  # the host had rested: its turn is long gone
    await lease_of(frontier)
    assert await frontier.claim() == pytest.approx(1004.0 - 1002.3)  # 1003.8, on a wave


async def test_a_start_exactly_a_wave_late_counts_the_delay_from_the_start() -> None:
    frontier, clock = make(delay=2.0)
    await frontier.add([req(f"http://a.test/{n}") for n in range(3)])
    await lease_of(frontier)  # its turn comes at 1001.5
    clock.now = 1002.0  # the next wave: this start is of that wave, not late for its own
    await lease_of(frontier)
    assert await frontier.claim() == pytest.approx(1.5)


async def test_a_rate_alone_is_kept_exactly_however_late_a_start() -> None:
    frontier, clock = make(rate=5.0)
    await frontier.add([req(f"http://a.test/{n}") for n in range(3)])
    await lease_of(frontier)
    clock.now = 1000.2 + 0.001  # a millisecond late: no wave moves the next turn on
    await lease_of(frontier)
    assert await frontier.claim() == pytest.approx(0.2)


async def test_counting_from_the_turn_keeps_half_the_delay_from_the_start() -> None:
    frontier, clock = make(delay=2.0, jitter=0.0)  # jittered to 1 s: the least allowed
    await frontier.add([req(f"http://a.test/{n}") for n in range(3)])
    await lease_of(frontier)  # its turn comes at 1001
    clock.now = 1001.45
    await lease_of(frontier)  # from the turn, 1002; but never before 1002.45
    assert await frontier.claim() == pytest.approx(1002.5 - 1001.45)


async def test_the_delay_counts_from_the_start_not_the_end() -> None:
    frontier, clock = make(delay=2.0)
    await frontier.add([req("http://a.test/1"), req("http://a.test/2")])
    lease = await lease_of(frontier)
    clock.now = 1001.0
    await ack(frontier, lease, [])  # settling the lease does not restart the delay
    assert await frontier.claim() == pytest.approx(0.5)


async def test_a_refund_gives_back_the_hosts_last_start_only() -> None:
    frontier, clock = make(delay=2.0)
    await frontier.add([req(f"http://a.test/{n}") for n in range(4)])
    visited = await lease_of(frontier)  # at 1000: the next may start at 1001.5
    clock.now = 1001.5
    cached = await lease_of(frontier)  # the next at 1003
    await frontier.refund(visited)  # not the host's last start: nothing changes
    assert await frontier.claim() == pytest.approx(1.5)
    await frontier.refund(cached)  # as if it had not started: 1.5 s after the visit
    assert (await lease_of(frontier)).request.url == "http://a.test/2"
    assert await frontier.claim() == pytest.approx(1.5)  # spaced from this start


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
    await ack(frontier, b, [])  # b.test may start again at 1008 (7.5 s, on a wave of 2 s)
    await frontier.retry(a, a.request, 3.0)  # a.test/1 is due at 1003
    assert await frontier.claim() == pytest.approx(3.0)
    clock.now = 1003.0
    assert await frontier.claim() == pytest.approx(5.0)  # a/1 is queued, a rests till 1008
    clock.now = 1008.0
    assert sorted(await urls_claimed(frontier)) == ["http://a.test/1", "http://b.test/2"]
