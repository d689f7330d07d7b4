"""``runner.run``: the garbage collector tuned for a crawl while it runs, and restored after;
and nothing of a crawl's left for that rarely run collector to free."""

from __future__ import annotations

import gc
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiohttp import web

from framework.crawl import runner
from framework.http import Response
from tests.conftest import Serve, crawl, pages, read_jsonl, write_project

SPIDER = """
import gc

from framework import Spider, hookimpl

class Collector(Spider):
    name = "collector"

    def parse(self, response):
        yield {"threshold": list(gc.get_threshold()), "frozen": gc.get_freeze_count()}

@hookimpl
def register_spiders(register):
    register(Collector)
"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>one page</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    """A real HTTP server in a thread: ``runner.run`` runs its own event loop here."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_garbage_collector_is_tuned_for_the_crawl_and_restored_after(
    tmp_path: Path, site: str
) -> None:
    (tmp_path / "collector.py").write_text(SPIDER, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: collector
        start_urls: [{site}/]
        plugins: [./collector.py]
        robots: ignore
        """,
    )
    out = tmp_path / "items.jsonl"
    before = gc.get_threshold()

    stats = runner.run(runner.prepare(project, (), (str(out),)))

    assert stats.items == 1
    [during] = read_jsonl(out)
    assert during["threshold"][0] > before[0]  # young collections run far less often
    assert during["frozen"] > 0  # what was loaded before the crawl is left out
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


FAILING = """
from framework import Request, Spider, hookimpl

class Failing(Spider):
    name = "failing"

    def parse(self, response):
        yield from response.follow_all()
        yield response.follow("/dead-link")  # the server answers 500
        yield Request("http://127.0.0.1:9/refused")  # nothing listens there
        page = response.body  # the frame that raises holds the page
        raise ValueError(f"no product on {response.url} ({len(page)} bytes)")

@hookimpl
def register_spiders(register):
    register(Failing)
"""


#: What holds a page when it is left in a cycle: the page, an error, a traceback's frames.
_HOLDING_A_PAGE = (Response, BaseException, types.TracebackType, types.FrameType)


async def test_a_failed_page_is_left_in_no_cycle_the_rarely_run_collector_must_free(
    tmp_path: Path, serve: Serve
) -> None:
    # Reported errors keep tracebacks whose frames hold the page (its body, its tree),
    # and those frames hold the errors: only a collection would free them, and a crawl
    # collects rarely. fw lets go of an error's tracebacks once it is reported.
    async def page(request: web.Request) -> web.Response:
        if request.path == "/dead-link":
            return web.Response(status=500)
        links = "".join(f"<a href='/{n}'>{n}</a>" for n in range(1, 30))
        return web.Response(text=f"<html><body>{links}</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    base = await serve(app)
    (tmp_path / "failing.py").write_text(FAILING, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: failing
        start_urls: [{base}/]
        plugins: [./failing.py]
        robots: ignore
        retries: 1                # a retried failure is let go of too
        backoff: {{base: 0.01}}
        allowed_domains: []
        """,
    )
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds stays in gc.garbage
    try:
        stats = await crawl(project, outputs=(str(tmp_path / "items.jsonl"),))
        gc.collect()
        held = [o for o in gc.garbage if isinstance(o, _HOLDING_A_PAGE)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()

    assert stats.errors["spider_error"] == 30 and stats.errors["http_500"] == 1
    assert stats.errors["connection"] == 1 and stats.retries == 2
    assert held == []


TRACED = """
from pathlib import Path

from framework import Spider, hookimpl

class Raising(Spider):
    name = "raising"

    def parse(self, response):
        raise ValueError("no product")

@hookimpl
def crawl_error(error, kind, request, spider):
    traced = error.__traceback__ is not None
    Path(__file__).with_name("seen.txt").write_text(f"{kind} {traced}")

@hookimpl
def register_spiders(register):
    register(Raising)
"""


async def test_a_crawl_error_hook_still_sees_the_traceback_fw_then_drops(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(pages({"/": "<p>no product here</p>"}))
    (tmp_path / "traced.py").write_text(TRACED, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: raising
        start_urls: [{base}/]
        plugins: [./traced.py]
        robots: ignore
        """,
    )
    stats = await crawl(project)

    assert stats.errors == {"spider_error": 1}
    assert (tmp_path / "seen.txt").read_text() == "spider_error True"
