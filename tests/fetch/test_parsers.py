"""Parsing: big documents in a worker thread, so the event loop goes on meanwhile; every
page as itself, whatever the thread parsed before."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from framework.fetch.parsers import BIG, html_root, parse_xml
from framework.http import Request, Response
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


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE feed [<!ENTITY secret SYSTEM "file:///etc/hostname">]>
<feed><title>&secret;</title></feed>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<feed><title>&lol9;</title></feed>"""


def xml(body: bytes) -> Response:
    return Response(
        "http://a.test/feed.xml",
        200,
        {"Content-Type": "application/xml"},
        body,
        Request("http://a.test/feed.xml"),
        parse_xml,
    )


def test_xml_entities_are_not_resolved_from_files_or_expanded() -> None:
    assert Path("/etc/hostname").read_text().strip() not in xml(XXE).xpath("string(//title)").get()
    assert len(xml(LAUGHS).xpath("string(//title)").get() or "") < 1000  # not 10^9 "lol"s


def test_a_page_is_parsed_as_itself_after_a_broken_or_deep_one_in_any_thread() -> None:
    # Each thread keeps one parser for every page: nothing of one page may reach the next.
    broken = b"<html><body><p>\xff\xfe caf\xc3\xa9</p></body></html>"
    deep = b"<div>" * 3000 + b"<a href='/deep'>x</a>"
    clean = b"<html><body><a href='/clean'>x</a></body></html>"

    def parse_all(index: int) -> list[list[str]]:
        return [
            html_root(body, f"http://a.test/{index}").xpath("//a/@href | //p/text()")
            for body in (broken, deep, clean, broken, clean)
        ]

    with ThreadPoolExecutor(4) as threads:
        results = list(threads.map(parse_all, range(8)))

    for found in results:
        assert found[0] == ["\ufffd\ufffd café"]
        assert found[1] == ["/deep"]
        assert found[2] == ["/clean"]
        assert found[3:] == found[0:3:2]
