"""A spider callback that blocks the event loop is named, and no host pays for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from framework.fetch.stalls import Stalls, _culprit_in, _shares
from framework.http import Request, Response
from framework.middleware import Handler, Middleware, chain
from framework.spider import Spider
from tests.conftest import Serve, crawl, write_project

SLEEPY = """
import time
from framework import Spider, hookimpl

class Sleepy(Spider):
    name = "sleepy"

    def parse(self, response):
        if "/block/" in response.url:
            time.sleep(1.5)  # the mistake: a blocking call in a callback
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href)
        yield {"url": response.url}

@hookimpl
def register_spiders(register):
    register(Sleepy)
"""


async def test_a_blocking_callback_is_named_and_charged_to_no_host(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    async def handle(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)  # every page alike: in flight while a callback holds the loop
        if request.path == "/":
            links = [f"/block/{n}" for n in (1, 2)] + [f"/page/{n}" for n in range(8)]
            body = "".join(f'<a href="{link}">x</a>' for link in links)
            return web.Response(text=body, content_type="text/html")
        return web.Response(text="<p>ok</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    base = await serve(app)
    (tmp_path / "sleepy.py").write_text(SLEEPY, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: sleepy
        start_urls: [{base}/]
        plugins: [./sleepy.py]
        robots: ignore
        timeout: 1
        retries: 0
        concurrency: {{total: 16, per_domain: 16}}
        exporters: [{{path: out/items.jsonl}}]
        """,
    )
    with caplog.at_level(logging.WARNING, logger="fw"):
        stats = await crawl(project)
    assert stats.errors == {} and stats.items == 11
    assert stats.throttled == {}
    count, seconds = stats.stalls["spider 'sleepy' callback parse"]
    assert count == 2 and seconds >= 2.8
    blamed = [r.getMessage() for r in caplog.records if "blocked the event loop" in r.getMessage()]
    assert len(blamed) == 1  # once per callback; the summary has the count
    assert re.match(
        rf"spider 'sleepy' callback parse blocked the event loop for 1\.\d s "
        rf"\({re.escape(base)}/block/\d\)",
        blamed[0],
    )
    assert "blocked the event loop: spider 'sleepy' callback parse 2 times" in "\n".join(
        stats.summary()
    )


BLOCKERS = """
import time
from framework import Middleware, Request, Spider, hookimpl

class Blockers(Spider):
    name = "blockers"

    def start_requests(self):
        for n, path in enumerate(["slow-start", "mw", "resp", "item", "async-item", "fetch"]):
            if n == 4:  # in the first batch: before any await of the crawl's
                time.sleep(0.8)
            yield Request(self.start_urls[0] + path)

    def parse(self, response):
        yield {"url": response.url}

class Blocking(Middleware):
    name = "blocking"

    async def __call__(self, request, handler):
        if request.url.endswith("/mw"):
            time.sleep(0.8)
        return await handler(request)

@hookimpl
def register_spiders(register):
    register(Blockers)

@hookimpl
def register_middlewares(register):
    register(Blocking)

@hookimpl
def response_received(response):
    if response.url.endswith("/resp"):
        time.sleep(0.8)

@hookimpl
def item_scraped(item):
    if item["url"].endswith("/item"):
        time.sleep(0.8)
"""

ASYNC_HOOK = """
import time
from framework import hookimpl

@hookimpl
async def item_scraped(item):
    if item["url"].endswith("/async-item"):
        time.sleep(0.8)
"""


async def test_each_kind_of_plugin_code_that_blocks_is_named(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(text="<p>ok</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    base = await serve(app)
    (tmp_path / "blockers.py").write_text(BLOCKERS, encoding="utf-8")
    (tmp_path / "async_hook.py").write_text(ASYNC_HOOK, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: blockers
        start_urls: [{base}/]
        plugins: [./blockers.py, ./async_hook.py]
        robots: ignore
        concurrency: {{total: 1, per_domain: 1}}
        """,
    )
    with caplog.at_level(logging.WARNING, logger="fw"):
        stats = await crawl(project)
    assert stats.errors == {} and stats.items == 6
    assert sorted(stats.stalls) == [
        "middleware 'blocking'",
        "plugin 'async_hook.py' hook item_scraped",
        "plugin 'blockers.py' hook item_scraped",
        "plugin 'blockers.py' hook response_received",
        "spider 'blockers' callback start_requests",
    ]
    blamed = [r.getMessage() for r in caplog.records if "blocked the event loop" in r.getMessage()]
    assert len(blamed) == 5  # each named once, with the URL it was working on
    assert any(
        re.match(rf"middleware 'blocking' blocked .* \({re.escape(base)}/mw\);", m) for m in blamed
    )
    assert any(
        re.match(rf"plugin 'blockers.py' hook item_scraped .* \({re.escape(base)}/item\);", m)
        for m in blamed
    )


async def test_the_fetcher_behind_a_middleware_is_not_blamed_on_it() -> None:
    blamed: list[tuple[str, str] | None] = []

    async def fetch(request: Request) -> Response:  # stands where the downloader runs
        blamed.append(_culprit_in(sys._getframe()))
        return Response(request.url, 200, {}, b"", request)

    class Passing(Middleware):
        name = "passing"

        async def __call__(self, request: Request, handler: Handler) -> Response:
            blamed.append(_culprit_in(sys._getframe()))
            return await handler(request)

    await chain([Passing()], fetch)(Request("http://a.test/x"))
    assert blamed == [("middleware 'passing'", "http://a.test/x"), None]


class Sleepy(Spider):
    """A spider whose callback blocks the loop: what a stall is blamed on."""

    name = "sleepy"

    def parse(self, response: Response) -> None:
        time.sleep(0.6)


def page(url: str = "http://a.test/") -> Response:
    return Response(url, 200, {}, b"", Request(url))


async def blamed_on_sleepy(stalls: Stalls) -> tuple[int, float]:
    """Return how often and how long the loop was held by Sleepy's callback, once counted."""
    async with asyncio.timeout(10):
        while "spider 'sleepy' callback parse" not in stalls.culprits:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # the ticker counts it on its next tick; no event says so
    return stalls.culprits["spider 'sleepy' callback parse"]


async def test_two_callbacks_that_block_in_one_turn_of_the_loop_are_each_counted(
    stalls: Stalls,
) -> None:
    spider, loop = Sleepy(), asyncio.get_running_loop()
    for url in ("http://a.test/1", "http://a.test/2"):  # both ready at once: one late tick
        loop.call_soon(spider.parse, page(url))
    count, seconds = await blamed_on_sleepy(stalls)
    assert count == 2 and 1.1 <= seconds == pytest.approx(stalls.held)


async def test_code_of_fws_own_before_a_callback_is_not_charged_to_the_callback(
    stalls: Stalls,
) -> None:
    def own_then_callback() -> None:  # no plugin on the stack: fw's own work
        time.sleep(0.6)
        Sleepy().parse(page())

    asyncio.get_running_loop().call_soon(own_then_callback)
    _, seconds = await blamed_on_sleepy(stalls)
    assert set(stalls.culprits) == {"code on the event loop", "spider 'sleepy' callback parse"}
    assert seconds < 0.9  # not the whole 1.2 s


async def test_one_stall_counts_a_callback_on_one_page_once_however_it_resumes(
    stalls: Stalls,
) -> None:
    def callback_own_callback() -> None:
        Sleepy().parse(page())
        time.sleep(0.5)  # fw's own work between two calls on one page, in one turn
        Sleepy().parse(page())

    asyncio.get_running_loop().call_soon(callback_own_callback)
    count, seconds = await blamed_on_sleepy(stalls)
    assert count == 1 and seconds >= 0.9


def test_a_stall_is_split_among_its_culprits_and_a_glimpse_joins_the_one_before() -> None:
    seen = [(1.0, "a", "u1"), (1.5, "b", "u2"), (2.9, "c", "u3")]
    shares = _shares(seen, 0.5, 3.0, 0.5)  # c, seen 0.1 s before the end: no stall alone
    assert [(who, url) for who, url, _ in shares] == [("a", "u1"), ("b", "u2")]
    assert [seconds for _, _, seconds in shares] == pytest.approx([1.0, 1.5])
    assert _shares([], 0.5, 3.0, 0.5) == [("code on the event loop", "", 2.5)]


@pytest.fixture
async def stalls() -> AsyncIterator[Stalls]:
    stalls = Stalls(tick=0.01, stall=0.2)
    ticker = asyncio.create_task(stalls.run())
    yield stalls
    ticker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ticker


async def test_a_deadline_that_passes_raises_timeout_and_leaves_the_task_uncancelled(
    stalls: Stalls,
) -> None:
    with pytest.raises(TimeoutError):
        async with stalls.deadline(0.05):
            await asyncio.sleep(10)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)  # no cancellation is left pending for the next await


async def test_a_block_within_its_deadline_ends_as_it_would_without_one(stalls: Stalls) -> None:
    async with stalls.deadline(5):
        await asyncio.sleep(0.01)
    with pytest.raises(KeyError):
        async with stalls.deadline(5):
            raise KeyError("its own error goes on")


async def test_a_cancellation_from_outside_stays_a_cancellation(stalls: Stalls) -> None:
    async def waits() -> None:
        async with stalls.deadline(0.05):
            await asyncio.sleep(10)

    task = asyncio.create_task(waits())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_stall_inside_a_deadline_is_added_to_its_time(stalls: Stalls) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError):
        async with stalls.deadline(0.3):
            await asyncio.sleep(0)
            time.sleep(0.5)  # holds the loop: longer than the deadline, not the request's fault
            await asyncio.sleep(10)
    assert stalls.held >= 0.4
    assert loop.time() - start >= 0.3 + stalls.held  # the time it was given, besides the stall


async def test_a_deadline_is_used_once(stalls: Stalls) -> None:
    deadline = stalls.deadline(0.01)
    with pytest.raises(TimeoutError):
        async with deadline:
            await asyncio.sleep(10)
    # Entered again, an expired deadline would take a cancel from outside for its own.
    with pytest.raises(RuntimeError, match="used once"):
        async with deadline:
            pass
