"""The ``cache`` plugin: a re-run answered from disk, a recording that is a cache."""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from pathlib import Path

from aiohttp import web

from tests.conftest import Completed, Serve, read_jsonl, run_fw, write_project
from tests.disks import small_disk

PAGES = {
    "/": '<h1>Home</h1><a href="/a">a</a><a href="/b">b</a><a href="/busy">busy</a>',
    "/a": '<h1>A — é</h1><a href="/b">b</a>',
    "/b": "<h1>B</h1>",
}


class Site:
    """A loopback site that counts what it is asked and can change its pages."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.version = 1

    async def start(self, serve: Serve) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._page)
        return await serve(app)

    async def _page(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        if request.path == "/busy":  # "try later": never worth remembering
            return web.Response(status=503, text="busy")
        if request.path not in PAGES:
            return web.Response(status=404, text="no")
        etag = f'"{self.version}"'
        if request.headers.get("If-None-Match") == etag:  # what incremental re-crawls ask
            return web.Response(status=304, headers={"ETag": etag})
        html = PAGES[request.path].replace("</h1>", f" v{self.version}</h1>")
        return web.Response(
            text=f"<html>{html}</html>", content_type="text/html", headers={"ETag": etag}
        )

    def pages(self) -> list[str]:
        return [hit for hit in self.hits if hit != "/robots.txt"]


def project(directory: Path, base: str, extra: str = "") -> Path:
    return write_project(
        directory,
        f"""
        spider: rules
        start_urls: [{base}/]
        retries: 0
        rules:
          follow: [a]
          items: [{{fields: {{title: h1::text, url: {{value: url}}}}}}]
        {extra}
        """,
    )


async def fw_run(path: Path, out: Path, *args: str, timeout: float = 60) -> Completed:
    done = await run_fw("run", str(path), "-o", str(out), *args, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done


def titles(path: Path) -> list[str]:
    return sorted(item["title"] for item in read_jsonl(path))


async def test_a_warm_cache_answers_a_rerun_without_the_network(
    serve: Serve, tmp_path: Path
) -> None:
    site = Site()
    path = project(tmp_path, await site.start(serve))
    cache = tmp_path / "cache"
    cold = await fw_run(path, tmp_path / "cold.jsonl", "--cache", str(cache))
    assert sorted(site.pages()) == ["/", "/a", "/b", "/busy"]
    assert "cache: 0 hits, 5 misses, 0 expired, 4 stored" in cold.stderr  # robots.txt too

    site.hits.clear()
    warm = await fw_run(path, tmp_path / "warm.jsonl", "--cache", str(cache))
    assert site.hits == ["/busy"]  # a 503 is not remembered: asked again
    assert titles(tmp_path / "warm.jsonl") == titles(tmp_path / "cold.jsonl")
    assert titles(tmp_path / "warm.jsonl") == ["A — é v1", "B v1", "Home v1"]
    assert "cache: 4 hits, 1 misses" in warm.stderr


async def test_the_project_file_names_the_folder_relative_to_itself(
    serve: Serve, tmp_path: Path
) -> None:
    site = Site()
    (tmp_path / "proj").mkdir()
    path = project(tmp_path / "proj", await site.start(serve), "cache: {dir: .fw-cache}")
    await fw_run(path, tmp_path / "cold.jsonl")
    assert len(list((tmp_path / "proj" / ".fw-cache").glob("*.body"))) == 4
    site.hits.clear()
    await fw_run(path, tmp_path / "warm.jsonl")
    assert site.pages() == ["/busy"]
    site.hits.clear()
    await fw_run(path, tmp_path / "off.jsonl", "-s", "cache.dir=null")  # turned off
    assert sorted(site.pages()) == ["/", "/a", "/b", "/busy"]


async def test_an_expired_answer_is_fetched_again_and_stored(serve: Serve, tmp_path: Path) -> None:
    site = Site()
    path = project(tmp_path, await site.start(serve), "cache: {dir: cache, expire: 1h}")
    await fw_run(path, tmp_path / "cold.jsonl")
    two_hours_ago = time.time() - 7200
    for record in (tmp_path / "cache").glob("*.json"):
        if json.loads(record.read_text())["url"].endswith("/a"):
            os.utime(record, (two_hours_ago, two_hours_ago))
    site.hits.clear()
    site.version = 2
    expired = await fw_run(path, tmp_path / "expired.jsonl")
    assert sorted(site.pages()) == ["/a", "/busy"]
    assert titles(tmp_path / "expired.jsonl") == ["A — é v2", "B v1", "Home v1"]
    assert "1 expired" in expired.stderr
    site.hits.clear()
    await fw_run(path, tmp_path / "again.jsonl")  # the new answer was stored
    assert site.pages() == ["/busy"]
    assert titles(tmp_path / "again.jsonl") == ["A — é v2", "B v1", "Home v1"]


async def test_cache_refresh_fetches_everything_and_stores_the_new_answers(
    serve: Serve, tmp_path: Path
) -> None:
    site = Site()
    path = project(tmp_path, await site.start(serve))
    cache = str(tmp_path / "cache")
    await fw_run(path, tmp_path / "cold.jsonl", "--cache", cache)
    site.hits.clear()
    site.version = 2
    await fw_run(path, tmp_path / "fresh.jsonl", "--cache", cache, "--cache-refresh")
    assert sorted(site.pages()) == ["/", "/a", "/b", "/busy"]
    assert titles(tmp_path / "fresh.jsonl") == ["A — é v2", "B v2", "Home v2"]
    site.hits.clear()
    await fw_run(path, tmp_path / "warm.jsonl", "--cache", cache)
    assert site.pages() == ["/busy"]
    assert titles(tmp_path / "warm.jsonl") == ["A — é v2", "B v2", "Home v2"]


async def test_a_recording_is_a_cache_and_a_cache_replays_offline(
    serve: Serve, tmp_path: Path
) -> None:
    site = Site()
    path = project(tmp_path, await site.start(serve))
    recording = str(tmp_path / "rec")
    await fw_run(path, tmp_path / "live.jsonl", "--record", recording)
    site.hits.clear()
    await fw_run(path, tmp_path / "cached.jsonl", "--cache", recording)
    assert site.pages() == ["/busy"]  # a recorded 503 is no answer for a cache
    assert titles(tmp_path / "cached.jsonl") == titles(tmp_path / "live.jsonl")

    cache = str(tmp_path / "cache")
    await fw_run(path, tmp_path / "cold.jsonl", "--cache", cache)
    site.hits.clear()
    replay = await run_fw(
        "run", str(path), "--replay", cache, "-o", str(tmp_path / "replayed.jsonl")
    )
    assert site.hits == []
    assert titles(tmp_path / "replayed.jsonl") == titles(tmp_path / "cold.jsonl")
    assert "not_recorded 1" in replay.stderr  # the 503 was not kept: named, not lost


async def test_a_hit_waits_no_delay(serve: Serve, tmp_path: Path) -> None:
    site = Site()
    path = project(tmp_path, await site.start(serve))
    cache = str(tmp_path / "cache")
    await fw_run(path, tmp_path / "cold.jsonl", "--cache", cache)
    started = time.monotonic()
    # Three pages a host 30 s apart would take a minute; from the cache, no wait at all.
    await fw_run(
        path, tmp_path / "warm.jsonl", "--cache", cache, "-s", "delay=30", "-s", "retries=0"
    )
    assert time.monotonic() - started < 30
    assert titles(tmp_path / "warm.jsonl") == ["A — é v1", "B v1", "Home v1"]


async def test_a_damaged_entry_is_fetched_again(serve: Serve, tmp_path: Path) -> None:
    site = Site()
    path = project(tmp_path, await site.start(serve))
    cache = tmp_path / "cache"
    await fw_run(path, tmp_path / "cold.jsonl", "--cache", str(cache))
    for record in cache.glob("*.json"):
        if json.loads(record.read_text())["url"].endswith("/b"):
            record.write_text("{not json")
    site.hits.clear()
    warm = await fw_run(path, tmp_path / "warm.jsonl", "--cache", str(cache))
    assert sorted(site.pages()) == ["/b", "/busy"]
    assert titles(tmp_path / "warm.jsonl") == ["A — é v1", "B v1", "Home v1"]
    assert "1 bad" in warm.stderr


async def test_max_size_removes_the_oldest_answers(serve: Serve, tmp_path: Path) -> None:
    site = Site()
    path = project(tmp_path, await site.start(serve), "cache: {dir: cache, max_size: 600}")
    cold = await fw_run(path, tmp_path / "cold.jsonl")
    held = sum(f.stat().st_size for f in (tmp_path / "cache").iterdir())
    assert 0 < held <= 600
    assert "evicted" in cold.stderr


async def test_an_answer_that_will_not_go_is_told_once_and_loses_no_page(
    serve: Serve, tmp_path: Path
) -> None:
    site = Site()
    path = project(tmp_path, await site.start(serve), "cache: {dir: cache, max_size: 600}")
    stuck = tmp_path / "cache" / "0000000000000000.json"  # the oldest, and no file
    stuck.mkdir(parents=True)
    body = stuck.with_suffix(".body")
    body.write_bytes(b"x")
    for old in (stuck, body):
        os.utime(old, (1, 1))
    done = await fw_run(path, tmp_path / "items.jsonl")
    assert titles(tmp_path / "items.jsonl") == ["A — é v1", "B v1", "Home v1"]
    assert "plugin_error" not in done.stderr and "unprunable" in done.stderr, done.stderr
    assert done.stderr.count("cannot remove old answers") == 1, done.stderr
    assert f"{stuck}: Is a directory" in done.stderr


async def test_a_cache_with_record_or_replay_is_a_usage_error(tmp_path: Path) -> None:
    path = project(tmp_path, "http://127.0.0.1:9")
    for other in ("--record", "--replay"):
        done = await run_fw("run", str(path), "--cache", str(tmp_path / "c"), other, "x")
        assert done.returncode == 2
        assert f"{other} and a cache (--cache: " in done.stderr


async def test_bad_options_name_their_key(tmp_path: Path) -> None:
    for section, key, words in [
        ("{dir: c, expire: soon}", "cache.expire", "is not a duration"),
        ("{dir: c, max_size: lots}", "cache.max_size", "is not a size"),
        ("{refresh: true}", "cache", "needs a cache folder"),
    ]:
        path = project(tmp_path, "http://127.0.0.1:9", f"cache: {section}")
        done = await run_fw("run", str(path))
        assert done.returncode == 2, done.stderr
        assert "project.yaml:" in done.stderr and key in done.stderr and words in done.stderr


async def test_a_folder_that_cannot_be_made_stops_the_crawl_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    path = project(tmp_path, "http://127.0.0.1:9")
    done = await run_fw("run", str(path), "--cache", str(tmp_path / "file" / "cache"))
    assert done.returncode == 1
    assert "middleware 'cache' failed to open" in done.stderr
    assert str(tmp_path / "file" / "cache") in done.stderr


async def test_the_commands_of_docs_cache_md_run_as_written(serve: Serve, tmp_path: Path) -> None:
    page = (Path(__file__).parents[2] / "docs" / "cache.md").read_text(encoding="utf-8")
    commands = re.findall(r"```sh\n(.*?)```", page, re.DOTALL)[0].splitlines()
    site = Site()
    project(tmp_path, await site.start(serve))
    asked = []
    for line in commands:
        args = shlex.split(line, comments=True)
        assert args[0] == "fw", line
        site.hits.clear()
        done = await run_fw(*args[1:], cwd=tmp_path)
        assert done.returncode == 0, f"{line}: {done.stderr}"
        assert titles(tmp_path / "items.jsonl") == ["A — é v1", "B v1", "Home v1"]
        asked.append(sorted(site.pages()))
    everything = ["/", "/a", "/b", "/busy"]
    assert asked == [everything, ["/busy"], everything, []]


async def test_a_full_disk_loses_no_page_and_warns_once(serve: Serve, tmp_path: Path) -> None:
    big = {f"/{n}": "<h1>" + "x" * 6000 + f"{n}</h1>" for n in range(12)}

    async def page(request: web.Request) -> web.Response:
        links = "".join(f'<a href="{p}">.</a>' for p in big)
        html = big.get(request.path, f"<h1>Home</h1>{links}")
        return web.Response(text=f"<html>{html}</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    path = project(tmp_path, await serve(app))
    with small_disk(tmp_path / "disk", "32k") as disk:  # room for a few answers only
        done = await fw_run(path, tmp_path / "items.jsonl", "--cache", str(disk / "cache"))
        assert len(read_jsonl(tmp_path / "items.jsonl")) == 13  # every page, none lost
        assert done.stderr.count("cannot store answers: No space left on device") == 1
        assert "unwritable" in done.stderr
        assert not [f for f in (disk / "cache").iterdir() if f.name.endswith(".part")]


FRESH_SPIDER = """
from framework import Request, Spider, hookimpl

class Fresh(Spider):
    name = "fresh"

    def start_requests(self):
        yield Request(self.start_urls[0] + "a")
        yield Request(self.start_urls[0] + "b", meta={"dont_cache": True})

    def parse(self, response):
        yield {"title": response.css("h1::text").get()}

@hookimpl
def register_spiders(register):
    register(Fresh)
"""


async def test_a_request_marked_dont_cache_is_neither_answered_nor_stored(
    serve: Serve, tmp_path: Path
) -> None:
    site = Site()
    base = await site.start(serve)
    (tmp_path / "fresh.py").write_text(FRESH_SPIDER, encoding="utf-8")
    path = write_project(tmp_path, f"spider: fresh\nstart_urls: [{base}/]\nplugins: [./fresh.py]\n")
    cache = str(tmp_path / "cache")
    await fw_run(path, tmp_path / "cold.jsonl", "--cache", cache)
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2  # robots.txt and /a
    site.hits.clear()
    site.version = 2
    await fw_run(path, tmp_path / "warm.jsonl", "--cache", cache)
    assert site.pages() == ["/b"]
    assert titles(tmp_path / "warm.jsonl") == ["A — é v1", "B v2"]


async def test_an_answer_to_a_conditional_request_is_not_stored_for_plain_ones(
    serve: Serve, tmp_path: Path
) -> None:
    site = Site()
    path = project(tmp_path, await site.start(serve), "frontier: sqlite:///state.db")
    cache = str(tmp_path / "cache")
    await fw_run(path, tmp_path / "1.jsonl", "--cache", cache, "--incremental")
    # The re-crawl asks "changed since?" of the site, which answers 304: not a page.
    again = await fw_run(
        path, tmp_path / "2.jsonl", "--cache", cache, "--cache-refresh", "--incremental"
    )
    assert site.pages().count("/a") == 2 and "3 unchanged" in again.stderr
    site.hits.clear()
    fresh = await fw_run(path, tmp_path / "3.jsonl", "--cache", cache, "--fresh")
    assert site.pages() == ["/busy"]  # the rest from the cache: the pages, not the 304s
    assert titles(tmp_path / "3.jsonl") == ["A — é v1", "B v1", "Home v1"]
    assert "http_304" not in fresh.stderr
