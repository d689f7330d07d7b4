"""Event hooks, spider callbacks and middlewares: they run, may be async, and fail alone."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from framework import Middleware
from framework.crawl.stats import Stats
from tests.conftest import Serve, crawl, pages, read_jsonl, write_project

PLUGIN = """
import asyncio
from framework import (CloseSpider, DropItem, IgnoreRequest, Middleware, Request, Spider,
                       hookimpl)

SEEN = {"scheduled": [], "received": [], "errors": [], "started": 0, "finished": None}


class Shop(Spider):
    name = "shop"

    def start_requests(self):
        yield Request(self.start_urls[0] + "start", meta={"from": "start_requests"})

    async def parse(self, response):
        yield {"page": response.url.rsplit("/", 1)[1], "meta": response.meta.get("from")}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse_product, errback=self.missing)
        yield response.follow("/sync", callback="parse_sync")
        yield response.follow("/close", callback=self.parse_close)

    async def parse_product(self, response):
        name = response.css("h1::text").get()
        yield {"page": name}
        if name == "broken":
            raise ValueError("cannot parse price")
        if name == "odd":
            yield 42

    def parse_sync(self, response):
        return [{"page": "sync"}]

    def parse_close(self, response):
        raise CloseSpider("enough")

    def missing(self, request, error):
        yield {"page": "missing", "url": request.url, "kind": error.kind}


class Tagger(Middleware):
    name = "tagger"
    tagged = 0

    async def __call__(self, request, handler):
        if request.url.endswith("/private"):
            raise IgnoreRequest()
        if request.url.endswith("/buggy"):
            raise KeyError("oops")
        self.tagged += 1
        return await handler(request.replace(headers={"X-Tag": self.options.get("tag", "")}))

    def stats(self):
        return {"tagged": self.tagged}

    def summary(self):
        return [f"tagger: {self.tagged} requests tagged"]


@hookimpl
def register_spiders(register):
    register(Shop)


@hookimpl
def register_middlewares(register):
    register(Tagger)


@hookimpl
def crawl_started(project, spider):
    SEEN["started"] += 1


@hookimpl
async def request_scheduled(request):
    await asyncio.sleep(0)
    SEEN["scheduled"].append(request.url.rsplit("/", 1)[1])


@hookimpl
def response_received(response):
    SEEN["received"].append((response.url.rsplit("/", 1)[1], response.status))


@hookimpl
async def item_scraped(item, spider):
    if item["page"] == "secret":
        raise DropItem("not for export")
    item["spider"] = spider.name


@hookimpl
def crawl_error(kind, request):
    SEEN["errors"].append(kind)


@hookimpl
def crawl_finished(stats):
    SEEN["finished"] = stats.reason
"""

FAULTY = """
from framework import hookimpl

@hookimpl
def item_scraped(item):
    if item["page"] == "a":
        raise RuntimeError("faulty plugin")
"""


@pytest.fixture
async def shop(serve: Serve) -> tuple[str, list[str]]:
    tags: list[str] = []

    def product(name: str):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.Response:
            tags.append(request.headers.get("X-Tag", ""))
            return web.Response(text=f"<h1>{name}</h1>", content_type="text/html")

        return handler

    async def start(request: web.Request) -> web.Response:
        links = "".join(
            f'<a href="/{p}">{p}</a>'
            for p in ("a", "secret", "broken", "odd", "gone", "private", "buggy")
        )
        return web.Response(text=links, content_type="text/html")

    app = web.Application()
    app.router.add_get("/start", start)
    for name in ("a", "secret", "broken", "odd", "sync", "close", "private", "buggy"):
        app.router.add_get(f"/{name}", product(name))
    return await serve(app), tags


@dataclass
class Crawled:
    """What the shop crawl did, seen from its exports, stats, plugin and log."""

    base: str
    tags: list[str]
    stats: Stats
    seen: dict[str, Any]
    exported: list[dict[str, Any]]
    messages: list[str]

    @property
    def items(self) -> dict[str, dict[str, Any]]:
        return {item["page"]: item for item in self.exported}


@pytest.fixture
async def crawled(
    tmp_path: Path, shop: tuple[str, list[str]], caplog: pytest.LogCaptureFixture
) -> Crawled:
    """Crawl the shop with every hook implemented and a faulty plugin beside them."""
    base, tags = shop
    (tmp_path / "shop_plugin.py").write_text(PLUGIN, encoding="utf-8")
    (tmp_path / "faulty.py").write_text(FAULTY, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: shop
        start_urls: [{base}/]
        plugins: [./shop_plugin.py, ./faulty.py]
        exporters: [{{path: out/items.jsonl}}]
        concurrency: {{total: 1, per_domain: 1}}
        retries: 0
        tagger: {{tag: hello}}
        """,
    )
    with caplog.at_level(logging.WARNING, logger="fw"):
        stats = await crawl(project)
    plugin = str((tmp_path / "shop_plugin.py").resolve())  # loaded by the crawl, renamed
    (seen,) = [m.SEEN for m in list(sys.modules.values()) if getattr(m, "__file__", "") == plugin]
    exported = read_jsonl(tmp_path / "out/items.jsonl")
    return Crawled(base, tags, stats, seen, exported, [r.getMessage() for r in caplog.records])


async def test_items_of_start_requests_pass_item_scraped(crawled: Crawled) -> None:
    assert crawled.items["start"] == {"page": "start", "meta": "start_requests", "spider": "shop"}
    assert crawled.items["sync"]["spider"] == "shop"  # from a plain callback's list


async def test_a_faulty_plugin_fails_alone_and_is_named(crawled: Crawled) -> None:
    # The faulty plugin failed on item "a", which is still exported by the others' rules.
    assert crawled.items["a"]["spider"] == "shop"
    assert any(
        "plugin 'faulty.py': item_scraped raised RuntimeError: faulty plugin" in m
        for m in crawled.messages
    )


async def test_what_a_callback_yielded_before_it_raised_is_kept(crawled: Crawled) -> None:
    assert "broken" in crawled.items
    assert any(
        f"spider shop: parse_product raised ValueError: cannot parse price ({crawled.base}/broken)"
        in m
        for m in crawled.messages
    )


async def test_a_callback_yielding_neither_item_nor_request_is_a_spider_error(
    crawled: Crawled,
) -> None:
    assert any(
        "spider_error: spider shop: parse_product yielded int; expected a dict item "
        "or a Request" in m
        for m in crawled.messages
    )


async def test_errbacks_turn_failed_requests_into_items(crawled: Crawled) -> None:
    base = crawled.base
    missing = sorted((i["url"], i["kind"]) for i in crawled.exported if i["page"] == "missing")
    assert missing == [
        (f"{base}/buggy", "plugin_error"),
        (f"{base}/gone", "http_404"),
        (f"{base}/private", "ignored"),  # not fetched, by a middleware's IgnoreRequest
    ]
    assert f"http_404: HTTP 404 ({base}/gone)" in crawled.messages


async def test_drop_item_keeps_an_item_out_and_counts_it(crawled: Crawled) -> None:
    assert "secret" not in crawled.items and crawled.stats.dropped == 1
    assert f"{len(crawled.exported)} items exported (1 dropped)" in crawled.stats.summary()[0]


async def test_failures_are_counted_by_kind_and_told_to_crawl_error(crawled: Crawled) -> None:
    stats = crawled.stats
    assert stats.errors == {"plugin_error": 2, "spider_error": 2, "http_404": 1}
    assert sorted(crawled.seen["errors"]) == sorted(stats.errors.elements())


async def test_a_middleware_tags_ignores_and_fails_alone(crawled: Crawled) -> None:
    assert crawled.stats.filtered["ignored"] == 1  # /private, by the middleware
    assert set(crawled.tags) == {"hello"}
    assert (
        f"plugin_error: middleware 'tagger' raised KeyError: 'oops' ({crawled.base}/buggy)"
        in crawled.messages
    )


async def test_a_middleware_reports_its_counts_in_the_stats_and_the_summary(
    crawled: Crawled,
) -> None:
    tagged = crawled.stats.to_dict()["plugins"]["tagger"]["tagged"]
    assert tagged > len(crawled.tags)  # the products, and the start page, robots.txt, ...
    assert f"tagger: {tagged} requests tagged" in crawled.stats.summary()


def test_a_middleware_that_fails_to_report_is_named_and_the_stats_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Middleware):
        name = "broken"

        def stats(self) -> dict[str, Any]:
            raise KeyError("count")

        def summary(self) -> list[str]:
            raise KeyError("line")

    stats = Stats("shop", reporters=(Broken(), Middleware()))
    assert stats.to_dict()["plugins"] == {}
    assert len(stats.summary()) == 1
    assert "plugin_error: middleware 'broken' failed to report its stats: KeyError: 'count'" in (
        caplog.messages
    )


@pytest.mark.parametrize(
    ("counts", "lines", "said"),
    [
        ({"x": object()}, ["fine"], "TypeError: Object of type object is not JSON serializable"),
        ({"x": float("nan")}, ["fine"], "ValueError: Out of range float values are not JSON"),
        ([1, 2], ["fine"], "TypeError: stats() gave list, not a mapping"),
        ({"x": 1}, 5, "TypeError: summary() gave int, not a list of lines"),
        ({"x": 1}, "one line", "TypeError: summary() gave str, not a list of lines"),
        ({"x": 1}, ["a", 2], "TypeError: summary() gave a line that is int, not text"),
        ({"x": 1}, ["a", 0], "TypeError: summary() gave a line that is int, not text"),
        ({"x": 1}, [None], "TypeError: summary() gave a line that is NoneType, not text"),
    ],
)
def test_a_middleware_reporting_what_is_no_count_is_named_and_the_stats_go_on(
    caplog: pytest.LogCaptureFixture, counts: Any, lines: Any, said: str
) -> None:
    class Odd(Middleware):
        name = "odd"

        def stats(self) -> Any:
            return counts

        def summary(self) -> Any:
            return lines

    stats = Stats("shop", reporters=(Odd(),))
    json.dumps(stats.to_dict())  # writable whole
    stats.summary()
    assert any(
        message.startswith(f"plugin_error: middleware 'odd' failed to report its stats: {said}")
        for message in caplog.messages
    ), caplog.messages


async def test_the_crawl_event_hooks_run_in_order(crawled: Crawled) -> None:
    seen = crawled.seen
    assert seen["started"] == 1 and seen["finished"] == "closed by spider: enough"
    assert seen["scheduled"][0] == "start" and "gone" in seen["scheduled"]
    assert ("gone", 404) in seen["received"]


UNCHANGED = """
from framework import Middleware, Request, Spider, Unchanged, hookimpl


class Pages(Spider):
    name = "pages"

    def parse(self, response):
        yield {"page": response.url}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href)
        if response.url.endswith("/broken"):
            raise ValueError("no")


class Skipper(Middleware):
    name = "skipper"

    async def __call__(self, request, handler):
        response = await handler(request)
        if request.url.endswith("/skip"):
            raise Unchanged(response, [Request(request.url.replace("/skip", "/behind"))])
        return response

    @hookimpl
    def page_parsed(self, request, requests):
        self.counts[request.url.rsplit("/", 1)[1] or "start"] = len(requests)


@hookimpl
def register_spiders(register):
    register(Pages)


@hookimpl
def register_middlewares(register):
    register(Skipper)
"""


async def test_a_middleware_may_skip_a_page_as_unchanged_and_hears_what_pages_led_to(
    tmp_path: Path, serve: Serve
) -> None:
    site = {
        "/": '<a href="/skip">s</a><a href="/broken">b</a>',
        "/skip": "<h1>skip</h1>",  # its callback never runs: no item, its links not read
        "/behind": "<h1>behind</h1>",
        "/broken": '<a href="/">s</a>',
    }
    base = await serve(pages(site))
    (tmp_path / "skipper.py").write_text(UNCHANGED, encoding="utf-8")
    out = tmp_path / "items.jsonl"
    project = write_project(
        tmp_path, f"spider: pages\nstart_urls: [{base}/]\nplugins: [./skipper.py]\nrobots: ignore\n"
    )
    stats = await crawl(project, outputs=(str(out),))
    assert stats.pages == 4 and stats.reason == "finished"
    assert {item["page"].removeprefix(base) for item in read_jsonl(out)} >= {"/", "/behind"}
    assert "/skip" not in {item["page"].removeprefix(base) for item in read_jsonl(out)}
    # Parsed whole: the start page (2 links) and the page behind the skipped one (0);
    # neither the skipped page nor the one whose callback raised.
    # Its counts reach the summary and --stats as every middleware's do.
    assert stats.plugins() == {"skipper": {"start": 2, "behind": 0}}
    assert "skipper: 2 start, 0 behind" in stats.summary()
    assert stats.to_dict()["plugins"]["skipper"] == {"start": 2, "behind": 0}


SLOW_HOOK = """
import asyncio
from framework import hookimpl

ANSWERED = asyncio.Event()  # set by the test once fw has named this plugin


@hookimpl
async def item_scraped(item, response, spider):
    await ANSWERED.wait()
"""


async def test_an_async_hook_that_does_not_return_is_named_while_the_crawl_waits(
    tmp_path: Path, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("framework.hooks.events.PATIENCE", 0.05)
    stats, said, _ = await crawl_answered(tmp_path, serve, "slow.py", SLOW_HOOK, "items.jsonl")
    assert stats.items == 1 and read_jsonl(tmp_path / "items.jsonl") == [{"h": "one"}]
    assert said == [
        "plugin 'slow.py': item_scraped has not returned for 0s; the crawl waits for it "
        "(Ctrl-C stops it)"
    ]


async def crawl_answered(
    tmp_path: Path, serve: Serve, name: str, plugin: str, output: str
) -> tuple[Stats, list[str], Any]:
    """Crawl one page with ``plugin``, whose ``ANSWERED`` event is set once fw says it waits
    for it; return the stats, the warnings that it has not returned, and the plugin."""
    base = await serve(pages({"/": "<h1>one</h1>"}))
    (tmp_path / name).write_text(plugin, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"spider: rules\nstart_urls: [{base}/]\nplugins: [./{name}]\n"
        "rules: {items: [{fields: {h: h1}}]}\n",
    )
    said: list[str] = []
    path = str((tmp_path / name).resolve())

    def loaded() -> Any:
        (module,) = [m for m in list(sys.modules.values()) if m.__dict__.get("__file__") == path]
        return module

    class Answer(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "has not returned" in record.getMessage():
                said.append(record.getMessage())
                loaded().ANSWERED.set()

    answer = Answer(logging.WARNING)
    logging.getLogger("fw").addHandler(answer)
    try:
        async with asyncio.timeout(30):
            stats = await crawl(project, outputs=(str(tmp_path / output),))
    finally:
        logging.getLogger("fw").removeHandler(answer)
    return stats, said, loaded()


SLOW_EXPORT = """
import asyncio
from framework import Exporter, hookimpl

ANSWERED = asyncio.Event()  # set by the test once fw has named this export
WRITTEN = []


class Slow(Exporter):
    format = "slow"
    extensions = (".slow",)

    async def write(self, item):
        await ANSWERED.wait()
        WRITTEN.append(item)


@hookimpl
def register_exporters(register):
    register(Slow)
"""


async def test_an_async_export_write_that_does_not_return_is_named_while_the_crawl_waits(
    tmp_path: Path, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("framework.hooks.events.PATIENCE", 0.05)
    stats, said, plugin = await crawl_answered(
        tmp_path, serve, "slowexport.py", SLOW_EXPORT, "items.slow"
    )
    assert stats.items == 1 and plugin.WRITTEN == [{"h": "one"}]
    assert said == [
        f"export {tmp_path / 'items.slow'}: write() has not returned for 0s; the crawl waits "
        "for it (Ctrl-C stops it)"
    ]
