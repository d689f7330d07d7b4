"""The Redis frontier against a real ``redis-server``: what several workers share, outages,
and a crawl whose state vanishes from Redis.

Each "worker" is a ``RedisFrontier`` of its own on one server, as separate ``fw run``
processes would be. The jitter is fixed at 0.5, so a host's delay is exact. Nothing
sleeps to guess: a test waits for a condition with a deadline, or for the wait the
frontier itself asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from framework.errors import CrawlAborted, UsageError
from framework.fetch.politeness import HostPolicy, Politeness
from framework.frontier import HostStatus, Lease, LeaseLost, Saved, Settlement, Status
from framework.frontier.redis import RedisFrontier, read_status, where
from framework.http import Request
from tests.frontier.leases import ack, fail
from tests.redis_server import CuttingProxy, RedisServer, redis_binary

pytestmark = pytest.mark.skipif(redis_binary() is None, reason="no redis-server to run")

PREFIX = "fw:test:"
Make = Callable[..., Awaitable[RedisFrontier]]


async def status_of(frontier: RedisFrontier) -> Status:
    """Read the state of ``frontier``'s crawl as ``fw status`` does, on a connection of its own."""
    return await read_status(frontier.url, frontier.prefix, lease=frontier.lease)


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A redis-server of this test's own, writing every change to its append-only file;
    parametrized indirectly, the parameter is more command-line options."""
    redis_server = RedisServer(tmp_path, appendonly=True, options=getattr(request, "param", ()))
    redis_server.start()
    yield redis_server
    redis_server.stop()


@pytest.fixture
async def proxy(server: RedisServer) -> AsyncIterator[CuttingProxy]:
    """A proxy to ``server``, for a worker whose replies a test cuts or holds back."""
    cutting = CuttingProxy(server.port)
    await cutting.start()
    yield cutting
    await cutting.close()


@pytest.fixture
async def make(server: RedisServer) -> AsyncIterator[Make]:
    """Open workers on ``server``; every one is closed after the test."""
    opened: list[RedisFrontier] = []

    async def make(
        concurrency: int = 8,
        delay: float = 0.0,
        rate: float | None = None,
        *,
        lease: float = 30,
        patience: str = "600",
        prefix: str = PREFIX,
        fresh: bool = False,
        url: str | None = None,
        open: bool = True,
    ) -> RedisFrontier:
        frontier = RedisFrontier(
            f"{url or server.url}?lease={lease}&prefix={prefix}&patience={patience}",
            Politeness(HostPolicy(concurrency, delay, rate), {}),
            name="test",
            fresh=fresh,
            jitter=lambda: 0.5,
        )
        opened.append(frontier)
        if open:
            await frontier.open()
        return frontier

    yield make
    for frontier in opened:
        await frontier.close()


def urls(*paths: str, host: str = "a.test", **kwargs: Any) -> list[Request]:
    return [Request(f"http://{host}/{path}", **kwargs) for path in paths]


async def lease_of(frontier: RedisFrontier, timeout: float = 10.0) -> Lease:
    """Claim until a lease comes, sleeping as long as the frontier says to."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = await frontier.claim()
        if isinstance(got, Lease):
            return got
        assert got is not None, "the crawl ended before a lease came"
        assert loop.time() < deadline, "no lease in time"
        await asyncio.sleep(got)


class Heard(logging.Handler):
    """Set ``event`` when fw logs a message containing ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text, self.event = text, asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


async def stall(frontier: RedisFrontier) -> None:
    """Stop the worker's heartbeat, as if its process hung: its leases will expire. A beat
    under way ends first (its script runs on, shielded), so no call of it comes later."""
    assert frontier._heartbeat is not None
    frontier._heartbeat.cancel()
    await asyncio.gather(*frontier._scripts._running, return_exceptions=True)


# -------------------------------------------------------------------------------------------
# One worker
# -------------------------------------------------------------------------------------------


async def test_lease_then_ack_fail_and_retry(make: Make, server: RedisServer) -> None:
    frontier = await make()
    assert await frontier.add(urls("1", "2", "3")) == urls("1", "2", "3")
    first = await lease_of(frontier)
    assert first.request == urls("1")[0] and first.host == "a.test"
    assert await ack(frontier, first, urls("4", "1")) == urls("4")  # "1" was seen
    second = await lease_of(frontier)
    assert await fail(frontier, second, "http_status", urls("5")) == urls("5")
    third = await lease_of(frontier)
    await frontier.retry(third, third.request.replace(retries=1), 0.3)
    assert frontier.counts().delayed == 1

    leases = [await lease_of(frontier) for _ in range(3)]  # "4", "5", then the retry
    assert [lease.request.url[-1] for lease in leases] == ["4", "5", "3"]
    assert leases[-1].request.retries == 1
    for lease in leases:
        await ack(frontier, lease, [])
    with pytest.raises(LeaseLost):  # settled already
        await ack(frontier, leases[0], [])
    assert await frontier.claim() is None
    status = await status_of(frontier)
    assert (status.pending, status.delayed, status.leased, status.done, status.failed) == (
        0,
        0,
        0,
        4,
        1,
    )
    assert status.hosts == {"a.test": HostStatus(0, 0, 4, 1)}
    with server.client() as client:
        assert b"http_status\n" in next(iter(client.hgetall(PREFIX + "failures").values()))


def script_calls(server: RedisServer) -> int:
    """How many scripts the server has run: one per frontier call."""
    with server.client() as client:
        return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


async def test_claims_made_together_go_in_one_call(make: Make, server: RedisServer) -> None:
    frontier = await make(concurrency=3)
    await frontier.add(urls("1", "2", "3", "4"))
    before = script_calls(server)
    got = await asyncio.gather(*(frontier.claim() for _ in range(5)))
    assert script_calls(server) == before + 1
    leases = [lease for lease in got if isinstance(lease, Lease)]
    assert sorted(lease.request.url[-1] for lease in leases) == ["1", "2", "3"]
    assert len({lease.token for lease in leases}) == 3
    # The host's 3 slots are taken: ask again soon, as a lease may be settled any time.
    assert got[3:] == [0.05, 0.05]
    assert frontier.counts().leased == 3


async def test_a_settle_of_many_leases_is_one_call_and_a_lost_one_changes_nothing(
    make: Make, server: RedisServer
) -> None:
    frontier, other = await make(lease=1), await make(lease=1)
    await frontier.add(urls("1"))
    lost = await lease_of(frontier)
    await stall(frontier)
    taken = await lease_of(other)  # once the lease expired, a claim put it back
    assert taken.request == lost.request
    await stall(other)  # its heartbeat would run scripts among those counted below
    await frontier.add(urls("2", "3"))
    second, third = await lease_of(frontier), await lease_of(frontier)  # fresh: still held
    before = script_calls(server)
    found = await frontier.settle(
        [
            Settlement(second, urls("new-1")),
            Settlement(lost, urls("lost-1")),
            Settlement(third, urls("new-1", "new-2"), "http_500"),
        ]
    )
    assert script_calls(server) == before + 1
    assert found == [urls("new-1"), None, urls("new-2")]
    status = await status_of(frontier)
    assert (status.pending, status.leased, status.done, status.failed) == (2, 1, 1, 1)
    assert await frontier.add(urls("lost-1")) == urls("lost-1")  # never queued


async def test_a_lease_made_for_a_cancelled_claim_goes_to_the_next_claim(make: Make) -> None:
    frontier = await make(concurrency=100)
    for n in range(25):  # cancel at a different point of the claim each time
        await frontier.add(urls(f"{n}"))
        task = asyncio.create_task(frontier.claim())
        for _ in range(n):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait([task], timeout=5)
        got = await lease_of(frontier, timeout=5) if task.cancelled() else task.result()
        assert isinstance(got, Lease) and got.request == urls(f"{n}")[0]
        await ack(frontier, got)


async def test_a_repeated_claim_of_many_gets_the_same_leases(
    make: Make, server: RedisServer
) -> None:
    proxy = CuttingProxy(server.port)
    await proxy.start()
    try:
        frontier = await make(url=proxy.url)
        await frontier.add(urls("1", "2", "3", "4"))
        proxy.cut_next_reply = True
        got = await asyncio.gather(*(frontier.claim() for _ in range(3)))
        assert proxy.cuts == 1
        assert sorted(lease.request.url[-1] for lease in got if isinstance(lease, Lease)) == [
            "1",
            "2",
            "3",
        ]
        assert (await status_of(frontier)).leased == 3  # not six
    finally:
        await proxy.close()


async def test_priorities_within_and_across_hosts(make: Make) -> None:
    frontier = await make()

    async def order(requests: list[Request]) -> list[str]:
        await frontier.add(requests)
        return [(await lease_of(frontier)).request.url[7:] for _ in requests]

    within = [
        Request("http://a.test/0"),
        Request("http://a.test/5", priority=5),
        Request("http://a.test/1", priority=1),
        Request("http://a.test/5b", priority=5),
    ]
    assert await order(within) == ["a.test/5", "a.test/5b", "a.test/1", "a.test/0"]
    across = [
        Request("http://b.test/1", priority=1),
        Request("http://c.test/3", priority=3),
        Request("http://d.test/3", priority=3),
        Request("http://b.test/9", priority=9),
    ]
    # The host with the best request first; equal ones in the order they became ready.
    assert await order(across) == ["b.test/9", "c.test/3", "d.test/3", "b.test/1"]


async def test_batches_longer_than_lua_can_unpack_at_once(make: Make) -> None:
    frontier = await make(concurrency=3000)  # Lua unpacks ~8000 values: scripts slice
    pages = urls(*(str(n) for n in range(2500)))
    assert await frontier.add(pages) == pages
    got = await asyncio.gather(*(frontier.claim() for _ in range(2500)))
    leases = [lease for lease in got if isinstance(lease, Lease)]
    assert sorted(lease.request.url for lease in leases) == sorted(r.url for r in pages)
    found = await frontier.settle([Settlement(lease) for lease in leases])
    assert found == [[]] * 2500
    status = await status_of(frontier)
    assert (status.pending, status.leased, status.done) == (0, 0, 2500)


async def test_claims_made_together_get_what_claims_one_by_one_would(make: Make) -> None:
    one_by_one, together = await make(prefix="fw:one:"), await make(prefix="fw:all:")
    requests = [
        Request(f"http://{host}.test/{path}", priority=int(path[0]))
        for host, path in [
            ("a", "5"),
            ("a", "3"),
            ("a", "1"),
            ("b", "4"),
            ("b", "3"),
            ("c", "3"),
            ("a", "3b"),
            ("e", "9"),
            ("e", "8"),
        ]
    ]
    await one_by_one.add(requests)
    await together.add(requests)
    expected = [(await lease_of(one_by_one)).request for _ in range(8)]
    got = await asyncio.gather(*(together.claim() for _ in range(8)))
    assert [lease.request for lease in got if isinstance(lease, Lease)] == expected
    # Best first, ties by when the host became ready: a host keeps its turn for a second
    # request only while that request outranks every other host's best.
    assert [request.url[7:] for request in expected] == [
        "e.test/9",
        "e.test/8",
        "a.test/5",
        "b.test/4",
        "c.test/3",
        "a.test/3",
        "b.test/3",
        "a.test/3b",
    ]


async def test_reopening_resumes_a_crawl_and_close_hands_leases_back(make: Make) -> None:
    first = await make(open=False)
    assert await first.open() == Saved()
    await first.add(urls("1", "2"))
    await ack(first, await lease_of(first), [])
    await lease_of(first)
    await first.close()  # holding the lease of "2"

    again = await make()
    assert again.counts().pending == 1 and again.counts().leased == 0
    await ack(again, await lease_of(again), [])
    await again.close()
    last = await make(open=False)
    assert await last.open() == Saved(resumed=True, finished=True, settled=2)


async def test_a_worker_stopping_while_redis_does_not_answer_waits_for_it_briefly(
    make: Make, proxy: CuttingProxy, caplog: pytest.LogCaptureFixture
) -> None:
    # A frozen Redis (SIGSTOP) kept a worker told to stop for up to 40 s more.
    frontier = await make(url=proxy.url)
    await frontier.add(urls("1"))
    await lease_of(frontier)
    proxy.hold_when(lambda: True)
    async with asyncio.timeout(6):  # its own deadline, 3 s, and a margin
        await frontier.close()
    assert "did not answer within 3s: 1 leases go back" in caplog.text
    proxy.release()


async def test_a_meta_that_is_not_json_is_refused_and_nothing_breaks(make: Make) -> None:
    frontier = await make()
    with pytest.raises(CrawlAborted, match="JSON"):
        await frontier.add(urls("1", meta={"handle": object()}))
    await frontier.add(urls("2"))
    lease = await lease_of(frontier)
    with pytest.raises(CrawlAborted):
        await ack(frontier, lease, urls("3", meta={"handle": object()}))
    assert await ack(frontier, lease, urls("3")) == urls("3")  # the lease was kept


async def test_options_and_mistakes_in_the_url(server: RedisServer) -> None:
    politeness = Politeness(HostPolicy(1, 0.0), {})
    frontier = RedisFrontier(
        f"{server.url}?lease=12&prefix=x:&health_check_interval=5", politeness, name="n"
    )
    assert (frontier.lease, frontier.prefix) == (12.0, "x:")
    assert frontier.url == f"{server.url}?health_check_interval=5"
    assert RedisFrontier(server.url, politeness, name="n").prefix == "fw:n:"
    with pytest.raises(UsageError, match="lease=soon"):
        RedisFrontier(f"{server.url}?lease=soon", politeness, name="n")
    assert where(server.url, "n").patience == 600  # ten minutes, unless told
    assert where(f"{server.url}?patience=2.5", "n") == (server.url, "fw:n:", 30, 2.5)
    assert where(f"{server.url}?patience=inf", "n").patience == math.inf
    with pytest.raises(UsageError, match=r"patience=0\.5: expected at least 1 second, or inf$"):
        where(f"{server.url}?patience=0.5", "n")
    with pytest.raises(UsageError, match=r"patience= is given twice; give it once$"):
        where(f"{server.url}?patience=abc&patience=2", "n")
    for wrong in ("0", "-1", "soon", ""):
        with pytest.raises(
            UsageError, match=f"patience={wrong}: expected a number of seconds > 0, or inf$"
        ):
            where(f"{server.url}?patience={wrong}", "n")
    with pytest.raises(UsageError, match="no crawl state"):
        await status_of(frontier)


# -------------------------------------------------------------------------------------------
# Several workers
# -------------------------------------------------------------------------------------------


async def test_dedup_and_seeding_are_shared(make: Make, server: RedisServer) -> None:
    one, two = await make(), await make()
    assert await one.add(urls("1", "2")) == urls("1", "2")
    assert await two.add(urls("2", "3", "1")) == urls("3")  # a second worker seeds again
    assert await one.add(urls("2", dont_filter=True)) == urls("2", dont_filter=True)
    lease = await lease_of(two)
    assert await ack(two, lease, urls("1", "4")) == urls("4")
    assert (await status_of(one)).pending == 4
    with server.client() as client:  # fingerprints stay compact integer sets
        shards = list(client.scan_iter(match=PREFIX + "seen:*"))
        assert len(shards) == 4
        assert {client.object("encoding", key) for key in shards} == {b"intset"}


async def test_host_concurrency_holds_across_workers(make: Make) -> None:
    one, two = await make(concurrency=2), await make(concurrency=2)
    await one.add(urls("1", "2", "3"))
    held = [await lease_of(one), await lease_of(two)]
    await two.add(urls("x", host="b.test"))
    assert (await lease_of(two)).host == "b.test"  # a full host does not block others
    got = await two.claim()
    assert isinstance(got, float) and got <= 0.05
    await ack(one, held[0], [])
    assert (await lease_of(two)).request == urls("3")[0]


@pytest.mark.parametrize(
    ("delay", "rate", "tuned"),
    [(0.2, None, None), (0.0, 5.0, None), (0.0, None, 0.2)],
    ids=["delay", "rate", "tuned"],
)
async def test_starts_are_spaced_across_workers(
    make: Make, server: RedisServer, delay: float, rate: float | None, tuned: float | None
) -> None:
    one, two = await make(delay=delay, rate=rate), await make(delay=delay, rate=rate)
    await one.add(urls(*"123456"))
    if tuned is not None:
        await two.tune("a.test", delay=tuned)

    async def take(worker: RedisFrontier, count: int) -> None:
        for _ in range(count):
            await lease_of(worker)

    await asyncio.gather(take(one, 2), take(two, 2))
    with server.client() as client:  # each lease expires 30 s after it started, server time
        starts = [
            score - 30 for _, score in client.zrange(PREFIX + "leases", 0, -1, withscores=True)
        ]
    assert len(starts) == 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # The least gap the policy allows: a rate's interval, or half the delay.
    assert min(gaps) >= (0.2 if rate else 0.1) - 0.001, gaps
    # Each turn comes a delay after the one before, moved to a wave (1/32 s for 0.2 s).
    assert starts[-1] - starts[0] >= 3 * (0.2 - 1 / 64) - 0.001, gaps


async def test_a_hosts_next_turn_is_on_a_wave_of_its_pace(make: Make, server: RedisServer) -> None:
    worker = await make(delay=0.4)  # the next start 0.4 s after one, at a wave of 1/16 s
    await worker.add(urls("1", "2"))
    await lease_of(worker)
    with server.client() as client:
        last, due = (float(value) for value in client.hmget(PREFIX + "h:a.test", "last", "next"))
    assert abs(due - (last + 0.4)) <= 1 / 32  # the nearest wave
    assert (due * 16).is_integer()


async def test_a_start_late_in_its_wave_counts_the_delay_from_the_turn(
    make: Make, server: RedisServer
) -> None:
    worker = await make(delay=1.6)  # waves of 1/4 s
    await worker.add(urls("1", "2"))
    await lease_of(worker)
    with server.client() as client:
        turn = float(client.hget(PREFIX + "h:a.test", "next"))
        seconds, micros = client.time()
    await asyncio.sleep(turn + 0.1 - (seconds + micros / 1e6))  # start 0.1 s late, on purpose
    await lease_of(worker)
    with server.client() as client:
        last, due = (float(value) for value in client.hmget(PREFIX + "h:a.test", "last", "next"))
    assert turn + 0.1 <= last < turn + 0.25, "the test needs a start late within the wave"
    assert due == turn + 1.5  # from the turn, 1.6 s on the nearest wave; from the start, 1.75


async def test_a_pause_holds_every_worker(make: Make) -> None:
    one, two = await make(), await make()
    await one.add(urls("1"))
    await one.tune("a.test", pause=0.5)
    got = await two.claim()
    assert isinstance(got, float) and 0 < got <= 0.5
    assert (await lease_of(two)).request == urls("1")[0]


async def test_claim_waits_for_other_workers_and_none_ends_the_crawl(make: Make) -> None:
    one, two = await make(), await make()
    await one.add(urls("1"))
    lease = await lease_of(one)
    got = await two.claim()
    assert isinstance(got, float) and got <= 0.05  # one may still discover more
    await ack(one, lease, [])
    assert await two.claim() is None
    assert await one.claim() is None


async def test_an_expired_lease_goes_back_and_a_late_ack_changes_nothing(make: Make) -> None:
    slow, other = await make(lease=1), await make(lease=1)
    await slow.add(urls("1"))
    late = await lease_of(slow)
    await stall(slow)
    taken = await lease_of(other)  # once the lease expired, a claim puts it back
    assert taken.request == late.request
    with pytest.raises(LeaseLost):
        await ack(slow, late, urls("found-late"))
    status = await status_of(other)
    assert (status.leased, status.done, status.pending) == (1, 0, 0)
    assert await ack(other, taken, urls("found-late")) == urls("found-late")  # still new


async def test_status_counts_hosts_and_workers(make: Make, server: RedisServer) -> None:
    one, two = await make(), await make()
    await one.add(urls("1", "2") + urls("1", host="b.test"))
    await fail(one, await lease_of(one), "timeout")
    await lease_of(two)
    await two.close()
    reader = RedisFrontier(
        f"{server.url}?prefix={PREFIX}", Politeness(HostPolicy(1, 0), {}), name="x"
    )
    status = await status_of(reader)  # not opened: a connection of its own
    assert (status.backend, status.pending, status.leased, status.failed) == ("redis", 2, 0, 1)
    assert status.hosts == {
        "a.test": HostStatus(pending=1, failed=1),
        "b.test": HostStatus(pending=1),
    }
    workers = {worker.id: worker for worker in status.workers}
    assert workers[one.worker].alive and not workers[two.worker].alive
    assert all(0 <= worker.idle < 5 for worker in status.workers)


async def test_opening_forgets_workers_silent_for_a_day_and_their_call_records(
    make: Make, server: RedisServer
) -> None:
    dead = await make()
    await dead.add(urls("1"))
    await stall(dead)
    calls = f"{PREFIX}calls:{dead.worker}"
    with server.client() as client:
        assert client.exists(calls)
        client.hset(PREFIX + "workers", dead.worker, "1000.5")  # its last beat, long ago
        alive = await make()
        assert not client.exists(calls)
    assert [worker.id for worker in (await status_of(alive)).workers] == [alive.worker]


async def test_fresh_wipes_this_crawl_only(make: Make) -> None:
    old, neighbour = await make(), await make(prefix="fw:other:")
    await old.add(urls("1", "2"))
    await ack(old, await lease_of(old), [])
    await neighbour.add(urls("1"))
    await old.close()

    fresh = await make(fresh=True)
    assert fresh.counts().pending == 0
    assert await fresh.add(urls("1")) == urls("1")
    assert (await status_of(neighbour)).pending == 1


@pytest.mark.parametrize(
    ("query", "name", "error"),
    [
        ("?prefix=fw:a:q:", "a", "frontier: the key prefix 'fw:a:q:' has the part 'q'"),
        ("?prefix=seen:", "a", "prefix 'seen:' has the part 'seen'"),
        ("?prefix=fw:shop", "a", "frontier: the key prefix 'fw:shop' must end with ':'"),
        ("?prefix=", "a", "prefix '' must end with ':'"),
        ("", "calls", "prefix 'fw:calls:' has the part 'calls', a name fw gives keys of its own"),
        ("", "h", "could delete this one's keys; rename the project (name:) or set ?prefix="),
    ],
)
def test_a_prefix_that_could_nest_in_another_crawls_keys_is_refused(
    query: str, name: str, error: str
) -> None:
    # fw run --fresh under fw:a: deletes every fw:a:q:… key: all of a crawl under fw:a:q:.
    with pytest.raises(UsageError, match=re.escape(error)):
        where(f"redis://127.0.0.1:6379/0{query}", name)
    assert where("redis://127.0.0.1:6379/0?prefix=fw:shop:eu:", "a").prefix == "fw:shop:eu:"
    assert where("redis://127.0.0.1:6379/0", "quick").prefix == "fw:quick:"


async def test_two_prefixes_do_not_interfere(make: Make) -> None:
    one, two = await make(concurrency=1), await make(concurrency=1, prefix="fw:two:")
    assert await one.add(urls("1")) == urls("1")
    assert await two.add(urls("1")) == urls("1")
    assert (await lease_of(one)).request == (await lease_of(two)).request  # no shared slot
    assert (await status_of(one)).leased == (await status_of(two)).leased == 1


# -------------------------------------------------------------------------------------------
# Outages
# -------------------------------------------------------------------------------------------


async def test_an_outage_pauses_a_call_until_redis_is_back(
    make: Make, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fw")
    heard = Heard("unreachable")
    logging.getLogger("fw").addHandler(heard)
    frontier = await make()
    await frontier.add(urls("1", "2"))
    lease = await lease_of(frontier)
    server.stop()
    acking = asyncio.create_task(ack(frontier, lease, urls("3")))
    claim = asyncio.create_task(frontier.claim())
    try:
        await asyncio.wait_for(heard.event.wait(), 10)
    finally:
        logging.getLogger("fw").removeHandler(heard)
    assert not acking.done() and not claim.done()
    server.start()  # the same port and append-only file
    assert await asyncio.wait_for(acking, 15) == urls("3")
    assert isinstance(await asyncio.wait_for(claim, 15), Lease)
    messages = [r.getMessage() for r in caplog.records if r.name == "fw"]
    assert len([m for m in messages if "unreachable" in m]) == 1
    assert messages[0].startswith(f"redis at 127.0.0.1:{server.port} is unreachable (")
    assert messages[0].endswith("); pausing until it is back, for up to 600s")
    assert "redis is back; resuming" in messages
    status = await status_of(frontier)
    assert (status.pending, status.leased, status.done) == (1, 1, 1)


async def test_a_claim_drops_a_ready_entry_whose_host_state_is_gone(
    make: Make, server: RedisServer
) -> None:
    # An evicted or deleted host key left its entry in the ready list, and the claim
    # script took it for ever, holding Redis until SHUTDOWN NOSAVE.
    frontier = await make(concurrency=1)
    await frontier.add(urls("1", "2"))
    with redis.Redis(port=server.port) as raw:
        assert raw.delete(f"{PREFIX}h:a.test") == 1
    first = await lease_of(frontier)
    await ack(frontier, first)
    second = await lease_of(frontier)
    assert sorted([first.request.url, second.request.url]) == ["http://a.test/1", "http://a.test/2"]
    await ack(frontier, second)
    assert await asyncio.wait_for(frontier.claim(), 10) is None  # over, not taken for ever
    with redis.Redis(port=server.port, socket_timeout=5) as raw:
        assert raw.ping()  # answering: no script holds it


#: A read-only script that holds Redis for 1.5 s: other clients are answered BUSY meanwhile.
BUSY_SCRIPT = """
local start = redis.call('TIME')
repeat
  local now = redis.call('TIME')
until (now[1] - start[1]) * 1000000 + (now[2] - start[2]) > 1500000
return 1
"""


@pytest.mark.parametrize("server", [["--lua-time-limit", "20"]], indirect=True, ids=["busy"])
async def test_a_redis_busy_with_another_clients_script_is_waited_out(
    make: Make, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fw")
    frontier = await make()
    await frontier.add(urls("1", "2"))
    other, probe = redis.Redis(port=server.port), redis.Redis(port=server.port)
    try:
        holding = asyncio.create_task(asyncio.to_thread(other.eval, BUSY_SCRIPT, 0))
        await asyncio.to_thread(_until_busy, probe, 10)
        claimed = await asyncio.wait_for(frontier.claim(), 15)
        assert await holding == 1
    finally:
        other.close()
        probe.close()
    assert isinstance(claimed, Lease)
    messages = [r.getMessage() for r in caplog.records if r.name == "fw"]
    assert any("is unreachable (BUSY Redis is busy running a script" in m for m in messages)
    assert "redis is back; resuming" in messages


@pytest.mark.parametrize(
    "server",
    [["--lua-time-limit", "20", "--maxmemory-policy", "allkeys-lru"]],
    indirect=True,
    ids=["busy-allkeys-lru"],
)
async def test_a_worker_starting_on_a_busy_redis_waits_and_still_checks_its_policy(
    make: Make, server: RedisServer
) -> None:
    other, probe = redis.Redis(port=server.port), redis.Redis(port=server.port)
    try:
        holding = asyncio.create_task(asyncio.to_thread(other.eval, BUSY_SCRIPT, 0))
        await asyncio.to_thread(_until_busy, probe, 10)
        with pytest.raises(UsageError, match="has maxmemory-policy allkeys-lru, which evicts"):
            await asyncio.wait_for(make(), 15)
        assert await holding == 1
    finally:
        other.close()
        probe.close()


def _until_busy(client: redis.Redis, seconds: float) -> None:
    """Ping until Redis answers BUSY, a round trip at a time; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            client.ping()
        except redis.ResponseError as exc:
            if str(exc).startswith("BUSY"):
                return
            raise
    raise AssertionError(f"Redis was not busy within {seconds}s")


async def test_a_call_gives_up_after_its_patience_and_every_later_call_at_once(
    make: Make, server: RedisServer
) -> None:
    frontier = await make(patience="1")
    await frontier.add(urls("1", "2"))
    server.stop()  # and it never comes back
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(CrawlAborted) as raised:
        async with asyncio.timeout(10):
            await frontier.claim()
    assert 1 <= loop.time() - began < 5
    assert str(raised.value) == (
        f"redis at 127.0.0.1:{server.port} did not answer for 1s (the frontier URL's "
        "?patience=); 0 pages settled by this worker, its exports are complete up to them; "
        "a rerun continues once Redis is back"
    )
    began = loop.time()
    with pytest.raises(CrawlAborted, match="did not answer for 1s"):
        await frontier.add(urls("3"))
    assert loop.time() - began < 0.5  # the worker is stopping: no second wait
    server.start()


async def test_a_frozen_redis_is_given_up_on_before_its_sockets_timeout(
    make: Make, proxy: CuttingProxy
) -> None:
    # A SIGSTOPped Redis accepts and never answers: redis-py's own timeout is 30 s.
    frontier = await make(url=proxy.url, patience="1")
    proxy.hold_when(lambda: True)
    with pytest.raises(CrawlAborted, match="did not answer for 1s"):
        async with asyncio.timeout(6):
            await frontier.add(urls("1"))
    proxy.release()


async def test_patience_counts_from_redis_last_answer_so_a_flapping_redis_is_waited_out(
    make: Make, server: RedisServer
) -> None:
    # Each outage is shorter than the patience, all of them together longer: the first
    # version counted them all against one call and gave up.
    frontier = await make(patience="3")
    adding = asyncio.create_task(keep_adding(frontier))
    for _ in range(3):
        server.stop()
        await asyncio.sleep(1.8)  # an outage: a call's backoff had grown past what follows
        server.start()
        await asyncio.sleep(0.5)  # Redis back for a moment
    assert not adding.done(), adding
    adding.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await adding
    assert (await status_of(frontier)).pending > 3


async def keep_adding(frontier: RedisFrontier) -> None:
    for n in itertools.count():
        await frontier.add(urls(str(n)))


async def test_a_long_wipe_redis_answers_all_along_is_no_outage(
    make: Make, proxy: CuttingProxy, server: RedisServer
) -> None:
    # A --fresh of a big crawl is one call of many SCAN pages: it took more than the
    # patience, every page answered, and the worker gave up.
    with server.client() as client:
        client.mset({f"{PREFIX}calls:old{n}": 1 for n in range(12_000)})
    proxy.slow = 0.1  # each of the wipe's 12 or more pages: 1.2 s at least, past patience
    frontier = await make(url=proxy.url, patience="1", fresh=True)
    assert frontier.counts().pending == 0
    with server.client() as client:
        assert not client.keys(f"{PREFIX}calls:old*")


async def test_a_redis_down_when_a_worker_starts_is_given_up_on_too(
    server: RedisServer,
) -> None:
    frontier = RedisFrontier(
        f"{server.url}?patience=1", Politeness(HostPolicy(1, 0.0), {}), name="n"
    )
    server.stop()
    try:
        with pytest.raises(CrawlAborted, match="did not answer for 1s"):
            async with asyncio.timeout(6):
                await frontier.open()
    finally:
        await frontier.close()
        server.start()


async def test_a_redis_restarted_between_two_calls_counts_as_one_that_may_forget(
    make: Make, server: RedisServer
) -> None:
    frontier = await make()
    await frontier.add(urls("1"))
    before = frontier.forgets
    server.stop()
    server.start()  # no call fails: redis-py reconnects on its own, to a new run of Redis
    await frontier.add(urls("2"))
    assert frontier.forgets > before  # the worker's memo of what was queued is void


async def test_a_call_whose_answer_was_lost_is_not_run_twice(
    make: Make, server: RedisServer
) -> None:
    proxy = CuttingProxy(server.port)
    await proxy.start()
    try:
        frontier = await make(url=proxy.url)
        proxy.cut_next_reply = True
        assert await frontier.add(urls("1", "2")) == urls("1", "2")
        proxy.cut_next_reply = True
        lease = await frontier.claim()
        assert isinstance(lease, Lease) and frontier.counts().leased == 1
        proxy.cut_next_reply = True
        assert await ack(frontier, lease, urls("3")) == urls("3")
        assert proxy.cuts == 3
        status = await status_of(frontier)
        assert (status.pending, status.leased, status.done) == (2, 0, 1)
    finally:
        await proxy.close()


async def test_a_cancelled_call_ends_at_once_and_leaves_the_frontier_usable(make: Make) -> None:
    frontier = await make(concurrency=100)

    async def busy() -> None:  # like an engine worker
        while True:
            await frontier.add(urls("seed"))
            await frontier.claim()

    for yields in range(60):  # cancel at a different point of a call each time
        task = asyncio.create_task(busy())
        for _ in range(yields % 17):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        assert done and task.cancelled(), "the cancellation was lost"
    await frontier.add(urls("last"))
    lease = await lease_of(frontier)
    assert await ack(frontier, lease, urls("new")) == urls("new")
    assert (await status_of(frontier)).done == 1


# -------------------------------------------------------------------------------------------
# A crawl's state that vanishes
# -------------------------------------------------------------------------------------------


def gone(url: str, settled: int, unsettled: int = 0) -> str:
    """The error that stops a worker whose crawl's state is no longer in Redis."""
    more = (
        f", and hold the items of {unsettled} more whose settling did not go through: "
        "another worker may export them again"
    )
    return (
        f"the crawl's state in Redis at {url} is gone (flushed or restarted without "
        f"persistence); {settled} pages settled by this worker, its exports are complete "
        f"up to them{more if unsettled else ''}"
    )


def flush(server: RedisServer, password: str | None = None) -> None:
    """Empty the server, as ``redis-cli FLUSHALL`` would."""
    with server.client() as client:
        if password is not None:
            client.connection_pool.connection_kwargs["password"] = password
        client.flushall()


def keys_in(server: RedisServer) -> int:
    with server.client() as client:
        return int(client.dbsize())


async def settle_two_hold_one(frontier: RedisFrontier) -> Lease:
    """Settle two pages, one done and one failed; return the lease of a third, held."""
    await frontier.add(urls("1", "2", "3"))
    await ack(frontier, await lease_of(frontier))
    await fail(frontier, await lease_of(frontier), "http_404")
    return await lease_of(frontier)


CALLS: dict[str, Callable[[RedisFrontier, Lease], Awaitable[Any]]] = {
    "claim": lambda frontier, lease: frontier.claim(),
    "settle": ack,
    "push": lambda frontier, lease: frontier.add(urls("4")),
    "retry": lambda frontier, lease: frontier.retry(lease, lease.request, 0.0),
    "tune": lambda frontier, lease: frontier.tune("a.test", delay=1.0),
}


@pytest.mark.parametrize("call", CALLS)
async def test_a_flush_stops_the_worker_at_its_next_call_and_it_writes_nothing(
    make: Make, server: RedisServer, call: str
) -> None:
    frontier = await make()
    held = await settle_two_hold_one(frontier)
    flush(server)
    with pytest.raises(CrawlAborted) as raised:
        await CALLS[call](frontier, held)
    # A page being settled has its items exported: they may come again from another worker.
    assert str(raised.value) == gone(server.url, 2, unsettled=int(call == "settle"))
    with pytest.raises(CrawlAborted):  # and every call after it
        await frontier.claim()
    await frontier.close()
    assert keys_in(server) == 0  # no stray key for a worker opening later to trip on


async def test_the_heartbeat_notices_a_flush_first_and_stops_beating(
    make: Make, server: RedisServer
) -> None:
    frontier = await make(lease=0.3)  # a beat every 0.1 s
    await frontier.add(urls("1"))
    await lease_of(frontier)
    flush(server)
    assert frontier._heartbeat is not None
    async with asyncio.timeout(5):
        await asyncio.shield(frontier._heartbeat)
    assert keys_in(server) == 0
    with pytest.raises(CrawlAborted, match="0 pages settled by this worker"):
        await frontier.claim()


async def test_a_worker_opening_after_a_flush_starts_a_new_crawl_the_old_one_stops(
    make: Make, server: RedisServer
) -> None:
    old = await make()
    await old.add(urls("1"))
    flush(server)
    new = await make(open=False)
    assert await new.open() == Saved()
    assert await new.add(urls("1")) == urls("1")
    with pytest.raises(CrawlAborted) as raised:
        await old.add(urls("2"))
    assert str(raised.value) == gone(server.url, 0)
    status = await status_of(new)
    assert status.pending == 1
    assert [worker.id for worker in status.workers] == [new.worker]


async def test_fresh_stops_the_running_workers_of_the_crawl_it_wiped(
    make: Make, server: RedisServer
) -> None:
    old = await make()
    await old.add(urls("1", "2"))
    await ack(old, await lease_of(old))
    fresh = await make(fresh=True)
    with pytest.raises(CrawlAborted) as raised:
        await old.claim()
    assert str(raised.value) == gone(server.url, 1)
    assert await fresh.add(urls("1")) == urls("1")
    status = await status_of(fresh)
    assert (status.pending, status.done) == (1, 0)
    assert [worker.id for worker in status.workers] == [fresh.worker]


async def test_a_restart_keeps_the_crawl_only_if_redis_kept_its_data(
    make: Make, server: RedisServer
) -> None:
    frontier = await make()
    await frontier.add(urls("1", "2", "3"))
    await ack(frontier, await lease_of(frontier))
    server.stop()
    server.start()  # from its append-only file
    await ack(frontier, await lease_of(frontier))
    assert frontier.counts().done == 2 and frontier.counts().pending == 1
    server.stop()
    server.appendonly = False  # and no RDB snapshot either: it starts empty
    server.start()
    with pytest.raises(CrawlAborted) as raised:
        await frontier.claim()
    assert str(raised.value) == gone(server.url, 2)


async def test_the_error_names_redis_without_its_credentials(
    make: Make, server: RedisServer
) -> None:
    with server.client() as client:
        client.config_set("requirepass", "s3cret")
    frontier = await make(url=f"redis://:s3cret@127.0.0.1:{server.port}/0")
    await frontier.add(urls("1"))
    flush(server, password="s3cret")
    with pytest.raises(CrawlAborted) as raised:
        await frontier.claim()
    assert str(raised.value) == gone(server.url.replace("redis://", "redis://***@"), 0)
    assert "s3cret" not in str(raised.value)


# -------------------------------------------------------------------------------------------
# --fresh: the wipe, and workers that open while it runs
# -------------------------------------------------------------------------------------------


async def wipe_held_midway(
    make: Make, server: RedisServer, proxy: CuttingProxy
) -> tuple[RedisFrontier, RedisFrontier, asyncio.Task[Saved]]:
    """Start a crawl of 5,000 requests, then a ``--fresh`` worker whose wipe is held midway
    (meta is the wipe's mark, part of the old keys are deleted); return the old worker,
    the --fresh one and the task opening it."""
    old = await make()
    await old.add(urls(*map(str, range(5000))))
    before = keys_in(server)

    def midway() -> bool:
        with server.client() as client:
            return bool(client.hexists(PREFIX + "meta", "wiping")) and client.dbsize() < before

    proxy.hold_when(midway)
    fresh = await make(fresh=True, url=proxy.url, open=False)
    opening = asyncio.create_task(fresh.open())
    await asyncio.wait_for(proxy.holding.wait(), 10)
    assert 1 < keys_in(server) < before
    return old, fresh, opening


async def test_a_worker_opening_during_a_fresh_wipe_waits_then_joins_the_new_crawl(
    server: RedisServer, proxy: CuttingProxy, make: Make
) -> None:
    old, fresh, opening = await wipe_held_midway(make, server, proxy)
    with pytest.raises(CrawlAborted, match="is gone"):  # the old crawl's workers stop
        await old.claim()
    heard = Heard("is wiping this crawl in redis at")
    logging.getLogger("fw").addHandler(heard)
    try:
        joiner = await make(open=False)
        joining = asyncio.create_task(joiner.open())
        await asyncio.wait_for(heard.event.wait(), 10)
    finally:
        logging.getLogger("fw").removeHandler(heard)
    assert not joining.done() and not opening.done()
    proxy.release()
    assert await asyncio.wait_for(opening, 10) == Saved()
    assert await asyncio.wait_for(joining, 10) == Saved()  # new to it too: exports restart
    assert await fresh.add(urls("1")) == urls("1")  # the old crawl's seen-set is gone
    assert await joiner.add(urls("1", "2")) == urls("2")  # one crawl, shared by both
    status = await status_of(joiner)
    assert (status.pending, status.done) == (2, 0)
    assert {worker.id for worker in status.workers} == {fresh.worker, joiner.worker}


async def test_a_wipe_killed_midway_stops_later_workers_until_fresh_wipes_again(
    server: RedisServer, proxy: CuttingProxy, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    _, _, opening = await wipe_held_midway(make, server, proxy)
    opening.cancel()  # the --fresh worker dies, its connection with it
    await proxy.close()
    with pytest.raises(asyncio.CancelledError):
        await opening
    left = keys_in(server)

    late = await make(lease=0.5, open=False)  # waits for the wipe until it is a lease idle
    with pytest.raises(UsageError) as raised:
        await late.open()
    assert re.fullmatch(
        rf"frontier: a `fw run --fresh` began wiping the crawl in Redis at {server.url} and "
        r"stopped \ds ago before it finished; run `fw run --fresh` to start the crawl over",
        str(raised.value),
    ), raised.value
    assert "is wiping this crawl" in caplog.text
    with pytest.raises(UsageError, match="before it finished"):
        await read_status(server.url, PREFIX, lease=0.5)
    assert keys_in(server) == left  # the late worker wrote nothing

    again = await make(fresh=True)
    assert await again.add(urls("1")) == urls("1")
    status = await status_of(again)
    assert (status.pending, status.done) == (1, 0)
    assert [worker.id for worker in status.workers] == [again.worker]


async def test_two_fresh_runs_at_once_end_in_one_crawl(
    server: RedisServer, proxy: CuttingProxy, make: Make
) -> None:
    _, first, opening = await wipe_held_midway(make, server, proxy)
    second = await make(fresh=True, open=False)
    assert await second.open() == Saved()  # takes the wipe over and finishes it
    assert await second.add(urls("1")) == urls("1")
    proxy.release()
    assert await asyncio.wait_for(opening, 10) == Saved()  # finds its wipe taken: joins
    assert await first.add(urls("1", "2")) == urls("2")
    status = await status_of(first)
    assert (status.pending, status.done) == (2, 0)
    assert {worker.id for worker in status.workers} == {first.worker, second.worker}


# -------------------------------------------------------------------------------------------
# A Redis out of memory, or one that would evict the crawl's keys
# -------------------------------------------------------------------------------------------


def out_of_memory(url: str, settled: int) -> str:
    """The error that stops a worker whose Redis refuses writes for lack of memory."""
    return (
        f"the Redis at {url} is out of memory (used memory > maxmemory) and refuses to store "
        f"more of the crawl; {settled} pages settled by this worker, its exports are "
        "complete up to them; a rerun continues once Redis has room"
    )


def set_maxmemory(server: RedisServer, limit: int) -> None:
    with server.client() as client:
        client.config_set("maxmemory", limit)


def totals(status: Status) -> tuple[int, ...]:
    return (status.pending, status.delayed, status.leased, status.done, status.failed)


NOEVICTION = ["--maxmemory", "100mb", "--maxmemory-policy", "noeviction"]


@pytest.mark.parametrize("server", [NOEVICTION], indirect=True, ids=["noeviction"])
@pytest.mark.parametrize("call", ["push", "claim"])
async def test_a_redis_out_of_memory_stops_the_worker_and_a_rerun_finishes_every_page_once(
    make: Make, server: RedisServer, call: str
) -> None:
    frontier = await make()
    held = await settle_two_hold_one(frontier)
    before = await status_of(frontier)
    set_maxmemory(server, 1)  # far below what Redis uses: every write that adds is refused
    with pytest.raises(CrawlAborted) as raised:
        await CALLS[call](frontier, held)
    assert str(raised.value) == out_of_memory(server.url, 2)
    after = await status_of(frontier)
    assert totals(after) == totals(before) and after.hosts == before.hosts  # all or nothing
    await frontier.close()  # Redis still full: the lease goes back all the same
    assert totals(await status_of(frontier)) == (1, 0, 0, 1, 1)

    set_maxmemory(server, 0)
    rerun = await make()
    assert await rerun.add(urls("1", "2", "3", "4")) == urls("4")  # the refused push added nothing
    for _ in range(2):
        await ack(rerun, await lease_of(rerun))
    assert await rerun.claim() is None
    assert totals(await status_of(rerun)) == (0, 0, 0, 3, 1)


@pytest.mark.parametrize(
    "server", [["--maxmemory-policy", "allkeys-lru"]], indirect=True, ids=["allkeys-lru"]
)
async def test_a_redis_that_would_evict_the_crawls_keys_is_refused(
    make: Make, server: RedisServer
) -> None:
    with pytest.raises(UsageError) as raised:
        await make()
    assert str(raised.value) == (
        f"frontier: redis at 127.0.0.1:{server.port} has maxmemory-policy allkeys-lru, which "
        "evicts the crawl's keys (its seen-set, its queue) when memory is full; set it to "
        "noeviction"
    )
    assert keys_in(server) == 0


@pytest.mark.parametrize(
    "server",
    [["--maxmemory-policy", "volatile-lru"], ["--rename-command", "CONFIG", ""]],
    indirect=True,
    ids=["volatile-lru", "config-disabled"],
)
async def test_a_redis_that_spares_keys_without_expiry_or_hides_its_config_is_used(
    make: Make, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fw")
    frontier = await make(lease=0.3)  # a heartbeat every 0.1 s
    await frontier.add(urls("1"))
    await ack(frontier, await lease_of(frontier), urls("2"))
    await lease_of(frontier)
    with server.client() as client:
        first = client.hget(PREFIX + "workers", frontier.worker)
        async with asyncio.timeout(5):  # until the heartbeat has run
            while client.hget(PREFIX + "workers", frontier.worker) == first:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        # No key of fw's ever expires: a volatile-* policy never evicts one.
        assert {client.ttl(key) for key in client.scan_iter(match=PREFIX + "*")} == {-1}
    disabled = "--rename-command" in server.options
    assert ("cannot read maxmemory-policy" in caplog.text) == disabled


async def test_a_settle_stopped_before_redis_answered_is_said_to_repeat_its_items(
    make: Make, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker stopped (a signal) while Redis holds its settle back: its export has the
    page's items, and whether Redis took the settle no one knows."""
    frontier = await make()
    await frontier.add(urls("1"))
    lease = await lease_of(frontier)
    with server.client() as client:
        client.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")  # the settle waits
        try:
            settling = asyncio.create_task(ack(frontier, lease))
            async with asyncio.timeout(5):
                while not frontier._settling:  # noqa: ASYNC110 - sent, not answered
                    await asyncio.sleep(0.01)
            settling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await settling
        finally:
            client.execute_command("CLIENT", "UNPAUSE")
    assert (
        "Redis did not answer the settling of 1 pages: their items are in this worker's "
        "exports, and if it did not take it, another worker exports them again"
    ) in caplog.messages
    await frontier.close()
