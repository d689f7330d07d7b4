"""Seeing a crawl: progress reports, --quiet, JSON logs and --log-file."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import re
import struct
import termios
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from rich.console import Console

from framework.crawl.progress import Progress, Sample, panel
from tests.conftest import Serve, fw_command, pages, run_fw, write_project

SNAPSHOT = Sample(
    elapsed=10.0,
    pages=250,
    items=240,
    queued=1200,
    delayed=3,
    in_flight=16,
    errors={"timeout": 4, "http_503": 2},
    slowed={"slow.example": 1.5},
)


def test_a_snapshot_reads_as_one_log_line() -> None:
    assert SNAPSHOT.line() == (
        "250 pages (25.0/s), 240 items, 1200 queued, 3 to retry, "
        "16 in flight, 6 errors (timeout 4, http_503 2); slowed: "
        "slow.example 1.50s"
    )


def test_the_live_panel_shows_rate_queue_errors_and_slowed_hosts() -> None:
    console = Console(record=True, width=120)
    console.print(panel("shop", SNAPSHOT))
    text = console.export_text()
    for expected in (
        "shop",
        "250 pages (25.0/s)",
        "240 items",
        "1200 queued",
        "16 in flight",
        "timeout 4",
        "slow.example",
        "1.50s",
    ):
        assert expected in text, expected


class Lines(logging.Handler):
    """Collect log lines, and set ``enough`` once ``wanted`` of them have arrived."""

    def __init__(self, wanted: int) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.wanted, self.enough = wanted, asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if len(self.lines) >= self.wanted:
            self.enough.set()


async def test_without_a_terminal_progress_is_a_periodic_log_line() -> None:
    lines, logger = Lines(2), logging.getLogger("fw")
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    task = asyncio.create_task(Progress(lambda: SNAPSHOT, "log", "shop", interval=0.01).run())
    try:
        async with asyncio.timeout(5):
            await lines.enough.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        logger.removeHandler(lines)
        logger.setLevel(logging.NOTSET)
    assert lines.lines[:2] == [f"shop: {SNAPSHOT.line()}"] * 2


@pytest.fixture
async def project(serve: Serve, tmp_path: Path) -> Path:
    base = await serve(pages({"/": "<h1>hi</h1>"}))
    return write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{base}/]
        robots: ignore
        rules: {{items: [{{fields: {{title: h1::text}}}}]}}
        """,
    )


async def test_quiet_leaves_only_the_summary(project: Path) -> None:
    result = await run_fw("run", "--quiet", str(project))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        line for line in result.stderr.splitlines() if not line.startswith("INFO")
    ]
    assert "project: finished" in result.stderr and "plugins:" not in result.stderr


async def test_json_logs_and_a_log_file(project: Path, tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "fw.log"
    result = await run_fw("--log-format", "json", "--log-file", str(log_file), "run", str(project))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    header = next(r for r in records if "plugins:" in r["message"])
    assert (header["level"], header["logger"]) == ("info", "fw")
    assert set(header) >= {"time", "at", "level", "logger", "message"}
    written = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any("plugins:" in r["message"] for r in written)


async def test_an_unwritable_log_file_is_a_usage_error(project: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    result = await run_fw("--log-file", str(tmp_path / "taken" / "fw.log"), "run", str(project))
    assert result.returncode == 2
    assert result.stderr.startswith("Error: --log-file")


# ---------------------------------------------------------------------------------------------
# fw run as a user sees it: on a terminal, and with stderr going to a log
# ---------------------------------------------------------------------------------------------

#: What the panel shows while the one page is being fetched (two spaces, no commas: the
#: log line reads "0 to retry, 1 in flight").
PANEL_IN_FLIGHT = "0 queued  0 to retry  1 in flight"
LOG_IN_FLIGHT = "project: 0 pages (0.0/s), 0 items, 0 queued, 0 to retry, 1 in flight, 0 errors"
#: Terminal control sequences, which rich writes between the words on a terminal.
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: Settings that change how rich sees a terminal; the test gives its own.
RICH_ENV = (
    "TERM",
    "COLORTERM",
    "NO_COLOR",
    "FORCE_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "COLUMNS",
    "LINES",
)


@dataclass
class HeldSite:
    """A site whose one page is answered only once the test has seen what it waits for."""

    project: Path
    release: asyncio.Event


@pytest.fixture
async def held(serve: Serve, tmp_path: Path) -> AsyncIterator[HeldSite]:
    release = asyncio.Event()

    async def home(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="<h1>hi</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", home)
    base = await serve(app)
    project = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{base}/]
        robots: ignore
        rules: {{items: [{{fields: {{title: h1::text}}}}]}}
        """,
    )
    site = HeldSite(project, release)
    yield site
    release.set()  # a failed test must not leave fw waiting


class Terminal:
    """The user's side of a pseudo-terminal: everything fw wrote, read as it arrives."""

    def __init__(self, rows: int = 40, columns: int = 120) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.raw, self.changed, self.closed = b"", asyncio.Event(), False
        asyncio.get_running_loop().add_reader(self.master, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            chunk = b""
        if not chunk:
            self.closed = True
            asyncio.get_running_loop().remove_reader(self.master)
        self.raw += chunk
        self.changed.set()

    @property
    def text(self) -> str:
        return ESCAPES.sub("", self.raw.decode("utf-8", "replace"))

    async def shows(self, wanted: str) -> None:
        """Wait until ``wanted`` has been written (the caller bounds the wait)."""
        while wanted not in self.text:
            assert not self.closed, f"the terminal closed without showing {wanted!r}"
            self.changed.clear()
            await self.changed.wait()

    async def until_closed(self) -> None:
        while not self.closed:
            self.changed.clear()
            await self.changed.wait()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)


async def test_on_a_terminal_fw_run_shows_the_live_panel(held: HeldSite) -> None:
    terminal = Terminal()
    env = {k: v for k, v in os.environ.items() if k not in RICH_ENV}
    env["TERM"] = "xterm-256color"
    process = await asyncio.create_subprocess_exec(
        *fw_command(),
        "run",
        str(held.project),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=terminal.slave,
        stderr=terminal.slave,
        env=env,
    )
    os.close(terminal.slave)  # the child holds it now: its exit closes the terminal
    try:
        async with asyncio.timeout(20):
            await terminal.shows(PANEL_IN_FLIGHT)  # drawn while the page is in flight
            held.release.set()
            await terminal.shows("project: finished")
            await terminal.until_closed()
            assert await process.wait() == 0, terminal.text
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        terminal.close()
    assert LOG_IN_FLIGHT not in terminal.text  # the panel, not the log line


async def test_without_a_terminal_fw_run_logs_a_progress_line_now_and_then(held: HeldSite) -> None:
    process = await asyncio.create_subprocess_exec(
        *fw_command(),
        "run",
        str(held.project),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "FW_PROGRESS_INTERVAL": "0.05"},
    )
    assert process.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            while not any(line.endswith(LOG_IN_FLIGHT) for line in lines):
                line = await process.stderr.readline()
                assert line, f"fw ended without a progress line: {lines}"
                lines.append(line.decode().rstrip("\n"))
            held.release.set()
            lines += (await process.stderr.read()).decode().splitlines()
            assert await process.wait() == 0, lines
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert f"INFO: {LOG_IN_FLIGHT}" in lines
    assert not any(ESCAPES.search(line) or PANEL_IN_FLIGHT in line for line in lines)


async def test_a_bad_progress_interval_is_a_usage_error(project: Path) -> None:
    result = await run_fw("run", str(project), env={"FW_PROGRESS_INTERVAL": "soon"})
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: FW_PROGRESS_INTERVAL=soon: expected a number of seconds above 0"
    )
