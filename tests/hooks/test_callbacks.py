"""Plugins' own callbacks (``register_callbacks``) and start requests (``extra_start_requests``):
what a plugin needs to fetch pages of its own through the engine, as ``sitemaps`` does."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from framework.crawl import runner
from framework.errors import PluginError, ProjectError
from tests.conftest import Serve, crawl, read_jsonl, run_fw, write_project

#: A plugin that seeds a list of URLs (one a line) and reads it with a callback of its own.
SEEDS = """
from framework import FetchError, Request, Spider, hookimpl


class Pages(Spider):
    name = "pages"

    def parse(self, response):
        yield {"url": response.url, "depth": response.request.depth}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href)

    def parse_gone(self, response):
        raise FetchError("gone_page", f"the page says it is gone")


@hookimpl
def register_spiders(register):
    register(Pages)


@hookimpl
def register_callbacks(register):
    register("seeds:list", read_list, allowed_status={404})
    register("seeds:broken", broken)
    register("seeds:errback", errback)


@hookimpl
def extra_start_requests(project, spider):
    lists = spider.options["lists"]
    return [Request(url, callback="seeds:list", errback="seeds:errback") for url in lists]


def read_list(response, project, spider):
    if response.status == 404:
        yield {"missing_list": response.url, "spider": spider.name}
        return
    for line in response.text.split():
        yield Request(response.urljoin(line), callback=None if "gone" not in line else "parse_gone")
    yield Request(response.urljoin("/broken-list"), callback="seeds:broken")
    yield {"list": response.url, "crawl": project.name}


def broken(response):
    yield Request(response.urljoin("/x"), callback="seeds:lsit")
    raise ValueError("cannot read this list")


def errback(request, error):
    yield {"failed_list": request.url, "kind": error.kind}
"""


def site() -> web.Application:
    pages = {
        "/list.txt": "/a\n/gone\n",
        "/broken-list": "",
        "/a": '<a href="/b">b</a>',
        "/b": "<p>b</p>",
        "/gone": "<p>gone</p>",
    }

    async def answer(request: web.Request) -> web.Response:
        if request.path == "/down.txt":
            return web.Response(status=500)
        if request.path not in pages:
            raise web.HTTPNotFound()
        return web.Response(text=pages[request.path], content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    return app


def seeds_project(tmp_path: Path, lists: list[str], extra: str = "") -> Path:
    (tmp_path / "seeds.py").write_text(SEEDS, encoding="utf-8")
    lines = [
        "name: seeded",
        "spider: pages",
        "plugins: [./seeds.py]",
        f"allowed_domains: ['{lists[0].split('/')[2]}']",
        f"pages: {{lists: {lists}}}",
        "robots: ignore",
        "retries: 0",
        "exporters: [{path: items.jsonl}]",
        extra,
    ]
    return write_project(tmp_path, "\n".join(lines) + "\n")


async def test_a_plugin_seeds_a_crawl_and_reads_its_own_pages(tmp_path: Path, serve: Serve) -> None:
    base = await serve(site())
    lists = [f"{base}/list.txt", f"{base}/missing.txt", f"{base}/down.txt"]
    project = seeds_project(tmp_path, lists, "max_depth: 0")
    stats = await crawl(project)
    items = read_jsonl(tmp_path / "items.jsonl")
    # Its callback got the project and spider by name, and a 404 it allowed.
    assert {"list": f"{base}/list.txt", "crawl": "seeded"} in items
    assert {"missing_list": f"{base}/missing.txt", "spider": "pages"} in items
    # Its errback got the request and the error.
    assert {"failed_list": f"{base}/down.txt", "kind": "http_500"} in items
    # What it yielded kept depth 0, so max_depth: 0 fetched /a, but not /a's link /b.
    assert [i for i in items if "url" in i] == [{"url": f"{base}/a", "depth": 0}]
    assert stats.errors == Counter(
        {"http_500": 1, "gone_page": 1, "plugin_error": 2}  # the raise and the bad name
    )


async def test_a_plugins_callback_that_fails_is_named(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    base = await serve(site())
    project = seeds_project(tmp_path, [f"{base}/list.txt"])
    await crawl(project)
    assert (
        "plugin_error: plugin 'seeds.py': callback seeds:broken raised ValueError: cannot "
        f"read this list ({base}/broken-list)" in caplog.text
    )
    assert (
        "plugin 'seeds.py': callback seeds:broken yielded a request for "
        f"{base}/x with callback 'seeds:lsit', which no plugin registered "
        "(did you mean 'seeds:list'?)" in caplog.text
    )
    assert f"gone_page: the page says it is gone ({base}/gone)" in caplog.text


async def test_a_callback_that_raises_fetch_error_lists_its_page_as_failed(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(site())
    project = seeds_project(tmp_path, [f"{base}/list.txt"])
    assert (await run_fw("run", str(project))).returncode == 0
    failures = (tmp_path / "seeded.failures.jsonl").read_text(encoding="utf-8")
    assert '"kind": "gone_page"' in failures and f"{base}/gone" in failures


def test_a_project_whose_plugins_add_start_requests_needs_no_start_urls(tmp_path: Path) -> None:
    project = seeds_project(tmp_path, ["http://a.test/list.txt"])
    prepared = runner.prepare(project)
    (added,) = prepared.added
    assert (added.url, added.callback) == ("http://a.test/list.txt", "seeds:list")
    (tmp_path / "seeds.py").write_text(
        SEEDS.replace('lists = spider.options["lists"]', "lists = []"), encoding="utf-8"
    )
    with pytest.raises(ProjectError, match="start_urls: no start URLs"):
        runner.prepare(project)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            ("def extra_start_requests", "async def extra_start_requests"),
            "plugin 'seeds.py': extra_start_requests must be a plain def, not async def",
        ),
        (
            ('lists = spider.options["lists"]', "lists = 1 / 0"),
            "plugin 'seeds.py': extra_start_requests raised ZeroDivisionError: division by zero",
        ),
        (
            ('callback="seeds:list"', 'callback="seeds:lst"'),
            "extra_start_requests returned a request for http://a.test/list.txt with callback "
            "'seeds:lst', which no plugin registered (did you mean 'seeds:list'?)",
        ),
        (
            ("return [Request(url, ", "return [(url, 1) or Request(url, "),
            "plugin 'seeds.py': extra_start_requests returned tuple; expected Requests",
        ),
    ],
)
def test_a_plugin_that_breaks_extra_start_requests_is_named(
    tmp_path: Path, change: tuple[str, str], error: str
) -> None:
    project = seeds_project(tmp_path, ["http://a.test/list.txt"])
    (tmp_path / "seeds.py").write_text(SEEDS.replace(*change), encoding="utf-8")
    with pytest.raises(PluginError, match=re.escape(error)):
        runner.prepare(project)


@pytest.mark.parametrize(
    ("registered", "error"),
    [
        ('"list", read_list', "register('plugin:name', function), the name with a colon"),
        ('"seeds:x", 42', "got 'seeds:x'"),
        ('"seeds:x", lambda response, page: ()', "callback 'seeds:x' takes page; a plugin's"),
        ('"seeds:x", read_list, allowed_status=["404"]', "allowed_status must be HTTP statuses"),
    ],
)
def test_a_plugin_that_breaks_register_callbacks_is_located(
    tmp_path: Path, registered: str, error: str
) -> None:
    project = seeds_project(tmp_path, ["http://a.test/list.txt"])
    changed = SEEDS.replace('register("seeds:broken", broken)', f"register({registered})")
    (tmp_path / "seeds.py").write_text(changed, encoding="utf-8")
    with pytest.raises(ProjectError, match=re.escape(error)) as raised:
        runner.prepare(project)
    assert f"{project}:3: plugins[0]: plugin 'seeds.py': " in str(raised.value)
