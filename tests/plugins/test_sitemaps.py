"""The ``sitemaps`` plugin against a loopback site: robots.txt, indexes, gzip and text
sitemaps, ``follow`` and ``since``, loops, hostile files, failures and resumed crawls."""

from __future__ import annotations

import gzip
import json
import logging
import random
import re
import sqlite3
import tracemalloc
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from fwcrawl_plugins.sitemaps import SITEMAP, SitemapsOptions
from fwcrawl_plugins.sitemaps_documents import Entry, _Ampersands, period, read

from framework import FetchError, Request
from framework.crawl import runner
from framework.crawl.stats import Stats
from framework.errors import ProjectError
from framework.frontier import signed_fingerprint
from framework.http.urls import fingerprint, older_fingerprint
from framework.tools.docs import options_table
from tests.conftest import Serve, read_jsonl, run_fw, write_project

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(*entries: tuple[str, str | None]) -> str:
    """A ``<urlset>`` of (path, lastmod) entries; each path is written relative."""
    return (
        f"<?xml version='1.0' encoding='UTF-8'?><urlset {NS}>"
        + "".join(
            f"<url><loc>{{base}}{path}</loc>{_lastmod(lastmod)}</url>" for path, lastmod in entries
        )
        + "</urlset>"
    )


def index(*entries: tuple[str, str | None]) -> str:
    """A ``<sitemapindex>`` of (path, lastmod) entries."""
    return (
        f"<sitemapindex {NS}>"
        + "".join(
            f"<sitemap><loc>{{base}}{path}</loc>{_lastmod(lastmod)}</sitemap>"
            for path, lastmod in entries
        )
        + "</sitemapindex>"
    )


def _lastmod(lastmod: str | None) -> str:
    return f"<lastmod>{lastmod}</lastmod>" if lastmod else ""


class Site:
    """A shop whose files are given by path; ``{base}`` in them is the site's URL.

    A ``.gz`` file is served gzip-compressed as ``application/x-gzip`` (no
    Content-Encoding: the plugin must decompress it); a path it does not have is a 404.
    Every request is counted by path.
    """

    def __init__(self, files: Mapping[str, str | bytes]) -> None:
        self.files = dict(files)
        self.hits: Counter[str] = Counter()
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits[request.path_qs] += 1
        body = self.files.get(request.path_qs)
        if body is None:
            raise web.HTTPNotFound()
        if isinstance(body, str):
            body = body.replace("{base}", self.base).encode()
        if request.path.endswith(".gz"):
            return web.Response(body=gzip.compress(body), content_type="application/x-gzip")
        kind = "text/html" if "/products/" in request.path or request.path == "/" else "text/xml"
        return web.Response(
            body=body, content_type="text/plain" if ".txt" in request.path else kind
        )

    async def start(self, serve: Serve) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self.base = await serve(app)
        return self.base


def product(n: int) -> str:
    return f"<html><body><h1>Product {n}</h1></body></html>"


SHOP = {
    "/": "<html><body><h1>Home</h1></body></html>",
    "/robots.txt": "User-agent: *\nAllow: /\n\n"
    "Sitemap: {base}/sitemap_index.xml\n"
    "sitemap: /sitemap.txt  # the blog and a product, as text\n",
    "/sitemap_index.xml": index(
        ("/sitemap-products.xml.gz", "2026-11-05"),
        ("/sitemap-old.xml", "2026-10-01"),  # older than since: not read
    ),
    "/sitemap-products.xml.gz": urlset(
        ("/products/1", "2026-11-02"),
        ("/products/2", "2026-10-31T23:59:59+00:00"),  # older than since
        ("/products/3", None),  # no lastmod: kept
        ("/products/5", "2026-11"),  # the month of since: kept
        ("/about", "2026-11-03"),  # does not match follow
    ),
    "/sitemap-old.xml": urlset(("/products/9", "2026-09-01")),
    "/sitemap.txt": "{base}/products/4\n{base}/blog/1\n",
    **{f"/products/{n}": product(n) for n in range(1, 10)},
}

RULES = """
rules:
  items:
    - pages: /products/
      fields: {name: h1, url: {value: url}}
"""


def shop_project(tmp_path: Path, base: str, sitemaps: str, extra: str = "") -> Path:
    lines = [
        "spider: rules",
        f"start_urls: [{base}/]",
        "exporters: [{path: items.jsonl}]",
        f"sitemaps: {sitemaps}",
        extra,
    ]
    return write_project(tmp_path, "\n".join(lines) + RULES)


async def run(project: Path, *overrides: str, retry_failed: bool = False) -> Stats:
    """Run a crawl in this process, with its failures file, as ``fw run`` does."""
    prepared = runner.prepare(project, overrides, retry_failed=retry_failed)
    return await runner.build_engine(prepared).run()


def names(tmp_path: Path) -> list[str]:
    return sorted(item["name"] for item in read_jsonl(tmp_path / "items.jsonl"))


async def test_robots_txt_an_index_a_gzip_and_a_text_sitemap_seed_the_spider(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    site = Site(SHOP)
    base = await site.start(serve)
    project = shop_project(
        tmp_path, base, "{robots: true, follow: ['/products/'], since: 2026-11-01}"
    )
    with caplog.at_level(logging.INFO, logger="fw.sitemaps"):
        stats = await run(project)
    assert names(tmp_path) == ["Product 1", "Product 3", "Product 4", "Product 5"]
    assert not stats.errors
    for path in ("/sitemap_index.xml", "/sitemap-products.xml.gz", "/sitemap.txt"):
        assert site.hits[path] == 1, path
    # Left out: an old sitemap of the index, an old page, pages follow does not match.
    assert site.hits["/sitemap-old.xml"] == site.hits["/products/2"] == 0
    assert site.hits["/about"] == site.hits["/blog/1"] == 0
    # Read by the crawl for its Sitemap: lines, and apart for its rules (robots: obey).
    assert site.hits["/robots.txt"] == 2
    assert (
        f"sitemap {base}/sitemap-products.xml.gz: 5 listed, 3 pages queued; left out: "
        "1 older than since, 1 not matching follow" in caplog.text
    )


async def test_the_pages_go_to_the_callback_named_with_the_sitemaps_lastmod(
    tmp_path: Path, serve: Serve
) -> None:
    site = Site(SHOP)
    base = await site.start(serve)
    (tmp_path / "shop.py").write_text(
        "from framework import Spider, hookimpl\n\n"
        "class Shop(Spider):\n"
        "    name = 'shop'\n"
        "    def parse(self, response):\n"
        "        yield {'via': 'parse', 'url': response.url}\n"
        "    def parse_product(self, response):\n"
        "        yield {'via': 'parse_product', 'sitemap': response.meta.get('sitemap')}\n\n"
        "@hookimpl\n"
        "def register_spiders(register):\n"
        "    register(Shop)\n",
        encoding="utf-8",
    )
    project = write_project(
        tmp_path,
        f"""
        spider: shop
        plugins: [./shop.py]
        start_urls: [{base}/]
        max_depth: 0
        exporters: [{{path: items.jsonl}}]
        sitemaps:
          urls: ['{base}/sitemap-products.xml.gz']
          callback: parse_product
        """,
    )
    await run(project)
    items = read_jsonl(tmp_path / "items.jsonl")
    assert [i for i in items if i["via"] == "parse"] == [{"via": "parse", "url": f"{base}/"}]
    by_sitemap = sorted(
        (i["sitemap"]["lastmod"] or "", i["sitemap"]["url"]) for i in items if i["via"] != "parse"
    )
    sitemap = f"{base}/sitemap-products.xml.gz"
    # max_depth: 0 fetches every page a sitemap lists: they are start pages.
    assert by_sitemap == [
        ("", sitemap),
        ("2026-10-31T23:59:59+00:00", sitemap),
        ("2026-11", sitemap),
        ("2026-11-02", sitemap),
    ]
    assert site.hits["/about"] == 1  # no follow: every page; a 404, counted


HEAD = b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:x="x">'
CUT = "an entry runs on past 4 MiB or 50,000 tags without ending; the rest is left out"


def test_an_entry_that_runs_on_and_on_is_cut_with_the_entries_before_it_kept() -> None:
    # 4 bytes of XML an element, 1.1 GB of lxml's memory for 16 MiB of them.
    body = HEAD + b"<url><loc>http://a.test/</loc></url><url>" + b"<a/>" * 80_000
    document = read(body + b"</url></urlset>", 1 << 30)
    assert document.entries == [Entry("http://a.test/")] and document.problem == CUT
    # Elements named url inside it end too, and count for nothing: not entries of the root.
    nested = b"<url><loc>http://a.test/n</loc>" + (b"<a/>" * 1_000 + b"<x:url/>") * 60
    document = read(HEAD + nested + b"</url></urlset>", 1 << 30)
    assert document.entries == [] and document.problem == CUT
    # Nor do attributes escape the count: each is a node to lxml, as an element is.
    attributes = b"<url><loc>http://a.test/a</loc><a" + b"".join(
        b' a%d=""' % n for n in range(60_000)
    )
    document = read(HEAD + attributes + b"/></url></urlset>", 1 << 30)
    assert document.entries == [] and document.problem == CUT


def test_a_long_entry_of_an_image_sitemap_is_read_whole_and_so_are_those_after_it() -> None:
    image = b"<x:image><x:loc>http://cdn.a.test/" + b"i" * 400 + b"</x:loc></x:image>"
    entry = b"<url><loc>http://a.test/1</loc>" + image * 1_000 + b"</url>"  # 440 KiB
    tail = b"<url><loc>http://a.test/2</loc><x:url><loc>n</loc></x:url></url></urlset>"
    document = read(HEAD + entry + tail, 1 << 30)
    assert document.entries == [Entry("http://a.test/1"), Entry("http://a.test/2")]
    assert document.problem is None  # the element named url in the second left its <loc>


def test_a_document_of_bare_ampersands_costs_no_more_memory_than_another() -> None:
    # Escaped at once, 16 MiB of them took 1.5 GB: a Python object for each.
    body = HEAD + b"<url><loc>http://a.test/" + b"&" * (4 << 20)
    tracemalloc.start()
    try:
        document = read(body, 1 << 30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert document.entries == [] and document.problem == CUT
    assert peak < 32 << 20, f"{peak:,} bytes"


def test_bare_ampersands_are_escaped_but_in_cdata_wherever_the_chunks_end() -> None:
    entries = (
        b"<url><loc>http://a.test/?a=1&amp;b=2&c=3&#38;d</loc></url>"
        b"<url><loc><![CDATA[http://a.test/?x=1&y=2&amp;z]]></loc></url>"
    )
    for shift in range(-len(entries), 8):
        # A comment moves the entries, byte by byte, across the parser's first 64 KiB.
        padding = b"<!--" + b"x" * (65_536 - len(HEAD) - 7 + shift) + b"-->"
        document = read(HEAD + padding + entries + b"</urlset>", 1 << 30)
        assert document.entries == [
            Entry("http://a.test/?a=1&b=2&c=3&d"),
            Entry("http://a.test/?x=1&y=2&amp;z"),  # CDATA: as written, never escaped
        ], shift


def test_a_cdata_marker_in_a_comment_or_instruction_opens_no_section() -> None:
    # It turned escaping off for the rest of the document, which then broke off.
    for aside in (b"<!-- <![CDATA[ -->", b"<?x <![CDATA[ ?>"):
        body = HEAD + aside + b"<url><loc>http://a.test/?a=1&b=2</loc></url></urlset>"
        assert read(body, 1 << 20).entries == [Entry("http://a.test/?a=1&b=2")]


def test_escaping_chunk_by_chunk_is_escaping_the_whole_document() -> None:
    pieces = [b"&", b"&amp;", b"&#38;", b"&#" + b"0" * 60 + b"38;", b"&x-y;", b"<![CDATA[", b"]]>"]
    pieces += [b"<!--", b"-->", b"<?", b"?>", b"]", b"-", b"?", b"<", b"a", b";", b">", b"!"]
    draw = random.Random(15)
    for _ in range(1500):
        document = b"".join(draw.choice(pieces) for _ in range(draw.randint(1, 120)))
        whole = _Ampersands()(document, last=True)
        escape, size, chunks = _Ampersands(), draw.choice((1, 2, 3, 7, 41, 64)), []
        for at in range(0, len(document), size):
            chunks.append(escape(document[at : at + size], last=at + size >= len(document)))
        assert b"".join(chunks) == whole, document


def test_a_comment_before_the_root_may_hold_tags_and_a_doctype_after_it_is_refused() -> None:
    urls = b"<urlset><url><loc>http://a.test/1</loc></url></urlset>"
    made_by = b"<?xml version='1.0'?>\n<!-- made by <b>SiteGen</b> --><?pi <x>?>\n"
    assert read(made_by + urls, 1 << 20).entries == [Entry("http://a.test/1")]
    with pytest.raises(FetchError, match="refused: it has a <!DOCTYPE>"):
        read(made_by + b"<!doctype urlset>" + urls, 1 << 20)


def test_a_text_sitemap_is_read_a_line_at_a_time_up_to_the_protocols_limit() -> None:
    lines = b"".join(b"http://a.test/%d\n" % n for n in range(60_000))
    document = read(lines, 1 << 30)
    assert len(document.entries) == 50_000 and document.entries[-1] == Entry("http://a.test/49999")
    assert (
        document.problem
        == "it has more than 50,000 lines, the protocol's limit; the rest is left out"
    )
    junk = b"ab\n" * (4 << 20)  # split at once: 400 MB of lines
    tracemalloc.start()
    try:
        with pytest.raises(FetchError, match="neither XML nor a list of URLs"):
            read(junk, 1 << 30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak:,} bytes"


def test_a_lastmod_past_the_moments_python_knows_is_unreadable_not_an_error() -> None:
    moment = datetime(2026, 11, 2, 9, tzinfo=UTC)
    assert period("2026-11-02T10:00:00+01:00") == (moment, moment)
    # In UTC these are in the years 10000 and 0: kept as a lastmod fw cannot read is,
    # where an OverflowError lost every entry of the sitemap.
    assert period("9999-12-31T23:59:59-23:59") is None
    assert period("0001-01-01T00:00:00+23:59") is None


async def test_a_sitemaps_only_project_needs_allowed_domains_not_start_urls(
    tmp_path: Path, serve: Serve
) -> None:
    site = Site(SHOP)
    base = await site.start(serve)
    host = base.removeprefix("http://")
    lines = [
        "spider: rules",
        f"allowed_domains: ['{host}']",
        "exporters: [{path: items.jsonl}]",
        f"sitemaps: {{urls: ['{base}/sitemap.txt']}}",
    ]
    project = write_project(tmp_path, "\n".join(lines) + RULES)
    checked = await run_fw("check", str(project))
    assert checked.returncode == 0
    assert "0 start URL(s) and 1 start request(s) from plugins" in checked.stdout
    await run(project)
    assert names(tmp_path) == ["Product 4"]


async def test_a_sitemap_that_fails_is_counted_and_listed_in_the_failures_file(
    tmp_path: Path, serve: Serve
) -> None:
    site = Site(SHOP)
    base = await site.start(serve)
    project = shop_project(tmp_path, base, f"{{urls: ['{base}/missing.xml']}}")
    stats = await run(project)
    assert stats.errors == Counter({"http_404": 1})
    failures = tmp_path / "project.failures.jsonl"
    listed = [json.loads(line) for line in failures.read_text().splitlines()]
    assert [(r["request"]["url"], r["kind"]) for r in listed] == [
        (f"{base}/missing.xml", "http_404")
    ]
    assert listed[0]["request"]["callback"] == "sitemaps:sitemap"
    # Once the server has it, --retry-failed reads that sitemap, and only it, again.
    site.files["/missing.xml"] = urlset(("/products/7", None))
    assert not (await run(project, retry_failed=True)).errors
    assert site.hits["/missing.xml"] == 2 and site.hits["/products/7"] == 1
    assert site.hits["/"] == 1


async def test_a_retry_takes_over_a_sitemaps_failure_an_older_fw_stored(
    tmp_path: Path, serve: Serve
) -> None:
    site = Site(SHOP)
    base = await site.start(serve)
    project = shop_project(
        tmp_path, base, f"{{urls: ['{base}/missing.xml']}}", "frontier: sqlite:///state.db"
    )
    assert (await run(project)).errors == Counter({"http_404": 1})
    # As an older fw stored it: under the fingerprint without the plugin's callback.
    sitemap = Request(f"{base}/missing.xml", callback=SITEMAP)
    new, old = (
        signed_fingerprint(fingerprint(sitemap)),
        signed_fingerprint(older_fingerprint(sitemap) or 0),
    )
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("UPDATE requests SET fp = ? WHERE fp = ?", (old, new)).rowcount == 1
        db.execute("UPDATE failed_fp SET fp = ? WHERE fp = ?", (old, new))
    site.files["/missing.xml"] = urlset(("/products/7", None))
    assert not (await run(project, retry_failed=True)).errors
    status = await run_fw("status", str(project))
    assert " failed 0" in status.stdout and site.hits["/products/7"] == 1, status.stdout


async def test_a_site_without_robots_txt_lists_no_sitemap_and_that_is_no_failure(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    site = Site({"/": "<h1>Home</h1>"})
    base = await site.start(serve)
    project = shop_project(tmp_path, base, "{robots: true}", "robots: ignore")
    with caplog.at_level(logging.INFO, logger="fw.sitemaps"):
        stats = await run(project)
    assert not stats.errors and stats.pages == 2
    assert f"{base}/robots.txt: HTTP 404: no robots.txt, so no sitemap from it" in caplog.text


async def test_a_sitemap_a_page_links_to_is_read_as_a_sitemap_too(
    tmp_path: Path, serve: Serve
) -> None:
    # robots.txt busy at first: the home page, linking to the sitemap, is parsed before
    # robots.txt lists it. Fetched as a page, the sitemap must still be read as one.
    class Busy(Site):
        async def handle(self, request: web.Request) -> web.Response:
            if request.path == "/robots.txt" and self.hits[request.path] < 2:
                self.hits[request.path] += 1
                return web.Response(status=503)
            return await super().handle(request)

    site = Busy(
        {
            "/": '<h1>Home</h1><footer><a href="/map.xml">sitemap</a></footer>',
            "/robots.txt": "User-agent: *\nAllow: /\nSitemap: {base}/map.xml\n",
            "/map.xml": urlset(("/products/1", None), ("/products/2", None)),
            **{f"/products/{n}": product(n) for n in (1, 2)},
        }
    )
    base = await site.start(serve)
    follow = "  follow: [a]\n"
    project = shop_project(tmp_path, base, "{robots: true}", "backoff: {base: 0.01}")
    project.write_text(project.read_text() + follow)
    stats = await run(project)
    assert names(tmp_path) == ["Product 1", "Product 2"] and not stats.errors
    assert site.hits["/map.xml"] == 2  # as the page the home links to, and as a sitemap


async def test_a_sitemap_of_pages_all_outside_allowed_domains_is_a_warning(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    site = Site(
        {
            "/": "<h1>Home</h1>",
            "/theirs.xml": urlset(("http://other.test/products/1", None)),
            "/old.xml": urlset(("/products/1", "2020-01-01")),  # left out on purpose
            "/products/1": product(1),
        }
    )
    base = await site.start(serve)
    urls = f"['{base}/theirs.xml', '{base}/old.xml']"
    project = shop_project(tmp_path, base, f"{{urls: {urls}, since: 2026-01-01}}")
    with caplog.at_level(logging.INFO, logger="fw.sitemaps"):
        await run(project)
    said = {r.levelname: r.getMessage() for r in caplog.records if r.name == "fw.sitemaps"}
    assert said["WARNING"] == (
        f"sitemap {base}/theirs.xml: 1 listed, 0 pages queued; left out: 1 outside allowed_domains"
    )
    assert said["INFO"].startswith(f"sitemap {base}/old.xml: 1 listed, 0 pages queued")


async def test_a_sitemap_past_max_requests_per_page_says_what_the_crawl_kept(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    site = Site(
        {
            "/": "<h1>Home</h1>",
            "/map.xml": urlset(*((f"/products/{n}", None) for n in range(1, 6))),
            **{f"/products/{n}": product(n) for n in range(1, 6)},
        }
    )
    base = await site.start(serve)
    project = shop_project(
        tmp_path, base, f"{{urls: ['{base}/map.xml']}}", "max_requests_per_page: 2"
    )
    with caplog.at_level(logging.INFO, logger="fw"):
        stats = await run(project)
    assert names(tmp_path) == ["Product 1", "Product 2"]
    assert stats.filtered["too_many_on_page"] == 3
    said = [r.getMessage() for r in caplog.records]
    assert (
        f"sitemap {base}/map.xml: 5 listed, 2 pages queued; left out: 3 past max_requests_per_page"
    ) in said
    assert (
        f"callback sitemaps:sitemap: 3 requests from {base}/map.xml dropped: past "
        "max_requests_per_page (2), which bounds what one page adds to the crawl"
    ) in said


async def test_a_recording_an_older_fw_made_of_a_sitemap_still_replays(
    tmp_path: Path, serve: Serve
) -> None:
    # Its sitemap's record is named by the fingerprint fw gave before a plugin's callback
    # was part of it.
    site = Site(
        {
            "/": "<h1>Home</h1>",
            "/map.xml": urlset(("/products/1", None), ("/products/2", None)),
            **{f"/products/{n}": product(n) for n in (1, 2)},
        }
    )
    base = await site.start(serve)
    project = shop_project(tmp_path, base, f"{{urls: ['{base}/map.xml']}}")
    recorded = await run_fw("run", str(project), "--record", "rec", cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    sitemap = Request(f"{base}/map.xml", callback=SITEMAP)
    new, old = f"{fingerprint(sitemap):016x}", f"{older_fingerprint(sitemap):016x}"
    for suffix in (".json", ".body"):
        (tmp_path / "rec" / f"{new}{suffix}").rename(tmp_path / "rec" / f"{old}{suffix}")
    (tmp_path / "items.jsonl").unlink()
    replayed = await run_fw("run", str(project), "--replay", "rec", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert names(tmp_path) == ["Product 1", "Product 2"]


async def test_a_looping_index_is_cut_and_each_sitemap_read_once(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    site = Site(
        {
            "/": "<h1>Home</h1>",
            "/a.xml": index(("/b.xml", None)),
            "/b.xml": index(("/a.xml", None), ("/c.xml", None)),
            "/c.xml": urlset(("/products/1", None)),
            "/products/1": product(1),
        }
    )
    base = await site.start(serve)
    project = shop_project(tmp_path, base, f"{{urls: ['{base}/a.xml']}}")
    stats = await run(project)
    assert names(tmp_path) == ["Product 1"] and not stats.errors
    assert [site.hits[p] for p in ("/a.xml", "/b.xml", "/c.xml")] == [1, 1, 1]
    assert f"sitemap loop cut: {base}/a.xml -> {base}/b.xml lists {base}/a.xml" in caplog.text


async def test_indexes_nested_too_deep_are_cut_as_a_bad_sitemap(
    tmp_path: Path, serve: Serve
) -> None:
    # An endless chain of indexes, each one new: dedup alone would never end it.
    site = Site({f"/deep/{n}.xml": index((f"/deep/{n + 1}.xml", None)) for n in range(50)})
    site.files["/"] = "<h1>Home</h1>"
    base = await site.start(serve)
    project = shop_project(tmp_path, base, f"{{urls: ['{base}/deep/0.xml']}}")
    stats = await run(project)
    read = sorted(int(p.split("/")[2].split(".")[0]) for p in site.hits if p.startswith("/deep"))
    assert read == [0, 1, 2, 3, 4, 5]
    assert stats.errors == Counter({"bad_sitemap": 1})


LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">\n'
        for n in range(1, 10)
    )
    + "]>\n<urlset><url><loc>{base}/products/&lol9;</loc></url></urlset>"
)


def xxe(secret: Path) -> str:
    return (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE urlset [<!ENTITY file SYSTEM "file://{secret}">'
        '<!ENTITY web SYSTEM "{base}/stolen">]>\n'
        "<urlset><url><loc>{base}/products/&file;&web;</loc></url></urlset>"
    )


async def test_hostile_sitemaps_are_refused_without_expanding_or_fetching_anything(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2", encoding="utf-8")
    site = Site(
        {
            "/": "<h1>Home</h1>",
            "/laughs.xml": LAUGHS,
            "/xxe.xml": xxe(secret),
            "/dtd.xml": '<!DOCTYPE urlset SYSTEM "{base}/evil.dtd"><urlset/>',
            "/undeclared.xml": urlset(("/products/1", None)).replace("</loc>", "&x;</loc>"),
            "/html.xml": "<!doctype html><html><body>Not found</body></html>",
            "/bomb.xml.gz": " " * 300_000,
            "/big.xml": urlset(*((f"/products/{n}", None) for n in range(10_000))),
        }
    )
    base = await site.start(serve)
    hostile = ["laughs", "xxe", "dtd", "undeclared", "html", "bomb", "big"]
    urls = ", ".join(f"'{base}/{name}.xml{'.gz' if name == 'bomb' else ''}'" for name in hostile)
    project = shop_project(
        tmp_path, base, f"{{urls: [{urls}]}}", "max_response_size: 200000\nretries: 0"
    )
    stats = await run(project)
    assert stats.errors == Counter({"bad_sitemap": 5, "too_large": 2})
    assert site.hits["/stolen"] == site.hits["/evil.dtd"] == 0
    assert not [path for path in site.hits if "/products/" in path]
    assert "hunter2" not in caplog.text
    assert "refused: it has a <!DOCTYPE>, which no sitemap has" in caplog.text
    assert "its XML breaks off: Entity 'x' not defined" in caplog.text


SECOND = gzip.compress(b"http://shop.test/c\nhttp://shop.test/d\n")


@pytest.mark.parametrize(
    ("after", "more", "problem"),
    [
        (b"", [], False),
        (b"\n", [], False),  # a newline a server added: ignored, as gzip(1) ignores it
        (b"\0\0\0\0", [], False),  # padding to a block's end, as tar leaves it
        (SECOND, ["c", "d"], False),  # a second member: read too
        (gzip.compress(b"") + SECOND, ["c", "d"], False),  # an empty one between
        (SECOND[:-9], ["c", "d"], True),  # its trailer cut: its lines are whole
        (SECOND[:12], [], True),  # cut in its header
    ],
    ids=["one", "newline", "padding", "two-members", "empty-member", "second-cut", "header-cut"],
)
def test_a_gzip_sitemap_is_read_member_after_member_up_to_its_end(
    after: bytes, more: list[str], problem: bool
) -> None:
    document = read(gzip.compress(b"http://shop.test/a\nhttp://shop.test/b\n") + after, 1 << 20)
    assert [entry.loc for entry in document.entries] == [
        f"http://shop.test/{name}" for name in ["a", "b", *more]
    ]
    assert (document.problem or "").startswith("its gzip stream breaks off after") == problem


@pytest.mark.parametrize("mark", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_a_sitemap_in_utf16_or_utf32_with_its_mark_is_read(mark: str) -> None:
    # The protocol asks for UTF-8; a server that wrote another encoding says so.
    xml = urlset(("/caf\u00e9", None)).replace("{base}", "http://shop.test")
    xml = xml.replace("encoding='UTF-8'", "encoding='UTF-16'")
    body = b"\xfe\xff" + xml.encode(mark) if mark == "utf-16-be" else xml.encode(mark)
    assert [entry.loc for entry in read(body, 1 << 20).entries] == ["http://shop.test/caf\u00e9"]
    text = "http://shop.test/a\nhttp://shop.test/b\n".encode("utf-16")
    assert [entry.loc for entry in read(text, 1 << 20).entries] == [
        "http://shop.test/a",
        "http://shop.test/b",
    ]


def test_a_utf8_sitemap_with_its_mark_and_a_bad_byte_keeps_the_entries_before_it() -> None:
    xml = urlset(*((f"/{n}", None) for n in range(5))).replace("{base}", "http://shop.test")
    body = b"\xef\xbb\xbf" + xml.encode().replace(b"/3<", b"/3\xe9<")  # one Latin-1 byte
    document = read(body, 1 << 20)
    assert [entry.loc for entry in document.entries][:3] == [
        f"http://shop.test/{n}" for n in range(3)
    ]
    assert document.problem is not None and document.problem.startswith("its XML breaks off")


def test_an_error_that_breaks_nothing_is_not_named_for_the_one_that_does() -> None:
    # An undeclared prefix (common in image sitemaps) is an error libxml2 reads past.
    xml = urlset(("/0", None), ("/1?a=1&nbsp;b", None)).replace("{base}", "http://shop.test")
    xml = xml.replace(
        "<url><loc>http://shop.test/0</loc>", "<url><img:image/><loc>http://shop.test/0</loc>"
    )
    assert read(xml.encode(), 1 << 20).problem == (
        "its XML breaks off: Entity 'nbsp' not defined (line 1)"
    )


@pytest.mark.parametrize("entries", [3, 3000])  # one chunk, or many fed after the error
def test_a_sitemap_that_breaks_off_says_what_broke_it_however_long(entries: int) -> None:
    urls = [f"/{n}" for n in range(entries)]
    urls[1] = "/1?a=1&amp;b&nbsp;c"  # an entity XML does not define
    body = urlset(*((url, None) for url in urls)).replace("{base}", "http://shop.test")
    document = read(body.encode(), 1 << 24)
    assert [entry.loc for entry in document.entries] == ["http://shop.test/0"]
    assert document.problem == "its XML breaks off: Entity 'nbsp' not defined (line 1)"


async def test_a_sitemap_that_breaks_off_gives_the_pages_it_listed_whole(
    tmp_path: Path, serve: Serve
) -> None:
    text = "".join(f"{{base}}/products/{n}\n" for n in range(1, 9))
    site = Site(
        {
            "/": "<h1>Home</h1>",
            # Cut in the middle of its third <loc>: that URL is no page of the site.
            "/cut.xml": urlset(*((f"/products/{n}", None) for n in (1, 2, 9)))[:-30],
            **{f"/products/{n}": product(n) for n in range(1, 9)},
        }
    )
    base = await site.start(serve)
    whole = gzip.compress(text.replace("{base}", base).encode())
    site.files["/cut.txt"] = whole[: len(whole) - 12]  # served as is: a cut gzip stream
    urls = f"['{base}/cut.xml', '{base}/cut.txt']"
    project = shop_project(tmp_path, base, f"{{urls: {urls}}}", "max_depth: 0\nretries: 0")
    stats = await run(project)
    assert stats.errors == Counter({"bad_sitemap": 2})
    crawled = names(tmp_path)
    assert "Product 1" in crawled and "Product 2" in crawled and "Product 9" not in crawled
    # Every page fetched is one the sitemaps listed whole: none is a URL cut short.
    assert all(site.hits[p] == 1 for p in site.hits), site.hits
    assert not [p for p in site.hits if p.startswith("/products/") and p not in site.files]


async def test_an_entry_that_is_no_url_is_left_out_and_the_others_read(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    site = Site(
        {
            "/": "<h1>Home</h1>",
            "/robots.txt": "Sitemap: http://[::1\nSitemap: {base}/s.xml\n",
            "/s.xml": "<urlset><url><loc>http://[::1</loc></url>"
            "<url><loc>{base}/products/1</loc></url></urlset>",
            "/products/1": product(1),
        }
    )
    base = await site.start(serve)
    project = shop_project(tmp_path, base, "{robots: true}", "max_depth: 0")
    with caplog.at_level(logging.INFO, logger="fw.sitemaps"):
        stats = await run(project)
    assert names(tmp_path) == ["Product 1"] and not stats.errors
    assert f"sitemap {base}/s.xml: 2 listed, 1 pages queued; left out: 1 not a URL" in caplog.text


async def test_a_resumed_crawl_does_not_read_its_finished_sitemaps_again(
    tmp_path: Path, serve: Serve
) -> None:
    site = Site(SHOP)
    base = await site.start(serve)
    project = shop_project(
        tmp_path,
        base,
        "{robots: true, follow: ['/products/']}",
        "frontier: sqlite:///state/crawl.db\nrobots: ignore\nconcurrency: {total: 1}",
    )
    first = await run(project, "max_pages=4")
    assert first.reason == "max_pages reached"
    # Stopped half-way: robots.txt and the index read, the sitemaps it lists still queued.
    assert site.hits["/robots.txt"] == site.hits["/sitemap_index.xml"] == 1
    assert site.hits["/sitemap-products.xml.gz"] == 0
    await run(project)
    sitemaps = [p for p in site.hits if "sitemap" in p or p == "/robots.txt"]
    assert sitemaps and all(site.hits[p] == 1 for p in sitemaps), site.hits
    assert names(tmp_path) == [f"Product {n}" for n in (1, 2, 3, 4, 5, 9)]


async def test_a_crawl_that_ignores_robots_txt_still_reads_its_sitemaps_once(
    tmp_path: Path, serve: Serve
) -> None:
    site = Site(SHOP)
    base = await site.start(serve)
    project = shop_project(tmp_path, base, "{robots: true, since: 2026-11-01}", "robots: ignore")
    await run(project)
    assert site.hits["/robots.txt"] == 1
    assert names(tmp_path) == ["Product 1", "Product 3", "Product 4", "Product 5"]


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ("{}", "sitemaps: nothing to read: give the sitemaps"),
        ("{robots: false}", "sitemaps: nothing to read"),
        ("{urls: [ftp://a.test/s.xml]}", "sitemaps.urls[0]: 'ftp://a.test/s.xml' is not an http"),
        ("{robots: true, follow: ['(']}", "sitemaps.follow[0]: not a valid regular expression"),
        ("{robots: true, since: soon}", "sitemaps.since: expected a date such as 2026-11-01"),
        (  # the year 0 in UTC
            "{robots: true, since: 0001-01-01T00:00:00+23:59}",
            "sitemaps.since: expected a date such as 2026-11-01",
        ),
        ("{robots: yes please}", "sitemaps.robots: expected true or false"),
        ("{robots: true, sinse: 2026-01-01}", "sitemaps.sinse: unknown key"),
        ("{robots: true, callback: parse_itme}", "sitemaps.callback: spider rules has no method"),
        ("{urls: ['http://elsewhere.test/s.xml']}", "sitemaps.urls[0]: http://elsewhere.test/"),
    ],
)
def test_a_mistake_in_the_section_is_one_located_line(
    tmp_path: Path, section: str, error: str
) -> None:
    project = shop_project(tmp_path, "http://shop.test", section)
    with pytest.raises(ProjectError, match=re.escape(f"{project}:4: {error}")):
        runner.prepare(project)


def test_every_url_of_the_section_that_is_no_http_url_is_said_in_one_run(tmp_path: Path) -> None:
    urls = "{urls: ['ftp://a.test/s.xml', 'http://shop.test/s.xml', 's.xml']}"
    project = shop_project(tmp_path, "http://shop.test", urls)
    with pytest.raises(ProjectError) as raised:
        runner.prepare(project)
    assert str(raised.value).splitlines() == [
        f"{project}:4: sitemaps.urls[0]: 'ftp://a.test/s.xml' is not an http(s) URL",
        f"{project}:4: sitemaps.urls[2]: 's.xml' is not an http(s) URL",
    ]


def test_a_project_with_neither_start_urls_nor_allowed_domains_is_refused(tmp_path: Path) -> None:
    project = write_project(
        tmp_path, "spider: rules\nsitemaps: {urls: ['http://a.test/s.xml']}\n" + RULES
    )
    with pytest.raises(ProjectError, match="sitemaps: the crawl has no start_urls, so no default"):
        runner.prepare(project)


async def test_fw_plugins_lists_the_sitemaps_plugin() -> None:
    listed = await run_fw("plugins")
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith("sitemaps ")]
    assert "extra_start_requests, register_callbacks" in line
    assert "callbacks: sitemaps:sitemap, sitemaps:robots" in line


DOCS = Path(__file__).parents[2] / "docs" / "sitemaps.md"


def test_the_reference_page_lists_every_option_as_the_code_has_it() -> None:
    page = DOCS.read_text(encoding="utf-8")
    table = page.split("<!-- options: sitemaps -->\n", 1)[1].split("\n\n", 1)[0] + "\n"
    assert table == options_table(SitemapsOptions, "sitemaps."), (
        "docs/sitemaps.md: paste options_table(SitemapsOptions, 'sitemaps.') in place"
    )


async def test_the_reference_pages_example_runs_as_written(tmp_path: Path, serve: Serve) -> None:
    site = Site(
        {
            "/": "<h1>Home</h1>",
            "/robots.txt": "User-agent: *\nSitemap: {base}/sitemap.xml\n",
            "/sitemap.xml": urlset(("/products/1", "2026-11-20"), ("/products/2", "2025-01-01")),
            "/sitemap-extra.xml.gz": urlset(("/products/3", None), ("/blog/1", None)),
            **{f"/products/{n}": product(n) for n in range(1, 4)},
        }
    )
    base = await site.start(serve)
    page = DOCS.read_text(encoding="utf-8").replace("https://shop.example", base)
    yaml = page.split("<!-- test: write shop.yaml -->\n```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "shop.yaml").write_text(yaml, encoding="utf-8")
    commands = [
        line.split()[1:]
        for block in re.findall(r"```sh\n(.*?)```", page, re.DOTALL)
        for line in block.splitlines()
    ]
    assert [c[0] for c in commands] == ["check", "run", "parse"]
    outputs = [await run_fw(*command, cwd=tmp_path) for command in commands]
    assert [o.returncode for o in outputs] == [0, 0, 0], [o.stderr for o in outputs]
    assert names(tmp_path) == ["Product 1", "Product 3"]
    assert f"{base}/products/3" in outputs[2].stdout
    assert f"{base}/blog/1" not in outputs[2].stdout
