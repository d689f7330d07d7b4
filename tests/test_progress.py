"""Seeing a crawl: progress reports, --quiet, JSON logs and --log-file."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from aiohttp import web
from rich.console import Console

from framework.progress import Progress, Snapshot, panel
from tests.conftest import Serve, run_fw, write_project

SNAPSHOT = Snapshot(elapsed=10.0, pages=250, items=240, queued=1200, delayed=3, in_flight=16,
                    errors={"timeout": 4, "http_503": 2}, slowed={"slow.example": 1.5})


def test_a_snapshot_reads_as_one_log_line() -> None:
    assert SNAPSHOT.line() == ("250 pages (25.0/s), 240 items, 1200 queued, 3 to retry, "
                               "16 in flight, 6 errors (timeout 4, http_503 2); slowed: "
                               "slow.example 1.50s")


def test_the_live_panel_shows_rate_queue_errors_and_slowed_hosts() -> None:
    console = Console(record=True, width=120)
    console.print(panel("shop", SNAPSHOT))
    text = console.export_text()
    for expected in ("shop", "250 pages (25.0/s)", "240 items", "1200 queued",
                     "16 in flight", "timeout 4", "slow.example", "1.50s"):
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
    async def home(request: web.Request) -> web.Response:
        return web.Response(text="<h1>hi</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", home)
    base = await serve(app)
    return write_project(tmp_path, f"""
        spider: rules
        start_urls: [{base}/]
        robots: ignore
        rules: {{items: [{{fields: {{title: h1::text}}}}]}}
        """)


async def test_quiet_leaves_only_the_summary(project: Path) -> None:
    result = await run_fw("run", "--quiet", str(project))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        line for line in result.stderr.splitlines() if not line.startswith("INFO")]
    assert "project: finished" in result.stderr and "plugins:" not in result.stderr


async def test_json_logs_and_a_log_file(project: Path, tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "fw.log"
    result = await run_fw("--log-format", "json", "--log-file", str(log_file), "run",
                          str(project))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    header = next(r for r in records if "plugins:" in r["message"])
    assert (header["level"], header["logger"]) == ("info", "fw")
    assert set(header) >= {"time", "at", "level", "logger", "message"}
    written = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any("plugins:" in r["message"] for r in written)


async def test_an_unwritable_log_file_is_a_usage_error(project: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    result = await run_fw("--log-file", str(tmp_path / "taken" / "fw.log"), "run",
                          str(project))
    assert result.returncode == 2
    assert result.stderr.startswith("Error: --log-file")
