"""Event hooks, spider callbacks and middlewares: they run, may be async, and fail alone."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import Serve, crawl, read_jsonl, write_project

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

    async def __call__(self, request, handler):
        if request.url.endswith("/private"):
            raise IgnoreRequest()
        if request.url.endswith("/buggy"):
            raise KeyError("oops")
        return await handler(request.replace(headers={"X-Tag": self.options.get("tag", "")}))


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


async def test_every_hook_runs_and_failures_are_counted_by_kind(
    tmp_path: Path, shop: tuple[str, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
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
    seen = sys.modules["fw_project_plugins.shop_plugin"].SEEN  # loaded by the crawl
    exported = read_jsonl(tmp_path / "out/items.jsonl")
    items = {item["page"]: item for item in exported}
    assert items["start"] == {"page": "start", "meta": "start_requests", "spider": "shop"}
    # The faulty plugin failed on item "a", which is still exported by the others' rules.
    assert items["a"]["spider"] == "shop"
    assert "broken" in items  # yielded before its callback raised
    # The errback turns each failed request into an item of its own.
    missing = sorted((i["url"], i["kind"]) for i in exported if i["page"] == "missing")
    assert missing == [(f"{base}/buggy", "plugin_error"), (f"{base}/gone", "http_404")]
    assert "secret" not in items and stats.dropped == 1
    assert items["sync"]["spider"] == "shop"
    assert stats.errors == {"plugin_error": 2, "spider_error": 2, "http_404": 1}
    assert sorted(seen["errors"]) == sorted(stats.errors.elements())
    assert stats.filtered["ignored"] == 1  # /private, by the middleware
    assert set(tags) == {"hello"}
    assert seen["started"] == 1 and seen["finished"] == "closed by spider: enough"
    assert seen["scheduled"][0] == "start" and "gone" in seen["scheduled"]
    assert ("gone", 404) in seen["received"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "plugin 'faulty.py': item_scraped raised RuntimeError: faulty plugin" in m for m in messages
    )
    assert any(
        f"spider shop: parse_product raised ValueError: cannot parse price ({base}/broken)" in m
        for m in messages
    )
    assert any(
        "spider_error: spider shop: parse_product yielded int; expected a dict item "
        "or a Request" in m
        for m in messages
    )
    assert f"plugin_error: middleware 'tagger' raised KeyError: 'oops' ({base}/buggy)" in messages
    assert f"http_404: HTTP 404 ({base}/gone)" in messages
