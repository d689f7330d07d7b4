"""fw run --record DIR saves every response; fw run --replay DIR crawls from them alone."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from framework import SECRET_QUERY
from framework.config.project import MiB
from framework.crawl import runner
from framework.fetch.recording import Recording
from framework.http import Request, Response
from framework.http.urls import fingerprint
from tests.conftest import Completed, Serve, fw_command, read_jsonl, run_fw, write_project
from tests.disks import small_disk

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
    # Pages are fetched concurrently, so items come in no fixed order, live or replayed.
    assert sorted(again, key=str) == sorted(live, key=str) and len(live) == 3
    assert "http_404 1" in replayed.stderr  # failures replay as they happened


async def test_a_recording_keeps_no_password_of_a_url_and_still_replays(
    serve: Serve, tmp_path: Path
) -> None:
    hits: list[str] = []
    base = (await site(serve, hits)).replace("http://", "http://user:pa55word@")
    path = project(tmp_path, base)
    recorded = await run_fw("run", str(path), "--record", str(tmp_path / "rec"))
    assert recorded.returncode == 0, recorded.stderr
    records = [p.read_text() for p in (tmp_path / "rec").glob("*.json")]
    assert len(records) == 5 and not [r for r in records if "pa55word" in r]
    replayed = await run_fw("run", str(path), "--replay", str(tmp_path / "rec"))
    assert replayed.returncode == 0, replayed.stderr
    assert "3 items" in replayed.stderr and len(hits) == 5


async def test_a_recording_keeps_no_password_of_a_url_in_a_query_and_still_replays(
    serve: Serve, tmp_path: Path
) -> None:
    hits: list[str] = []
    base = await site(serve, hits)
    start = f"{base}/b?to=ftp://ada:Nested5ecret@127.0.0.1/x"  # a redirector's query
    path = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: ['{start}']
        rules: {{items: [{{fields: {{title: h1::text}}}}]}}
        """,
    )
    recorded = await run_fw("run", str(path), "--record", str(tmp_path / "rec"))
    assert recorded.returncode == 0, recorded.stderr
    records = [p.read_text() for p in (tmp_path / "rec").glob("*.json")]
    assert len(records) == 2 and not [r for r in records if "Nested5ecret" in r]
    replayed = await run_fw("run", str(path), "--replay", str(tmp_path / "rec"), "-o", "-")
    assert replayed.returncode == 0, replayed.stderr
    assert [json.loads(line) for line in replayed.stdout.splitlines()] == [{"title": "B"}]
    assert len(hits) == 2


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


async def test_replaying_or_recording_into_what_is_no_folder_is_a_usage_error(
    tmp_path: Path,
) -> None:
    path = project(tmp_path, "http://127.0.0.1:9")
    missing = await run_fw("run", str(path), "--replay", str(tmp_path / "nothing"))
    assert missing.returncode == 2
    assert "no such folder" in missing.stderr
    (tmp_path / "afile").write_text("")
    for option in ("--replay", "--record"):  # mkdir said "File exists"
        a_file = await run_fw("run", str(path), option, str(tmp_path / "afile"))
        assert a_file.returncode == 2
        assert (
            one_error_line(a_file.stderr) == f"Error: {option} {tmp_path / 'afile'}: not a folder"
        )


# A recording is trusted no more than a server: the tests below replay hostile ones.

# These replays run with their heap capped: one that reads what it must not (an endless
# device) dies of MemoryError rather than eating the machine, and "it stays small" is checked.
HEAP = 1024 * MiB
_CAPPED = (
    "import os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_DATA, (int(sys.argv[1]),) * 2); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def entry(folder: Path, url: str, suffix: str) -> Path:
    """Return the file holding the recorded ``json`` record or ``body`` of a GET of ``url``."""
    return folder / f"{fingerprint(Request(url)):016x}.{suffix}"


async def recorded(serve: Serve, tmp_path: Path, *, fw: bool = True) -> tuple[Path, str]:
    """Record a crawl under ``tmp_path/rec``; return its project and the site's base URL.

    The crawl also starts at a port that refuses connections, so the recording holds a
    failure as well as pages. ``fw=False`` records in this process, which is faster.
    """
    base = await site(serve, [])
    with socket.socket() as refusing:  # bound but not listening: connections are refused
        refusing.bind(("127.0.0.1", 0))
        path = project(tmp_path, base)
        path.write_text(
            path.read_text().replace(
                f"[{base}/]", f"[{base}/, http://127.0.0.1:{refusing.getsockname()[1]}/]"
            )
        )
        if fw:
            done = await run_fw("run", str(path), "--record", str(tmp_path / "rec"))
            assert done.returncode == 0, done.stderr
        else:
            prepared = runner.prepare(path, record=tmp_path / "rec")
            await runner.build_engine(prepared, failures_file=False).run()
    return path, base


async def replay(path: Path, *options: str) -> Completed:
    """Replay ``rec`` beside the project with ``fw run``, its heap capped; export to out.jsonl.

    A replay still running after 30 seconds is killed and fails the test.
    """
    folder = path.parent
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CAPPED,
        str(HEAP),
        *fw_command(),
        *("run", str(path), "--replay", str(folder / "rec"), "-o", str(folder / "out.jsonl")),
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(), err.decode())


def assert_failed_alone(replayed: Completed, folder: Path, url: str, failure: str) -> None:
    """Check ``url`` failed as ``failure`` (``kind: message``): logged, counted and listed.

    The rest replays as recorded: the other pages, the 404 and the refused connection.
    """
    assert replayed.returncode == 0, replayed.stderr
    assert failure in replayed.stderr
    assert "Traceback" not in replayed.stderr and "internal_error" not in replayed.stderr
    kind = failure.partition(":")[0]
    summary = next(line for line in replayed.stderr.splitlines() if line.startswith("project: "))
    counts = summary.partition(" errors (")[2].removesuffix(")").split(", ")
    assert sorted(counts) == sorted(["connection 1", "http_404 1", f"{kind} 1"])
    failures = read_jsonl(folder / "project.failures.jsonl")
    assert {r["request"]["url"]: r["kind"] for r in failures}.get(url) == kind
    assert len(read_jsonl(folder / "out.jsonl")) == 2  # the pages / and /b


async def test_a_body_linked_out_of_the_folder_is_a_bad_recording_and_never_exported(
    serve: Serve, tmp_path: Path
) -> None:
    path, base = await recorded(serve, tmp_path)
    secret = tmp_path / "secret.html"
    secret.write_text("<html><h1>secret</h1></html>")
    body = entry(tmp_path / "rec", f"{base}/a", "body")
    body.unlink()
    body.symlink_to(secret)
    replayed = await replay(path)
    assert_failed_alone(replayed, tmp_path, f"{base}/a", f"bad_recording: {body}: a symbolic link")
    assert "secret" not in (tmp_path / "out.jsonl").read_text()


async def test_a_body_linked_to_an_endless_device_fails_without_growing(
    serve: Serve, tmp_path: Path
) -> None:
    path, base = await recorded(serve, tmp_path)
    body = entry(tmp_path / "rec", f"{base}/a", "body")
    body.unlink()
    body.symlink_to("/dev/zero")
    replayed = await replay(path)  # reading /dev/zero would be a MemoryError past HEAP
    assert_failed_alone(replayed, tmp_path, f"{base}/a", f"bad_recording: {body}: a symbolic link")


@pytest.mark.parametrize("suffix", ["json", "body"])
async def test_a_fifo_in_the_folder_fails_its_request_without_hanging(
    serve: Serve, tmp_path: Path, suffix: str
) -> None:
    path, base = await recorded(serve, tmp_path)
    fifo = entry(tmp_path / "rec", f"{base}/a", suffix)
    fifo.unlink()
    os.mkfifo(fifo)  # opening it to read would wait for a writer that never comes
    replayed = await replay(path)  # killed, failing the test, if it hangs
    assert_failed_alone(
        replayed, tmp_path, f"{base}/a", f"bad_recording: {fifo}: not a regular file (a FIFO)"
    )


async def test_a_malformed_record_is_a_located_failure_not_a_traceback(
    serve: Serve, tmp_path: Path
) -> None:
    path, base = await recorded(serve, tmp_path)
    record = entry(tmp_path / "rec", f"{base}/a", "json")
    record.write_text('{"method": "GET", "url": ')
    replayed = await replay(path)
    assert_failed_alone(replayed, tmp_path, f"{base}/a", f"bad_recording: {record}: not JSON")


async def test_a_body_over_max_response_size_is_too_large(serve: Serve, tmp_path: Path) -> None:
    path, base = await recorded(serve, tmp_path)
    body = entry(tmp_path / "rec", f"{base}/a", "body")
    body.write_bytes(b"<html><h1>big</h1>" + b" " * 5000 + b"</html>")
    replayed = await replay(path, "-s", "max_response_size=4096")
    assert_failed_alone(
        replayed,
        tmp_path,
        f"{base}/a",
        f"too_large: {body}: body larger than max_response_size (4096 bytes)",
    )


Change = Callable[[Path, Path], None]
_DELETE = object()


def written(text: bytes) -> Change:
    """Replace the record with ``text``."""
    return lambda record, body: record.write_bytes(text)


def edited(**fields: object) -> Change:
    """Change fields of the record (``_DELETE`` removes one)."""

    def edit(record: Path, body: Path) -> None:
        changed = {**json.loads(record.read_text()), **fields}
        record.write_text(json.dumps({k: v for k, v in changed.items() if v is not _DELETE}))

    return edit


def replaced(suffix: str, by: Callable[[Path], None]) -> Change:
    """Replace the ``json`` record or the ``body`` by what ``by`` makes at its path."""

    def replace(record: Path, body: Path) -> None:
        path = record if suffix == "json" else body
        path.unlink()
        by(path)

    return replace


def linked_to_a_sibling(path: Path) -> None:
    """Make ``path`` a symbolic link to another entry's file in the same folder."""
    path.symlink_to(next(p for p in path.parent.glob(f"*{path.suffix}") if p != path).name)


def failure(**fields: object) -> dict[str, object]:
    """A recorded failure as the Recorder writes it, with ``fields`` changed."""
    return {
        "kind": "connection",
        "message": "refused",
        "retryable": False,
        "retry_after": None,
    } | fields


BAD_ENTRIES: dict[str, tuple[Change, str, str]] = {
    "not JSON": (written(b"{not json"), "json", "not JSON"),
    "not UTF-8": (written(b'{"url": "\xff"}'), "json", "not JSON"),
    "not an object": (written(b"[]"), "json", "not a JSON object"),
    "nested without end": (written(b"[" * 100_000 + b"]" * 100_000), "json", "nested too deeply"),
    "NaN": (written(b'{"status": NaN}'), "json", "not JSON (NaN is not a JSON number)"),
    "huge": (written(b"{}" + b" " * MiB), "json", "larger than 1 MiB"),
    "status missing": (edited(status=_DELETE), "json", "status: missing"),
    "status a string": (edited(status="200"), "json", "status: not an integer from 100 to 999"),
    "status a boolean": (edited(status=True), "json", "status: not an integer from 100 to 999"),
    "status out of range": (edited(status=1000), "json", "status: not an integer from 100 to 999"),
    "headers not pairs": (
        edited(headers=[["Content-Type"]]),
        "json",
        "headers: not a list of [name, value] pairs of strings",
    ),
    "headers an object": (
        edited(headers={"Content-Type": "text/html"}),
        "json",
        "headers: not a list of [name, value] pairs of strings",
    ),
    "url missing": (edited(url=_DELETE), "json", "url: missing"),
    "another URL": (edited(url="http://elsewhere.test/a"), "json", "records another request"),
    "another method": (edited(method="POST"), "json", "records another request"),
    "error not an object": (edited(error="refused"), "json", "error: not an object"),
    "error kind not a name": (
        edited(error=failure(kind="connection\nWARNING: forged")),
        "json",
        "error.kind: not a name like http_503",
    ),
    "error retryable not a boolean": (
        edited(error=failure(retryable="yes")),
        "json",
        "error.retryable: not true or false",
    ),
    "error retry_after negative": (
        edited(error=failure(retry_after=-1)),
        "json",
        "error.retry_after: not null or a number of seconds",
    ),
    "record a folder": (replaced("json", Path.mkdir), "json", "not a regular file (a folder)"),
    "record a link inside": (replaced("json", linked_to_a_sibling), "json", "a symbolic link"),
    "body a link inside": (replaced("body", linked_to_a_sibling), "body", "a symbolic link"),
    "body missing": (replaced("body", lambda path: None), "body", "missing"),
    "body cut short": (
        lambda record, body: body.write_bytes(body.read_bytes()[:-3]),
        "body",
        "cut short or damaged",
    ),
    "body changed": (
        lambda record, body: body.write_bytes(body.read_bytes().swapcase()),
        "body",
        "damaged: its bytes are not those saved (their CRC-32 differs)",
    ),
    "body size not a count": (
        edited(body={"size": -1, "crc32": 0}),
        "json",
        "body.size: not a number of bytes",
    ),
    "body crc32 missing": (edited(body={"size": 0}), "json", "body.crc32: missing"),
    "body not an object": (edited(body=12), "json", "body: not an object"),
}


@pytest.mark.parametrize(
    ("query", "headers", "hidden"),
    [
        # Quoted the server's own way, and kept in a cookie; a Date is left as it is.
        (
            "u=ada&p=s3cret+word%40x",
            {"Location": "/in?p=s3cret%20word@x", "Set-Cookie": "pw=s3cret+word%40x"},
            ["s3cret"],
        ),
        ("p=%25252x", {"Set-Cookie": "a=%252x; b=%25252x"}, ["%252x", "%25252x"]),  # a % in it
        # A form sent in Latin-1, and one in cp1251 (пароль): their bytes are no UTF-8.
        (
            "p=s%E4cret",
            {"Location": "/in?p=s%e4cret", "Set-Cookie": "pw=s%E4cret", "Link": "s\udce4cret"},
            ["cret"],
        ),
        ("p=%EF%E0%F0%EE%EB%FC", {"Location": "/?p=%ef%e0%f0%ee%eb%fc"}, ["%ef%e0", "%EF%E0"]),
        # UTF-8, percent-encoded and raw.
        ("p=s%C3%A4cret", {"Location": "/?p=s%c3%a4cret", "Link": "säcret"}, ["cret"]),
        # Two passwords, the second in the first's mark; the text's own marks kept as such.
        (
            "p=password1&q=sign",
            {"Link": "</?p=password1&q=sign>; x={fw:lit} {fw:sign-in 0:llll}"},
            ["password1", "q=sign"],
        ),
    ],
)
async def test_a_sign_in_password_in_a_header_is_masked_and_comes_back_exactly(
    tmp_path: Path, query: str, headers: dict[str, str], hidden: list[str]
) -> None:
    request = Request(f"http://a.test/do?{query}", meta={SECRET_QUERY: ["p", "q"]})
    answer = {**headers, "Date": "Mon, 07 Dec 2026 06:41:28 GMT"}
    async with Recording(tmp_path, create=True) as recording:
        await recording.save(request, Response(request.url, 302, answer, b"", request))
        record = (tmp_path / f"{recording.key(request)}.json").read_text()
        loaded = await recording.load(request)
    assert not [secret for secret in hidden if secret in record], record
    assert loaded is not None and dict(loaded.headers) == answer


@pytest.mark.parametrize(
    ("query", "echo"),
    [
        # Пёсик1 in cp1251: CF B8 is UTF-8 (ϸ), so aiohttp shows the bytes raw as a mix.
        ("p=%CF%B8%F1%E8%EA1", b"\xcf\xb8\xf1\xe8\xea1".decode("utf-8", "surrogateescape")),
        ("p=пароль123", "пароль123"),  # a URL a spider wrote with its characters raw
    ],
)
async def test_a_password_repeated_raw_is_masked_however_its_bytes_decode(
    tmp_path: Path, query: str, echo: str
) -> None:
    request = Request(f"http://a.test/do?{query}", meta={SECRET_QUERY: ["p"]})
    answer = {"Set-Cookie": f"pw={echo}; Path=/"}
    async with Recording(tmp_path, create=True) as recording:
        await recording.save(request, Response(request.url, 302, answer, b"", request))
        record = json.loads((tmp_path / f"{recording.key(request)}.json").read_text())
        loaded = await recording.load(request)
    assert re.split(r"[lxXbBrR+]+\}", record["headers"][0][1]) == ["pw={fw:sign-in 0:", "; Path=/"]
    assert loaded is not None and dict(loaded.headers) == answer


async def test_a_record_from_before_bodies_were_checked_is_still_read(tmp_path: Path) -> None:
    # The bundled douban-recording, and folders users made, hold no body size.
    request = Request("http://a.test/page")
    async with Recording(tmp_path, create=True) as recording:
        await recording.save(request, Response(request.url, 200, {}, b"<p>whole</p>", request))
        record = tmp_path / f"{recording.key(request)}.json"
        edited(body=_DELETE)(record, record)
        assert "body" not in json.loads(record.read_text())
        loaded = await recording.load(request)
    assert loaded is not None and loaded.body == b"<p>whole</p>"


@pytest.mark.parametrize("bad", BAD_ENTRIES.values(), ids=BAD_ENTRIES.keys())
async def test_a_bad_entry_is_a_bad_recording_naming_its_file(
    serve: Serve, tmp_path: Path, caplog: pytest.LogCaptureFixture, bad: tuple[Change, str, str]
) -> None:
    change, suffix, what = bad
    path, base = await recorded(serve, tmp_path, fw=False)
    folder, url = tmp_path / "rec", f"{base}/a"
    change(entry(folder, url, "json"), entry(folder, url, "body"))
    caplog.set_level(logging.WARNING, logger="fw")
    stats = await runner.build_engine(
        runner.prepare(path, replay=folder), failures_file=False
    ).run()
    assert stats.errors == Counter({"connection": 1, "http_404": 1, "bad_recording": 1})
    [logged] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("bad_")]
    assert logged.startswith(f"bad_recording: {entry(folder, url, suffix)}: {what}")
    assert logged.endswith(f" ({url})")


# ---------------------------------------------------------------------------------------------
# A recording that cannot be written stops the crawl, as an export that cannot be written does
# ---------------------------------------------------------------------------------------------

#: A middleware that only passes requests on: what the recorder raises must pass through it.
PASS_ON = """
from framework import Middleware, hookimpl

class PassOn(Middleware):
    name = "pass_on"

@hookimpl
def register_middlewares(register):
    register(PassOn)
"""


async def wide_site(serve: Serve, pages: int) -> str:
    """``/`` links to ``/1`` .. ``/{pages - 1}``; each page's body is about 3 KB."""

    async def page(request: web.Request) -> web.Response:
        links = (
            "".join(f'<a href="/{n}">x</a>' for n in range(1, pages)) if request.path == "/" else ""
        )
        filler = "<p>" + "x" * 3000 + "</p>"
        return web.Response(
            text=f"<html><h1>{request.path}</h1>{links}{filler}</html>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    return await serve(app)


def resumable_project(directory: Path, base: str, plugins: str = "") -> Path:
    """The recording tests' project, with a SQLite frontier and an export beside it."""
    path = project(directory, base)
    with path.open("a", encoding="utf-8") as file:
        file.write(
            "robots: ignore\nfrontier: sqlite:///state.db\nexporters: [{path: items.jsonl}]\n"
        )
        if plugins:
            file.write(f"plugins: [{plugins}]\n")
    return path


def recorded_urls(folder: Path) -> list[str]:
    """Return the URL of every record in ``folder``, checking each is whole: a pair, parsed."""
    names = sorted(p.name for p in folder.iterdir())
    keys = {name.removesuffix(".json") for name in names if name.endswith(".json")}
    assert names == sorted([*(f"{k}.json" for k in keys), *(f"{k}.body" for k in keys)])
    records = [json.loads((folder / f"{key}.json").read_text()) for key in keys]
    assert all(
        r["status"] == 200 and (folder / f"{k}.body").stat().st_size > 3000
        for k, r in zip(keys, records, strict=True)
    )
    return [r["url"] for r in records]


def one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr and "internal_error" not in stderr, stderr
    return errors[0]


@pytest.mark.parametrize("middleware", [False, True], ids=["alone", "under_a_middleware"])
async def test_a_full_disk_stops_the_recording_crawl_and_a_rerun_records_the_rest(
    serve: Serve, tmp_path: Path, middleware: bool
) -> None:
    base = await wide_site(serve, 30)
    (tmp_path / "pass_on.py").write_text(PASS_ON, encoding="utf-8")
    path = resumable_project(tmp_path, base, "./pass_on.py" if middleware else "")
    with small_disk(tmp_path / "disk", "64k") as disk:  # room for a few 8 KB records
        rec = disk / "rec"
        first = await run_fw("run", str(path), "--record", str(rec), "-q")
        assert first.returncode == 1, first.stderr
        urls = recorded_urls(rec)
        assert 0 < len(urls) < 30
        assert one_error_line(first.stderr) == (
            f"Error: record {rec}: No space left on device ({len(urls)} responses recorded)"
        )
        # The page that could not be recorded was not settled: the rerun fetches it.
        again = await run_fw("run", str(path), "--record", str(tmp_path / "rec2"), "-q")
        assert again.returncode == 0, again.stderr
    every = {f"{base}/", *(f"{base}/{n}" for n in range(1, 30))}
    assert set(urls) | set(recorded_urls(tmp_path / "rec2")) == every
    assert sorted(item["url"] for item in read_jsonl(tmp_path / "items.jsonl")) == sorted(every)


async def test_a_record_that_cannot_be_put_in_place_leaves_no_file_behind(
    serve: Serve, tmp_path: Path
) -> None:
    base = await site(serve, [])
    path = project(tmp_path, base)
    rec = tmp_path / "rec"
    in_the_way = entry(rec, f"{base}/", "body")  # a folder where the start page's body goes
    (in_the_way / "inside").mkdir(parents=True)
    done = await run_fw("run", str(path), "--record", str(rec), "-s", "robots=ignore")
    assert done.returncode == 1, done.stderr
    assert (
        one_error_line(done.stderr) == f"Error: record {rec}: Is a directory (0 responses recorded)"
    )
    assert [p.name for p in rec.iterdir()] == [in_the_way.name]  # no temporary file, no .json


async def test_a_link_planted_at_a_temporary_name_is_replaced_never_written_through(
    serve: Serve, tmp_path: Path
) -> None:
    base = await site(serve, [])
    path = project(tmp_path, base)
    rec, victim = tmp_path / "rec", tmp_path / "victim.txt"
    rec.mkdir()
    victim.write_text("keep me\n")
    owner = f"{socket.gethostname()}-{os.getpid()}"  # the crawl runs in this process
    for suffix in ("body", "json"):
        planted = rec / f".{entry(rec, f'{base}/', suffix).name}.{owner}.part"
        planted.symlink_to(victim)
    stats = await runner.build_engine(runner.prepare(path, record=rec), failures_file=False).run()
    assert stats.reason == "finished" and stats.pages == 4, stats.summary()
    assert victim.read_text() == "keep me\n"
    assert not [p for p in rec.iterdir() if p.is_symlink() or p.name.endswith(".part")]
    assert b"<h1>Home</h1>" in entry(rec, f"{base}/", "body").read_bytes()
    # A record keeps the answer's headers, a session's Set-Cookie among them: its user's.
    assert {p.stat().st_mode & 0o777 for p in rec.iterdir()} == {0o600}


async def test_a_header_not_in_utf8_is_recorded_and_replayed(tmp_path: Path) -> None:
    page = b"<html><h1>caf\xc3\xa9</h1></html>"
    head = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/html\r\nX-Name: caf\xe9\r\n"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(page) + page)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        path = project(tmp_path, base)
        live = await run_fw("run", str(path), "--record", "rec", "-o", "live.jsonl", cwd=tmp_path)
    assert live.returncode == 0, live.stderr
    assert "Traceback" not in live.stderr and "internal_error" not in live.stderr, live.stderr
    replayed = await run_fw("run", str(path), "--replay", "rec", "-o", "again.jsonl", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert read_jsonl(tmp_path / "again.jsonl") == read_jsonl(tmp_path / "live.jsonl")
    assert read_jsonl(tmp_path / "live.jsonl")[0]["title"] == "café"


async def test_a_recorder_killed_while_saving_leaves_files_the_next_one_removes(
    serve: Serve, tmp_path: Path
) -> None:
    rec = tmp_path / "rec"
    rec.mkdir()
    ended = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await ended.wait()  # its pid is no one's now
    host = socket.gethostname()
    killed = rec / f".{'0' * 16}.body.{host}-{ended.pid}.part"
    elsewhere = rec / f".{'0' * 16}.body.another-host-{os.getpid()}.part"  # maybe saving now
    killed.write_bytes(b"half a bo")
    elsewhere.write_bytes(b"half a bo")
    path = project(tmp_path, await site(serve, []))
    done = await run_fw("run", str(path), "--record", str(rec))
    assert done.returncode == 0, done.stderr
    assert not killed.exists() and elsewhere.exists()
    assert len(list(rec.glob("*.json"))) == 5  # robots.txt, three pages and the 404
