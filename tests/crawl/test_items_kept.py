"""An item is exported as its callback yielded it, whatever its code does with the dict
afterwards, and as it was before a plugin that failed half-way through changing it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from aiohttp import web

from tests.conftest import Serve, crawl, pages, read_jsonl, write_project

PLUGIN = """
from framework import ItemStep, Spider, hookimpl


class Reuses(Spider):
    name = "reuses"

    def parse(self, response):
        item = {"tags": [], "meta": {}}  # one dict, changed and yielded again, and the
        for n in range(3):  # list and dict in it: each item as it was yielded
            item["n"] = n
            item["price"] = 10 * n
            item["tags"].append(n)
            item["meta"]["n"] = n
            yield item


class Cents(ItemStep):
    def close(self):
        raise RuntimeError("a bug at the end")  # counted too

    def process(self, item, context):
        item["cents"] = item.pop("price") * 100
        item["tags"].append("step")
        if item["n"] == 1:
            raise RuntimeError("a bug after the change")
        return item


@hookimpl
def register_spiders(register):
    register(Reuses)


@hookimpl
def item_step(project, spider):
    return Cents()


@hookimpl
def item_scraped(item):
    item["seen"] = True
    if item["n"] == 2:
        del item["n"]
        item["meta"].clear()
        raise RuntimeError("a bug after the change")
"""


async def test_items_are_kept_as_yielded_and_as_they_were_before_a_failing_plugin(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(pages({"/": "<p>x</p>"}))
    (tmp_path / "reuses.py").write_text(PLUGIN, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: reuses
        start_urls: [{base}/]
        plugins: [./reuses.py]
        robots: ignore
        """,
    )
    stats = await crawl(project, outputs=(str(tmp_path / "items.jsonl"),))
    assert stats.errors == {"plugin_error": 3}
    assert read_jsonl(tmp_path / "items.jsonl") == [
        {"tags": [0, "step"], "meta": {"n": 0}, "n": 0, "cents": 0, "seen": True},
        # the step failed: the item as it was
        {"tags": [0, 1], "meta": {"n": 1}, "n": 1, "price": 10, "seen": True},
        # item_scraped failed: the item as the step left it
        {"tags": [0, 1, 2, "step"], "meta": {"n": 2}, "n": 2, "cents": 2000},
    ]


LISTING = """
from framework import Spider, hookimpl


class Listing(Spider):
    name = "listing"

    def parse(self, response):
        for n in range(2):
            yield response.follow(
                f"/subject/{n}", callback=self.subject, errback=self.missed, meta={"n": n}
            )

    def subject(self, response):
        yield {"n": response.meta["n"], "from": "subject"}

    def missed(self, request, error):
        yield {"n": request.meta["n"], "from": error.kind}


@hookimpl
def register_spiders(register):
    register(Listing)
"""


async def listing_project(
    tmp_path: Path,
    serve: Serve,
    disallow: str,
    spider: str = LISTING,
    extra: str = "",
    moved: Mapping[str, str] = MappingProxyType({}),
) -> Path:
    """Serve a listing whose robots.txt disallows ``disallow`` and whose pages ``moved``
    redirect; write a project crawling it with ``spider`` (``LISTING``)."""

    async def page(request: web.Request) -> web.Response:
        if request.path in moved:
            raise web.HTTPMovedPermanently(moved[request.path])
        if request.path == "/robots.txt":
            return web.Response(text=f"User-agent: *\nDisallow: {disallow}\n")
        return web.Response(text="<p>x</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    base = await serve(app)
    (tmp_path / "listing.py").write_text(spider, encoding="utf-8")
    return write_project(
        tmp_path, f"spider: listing\nstart_urls: [{base}/]\nplugins: [./listing.py]\n{extra}"
    )


async def test_a_request_robots_txt_forbids_still_runs_its_errback(
    tmp_path: Path, serve: Serve
) -> None:
    # As Scrapy's do: the spider keeps what it knew of the page it may not fetch.
    project = await listing_project(tmp_path, serve, "/subject/1")
    stats = await crawl(project, outputs=(str(tmp_path / "items.jsonl"),))
    assert (stats.errors, stats.filtered["robots"]) == ({}, 1)
    assert sorted(map(tuple, map(dict.values, read_jsonl(tmp_path / "items.jsonl")))) == [
        (0, "subject"),
        (1, "robots"),
    ]


async def test_an_errback_yielding_its_forbidden_request_again_is_stopped_by_max_pages(
    tmp_path: Path, serve: Serve
) -> None:
    again = LISTING.replace(
        'yield {"n": request.meta["n"], "from": error.kind}',
        'yield {"n": request.meta["n"], "from": error.kind}\n'
        "        yield request.replace(dont_filter=True)",
    )
    project = await listing_project(tmp_path, serve, "/subject/", again, "max_pages: 5\n")
    async with asyncio.timeout(30):
        stats = await crawl(project, outputs=(str(tmp_path / "items.jsonl"),))
    assert stats.reason == "max_pages reached"
    assert len(read_jsonl(tmp_path / "items.jsonl")) == 4  # the listing, then 4 errbacks


async def test_a_redirect_to_a_page_the_crawl_has_already_runs_the_errback(
    tmp_path: Path, serve: Serve
) -> None:
    # Douban answers a merged film's page with a redirect to the other film's page, which
    # the listing linked too: the film is kept from its listing, not lost.
    moved = {"/subject/1": "/subject/0"}
    # Three requests: the listing and both films' pages; the errback spends none more.
    extra = "max_pages: 3\nconcurrency: {total: 1, per_domain: 1}\n"
    project = await listing_project(tmp_path, serve, "", extra=extra, moved=moved)
    stats = await crawl(project, outputs=(str(tmp_path / "items.jsonl"),))
    assert (stats.errors, stats.filtered["duplicate"]) == ({}, 1)
    assert sorted(map(tuple, map(dict.values, read_jsonl(tmp_path / "items.jsonl")))) == [
        (0, "subject"),
        (1, "duplicate"),
    ]


async def test_a_request_offsite_or_too_deep_runs_its_errback_and_a_plain_one_is_only_counted(
    tmp_path: Path, serve: Serve
) -> None:
    # A listing's film on a host the crawl may not visit, or past max_depth, is kept from
    # the listing; the plain link beside it, without an errback, is dropped and counted.
    elsewhere = LISTING.replace(
        'f"/subject/{n}"', '"http://elsewhere.test/subject/1" if n else "/subject/0"'
    ).replace(
        "        for n in range(2):",
        "        yield response.follow('http://elsewhere.test/x')\n        for n in range(2):",
    )
    project = await listing_project(tmp_path, serve, "", elsewhere)
    stats = await crawl(project, outputs=(str(tmp_path / "items.jsonl"),))
    assert (stats.errors, stats.filtered) == ({}, {"offsite": 2})
    assert sorted(map(tuple, map(dict.values, read_jsonl(tmp_path / "items.jsonl")))) == [
        (0, "subject"),
        (1, "offsite"),
    ]

    shallow = await listing_project(tmp_path, serve, "", extra="max_depth: 0\n")
    stats = await crawl(shallow, outputs=(str(tmp_path / "shallow.jsonl"),))
    assert (stats.errors, stats.filtered, stats.pages) == ({}, {"depth": 2}, 1)
    assert sorted(map(tuple, map(dict.values, read_jsonl(tmp_path / "shallow.jsonl")))) == [
        (0, "depth"),
        (1, "depth"),
    ]


EMPTY = """
from framework import Spider, hookimpl


class Empty(Spider):
    name = "empty"

    def parse(self, response):
        yield {}
        yield {"n": 1}


@hookimpl
def register_spiders(register):
    register(Empty)
"""


async def test_an_empty_item_is_exported_with_or_without_a_limit(
    tmp_path: Path, serve: Serve
) -> None:
    # An empty dict is falsy: taken for an item the pipeline refused, it went missing
    # whenever max_items (or an item step) was set.
    base = await serve(pages({"/": "<p>x</p>"}))
    (tmp_path / "empty.py").write_text(EMPTY, encoding="utf-8")
    for extra in ("", "max_items: 10\n"):
        project = write_project(
            tmp_path, f"spider: empty\nstart_urls: [{base}/]\nplugins: [./empty.py]\n{extra}"
        )
        stats = await crawl(project, outputs=(str(tmp_path / "items.jsonl"),))
        assert stats.items == 2 and read_jsonl(tmp_path / "items.jsonl") == [{}, {"n": 1}]


async def test_the_errbacks_of_requests_dropped_offsite_take_no_turn_nor_max_pages(
    tmp_path: Path, serve: Serve
) -> None:
    # Run with the page that yields them, not queued: no host's delay, no request of
    # max_pages spent on what is never fetched.
    far = LISTING.replace("for n in range(2):", "for n in range(30):").replace(
        'f"/subject/{n}"', 'f"http://far.invalid/subject/{n}"'
    )
    extra = "max_pages: 1\ndelay: 30\n"  # one request for the listing; a turn is 30 s
    project = await listing_project(tmp_path, serve, "", far, extra)
    async with asyncio.timeout(20):
        stats = await crawl(project, outputs=(str(tmp_path / "items.jsonl"),))
    assert (stats.errors, stats.filtered, stats.pages) == ({}, {"offsite": 30}, 1)
    assert sorted(item["n"] for item in read_jsonl(tmp_path / "items.jsonl")) == list(range(30))


async def test_an_unchanged_page_runs_no_errback_again_in_a_later_round(
    tmp_path: Path, serve: Serve
) -> None:
    extra = "max_depth: 0\nfrontier: sqlite:///state.db\nincremental: true\n"
    project = await listing_project(tmp_path, serve, "", extra=extra)
    first = await crawl(project, outputs=(str(tmp_path / "1.jsonl"),))
    assert first.reason == "finished" and len(read_jsonl(tmp_path / "1.jsonl")) == 2
    second = await crawl(project, outputs=(str(tmp_path / "2.jsonl"),))
    assert second.plugins()["incremental"] == {"new": 0, "changed": 0, "unchanged": 1}
    assert read_jsonl(tmp_path / "2.jsonl") == []  # the films of an unchanged listing


FALLBACK = """
from framework import Request, Spider, hookimpl


class Fallback(Spider):
    name = "listing"

    def parse(self, response):
        yield response.follow("/missing", callback=self.parse, errback=self.first)

    def first(self, request, error):
        yield Request("http://far.invalid/fallback", errback=self.second)

    def second(self, request, error):
        yield {"from": error.kind}
"""


async def test_an_errback_of_a_failed_request_runs_the_errback_of_what_it_yields_offsite(
    tmp_path: Path, serve: Serve
) -> None:
    spider = FALLBACK + LISTING[LISTING.index("@hookimpl") :].replace("Listing", "Fallback")
    moved = {"/missing": "http://far.invalid/gone"}  # an offsite redirect: a failure
    project = await listing_project(tmp_path, serve, "", spider, moved=moved)
    stats = await crawl(project, outputs=(str(tmp_path / "items.jsonl"),))
    assert stats.errors == {"offsite_redirect": 1}
    assert read_jsonl(tmp_path / "items.jsonl") == [{"from": "offsite"}]


async def test_a_queued_request_now_offsite_runs_its_errback(tmp_path: Path, serve: Serve) -> None:
    # Queued while its host was allowed; allowed_domains narrowed before the resume.
    elsewhere = LISTING.replace(
        'f"/subject/{n}"', 'response.url.replace("127.0.0.1", "localhost") + f"subject/{n}"'
    )
    extra = "frontier: sqlite:///state.db\nmax_pages: 1\nallowed_domains: [127.0.0.1, localhost]\n"
    project = await listing_project(tmp_path, serve, "", elsewhere, extra)
    first = await crawl(project, outputs=(str(tmp_path / "1.jsonl"),))
    assert first.reason == "max_pages reached" and read_jsonl(tmp_path / "1.jsonl") == []
    narrowed = project.read_text().replace("max_pages: 1\n", "").replace(", localhost]", "]")
    project.write_text(narrowed)
    second = await crawl(project, outputs=(str(tmp_path / "2.jsonl"),))
    assert second.filtered["offsite"] == 2
    assert sorted(map(tuple, map(dict.values, read_jsonl(tmp_path / "2.jsonl")))) == [
        (0, "offsite"),
        (1, "offsite"),
    ]
