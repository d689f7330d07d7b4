"""The engine against loopback servers: limits, dedup, retries, redirects, termination."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from tests.conftest import Serve, crawl, read_jsonl, write_project

SPIDER = '''
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
'''


def links_project(tmp_path: Path, base: str, extra: str = "") -> Path:
    (tmp_path / "links.py").write_text(SPIDER, encoding="utf-8")
    return write_project(tmp_path, f"""
        spider: links
        start_urls: [{base}/]
        plugins: [./links.py]
        exporters: [{{path: out/items.jsonl}}]
        backoff: {{base: 0.01, max: 1}}
        {extra}
        """)


def page(*links: str) -> web.Response:
    body = "".join(f'<a href="{href}">x</a>' for href in links)
    return web.Response(text=f"<html><body>{body}</body></html>", content_type="text/html")


async def test_crawl_follows_links_once_and_ends_by_itself(tmp_path: Path, serve: Serve) -> None:
    hits: dict[str, int] = {}

    async def handler(request: web.Request) -> web.Response:
        hits[request.path_qs] = hits.get(request.path_qs, 0) + 1
        n = int(request.path.strip("/") or 0)
        return page(f"/{(n + 1) % 10}", f"/{(n * 3) % 10}#frag", "mailto:a@b",
                    "javascript:void(0)", "/1?b=2&a=1", "/1?a=1&b=2")

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
