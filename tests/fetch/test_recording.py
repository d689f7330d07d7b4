"""fw run --record DIR saves every response; fw run --replay DIR crawls from them alone."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from tests.conftest import Serve, read_jsonl, run_fw, write_project

PAGES = {
    "/": '<h1>Home</h1><a href="/a">a</a><a href="/b">b</a><a href="/gone">gone</a>',
    "/a": '<h1>A — é</h1><a href="/b">b</a>',
    "/b": "<h1>B</h1>",
}


async def site(serve: Serve, hits: list[str]) -> str:
    async def page(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path not in PAGES:
            return web.Response(status=404, text="no")
        return web.Response(text=f"<html>{PAGES[request.path]}</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    return await serve(app)


def project(directory: Path, base: str) -> Path:
    return write_project(
        directory,
        f"""
        spider: rules
        start_urls: [{base}/]
        retries: 0
        rules:
          follow: [a]
          items: [{{fields: {{title: h1::text, url: {{value: url}}}}}}]
        """,
    )


async def test_a_recorded_crawl_replays_to_identical_items_without_the_network(
    serve: Serve, tmp_path: Path
) -> None:
    hits: list[str] = []
    path = project(tmp_path, await site(serve, hits))
    recorded = await run_fw(
        "run", str(path), "--record", str(tmp_path / "rec"), "-o", str(tmp_path / "live.jsonl")
    )
    assert recorded.returncode == 0, recorded.stderr
    fetched = len(hits)
    assert fetched == 5  # robots.txt, three pages, one 404

    replayed = await run_fw(
        "run", str(path), "--replay", str(tmp_path / "rec"), "-o", str(tmp_path / "replayed.jsonl")
    )
    assert replayed.returncode == 0, replayed.stderr
    assert len(hits) == fetched  # the site saw nothing
    live, again = read_jsonl(tmp_path / "live.jsonl"), read_jsonl(tmp_path / "replayed.jsonl")
    assert again == live and len(live) == 3
    assert "http_404 1" in replayed.stderr  # failures replay as they happened


async def test_a_request_missing_from_the_recording_is_a_clear_failure(
    serve: Serve, tmp_path: Path
) -> None:
    hits: list[str] = []
    base = await site(serve, hits)
    path = project(tmp_path, base)
    assert (await run_fw("run", str(path), "--record", str(tmp_path / "rec"))).returncode == 0
    fetched = len(hits)
    other = await run_fw(
        "run",
        str(path),
        "--replay",
        str(tmp_path / "rec"),
        "-s",
        f"start_urls=[{base}/b, {base}/never]",
    )
    assert other.returncode == 0, other.stderr
    assert f"GET {base}/never is not in the recording" in other.stderr
    assert "not_recorded 1" in other.stderr
    assert len(hits) == fetched


async def test_record_and_replay_exclude_each_other(tmp_path: Path) -> None:
    path = project(tmp_path, "http://127.0.0.1:9")
    both = await run_fw("run", str(path), "--record", "a", "--replay", "b")
    assert both.returncode == 2
    assert "--record and --replay exclude each other" in both.stderr


async def test_replaying_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    path = project(tmp_path, "http://127.0.0.1:9")
    missing = await run_fw("run", str(path), "--replay", str(tmp_path / "nothing"))
    assert missing.returncode == 2
    assert "no such folder" in missing.stderr
