"""Politeness: per-host policies, adaptive throttling, Retry-After, robots.txt, pooling."""

from __future__ import annotations

import asyncio
import itertools
import math
import socket
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from framework.config.project import DomainPolicy
from framework.crawl import runner
from framework.fetch.politeness import HostPolicy, Politeness, Throttler, in_waves, wave_of
from tests.conftest import Serve, crawl, write_project
from tests.crawl.test_engine import SPIDER, Gauge, page


def politeness(**domains: DomainPolicy) -> Politeness:
    return Politeness(HostPolicy(4, 0.5), {k.replace("_", "."): v for k, v in domains.items()})


def test_the_most_specific_pattern_wins() -> None:
    rules = Politeness(
        HostPolicy(4, 0.5),
        {
            "*.douban.com": DomainPolicy(concurrency=2, delay=1.0),
            "*.movie.douban.com": DomainPolicy(delay=2.0),
            "img1.movie.douban.com": DomainPolicy(rate=3.0),
        },
    )
    assert rules.for_host("www.douban.com") == HostPolicy(2, 1.0)
    assert rules.for_host("x.movie.douban.com") == HostPolicy(4, 2.0)  # unset keys: defaults
    assert rules.for_host("img1.movie.douban.com") == HostPolicy(4, 0.5, 3.0)
    assert rules.for_host("douban.com") == HostPolicy(4, 0.5)  # *. needs a subdomain
    assert rules.for_host("example.com") == HostPolicy(4, 0.5)
    assert HostPolicy(1, 0, rate=4.0).interval == 0.25


def test_throttling_backs_off_on_429_and_recovers_toward_the_floor() -> None:
    throttle = Throttler(Politeness(HostPolicy(2, 0.1), {}), enabled=True, max_delay=3.0)
    assert throttle.observe("a", 429, 0.01) == 0.5
    assert throttle.observe("a", 503, 0.01) == 1.0
    assert throttle.timed_out("a") == 2.0  # a timeout counts as overload
    assert throttle.observe("a", 429, 0.01) == 3.0  # capped at max_delay
    assert throttle.observe("a", 404, 0.01) is None  # errors never speed a host up
    delays = [throttle.observe("a", 200, 0.02) for _ in range(12)]
    settled = [d for d in delays if d is not None]
    assert settled == sorted(settled, reverse=True) and settled[-1] == pytest.approx(0.1, 0.1)
    # A host that slows down gets latency / concurrency between requests; one that was
    # always slow is just slow, and a fast one stays at its configured pace.
    roomy = Throttler(Politeness(HostPolicy(2, 0.1), {}), enabled=True, max_delay=10.0)
    assert [roomy.observe("b", 200, t) for t in (0.2, 0.3, 0.2)] == [None, None, None]
    assert roomy.observe("b", 200, 4.0) == 2.0
    assert roomy.observe("always-slow", 200, 4.0) is None
    assert roomy.observe("fast", 200, 0.2) is None and roomy.observe("fast", 200, 0.02) is None


@pytest.mark.parametrize("surprise", ["timeout", "quick 404", "quick redirect"])
def test_a_timeout_or_a_quick_error_page_leaves_the_latency_baseline_alone(surprise: str) -> None:
    # A timeout was once learnt as a 0 s reply: from then on every page slower than 0.25 s
    # was "slow", and the delay never came back down.
    throttle = Throttler(Politeness(HostPolicy(2, 0.0), {}), enabled=True, max_delay=60.0)
    assert [throttle.observe("h", 200, 0.3) for _ in range(5)] == [None] * 5
    if surprise == "timeout":
        assert throttle.timed_out("h") == 0.5
    else:
        throttle.observe("h", 404 if surprise == "quick 404" else 301, 0.001)
    for _ in range(30):
        throttle.observe("h", 200, 0.3)
    assert throttle.slowed() == {}  # back at its configured pace
    assert throttle.observe("h", 200, 0.7) == 0.35  # and a slowdown is still seen


def test_disabled_throttling_changes_nothing_but_crawl_delay_still_counts() -> None:
    throttle = Throttler(Politeness(HostPolicy(2, 0.1), {}), enabled=False, max_delay=3.0)
    assert throttle.observe("a", 429, 0.01) is None
    assert throttle.raise_floor("a", 0.05) is None  # below the configured delay
    assert throttle.raise_floor("a", 2.0) == 2.0 and throttle.floor("a") == 2.0


@pytest.mark.parametrize("delay", [0.3, 0.4, 1.0, 2.0, 7.5, 60.0])
def test_a_turn_moves_to_the_nearest_wave_and_never_before_the_earliest(delay: float) -> None:
    wave = wave_of(delay)
    for at in (1000.0, 1000.001, 1000.0625, 12345.678, 1_733_000_000.123456):
        turn = in_waves(at, at - delay / 2, wave)
        assert abs(turn - at) <= delay / 8  # half a wave at most: the mean delay stays
        assert in_waves(turn, turn, wave) == turn  # a turn on a wave stays there
        assert at <= in_waves(at, at, wave) < at + delay / 4  # at the earliest: the next wave


def test_hosts_of_one_pace_due_a_few_ms_apart_come_due_together() -> None:
    due = {in_waves(1000.0 + ms / 1000, 999.0, wave_of(2.0)) for ms in range(-60, 60)}
    assert due == {1000.0}  # 120 hosts, one wave of 1/2 s: one turn of the event loop


def test_a_turn_half_way_between_two_waves_takes_the_later_as_the_redis_frontier_does() -> None:
    assert in_waves(1000.25, 999.0, wave_of(2.0)) == 1000.5  # not to the even wave, 1000.0


def test_a_delay_too_small_or_too_large_for_waves_makes_none() -> None:
    for delay in (5e-324, math.inf, 0.0, -1.0):
        assert wave_of(delay) == 0.0
        assert in_waves(1000.0123, 1000.0, wave_of(delay)) == 1000.0123
    assert wave_of(2.0) == 0.5 and wave_of(1.99) == 0.25 and wave_of(1e300) <= 1e300 / 4


def test_without_a_pace_a_turn_is_not_moved() -> None:
    assert in_waves(1000.0123, 1000.0, 0.0) == 1000.0123
    assert in_waves(-math.inf, -math.inf, wave_of(2.0)) == -math.inf  # a host that never started


def links_site(gauge: Gauge) -> web.Application:
    app = web.Application()
    app.router.add_get("/{tail:.*}", gauge.handle)
    return app


def project(tmp_path: Path, starts: list[str], extra: str = "") -> Path:
    (tmp_path / "links.py").write_text(SPIDER, encoding="utf-8")
    path = write_project(
        tmp_path,
        f"""
        spider: links
        start_urls: [{", ".join(starts)}]
        plugins: [./links.py]
        robots: ignore
        """,
    )
    with path.open("a", encoding="utf-8") as file:
        file.write(extra + "\n")
    return path


async def test_domain_overrides_set_each_hosts_concurrency(tmp_path: Path, serve: Serve) -> None:
    gauge = Gauge()
    a = await serve(links_site(gauge), "127.0.0.1")
    b = await serve(links_site(gauge), "127.0.0.2")
    c = (await serve(links_site(gauge), "127.0.0.1")).replace("127.0.0.1", "localhost")
    # 127.0.0.1 gets the longest pattern matching it, 127.0.0.2 its exact name (which beats
    # any pattern), localhost the defaults.
    path = project(
        tmp_path,
        [f"{a}/", f"{b}/", f"{c}/"],
        "concurrency: {total: 8, per_domain: 3}\ndomains:\n"
        "  '127.0.0.2': {concurrency: 1}\n  '127.0.0.*': {concurrency: 2}\n"
        "  '*.0.0.1': {concurrency: 4}",
    )
    stats = await crawl(path)
    assert stats.pages == 120
    assert gauge.peak == {"127.0.0.1": 2, "127.0.0.2": 1, "localhost": 3}


async def test_rate_caps_requests_per_second(tmp_path: Path, serve: Serve) -> None:
    starts: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        starts.append(asyncio.get_running_loop().time())
        n = int(request.path.strip("/") or 0)
        return page(f"/{n + 1}") if n < 5 else page()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    base = await serve(app)
    await crawl(project(tmp_path, [f"{base}/"], "rate: 10\nthrottle: false"))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # The crawler spaces the requests it sends; the server sees them after the network.
    # The first one also opens the connection, so it lands late and its gap looks short.
    assert len(gaps) == 5 and min(gaps[1:]) >= 0.1 * 0.95  # never jittered below 1/rate
    assert starts[-1] - starts[0] >= 4 * 0.1 * 0.95


async def test_429s_slow_a_host_down_and_healthy_replies_speed_it_up(
    tmp_path: Path, serve: Serve
) -> None:
    starts: list[tuple[str, float]] = []

    async def handler(request: web.Request) -> web.Response:
        starts.append((request.path, asyncio.get_running_loop().time()))
        if request.path in ("/busy1", "/busy2"):
            return web.Response(status=429)  # no Retry-After: throttling decides
        n = int(request.path.strip("/") or 0)
        return page(f"/{n + 1}") if n < 12 else page()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    base = await serve(app)
    path = project(
        tmp_path,
        [f"{base}/busy1", f"{base}/busy2", f"{base}/"],
        "concurrency: {total: 1, per_domain: 1}\nretries: 0",
    )
    stats = await crawl(path)
    assert stats.errors == {"http_429": 2} and stats.pages == 15
    times = [t for _, t in starts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # After two 429s the delay is 1 s (jittered 0.5-1.5x), then halves back toward zero.
    assert gaps[1] >= 0.5 * 0.5 and gaps[2] >= 1.0 * 0.5
    assert gaps[-1] < 0.05
    # It recovered: a host back at its pace is not named as throttled.
    assert stats.to_dict()["throttled"] == {}
    assert not any(line.startswith("throttled:") for line in stats.summary())


async def test_a_host_still_slowed_at_the_end_is_named_with_what_slowed_it(
    tmp_path: Path, serve: Serve
) -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.path.startswith("/busy"):
            return web.Response(status=503)
        return page()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    base = await serve(app)
    path = project(
        tmp_path,
        [f"{base}/", f"{base}/busy1", f"{base}/busy2"],
        "concurrency: {total: 1, per_domain: 1}\nretries: 0",
    )
    stats = await crawl(path)
    assert stats.to_dict()["throttled"] == {"127.0.0.1": 1.0}
    assert stats.to_dict()["throttled_why"] == {"127.0.0.1": "answered 429/503"}
    assert "throttled: 127.0.0.1 1s (answered 429/503), still slowed when the crawl ended" in (
        stats.summary()
    )


@pytest.mark.parametrize("status", [429, 503])
async def test_with_throttling_off_429_and_503_do_not_slow_a_host_down(
    tmp_path: Path, serve: Serve, status: int
) -> None:
    starts: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        starts.append(asyncio.get_running_loop().time())
        if request.path.startswith("/busy"):
            return web.Response(status=status)  # no Retry-After: only throttling would wait
        n = int(request.path.strip("/") or 0)
        return page(f"/{n + 1}") if n < 4 else page()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    base = await serve(app)
    path = project(
        tmp_path,
        [*(f"{base}/busy{n}" for n in range(4)), f"{base}/"],
        "throttle: false\nretries: 0\nconcurrency: {total: 1, per_domain: 1}",
    )
    stats = await crawl(path)
    assert stats.errors == {f"http_{status}": 4} and stats.pages == 9
    # Throttling would have waited at least 0.25 + 0.5 + 1 + 2 s after these four.
    assert starts[-1] - starts[0] < 1.0
    assert stats.to_dict()["throttled"] == {}


async def test_retry_after_pauses_the_whole_host(tmp_path: Path, serve: Serve) -> None:
    starts: dict[str, list[float]] = {}

    async def handler(request: web.Request) -> web.Response:
        times = starts.setdefault(request.path, [])
        times.append(asyncio.get_running_loop().time())
        if request.path == "/busy" and len(times) == 1:
            return web.Response(status=503, headers={"Retry-After": "1"})
        return page("/other") if request.path == "/busy" else page()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    base = await serve(app)
    path = project(tmp_path, [f"{base}/busy"], "throttle: false")
    stats = await crawl(path)
    assert stats.retries == 1 and stats.pages == 3
    assert starts["/busy"][1] - starts["/busy"][0] >= 1.0


async def test_a_retry_after_beyond_backoff_max_rests_the_host_only_backoff_max(
    tmp_path: Path, serve: Serve
) -> None:
    starts: list[tuple[str, float]] = []

    async def handler(request: web.Request) -> web.Response:
        starts.append((request.path, asyncio.get_running_loop().time()))
        if request.path == "/limited":
            return web.Response(status=429, headers={"Retry-After": "3600"})
        n = int(request.path.strip("/") or 0)
        return page(f"/{n + 1}") if n < 5 else page()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    base = await serve(app)
    path = project(
        tmp_path,
        [f"{base}/limited", f"{base}/"],
        "throttle: false\nbackoff: {base: 0.01, max: 0.5}\nconcurrency: {total: 1, per_domain: 1}",
    )
    async with asyncio.timeout(20):  # the host once rested the whole hour
        stats = await crawl(path)
    assert stats.errors == {"http_429": 1} and stats.pages == 7
    assert [p for p, _ in starts] == ["/limited", "/", "/1", "/2", "/3", "/4", "/5"]
    assert starts[1][1] - starts[0][1] >= 0.5  # it did rest, as long as backoff.max


def robots_site(robots: web.Response | None, hits: Counter[str]) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        hits[request.path] += 1
        if request.path == "/robots.txt":
            if robots is None:
                raise web.HTTPNotFound
            return robots
        return page("/private/x", "/public/1", "/public/2")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    return app


ROBOTS = "User-agent: *\nDisallow: /private/\nCrawl-delay: 0.3\n"


async def test_robots_txt_is_obeyed_cached_and_its_crawl_delay_kept(
    tmp_path: Path, serve: Serve
) -> None:
    hits: Counter[str] = Counter()
    base = await serve(robots_site(web.Response(text=ROBOTS), hits))
    path = project(tmp_path, [f"{base}/"], "concurrency: {total: 4, per_domain: 4}")
    stats = await crawl(path, "robots=obey")
    # Read once for the whole site, although four workers asked at the same time.
    assert hits == {"/robots.txt": 1, "/": 1, "/public/1": 1, "/public/2": 1}
    assert stats.filtered["robots"] == 1
    assert stats.to_dict()["robots"] == {"fetched": 1, "crawl_delay": {"127.0.0.1": 0.3}}
    assert "robots.txt Crawl-delay: 127.0.0.1 0.3s" in stats.summary()


async def test_a_crawl_delay_past_max_delay_is_capped_and_said(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    hits: Counter[str] = Counter()
    starts: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        hits[request.path] += 1
        if request.path == "/robots.txt":
            return web.Response(text="User-agent: *\nDisallow: /private/\nCrawl-delay: 1e9\n")
        starts.append(asyncio.get_running_loop().time())
        return page("/private/x", "/public/1", "/public/2")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    path = project(tmp_path, [f"{await serve(app)}/"], "throttle: {max_delay: 0.2}")
    async with asyncio.timeout(20):  # a billion seconds between pages once held it for good
        stats = await crawl(path, "robots=obey")
    assert hits == {"/robots.txt": 1, "/": 1, "/public/1": 1, "/public/2": 1}
    assert stats.crawl_delays == {"127.0.0.1": 0.2}
    assert "robots.txt Crawl-delay: 127.0.0.1 0.2s" in stats.summary()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [
        "127.0.0.1 asks for 1e+09s between requests (robots.txt Crawl-delay); waiting 0.2s, "
        "the longest of throttle.max_delay and the host's delay"
    ]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 2 and min(gaps) >= 0.2 * 0.5  # the capped delay, jittered
    caplog.clear()
    slower = await crawl(path, "robots=obey", "delay=0.3")  # a host's own delay is kept
    assert slower.crawl_delays == {} and [r.getMessage() for r in caplog.records] == [
        "127.0.0.1 asks for 1e+09s between requests (robots.txt Crawl-delay); waiting 0.3s, "
        "the longest of throttle.max_delay and the host's delay"
    ]


async def test_a_replay_waits_for_no_recorded_crawl_delay_or_retry_after(
    tmp_path: Path, serve: Serve
) -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.path == "/robots.txt":
            return web.Response(text="User-agent: *\nCrawl-delay: 30\n")
        if request.path == "/busy":
            return web.Response(status=503, headers={"Retry-After": "59"})
        return page("/busy", "/1", "/2")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    path = project(tmp_path, [f"{await serve(app)}/"])
    recording = tmp_path / "recording"
    # Recorded without waiting: Crawl-delay cut to nothing, Retry-After past backoff.max.
    quick = ["robots=obey", "throttle.max_delay=0", "backoff.max=0.1", "retries=0"]
    recorded = await runner.build_engine(
        runner.prepare(path, quick, record=recording), failures_file=False
    ).run()
    assert recorded.errors == {"http_503": 1} and recorded.pages == 4
    async with asyncio.timeout(10):  # honoured, they took 30 s a page and a minute a retry
        replayed = await runner.build_engine(
            runner.prepare(path, ["robots=obey"], replay=recording), failures_file=False
        ).run()
    assert replayed.errors == {"http_503": 1} and replayed.retries == 2
    assert replayed.pages == 6 and replayed.crawl_delays == {}


@pytest.mark.parametrize("compressed", [False, True])
async def test_a_robots_txt_over_the_size_cap_is_read_up_to_500_kib(
    tmp_path: Path, serve: Serve, compressed: bool
) -> None:
    hits: Counter[str] = Counter()
    huge = ROBOTS + "# padding\n" * 200_000  # 2 MB: over 500 KiB and over max_response_size
    answer = web.Response(text=huge)
    if compressed:
        answer.enable_compression()
    base = await serve(robots_site(answer, hits))
    stats = await crawl(project(tmp_path, [f"{base}/"]), "robots=obey", "max_response_size=100000")
    assert hits["/private/x"] == 0 and stats.filtered["robots"] == 1


async def test_crawl_delay_spaces_requests(tmp_path: Path, serve: Serve) -> None:
    starts: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/robots.txt":
            return web.Response(text=ROBOTS)
        starts.append(asyncio.get_running_loop().time())
        n = int(request.path.strip("/") or 0)
        return page(f"/{n + 1}") if n < 3 else page()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    base = await serve(app)
    await crawl(project(tmp_path, [f"{base}/"]), "robots=obey")
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # The delay, jittered 0.5-1.5x, at the crawler; the server sees each request a little
    # after it went, the one before later still at times: 50 ms of that, on a loaded machine.
    assert len(gaps) == 3 and min(gaps) >= 0.3 * 0.5 - 0.05


@pytest.mark.parametrize("robots", ["missing", "500", "garbage"])
async def test_a_missing_or_failing_robots_txt_allows_the_crawl(
    tmp_path: Path, serve: Serve, robots: str
) -> None:
    hits: Counter[str] = Counter()
    answer = {
        "missing": None,
        "500": web.Response(status=500, text=ROBOTS),
        "garbage": web.Response(body=b"\xff\x00<html>" * 1000),
    }[robots]
    base = await serve(robots_site(answer, hits))
    stats = await crawl(project(tmp_path, [f"{base}/"], "retries: 0"), "robots=obey")
    assert hits["/private/x"] == 1 and stats.filtered["robots"] == 0
    assert stats.to_dict()["robots"] == {"fetched": 1, "crawl_delay": {}}


FAILS_ONCE_ON_ROBOTS = """
from framework import Middleware, hookimpl

class FailsOnce(Middleware):
    name = "fails_once"
    failed = False

    async def __call__(self, request, handler):
        if request.meta.get("robots.txt") and not FailsOnce.failed:
            FailsOnce.failed = True
            raise RuntimeError("a plugin bug")
        return await handler(request)

@hookimpl
def register_middlewares(register):
    register(FailsOnce)
"""


async def test_a_plugin_failing_on_the_way_to_robots_txt_fails_its_request_not_the_rules(
    tmp_path: Path, serve: Serve
) -> None:
    # fw's own side failing is no licence to crawl the site as if it had no robots.txt:
    # the whole site was crawled, its Disallow ignored, and the run said 0 errors.
    hits: Counter[str] = Counter()
    base = await serve(robots_site(web.Response(text=ROBOTS), hits))
    (tmp_path / "fails.py").write_text(FAILS_ONCE_ON_ROBOTS, encoding="utf-8")
    path = project(tmp_path, [f"{base}/", f"{base}/public/1"], "retries: 0")
    path.write_text(path.read_text().replace("[./links.py]", "[./links.py, ./fails.py]"))
    stats = await crawl(path, "robots=obey")
    assert stats.errors == {"plugin_error": 1}  # the request that asked first
    assert hits["/private/x"] == 0 and hits["/robots.txt"] == 1  # read by the next one


@pytest.mark.parametrize("failure", ["timeout", "refused"])
async def test_a_robots_txt_that_times_out_or_is_refused_allows_the_crawl(
    tmp_path: Path, serve: Serve, failure: str
) -> None:
    hits: Counter[str] = Counter()
    never = asyncio.Event()
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def handler(request: web.Request) -> web.Response:
        hits[request.path] += 1
        if request.path != "/robots.txt":
            return page("/private/x", "/public/1")
        if failure == "timeout":
            await never.wait()
        raise web.HTTPMovedPermanently(f"{dead}/robots.txt")  # moved where nothing listens

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    base = await serve(app)
    try:
        stats = await crawl(project(tmp_path, [f"{base}/"], "timeout: 0.3"), "robots=obey")
    finally:
        never.set()
    assert hits == {"/robots.txt": 1, "/": 1, "/private/x": 1, "/public/1": 1}
    assert stats.errors == {} and stats.filtered["robots"] == 0
    assert stats.to_dict()["robots"] == {"fetched": 1, "crawl_delay": {}}


async def test_robots_ignore_fetches_no_robots_txt(tmp_path: Path, serve: Serve) -> None:
    hits: Counter[str] = Counter()
    base = await serve(robots_site(web.Response(text=ROBOTS), hits))
    stats = await crawl(project(tmp_path, [f"{base}/"]))  # the helper writes robots: ignore
    assert hits["/robots.txt"] == 0 and hits["/private/x"] == 1
    assert stats.to_dict()["robots"] == {"fetched": 0, "crawl_delay": {}}


async def test_many_pages_on_one_host_cost_one_lookup_and_few_connections(
    tmp_path: Path, serve: Serve
) -> None:
    gauge = Gauge()
    peers: set[object] = set()

    @web.middleware
    async def remember(request: web.Request, handler):  # type: ignore[no-untyped-def]
        peers.add(request.transport)
        return await handler(request)

    app = web.Application(middlewares=[remember])
    app.router.add_get("/{tail:.*}", gauge.handle)
    base = await serve(app)
    by_name = base.replace("127.0.0.1", "localhost")  # a name, so that DNS is involved
    path = project(tmp_path, [f"{by_name}/"], "concurrency: {total: 4, per_domain: 2}")
    stats = await crawl(path)
    assert stats.pages == 40
    assert stats.dns_lookups == 1
    assert stats.connections == len(peers) <= 2  # kept alive and reused, never one per page
