"""framework.testing, the kit plugin authors test with: saved pages on loopback, an
in-process crawl, and item snapshots — used here on the bundled douban spider."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from framework.testing import Crawl
from tests.conftest import FIXTURES

PAGES = FIXTURES / "douban"
#: Every film's subject page is answered with the same saved page.
ROUTES = {
    r"/cinema/later/chengdu/": "later_chengdu_2019-03.html",
    r"/subject/\d+/": "subject_1293181.html",
}

pytest_plugins = ["pytester"]


async def test_saved_pages_crawl_offline_with_links_mapped_to_loopback(
    fw_pages: Callable[..., Awaitable[str]], fw_crawl: Callable[..., Awaitable[Crawl]]
) -> None:
    base = await fw_pages(PAGES, hosts=["movie.douban.com"], routes=ROUTES)
    crawl = await fw_crawl(
        "douban", [f"{base}/cinema/later/chengdu/"], settings={"concurrency": {"per_domain": 8}}
    )
    assert crawl.stats.errors == {} and len(crawl.items) == 20
    # The listing links to https://movie.douban.com/subject/...: served from loopback.
    assert all(item["url"].startswith(f"{base}/subject/") for item in crawl.items)
    assert {item["year"] for item in crawl.items} == {1960}
    subject_requests = [r for r in crawl.requests if "/subject/" in r.url]
    assert len(subject_requests) == 20
    assert all(r.callback == "parse_subject" for r in subject_requests)


async def test_a_page_that_was_not_saved_is_a_404(
    fw_pages: Callable[..., Awaitable[str]], fw_crawl: Callable[..., Awaitable[Crawl]]
) -> None:
    base = await fw_pages(PAGES)
    crawl = await fw_crawl("douban", [f"{base}/cinema/later/nowhere/"], settings={"retries": 0})
    assert crawl.items == [] and crawl.stats.errors == {"http_404": 1}


SNAPSHOT_TEST = """
    from framework.testing import Crawl

    PAGES = {pages!r}
    ROUTES = {routes!r}

    async def test_items(fw_pages, fw_crawl, fw_snapshot):
        base = await fw_pages(PAGES, hosts=["movie.douban.com"], routes=ROUTES)
        crawl = await fw_crawl("douban", [base + "/cinema/later/chengdu/"])
        fw_snapshot(sorted([{{**item, "url": item["url"].replace(base, "")}}
                            for item in crawl.items], key=lambda item: item["id"]))
"""


def test_snapshots_are_written_on_request_then_compared_with_a_readable_diff(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        test_spider=textwrap.dedent(SNAPSHOT_TEST).format(pages=str(PAGES), routes=ROUTES)
    )
    missing = pytester.runpytest("-q", "-p", "no:cacheprovider")
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(["*no snapshot*--fw-update-snapshots*"])

    pytester.runpytest("-q", "--fw-update-snapshots").assert_outcomes(passed=1)
    snapshot = pytester.path / "snapshots" / "test_spider" / "test_items.json"
    assert '"title": "比悲伤更悲伤的故事"' in snapshot.read_text(encoding="utf-8")
    pytester.runpytest("-q").assert_outcomes(passed=1)

    snapshot.write_text(
        snapshot.read_text(encoding="utf-8").replace("比悲伤更悲伤的故事", "another title"),
        encoding="utf-8",
    )
    changed = pytester.runpytest("-q")
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(
        [
            "*items differ from the snapshot*",
            '*-    "title": "another title",',
            '*+    "title": "比悲伤更悲伤的故事",',
        ]
    )


#: Links in a saved page, and what fw_pages must make of each (BASE: its loopback URL).
LINKS = {
    "https://example.com/a": "BASE/a",
    "http://example.com": "BASE",
    "//example.com?q=1": "BASE?q=1",
    "https://Example.COM#top": "BASE#top",
    "https://example.com:443/x": "BASE/x",
    "https://example.com.evil.org/x": "https://example.com.evil.org/x",
    "https://example.community/": "https://example.community/",
    "https://www.example.com/": "https://www.example.com/",
}


async def test_only_links_to_a_mapped_host_itself_are_rewritten(
    fw_pages: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text(
        "".join(f'<a href="{link}">x</a>\n' for link in LINKS), encoding="utf-8"
    )
    base = await fw_pages(tmp_path, hosts=["example.com"])
    async with aiohttp.ClientSession() as session, session.get(base + "/") as response:
        page = await response.text()
    assert page == "".join(
        f'<a href="{want.replace("BASE", base)}">x</a>\n' for want in LINKS.values()
    )


TUTORIAL_RECIPE = """
    from pathlib import Path

    from framework import Spider, hookimpl

    HERE = Path(__file__).parent


    class Books(Spider):
        name = "books"

        async def parse(self, response):
            yield {"title": response.css("h1::text").get(), "url": response.url}
            for href in response.css("a::attr(href)").getall():
                yield response.follow(href)


    @hookimpl
    def register_spiders(register):
        register(Books)


    async def test_books(fw_pages, fw_crawl, fw_snapshot):
        base = await fw_pages(HERE / "pages", hosts=["books.example"])
        crawl = await fw_crawl("books", [base + "/"], settings={"plugins": [__file__]})
        assert crawl.stats.errors == {}
        fw_snapshot(sorted(crawl.items, key=lambda item: item["url"]))
"""


def test_a_snapshot_with_response_urls_passes_again_on_another_port(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pages = pytester.mkdir("pages")
    (pages / "index.html").write_text(
        '<h1>Home</h1><a href="https://books.example/a-book/">a book</a>', encoding="utf-8"
    )
    (pages / "a-book.html").write_text("<h1>A book</h1>", encoding="utf-8")
    pytester.makepyfile(test_spider=textwrap.dedent(TUTORIAL_RECIPE))
    pytester.runpytest("-q", "-p", "no:cacheprovider", "--fw-update-snapshots").assert_outcomes(
        passed=1
    )
    snapshot = pytester.path / "snapshots" / "test_spider" / "test_books.json"
    assert json.loads(snapshot.read_text(encoding="utf-8")) == [
        {"title": "Home", "url": "https://books.example/"},
        {"title": "A book", "url": "https://books.example/a-book/"},
    ]
    # Each run serves the pages on a new port; the snapshot does not see it.
    pytester.runpytest("-q", "-p", "no:cacheprovider").assert_outcomes(passed=1)
