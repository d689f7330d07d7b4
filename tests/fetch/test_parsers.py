"""Big documents are parsed in a worker thread, so the event loop goes on meanwhile."""

from __future__ import annotations

from pathlib import Path

from framework.fetch.parsers import BIG
from tests.conftest import Serve, crawl, pages, read_jsonl, write_project

PLUGIN = """
import threading

from framework import Spider, hookimpl
from framework.fetch.parsers import parse_html

PARSED_IN = {}

def recording_parser(response):
    PARSED_IN[response.url] = threading.current_thread() is threading.main_thread()
    return parse_html(response)

class Pages(Spider):
    name = "pages"

    def parse(self, response):
        links = response.css("a::attr(href)").getall()  # a small page is parsed here
        yield {"url": response.url, "on_loop": PARSED_IN[response.url]}
        for href in links:
            yield response.follow(href)

@hookimpl
def register_parsers(register):
    register("text/html", recording_parser)

@hookimpl
def register_spiders(register):
    register(Pages)
"""


async def test_a_big_page_is_parsed_off_the_loop_and_a_small_one_on_it(
    tmp_path: Path, serve: Serve
) -> None:
    filler = "<p>" + "x" * 1000 + "</p>"
    big = f"<html><body>{filler * (BIG // len(filler) + 1)}<a href='/end'>end</a></body></html>"
    base = await serve(
        pages(
            {
                "/": "<html><body><a href='/big'>big</a></body></html>",
                "/big": big,
                "/end": "<html><body>the end</body></html>",
            }
        )
    )
    (tmp_path / "pages.py").write_text(PLUGIN, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: pages
        start_urls: [{base}/]
        plugins: [./pages.py]
        robots: ignore
        """,
    )
    out = tmp_path / "items.jsonl"
    stats = await crawl(project, outputs=(str(out),))

    assert stats.errors == {}
    on_loop = {item["url"].removeprefix(base): item["on_loop"] for item in read_jsonl(out)}
    assert on_loop == {"/": True, "/big": False, "/end": True}
