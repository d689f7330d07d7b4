"""Crash-safe crawls: SIGKILL a crawl with a SQLite frontier at any moment and run it again.

Each run is a real ``fw run`` process crawling a loopback site; the site counts what it
served, and the test kills the crawler once the site has served a chosen number of pages.
"""

from __future__ import annotations

import asyncio
import csv
import json
import signal
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from framework.crawl import runner
from framework.fetch.politeness import Politeness
from framework.frontier import Settlement
from framework.frontier.sqlite import SqliteFrontier
from framework.http import Request
from tests import conftest
from tests.conftest import Serve, crawl, fw_command, read_jsonl, run_fw, write_project
from tests.linked_site import LinkedSite, linked_project
from tests.redis_server import persistent_frontier

PAGES = 150
#: The site and the project file that crawls it.
SiteAndProject = tuple[LinkedSite, Path]
OUTPUTS = ("items.jsonl", "items.csv", "items.json", "items.db")


@pytest.fixture
async def site(serve: Serve, tmp_path: Path) -> AsyncIterator[SiteAndProject]:
    state = LinkedSite(PAGES, latency=0.002)
    base = await state.start(serve)
    yield state, linked_project(tmp_path, base, "sqlite:///state/crawl.db")


def outputs(directory: Path) -> list[str]:
    return [arg for name in OUTPUTS for arg in ("-o", str(directory / name))]


async def run_until_killed(
    project: Path, site: LinkedSite, served: int, sig: signal.Signals = signal.SIGKILL
) -> int:
    """Start ``fw run``, signal it once the site has served ``served`` pages; return its exit."""
    process = await asyncio.create_subprocess_exec(
        *fw_command(),
        "run",
        str(project),
        *outputs(project.parent),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await site.served(served)
        process.send_signal(sig)
    finally:
        async with asyncio.timeout(30):
            code = await process.wait()
    return code


def exported(directory: Path) -> dict[str, list[str]]:
    """Return the page URLs each export holds, in order; every record must be whole."""
    jsonl = [
        json.loads(line)["page"] for line in (directory / "items.jsonl").read_text().splitlines()
    ]
    with (directory / "items.csv").open(newline="", encoding="utf-8") as file:
        rows = [row["page"] for row in csv.DictReader(file)]
    array = [item["page"] for item in json.loads((directory / "items.json").read_text())]
    db = sqlite3.connect(directory / "items.db")
    table = [row[0] for row in db.execute("SELECT page FROM items ORDER BY _rowid")]
    db.close()
    return {"jsonl": jsonl, "csv": rows, "json": array, "sqlite": table}


@pytest.mark.parametrize("kills", [(1, 30, 70, 110), (10, 50, 90, 130, 145)])
async def test_a_crawl_killed_again_and_again_resumes_to_every_item_exactly_once(
    site: SiteAndProject, kills: tuple[int, ...]
) -> None:
    state, project = site
    for served in kills:  # from before the first ack to the last few pages
        assert await run_until_killed(project, state, served) == -signal.SIGKILL
    done = await run_fw("run", str(project), *outputs(project.parent))
    assert done.returncode == 0, done.stderr
    assert "continuing the saved crawl" in done.stderr

    every_page = {f"/p/{n}" for n in range(PAGES)}
    assert set(state.fetched) == every_page  # every page fetched, whatever was killed
    for name, pages in exported(project.parent).items():
        assert len(pages) == PAGES, f"{name}: {len(pages)} items for {PAGES} pages"
        assert {page.split("/", 3)[3] for page in pages} == {p[1:] for p in every_page}, name


async def test_ctrl_c_then_a_rerun_continues_where_it_stopped(site: SiteAndProject) -> None:
    state, project = site
    assert await run_until_killed(project, state, 40, signal.SIGINT) == 130
    done = await run_fw("run", str(project), *outputs(project.parent))
    assert done.returncode == 0, done.stderr
    assert all(len(pages) == PAGES for pages in exported(project.parent).values())
    # A clean stop lets the pages in flight finish and be acknowledged: none is fetched twice.
    assert set(state.fetched.values()) == {1} and len(state.fetched) == PAGES


async def test_an_export_left_out_of_a_resumed_run_is_named_both_ways(
    site: SiteAndProject,
) -> None:
    # Each export lacks the items of the run it missed: never silently.
    state, project = site
    folder = project.parent
    assert await run_until_killed(project, state, 40, signal.SIGINT) == 130
    fewer = [arg for name in OUTPUTS if name != "items.csv" for arg in ("-o", str(folder / name))]
    second = await run_fw("run", str(project), *fewer, "-s", "max_items=40")
    assert second.returncode == 0, second.stderr
    left = f"export csv:{folder / 'items.csv'}: written by the run this crawl resumes but not"
    assert left in second.stderr
    third = await run_fw("run", str(project), *outputs(folder))
    assert third.returncode == 0, third.stderr
    joined = f"export csv:{folder / 'items.csv'}: not written by the run this crawl resumes"
    assert joined in third.stderr
    counts = {name: len(pages) for name, pages in exported(folder).items()}
    assert counts["jsonl"] == counts["sqlite"] == PAGES > counts["csv"]


async def test_exports_moved_away_between_runs_are_named_and_start_again_valid(
    site: SiteAndProject,
) -> None:
    state, project = site
    folder, moved = project.parent, project.parent / "moved"
    assert await run_until_killed(project, state, 40, signal.SIGINT) == 130
    moved.mkdir()
    for name in OUTPUTS:
        (folder / name).rename(moved / name)
    done = await run_fw("run", str(project), *outputs(folder))
    assert done.returncode == 0, done.stderr
    for name in OUTPUTS:  # what was moved is not put back: said of each, never silently
        assert f"{folder / name} is shorter than when its last items were acknowledged" in (
            done.stderr
        )
    before, after = exported(moved), exported(folder)  # every file whole and valid
    for fmt, pages in after.items():
        assert sorted(before[fmt] + pages) == sorted(before["jsonl"] + after["jsonl"]), fmt
        assert len(set(before[fmt] + pages)) == len(before[fmt]) + len(pages) == PAGES, fmt


async def test_a_finished_crawl_says_so_and_fresh_starts_over(site: SiteAndProject) -> None:
    state, project = site
    first = await run_fw("run", str(project), *outputs(project.parent))
    assert first.returncode == 0, first.stderr

    before = {name: (project.parent / name).read_bytes() for name in OUTPUTS}
    again = await run_fw("run", str(project), *outputs(project.parent), "-o", "-")
    assert again.returncode == 0
    assert "already finished" in again.stderr and "--fresh" in again.stderr
    assert state.fetched.total() == PAGES  # nothing fetched a second time
    # Nothing to write: every export as it was, none made, nothing on stdout.
    assert {name: (project.parent / name).read_bytes() for name in OUTPUTS} == before
    assert again.stdout == ""
    (project.parent / "items.json").rename(project.parent / "moved.json")
    moved = await run_fw("run", str(project), *outputs(project.parent))
    assert moved.returncode == 0 and not (project.parent / "items.json").exists()
    assert "shorter than" not in moved.stderr and "cannot be rewound" not in moved.stderr
    (project.parent / "moved.json").rename(project.parent / "items.json")

    status = await run_fw("status", str(project))
    assert status.returncode == 0, status.stderr
    assert ": finished" in status.stdout and f"done {PAGES} " in status.stdout

    fresh = await run_fw("run", str(project), "--fresh", *outputs(project.parent))
    assert fresh.returncode == 0, fresh.stderr
    assert state.fetched.total() == 2 * PAGES
    assert all(len(pages) == PAGES for pages in exported(project.parent).values())


async def test_status_of_a_memory_crawl_is_a_usage_error(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [http://127.0.0.1:9/]
        """,
    )
    done = await run_fw("status", str(project))
    assert done.returncode == 2
    assert "frontier: memory keeps no state" in done.stderr


class LosesOneLease(SqliteFrontier):
    """A frontier whose lease on one URL expires while the page is handled."""

    def __init__(self, *args: Any, lost: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lost = lost

    async def settle(
        self, settlements: Sequence[Settlement], checkpoint: Mapping[str, Any] | None = None
    ) -> list[list[Request] | None]:
        # The worker that took the lost one over settles it; this one hears it is lost.
        found = await super().settle(settlements, checkpoint)
        return [
            None if settlement.lease.request.url.endswith(self.lost) else new
            for settlement, new in zip(settlements, found, strict=True)
        ]


async def test_a_lost_lease_cuts_its_pages_items_back_out_of_the_export(
    site: SiteAndProject,
) -> None:
    _, project = site
    out = project.parent / "items.jsonl"
    prepared = runner.prepare(project, (), (str(out),))
    frontier = LosesOneLease(
        project.parent / "state" / "crawl.db", Politeness.of(prepared.project), lost="/p/7"
    )
    engine = runner.build_engine(prepared, failures_file=False, frontier=frontier)
    stats = await engine.run()

    pages = [item["page"] for item in read_jsonl(out)]
    assert len(pages) == len(set(pages)) == PAGES - 1 == stats.items
    assert not any(page.endswith("/p/7") for page in pages)
    assert stats.errors["lease_lost"] == 1


TRIPLES = """
from framework import Spider, hookimpl

class Triples(Spider):
    name = "triples"

    def parse(self, response):
        for n in range(3):
            yield {"page": response.url.rsplit("/", 1)[1], "n": n}
        yield from response.follow_all(css="a")

@hookimpl
def register_spiders(register):
    register(Triples)
"""


async def triples_crawl(serve: Serve, tmp_path: Path, site: dict[str, str]) -> Path:
    """A resumable crawl of ``site`` from /0 that exports three items a page."""
    base = await serve(conftest.pages(site))
    (tmp_path / "triples.py").write_text(TRIPLES, encoding="utf-8")
    return write_project(
        tmp_path,
        f"""
        spider: triples
        plugins: [./triples.py]
        start_urls: [{base}/0]
        robots: ignore
        frontier: "sqlite:///state/crawl.db"
        concurrency: {{total: 4, per_domain: 4}}
        exporters: [{{path: items.jsonl}}]
        """,
    )


def triples(directory: Path) -> list[tuple[str, int]]:
    """The (page, n) of each exported item, sorted."""
    return sorted((item["page"], item["n"]) for item in read_jsonl(directory / "items.jsonl"))


async def test_max_items_leaves_a_page_it_would_cut_for_the_next_run_whole(
    serve: Serve, tmp_path: Path
) -> None:
    site = {f"/{n}": "".join(f'<a href="/{m}">{m}</a>' for m in range(10)) for n in range(10)}
    project = await triples_crawl(serve, tmp_path, site)
    per_run = []
    for _ in range(10):  # 30 items, at most 7 a run: 5 runs, whatever order pages come in
        stats = await crawl(project, "max_items=7")
        per_run.append(stats.items)
        if stats.reason == "finished":
            break
    assert triples(tmp_path) == [(str(p), n) for p in range(10) for n in range(3)]
    assert all(0 < count <= 6 for count in per_run[:-1]), per_run  # whole pages only


async def test_a_page_with_more_items_than_max_items_is_exported_whole_once(
    serve: Serve, tmp_path: Path
) -> None:
    site = {f"/{n}": f'<a href="/{n + 1}">next</a>' for n in range(3)}
    project = await triples_crawl(serve, tmp_path, site)
    per_run = [(await crawl(project, "max_items=2")).items for _ in range(3)]
    assert per_run == [3, 3, 3]  # a page over the limit alone: whole, or it never progresses
    assert triples(tmp_path) == [(str(p), n) for p in range(3) for n in range(3)]


ERRBACKS = """
from framework import Spider, hookimpl

class Errbacks(Spider):
    name = "errbacks"

    def parse(self, response):
        yield {"page": "0", "n": 0}
        for n in range(1, 5):
            yield response.follow(f"/gone{n}", errback="gone")

    def gone(self, got, error=None):
        for n in range(2):
            yield {"page": got.url.rsplit("/", 1)[1], "n": n}
        if error is None:  # a callback's failure, after its items
            raise ValueError("a spider bug")

@hookimpl
def register_spiders(register):
    register(Errbacks)
"""


@pytest.mark.parametrize("fails", ["the fetch", "the callback"])
async def test_a_failure_handed_back_by_max_items_is_counted_by_the_run_that_settles_it(
    serve: Serve, tmp_path: Path, fails: str
) -> None:
    found = {"/0": "start"}
    if fails == "the callback":  # each /goneN answers, and its callback raises after 2 items
        found |= {f"/gone{n}": "page" for n in range(1, 5)}
    base = await serve(conftest.pages(found))  # else every /goneN answers 404
    spider = ERRBACKS.replace("errback=", "callback=" if fails == "the callback" else "errback=")
    (tmp_path / "errbacks.py").write_text(spider, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: errbacks
        plugins: [./errbacks.py]
        start_urls: [{base}/0]
        robots: ignore
        frontier: "sqlite:///state/crawl.db"
        exporters: [{{path: items.jsonl}}]
        """,
    )
    failures = 0
    for _ in range(10):  # 9 items, at most 3 a run: an errback's 2 items go whole or wait
        stats = await crawl(project, "max_items=3")
        failures += stats.errors["http_404" if fails == "the fetch" else "spider_error"]
        if stats.reason == "finished":
            break
    assert triples(tmp_path) == [("0", 0), *((f"gone{p}", n) for p in range(1, 5) for n in (0, 1))]
    assert failures == 4  # each failure once, not again each time its page was handed back


#: A spider whose one page has thousands of items, and an export that stops for good in
#: the middle of them: the crawl is killed before it acknowledged any page.
MANY_ITEMS_THEN_STUCK = """
import asyncio
from framework import Exporter, Spider, hookimpl

class Many(Spider):
    name = "many"

    def parse(self, response):
        for n in range(3000):
            yield {"page": str(n), "text": "x" * 100}

class Stuck(Exporter):
    format = "stuck"
    extensions = (".stuck",)

    async def write(self, item):
        if item["page"] == "2500":  # past what the other exports keep in memory
            print("stuck", flush=True)
            await asyncio.Event().wait()

@hookimpl
def register_spiders(register):
    register(Many)

@hookimpl
def register_exporters(register):
    register(Stuck)
"""


async def test_a_crawl_killed_before_its_first_acknowledged_page_resumes_exactly(
    serve: Serve, tmp_path: Path
) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<p>one page</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    base = await serve(app)
    (tmp_path / "many.py").write_text(MANY_ITEMS_THEN_STUCK, encoding="utf-8")
    frontier = "sqlite:///state/crawl.db"
    project = write_project(
        tmp_path,
        f"spider: many\nstart_urls: [{base}/]\nplugins: [./many.py]\nfrontier: {frontier}\n",
    )
    exports = outputs(tmp_path)
    process = await asyncio.create_subprocess_exec(
        *fw_command(),
        "run",
        str(project),
        *exports,
        "-o",
        str(tmp_path / "x.stuck"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,  # where what a plugin prints goes
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(30):
            while (line := await process.stderr.readline()) != b"stuck\n":
                assert line, "fw ended before it was stuck"
        assert (tmp_path / "items.jsonl").stat().st_size > 0  # written, not acknowledged
    finally:
        process.kill()
        await process.wait()
    done = await run_fw("run", str(project), *exports)
    assert done.returncode == 0, done.stderr
    every = sorted(str(n) for n in range(3000))
    for name, pages in exported(tmp_path).items():
        assert sorted(pages) == every, f"{name}: {len(pages)} items for 3000"


LATE_COLUMN = """
import asyncio
from framework import Spider, hookimpl

class Late(Spider):
    name = "late"

    def parse(self, response):
        number = int(response.url.rsplit("/", 1)[1])
        # A column the CSV header lacks until the export closes.
        yield {"page": number, **({"late": number} if number % 5 == 3 else {})}
        yield from response.follow_all(css="a")

@hookimpl
def register_spiders(register):
    register(Late)

@hookimpl
async def crawl_finished(project, spider, stats):
    print("finishing", flush=True)
    await asyncio.Event().wait()  # killed here: every page settled, no export closed
"""


@pytest.fixture(params=["sqlite", "redis"])
def frontier(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A persistent frontier's URL: a SQLite file, or a fresh redis-server's."""
    yield from persistent_frontier(request.param, tmp_path / "redis", "lease=2")


async def test_a_crawl_killed_after_its_last_page_has_its_exports_closed_by_the_rerun(
    serve: Serve, tmp_path: Path, frontier: str
) -> None:
    """SQLite's state says which exports a run left open; Redis keeps no positions of a
    worker's files, so a mark beside each open export says it. The rerun of the finished
    crawl closes those, and touches no other file."""
    state = LinkedSite(30, latency=0.0)
    base = await state.start(serve)
    (tmp_path / "late.py").write_text(LATE_COLUMN, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"spider: late\nstart_urls: [{base}/p/0]\nrobots: ignore\nplugins: [./late.py]\n"
        f"frontier: '{frontier}'\n",
    )
    exports = ["-o", str(tmp_path / "items.json"), "-o", str(tmp_path / "items.csv")]
    extra = ["-o", str(tmp_path / "extra.json")]  # left out of the rerun: left as is
    process = await asyncio.create_subprocess_exec(
        *fw_command(), "run", str(project), *exports, *extra, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(30):
            while b"finishing" not in (line := await process.stderr.readline()):
                assert line, "fw ended before crawl_finished"
    finally:
        process.kill()
        await process.wait()
    with pytest.raises(json.JSONDecodeError):  # no "]" yet
        json.loads((tmp_path / "items.json").read_text())

    rerun = await run_fw("run", str(project), *exports)
    assert rerun.returncode == 0, rerun.stderr
    assert "already finished" in rerun.stderr
    if frontier.startswith("sqlite"):  # its state names what it was not given
        assert f"export {tmp_path / 'extra.json'}: left unfinished by the run" in rerun.stderr
    assert state.fetched.total() == 30  # nothing fetched again: only the exports closed
    array = json.loads((tmp_path / "items.json").read_text())
    assert sorted(item["page"] for item in array) == list(range(30))
    with (tmp_path / "items.csv").open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["page", "late"]  # the header completed, every row as wide
    assert sorted((int(r["page"]), r["late"]) for r in rows) == [
        (n, str(n) if n % 5 == 3 else "") for n in range(30)
    ]
    beside = {path.name for path in tmp_path.glob(".*")}
    assert not {".items.json.fw-open", ".items.csv.fw-open", ".items.csv.fw-header"} & beside
    again = {name: (tmp_path / name).read_bytes() for name in ("items.json", "items.csv")}
    report = tmp_path / "report.json"  # not this crawl's export: never touched
    report.write_text('{"report": 1}\n')
    assert (await run_fw("run", str(project), *exports, "-o", str(report))).returncode == 0
    assert {name: (tmp_path / name).read_bytes() for name in again} == again  # once only
    assert report.read_text() == '{"report": 1}\n'


async def test_a_resumed_run_that_cannot_open_an_export_keeps_the_positions_stored(
    site: SiteAndProject,
) -> None:
    state, project = site
    assert await run_until_killed(project, state, 60) == -signal.SIGKILL
    unopenable = project.parent / "missing-folder" / "file" / "x.jsonl"
    (project.parent / "missing-folder").write_text("a file where a folder should be")
    failed = await run_fw("run", str(project), *outputs(project.parent), "-o", str(unopenable))
    assert failed.returncode == 1, failed.stderr
    done = await run_fw("run", str(project), *outputs(project.parent))
    assert done.returncode == 0, done.stderr
    assert "not written by the run this crawl resumes" not in done.stderr
    for name, pages in exported(project.parent).items():  # cut back as stored: none twice
        assert len(pages) == PAGES == len(set(pages)), name
