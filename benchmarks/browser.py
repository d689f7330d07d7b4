"""Rendered pages per second and memory per concurrent page: fw's browser plugin against
Crawlee's ``PlaywrightCrawler``, on the same loopback JS shop, with the same Chromium.

Each crawler renders every page of ``jsshop.py`` (a tree of ``--pages`` pages, each built
by a script from an XHR to the same server, reachable from ``/js/0`` only through links
the script adds), waiting for ``.product`` on each, at ``--concurrency`` pages at once and
again at one page at once. Measured from outside: wall time and CPU (``os.wait4``: the
crawler, Playwright's driver and Chromium, all reaped in turn) and the peak memory of the
crawler's whole process tree, by PSS (Chromium's processes share much of their memory;
RSS would count it once per process). Memory per concurrent page is the difference
between the two peaks divided by the difference in pages open at once.

usage: python benchmarks/browser.py [--pages 300] [--concurrency 8] [--runs 1]
Crawlee comes from benchmarks/.venvs/crawlee-browser (bash benchmarks/setup_peers.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
FW = Path(sys.executable).with_name("fw")
CRAWLEE = HERE / ".venvs" / "crawlee-browser" / "bin" / "python"

PROJECT = """\
spider: rules
start_urls: [{base}/js/0]
robots: ignore
throttle: false
timeout: 60
concurrency: {{total: {c}, per_domain: {c}}}
browser: {{render: [127.0.0.1], wait_for: .product, concurrency: {c}, executable_path: {chromium}}}
rules:
  follow: [a.next]
  items:
    - fields: {{url: {{value: url}}, names: {{css: .product h2::text, many: true}}}}
"""


@dataclass(frozen=True)
class Run:
    """One crawl, as measured from outside."""

    crawler: str
    concurrency: int
    wall_s: float
    cpu_s: float
    peak_pss_mb: float
    items: int
    distinct: int
    returncode: int

    def valid(self, pages: int) -> bool:
        """Whether it exited 0 having exported every page exactly once."""
        return self.returncode == 0 and self.items == self.distinct == pages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_pss_kb(root: int) -> int:
    """The PSS of ``root`` and every process below it, in KB."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def measure(name: str, c: int, command: list[str], cwd: Path, items: Path) -> Run:
    """Run ``command`` in ``cwd``, sampling its tree's memory; read the items it wrote."""
    log = (cwd / "log.txt").open("wb")
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            peak[0] = max(peak[0], tree_pss_kb(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    sampler.join()
    log.close()
    found = read_items(items)
    urls = {item["url"] for item in found if item.get("names")}
    if process.returncode != 0:
        print((cwd / "log.txt").read_text(errors="replace")[-3000:], file=sys.stderr)
    cpu = usage.ru_utime + usage.ru_stime
    return Run(name, c, wall, cpu, peak[0] / 1024, len(found), len(urls), process.returncode)


def read_items(path: Path) -> list[dict[str, object]]:
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines()]


def run_fw(base: str, c: int, chromium: str, scratch: Path) -> Run:
    project = scratch / "browser.yaml"
    project.write_text(PROJECT.format(base=base, c=c, chromium=chromium), encoding="utf-8")
    command = [str(FW), "--log-level", "warning", "run", str(project), "-o", "items.jsonl"]
    return measure("fw", c, command, scratch, scratch / "items.jsonl")


def run_crawlee(base: str, c: int, chromium: str, scratch: Path) -> Run:
    script = str(HERE / "crawlee_browser.py")
    command = [str(CRAWLEE), script, base, "items.json", str(c), chromium]
    return measure("crawlee", c, command, scratch, scratch / "items.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or not CRAWLEE.is_file():
        sys.exit("needs chromium on PATH and Crawlee: bash benchmarks/setup_peers.sh")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "jsshop.py"), str(port), str(args.pages)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().startswith("ready")
        runs = crawl_all(f"http://127.0.0.1:{port}", chromium, args)
    finally:
        server.terminate()
        server.wait()
    report(runs, args)
    return 0 if all(run.valid(args.pages) for run in runs) else 1


def crawl_all(base: str, chromium: str, args: argparse.Namespace) -> list[Run]:
    runs = []
    for _ in range(args.runs):
        for c in (1, args.concurrency):
            for crawler in (run_fw, run_crawlee):
                with tempfile.TemporaryDirectory(prefix="fw-browser-bench-") as scratch:
                    run = crawler(base, c, chromium, Path(scratch))
                print(run, file=sys.stderr, flush=True)
                runs.append(run)
    return runs


def report(runs: list[Run], args: argparse.Namespace) -> None:
    """Print the medians of the runs, crawler by crawler, as a Markdown table."""
    c, pages = args.concurrency, args.pages
    print(
        f"\n{pages} JS pages, concurrency {c} (memory: 1 page at once vs {c}), "
        f"median of {args.runs} runs, chromium {chromium_version()}\n"
    )
    print(
        "| crawler | rendered pages/s | CPU ms/page | peak PSS MB at 1 | peak PSS MB at "
        f"{c} | MB per concurrent page | all pages exported |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in ("fw", "crawlee"):
        low = [r for r in runs if r.crawler == name and r.concurrency == 1]
        high = [r for r in runs if r.crawler == name and r.concurrency == c]
        rate = statistics.median(r.items / r.wall_s for r in high)
        cpu = statistics.median(1000 * r.cpu_s / max(r.items, 1) for r in high)
        at_1 = statistics.median(r.peak_pss_mb for r in low)
        at_c = statistics.median(r.peak_pss_mb for r in high)
        per_page = (at_c - at_1) / (c - 1)
        ok = all(r.valid(pages) for r in low + high)
        print(
            f"| {name} | {rate:.1f} | {cpu:.0f} | {at_1:.0f} | {at_c:.0f} | "
            f"{per_page:.1f} | {'yes' if ok else 'NO'} |"
        )


def chromium_version() -> str:
    done = subprocess.run(["chromium", "--version"], check=False, capture_output=True, text=True)
    return done.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
