"""What a spider yields: items of any kind itemadapter knows, and requests whose callbacks
are checked where they are yielded."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiohttp import web

from framework.spider import Spider, run_callback
from tests.conftest import Serve, crawl, pages, read_jsonl, write_project

SPIDER = """
import attrs, pydantic
from framework import Request, Spider, hookimpl

@attrs.define
class Book:
    title: str

class Film(pydantic.BaseModel):
    title: str
    year: int

class Kinds(Spider):
    name = "kinds"

    def start_requests(self):
        yield Request(self.start_urls[0])
        yield Request(self.start_urls[0] + "start-typo", errback="on_failur")

    def parse(self, response):
        yield Book(title="a book")
        yield Film(title="a film", year=2026)
        yield response.follow("/item", callback="parse_itme")
        yield response.follow("/fine", callback="parse_item")

    def parse_item(self, response):
        yield {"title": "an item"}

    def on_failure(self, request, error):
        pass

@hookimpl
def register_spiders(register):
    register(Kinds)
"""


@pytest.fixture
async def crawled(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> tuple[list[str], list[dict[str, object]], list[str]]:
    hits: list[str] = []
    app = pages({"/": "<p>home</p>", "/fine": "<p>fine</p>", "/item": "<p>item</p>"})
    app.middlewares.append(_count(hits))
    base = await serve(app)
    (tmp_path / "kinds.py").write_text(SPIDER, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: kinds
        start_urls: [{base}/]
        plugins: [./kinds.py]
        robots: ignore
        exporters: [{{path: out/items.jsonl}}]
        """,
    )
    with caplog.at_level(logging.ERROR, logger="fw"):
        await crawl(project)
    messages = [record.getMessage() for record in caplog.records]
    return hits, read_jsonl(tmp_path / "out" / "items.jsonl"), messages


def _count(hits: list[str]):  # type: ignore[no-untyped-def]
    @web.middleware
    async def count(request: web.Request, handler):  # type: ignore[no-untyped-def]
        hits.append(request.path)
        return await handler(request)

    return count


async def test_attrs_and_pydantic_objects_are_items(
    crawled: tuple[list[str], list[dict[str, object]], list[str]],
) -> None:
    _, items, _ = crawled
    assert {"title": "a book"} in items and {"title": "a film", "year": 2026} in items
    assert {"title": "an item"} in items


async def test_a_misspelt_callback_is_an_error_where_it_is_yielded_and_never_fetched(
    crawled: tuple[list[str], list[dict[str, object]], list[str]],
) -> None:
    hits, _, messages = crawled
    assert "/item" not in hits and "/start-typo" not in hits and "/fine" in hits
    assert any(
        "spider kinds: parse yielded a request for http://" in m
        and "/item with callback 'parse_itme', which spider kinds does not have (did you "
        "mean 'parse_item'?)"
        in m
        for m in messages
    )
    assert any(
        "spider kinds: start_requests yielded a request for " in m
        and "with errback 'on_failur', which spider kinds does not have (did you mean "
        "'on_failure'?)"
        in m
        for m in messages
    )


async def test_a_stored_request_whose_plugin_callback_is_gone_blames_no_spider() -> None:
    """A request queued by an earlier run for a plugin since uninstalled: the plugin's
    failure, not the spider's (whose plugin would be named as the culprit)."""

    class Shop(Spider):
        name = "shop"

    output = await run_callback(Shop(), "gone:page", None)
    ((kind, _, message),) = output.problems
    assert kind == "plugin_error"
    assert message == (
        "no plugin registered callback 'gone:page': is its plugin installed and enabled?"
    )
