"""A loopback site of numbered pages that link to each other, counting what it serves.

The crash tests (``test_resume``, ``test_distributed``) kill crawlers once the site has
served a chosen number of pages, and check afterwards that every page was fetched.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from aiohttp import web

from tests.conftest import Serve, write_project

__all__ = ["LinkedSite", "linked_project"]


class LinkedSite:
    """``pages`` pages at ``/p/<n>``, each linking to four others after ``latency`` seconds."""

    def __init__(self, pages: int, latency: float) -> None:
        self.pages, self.latency = pages, latency
        self.fetched: Counter[str] = Counter()
        self._changed = asyncio.Condition()

    async def start(self, serve: Serve) -> str:
        """Serve the site; return its base URL."""
        app = web.Application()
        app.router.add_get("/p/{n}", self._page)
        return await serve(app)

    async def _page(self, request: web.Request) -> web.Response:
        number = int(request.match_info["n"])
        links = "".join(
            f'<a href="/p/{(number * 7 + k) % self.pages}">next</a>' for k in range(1, 5)
        )
        await asyncio.sleep(self.latency)  # so that a crawl lasts long enough to kill it
        async with self._changed:
            self.fetched[request.path] += 1
            self._changed.notify_all()
        return web.Response(
            text=f"<html><h1>Page {number}</h1>{links}</html>", content_type="text/html"
        )

    async def served(self, count: int) -> None:
        """Wait until the site has served ``count`` pages in all."""
        async with asyncio.timeout(30), self._changed:
            await self._changed.wait_for(lambda: self.fetched.total() >= count)


def linked_project(directory: Path, base: str, frontier: str, per_domain: int = 4) -> Path:
    """A rules crawl of the site: one item per page (its URL), every link followed."""
    return write_project(
        directory,
        f"""
        spider: rules
        start_urls: [{base}/p/0]
        robots: ignore
        frontier: "{frontier}"
        concurrency: {{total: 4, per_domain: {per_domain}}}
        rules:
          follow: [a]
          items: [{{fields: {{title: h1::text, page: {{value: url}}}}}}]
        """,
    )
