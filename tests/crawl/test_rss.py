"""Memory stays bounded by concurrency x max_response_size, whatever the pages do."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path

from aiohttp import web

from tests.conftest import Serve, fw_command, write_project
from tests.crawl.test_engine import SPIDER

MiB = 1024 * 1024
CONCURRENCY = 8
LIMIT = 2 * MiB
#: What a response in flight may cost beyond its body: decoded text, the parsed tree.
PER_RESPONSE = 6 * LIMIT

#: Runs fw as its only child and prints the child's peak resident memory in KiB.
PEAK = textwrap.dedent("""
    import resource, subprocess, sys
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(done.returncode)
    sys.stderr.write(done.stderr)
""")


def site() -> web.Application:
    """A start page linking to 40 pages of 1.5 MiB and to 40 bodies of 50 MiB."""

    async def start(request: web.Request) -> web.Response:
        links = "".join(f'<a href="/large/{n}">l</a><a href="/huge/{n}">h</a>' for n in range(40))
        return web.Response(text=links, content_type="text/html")

    async def large(request: web.Request) -> web.Response:
        filler = "<p>" + "x" * 1000 + "</p>"
        return web.Response(
            text=f"<html><body>{filler * 1500}</body></html>", content_type="text/html"
        )

    async def huge(request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse(headers={"Content-Type": "text/html"})
        await answer.prepare(request)
        chunk = b"<p>" + b"y" * 65536 + b"</p>"
        try:
            for _ in range(50 * MiB // len(chunk)):
                await answer.write(chunk)
        except ConnectionError:
            pass  # the crawler hung up on reaching its limit, as it should
        return answer

    app = web.Application()
    app.router.add_get("/", start)
    app.router.add_get("/large/{n}", large)
    app.router.add_get("/huge/{n}", huge)
    return app


async def peak_of(*args: str) -> tuple[int, int, str]:
    """Run fw; return its peak resident memory in bytes, its exit code and its stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PEAK,
        *fw_command(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    peak, code = out.decode().split()
    return int(peak) * 1024, int(code), err.decode()


async def test_peak_memory_is_bounded_by_concurrency_times_the_size_limit(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(site())
    (tmp_path / "links.py").write_text(SPIDER, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: links
        start_urls: [{base}/]
        plugins: [./links.py]
        robots: ignore
        retries: 0
        concurrency: {{total: {CONCURRENCY}, per_domain: {CONCURRENCY}}}
        max_response_size: {LIMIT}
        """,
    )
    empty = write_project(
        tmp_path,
        f"spider: links\nstart_urls: [{base}/large/0]\nplugins: [./links.py]\nrobots: ignore\n",
        name="empty.yaml",
    )
    baseline, code, _ = await peak_of("run", str(empty))
    assert code == 0
    stats_path = tmp_path / "stats.json"
    peak, code, err = await peak_of("run", str(project), "--stats", str(stats_path))
    assert code == 0, err
    stats = json.loads(stats_path.read_text())
    assert stats["errors"] == {"too_large": 40} and stats["pages"] == 41
    # 40 x 50 MiB streamed at fw, 8 at a time: had it buffered them, it would hold 400 MiB.
    assert peak - baseline <= CONCURRENCY * PER_RESPONSE, (peak, baseline)
