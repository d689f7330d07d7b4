"""The bundled incremental plugin: rounds of a crawl against a loopback site that changes
between them, with SQLite and Redis frontiers, ``fw run --incremental`` as users run it,
a round killed and run again, and the Douban spider on its saved pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import shutil
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web

from framework.crawl.stats import Stats
from framework.frontier.redis.scripts import Scripts
from tests.conftest import Serve, crawl, fw_command, read_jsonl, run_fw, write_project
from tests.plugins.test_douban import DOUBAN, PROJECT, SUBJECT_PAGES, fixture, html
from tests.redis_server import RedisServer, persistent_frontier, redis_binary

#: When every page of the site was first modified.
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


class Site:
    """A loopback site whose pages change between rounds; it counts what it serves.

    ``/`` lists every leaf and ``/section``, which links to ``/section/leaf`` and never
    changes. ``/etag/<n>`` answers with an ETag (and 304 to a matching If-None-Match),
    ``/modified/<n>`` with Last-Modified (304 to an If-Modified-Since not older), and
    ``/plain/<n>`` with neither: only a hash of its body tells.
    """

    def __init__(self, leaves: int = 3, latency: float = 0.0) -> None:
        self.leaves = [
            f"/{kind}/{n}" for kind in ("etag", "modified", "plain") for n in range(leaves)
        ]
        self.latency = latency
        self.gate: asyncio.Event | None = None  # set: every request waits for it
        self.versions: Counter[str] = Counter()
        self.added: list[str] = []
        self.served: Counter[tuple[str, int]] = Counter()
        self.asked: Counter[str] = Counter()  # the conditional headers received, by name
        self._changed = asyncio.Condition()

    async def start(self, serve: Serve) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._page)
        return await serve(app)

    def change(self, *paths: str) -> None:
        self.versions.update(paths)

    def add(self, path: str) -> None:
        self.added.append(path)

    @property
    def pages(self) -> list[str]:
        return ["/", "/section", "/section/leaf", *self.leaves, *self.added]

    async def served_pages(self, count: int) -> None:
        """Wait until the site has answered ``count`` requests in all."""
        async with asyncio.timeout(30), self._changed:
            await self._changed.wait_for(lambda: self.served.total() >= count)

    async def _page(self, request: web.Request) -> web.Response:
        path = request.path
        if path not in self.pages:
            raise web.HTTPNotFound
        await asyncio.sleep(self.latency)
        if self.gate is not None:
            await self.gate.wait()
        response = self._answer(request, path)
        async with self._changed:
            self.served[path, response.status] += 1
            self._changed.notify_all()
        return response

    def _answer(self, request: web.Request, path: str) -> web.Response:
        version = self.versions[path]
        headers = {}
        if path.startswith("/etag/"):
            headers["ETag"] = f'"{path}-{version}"'
            if "If-None-Match" in request.headers:
                self.asked["If-None-Match"] += 1
                if request.headers["If-None-Match"] == headers["ETag"]:
                    return web.Response(status=304, headers=headers)
        if path.startswith("/modified/"):
            modified = EPOCH + timedelta(days=version)
            headers["Last-Modified"] = modified.strftime("%a, %d %b %Y %H:%M:%S GMT")
            since = request.if_modified_since
            if "If-Modified-Since" in request.headers:
                self.asked["If-Modified-Since"] += 1
                if since is not None and since >= modified:
                    return web.Response(status=304, headers=headers)
        links = {
            "/": ["/section", *self.leaves, *self.added],
            "/section": ["/section/leaf"],
        }.get(path, [])
        anchors = "".join(f'<a href="{link}">{link}</a>' for link in links)
        body = f"<html><h1>{path} v{version}</h1>{anchors}</html>"
        return web.Response(text=body, content_type="text/html", headers=headers)


def project(directory: Path, base: str, frontier: str = "sqlite:///state/crawl.db") -> Path:
    return write_project(
        directory,
        f"""
        spider: rules
        start_urls: [{base}/]
        robots: ignore
        frontier: "{frontier}"
        incremental: true
        rules:
          follow: [a]
          items: [{{fields: {{title: h1::text, page: {{value: url}}}}}}]
        """,
    )


async def round_of(path: Path, name: str, *overrides: str) -> tuple[Stats, list[str]]:
    """Run one round in this process; return its stats and the pages it exported."""
    out = path.parent / name
    stats = await crawl(path, *overrides, outputs=(str(out),))
    assert stats.reason == "finished", stats.summary()
    return stats, sorted(item["page"].split("/", 3)[3] for item in read_jsonl(out))


def figures(new: int, changed: int, unchanged: int) -> dict[str, int]:
    return {"new": new, "changed": changed, "unchanged": unchanged}


@pytest.fixture
async def site(serve: Serve) -> AsyncIterator[tuple[Site, str]]:
    state = Site()
    yield state, await state.start(serve)


@pytest.fixture(params=["sqlite", "redis"])
def frontier(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A persistent frontier's URL: a SQLite file, or a fresh redis-server's."""
    yield from persistent_frontier(request.param, tmp_path, "prefix=fw:rounds:")


#: An item step that finds the item of /plain/0 invalid while the file ``broken`` exists.
STRICT = """
from pathlib import Path
from framework import InvalidItem, ItemStep, hookimpl

class Strict(ItemStep):
    def process(self, item, context):
        if item["page"].endswith("/plain/0") and (Path(__file__).parent / "broken").exists():
            raise InvalidItem("no price", field="price")
        return item

@hookimpl
def item_step(project, spider):
    return Strict()
"""


async def test_a_page_whose_item_was_invalid_is_parsed_again_the_next_round(
    tmp_path: Path, site: tuple[Site, str]
) -> None:
    _, base = site
    path = project(tmp_path, base)
    (tmp_path / "strict.py").write_text(STRICT, encoding="utf-8")
    path.write_text(path.read_text() + "plugins: [./strict.py]\n")
    (tmp_path / "broken").touch()
    stats, pages = await round_of(path, "1.jsonl")
    assert stats.errors == {"item_invalid": 1} and "plain/0" not in pages
    (tmp_path / "broken").unlink()  # the spider (or the site) fixed
    stats, pages = await round_of(path, "2.jsonl")
    assert pages == ["plain/0"] and stats.errors == {}  # exported now; the rest unchanged


async def test_a_page_cut_short_by_max_requests_per_page_is_parsed_again_the_next_round(
    tmp_path: Path, site: tuple[Site, str]
) -> None:
    state, base = site
    path = project(tmp_path, base)
    every = len(state.pages)
    links = 1 + len(state.leaves)  # the listing's: /section and its leaves
    stats, first = await round_of(path, "1.jsonl", "max_requests_per_page=2")
    assert stats.filtered["too_many_on_page"] == links - 2
    assert first == ["", "etag/0", "section", "section/leaf"]  # the listing's first 2 links
    stats, pages = await round_of(path, "2.jsonl")  # the limit raised: the rest are found
    assert "" in pages and len(pages) == 1 + every - len(first)  # the listing parsed anew
    stats, _ = await round_of(path, "3.jsonl", "max_requests_per_page=2")
    assert stats.filtered["too_many_on_page"] == links - 2  # the listing unchanged: held too


async def test_each_round_exports_only_the_new_and_changed_pages(
    tmp_path: Path, site: tuple[Site, str], frontier: str
) -> None:
    state, base = site
    path = project(tmp_path, base, frontier)
    every = len(state.pages)
    stats, pages = await round_of(path, "1.jsonl")
    assert len(pages) == every and stats.plugins() == {"incremental": figures(every, 0, 0)}

    # One page of each kind changes, and a new page appears on the listing.
    state.change("/etag/1", "/modified/1", "/plain/1")
    state.add("/plain/new")
    state.served.clear()
    stats, pages = await round_of(path, "2.jsonl")
    assert pages == ["", "etag/1", "modified/1", "plain/1", "plain/new"]  # "" is the listing
    assert stats.plugins()["incremental"] == figures(1, 4, every - 4)
    assert stats.pages == every + 1 and stats.items == 5
    # The server was asked, and said so: a 304 for each unchanged page with a validator.
    assert state.asked == {"If-None-Match": 3, "If-Modified-Since": 3}
    assert state.served["/etag/0", 304] == state.served["/modified/2", 304] == 1
    assert state.served["/plain/0", 200] == 1  # no validator: fetched, and found the same

    # Nothing changes but a page under the unchanged /section: it is still found.
    state.change("/section/leaf")
    stats, pages = await round_of(path, "3.jsonl")
    assert pages == ["section/leaf"]
    assert stats.plugins()["incremental"] == figures(0, 1, every)
    assert f"incremental: 0 new, 1 changed, {every} unchanged" in stats.summary()

    stats, pages = await round_of(path, "4.jsonl")
    assert pages == [] and stats.plugins()["incremental"] == figures(0, 0, every + 1)


async def test_fw_run_incremental_renews_a_finished_crawl_and_says_what_changed(
    tmp_path: Path, site: tuple[Site, str]
) -> None:
    state, base = site
    path = project(tmp_path, base)
    path.write_text(path.read_text().replace("incremental: true\n", ""))  # the flag, only
    every = len(state.pages)
    first = await run_fw("run", str(path), "--incremental", "-o", str(tmp_path / "1.jsonl"))
    assert first.returncode == 0, first.stderr
    assert f"incremental: {every} new, 0 changed, 0 unchanged" in first.stderr

    state.change("/plain/2")
    stats = tmp_path / "stats.json"
    second = await run_fw(
        "run", str(path), "--incremental", "-o", str(tmp_path / "2.jsonl"), "--stats", str(stats)
    )
    assert second.returncode == 0, second.stderr
    assert "the saved crawl was finished: round 2 starts from the start requests" in second.stderr
    assert f"incremental: 0 new, 1 changed, {every - 1} unchanged" in second.stderr
    assert json.loads(stats.read_text())["plugins"]["incremental"] == figures(0, 1, every - 1)
    assert [item["page"] for item in read_jsonl(tmp_path / "2.jsonl")] == [f"{base}/plain/2"]

    # Without the flag (nor the key), a finished crawl stays finished.
    again = await run_fw("run", str(path), "-o", str(tmp_path / "3.jsonl"))
    assert again.returncode == 0 and "already finished" in again.stderr


async def test_two_redis_workers_renewing_at_once_share_one_round(
    tmp_path: Path, site: tuple[Site, str]
) -> None:
    if redis_binary() is None:
        pytest.skip("no redis-server to run")
    server = RedisServer(tmp_path)
    server.start()
    try:
        state, base = site
        path = project(tmp_path, base, f"{server.url}?prefix=fw:two:")
        first = await run_fw("run", str(path), "-o", str(tmp_path / "first.jsonl"))
        assert first.returncode == 0, first.stderr

        state.change("/plain/0")
        state.served.clear()
        state.gate = asyncio.Event()  # the round waits until both workers are in it
        runs = [
            asyncio.create_task(
                run_fw("run", str(path), "-o", str(tmp_path / f"{n}.jsonl"), "--incremental")
            )
            for n in range(2)
        ]
        with server.client() as client:
            async with asyncio.timeout(60):
                # Redis tells no one when a worker joins: poll its registry, where the
                # first run's worker stays, marked stopped. Counting that one opened the
                # gate before the second worker had started: the first then finished the
                # round alone and the second, finding it finished, began another.
                while live_workers(client, "fw:two:workers") < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        state.gate.set()
        done = await asyncio.gather(*runs)
    finally:
        server.stop()
    assert [run.returncode for run in done] == [0, 0], [run.stderr for run in done]
    exported = read_jsonl(tmp_path / "0.jsonl") + read_jsonl(tmp_path / "1.jsonl")
    assert [item["page"] for item in exported] == [f"{base}/plain/0"]
    assert set(state.served.values()) == {1} and state.served.total() == len(state.pages)
    counted: Counter[str] = Counter()
    for run in done:
        found = re.search(r"incremental: (\d+) new, (\d+) changed, (\d+) unchanged", run.stderr)
        if found is None:  # a worker that fetched nothing: a middleware's zeros are not shown
            assert "0 pages" in run.stderr, run.stderr
            continue
        counted.update(
            dict(zip(("new", "changed", "unchanged"), map(int, found.groups()), strict=True))
        )
    assert counted == figures(0, 1, len(state.pages) - 1)


def live_workers(client: redis.Redis, key: str) -> int:
    """How many workers the registry at ``key`` holds that have not stopped."""
    return sum(not value.endswith(b" stopped") for value in client.hvals(key))


async def test_without_a_persistent_frontier_it_is_refused_at_its_line(tmp_path: Path) -> None:
    path = project(tmp_path, "http://127.0.0.1:9", "memory")
    # --incremental stands for -s incremental.enabled=true, and is blamed by its own name.
    for command, where in ((["check"], f"{path}:5"), (["run", "--incremental"], "--incremental")):
        done = await run_fw(*command, str(path))
        assert done.returncode == 2
        assert done.stderr.startswith(
            f"Error: {where}: incremental: needs a persistent frontier, which remembers each "
            "page from one run to the next: set frontier: sqlite:///state/crawl.db"
        ), done.stderr


async def test_a_round_killed_again_and_again_exports_each_change_once(
    tmp_path: Path, serve: Serve
) -> None:
    state = Site(leaves=40, latency=0.003)
    path = project(tmp_path, await state.start(serve))
    out = ["-o", str(tmp_path / "round.jsonl")]
    first = await run_fw("run", str(path), *out)
    assert first.returncode == 0, first.stderr

    changed = [leaf for n, leaf in enumerate(state.leaves) if n % 3 == 0]
    state.change(*changed)
    for served in (20, 60):  # killed twice in the second round, then run to its end
        state.served.clear()
        process = await asyncio.create_subprocess_exec(
            *fw_command(), "run", str(path), *out, stderr=asyncio.subprocess.DEVNULL
        )
        await state.served_pages(served)
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
    done = await run_fw("run", str(path), *out)
    assert done.returncode == 0, done.stderr
    assert "continuing the saved crawl" in done.stderr
    exported = [item["page"].split("/", 3)[3] for item in read_jsonl(tmp_path / "round.jsonl")]
    assert sorted(exported) == sorted(leaf[1:] for leaf in changed)  # each once, none more

    # What the killed runs noted is whole: the next round finds nothing changed.
    last = await run_fw("run", str(path), "-o", str(tmp_path / "after.jsonl"))
    assert last.returncode == 0, last.stderr
    assert f"incremental: 0 new, 0 changed, {len(state.pages)} unchanged" in last.stderr
    assert read_jsonl(tmp_path / "after.jsonl") == []


# -------------------------------------------------------------------------------------------
# The daily Douban crawl: only the films new or changed since yesterday
# -------------------------------------------------------------------------------------------

LISTING = "later_chengdu_2019-12.html"
#: The film that is new today: yesterday's listing did not have it.
NEW_FILM = "34901106"


def without_film(listing: bytes, subject_id: str) -> bytes:
    """Cut one film's entry out of a coming-soon listing."""
    at = listing.index(f"/subject/{subject_id}/".encode())
    start = listing.rindex(b'<div class="item', 0, at)
    end = listing.index(b'<p><a href="https://movie.douban.com/coming">', at)
    return listing[:start] + listing[end:]


async def test_the_daily_douban_crawl_exports_only_new_and_changed_films(
    tmp_path: Path, serve: Serve
) -> None:
    today = fixture(LISTING)
    films = re.findall(rb'class="thumb" href="https://movie.douban.com/subject/(\d+)/"', today)
    ids = [film.decode() for film in films]
    changed = next(i for i in ids if int(i) % 4 == 0 and i != NEW_FILM)  # a 8.3-rated page
    listing, rating = without_film(today, NEW_FILM), b'property="v:average">8.3<'
    subjects: dict[str, bytes] = {}
    hits: Counter[str] = Counter()

    async def listing_page(request: web.Request) -> web.Response:
        hits[request.path] += 1
        return html(listing.replace(DOUBAN.encode(), base.encode()))

    async def subject_page(request: web.Request) -> web.Response:
        hits[request.path] += 1
        subject_id = request.match_info["id"]
        page = fixture(SUBJECT_PAGES[int(subject_id) % len(SUBJECT_PAGES)])
        return html(subjects.get(subject_id, page))

    app = web.Application()
    app.router.add_get("/cinema/later/beijing/", listing_page)
    app.router.add_get(r"/subject/{id:\d+}/", subject_page)
    base = await serve(app)
    readme = (PROJECT.parents[1] / "README.md").read_text(encoding="utf-8")
    (command,) = re.findall(r"`(fw run projects/douban\.yaml --incremental [^`]+)`", readme)
    shutil.copytree(PROJECT.parent, tmp_path / "projects")

    async def day(name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Run the README's command against the loopback Douban: the day's films, stats."""
        hits.clear()
        stats = tmp_path / f"{name}.json"
        done = await run_fw(
            *shlex.split(command)[1:],
            *("-s", f"start_urls=[{base}/cinema/later/beijing/]", "-s", "delay=0"),
            *("-s", "allowed_domains=[127.0.0.1]", "-s", "exporters=[]", "--stats", str(stats)),
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        return read_jsonl(tmp_path / "movies.jsonl"), json.loads(stats.read_text())

    items, stats = await day("yesterday")
    assert sorted(item["id"] for item in items) == sorted(set(ids) - {NEW_FILM})
    assert stats["plugins"]["incremental"] == figures(len(ids), 0, 0)  # the listing and its films

    # Overnight a film joins the listing, and another's rating changes on its page.
    listing = today
    assert rating in fixture(SUBJECT_PAGES[0])
    subjects[changed] = fixture(SUBJECT_PAGES[0]).replace(rating, b'property="v:average">8.4<')
    items, stats = await day("today")
    assert {item["id"]: item["rating"] for item in items} == {NEW_FILM: 8.7, changed: 8.4}
    # The listing changed (a film more), the rating page did, and the rest did not.
    assert stats["plugins"]["incremental"] == figures(1, 2, len(ids) - 2)
    assert hits[f"/subject/{NEW_FILM}/"] == 1 and set(hits.values()) == {1}

    items, stats = await day("tomorrow")
    assert items == [] and stats["plugins"]["incremental"] == figures(0, 0, len(ids) + 1)


async def test_another_project_cannot_renew_the_crawl_and_its_memory_is_kept(
    tmp_path: Path, site: tuple[Site, str], frontier: str
) -> None:
    state, base = site
    path = project(tmp_path, base, frontier)
    every = len(state.pages)
    await round_of(path, "1.jsonl")

    # A project of another name on the same state: its --incremental renews nothing.
    other = await run_fw("run", str(path), "--incremental", "-s", "name=intruder")
    assert other.returncode == 2, other.stderr
    assert "holds" in other.stderr and "the crawl of project 'project'" in other.stderr

    # The owner's next round still finds every page as it noted it.
    stats, pages = await round_of(path, "2.jsonl")
    assert pages == [] and stats.plugins()["incremental"] == figures(0, 0, every)


async def test_fresh_forgets_the_memory_that_a_new_round_keeps(
    tmp_path: Path, site: tuple[Site, str], frontier: str
) -> None:
    state, base = site
    path = project(tmp_path, base, frontier)
    every = len(state.pages)
    await round_of(path, "1.jsonl")
    stats, _ = await round_of(path, "2.jsonl")
    assert stats.plugins()["incremental"] == figures(0, 0, every)
    out = tmp_path / "3.jsonl"
    fresh = await run_fw(
        "run", str(path), "--fresh", "-o", str(out), "--stats", str(tmp_path / "s")
    )
    assert fresh.returncode == 0, fresh.stderr
    # Every page is new again: --fresh deleted the memory with the rest of the crawl.
    assert json.loads((tmp_path / "s").read_text())["plugins"]["incremental"] == figures(
        every, 0, 0
    )
    assert len(read_jsonl(out)) == every


class RawValidator:
    """A one-page site on a bare socket, for a validator of any bytes (aiohttp's server
    writes headers as UTF-8); it answers 304 to a condition naming those bytes exactly."""

    def __init__(self, header: bytes, value: bytes) -> None:
        self.header, self.value = header, value
        self.asked: list[bytes] = []  # the conditions each request brought, as sent

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        async with server:
            yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() in (b"if-none-match", b"if-modified-since"):
                self.asked.append(value.strip())
        body = b"<html><h1>home</h1></html>"
        status = b"304 Not Modified" if self.value in self.asked[-1:] else b"200 OK"
        head = b"HTTP/1.1 %s\r\nContent-Type: text/html\r\n%s: %s\r\n" % (
            status,
            self.header,
            self.value,
        )
        head += b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        writer.write(head + (body if status == b"200 OK" else b""))
        await writer.drain()
        writer.close()


@pytest.mark.parametrize(
    ("header", "value", "kept"),
    [
        (b"ETag", b'"\xffaa\xee"', False),  # not UTF-8: aiohttp cannot send it back
        (b"Last-Modified", b"Mon, 01 Jan 2024 00:00:00 \xff", False),
        (b"ETag", b'"a\x01b"', False),  # a control character: aiohttp refuses to send it
        (b"ETag", '"caf\u00e9"'.encode(), True),  # UTF-8 goes back byte for byte
    ],
)
async def test_a_validator_that_cannot_go_back_as_it_came_is_dropped(
    tmp_path: Path, header: bytes, value: bytes, kept: bool
) -> None:
    site = RawValidator(header, value)
    async with site.serve() as base:
        path = project(tmp_path, base)
        stats, pages = await round_of(path, "1.jsonl")
        assert pages == [""] and not stats.errors, stats.summary()
        stats, pages = await round_of(path, "2.jsonl")
        # Unchanged all the same: by the server's 304, or else by the body's hash.
        assert pages == [] and not stats.errors, stats.summary()
        assert stats.plugins()["incremental"] == figures(0, 0, 1)
        assert site.asked == ([value] if kept else [])


async def test_the_downloads_of_the_files_step_are_not_counted_as_pages(
    tmp_path: Path, serve: Serve
) -> None:
    async def page(request: web.Request) -> web.Response:
        if request.path == "/":
            return web.Response(text='<h1>a</h1><img src="/a.png">', content_type="text/html")
        return web.Response(body=b"\x89PNG not really", content_type="image/png")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    base = await serve(app)
    path = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{base}/]
        robots: ignore
        frontier: "sqlite:///state/crawl.db"
        incremental: true
        files: {{fields: [image], dir: files}}
        rules:
          items: [{{fields: {{title: h1::text, image: "img::attr(src)"}}}}]
        """,
    )
    stats = await crawl(path, outputs=(str(tmp_path / "items.jsonl"),))
    assert stats.reason == "finished" and stats.downloads == 1, stats.summary()
    assert stats.plugins()["incremental"] == figures(1, 0, 0)  # the page, not the image


async def test_a_new_round_left_half_started_is_taken_over_by_its_own_project_only(
    tmp_path: Path, site: tuple[Site, str]
) -> None:
    if redis_binary() is None:
        pytest.skip("no redis-server to run")
    server = RedisServer(tmp_path)
    server.start()
    try:
        state, base = site
        path = project(tmp_path, base, f"{server.url}?prefix=fw:half:")
        every = len(state.pages)
        await round_of(path, "1.jsonl")
        # A worker wiped the finished round for the next, then died before opening it.
        with server.client() as client:
            epoch = client.hget("fw:half:meta", "epoch")
        assert epoch is not None
        scripts = Scripts(server.url, "fw:half:")
        await scripts.open()
        await scripts.wipe("died", ("project", "rules", "", "30", "w"), renews=epoch.decode())
        await scripts.disconnect()
        with server.client() as client:
            client.hset("fw:half:meta", "beat", "0")  # long ago: its worker is gone
            assert client.exists("fw:half:memory")

        other = await run_fw("run", str(path), "--incremental", "-s", "name=intruder")
        assert other.returncode == 2, other.stderr
        assert "the crawl of project 'project'" in other.stderr

        stats, pages = await round_of(path, "2.jsonl")  # the owner takes the round over
    finally:
        server.stop()
    assert pages == [] and stats.plugins()["incremental"] == figures(0, 0, every)
