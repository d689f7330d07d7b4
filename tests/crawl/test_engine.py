"""The engine against loopback servers: limits, dedup, retries, redirects, termination."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import types
from pathlib import Path

import pytest
from aiohttp import web

from framework.crawl.failures import spider_origin
from framework.crawl.stats import Stats
from framework.hooks.manager import make_plugin_manager
from framework.spider import Spider
from framework.tools import status
from tests.conftest import Serve, crawl, read_jsonl, write_project

SPIDER = """
from framework import Spider, hookimpl

class Links(Spider):
    name = "links"

    async def parse(self, response):
        yield {"url": response.url, "status": response.status}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href)

@hookimpl
def register_spiders(register):
    register(Links)
"""


def links_project(tmp_path: Path, base: str, extra: str = "") -> Path:
    (tmp_path / "links.py").write_text(SPIDER, encoding="utf-8")
    path = write_project(
        tmp_path,
        f"""
        spider: links
        start_urls: [{base}/]
        plugins: [./links.py]
        exporters: [{{path: out/items.jsonl}}]
        backoff: {{base: 0.01, max: 1}}
        robots: ignore
        """,
    )
    with path.open("a", encoding="utf-8") as file:
        file.write(extra + "\n")
    return path


def page(*links: str) -> web.Response:
    body = "".join(f'<a href="{href}">x</a>' for href in links)
    return web.Response(text=f"<html><body>{body}</body></html>", content_type="text/html")


async def any_path(serve: Serve) -> str:
    """Serve a page without links at every path; return the server's base URL."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", static())
    return str(await serve(app))


def static(*links: str):  # type: ignore[no-untyped-def]
    """A handler answering a page with these links."""

    async def handler(request: web.Request) -> web.Response:
        return page(*links)

    return handler


async def test_crawl_follows_links_once_and_ends_by_itself(tmp_path: Path, serve: Serve) -> None:
    hits: dict[str, int] = {}

    async def handler(request: web.Request) -> web.Response:
        hits[request.path_qs] = hits.get(request.path_qs, 0) + 1
        n = int(request.path.strip("/") or 0)
        return page(
            f"/{(n + 1) % 10}",
            f"/{(n * 3) % 10}#frag",
            "mailto:a@b",
            "javascript:void(0)",
            "/1?b=2&a=1",
            "/1?a=1&b=2",
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    base = await serve(app)
    stats = await crawl(links_project(tmp_path, base))
    assert stats.reason == "finished"
    # Fragments and query order do not make a new page; each page is fetched once.
    assert sorted(hits) == sorted(["/", "/1?b=2&a=1", *(f"/{n}" for n in range(10))])
    assert set(hits.values()) == {1}
    items = read_jsonl(tmp_path / "out/items.jsonl")
    assert len(items) == stats.items == stats.pages == len(hits)
    assert stats.filtered["scheme"] == 2 * len(hits)


class Gauge:
    """Count requests in flight on a server, overall and per host, and keep the peaks."""

    def __init__(self) -> None:
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.total = self.peak_total = 0

    async def handle(self, request: web.Request) -> web.Response:
        host = request.host.partition(":")[0]
        self.now[host] = self.now.get(host, 0) + 1
        self.total += 1
        self.peak[host] = max(self.peak.get(host, 0), self.now[host])
        self.peak_total = max(self.peak_total, self.total)
        try:
            await asyncio.sleep(0.02)  # latency, so that requests overlap
            n = int(request.path.strip("/") or 0)
            return page(*(f"/{m}" for m in range(n * 5 + 1, n * 5 + 6) if m < 40))
        finally:
            self.now[host] -= 1
            self.total -= 1


async def test_total_and_per_domain_concurrency_are_exact(tmp_path: Path, serve: Serve) -> None:
    gauge = Gauge()
    app = web.Application()
    app.router.add_get("/{tail:.*}", gauge.handle)
    bases = [await serve(app, host) for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3")]
    project = links_project(tmp_path, bases[0], "concurrency: {total: 7, per_domain: 3}")
    stats = await crawl(project, f"start_urls=[{bases[0]}/, {bases[1]}/, {bases[2]}/]")
    assert stats.pages == 3 * 40
    assert gauge.peak == {"127.0.0.1": 3, "127.0.0.2": 3, "127.0.0.3": 3}
    assert gauge.peak_total == 7


async def test_one_slow_host_does_not_starve_the_others(tmp_path: Path, serve: Serve) -> None:
    release = asyncio.Event()
    fast_done: list[str] = []

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return page()

    async def fast(request: web.Request) -> web.Response:
        fast_done.append(request.path)
        n = int(request.path.strip("/") or 0)
        if n == 20:
            release.set()  # the slow host answers only once the fast one is done
        return page(f"/{n + 1}") if n < 20 else page()

    slow_app, fast_app = web.Application(), web.Application()
    slow_app.router.add_get("/{tail:.*}", slow)
    fast_app.router.add_get("/{tail:.*}", fast)
    slow_base = await serve(slow_app, "127.0.0.1")
    fast_base = await serve(fast_app, "127.0.0.2")
    (tmp_path / "links.py").write_text(SPIDER, encoding="utf-8")
    slow_urls = ", ".join(f"{slow_base}/s{i}" for i in range(10))
    project = write_project(
        tmp_path,
        f"""
        spider: links
        start_urls: [{slow_urls}, {fast_base}/]
        plugins: [./links.py]
        concurrency: {{total: 4, per_domain: 2}}
        robots: ignore
        """,
    )
    stats = await asyncio.wait_for(crawl(project), 20)
    assert len(fast_done) == 21 and stats.pages == 31


def flaky(statuses: list[int], headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """A handler answering with each status in turn, then 200; it records when it was hit."""
    hits: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(asyncio.get_running_loop().time())
        if len(hits) <= len(statuses):
            return web.Response(status=statuses[len(hits) - 1], headers=headers)
        return page()

    return handler, hits


async def test_5xx_is_retried_with_exponential_backoff(tmp_path: Path, serve: Serve) -> None:
    handler, hits = flaky([503, 500, 502])
    app = web.Application()
    app.router.add_get("/", handler)
    base = await serve(app)
    stats = await crawl(links_project(tmp_path, base, "retries: 3"), "backoff.base=0.1")
    assert len(hits) == 4 and stats.items == 1 and stats.retries == 3
    gaps = [b - a for a, b in itertools.pairwise(hits)]
    # base * 2**n, jittered by 0.5-1.5: each wait is at least half its nominal value.
    assert all(gap >= 0.1 * 2**n * 0.5 for n, gap in enumerate(gaps)), gaps
    assert stats.errors == {}


async def test_retries_run_out_and_the_failure_is_counted(tmp_path: Path, serve: Serve) -> None:
    handler, hits = flaky([503] * 10)
    app = web.Application()
    app.router.add_get("/", handler)
    base = await serve(app)
    stats = await crawl(links_project(tmp_path, base, "retries: 2"))
    assert len(hits) == 3
    assert stats.errors == {"http_503": 1} and stats.items == 0


async def test_429_honours_retry_after(tmp_path: Path, serve: Serve) -> None:
    handler, hits = flaky([429], {"Retry-After": "1"})
    app = web.Application()
    app.router.add_get("/", handler)
    base = await serve(app)
    stats = await crawl(links_project(tmp_path, base))
    assert len(hits) == 2 and stats.items == 1
    assert hits[1] - hits[0] >= 1.0


async def test_retry_after_beyond_the_backoff_cap_fails_at_once(
    tmp_path: Path, serve: Serve
) -> None:
    handler, hits = flaky([429], {"Retry-After": "3600"})
    app = web.Application()
    app.router.add_get("/", handler)
    base = await serve(app)
    stats = await crawl(links_project(tmp_path, base))
    assert len(hits) == 1 and stats.errors == {"http_429": 1}


async def test_other_4xx_are_not_retried(tmp_path: Path, serve: Serve) -> None:
    gone, gone_hits = flaky([410] * 5)
    missing, missing_hits = flaky([404] * 5)
    app = web.Application()
    app.router.add_get("/", static("/gone", "/missing"))
    app.router.add_get("/gone", gone)
    app.router.add_get("/missing", missing)
    base = await serve(app)
    stats = await crawl(links_project(tmp_path, base))
    assert len(gone_hits) == len(missing_hits) == 1
    assert stats.errors == {"http_410": 1, "http_404": 1}


async def test_connection_errors_and_timeouts_are_retried_and_counted(
    tmp_path: Path, serve: Serve
) -> None:
    stalled = asyncio.Event()
    stalls: list[int] = []

    async def stall(request: web.Request) -> web.Response:
        stalls.append(1)
        await stalled.wait()
        return page()

    app = web.Application()
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app.router.add_get("/", static("/stall", dead + "/"))
    app.router.add_get("/stall", stall)
    base = await serve(app)
    project = links_project(tmp_path, base, "retries: 1\ntimeout: 0.3")
    try:
        stats = await crawl(project, "allowed_domains=[127.0.0.1]")
    finally:
        stalled.set()
    assert stats.errors == {"timeout": 1, "connection": 1}
    assert len(stalls) == 2 and stats.retries == 2


async def test_redirects_go_through_dedup_offsite_and_a_bound(tmp_path: Path, serve: Serve) -> None:
    hits: list[str] = []

    def redirect(to: str, status: int = 302):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.Response:
            hits.append(request.path)
            return web.Response(status=status, headers={"Location": to})

        return handler

    async def chain(request: web.Request) -> web.Response:
        hits.append(request.path)
        n = int(request.match_info["n"])
        return web.Response(status=301, headers={"Location": f"/chain/{n + 1}"})

    async def target(request: web.Request) -> web.Response:
        hits.append(request.path)
        return page()

    app = web.Application()
    app.router.add_get("/", static("/a", "/away", "/chain/0", "/to-target", "/target"))
    app.router.add_get("/a", redirect("/b"))
    app.router.add_get("/b", redirect("/a", 301))  # a loop: a failure, not a lost page
    app.router.add_get("/away", redirect("http://elsewhere.example/"))
    app.router.add_get("/chain/{n}", chain)
    app.router.add_get("/to-target", redirect("/target", 307))
    app.router.add_get("/target", target)
    base = await serve(app)
    stats = await crawl(links_project(tmp_path, base, "max_redirects: 3"))
    assert hits.count("/a") == 1 and hits.count("/b") == 1 and hits.count("/target") == 1
    assert [h for h in hits if h.startswith("/chain")] == [f"/chain/{n}" for n in range(4)]
    assert stats.errors == {"redirects": 2, "offsite_redirect": 1}  # the loop and the chain
    assert stats.items == 2  # "/" and "/target"; redirects themselves yield nothing


async def test_higher_priority_is_fetched_first(tmp_path: Path, serve: Serve) -> None:
    order: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        order.append(request.path)
        return page()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    base = await serve(app)
    (tmp_path / "prio.py").write_text(
        """
from framework import Request, Spider, hookimpl

class Prio(Spider):
    name = "prio"

    async def parse(self, response):
        if response.url.endswith("/"):
            for n in (3, 1, 4, 1, 5, 9, 2, 6):
                yield response.follow(f"/p{n}", priority=n)

@hookimpl
def register_spiders(register):
    register(Prio)
""",
        encoding="utf-8",
    )
    project = write_project(
        tmp_path,
        f"""
        spider: prio
        start_urls: [{base}/]
        plugins: [./prio.py]
        concurrency: {{total: 1, per_domain: 1}}
        robots: ignore
        """,
    )
    await crawl(project)
    assert order == ["/", "/p9", "/p6", "/p5", "/p4", "/p3", "/p2", "/p1"]


async def test_max_depth_max_pages_and_max_items(tmp_path: Path, serve: Serve) -> None:
    async def handler(request: web.Request) -> web.Response:
        n = int(request.path.strip("/") or 0)  # a binary tree: no page is linked twice
        return page(f"/{2 * n + 1}", f"/{2 * n + 2}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    base = await serve(app)
    project = links_project(tmp_path, base, "concurrency: {total: 1, per_domain: 1}")
    deep = await crawl(project, "max_depth=2")
    assert deep.pages == 1 + 2 + 4 and deep.reason == "finished"
    assert deep.filtered["depth"] == 8
    pages = await crawl(project, "max_pages=5")
    assert pages.pages == 5 and pages.reason == "max_pages reached"
    items = await crawl(project, "max_items=3")
    assert items.items == 3 and items.reason == "max_items reached"
    assert len(read_jsonl(tmp_path / "out/items.jsonl")) == 3


async def test_a_page_adds_at_most_max_requests_per_page_and_is_named(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    fetched: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        fetched.append(request.path)
        return page(*(f"/{n}" for n in range(1, 61))) if request.path == "/" else page()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    base = await serve(app)
    project = links_project(tmp_path, base, "concurrency: {total: 1, per_domain: 1}")
    stats = await crawl(project, "max_requests_per_page=50")
    assert stats.reason == "finished" and stats.filtered["too_many_on_page"] == 10
    assert sorted(fetched) == sorted(["/", *(f"/{n}" for n in range(1, 51))])  # the first 50
    assert f"10 requests from {base}/ dropped: past max_requests_per_page (50)" in caplog.text
    whole = await crawl(project)  # the default takes a sitemap's 50,000 links
    assert whole.pages == 61 and "too_many_on_page" not in whole.filtered


async def test_max_pages_counts_only_requests_that_went_to_the_network(
    tmp_path: Path, serve: Serve
) -> None:
    fetched: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/robots.txt":
            return web.Response(text="User-agent: *\nDisallow: /private/\n")
        fetched.append(request.path)
        if request.path == "/":  # the disallowed links first: they are claimed first
            return page(*(f"/private/{n}" for n in range(5)), *(f"/{n}" for n in range(1, 6)))
        return page()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    project = links_project(tmp_path, await serve(app), "concurrency: {total: 1, per_domain: 1}")
    stats = await crawl(project, "robots=obey", "max_pages=4")
    assert stats.reason == "max_pages reached" and stats.filtered["robots"] == 5
    assert fetched == ["/", "/1", "/2", "/3"] and stats.pages == 4
    many = await crawl(
        project, "robots=obey", "max_pages=4", "concurrency={total: 8, per_domain: 8}"
    )
    assert many.pages == 4 and many.reason == "max_pages reached"  # exact, however many workers


async def test_invalid_links_and_locations_are_filtered_not_fatal(
    tmp_path: Path, serve: Serve
) -> None:
    hits: list[str] = []

    async def bad_location(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "http://[::1/"})

    async def good(request: web.Request) -> web.Response:
        hits.append(request.path)
        return page()

    app = web.Application()
    app.router.add_get(
        "/", static("http://127.0.0.1:99999/x", "http://[::1/", "/bad-location", "/good")
    )
    app.router.add_get("/bad-location", bad_location)
    app.router.add_get("/good", good)
    base = await serve(app)
    stats = await crawl(links_project(tmp_path, base))
    assert stats.reason == "finished" and hits == ["/good"]
    assert stats.filtered["invalid_url"] == 2
    assert stats.errors == {"invalid_url": 1}  # the redirect to nowhere


async def test_a_link_with_a_raw_line_break_is_an_invalid_url(tmp_path: Path, serve: Serve) -> None:
    hits: list[str] = []

    async def good(request: web.Request) -> web.Response:
        hits.append(request.path)
        return page()

    app = web.Application()
    app.router.add_get("/", static("/a\nINFO: forged", "/b\tc", "/good\r\n", "/good"))
    app.router.add_get("/{tail:.*}", good)
    base = await serve(app)
    stats = await crawl(links_project(tmp_path, base))
    assert hits == ["/good"]  # the trailing line break of "/good\r\n" is only whitespace
    assert stats.filtered["invalid_url"] == 2


ENDLESS = """
import asyncio, itertools
from framework import CloseSpider, Request, Spider, hookimpl

class Endless(Spider):
    name = "endless"

    def start_requests(self):
        if self.options.get("close"):
            yield Request(self.start_urls[0] + "0")
            raise CloseSpider("no more")
        for n in itertools.count():  # never awaits, never ends
            yield Request(f"{self.start_urls[0]}{n}")

    async def parse(self, response):
        yield {"url": response.url}

class EndlessAsync(Endless):
    name = "endless_async"

    async def start_requests(self):
        for n in itertools.count():
            await asyncio.sleep(0)
            yield Request(f"{self.start_urls[0]}{n}")

@hookimpl
def register_spiders(register):
    register(Endless)
    register(EndlessAsync)
"""


@pytest.mark.parametrize("spider", ["endless", "endless_async"])
async def test_endless_start_requests_stop_with_the_crawl(
    tmp_path: Path, serve: Serve, spider: str
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return page()

    app = web.Application()
    app.router.add_get("/{n}", handler)
    base = await serve(app)
    (tmp_path / "endless.py").write_text(ENDLESS, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: {spider}
        start_urls: [{base}/]
        plugins: [./endless.py]
        max_pages: 5
        """,
    )
    async with asyncio.timeout(20):
        stats = await crawl(project)
    assert stats.pages == 5 and stats.reason == "max_pages reached"
    assert stats.left is not None and stats.left.pending <= 10_000 + 100  # back-pressure


async def test_close_spider_from_start_requests_stops_cleanly(tmp_path: Path, serve: Serve) -> None:
    async def handler(request: web.Request) -> web.Response:
        return page()

    app = web.Application()
    app.router.add_get("/{n}", handler)
    base = await serve(app)
    (tmp_path / "endless.py").write_text(ENDLESS, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: endless
        start_urls: [{base}/]
        plugins: [./endless.py]
        endless: {{close: true}}
        """,
    )
    stats = await crawl(project)
    assert stats.reason == "closed by spider: no more" and stats.errors == {}
    assert stats.pages <= 1


CLOSING = """
import asyncio
from framework import CloseSpider, Request, Spider, hookimpl

class Closing(Spider):
    name = "closing"

    def start_requests(self):
        for n in range(5):
            yield Request(f"{self.start_urls[0]}{n}")
        raise CloseSpider("enough at start")

@hookimpl
def register_spiders(register):
    register(Closing)

@hookimpl
async def request_scheduled(request):
    await asyncio.sleep(0.01)  # workers would claim meanwhile
"""


async def test_close_spider_from_start_requests_fetches_none_of_them(
    tmp_path: Path, serve: Serve
) -> None:
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        return page()

    app = web.Application()
    app.router.add_get("/{n}", handler)
    base = await serve(app)
    (tmp_path / "closing.py").write_text(CLOSING, encoding="utf-8")
    project = write_project(
        tmp_path, f"spider: closing\nstart_urls: [{base}/]\nplugins: [./closing.py]\n"
    )
    stats = await crawl(project)
    assert stats.reason == "closed by spider: enough at start"
    assert hits == [] and stats.pages == 0


MISBEHAVING = """
import asyncio
from framework import DropItem, Middleware, Spider, hookimpl

class Items(Spider):
    name = "items"

    async def parse(self, response):
        if response.url.endswith("/"):
            for n in range(6):
                yield response.follow(f"/{n}")
        yield {"url": response.url, "odd": object() if response.url.endswith("/3") else None}

class ReturnsNothing(Middleware):
    name = "returns_nothing"

    async def __call__(self, request, handler):
        if request.url.endswith("/5"):
            return None
        return await handler(request)

@hookimpl
def register_spiders(register):
    register(Items)

@hookimpl
def register_middlewares(register):
    register(ReturnsNothing)

@hookimpl
def response_received(response):
    if response.url.endswith("/4"):
        raise DropItem("not allowed here")

@hookimpl
async def item_scraped(item):
    await asyncio.sleep(0)  # lets other workers reach the limit check meanwhile
"""


async def test_plugin_and_item_mistakes_fail_alone(tmp_path: Path, serve: Serve) -> None:
    base = await any_path(serve)
    (tmp_path / "misbehaving.py").write_text(MISBEHAVING, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: items
        start_urls: [{base}/]
        plugins: [./misbehaving.py]
        exporters: [{{path: out/items.jsonl}}]
        """,
    )
    stats = await crawl(project)
    exported = {item["url"] for item in read_jsonl(tmp_path / "out/items.jsonl")}
    # /3 cannot be encoded; /5 was answered with None by a middleware; /4's hook misused
    # DropItem, which is reported but does not drop anything.
    assert exported == {f"{base}/", *(f"{base}/{n}" for n in (0, 1, 2, 4))}
    assert stats.errors == {"item_error": 1, "plugin_error": 2}
    assert stats.reason == "finished"
    assert stats.items == len(exported)  # the item no exporter could write is not counted
    assert f"{len(exported)} items exported (1 unexportable)" in stats.summary()[0]


PICKY = """
from framework import Exporter, Spider, hookimpl

class Pages(Spider):
    name = "pages"

    async def parse(self, response):
        if response.url.endswith("/"):
            for n in range(4):
                yield response.follow(f"/{n}")
        yield {"url": response.url}

class Picky(Exporter):
    format = "picky"

    def open(self):
        self.file = open(self.path, "w")

    def write(self, item):
        if item["url"].endswith(("/1", "/2")):
            raise ValueError("not this one")
        self.file.write(item["url"] + "\\n")

    def close(self):
        self.file.close()

@hookimpl
def register_spiders(register):
    register(Pages)

@hookimpl
def register_exporters(register):
    register(Picky)
"""


async def test_an_export_that_misses_items_is_named_in_the_summary(
    tmp_path: Path, serve: Serve
) -> None:
    base = await any_path(serve)
    (tmp_path / "picky.py").write_text(PICKY, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: pages
        start_urls: [{base}/]
        plugins: [./picky.py]
        exporters: [{{path: out/items.jsonl}}, {{path: out/picky.txt, format: picky}}]
        """,
    )
    stats = await crawl(project)
    assert len(read_jsonl(tmp_path / "out/items.jsonl")) == stats.items == 5
    assert len((tmp_path / "out/picky.txt").read_text().splitlines()) == 3
    picky = str(tmp_path / "out/picky.txt")
    assert stats.errors == {"item_error": 2} and stats.to_dict()["missed_items"] == {picky: 2}
    assert f"5 items exported (2 not in {picky})" in stats.summary()[0]


RELATIVE = """
from framework import Request, Spider, hookimpl

class Relative(Spider):
    name = "relative"

    def parse(self, response):
        yield Request("page/2")  # a mistake: never resolved against the page
        yield Request("mailto:shop@example.com")  # not for a crawler, and no mistake
        yield response.follow("/page/3")

@hookimpl
def register_spiders(register):
    register(Relative)
"""


async def test_a_relative_url_made_a_request_is_said_and_dropped(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    base = await any_path(serve)
    (tmp_path / "relative.py").write_text(RELATIVE, encoding="utf-8")
    project = write_project(
        tmp_path, f"spider: relative\nstart_urls: [{base}/]\nplugins: [./relative.py]\n"
    )
    caplog.set_level(logging.WARNING, logger="fw")
    stats = await crawl(project)
    assert stats.pages == 2 and stats.filtered["scheme"] == 4  # / and /page/3, twice each
    warned = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert warned == [
        f"spider relative: request 'page/2' from {base}{path} dropped: a relative URL; "
        "response.follow() resolves it against the page"
        for path in ("/", "/page/3")
    ]


ODD_CHECKPOINT = PICKY.replace(
    "class Picky(Exporter):",
    """class Picky(Exporter):
    def checkpoint(self):
        return object()  # not JSON: the frontier cannot store it
""",
).replace('if item["url"].endswith(("/1", "/2")):', "if False:")


async def test_an_exporter_whose_checkpoint_is_not_json_is_named_and_the_crawl_goes_on(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    base = await any_path(serve)
    (tmp_path / "picky.py").write_text(ODD_CHECKPOINT, encoding="utf-8")
    (tmp_path / "out").mkdir()
    project = write_project(
        tmp_path,
        f"""
        spider: pages
        start_urls: [{base}/]
        plugins: [./picky.py]
        frontier: "sqlite:///state/crawl.db"
        exporters: [{{path: out/picky.txt, format: picky}}]
        """,
    )
    caplog.set_level(logging.ERROR, logger="fw")
    stats = await crawl(project)
    assert len((tmp_path / "out/picky.txt").read_text().splitlines()) == stats.items == 5
    assert stats.errors == {"plugin_error": 1} and stats.reason == "finished"
    assert [r.getMessage().split(": checkpoint()")[0] for r in caplog.records] == [
        f"plugin_error: exporter picky ({tmp_path / 'out/picky.txt'})"
    ]


async def test_max_items_is_exact_with_async_hooks(tmp_path: Path, serve: Serve) -> None:
    base = await any_path(serve)
    (tmp_path / "misbehaving.py").write_text(MISBEHAVING, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: items
        start_urls: [{base}/]
        plugins: [./misbehaving.py]
        exporters: [{{path: out/items.jsonl}}]
        max_items: 3
        """,
    )
    stats = await crawl(project)
    assert stats.items == 3 == len(read_jsonl(tmp_path / "out/items.jsonl"))


async def test_delay_spaces_requests_to_one_host(tmp_path: Path, serve: Serve) -> None:
    starts: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        starts.append(asyncio.get_running_loop().time())
        n = int(request.path.strip("/") or 0)
        return page(f"/{n + 1}") if n < 4 else page()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    base = await serve(app)
    project = links_project(tmp_path, base, "delay: 0.2\nconcurrency: {total: 4, per_domain: 4}")
    await crawl(project)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 4 and min(gaps) >= 0.2 * 0.5  # jittered between 0.5x and 1.5x


async def test_303_and_a_redirected_post_become_get(tmp_path: Path, serve: Serve) -> None:
    seen: list[tuple[str, str, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, await request.read()))
        if request.path == "/form":
            return web.Response(status=303, headers={"Location": "/done"})
        if request.path == "/moved":
            return web.Response(status=302, headers={"Location": "/done2"})
        if request.path == "/keep":
            return web.Response(status=307, headers={"Location": "/kept"})
        return page()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    base = await serve(app)
    (tmp_path / "post.py").write_text(
        """
from framework import Request, Spider, hookimpl

class Poster(Spider):
    name = "poster"

    def start_requests(self):
        for path in ("/form", "/moved", "/keep"):
            yield Request(self.start_urls[0] + path, method="POST", body=b"q=1")

    async def parse(self, response):
        yield {"url": response.url}

@hookimpl
def register_spiders(register):
    register(Poster)
""",
        encoding="utf-8",
    )
    project = write_project(
        tmp_path, f"spider: poster\nstart_urls: [{base}]\nplugins: [./post.py]\nrobots: ignore\n"
    )
    await crawl(project)
    assert sorted(seen) == sorted(
        [
            ("POST", "/form", b"q=1"),
            ("GET", "/done", b""),
            ("POST", "/moved", b"q=1"),
            ("GET", "/done2", b""),
            ("POST", "/keep", b"q=1"),
            ("POST", "/kept", b"q=1"),
        ]
    )


RAISING = """
from framework import Spider, hookimpl

class Raising(Spider):
    name = "raising"

    def start_requests(self):
        yield from super().start_requests()
        raise RuntimeError("no more")

    def parse(self, response):
        raise ValueError("boom")

@hookimpl
def register_spiders(register):
    register(Raising)
"""


async def test_a_spider_error_names_the_plugin_the_spider_comes_from(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    app = web.Application()
    app.router.add_get("/", static())
    base = await serve(app)
    (tmp_path / "raising.py").write_text(RAISING, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"spider: raising\nstart_urls: [{base}/]\nplugins: [./raising.py]\nrobots: ignore\n",
    )
    caplog.set_level(logging.ERROR, logger="fw")
    stats = await crawl(project)
    assert stats.errors == {"spider_error": 2}
    messages = [record.getMessage() for record in caplog.records]
    # The spider's own file and line, the plugin, and how to see the traceback.
    file, debug = tmp_path / "raising.py", "--log-level debug shows the traceback"
    assert (
        f"spider_error: spider raising: start_requests raised RuntimeError: no more; at "
        f"{file}:9; in plugin 'raising.py'; {debug}" in messages
    )
    assert (
        f"spider_error: spider raising: parse raised ValueError: boom ({base}/); at {file}:12; "
        f"in plugin 'raising.py'; {debug}" in messages
    )


def test_a_spider_defined_in_a_plugin_package_is_named_after_that_plugin() -> None:
    pm = make_plugin_manager()
    package = types.ModuleType("acme_fw")
    pm.register(package, "acme")

    class Shop(Spider):
        name = "shop"

    Shop.__module__ = "acme_fw.spiders.shop"
    assert spider_origin(pm, Shop()) == "plugin 'acme'"
    Shop.__module__ = "elsewhere"
    assert spider_origin(pm, Shop()) is None


async def test_the_same_host_on_another_port_is_offsite_by_default(
    tmp_path: Path, serve: Serve
) -> None:
    hits: list[str] = []

    async def other(request: web.Request) -> web.Response:
        hits.append(request.path)
        return page()

    other_app = web.Application()
    other_app.router.add_get("/{tail:.*}", other)
    other_base = await serve(other_app)  # 127.0.0.1, another port

    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": other_base + "/redirected"})

    app = web.Application()
    app.router.add_get("/", static(other_base + "/linked", "/moved"))
    app.router.add_get("/moved", moved)
    stats = await crawl(links_project(tmp_path, await serve(app)))
    assert hits == []
    assert stats.filtered["offsite"] == 1 and stats.errors == {"offsite_redirect": 1}


async def test_a_start_url_redirected_offsite_is_explained_by_where_it_went(
    tmp_path: Path, serve: Serve
) -> None:
    other = await serve(web.Application())  # 127.0.0.1, another port

    async def away(request: web.Request) -> web.Response:
        to = other if request.path == "/port" else "http://login.example"
        return web.Response(status=302, headers={"Location": to + "/x"})

    app = web.Application()
    app.router.add_get("/{where}", away)
    base = await serve(app)
    project = links_project(tmp_path, base)
    moved = await crawl(project, f"start_urls=[{base}/port]")
    assert moved.errors == {"offsite_redirect": 1}
    site, there = base.removeprefix("http://"), other.removeprefix("http://")
    assert [line for line in moved.summary() if "redirected" in line] == [
        f"offsite: {site} redirected 1 request to {there}, another port of the same host, "
        f"outside allowed_domains; add {there} to allowed_domains (or 127.0.0.1, for every port)"
    ]
    assert moved.to_dict()["redirected_to_port"] == {f"{site} -> {there}": 1}
    walled = await crawl(project, f"start_urls=[{base}/host]")
    assert [line for line in walled.summary() if "redirected" in line] == [
        "blocked: 127.0.0.1 redirected all 1 requests to login.example: the site refuses this "
        "client; send a browser User-Agent (headers:) and slow down (delay:)"
    ]


def test_a_host_is_said_to_block_only_when_every_answer_was_a_refusal_or_a_redirect() -> None:
    stats = Stats("shop")
    for code in (500, 404, 404, 302):  # one redirect away among errors: not a wall
        stats.response("mixed", code, 0)
    stats.redirected("http://mixed/r", "http://login.example/")
    for code in (403, 429, 403):
        stats.response("refusing", code, 0)
    for code in (403, 404):
        stats.response("partly", code, 0)
    for code in (301, 301, 304, 302):  # moved within the site, then once away
        stats.response("moving", code, 0)
    stats.redirected("http://moving/r", "http://tracker.example/")
    assert stats.blocked() == ["refusing answered HTTP 403 or HTTP 429 to all 3 requests"]


async def test_a_redirect_to_another_scheme_is_a_counted_failure(
    tmp_path: Path, serve: Serve
) -> None:
    targets = {
        "/file": "file:///etc/passwd",
        "/data": "data:text/html,<h1>x</h1>",
        "/ftp": "ftp://a/",
    }

    async def away(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": targets[request.path]})

    app = web.Application()
    app.router.add_get("/", static(*targets))
    for path in targets:
        app.router.add_get(path, away)
    stats = await crawl(links_project(tmp_path, await serve(app)))
    assert stats.errors == {"bad_redirect": 3}
    assert stats.filtered["scheme"] == 0


async def test_an_ipv6_host_is_crawled_like_any_other(tmp_path: Path, serve: Serve) -> None:
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path == "/robots.txt":
            return web.Response(text="User-agent: *\nDisallow: /private\nCrawl-delay: 0.05\n")
        return page("/1", "/2", "/2#again", "/private", other + "/elsewhere", "http://[::1/")

    other = await serve(web.Application(), "::1")  # the same host on another port: offsite
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    base = await serve(app, "::1")
    path = links_project(tmp_path, "", "frontier: sqlite:///crawl.db")
    text = path.read_text().replace("[/]", f"['{base}/']").replace("ignore", "obey")
    path.write_text(text, encoding="utf-8")
    stats = await crawl(path, "domains={'[::1]': {delay: 0.01}}")
    assert stats.reason == "finished" and not stats.errors
    assert sorted(hits) == ["/", "/1", "/2", "/robots.txt"]
    assert stats.filtered["robots"] == 1 and stats.filtered["offsite"] == 3
    assert stats.filtered["invalid_url"] == 3 and stats.crawl_delays == {"::1": 0.05}
    shown = await asyncio.to_thread(status.show, path)  # it runs its own event loop
    assert shown.splitlines()[2:4] == [
        "HOST  PENDING  LEASED  DONE  FAILED",
        "::1         0       0     4       0",
    ]
