"""The failures file, and ``fw run --retry-failed`` fetching just those requests again."""

from __future__ import annotations

import asyncio
import csv
import errno
import fcntl
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from aiohttp import web

from framework.crawl import failures
from framework.crawl.failures import FailureLog, load_failures
from framework.errors import CrawlAborted, UsageError
from framework.fetch.politeness import HostPolicy, Politeness
from framework.frontier import ONCE, Lease
from framework.frontier.sqlite import SqliteFrontier
from framework.http import Request
from framework.http.urls import fingerprint
from tests.conftest import Serve, read_jsonl, run_fw, write_project
from tests.crawl.test_engine import SPIDER
from tests.disks import small_disk
from tests.redis_server import persistent_frontier
from tests.test_cli import read_until, start_fw


class Site:
    """Pages / and /a../c; /down and /down2 answer 503 until the site is fixed."""

    def __init__(self) -> None:
        self.broken = True
        self.hits: Counter[str] = Counter()
        #: Each request's path and the Authorization it carried.
        self.seen: list[tuple[str, str | None]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        self.seen.append((request.path, request.headers.get("Authorization")))
        if self.broken and request.path.startswith("/down"):
            return web.Response(status=503)
        links = {"/": ["/a", "/b", "/down", "/down2"], "/down": ["/c"]}.get(request.path, [])
        body = "".join(f'<a href="{href}">x</a>' for href in links)
        return web.Response(text=body, content_type="text/html")


def listed(path: Path) -> list[Request]:
    """The requests a failures file lists, as ``--retry-failed`` reads them back."""
    return [entry.request for entry in load_failures(path)]


async def start(serve: Serve, tmp_path: Path, spider: str = SPIDER) -> tuple[Site, Path]:
    site = Site()
    app = web.Application()
    app.router.add_get("/{tail:.*}", site.handle)
    base = await serve(app)
    (tmp_path / "links.py").write_text(spider, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        name: shop
        spider: links
        start_urls: [{base}/]
        plugins: [./links.py]
        robots: ignore
        retries: 1
        backoff: {{base: 0.01, max: 0.05}}
        exporters:
          - {{path: out/items.jsonl}}
          - {{path: out/items.json}}
          - {{path: out/items.csv}}
          - {{path: out/items.db}}
        """,
    )
    return site, project


@pytest.mark.parametrize("frontier", ["memory", "sqlite:///state/crawl.db"])
async def test_failures_are_listed_and_retried_into_the_same_exports(
    tmp_path: Path, serve: Serve, frontier: str
) -> None:
    site, project = await start(serve, tmp_path)
    with project.open("a", encoding="utf-8") as file:
        file.write(f"frontier: {frontier}\n")
    first = await run_fw("run", str(project))
    assert first.returncode == 0, first.stderr
    failures = tmp_path / "out/shop.failures.jsonl"
    assert f"failures: 2 requests listed in {failures}" in first.stderr
    records = [json.loads(line) for line in failures.read_text().splitlines()]
    assert sorted(r["request"]["url"].rsplit("/", 1)[1] for r in records) == ["down", "down2"]
    assert {r["kind"] for r in records} == {"http_503"} and records[0]["reason"] == "HTTP 503"

    site.broken = False
    site.hits.clear()
    again = await run_fw("run", str(project), "--retry-failed")
    assert again.returncode == 0, again.stderr
    # Only the failed pages, and what they link to, were fetched again.
    assert site.hits == {"/down": 1, "/down2": 1, "/c": 1}
    # A memory frontier has no seen-set of the first run: a link back to a page it had
    # done would be fetched and exported again, which the retry says up front.
    warned = "--retry-failed with a memory frontier knows nothing of what the run it retries"
    assert (warned in again.stderr) == (frontier == "memory")
    assert not failures.exists()  # nothing failed this time
    out = tmp_path / "out"
    expected = sorted(f"{path}" for path in ("/", "/a", "/b", "/down", "/down2", "/c"))

    def paths(urls: list[str]) -> list[str]:
        return sorted("/" + url.split("/", 3)[3] for url in urls)

    assert paths([i["url"] for i in read_jsonl(out / "items.jsonl")]) == expected
    assert paths([i["url"] for i in json.loads((out / "items.json").read_text())]) == expected
    with (out / "items.csv").open(newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["url", "status"] and paths([r[0] for r in rows[1:]]) == expected
    with closing(sqlite3.connect(out / "items.db")) as db:
        assert paths([row[0] for row in db.execute("SELECT url FROM items")]) == expected


async def test_retry_failed_without_a_failures_file_is_a_usage_error(
    tmp_path: Path, serve: Serve
) -> None:
    _, project = await start(serve, tmp_path)
    result = await run_fw("run", str(project), "--retry-failed")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: --retry-failed: no failures file "
        f"{tmp_path / 'out/shop.failures.jsonl'}: the last crawl "
        "had no failures, or exported elsewhere"
    )
    sqlite = "frontier=sqlite:///state/crawl.db"  # a memory frontier has no state to wipe
    both = await run_fw("run", str(project), "--retry-failed", "--fresh", "-s", sqlite)
    assert both.returncode == 2
    assert both.stderr.strip() == (
        "Error: --fresh and --retry-failed exclude each other: --fresh starts the crawl "
        "over, --retry-failed retries what its last run failed"
    )


def test_requests_survive_the_round_trip_through_json() -> None:
    request = Request(
        "http://a.test/p?q=1",
        method="POST",
        headers={"X-A": "b"},
        body=b"\x00\xffdata",
        callback="parse_item",
        errback="failed",
        priority=3,
        meta={"film": {"id": "1"}},
        depth=2,
        dont_filter=True,
        retries=2,
        redirects=1,
    )
    assert Request.from_dict(json.loads(json.dumps(request.to_dict()))) == request


def test_a_damaged_failures_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "x.failures.jsonl"
    path.write_text('{"request": {"url": "http://a.test/"}}\n{"req\n')
    with pytest.raises(Exception, match=rf"{path}:2: not a failure record"):
        load_failures(path)


async def test_hundreds_of_failures_are_all_listed_and_all_retried(
    tmp_path: Path, serve: Serve
) -> None:
    # A chain of pages, each linking the next and one missing page: each failed request
    # is freed once settled, and the next one, made later, may get its id() back, which
    # once made the failures file skip it as "already recorded".
    broken = True
    hits: Counter[str] = Counter()

    async def handle(request: web.Request) -> web.Response:
        hits[request.path] += 1
        if request.path.startswith("/missing/"):
            return web.Response(status=404 if broken else 200, text="ok", content_type="text/html")
        n = int(request.path.strip("/") or 0)
        body = f'<a href="/missing/{n}">x</a>' + (f'<a href="/{n + 1}">x</a>' if n < 299 else "")
        return web.Response(text=body, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    base = await serve(app)
    (tmp_path / "links.py").write_text(SPIDER, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        name: many
        spider: links
        start_urls: [{base}/]
        plugins: [./links.py]
        robots: ignore
        exporters: [{{path: out/items.jsonl}}]
        """,
    )
    first = await run_fw("run", str(project))
    assert first.returncode == 0, first.stderr
    failures = tmp_path / "out/many.failures.jsonl"
    missing = {f"/missing/{n}" for n in range(300)}
    listed = [r["request"]["url"].removeprefix(base) for r in read_jsonl(failures)]
    assert sorted(listed) == sorted(missing)
    assert f"failures: 300 requests listed in {failures}" in first.stderr

    broken = False
    hits.clear()
    again = await run_fw("run", str(project), "--retry-failed")
    assert again.returncode == 0, again.stderr
    assert hits == dict.fromkeys(missing, 1)
    assert not failures.exists()


def down_project(directory: Path, base: str, *, concurrency: int) -> Path:
    """A project following every link from ``base``/, each failure final and listed."""
    (directory / "links.py").write_text(SPIDER, encoding="utf-8")
    return write_project(
        directory,
        f"""
        name: shop
        spider: links
        start_urls: [{base}/]
        plugins: [./links.py]
        robots: ignore
        throttle: false
        retries: 0
        concurrency: {{total: {concurrency}, per_domain: {concurrency}}}
        exporters: [{{path: out/items.jsonl}}]
        """,
    )


async def test_a_retry_stopped_half_way_keeps_the_requests_it_did_not_reach(
    tmp_path: Path, serve: Serve
) -> None:
    broken, held = True, asyncio.Event()
    arrived, release = asyncio.Event(), asyncio.Event()
    hits: Counter[str] = Counter()

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/":
            return web.Response(
                text="".join(f'<a href="/down/{n}">x</a>' for n in range(20)),
                content_type="text/html",
            )
        hits[request.path] += 1
        if broken:
            return web.Response(status=503)
        if not held.is_set() and hits.total() == 3:  # the third retry is in flight at Ctrl-C
            held.set()
            arrived.set()
            await release.wait()
        return web.Response(text="ok", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    base = await serve(app)
    project = down_project(tmp_path, base, concurrency=1)
    assert (await run_fw("run", str(project))).returncode == 0
    failures = tmp_path / "out/shop.failures.jsonl"
    assert len(read_jsonl(failures)) == 20

    broken = False
    hits.clear()
    process = await start_fw("run", str(project), "--retry-failed")
    assert process.stderr is not None
    try:
        async with asyncio.timeout(20):
            await arrived.wait()
        process.send_signal(signal.SIGINT)
        await read_until(process.stderr, "Stopping")
        release.set()
        async with asyncio.timeout(20):
            await process.wait()
    finally:
        release.set()
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 130
    reached = set(hits)
    assert len(reached) == 3  # two done, one finished in flight, none started after Ctrl-C
    left = {r["request"]["url"].removeprefix(base) for r in read_jsonl(failures)}
    assert left == {f"/down/{n}" for n in range(20)} - reached

    hits.clear()
    again = await run_fw("run", str(project), "--retry-failed")
    assert again.returncode == 0, again.stderr
    assert set(hits) == left and set(hits.values()) == {1}
    assert not failures.exists()
    items = [item["url"].removeprefix(base) for item in read_jsonl(tmp_path / "out/items.jsonl")]
    assert sorted(items) == sorted(["/", *(f"/down/{n}" for n in range(20))])


async def test_a_retry_with_max_items_keeps_listed_the_pages_it_leaves(
    tmp_path: Path, serve: Serve
) -> None:
    broken = True

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/":
            links = "".join(f'<a href="/down/{n}">x</a>' for n in range(12))
            return web.Response(text=links, content_type="text/html")
        return web.Response(status=503 if broken else 200, text="ok", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    base = await serve(app)
    project = down_project(tmp_path, base, concurrency=4)
    assert (await run_fw("run", str(project))).returncode == 0
    failures = tmp_path / "out/shop.failures.jsonl"
    broken = False
    per_run = []
    while failures.exists() and len(per_run) < 10:  # pages fetched past the limit go back
        done = await run_fw("run", str(project), "--retry-failed", "-s", "max_items=5")
        assert done.returncode == 0, done.stderr
        per_run.append(len(read_jsonl(tmp_path / "out/items.jsonl")))
    items = [item["url"].removeprefix(base) for item in read_jsonl(tmp_path / "out/items.jsonl")]
    assert sorted(items) == sorted(["/", *(f"/down/{n}" for n in range(12))])
    assert per_run == [6, 11, 13]  # at most five more a run, and none lost


def test_a_request_listed_twice_is_retried_once(tmp_path: Path) -> None:
    # A retry run killed outright leaves its new line after the earlier one.
    path = tmp_path / "x.failures.jsonl"
    line = json.dumps({"kind": "http_503", "request": Request("http://a.test/p").to_dict()})
    path.write_text(f"{line}\n{line}\n")
    assert listed(path) == [Request("http://a.test/p")]


def test_a_torn_last_line_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An older fw on a full disk, or a crawl killed while writing: no line break, and
    # here a character cut in two as well.
    path = tmp_path / "x.failures.jsonl"
    whole = json.dumps({"kind": "http_503", "request": Request("http://a.test/p").to_dict()})
    torn = json.dumps(
        {"kind": "x", "request": Request("http://a.test/é").to_dict()}, ensure_ascii=False
    )
    cut = len(torn[: torn.index("é")].encode()) + 1  # one byte of the two
    path.write_bytes(f"{whole}\n".encode() + torn.encode()[:cut])
    assert listed(path) == [Request("http://a.test/p")]
    assert f"{path}:2: skipped its last line, torn" in caplog.text


def test_a_damaged_line_before_the_last_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.failures.jsonl"
    whole = json.dumps({"kind": "http_503", "request": Request("http://a.test/p").to_dict()})
    path.write_text(f"{whole}\n{{garbage\n{whole[:20]}")
    with pytest.raises(Exception, match=rf"{path}:2: not a failure record"):
        load_failures(path)


def test_a_line_break_inside_a_reason_does_not_split_its_line(tmp_path: Path) -> None:
    # json leaves U+2028 raw, and str.splitlines() breaks lines at it.
    path = tmp_path / "x.failures.jsonl"
    line = json.dumps(
        {"reason": "a\u2028b", "request": Request("http://a.test/p").to_dict()}, ensure_ascii=False
    )
    path.write_text(f"{line}\n", encoding="utf-8")
    assert listed(path) == [Request("http://a.test/p")]


async def test_a_retry_cuts_a_torn_last_line_off_before_listing_again(
    tmp_path: Path, serve: Serve
) -> None:
    site, project = await start(serve, tmp_path)
    assert (await run_fw("run", str(project))).returncode == 0
    failures = tmp_path / "out/shop.failures.jsonl"
    lines = failures.read_bytes()
    failures.write_bytes(lines + lines[: len(lines) // 3])  # a third line, torn
    site.hits.clear()
    again = await run_fw("run", str(project), "--retry-failed")  # still broken: listed again
    assert again.returncode == 1, again.stderr  # every request failed again: nothing fetched
    assert f"{failures}:3: skipped its last line" in again.stderr
    assert site.hits["/down"] == site.hits["/down2"] == 2  # retries: 1
    assert failures.read_bytes().endswith(b"\n")
    assert sorted(r.url.rsplit("/", 1)[1] for r in listed(failures)) == ["down", "down2"]


async def test_a_full_disk_under_the_failures_file_stops_the_crawl_listing_whole_lines(
    tmp_path: Path, serve: Serve
) -> None:
    pad = "z" * 2000  # a line of about 2.3 KB: a dozen fill the disk's free room
    missing = [f"/missing/{n}?pad={pad}" for n in range(50)]
    hits: Counter[str] = Counter()

    async def handle(request: web.Request) -> web.Response:
        hits[request.path_qs] += 1
        if request.path != "/":
            return web.Response(status=404)
        return web.Response(
            text="".join(f'<a href="{href}">x</a>' for href in missing), content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    base = await serve(app)
    (tmp_path / "links.py").write_text(SPIDER, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        name: shop
        spider: links
        start_urls: [{base}/]
        plugins: [./links.py]
        robots: ignore
        retries: 0
        frontier: sqlite:///state.db
        exporters: [{{path: disk/items.jsonl}}]
        """,
    )
    with small_disk(tmp_path / "disk", "160k") as disk:
        ballast = disk / "ballast"
        ballast.write_bytes(b"\0" * 128 * 1024)
        first = await run_fw("run", str(project), "-q")
        failures = disk / "shop.failures.jsonl"
        assert first.returncode == 1, first.stderr
        listed = read_jsonl(failures)  # whole lines only
        assert failures.read_bytes().endswith(b"\n") and 0 < len(listed) < 50
        errors = [line for line in first.stderr.splitlines() if line.startswith("Error:")]
        assert errors == [
            f"Error: failures file {failures}: No space left on device "
            f"({len(listed)} requests listed)"
        ]
        assert f"failures: {len(listed)} requests listed in {failures}" in first.stderr
        # Room again: the rerun fetches the requests the file could not list, and lists them.
        ballast.unlink()
        again = await run_fw("run", str(project), "-q")
        assert again.returncode == 1, again.stderr  # the rest are all missing: none fetched
        urls = [r["request"]["url"].removeprefix(base) for r in read_jsonl(failures)]
    assert sorted(urls) == sorted(missing)
    assert all(hits[href] >= 1 for href in missing)


@pytest.mark.parametrize("torn", [False, True], ids=["lacking_its_line_break", "torn"])
async def test_a_continued_list_appends_after_a_whole_last_line(tmp_path: Path, torn: bool) -> None:
    path = tmp_path / "x.failures.jsonl"
    first, second = (
        json.dumps({"kind": "http_503", "request": Request(url).to_dict()}).encode()
        for url in ("http://a.test/1", "http://a.test/2")
    )
    path.write_bytes(first + b"\n" + (second[:-5] if torn else second))
    listing = FailureLog(path)
    listing.start(keep=True)
    await listing.record(Request("http://a.test/3"), "http_404", "HTTP 404")
    listing.close()
    kept = ["1", "3"] if torn else ["1", "2", "3"]
    assert [r.url.rsplit("/", 1)[1] for r in listed(path)] == kept
    assert listing.count == len(kept) and path.read_bytes().endswith(b"\n")


async def test_two_workers_sharing_one_failures_file_lose_no_line(tmp_path: Path) -> None:
    # Two Redis workers exporting to one folder keep one list. Each drops the earlier lines
    # of what it settled, by content: the other may have rewritten the file meanwhile, and a
    # line written after that rewrite goes to the new file, not the replaced one.
    path = tmp_path / "x.failures.jsonl"
    lines = [
        json.dumps({"kind": "http_503", "request": Request(f"http://a.test/{n}").to_dict()})
        for n in "ABCD"
    ]
    path.write_text("".join(line + "\n" for line in lines))
    one, two = FailureLog(path), FailureLog(path)
    one.start(keep=True)
    two.start(keep=True)
    for listing, settled in ((one, "AC"), (two, "B")):
        for name in settled:
            listing.settled(Request(f"http://a.test/{name}"))
    await two.record(Request("http://a.test/E"), "http_503", "HTTP 503")
    await one.record(Request("http://a.test/F"), "http_503", "HTTP 503")
    one.close()
    await two.record(Request("http://a.test/G"), "http_503", "HTTP 503")  # into the rewritten file
    two.close()
    assert sorted(r.url.rsplit("/", 1)[1] for r in listed(path)) == ["D", "E", "F", "G"]
    assert not path.with_name(path.name + ".part").exists()


@pytest.mark.parametrize("thing", ["fifo", "folder"])
def test_a_fifo_or_a_folder_in_place_of_the_list_is_refused_at_once(
    tmp_path: Path, thing: str
) -> None:
    # A FIFO's open waited for a writer: no signal but SIGKILL ended the crawl. A folder
    # aborted the crawl at its first failure, and --retry-failed with an internal error.
    path = tmp_path / "x.failures.jsonl"
    if thing == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    code = (
        "import sys; from pathlib import Path; from framework.crawl.failures import FailureLog\n"
        "FailureLog(Path(sys.argv[1])).start(keep=sys.argv[2] == 'keep')"
    )
    # A new crawl starts the list over: a FIFO is removed then, a folder is not.
    for keep in ("keep", "start over") if thing == "folder" else ("keep",):
        done = subprocess.run(
            [sys.executable, "-c", code, str(path), keep],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert f"UsageError: failures file {path}: not a regular file" in done.stderr
    with pytest.raises(UsageError, match=f"--retry-failed: {path}: not a regular file"):
        load_failures(path)


def test_a_line_copied_by_hand_for_another_url_gets_an_entry_of_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # It kept the retry_of of the line it was copied from: one of the two was never fetched.
    path = tmp_path / "x.failures.jsonl"
    first = json.dumps({"kind": "http_503", "request": Request("http://a.test/1").to_dict()})
    ((_, once),) = load_failures(write(path, first))
    copy = json.loads(first) | {"retry_of": once}
    copy["request"]["url"] = "http://a.test/2"
    entries = load_failures(write(path, first, json.dumps(copy)))
    assert [e.request.url for e in entries] == ["http://a.test/1", "http://a.test/2"]
    assert len({e.once for e in entries}) == 2 and entries[0].once == once
    assert "the line of http://a.test/2 names the retry_of of another request's" in caplog.text


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


async def test_a_file_system_without_locks_still_gets_every_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(failures.fcntl, "flock", no_locks)
    path = tmp_path / "x.failures.jsonl"
    listing = FailureLog(path)
    listing.start()
    for n in range(3):
        await listing.record(Request(f"http://a.test/{n}"), "http_503", "HTTP 503")
    listing.close()
    assert [r.url for r in listed(path)] == [f"http://a.test/{n}" for n in range(3)]
    assert caplog.text.count("the failures file's file system has no locks") <= 1


async def listed_once(tmp_path: Path) -> tuple[Path, FailureLog]:
    """Start a failures file with one request listed in it: the file exists, to lock."""
    path = tmp_path / "x.failures.jsonl"
    listing = FailureLog(path)
    listing.start()
    await listing.record(Request("http://a.test/1"), "http_503", "HTTP 503")
    return path, listing


@contextmanager
def locked_by_another(path: Path) -> Iterator[None]:
    """Hold the file's lock as another worker would (another open file, another lock)."""
    with path.open("rb") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        yield


async def test_a_lock_held_too_long_stops_the_crawl_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another worker stopped (Ctrl-Z) while it held the lock: waiting on would hang this one.
    monkeypatch.setattr(failures, "_PATIENCE", 0.2)
    path, listing = await listed_once(tmp_path)
    with locked_by_another(path), pytest.raises(CrawlAborted) as stopped:
        await listing.record(Request("http://a.test/2"), "http_503", "HTTP 503")
    assert str(stopped.value) == (
        f"failures file {path}: another process has held its lock for 0.2s (1 request listed)"
    )
    listing.close()


async def test_the_crawl_goes_on_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    # The wait for the lock (up to 10 s) stopped every other request of the crawl with it.
    path, listing = await listed_once(tmp_path)
    ran = asyncio.Event()

    async def meanwhile() -> None:
        for _ in range(20):
            await asyncio.sleep(0.001)
        ran.set()

    with locked_by_another(path):
        recording = asyncio.create_task(
            listing.record(Request("http://a.test/2"), "http_503", "HTTP 503")
        )
        await asyncio.wait_for(asyncio.gather(meanwhile(), ran.wait()), 5)
        assert not recording.done()
    await asyncio.wait_for(recording, 5)  # the lock went with the other file
    listing.close()
    assert [r.url for r in listed(path)] == ["http://a.test/1", "http://a.test/2"]


async def test_a_stalled_loop_is_not_taken_for_a_lock_held_too_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A callback held the loop past the patience: the next try found another worker
    # writing its one line, and the crawl stopped, as if that worker were stuck.
    monkeypatch.setattr(failures, "_PATIENCE", 0.2)
    path, listing = await listed_once(tmp_path)
    with locked_by_another(path):
        recording = asyncio.create_task(
            listing.record(Request("http://a.test/2"), "http_503", "HTTP 503")
        )
        await asyncio.sleep(0)  # its first try: the lock is held
        time.sleep(0.3)  # the loop stalls, past the patience
        await asyncio.sleep(0.02)  # a few more tries, still held
        assert not recording.done()
    await asyncio.wait_for(recording, 5)
    listing.close()
    assert [r.url for r in listed(path)] == ["http://a.test/1", "http://a.test/2"]


async def test_a_record_cancelled_while_it_waited_is_written_when_it_fails_again(
    tmp_path: Path,
) -> None:
    path, listing = await listed_once(tmp_path)
    with locked_by_another(path):
        waiting = asyncio.create_task(
            listing.record(Request("http://a.test/2"), "http_503", "HTTP 503")
        )
        await asyncio.sleep(0)  # its first try found the lock held: it waits
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    await listing.record(Request("http://a.test/2"), "http_503", "HTTP 503")
    listing.close()
    assert [r.url for r in listed(path)] == ["http://a.test/1", "http://a.test/2"]


# ---------------------------------------------------------------------------------------------
# A retry killed part-way and run again
# ---------------------------------------------------------------------------------------------

DOWN = 40


class Outage:
    """``/`` links to ``/d/0`` … ``/d/39``, which answer 503 until the site is ``fixed``."""

    def __init__(self) -> None:
        self.fixed = False
        self.fetched: Counter[str] = Counter()
        self._changed = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/":
            links = "".join(f'<a href="/d/{n}">x</a>' for n in range(DOWN))
            return web.Response(text=links, content_type="text/html")
        if not self.fixed:
            return web.Response(status=503)
        await asyncio.sleep(0.01)  # so that a retry lasts long enough to kill it
        async with self._changed:
            self.fetched[request.path] += 1
            self._changed.notify_all()
        return web.Response(text="<p>back</p>", content_type="text/html")

    async def served(self, count: int) -> None:
        """Wait until the fixed site has served ``count`` pages in all."""
        async with asyncio.timeout(30), self._changed:
            await self._changed.wait_for(lambda: self.fetched.total() >= count)


#: A hook that fails the crawl's check if a retried request reaches it with its ONCE key.
WATCH = """
@hookimpl
def request_scheduled(request, spider):
    assert "fw.once" not in request.meta, request.meta
"""


@pytest.fixture(params=["sqlite", "redis"])
def frontier(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A persistent frontier's URL: a SQLite file, or a fresh redis-server's."""
    yield from persistent_frontier(
        request.param, tmp_path / "redis", "lease=2"
    )  # the killed run's leases expire soon


async def test_a_retry_killed_part_way_and_run_again_fetches_each_page_once_more(
    tmp_path: Path, serve: Serve, frontier: str
) -> None:
    # Its retried requests skip the dedup of the crawl that failed them; the rerun's
    # must not, or every page the killed retry had done is fetched and exported again.
    site = Outage()
    app = web.Application()
    app.router.add_get("/{tail:.*}", site.handle)
    base = await serve(app)
    (tmp_path / "links.py").write_text(SPIDER + WATCH, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: links
        start_urls: [{base}/]
        plugins: [./links.py]
        robots: ignore
        retries: 0
        delay: 0
        throttle: false  # else 40 answers of 503 slow the host down
        frontier: "{frontier}"
        concurrency: {{total: 2, per_domain: 2}}
        exporters: [{{path: out/items.jsonl}}, {{path: out/items.db}}]
        """,
    )
    first = await run_fw("run", str(project))
    assert first.returncode == 0, first.stderr
    failures = tmp_path / "out/project.failures.jsonl"
    assert f"failures: {DOWN} requests listed in {failures}" in first.stderr

    site.fixed = True
    pages = {f"/d/{n}" for n in range(DOWN)}
    retry = await start_fw("run", str(project), "--retry-failed")
    try:
        await site.served(DOWN // 2)
        retry.kill()
    finally:
        async with asyncio.timeout(30):
            assert await retry.wait() == -signal.SIGKILL
    assert retry.stderr is not None
    assert "plugin_error" not in (await retry.stderr.read()).decode()  # WATCH saw no ONCE
    # Stopped early, the rerun leaves listed what it has not settled, resumed or not.
    early = await run_fw("run", str(project), "--retry-failed", "-s", "max_pages=2")
    assert early.returncode == 0, early.stderr
    assert "were queued already (by a retry killed part-way" in early.stderr
    listed = {entry.request.url.removeprefix(base) for entry in load_failures(failures)}
    assert {page for page in pages if not site.fetched[page]} <= listed
    again = await run_fw("run", str(project), "--retry-failed")
    assert again.returncode == 0, again.stderr
    assert "plugin_error" not in again.stderr + early.stderr

    assert set(site.fetched) == pages
    # Only the pages in flight when it was killed are fetched twice.
    assert sum(site.fetched.values()) <= DOWN + 4, site.fetched
    assert not failures.exists()  # each page fetched
    # Each page counted once, as its retry ended: done, not failed as well.
    shown = await run_fw("status", str(project), "--json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert (status["state"], status["done"], status["failed"]) == ("finished", DOWN + 1, 0)
    if frontier.startswith("sqlite"):  # it keeps the exports' checkpoints: exactly once
        jsonl = Counter(item["url"] for item in read_jsonl(tmp_path / "out/items.jsonl"))
        with closing(sqlite3.connect(tmp_path / "out/items.db")) as db:
            table = Counter(row[0] for row in db.execute("SELECT url FROM items"))
        expected = Counter([f"{base}/", *(f"{base}{page}" for page in pages)])
        assert jsonl == table == expected


async def test_a_retry_killed_between_listing_a_failure_again_and_settling_it_queues_it_once(
    tmp_path: Path,
) -> None:
    # The new line names the entry it retries (retry_of), which the rerun finds still
    # queued: it is not queued a second time under the new line's own key.
    path, state = tmp_path / "x.failures.jsonl", tmp_path / "crawl.db"
    line = json.dumps({"kind": "http_503", "request": Request("http://a.test/p").to_dict()})
    path.write_text(line + "\n")
    ((request, once),) = load_failures(path)
    frontier = SqliteFrontier(state, Politeness(HostPolicy(1, 0.0), {}))
    await frontier.open()
    retried = request.replace(dont_filter=True, meta={ONCE: once})
    assert await frontier.add([retried]) == [retried]
    lease = await frontier.claim()
    assert isinstance(lease, Lease)
    listing = FailureLog(path, {fingerprint(request): once})
    listing.start(keep=True)
    await listing.record(lease.request, "http_503", "HTTP 503")  # failed again; then killed
    listing.close()  # nothing settled: the file is as the kill leaves it
    await frontier.close()

    again = SqliteFrontier(state, Politeness(HostPolicy(1, 0.0), {}))
    await again.open()
    ((request, latest),) = load_failures(path)
    assert latest == once  # the last line retries the first one's entry
    assert await again.add([request.replace(dont_filter=True, meta={ONCE: latest})]) == []
    assert again.counts().pending == 1  # the killed retry's, resumed: fetched once
    await again.close()


# ---------------------------------------------------------------------------------------------
# Credentials in a URL (http://user:password@host/) and a crawl's name
# ---------------------------------------------------------------------------------------------

BASIC = "Basic dXNlcjpwYTU1d29yZA=="  # user:pa55word


async def test_credentials_in_a_url_are_sent_but_never_written_for_people(
    tmp_path: Path, serve: Serve
) -> None:
    site, project = await start(serve, tmp_path)
    text = project.read_text(encoding="utf-8")
    project.write_text(text.replace("start_urls: [http://", "start_urls: [http://user:pa55word@"))
    outputs = ["--stats", "stats.json", "--log-level", "debug", "--log-file", "fw.log"]
    first = await run_fw("run", str(project), *outputs, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert ("/", BASIC) in site.seen  # sent where it must be
    failures = tmp_path / "out/shop.failures.jsonl"
    written = [
        first.stderr,
        *(p.read_text() for p in (tmp_path / "stats.json", tmp_path / "fw.log", failures)),
    ]
    assert not [text for text in written if "pa55word" in text or "user:" in text]
    assert "http://***@127.0.0.1:" in failures.read_text()

    site.broken, site.seen = False, []
    again = await run_fw("run", str(project), "--retry-failed", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (
        "2 requests had credentials in the URL (user:password@), which the file does not "
        "keep: retried without them"
    ) in again.stderr
    assert {("/down", None), ("/down2", None)} <= set(site.seen)  # retried, without them
    assert not failures.exists()  # each retried request settled its line


async def test_the_urls_that_redirected_to_a_failure_are_listed_without_passwords(
    tmp_path: Path, serve: Serve
) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/moved":
            raise web.HTTPFound(f"http://bob:s3cond@{request.host}/down")
        return web.Response(status=500)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    base = (await serve(app)).replace("http://", "http://ada:f1rst@")
    project = write_project(
        tmp_path,
        f"""
        name: moved
        spider: rules
        start_urls: [{base}/moved]
        robots: ignore
        retries: 0
        rules: {{items: [{{fields: {{h: h1::text}}}}]}}
        """,
    )
    done = await run_fw("run", str(project), "-o", "items.jsonl", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    [listed] = [line["request"] for line in read_jsonl(tmp_path / "moved.failures.jsonl")]
    assert listed["url"].startswith("http://***@127.0.0.1:")
    assert [url.split("@")[0] for url in listed["meta"]["redirect_urls"]] == ["http://***"]
    assert "f1rst" not in done.stderr and "s3cond" not in done.stderr


async def test_a_crawl_name_cannot_place_the_failures_file_outside_the_project(
    tmp_path: Path, serve: Serve
) -> None:
    (tmp_path / "deep/er").mkdir(parents=True)
    _, project = await start(serve, tmp_path / "deep/er")
    text = project.read_text(encoding="utf-8").replace("name: shop", "name: ../../x")
    project.write_text(text, encoding="utf-8")
    done = await run_fw("run", str(project))
    assert done.returncode == 2
    assert "name: '../../x' is not a crawl name" in done.stderr
    assert list(tmp_path.rglob("*.failures.jsonl")) == []


# ---------------------------------------------------------------------------------------------
# A planted symbolic link is never written through
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [False, True])
def test_a_symlink_in_place_of_the_failures_file_is_refused(tmp_path: Path, keep: bool) -> None:
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    (tmp_path / "shop.failures.jsonl").symlink_to(precious)
    listing = FailureLog(tmp_path / "shop.failures.jsonl")
    with pytest.raises(UsageError, match=r"failures.jsonl: a symbolic link; fw does not write"):
        listing.start(keep=keep)
    assert precious.read_text() == "keep me\n"


async def test_a_symlink_planted_during_the_crawl_is_not_followed(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    listing = FailureLog(tmp_path / "shop.failures.jsonl")
    listing.start()
    (tmp_path / "shop.failures.jsonl").symlink_to(precious)  # after fw checked
    with pytest.raises(CrawlAborted):
        await listing.record(Request("https://a.test/"), "http_503", "HTTP 503")
    assert precious.read_text() == "keep me\n"


async def test_a_retry_rewrites_the_list_anew_for_its_user_alone(tmp_path: Path) -> None:
    path, precious = tmp_path / "shop.failures.jsonl", tmp_path / "precious"
    precious.write_text("keep me\n")
    listing = FailureLog(path)
    listing.start()
    for url in ("https://a.test/1", "https://a.test/2"):
        await listing.record(Request(url), "http_503", "HTTP 503")
    listing.close()
    path.with_name(path.name + ".part").symlink_to(precious)  # where the new list is written
    retry = FailureLog(path)
    retry.start(keep=True)
    retry.settled(Request("https://a.test/1"))
    retry.close()
    assert [json.loads(line)["request"]["url"] for line in path.read_text().splitlines()] == [
        "https://a.test/2"
    ]
    assert precious.read_text() == "keep me\n" and path.stat().st_mode & 0o777 == 0o600


async def test_a_list_that_cannot_be_rewritten_stays_and_the_warning_names_what_was_in_the_way(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "shop.failures.jsonl"
    listing = FailureLog(path)
    listing.start()
    for url in ("https://a.test/1", "https://a.test/2"):
        await listing.record(Request(url), "http_503", "HTTP 503")
    listing.close()
    part = path.with_name(path.name + ".part")
    part.mkdir()  # where the new list is written
    retry = FailureLog(path)
    retry.start(keep=True)
    retry.settled(Request("https://a.test/1"))
    with caplog.at_level(logging.WARNING, logger="fw"):
        retry.close()
    assert len(path.read_text().splitlines()) == 2  # the old list: retried again, not lost
    assert f"cannot update the failures file {path}: {part}: Is a directory" in caplog.text


async def test_the_failures_file_is_for_its_user_alone(tmp_path: Path) -> None:
    listing = FailureLog(tmp_path / "shop.failures.jsonl")
    listing.start()
    await listing.record(
        Request("https://a.test/", headers={"Authorization": "x"}), "http_503", "503"
    )
    listing.close()
    assert (tmp_path / "shop.failures.jsonl").stat().st_mode & 0o777 == 0o600


RAISES_ON_DOWN = """
import os
from framework import Spider, hookimpl

class Links(Spider):
    name = "links"

    def parse(self, response):
        yield {"url": response.url}
        if response.url.endswith("/down") and not os.environ.get("FW_TEST_FIXED"):
            raise RuntimeError("the spider's bug")
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href)

@hookimpl
def register_spiders(register):
    register(Links)
"""


async def test_a_page_whose_callback_raised_counts_failed_until_its_retry_is_done(
    tmp_path: Path, serve: Serve, frontier: str
) -> None:
    site, project = await start(serve, tmp_path, RAISES_ON_DOWN)
    site.broken = False
    with project.open("a", encoding="utf-8") as file:
        file.write(f'frontier: "{frontier}"\n')

    async def counts() -> tuple[int, int]:
        shown = await run_fw("status", str(project), "--json")
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        return status["done"], status["failed"]

    first = await run_fw("run", str(project))
    assert first.returncode == 0, first.stderr
    assert "spider_error" in first.stderr
    assert await counts() == (4, 1)  # /, /a, /b, /down2 done; /down listed, and failed
    again = await run_fw("run", str(project), "--retry-failed", env={"FW_TEST_FIXED": "1"})
    assert again.returncode == 0, again.stderr
    assert site.hits["/down"] == 2 and site.hits["/c"] == 1
    assert await counts() == (6, 0)  # each page once: /down as its retry ended


async def test_a_retry_stopped_with_a_memory_frontier_lists_the_links_it_had_not_fetched(
    tmp_path: Path, serve: Serve
) -> None:
    # Nothing else remembers what the retried pages led to: the next retry must find it.
    site, project = await start(serve, tmp_path)
    assert (await run_fw("run", str(project), "-s", "concurrency.total=1")).returncode == 0
    failures = tmp_path / "out/shop.failures.jsonl"
    site.broken = False
    site.hits.clear()
    stopped = await run_fw(
        "run", str(project), "--retry-failed", "-s", "max_pages=1", "-s", "concurrency.total=1"
    )
    assert stopped.returncode == 0, stopped.stderr
    assert site.hits == {"/down": 1}  # its link /c is queued, /down2 not reached
    listed = {r["request"]["url"].rsplit("/", 1)[1]: r for r in read_jsonl(failures)}
    assert sorted(listed) == ["c", "down2"]
    assert (listed["c"]["kind"], listed["down2"]["kind"]) == ("not_fetched", "http_503")
    site.hits.clear()
    again = await run_fw("run", str(project), "--retry-failed")
    assert again.returncode == 0, again.stderr
    assert site.hits == {"/c": 1, "/down2": 1}
    assert not failures.exists()
    items = [item["url"].rsplit("/", 1)[1] for item in read_jsonl(tmp_path / "out/items.jsonl")]
    assert sorted(items) == sorted(["", "a", "b", "down", "down2", "c"])


async def test_requests_a_retry_left_behind_are_listed_each_dont_filter_one_too(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shop.failures.jsonl"
    listing = FailureLog(path)
    listing.start()
    await listing.record(Request("https://a.test/listed"), "http_503", "HTTP 503")
    listing.close()
    retry = FailureLog(path)
    retry.start(keep=True)
    left = [
        Request("https://a.test/listed", dont_filter=True),  # the listed one, not reached
        Request("https://a.test/1", callback="parse_b"),
        Request("https://a.test/1", callback="parse_c", dont_filter=True),
    ]
    for request in left:
        await retry.unfetched(request)
    retry.close()
    lines = read_jsonl(path)
    assert [(line["request"]["url"], line["kind"]) for line in lines] == [
        ("https://a.test/listed", "http_503"),
        ("https://a.test/1", "not_fetched"),
        ("https://a.test/1", "not_fetched"),
    ]
    assert [line["request"]["callback"] for line in lines[1:]] == ["parse_b", "parse_c"]
