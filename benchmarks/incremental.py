"""Measure incremental re-crawls against a full crawl, side by side in one run.

The shop site of ``shopsite.py`` (``--pages`` pages of ~16 KB, 10 links each) is written
to a scratch directory and crawled by ``fw run benchmarks/shop.yaml`` with a SQLite
frontier, once per row, each a child process timed from start to exit:

1. ``full crawl``: a plain crawl, the baseline;
2. ``incremental, round 1``: the same with ``--incremental``, which notes every page;
3. ``re-crawl, nothing changed``: ``--incremental`` again on the finished crawl;
4. ``re-crawl, K changed``: after ``--changed`` pages were edited on disk.

Twice: served by nginx, which gives ``ETag``/``Last-Modified`` and answers the re-crawl's
conditional requests with 304 and no body; and by ``fastserver.py``, which gives no
validators, so every page is fetched whole and compared by hash (restarted on the same
port after the edit, as it serves from memory). A row is valid only if fw exited 0 and
exported what it should: every page in a full crawl, the changed ones in a re-crawl.

usage: python benchmarks/incremental.py [--pages 4000] [--changed 40] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from servers import _free_port, running_server
from shopsite import write_site

HERE = Path(__file__).resolve().parent


@dataclass
class Row:
    server: str
    what: str
    seconds: float
    pages: int
    items: int
    figures: dict[str, int]

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds


def crawl(base: str, state: Path, out: Path, concurrency: int, *flags: str) -> Row:
    """Run one ``fw run`` of the shop site; return what it took and did."""
    stats = out.with_suffix(".stats.json")
    command = [
        *(sys.executable, "-m", "framework", "--log-level", "warning", "run"),
        str(HERE / "shop.yaml"),
        *("-s", f'start_urls=["{base}/p/0.html"]', "-s", f"frontier=sqlite:///{state}"),
        *("-s", f"concurrency.total={concurrency}", "-s", f"concurrency.per_domain={concurrency}"),
        *("-s", "robots=ignore", "-o", str(out), "--stats", str(stats), *flags),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"fw exited {done.returncode}:\n{done.stderr}")
    data = json.loads(stats.read_text(encoding="utf-8"))
    items = sum(1 for _ in out.open(encoding="utf-8"))
    return Row("", "", took, data["pages"], items, data.get("plugins", {}).get("incremental", {}))


def edit(root: Path, count: int, pages: int) -> None:
    """Change the price on ``count`` pages spread over the site (a byte longer each)."""
    for n in range(count):
        page = root / "p" / f"{n * pages // count}.html"
        page.write_text(
            page.read_text(encoding="utf-8").replace('class="price">', 'class="price">1', 1),
            encoding="utf-8",
        )


@contextlib.contextmanager
def fastserver(root: Path, port: int) -> Iterator[str]:
    """Serve ``root`` with fastserver.py on ``port``: no ETag, no Last-Modified."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "fastserver.py"), str(root), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline().decode() if ready else ""
        if not line.startswith("listening on "):
            raise SystemExit(f"fastserver.py did not start on port {port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def rounds(server: str, root: Path, scratch: Path, args: argparse.Namespace) -> list[Row]:
    """The four rows for one server."""
    rows: list[Row] = []
    pages, changed, concurrency = args.pages, args.changed, args.concurrency

    def run(base: str, what: str, state: str, expected: int, *flags: str) -> None:
        out = scratch / f"{server}-{len(rows)}.jsonl"
        row = crawl(base, scratch / state, out, concurrency, *flags)
        row.server, row.what = server, what
        if row.items != expected:
            raise SystemExit(f"{server}, {what}: exported {row.items} items, not {expected}")
        rows.append(row)
        print(f"  {server:10} {what:28} {row.seconds:6.2f} s", file=sys.stderr)

    if server == "nginx":
        with running_server(root, "nginx") as nginx:
            run(nginx.base, "full crawl", "full.db", pages)
            run(nginx.base, "incremental, round 1", "inc.db", pages, "--incremental")
            run(nginx.base, "re-crawl, nothing changed", "inc.db", 0, "--incremental")
            edit(root, changed, pages)
            run(nginx.base, f"re-crawl, {changed} changed", "inc.db", changed, "--incremental")
        return rows
    port = _free_port()
    with fastserver(root, port) as base:
        run(base, "full crawl", "full.db", pages)
        run(base, "incremental, round 1", "inc.db", pages, "--incremental")
        run(base, "re-crawl, nothing changed", "inc.db", 0, "--incremental")
    edit(root, changed, pages)
    with fastserver(root, port) as base:
        run(base, f"re-crawl, {changed} changed", "inc.db", changed, "--incremental")
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| server | run | wall s | pages | pages/s | items | new / changed / unchanged |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        counted = " / ".join(str(row.figures.get(k, "–")) for k in ("new", "changed", "unchanged"))
        lines.append(
            f"| {row.server} | {row.what} | {row.seconds:.2f} | {row.pages:,} | "
            f"{row.pages_per_s:,.0f} | {row.items:,} | {counted} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=4000)
    parser.add_argument("--changed", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--servers", default="nginx,fastserver")
    args = parser.parse_args()
    rows: list[Row] = []
    for server in args.servers.split(","):
        with tempfile.TemporaryDirectory(prefix="fw-bench-incremental-") as tmp:
            scratch = Path(tmp)
            write_site(scratch / "site", args.pages)
            rows += rounds(server, scratch / "site", scratch, args)
    print(table(rows))
    for server in dict.fromkeys(row.server for row in rows):
        full, *_, nothing, some = [row for row in rows if row.server == server]
        print(
            f"{server}: re-crawl with nothing changed {full.seconds / nothing.seconds:.1f}x "
            f"faster than the full crawl, with {args.changed} changed "
            f"{full.seconds / some.seconds:.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
