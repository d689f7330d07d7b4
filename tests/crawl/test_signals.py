"""SIGTERM and Ctrl-C stop a crawl within ``stop_timeout``, whatever its requests are doing.

A real ``fw run`` process, a real signal, and a site whose stalled pages never answer
until the test lets them: ``docker stop`` sends SIGTERM and SIGKILLs 10 s later.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import Serve, read_jsonl, run_fw, write_project
from tests.conftest import pages as site_of
from tests.test_cli import read_until, start_fw

STALLED = ("/stall/1", "/stall/2", "/stall/3")


class Stalling:
    """``/`` links to three pages that answer only once ``release`` is set, and two others;
    with ``robots``, robots.txt too stalls until then."""

    def __init__(self, *, robots: bool = False) -> None:
        self.stalls = (*STALLED, "/robots.txt") if robots else STALLED
        self.release = asyncio.Event()
        self.waiting: set[str] = set()
        self.arrived = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/":
            links = "".join(f'<a href="{p}">x</a>' for p in (*STALLED, "/ok/1", "/ok/2"))
            return web.Response(text=links, content_type="text/html")
        if request.path in self.stalls and not self.release.is_set():
            async with self.arrived:
                self.waiting.add(request.path)
                self.arrived.notify_all()
            await self.release.wait()
        return web.Response(text="<p>ok</p>", content_type="text/html")

    async def all_stalled(self) -> None:
        async with asyncio.timeout(10), self.arrived:
            await self.arrived.wait_for(lambda: self.waiting >= set(STALLED))


@pytest.fixture
async def stalling(serve: Serve, tmp_path: Path) -> AsyncIterator[tuple[Stalling, Path]]:
    site = Stalling()
    yield site, await stalling_project(serve, site, tmp_path)
    site.release.set()


async def stalling_project(
    serve: Serve, site: Stalling, tmp_path: Path, starts: tuple[str, ...] = ("/",)
) -> Path:
    """Serve ``site``; return a project crawling it from ``starts`` with a persistent
    frontier."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", site.handle)
    base = await serve(app)
    robots = "obey" if "/robots.txt" in site.stalls else "ignore"
    return write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{", ".join(base + start for start in starts)}]
        robots: {robots}
        timeout: 30
        stop_timeout: 1
        frontier: "sqlite:///state/crawl.db"
        rules:
          follow: [a]
          items: [{{fields: {{page: {{value: url}}}}}}]
        exporters: [{{path: out/items.json}}]
        """,
    )


def pages(export: Path) -> list[str]:
    """The paths a JSON export holds; it must be a whole JSON array."""
    return [item["page"].split("/", 3)[3] for item in json.loads(export.read_text())]


async def rerun_finishes_every_page(project: Path, tmp_path: Path) -> None:
    """Run the stopped crawl again: its export must then hold every page once."""
    again = await run_fw("run", str(project), "-q")
    assert again.returncode == 0, again.stderr
    assert sorted(pages(tmp_path / "out" / "items.json")) == [
        "",
        "ok/1",
        "ok/2",
        *(p[1:] for p in STALLED),
    ]


@pytest.mark.parametrize(
    ("sig", "code", "name"),
    [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")],
    ids=["SIGTERM", "SIGINT"],
)
async def test_a_signal_stops_stalled_requests_within_stop_timeout_and_hands_them_back(
    stalling: tuple[Stalling, Path], tmp_path: Path, sig: signal.Signals, code: int, name: str
) -> None:
    site, project = stalling
    process = await start_fw("run", str(project))
    assert process.stderr is not None
    await site.all_stalled()
    process.send_signal(sig)
    line = await read_until(process.stderr, "Stopping")
    assert (
        f"Stopping ({name}): letting " in line and "requests in flight finish, at most 1s" in line
    )
    assert ("press Ctrl-C again" in line) == (sig == signal.SIGINT)
    async with asyncio.timeout(4):  # 1 s for the stalled requests, then closing
        await process.wait()
    rest = (await process.stderr.read()).decode()
    assert process.returncode == code, rest
    assert "cut short: 3 requests in flight" in rest
    first = pages(tmp_path / "out" / "items.json")  # whole: the array was closed
    assert "" in first and set(first) <= {"", "ok/1", "ok/2"}

    site.release.set()
    await rerun_finishes_every_page(project, tmp_path)


async def test_a_signal_while_robots_txt_is_read_hands_back_every_request_waiting_for_it(
    serve: Serve, tmp_path: Path
) -> None:
    # A request waiting for robots.txt, cancelled, cancelled the reading itself: the
    # reader's page was lost as an internal_error, and the rerun said all was well.
    site = Stalling(robots=True)
    project = await stalling_project(serve, site, tmp_path, ("/", "/ok/1", "/ok/2"))
    try:
        process = await start_fw("run", str(project))
        assert process.stderr is not None
        async with asyncio.timeout(10), site.arrived:
            await site.arrived.wait_for(lambda: "/robots.txt" in site.waiting)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            await process.wait()
        rest = (await process.stderr.read()).decode()
        assert process.returncode == 143, rest
        assert "internal_error" not in rest and "0 errors" in rest, rest
        assert "cut short: 3 requests in flight" in rest
    finally:
        site.release.set()
    await rerun_finishes_every_page(project, tmp_path)


async def test_a_signal_keeps_its_exit_code_when_nothing_was_fetched(
    stalling: tuple[Stalling, Path], tmp_path: Path
) -> None:
    site, project = stalling
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/"
    base = project.read_text().split("start_urls: [", 1)[1].split("/]", 1)[0]
    process = await start_fw(
        "run", str(project), "-s", f"start_urls=[{dead}, {base}/stall/1]", "-s", "retries=0"
    )
    assert process.stderr is not None
    await read_until(process.stderr, "connection")  # the dead one failed
    async with asyncio.timeout(10), site.arrived:  # the other one will never answer
        await site.arrived.wait_for(lambda: "/stall/1" in site.waiting)
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(5):
        await process.wait()
    rest = (await process.stderr.read()).decode()
    assert process.returncode == 143, rest
    assert "terminated in" in rest and "0 pages" in rest and "1 error (connection 1)" in rest
    assert "nothing was fetched" not in rest


HOLDING = """
import time
from framework import Spider, hookimpl

class Holds(Spider):
    name = "holds"

    def parse(self, response):
        if response.url.endswith("/hold"):
            print("holding", flush=True)
            {hold}  # a spider bug that holds the event loop
        yield {{"page": response.url}}
        yield response.follow("/hold")

@hookimpl
def register_spiders(register):
    register(Holds)
"""


@pytest.mark.parametrize(
    ("hold", "sig", "code", "name"),
    [
        ("while True: pass", signal.SIGINT, 130, "Ctrl-C"),
        ("time.sleep(60)", signal.SIGTERM, 143, "SIGTERM"),
    ],
    ids=["spinning-SIGINT", "sleeping-SIGTERM"],
)
async def test_a_second_signal_exits_even_while_a_callback_holds_the_loop(
    serve: Serve, tmp_path: Path, hold: str, sig: signal.Signals, code: int, name: str
) -> None:
    base = await serve(site_of({"/": "ok", "/hold": "ok"}))
    (tmp_path / "holds.py").write_text(HOLDING.format(hold=hold), encoding="utf-8")
    project = write_project(
        tmp_path, f"spider: holds\nstart_urls: [{base}/]\nplugins: [./holds.py]\nrobots: ignore\n"
    )
    export = tmp_path / "items.json"
    process = await start_fw("run", str(project), "-o", str(export))
    assert process.stdout is not None and process.stderr is not None
    try:
        await read_until(process.stderr, "holding")  # what a plugin prints goes to stderr
        process.send_signal(sig)
        assert f"Stopping ({name})" in await read_until(process.stderr, "Stopping")
        process.send_signal(sig)
        async with asyncio.timeout(5):  # the grace a step holding the loop gets, and more
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    rest = (await process.stderr.read()).decode()
    assert process.returncode == code, rest
    assert f"Quitting now ({name} again)." in rest
    # Exited without closing the array, as a kill would: the element written is whole.
    assert json.loads(export.read_text() + "]") == [{"page": f"{base}/"}]


async def test_one_signal_exits_in_bounded_time_even_while_a_callback_holds_the_loop(
    serve: Serve, tmp_path: Path
) -> None:
    """``docker stop`` sends one SIGTERM: fw must keep its promise to stop without a second."""
    base, project = await holding(serve, tmp_path, "time.sleep(60)")
    export = tmp_path / "items.jsonl"
    process = await start_fw("run", str(project), "-o", str(export))
    rest = await terminated_when(process, "holding")
    assert process.returncode == 143, rest
    assert "Quitting now: the crawl has not stopped 2.4s after SIGTERM" in rest
    assert read_jsonl(export) == [{"page": f"{base}/"}]  # what was written is whole


SLOW_CLOSE = """
import time
from pathlib import Path
from framework import Exporter, hookimpl

class SlowClose(Exporter):
    format = "slowclose"
    extensions = (".slow",)

    def write(self, item):
        print("written", flush=True)

    def close(self):
        time.sleep(3)  # a big CSV's header completed, say: fw's own closing, not a hang
        Path(self.path).write_text("closed")

@hookimpl
def register_exporters(register):
    register(SlowClose)
"""


async def test_an_export_closing_slowly_after_a_signal_is_not_cut_short(
    serve: Serve, tmp_path: Path
) -> None:
    (tmp_path / "slowclose.py").write_text(SLOW_CLOSE, encoding="utf-8")
    _, project = await holding(serve, tmp_path, "pass", "./slowclose.py")
    export = tmp_path / "items.slow"
    process = await start_fw("run", str(project), "-o", str(export))
    rest = await terminated_when(process, "written")
    assert "Quitting now" not in rest  # 3 s is past the 2.4 s a held loop gets
    assert export.read_text() == "closed" and process.returncode in (0, 143), rest


async def holding(serve: Serve, tmp_path: Path, hold: str, *plugins: str) -> tuple[str, Path]:
    """Serve ``/`` and ``/hold``, whose callback runs ``hold``; return the site and a
    project crawling it with ``plugins`` too, which gives requests 0.2 s to stop."""
    base = await serve(site_of({"/": "ok", "/hold": "ok"}))
    (tmp_path / "holds.py").write_text(HOLDING.format(hold=hold), encoding="utf-8")
    listed = ", ".join(("./holds.py", *plugins))
    project = write_project(
        tmp_path,
        f"spider: holds\nstart_urls: [{base}/]\nplugins: [{listed}]\nrobots: ignore\n"
        "stop_timeout: 0.2\n",
    )
    return base, project


async def terminated_when(process: asyncio.subprocess.Process, said: str) -> str:
    """Send one SIGTERM once ``process`` prints ``said``; wait for its exit (15 s: twice
    0.2 s, 2 s, the grace of 1 s, and slack); return the rest of its stderr."""
    assert process.stderr is not None
    try:
        await read_until(process.stderr, said)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return (await process.stderr.read()).decode()
