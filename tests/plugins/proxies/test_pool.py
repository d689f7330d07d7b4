"""The pool's rotation and health rules, on a clock the test moves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from fwcrawl_plugins.proxies.options import Backoff, ProxiesOptions, ProxyURL, redact
from fwcrawl_plugins.proxies.pool import Pool, Proxy, Verdict


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def address(url: str) -> ProxyURL:
    host = url.rpartition("@")[2]
    return ProxyURL(url, redact(url), host)


def pool_of(*urls: str, clock: Clock | None = None, **options: object) -> Pool:
    settings = replace(ProxiesOptions(), urls=tuple(address(u) for u in urls), **options)
    return Pool(settings, clock or Clock())


def picked(pool: Pool, host: str = "a.test", tried: Sequence[Proxy] = ()) -> Proxy:
    proxy = pool.pick(host, tried)
    assert isinstance(proxy, Proxy)
    return proxy


def names(proxies: Sequence[Proxy]) -> list[str]:
    return [p.name for p in proxies]


def test_round_robin_takes_each_proxy_in_turn_and_skips_those_resting() -> None:
    pool = pool_of("http://p1:1", "http://p2:1", "http://p3:1")
    turns = ["http://p1:1", "http://p2:1", "http://p3:1", "http://p1:1"]
    assert names([picked(pool) for _ in range(4)]) == turns
    pool.judge(pool.proxies[1], 0, Verdict.FAILED, "proxy")
    assert names([picked(pool) for _ in range(3)]) == ["http://p3:1", "http://p1:1", "http://p3:1"]


def test_random_chooses_among_the_proxies_not_resting() -> None:
    offered: list[list[str]] = []

    def choose(ready: Sequence[Proxy]) -> Proxy:
        offered.append(names(ready))
        return ready[-1]

    settings = replace(
        ProxiesOptions(), urls=(address("http://p1:1"), address("http://p2:1")), rotate="random"
    )
    pool = Pool(settings, Clock(), choose)
    pool.judge(pool.proxies[1], 0, Verdict.FAILED, "proxy")
    assert picked(pool).name == "http://p1:1"
    assert offered == [["http://p1:1"]]


def test_sticky_per_host_keeps_a_host_on_its_proxy_until_that_one_rests() -> None:
    pool = pool_of("http://p1:1", "http://p2:1", rotate="sticky_per_host")
    first, second = picked(pool, "a.test"), picked(pool, "b.test")
    assert first is not second
    assert all(picked(pool, "a.test") is first for _ in range(3))
    pool.judge(first, 0, Verdict.FAILED, "proxy")
    assert picked(pool, "a.test") is second  # and stays there
    assert picked(pool, "a.test") is second


def test_a_proxy_rests_after_fail_after_suspect_answers_in_a_row() -> None:
    pool = pool_of("http://p1:1", fail_after=3)
    proxy = pool.proxies[0]
    for _ in range(2):
        assert pool.judge(proxy, 0, Verdict.SUSPECT, "http_403") is None
    assert pool.judge(proxy, 0, Verdict.OK, "http_200") is None  # the streak ends
    for _ in range(2):
        assert pool.judge(proxy, 0, Verdict.SUSPECT, "http_403") is None
    assert pool.judge(proxy, 0, Verdict.SUSPECT, "timeout") == 5.0
    assert proxy.failures == {"http_403": 4, "timeout": 1}
    assert proxy.rests == 1


def test_rests_double_up_to_the_max_and_a_success_starts_over() -> None:
    clock = Clock()
    pool = pool_of("http://p1:1", clock=clock, backoff=Backoff(base=2.0, max=5.0), dead_after=9)
    proxy = pool.proxies[0]
    rests = []
    for _ in range(4):
        rests.append(pool.judge(proxy, proxy.epoch, Verdict.FAILED, "proxy"))
    assert rests == [2.0, 4.0, 5.0, 5.0]
    assert pool.pick("a.test") == 5.0  # every proxy rests: how long until one is back
    clock.now += 5.0
    assert picked(pool) is proxy
    pool.judge(proxy, proxy.epoch, Verdict.OK, "http_200")
    assert pool.judge(proxy, proxy.epoch, Verdict.FAILED, "proxy") == 2.0


def test_requests_sent_before_a_rest_cannot_rest_the_proxy_again() -> None:
    pool = pool_of("http://p1:1", "http://p2:1")
    proxy = pool.proxies[0]
    sent_in = proxy.epoch  # 16 requests in flight, all dropped together
    assert pool.judge(proxy, sent_in, Verdict.FAILED, "proxy") == 5.0
    for _ in range(15):
        assert pool.judge(proxy, sent_in, Verdict.FAILED, "proxy") is None
    assert proxy.failures == {"proxy": 16}
    assert (proxy.rests, proxy.strikes) == (1, 1)


def test_every_proxy_dead_is_the_end_and_one_success_brings_one_back() -> None:
    clock = Clock()
    pool = pool_of("http://p1:1", "http://p2:1", clock=clock, dead_after=2)
    p1, p2 = pool.proxies
    for proxy in (p1, p1, p2):
        pool.judge(proxy, proxy.epoch, Verdict.FAILED, "proxy")
    assert pool.dead(p1) and not pool.dead(p2) and not pool.all_dead()
    pool.judge(p2, p2.epoch, Verdict.FAILED, "http_407")
    assert pool.all_dead()
    assert pool.report()["http://p1:1"]["state"] == "dead"
    pool.judge(p1, 0, Verdict.OK, "http_200")  # an answer from before: it works after all
    assert not pool.all_dead()


def test_a_request_tries_each_proxy_once_at_most() -> None:
    pool = pool_of("http://p1:1", "http://p2:1")
    first = picked(pool)
    second = picked(pool, tried=[first])
    assert second is not first
    assert pool.pick("a.test", [first, second]) is None


@pytest.mark.parametrize(
    ("urls", "named"),
    [
        (["http://a:1@gw:7", "http://b:1@gw:7"], ["http://***@gw:7 #1", "http://***@gw:7 #2"]),
        (["http://a:1@gw:7", "http://gw:8"], ["http://***@gw:7", "http://gw:8"]),
    ],
)
def test_proxies_are_named_by_their_masked_urls_told_apart_when_alike(
    urls: list[str], named: list[str]
) -> None:
    assert names(pool_of(*urls).proxies) == named
    assert list(pool_of(*urls).report()) == named
