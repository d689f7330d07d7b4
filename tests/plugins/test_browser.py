"""The browser plugin against a real headless Chromium, on pages served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from framework.crawl import runner
from framework.crawl.stats import Stats
from framework.errors import ProjectError
from tests.conftest import Serve, crawl, read_jsonl, run_fw, write_project
from tests.plugins.browser_site import PRODUCTS, SCROLL_TOTAL, BrowserSite

#: A spider that asks for the requests a test lists, each with its own render and meta.
SPIDER = '''
import json
from framework import Request, Spider, hookimpl

class Asks(Spider):
    name = "asks"

    def start_requests(self):
        for ask in json.loads(self.options["asks"]):
            yield Request(ask["url"], render=ask.get("render"), meta=ask.get("meta"),
                          dont_filter=True)

    def parse(self, response):
        yield {
            "url": response.url,
            "status": response.status,
            "products": response.css(".product h2::text").getall(),
            "meta": {k: v for k, v in response.meta.items() if k in ("screenshot", "pdf")},
            "text": response.css("body::text").get(),
        }

@hookimpl
def register_spiders(register):
    register(Asks)
'''


@pytest.fixture
async def shop(serve: Serve, chromium: str) -> tuple[BrowserSite, str]:
    site = BrowserSite()
    return site, await serve(site.app())


def asks_project(directory: Path, asks: list[dict[str, Any]], browser: str = "{}") -> Path:
    (directory / "asks.py").write_text(SPIDER, encoding="utf-8")
    return write_project(
        directory,
        f"""
        spider: asks
        plugins: [./asks.py]
        start_urls: []
        robots: ignore
        retries: 0
        asks: {{asks: '{json.dumps(asks)}'}}
        browser: {browser}
        exporters: [{{path: items.jsonl}}]
        """,
    )


async def crawl_asks(
    directory: Path, asks: list[dict[str, Any]], browser: str = "{}"
) -> tuple[Stats, dict[str, dict[str, Any]]]:
    """Crawl the asked requests; return the stats and the items by URL path."""
    stats = await crawl(asks_project(directory, asks, browser))
    items = read_jsonl(directory / "items.jsonl")
    return stats, {item["url"].split("/", 3)[3]: item for item in items}


# -------------------------------------------------------------------------------------------
# What a rendered page gives
# -------------------------------------------------------------------------------------------

RULES = """
spider: rules
start_urls: [{start}]
rules:
  follow: [a.next]
  items:
    - each: div.product
      fields: {{name: h2::text, price: {{css: .price::text, type: float}}}}
"""


async def test_fw_run_renders_a_js_only_page_into_the_items_of_its_static_twin(
    shop: tuple[BrowserSite, str], tmp_path: Path
) -> None:
    site, base = shop
    exports = {}
    for name, start, extra in [
        ("static", f"{base}/static/", ""),
        ("unrendered", f"{base}/js/", ""),
        ("rendered", f"{base}/js/", "browser: {render: ['127.0.0.1'], wait_for: .product}\n"),
    ]:
        project = write_project(tmp_path, RULES.format(start=start) + extra, f"{name}.yaml")
        done = await run_fw("run", str(project), "-o", str(tmp_path / f"{name}.jsonl"), timeout=90)
        assert done.returncode == 0, done.stderr
        exports[name] = sorted(json.dumps(i) for i in read_jsonl(tmp_path / f"{name}.jsonl"))
    assert len(exports["static"]) == sum(map(len, PRODUCTS.values()))
    assert exports["unrendered"] == []  # the page's HTML holds no product
    assert exports["rendered"] == exports["static"]
    assert site.served["/api/products"] == 2  # each rendered page fetched its data itself
    assert site.served["/js/page2"] == 1  # only the rendered page links to it


async def test_infinite_scroll_loads_more_with_scroll_and_stops_when_the_page_stops(
    shop: tuple[BrowserSite, str], tmp_path: Path
) -> None:
    _, base = shop
    stats, items = await crawl_asks(
        tmp_path,
        [
            {"url": f"{base}/scroll?n=0", "render": True},
            {"url": f"{base}/scroll?n=3", "render": True, "meta": {"browser": {"scroll": 3}}},
            {"url": f"{base}/scroll?n=99", "render": True, "meta": {"browser": {"scroll": 99}}},
            {
                "url": f"{base}/scroll?n=a",
                "render": True,
                "meta": {"browser": {"actions": [{"scroll": 2}, {"wait_for": ".product + .product"}]}},
            },
        ],
        "{wait_for: .product, scroll_wait: 3}",
    )
    assert stats.errors == {}
    assert len(items["scroll?n=0"]["products"]) == 10
    assert len(items["scroll?n=3"]["products"]) == 40
    # 4 scrolls load everything; the fifth finds the page no longer grows and stops.
    assert items["scroll?n=99"]["products"] == [f"Item {n}" for n in range(SCROLL_TOTAL)]
    assert len(items["scroll?n=a"]["products"]) == 30
