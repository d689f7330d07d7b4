"""A spider callback that blocks the event loop is named, and no host pays for it."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest
from aiohttp import web

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
