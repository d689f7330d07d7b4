"""The downloader's own set-up, beyond what crawls through it show."""

from __future__ import annotations

import yarl
from aiohttp import web

from framework.fetch.downloader import Downloader, DownloadSettings
from framework.fetch.parsers import Parsers
from framework.http import Request
from tests.conftest import Serve


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def test_url_parsing_remembers_the_hosts_of_a_broad_crawl(serve: Serve) -> None:
    app = web.Application()
    app.router.add_get("/", ok)
    base = await serve(app)
    settings = DownloadSettings(4, 10.0, 1 << 20, {}, cookies=False)
    async with Downloader(settings, Parsers()) as downloader:
        response = await downloader.fetch(Request(base + "/"))
    assert response.status == 200
    # yarl keeps 256-512 hosts by default: going round 2,000 hosts would miss every time.
    assert yarl.cache_info()["encode_host"].maxsize >= 10_000
    assert yarl.cache_info()["encode_host"].currsize >= 1
