"""``runner.run``: what a crawl's process is tuned for while it runs, and restored after."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from framework.crawl import runner
from tests.conftest import read_jsonl, write_project

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
