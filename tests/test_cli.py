"""The ``fw`` command as users run it: output, stats, exit codes and Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import pytest
from aiohttp import web

from framework import __version__
from framework.cli import _parser as cli_parser
from framework.crawl.stats import Stats
from tests.conftest import (
    Completed,
    Serve,
    fw_command,
    pages,
    read_jsonl,
    run_fw,
    write_project,
)

SPIDER = """
from framework import Spider, hookimpl

class Slow(Spider):
    name = "slow"

    async def parse(self, response):
        yield {"path": response.url.rsplit("/", 1)[1] or "/"}
        if response.url.endswith("/"):
            yield response.follow("/slow", priority=10)
            for n in range(5):
                yield response.follow(f"/later{n}")

@hookimpl
def register_spiders(register):
    register(Slow)
"""


class Site:
    """A site whose /slow page answers only when the test says so."""

    def __init__(self) -> None:
        self.arrived, self.release, self.hit = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.hits: list[str] = []
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        self.hit.set()
        if request.path == "/slow":
            self.arrived.set()
            await self.release.wait()
        return web.Response(text="<p>ok</p>", content_type="text/html")


@pytest.fixture
async def site(serve: Serve, tmp_path: Path) -> AsyncIterator[tuple[Site, Path]]:
    state = Site()
    app = web.Application()
    app.router.add_get("/{tail:.*}", state.handle)
    base = state.base = await serve(app)
    (tmp_path / "slow.py").write_text(SPIDER, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: slow
        start_urls: [{base}/]
        plugins: [./slow.py]
        concurrency: {{total: 1, per_domain: 1}}
        exporters: [{{path: out/items.jsonl}}]
        """,
    )
    yield state, project
    state.release.set()


def last_line(done: Completed, code: int) -> str:
    """Check that ``done`` exited with ``code``; return the last line it wrote to stderr."""
    assert done.returncode == code, done.stderr
    return done.stderr.strip().splitlines()[-1]


async def start_fw(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *fw_command(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def read_until(stream: asyncio.StreamReader, words: str) -> str:
    """Read lines until one contains ``words``; fail after 10 seconds."""
    async with asyncio.timeout(10):
        while words not in (line := (await stream.readline()).decode()):
            assert line, f"stream ended before {words!r}"
    return line


@pytest.mark.parametrize(
    "command", [["plugins"], ["plugins", "--json"], ["--help"], ["--version"], ["run", "--help"]]
)
async def test_a_full_standard_output_is_said_so(command: list[str]) -> None:
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        process = await asyncio.create_subprocess_exec(
            *fw_command(), *command, stdout=full, stderr=asyncio.subprocess.PIPE
        )
    finally:
        os.close(full)
    _, err = await process.communicate()
    assert process.returncode == 1
    assert err.decode() == "Error: standard output: No space left on device\n"


@pytest.mark.parametrize(
    ("before", "after", "printed"),
    [([], ["--hel"], "usage: fw run"), ([], ["-qh"], "usage: fw run"), (["--vers"], [], "fw ")],
)
async def test_help_asked_for_in_any_spelling_is_printed_once(
    tmp_path: Path, before: list[str], after: list[str], printed: str
) -> None:
    """argparse takes an abbreviation; fw's reading ahead of argv must print nothing."""
    project = tmp_path / "p.yaml"
    project.write_text("spider: rules\nstart_urls: [http://127.0.0.1:9/]\n")
    result = await run_fw(*before, "run", str(project), *after)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(printed) == 1, result.stdout


async def test_help_with_standard_output_closed_and_a_full_stderr_says_it_failed() -> None:
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        process = await asyncio.create_subprocess_exec(
            *fw_command(), "--help", stdout=subprocess.DEVNULL, stderr=full
        )
    finally:
        os.close(full)
    assert await process.wait() == 0  # the help went to standard output
    command = " ".join(shlex.quote(part) for part in fw_command())
    closed = await asyncio.create_subprocess_shell(f"exec {command} --help >&- 2>/dev/full")
    assert await closed.wait() == 1  # to stderr instead, which took none of it


@pytest.mark.parametrize("command", [["plugins", "--json"], ["--help"], ["check", "--stats"]])
async def test_a_full_non_blocking_standard_output_is_waited_on(
    tmp_path: Path, command: list[str]
) -> None:
    """Whoever opened stdout may have left it non-blocking: full, it takes nothing
    (EAGAIN), and fw waits for room as a blocking write does, rather than fail."""
    if command[0] == "check":  # --stats /dev/stdout of a run: written through fd 1
        project = tmp_path / "p.yaml"
        project.write_text(
            "spider: rules\nstart_urls: [http://127.0.0.1:9/]\n"
            "rules: {items: [{fields: {h1: h1}}]}\nretries: 0\n"
        )
        command = ["run", str(project), "-q", "--stats", "/dev/stdout"]
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 4096)  # a page: full until fw has started
    os.set_blocking(write, False)
    prefill = 0
    with contextlib.suppress(BlockingIOError):
        while True:  # the pipe full before fw writes, as a busy reader leaves it
            prefill += os.write(write, b"x" * 4096)
    with os.fdopen(read, "rb") as reader:
        process = await asyncio.create_subprocess_exec(
            *fw_command(), *command, stdout=write, stderr=asyncio.subprocess.PIPE
        )
        os.close(write)
        out = await asyncio.to_thread(_slowly, reader)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    written = out[prefill:].decode()
    errors = [line for line in err.decode().splitlines() if line.startswith("Error:")]
    assert len(errors) == (1 if command[0] == "run" else 0), err.decode()
    if command == ["plugins", "--json"]:
        assert "douban" in {row["name"] for row in json.loads(written)}
    elif command == ["--help"]:
        assert written.startswith("usage: fw") and written.endswith("\n")
    else:  # nothing was fetched (exit 1), but the stats are whole
        assert json.loads(written)["pages"] == 0


def _slowly(pipe: BinaryIO) -> bytes:
    """Read ``pipe`` to its end a little at a time: a reader slower than fw's writing."""
    chunks = []
    while chunk := os.read(pipe.fileno(), 64):
        chunks.append(chunk)
        time.sleep(0.01)
    return b"".join(chunks)


async def test_version() -> None:
    result = await run_fw("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"fw {__version__}")


async def test_dash_o_streams_json_lines_to_stdout_and_stats_to_a_file(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    state, project = site
    state.release.set()
    result = await run_fw("run", str(project), "-o", "-", "--stats", str(tmp_path / "s.json"))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(item["path"] for item in lines) == sorted(
        ["/", "slow", *(f"later{n}" for n in range(5))]
    )
    stats = json.loads((tmp_path / "s.json").read_text())
    assert (stats["pages"], stats["items"], stats["reason"]) == (7, 7, "finished")
    assert stats["errors"] == {} and stats["elapsed"] > 0 and stats["pages_per_second"] > 0
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("project: finished in ") and "7 pages" in summary
    assert "7 items exported, 0 errors" in summary


async def test_ctrl_c_lets_in_flight_requests_finish_then_exits_130(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    state, project = site
    process = await start_fw("run", str(project))
    assert process.stderr is not None
    async with asyncio.timeout(10):
        await state.arrived.wait()
    process.send_signal(signal.SIGINT)
    assert "letting 1 requests in flight finish" in await read_until(process.stderr, "Stopping")
    state.release.set()
    async with asyncio.timeout(10):
        await process.wait()
    assert process.returncode == 130
    rest = (await process.stderr.read()).decode()
    assert "interrupted" in rest
    # The request in flight finished and its item was exported; nothing new was started.
    items = read_jsonl(tmp_path / "out/items.jsonl")
    assert sorted(item["path"] for item in items) == ["/", "slow"]
    assert not any(hit.startswith("/later") for hit in state.hits)


async def test_a_second_ctrl_c_exits_at_once(site: tuple[Site, Path], tmp_path: Path) -> None:
    state, project = site
    process = await start_fw("run", str(project), "-o", str(tmp_path / "items.json"))
    assert process.stderr is not None
    async with asyncio.timeout(10):
        await state.arrived.wait()
    process.send_signal(signal.SIGINT)
    await read_until(process.stderr, "Stopping")
    process.send_signal(signal.SIGINT)
    async with asyncio.timeout(10):
        await process.wait()
    assert process.returncode == 130 and not state.release.is_set()
    assert read_jsonl(tmp_path / "out/items.jsonl") == [{"path": "/"}]
    # Quitting at once still closes the JSON array: the file is one valid document.
    assert json.loads((tmp_path / "items.json").read_text()) == [{"path": "/"}]


async def test_plugins_lists_the_bundled_plugins() -> None:
    result = await run_fw("plugins", "--json")
    assert result.returncode == 0
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["exporters"]["distribution"] == "fwcrawl"
    assert plugins["exporters"]["hooks"] == ["register_exporters"]
    assert plugins["exporters"]["provides"] == {"exporters": ["jsonl", "json", "csv", "sqlite"]}
    assert plugins["douban"]["provides"] == {"spiders": ["douban"]}
    assert plugins["rules"]["provides"] == {"spiders": ["rules"]}
    for battery in ("schema", "files"):  # item steps: no registry, a section or a spider type
        assert plugins[battery]["distribution"] == "fwcrawl"
        assert plugins[battery]["hooks"] == ["item_step"]
    table = await run_fw("plugins")
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "DISTRIBUTION", "VERSION", "HOOKS", "PROVIDES"]
    assert any(row.split()[:3] == ["douban", "fwcrawl", __version__] for row in rows)


async def test_bad_usage_exits_2() -> None:
    result = await run_fw("run")
    assert result.returncode == 2 and "usage: fw run" in result.stderr


HANGING = """
import asyncio
from framework import Spider, hookimpl

class Hangs(Spider):
    name = "hangs"

    async def parse(self, response):
        yield {"path": "/"}
        await asyncio.Event().wait()  # a callback that never finishes

@hookimpl
def register_spiders(register):
    register(Hangs)
"""


async def test_ctrl_c_gives_up_on_in_flight_work_after_the_grace_period(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    state, _ = site
    state.release.set()
    (tmp_path / "hangs.py").write_text(HANGING, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: hangs
        start_urls: [{state.base}/]
        plugins: [./hangs.py]
        timeout: 0.5
        """,
        name="hangs.yaml",
    )
    process = await start_fw("run", str(project))
    assert process.stderr is not None
    async with asyncio.timeout(10):
        await state.hit.wait()  # the engine runs, so Ctrl-C is handled by it
    process.send_signal(signal.SIGINT)
    await read_until(process.stderr, "Stopping")
    async with asyncio.timeout(15):  # grace: the request timeout plus 5 s
        await process.wait()
    assert process.returncode == 130
    assert "interrupted" in (await process.stderr.read()).decode()


STUCK_EXPORT = """
import asyncio
from framework import Exporter, hookimpl

class Stuck(Exporter):
    format = "stuck"
    extensions = (".stuck",)

    async def write(self, item):
        print("writing", flush=True)
        await asyncio.Event().wait()  # a write that never returns

@hookimpl
def register_exporters(register):
    register(Stuck)
"""


async def test_an_export_stuck_in_write_is_named_when_ctrl_c_gives_up(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    stuck = tmp_path / "items.stuck"
    returncode, stderr = await signalled_when(
        site, "writing", STUCK_EXPORT, signal.SIGINT, "-o", str(stuck)
    )
    assert returncode == 130
    assert f"export {stuck}: write() had not returned when it was cancelled" in stderr


async def signalled_when(
    site: tuple[Site, Path], said: str, plugin: str, sig: signal.Signals, *args: str
) -> tuple[int, str]:
    """Run the site's crawl with ``plugin`` too; send ``sig`` once the plugin prints
    ``said``; return the exit code and stderr. The crawl has 0.2 s to stop."""
    state, project = site
    state.release.set()
    (project.parent / "signalled.py").write_text(plugin, encoding="utf-8")
    with project.open("a", encoding="utf-8") as file:
        file.write("stop_timeout: 0.2\n")
    process = await start_fw(
        "run", str(project), "-s", "plugins=[./slow.py, ./signalled.py]", *args
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        await read_until(process.stderr, said)  # what a plugin prints goes to stderr
        process.send_signal(sig)
        async with asyncio.timeout(10):  # twice stop_timeout, and a second
            await process.wait()
    finally:  # a crawl stuck on purpose outlives a failed test otherwise
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, (await process.stderr.read()).decode()


FINISHING_FOREVER = """
import asyncio
from framework import hookimpl

@hookimpl
async def crawl_finished(project, spider, stats):
    print("finishing", flush=True)
    await asyncio.Event().wait()  # an upload of the results, say, that never ends
"""


async def test_a_signal_during_crawl_finished_is_no_finished_crawl(
    site: tuple[Site, Path],
) -> None:
    returncode, stderr = await signalled_when(site, "finishing", FINISHING_FOREVER, signal.SIGTERM)
    assert returncode == 143  # it said "finished", exit 0: a plugin's end was cut
    assert ": terminated in " in stderr
    assert (  # and says whose end it cut, or the hook's failure goes unnoticed
        "plugin 'signalled.py': crawl_finished had not returned when it was cancelled" in stderr
    )


async def test_an_aborted_crawl_still_summarises_and_writes_stats(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    state, project = site
    state.release.set()
    # Every write to /dev/full fails as on a full disk: the crawl aborts at the first item.
    result = await run_fw(
        "run",
        str(project),
        "-s",
        "exporters=[{path: /dev/full, format: jsonl}]",
        "--stats",
        str(tmp_path / "stats.json"),
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "Error: export /dev/full: No space left on device (0 items written)"
    assert lines[-2].startswith("project: aborted in ")
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["reason"] == "aborted" and stats["pages"] >= 1


@pytest.fixture
async def skipping(serve: Serve, tmp_path: Path) -> Path:
    """A one-page crawl whose only item lacks a required field: logged at debug and warning."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<h1>Hi</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    base = await serve(app)
    return write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{base}/]
        robots: ignore
        rules: {{items: [{{fields: {{title: h1, price: {{css: .price, required: true}}}}}}]}}
        """,
    )


@pytest.mark.parametrize("where", ["before the command", "after the command"])
async def test_log_level_is_taken_before_or_after_the_command(where: str, skipping: Path) -> None:
    def run(level: str) -> list[str]:
        option = ["--log-level", level]
        return (
            [*option, "run", str(skipping)]
            if where == "before the command"
            else ["run", str(skipping), *option]
        )

    debug = await run_fw(*run("debug"))
    assert debug.returncode == 0, debug.stderr
    assert "DEBUG: item skipped: rules.items[0].fields.price is missing" in debug.stderr
    warning = await run_fw(*run("warning"))
    assert warning.returncode == 0, warning.stderr
    assert "WARNING: items skipped for lacking a required field" in warning.stderr
    assert "INFO:" not in warning.stderr and "DEBUG:" not in warning.stderr


async def test_log_format_and_file_are_taken_after_the_command(
    skipping: Path, tmp_path: Path
) -> None:
    log_file = tmp_path / "fw.log"
    result = await run_fw("run", str(skipping), "--log-format", "json", "--log-file", str(log_file))
    assert result.returncode == 0, result.stderr
    logged = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any(entry["message"].startswith("project: plugins: ") for entry in logged)


@pytest.mark.parametrize("where", ["/proc/fw-stats.json", "a folder", "under a file"])
async def test_an_unwritable_stats_path_fails_before_the_crawl(
    where: str, site: tuple[Site, Path], tmp_path: Path
) -> None:
    state, project = site
    state.release.set()
    (tmp_path / "file").write_text("")
    stats = {"a folder": str(tmp_path), "under a file": str(tmp_path / "file" / "s.json")}.get(
        where, where
    )
    result = await run_fw("run", str(project), "--stats", stats)
    assert result.returncode == 2
    reason = {
        "a folder": "Is a directory",
        "under a file": f"{tmp_path / 'file'} is not a folder",
    }.get(where, "No such file or directory")
    assert result.stderr.strip() == f"Error: --stats {stats}: cannot write it: {reason}"
    assert state.hits == []  # checked before crawling


async def test_an_error_in_a_flags_value_names_the_flag(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    # --cache stands for -s cache.dir=…: its error named -s, which the user never typed.
    state, project = site
    (tmp_path / "file").write_text("")
    flag = await run_fw("run", str(project), "--cache", str(tmp_path / "file"))
    assert last_line(flag, 2) == f"Error: --cache: cache.dir: {tmp_path / 'file'} is not a folder"
    dash_s = await run_fw("run", str(project), "-s", f"cache.dir={tmp_path / 'file'}")
    assert last_line(dash_s, 2) == f"Error: -s: cache.dir: {tmp_path / 'file'} is not a folder"
    # The flag made the section; a key -s added to it is the -s's, and so is a value -s
    # put in place of the flag's.
    both = await run_fw("run", str(project), "--cache", str(tmp_path), "-s", "cache.bogus=1")
    assert last_line(both, 2).startswith("Error: -s: cache.bogus: unknown key")
    for later in ("incremental.bogus=1", "incremental={enabled: maybe}"):
        done = await run_fw("run", str(project), "--incremental", "-s", later)
        assert last_line(done, 2).startswith("Error: -s: incremental."), later
    assert state.hits == []


async def test_stats_to_a_fifo_nothing_reads_fails_instead_of_hanging(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    state, project = site
    state.release.set()
    fifo = tmp_path / "stats.fifo"
    os.mkfifo(fifo)  # opened to write, it once waited for a reader that never came
    result = await run_fw("run", str(project), "--stats", str(fifo), timeout=30)
    assert last_line(result, 1) == (f"Error: --stats {fifo}: a FIFO that nothing reads")


async def test_a_log_file_that_is_a_fifo_nothing_reads_fails_instead_of_hanging(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)  # every command waited for a reader before doing anything
    result = await run_fw("plugins", "--log-file", str(fifo), timeout=30)
    assert (result.returncode, result.stderr) == (
        2,
        f"Error: --log-file {fifo}: a FIFO that nothing reads\n",
    )


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("items.jsonl", "exporter jsonl cannot open {fifo}: a FIFO that nothing reads"),
        (
            "items.db",
            "exporter sqlite cannot open {fifo}: not a regular file; an SQLite export needs one",
        ),
    ],
)
async def test_an_export_to_a_fifo_nothing_reads_fails_instead_of_hanging(
    site: tuple[Site, Path], tmp_path: Path, name: str, error: str
) -> None:
    state, project = site
    state.release.set()
    fifo = tmp_path / name
    os.mkfifo(fifo)  # its blocking open held the loop: no signal stopped it, only kill -9
    result = await run_fw("run", str(project), "-o", str(fifo), timeout=30)
    assert last_line(result, 1) == "Error: " + error.format(fifo=fifo)
    assert state.hits == []


@pytest.mark.parametrize(
    ("option", "code", "error"),
    [
        ("-o", 1, "exporter jsonl cannot open {sock}: a socket, which no file is opened as"),
        ("--stats", 2, "--stats {sock}: cannot write it: a socket"),
        ("--log-file", 2, "--log-file {sock}: a socket"),
    ],
)
async def test_a_socket_in_place_of_a_file_is_said_to_be_one_and_left_alone(
    site: tuple[Site, Path], option: str, code: int, error: str
) -> None:
    state, project = site
    state.release.set()
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:  # a socket's path is short
        sock = Path(folder) / "s.jsonl"
        with socket.socket(socket.AF_UNIX) as listening:
            listening.bind(str(sock))
            result = await run_fw("run", str(project), option, str(sock), timeout=30)
            assert stat.S_ISSOCK(sock.stat().st_mode)  # not replaced by a file
    assert last_line(result, code) == "Error: " + error.format(sock=sock)
    assert state.hits == []


def test_stats_bound_to_a_socket_since_the_crawl_began_leave_it_in_place() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        sock = Path(folder) / "stats.json"
        with socket.socket(socket.AF_UNIX) as listening:
            listening.bind(str(sock))
            with pytest.raises(OSError, match="a socket"):
                Stats("x").save(sock)
            assert stat.S_ISSOCK(sock.stat().st_mode)


async def test_an_export_to_a_fifo_waits_for_a_reader_that_comes_after_fw(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    state, project = site
    state.release.set()
    fifo = tmp_path / "items.jsonl"
    os.mkfifo(fifo)
    process = await start_fw("run", str(project), "-o", str(fifo))  # fw first, as with `&`
    assert process.stderr is not None
    await read_until(process.stderr, "plugins:")  # logged just before the exports open
    reader = asyncio.create_task(asyncio.to_thread(fifo.read_text))  # then the reader
    async with asyncio.timeout(30):
        code = await process.wait()
    with contextlib.suppress(OSError):  # a reader still waiting for fw: let it go
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    lines = (await reader).splitlines()
    assert code == 0
    assert sorted(json.loads(line)["path"] for line in lines) == sorted(
        ["/", "slow", *(f"later{n}" for n in range(5))]
    )


async def test_stats_to_dev_stdout_go_to_the_file_stdout_is(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    state, project = site
    state.release.set()
    link = Path("/dev/stdout").readlink()
    with (tmp_path / "stdout.txt").open("wb") as stdout:  # as the shell's `> stdout.txt`
        process = await asyncio.create_subprocess_exec(
            *fw_command(), "run", str(project), "--stats", "/dev/stdout", "-q", stdout=stdout
        )
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    # Written through fw's own descriptor: never a file renamed over the system's link.
    assert json.loads((tmp_path / "stdout.txt").read_text())["reason"] == "finished"
    assert Path("/dev/stdout").readlink() == link


async def test_stats_are_written_when_stderrs_reader_has_left(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    state, project = site
    state.release.set()
    reader, writer = os.pipe()
    os.close(reader)  # as `fw run … 2> >(head -c 10)` once head has left
    try:
        process = await asyncio.create_subprocess_exec(
            *fw_command(), "run", str(project), "--stats", str(tmp_path / "s.json"), stderr=writer
        )
    finally:
        os.close(writer)
    async with asyncio.timeout(30):
        assert await process.wait() == 0
    assert json.loads((tmp_path / "s.json").read_text())["reason"] == "finished"


async def test_a_stats_path_is_only_written_at_the_end(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    state, project = site
    stats = tmp_path / "new" / "stats.json"
    process = await start_fw("run", str(project), "--stats", str(stats))
    async with asyncio.timeout(10):
        await state.arrived.wait()
    assert not stats.exists()  # the up-front check leaves no empty file behind
    state.release.set()
    async with asyncio.timeout(10):
        await process.wait()
    assert process.returncode == 0
    assert json.loads(stats.read_text())["reason"] == "finished"


async def test_a_crawl_with_nowhere_to_put_items_says_so(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    state, _ = site
    state.release.set()
    project = write_project(
        tmp_path,
        f"spider: slow\nstart_urls: [{state.base}/]\nplugins: [./slow.py]\nmax_pages: 1\n",
        name="nowhere.yaml",
    )
    result = await run_fw("run", str(project))
    assert result.returncode == 0, result.stderr
    assert "no exporter and no -o: the items go nowhere; add -o items.jsonl" in result.stderr
    assert "1 items scraped, none exported (no exporter: add -o items.jsonl)" in result.stderr


@pytest.mark.parametrize("command", [("plugins",), ("plugins", "--json"), ("--version",)])
def test_a_closed_pipe_ends_any_command_quietly(command: tuple[str, ...]) -> None:
    reader, writer = os.pipe()
    os.close(reader)  # as `fw plugins | head -1` once head has read its line
    try:
        done = subprocess.run(
            [*fw_command(), *command],
            stdout=writer,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(writer)
    assert done.returncode == 0
    assert done.stderr == b""


def test_the_readme_synopsis_lists_every_option_of_every_command() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    synopsis = readme.split("## Command line", 1)[1].split("```", 2)[1].replace("\n       ", " ")
    parser = cli_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        line = next(line for line in synopsis.splitlines() if line.startswith(f"fw {name} "))
        for action in sub._actions:
            flags = [f for f in action.option_strings if f.startswith("-")]
            if flags and action.dest not in ("help", "log_level", "log_format", "log_file"):
                assert any(flag in line for flag in flags), f"fw {name}: {flags} not in {line!r}"


@pytest.mark.parametrize(
    ("ended_by", "retries", "kinds"),
    [
        ("running out", 0, "connection 2"),
        ("max_pages", 0, "connection 2"),
        # Every request was waiting to be retried when max_pages stopped it: exit 0 was said.
        ("max_pages", 1, "connection 2; their retries were cut short"),
    ],
)
async def test_a_crawl_that_fetched_nothing_at_all_exits_1(
    tmp_path: Path, ended_by: str, retries: int, kinds: str
) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    project = write_project(
        tmp_path,
        f"spider: rules\nstart_urls: [{dead}/a, {dead}/b]\nretries: {retries}\nrules: {{items: "
        "[{fields: {page: {value: url}}}]}\n",
    )
    limit = ["-s", "max_pages=2"] if ended_by == "max_pages" else []
    done = await run_fw("run", str(project), "-o", str(tmp_path / "items.jsonl"), *limit)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    reason = "max_pages reached" if limit else "finished"
    assert any(line.startswith(f"project: {reason} in ") for line in lines), done.stderr
    assert lines[-1] == (
        f"Error: nothing was fetched: every request failed ({kinds}); check the start URLs "
        "and the network"
    )


ASKS_FOR_404 = """
from framework import Spider, hookimpl

class Gone(Spider):
    name = "gone"
    allowed_status = (404,)

    def parse(self, response):
        return []

@hookimpl
def register_spiders(register):
    register(Gone)
"""


async def test_a_crawl_whose_retried_request_then_got_the_answer_it_asked_for_exits_0(
    tmp_path: Path, serve: Serve
) -> None:
    # A 503, retried, then the 404 the spider handles: a page was handled, nothing failed.
    answers = iter(
        [web.Response(status=503, headers={"Retry-After": "0"}), web.Response(status=404)]
    )

    async def handler(request: web.Request) -> web.Response:
        return next(answers)

    app = web.Application()
    app.router.add_get("/gone", handler)
    base = await serve(app)
    (tmp_path / "gone.py").write_text(ASKS_FOR_404, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"spider: gone\nplugins: [./gone.py]\nstart_urls: [{base}/gone]\nrobots: ignore\n"
        "backoff: {base: 0.01, max: 0.05}\n",
    )
    done = await run_fw("run", str(project), "-o", str(tmp_path / "items.jsonl"))
    assert done.returncode == 0, done.stderr
    assert "2 pages" in done.stderr and "0 errors, 1 retries" in done.stderr, done.stderr


def refusing() -> web.Application:
    """A site whose start page never answers with a page: 503 forever, or a redirect loop."""

    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "0"}, text="down")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    app = web.Application()
    app.router.add_get("/down", unavailable)
    app.router.add_get("/loop", loop)
    return app


@pytest.mark.parametrize(("path", "kinds"), [("/down", "http_503 1"), ("/loop", "redirects 1")])
async def test_a_crawl_that_got_no_page_only_error_answers_exits_1(
    tmp_path: Path, serve: Serve, path: str, kinds: str
) -> None:
    base = await serve(refusing())
    project = write_project(
        tmp_path,
        f"spider: rules\nstart_urls: [{base}{path}]\nretries: 0\nrobots: ignore\n"
        "rules: {items: [{fields: {page: {value: url}}}]}\n",
    )
    done = await run_fw("run", str(project), "-o", str(tmp_path / "items.jsonl"))
    assert last_line(done, 1) == (
        f"Error: nothing was fetched: every request failed ({kinds}); check the start URLs "
        "and the network"
    )


BAD_STARTS = """
import os
from framework import Request, Spider, hookimpl

class BadStarts(Spider):
    name = "bad_starts"

    def start_requests(self):
        yield Request("not a url")
        yield Request("http://[::1/broken")
        for n in range(5):
            yield Request(f"http://elsewhere.invalid/{n}")
        if os.environ.get("GOOD"):
            yield Request(os.environ["GOOD"])

    def parse(self, response):
        yield {"url": response.url}
        yield from response.follow_all()

@hookimpl
def register_spiders(register):
    register(BadStarts)
"""


@pytest.mark.parametrize("good", [False, True])
async def test_start_requests_the_crawl_refuses_are_said_and_all_refused_exits_1(
    tmp_path: Path, serve: Serve, good: bool
) -> None:
    base = await serve(refusing())  # only its robots.txt and the good start are asked
    (tmp_path / "bad.py").write_text(BAD_STARTS, encoding="utf-8")
    project = write_project(
        tmp_path,
        "spider: bad_starts\nplugins: [./bad.py]\nallowed_domains: [127.0.0.1]\nrobots: ignore\n",
    )
    env = {"GOOD": f"{base}/down"} if good else {}
    done = await run_fw("run", str(project), "-o", str(tmp_path / "items.jsonl"), env=env)
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING: spider")]
    assert warnings == [
        "WARNING: spider bad_starts: start request 'not a url' dropped: not an http(s) URL",
        "WARNING: spider bad_starts: start request 'http://[::1/broken' dropped: not a valid URL",
        *(
            f"WARNING: spider bad_starts: start request 'http://elsewhere.invalid/{n}' "
            "dropped: its host is outside allowed_domains"
            for n in range(3)
        ),
        "WARNING: spider bad_starts: more requests dropped; --stats counts them (filtered)",
    ]
    if good:  # one start request went out: its failure is the crawl's story, not this
        assert "every start request was refused" not in done.stderr
        return
    assert last_line(done, 1) == (
        "Error: nothing was fetched: every start request was refused (offsite 5, scheme 1, "
        "invalid_url 1); see the warnings above"
    )


async def test_a_crawl_robots_txt_forbids_entirely_exits_1_and_says_so(
    tmp_path: Path, serve: Serve
) -> None:
    async def answer(request: web.Request) -> web.Response:
        if request.path == "/go":  # a start URL that leads there
            raise web.HTTPFound("/a")
        if request.path == "/broken":
            raise web.HTTPInternalServerError
        robots = request.path == "/robots.txt"
        return web.Response(text="User-agent: *\nDisallow: /a\n" if robots else "a")

    site = web.Application()
    site.router.add_get("/{tail:.*}", answer)
    base = await serve(site)
    project = write_project(
        tmp_path,
        f"spider: rules\nstart_urls: [{base}/a]\nrules: {{items: [{{fields: {{h: h1}}}}]}}\n",
    )
    done = await run_fw("run", str(project), "-o", str(tmp_path / "items.jsonl"))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == (
        "Error: nothing was fetched: every start request was refused (robots 1); see the "
        "warnings above"
    )
    assert (
        f"WARNING: spider rules: start request '{base}/a' dropped: its site's robots.txt forbids it"
    ) in lines
    text = project.read_text().replace(f"[{base}/a]", f"[{base}/a, {base}/a]")
    project.write_text(text)  # listed twice: one refused, one a duplicate
    twice = await run_fw("run", str(project), "-o", str(tmp_path / "items.jsonl"))
    assert twice.returncode == 1
    assert "robots.txt forbids every request the crawl made (robots 1)" in twice.stderr
    project.write_text(project.read_text().replace(f"[{base}/a, {base}/a]", f"[{base}/go]"))
    led = await run_fw("run", str(project), "-o", str(tmp_path / "items.jsonl"))
    assert (
        f"WARNING: spider rules: start request '{base}/go' redirected to '{base}/a', which "
        "its site's robots.txt forbids"
    ) in led.stderr.splitlines()
    text = f"[{base}/a, {base}/broken]\nretries: 0"
    project.write_text(project.read_text().replace(f"[{base}/go]", text))
    failed = await run_fw("run", str(project), "-o", str(tmp_path / "items.jsonl"))
    # One start refused, the other failed: both are said.
    assert last_line(failed, 1) == (
        "Error: nothing was fetched: every request failed (http_500 1) or robots.txt "
        "forbade it (robots 1); check the start URLs and the network"
    )


async def test_a_retry_of_pages_robots_txt_now_forbids_exits_1(
    tmp_path: Path, serve: Serve
) -> None:
    rules = {"robots": "User-agent: *\nDisallow: /nothing\n"}

    async def answer(request: web.Request) -> web.Response:
        if request.path == "/robots.txt":
            return web.Response(text=rules["robots"])
        if request.path == "/a":
            return web.Response(text='<a href="/deep/x">x</a>', content_type="text/html")
        return web.Response(status=503, headers={"Retry-After": "0"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    base = await serve(app)
    project = write_project(
        tmp_path,
        f"spider: rules\nstart_urls: [{base}/a, {base}/a]\nretries: 0\n"
        "rules: {follow: [a], items: [{fields: {h: h1}}]}\n",
    )
    first = await run_fw("run", str(project), "-o", "items.jsonl", cwd=tmp_path)
    assert first.returncode == 0, first.stderr  # /a answered; /deep/x is listed as failed
    rules["robots"] = "User-agent: *\nDisallow: /deep/\n"
    again = await run_fw("run", str(project), "--retry-failed", "-o", "items.jsonl", cwd=tmp_path)
    assert last_line(again, 1) == (
        "Error: nothing was fetched: robots.txt forbids every request the crawl made "
        "(robots 1); fw obeys it (robots: obey)"
    )


async def test_a_resumed_crawl_whose_queue_robots_txt_forbids_ends_well(
    tmp_path: Path, serve: Serve
) -> None:
    site = {
        "/robots.txt": "User-agent: *\nDisallow: /private/\n",
        "/x": '<a href="/private/a">a</a><a href="/private/b">b</a>',
    }
    base = await serve(pages(site))
    project = write_project(
        tmp_path,
        f"spider: rules\nstart_urls: [{base}/x]\nrules: {{follow: [a], items: [{{fields: "
        '{h: h1}}]}\nfrontier: "sqlite:///state.db"\nmax_pages: 1\n',
    )
    runs = [await run_fw("run", str(project), "-o", "items.jsonl", cwd=tmp_path) for _ in "12"]
    assert [run.returncode for run in runs] == [0, 0], runs[1].stderr
    assert "refused" not in runs[1].stderr


async def test_a_resumed_crawl_whose_start_requests_are_refused_goes_on(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(pages({"/0": '<a href="/1">next</a>', "/1": "last"}))
    (tmp_path / "bad.py").write_text(BAD_STARTS, encoding="utf-8")
    project = write_project(
        tmp_path,
        "spider: bad_starts\nplugins: [./bad.py]\nallowed_domains: [127.0.0.1]\n"
        'robots: ignore\nfrontier: "sqlite:///state/crawl.db"\n',
    )
    out = str(tmp_path / "items.jsonl")
    first = await run_fw(
        "run", str(project), "-o", out, "-s", "max_pages=1", env={"GOOD": f"{base}/0"}
    )
    assert first.returncode == 0, first.stderr
    # Its start requests all refused now, the crawl still fetches what it queued before.
    second = await run_fw("run", str(project), "-o", out)
    assert second.returncode == 0, second.stderr
    assert [item["url"] for item in read_jsonl(tmp_path / "items.jsonl")] == [
        f"{base}/0",
        f"{base}/1",
    ]


FAILING = """
import os
from framework import Exporter, Spider, hookimpl

class Failing(Spider):
    name = "failing"

    def parse(self, response):
        if os.environ.get("PARSE") == "raises":
            raise ValueError("a spider bug")
        yield {"url": response.url}
        yield from response.follow_all()

class Refuses(Exporter):
    format = "refuses"
    extensions = (".refused",)

    def write(self, item):
        raise ValueError("cannot take any item")

@hookimpl
def register_spiders(register):
    register(Failing)

@hookimpl
def register_exporters(register):
    register(Refuses)
"""


@pytest.mark.parametrize(
    ("env", "outputs", "error"),
    [
        (
            {"PARSE": "raises"},
            ["items.jsonl"],
            "nothing was exported: every page or item failed (spider_error 1); see the errors "
            "above",
        ),
        (
            {},
            ["items.refused"],
            "nothing was exported: every page or item failed (item_error 2); see the errors above",
        ),
        (
            {},
            ["items.jsonl", "items.refused"],
            "export {tmp}/items.refused: none of the 2 items could be written (item_error); see "
            "the errors above",
        ),
    ],
)
async def test_a_crawl_whose_every_page_or_item_failed_exits_1(
    tmp_path: Path, serve: Serve, env: dict[str, str], outputs: list[str], error: str
) -> None:
    base = await serve(pages({"/0": '<a href="/1">next</a>', "/1": "last"}))
    (tmp_path / "failing.py").write_text(FAILING, encoding="utf-8")
    project = write_project(
        tmp_path, f"spider: failing\nplugins: [./failing.py]\nstart_urls: [{base}/0]\n"
    )
    exports = [arg for name in outputs for arg in ("-o", str(tmp_path / name))]
    done = await run_fw("run", str(project), *exports, env=env)
    assert last_line(done, 1) == "Error: " + error.format(tmp=tmp_path)


CLOSES = """
from framework import CloseSpider, Spider, hookimpl

class Closes(Spider):
    name = "closes"

    def parse(self, response):
        raise CloseSpider("nothing new")

@hookimpl
def register_spiders(register):
    register(Closes)
"""


async def test_a_crawl_the_spider_closes_at_once_is_no_failure(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(pages({"/": "news"}))  # /missing answers 404
    (tmp_path / "closes.py").write_text(CLOSES, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"spider: closes\nplugins: [./closes.py]\nstart_urls: [{base}/missing, {base}/]\n"
        "concurrency: {total: 1, per_domain: 1}\n",
    )
    done = await run_fw("run", str(project), "-o", str(tmp_path / "items.jsonl"))
    assert done.returncode == 0, done.stderr
    assert "closed by spider: nothing new" in done.stderr


# ---------------------------------------------------------------------------------------------
# One file, two writers: an export, the failures file, the state, the log and the stats
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--stats", "out/items.jsonl"],
            "--stats out/items.jsonl: the crawl writes an export there; give it its own file",
        ),
        (
            ["--log-file", "out/items.jsonl"],
            "--log-file out/items.jsonl: the crawl writes an export there; give it its own file",
        ),
        (
            ["--log-file", "fw.log", "--stats", "fw.log"],
            "--stats fw.log: the crawl writes its log (--log-file) there; give it its own file",
        ),
        (
            ["-o", "-", "--stats", "/dev/stdout"],
            "--stats /dev/stdout: the crawl writes its items (-o -) there; give it its own file",
        ),
        (
            ["--stats", "project.yaml"],
            "--stats project.yaml: the crawl reads its project file there; give it its own file",
        ),
        (
            ["--log-file", "./project.yaml"],
            "--log-file project.yaml: the crawl reads its project file there; give it its own file",
        ),
        (
            ["--stats", "linked.yaml"],  # the project, run through a link to it
            "--stats linked.yaml: the crawl reads its project file there; give it its own file",
        ),
        (
            ["-o", "out/project.failures.jsonl"],
            "-o: {tmp}/out/project.failures.jsonl: the crawl writes its failures file there; "
            "give the export its own file",
        ),
        (
            ["-o", "state/crawl.db", "-s", 'frontier="sqlite:///state/crawl.db"'],
            "-o: {tmp}/state/crawl.db: the crawl writes its state (frontier) there; give the "
            "export its own file",
        ),
    ],
)
async def test_a_file_the_crawl_writes_is_not_written_by_anything_else(
    site: tuple[Site, Path], tmp_path: Path, args: list[str], error: str
) -> None:
    state, project = site
    state.release.set()
    (tmp_path / "out").mkdir()
    (tmp_path / "out/items.jsonl").write_text('{"kept": 1}\n')
    (tmp_path / "linked.yaml").symlink_to(project)
    given = "linked.yaml" if "linked.yaml" in args else str(project)
    done = await run_fw("run", given, *args, cwd=tmp_path)
    assert last_line(done, 2) == "Error: " + error.format(tmp=tmp_path)
    assert state.hits == [] and (tmp_path / "out/items.jsonl").read_text() == '{"kept": 1}\n'


# ---------------------------------------------------------------------------------------------
# Planted symbolic links: --log-file refuses one, --stats replaces it, neither writes through
# ---------------------------------------------------------------------------------------------


async def test_a_symlink_as_the_log_file_is_refused(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    state, project = site
    state.release.set()
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    (tmp_path / "fw.log").symlink_to(precious)
    result = await run_fw("run", str(project), "--log-file", str(tmp_path / "fw.log"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: --log-file {tmp_path / 'fw.log'}: a symbolic link; fw does not write "
        "through one (remove it)"
    )
    assert precious.read_text() == "keep me\n" and state.hits == []


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
async def test_every_file_fw_writes_follows_the_umask(
    site: tuple[Site, Path], tmp_path: Path, umask: int, mode: int
) -> None:
    state, project = site
    state.release.set()
    before = set(tmp_path.rglob("*"))
    outputs = [f"-o{name}" for name in ("a.json", "b.jsonl", "c.csv", "d.db")]
    old = os.umask(umask)
    try:
        result = await run_fw(
            "run", str(project), *outputs, "--stats", "s.json", "--log-file", "fw.log", cwd=tmp_path
        )
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    written = {
        p.relative_to(tmp_path): p.stat().st_mode & 0o777
        for p in set(tmp_path.rglob("*")) - before
        if p.is_file()
    }
    assert len(written) >= 7 and set(written.values()) == {mode}, written


async def test_the_log_file_is_appended_to(site: tuple[Site, Path], tmp_path: Path) -> None:
    state, project = site
    state.release.set()
    (tmp_path / "fw.log").write_text("earlier\n")
    result = await run_fw("run", str(project), "--log-file", str(tmp_path / "fw.log"))
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "fw.log").read_text().splitlines()
    assert lines[0] == "earlier" and len(lines) > 1


async def test_stats_replace_a_symlink_instead_of_writing_through_it(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    state, project = site
    state.release.set()
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    (tmp_path / "stats.json").symlink_to(precious)
    result = await run_fw("run", str(project), "--stats", str(tmp_path / "stats.json"))
    assert result.returncode == 0, result.stderr
    assert precious.read_text() == "keep me\n"
    assert not (tmp_path / "stats.json").is_symlink()
    assert json.loads((tmp_path / "stats.json").read_text())["pages"] >= 1
    assert [p.name for p in tmp_path.glob(".stats.json.*")] == []  # no temporary file left


async def test_stats_to_standard_output_are_written_in_place(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    state, project = site
    state.release.set()
    result = await run_fw("run", str(project), "--stats", "/dev/stdout")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pages"] >= 1


# ---------------------------------------------------------------------------------------------
# What the crawl reads is never written: its plugin files
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--stats", "slow.py"],
            "--stats slow.py: the crawl reads its plugin file ./slow.py there; give it its "
            "own file",
        ),
        (
            ["--log-file", "slow.py"],
            "--log-file slow.py: the crawl reads its plugin file ./slow.py there; give it its "
            "own file",
        ),
        (
            ["-s", "exporters=[{format: jsonl, path: slow.py}]"],
            "-s: exporters[0].path: the crawl reads its plugin file ./slow.py there; give the "
            "export its own file",
        ),
        (
            ["-o", "linked.jsonl"],  # a link to the plugin: the export would write through it
            "-o: {tmp}/linked.jsonl: the crawl reads its plugin file ./slow.py there; give the "
            "export its own file",
        ),
    ],
)
async def test_no_output_may_replace_a_plugin_file_the_crawl_reads(
    site: tuple[Site, Path], tmp_path: Path, args: list[str], error: str
) -> None:
    state, project = site
    state.release.set()
    (tmp_path / "linked.jsonl").symlink_to(tmp_path / "slow.py")
    done = await run_fw("run", str(project), *args, cwd=tmp_path)
    assert last_line(done, 2) == "Error: " + error.format(tmp=tmp_path)
    assert (tmp_path / "slow.py").read_text(encoding="utf-8") == SPIDER and state.hits == []


# ---------------------------------------------------------------------------------------------
# Standard error: a log file that cannot be written, or no stderr at all
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
async def test_a_log_file_that_cannot_be_written_is_said_once_and_fw_exits_1(
    site: tuple[Site, Path], tmp_path: Path
) -> None:
    state, project = site
    state.release.set()
    result = await run_fw("run", str(project), "--log-file", "/dev/full")
    assert result.returncode == 1, result.stderr
    assert "Logging error" not in result.stderr and "Traceback" not in result.stderr
    said = [line for line in result.stderr.splitlines() if "/dev/full" in line]
    assert said == ["Error: --log-file /dev/full: No space left on device; logging to stderr only"]
    assert len(read_jsonl(tmp_path / "out/items.jsonl")) == 7  # the crawl itself went on


@pytest.mark.parametrize(("extra", "code"), [((), 0), (("-s", "timeout=fast"), 2)])
async def test_with_stderr_closed_stdout_gets_the_items_and_nothing_else(
    site: tuple[Site, Path], extra: tuple[str, ...], code: int
) -> None:
    state, project = site
    state.release.set()
    process = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        'exec "$@" 2>&-',  # started as `fw run … 2>&-` is: with no descriptor 2 at all
        "sh",
        *fw_command(),
        "run",
        str(project),
        "-o",
        "-",
        *extra,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == code, out
    items = [json.loads(line) for line in out.decode().splitlines()]  # no Error: line among them
    assert len(items) == (7 if code == 0 else 0)


@pytest.mark.parametrize(
    "option", ["-o", "--stats", "--record", "--replay", "--cache", "--log-file"]
)
async def test_an_empty_path_is_refused(
    site: tuple[Site, Path], tmp_path: Path, option: str
) -> None:
    state, project = site
    state.release.set()
    (tmp_path / "cwd").mkdir()
    result = await run_fw("run", str(project), option, "", cwd=tmp_path / "cwd")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(
        f"argument {option if option != '-o' else '-o/--output'}: expected a path, got an empty one"
    )
    assert list((tmp_path / "cwd").iterdir()) == [] and state.hits == []
