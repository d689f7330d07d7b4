"""Measure the frontiers as their queue grows: dequeue cost and the process's memory.

For each backend a fresh child process (so that its peak RSS is its own) queues requests
in batches of 1,000 — 100 hosts, distinct URLs — until ``--pending`` are waiting. At each
size on the way (10k, 100k, 1M by default) it times ``--sample`` claims and their acks
(each ack discovers one new request, so the queue keeps its size) and records the
process's current RSS. A flat ``µs/claim`` column means dequeuing does not get slower as
the queue grows; ``RSS MB`` shows where the queue lives.

usage: python benchmarks/frontier.py [--pending 1000000] [--sample 2000]
                                     [--backends memory,sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from framework.fetch.politeness import HostPolicy, Politeness
from framework.frontier import Frontier, Lease, Settlement
from framework.frontier.memory import MemoryFrontier
from framework.frontier.sqlite import SqliteFrontier
from framework.http import Request

HOSTS = 100
BATCH = 1_000


def current_rss_mb() -> float:
    """The process's resident memory now (Linux), in MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 1e6


def requests(start: int, count: int) -> list[Request]:
    return [
        Request(f"http://host{n % HOSTS}.test/item/{n}?ref=list&page={n // HOSTS}")
        for n in range(start, start + count)
    ]


async def dequeue_cost(frontier: Frontier, sample: int, next_url: int) -> tuple[float, float]:
    """Time ``sample`` claims, and their acks, each with one new request so the size stays.

    Returns microseconds per claim and per ack.
    """
    claiming = acking = 0.0
    for n in range(sample):
        started = time.perf_counter()
        lease = await frontier.claim()
        claimed = time.perf_counter()
        assert isinstance(lease, Lease), lease
        await frontier.settle([Settlement(lease, requests(next_url + n, 1))])
        claiming += claimed - started
        acking += time.perf_counter() - claimed
    return claiming / sample * 1e6, acking / sample * 1e6


async def measure(backend: str, sizes: list[int], sample: int, folder: Path) -> list[dict]:
    # Unlimited concurrency per host: the benchmark is the queue, not politeness.
    politeness = Politeness(HostPolicy(10**9, 0.0), {})
    frontier: Frontier = (
        SqliteFrontier(folder / "crawl.db", politeness)
        if backend == "sqlite"
        else MemoryFrontier(politeness)
    )
    await frontier.open()
    rows, queued, next_url = [], 0, 10**9
    for size in sizes:
        started = time.perf_counter()
        while queued < size:
            count = min(BATCH, size - queued)
            await frontier.add(requests(queued, count))
            queued += count
        added = time.perf_counter() - started
        claim, ack = await dequeue_cost(frontier, sample, next_url)
        next_url += sample
        rows.append(
            {
                "backend": backend,
                "pending": frontier.counts().pending,
                "us_per_claim": round(claim, 1),
                "us_per_ack": round(ack, 1),
                "rss_mb": round(current_rss_mb(), 1),
                "add_seconds": round(added, 1),
            }
        )
    await frontier.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000
    for row in rows:
        row["peak_rss_mb"] = round(peak, 1)
    return rows


def child(backend: str, sizes: list[int], sample: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        rows = asyncio.run(measure(backend, sizes, sample, Path(folder)))
    print(json.dumps(rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument("--backends", default="memory,sqlite")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [s for s in (10_000, 100_000, 1_000_000, 10_000_000) if s < args.pending]
    sizes.append(args.pending)
    if args.child:
        child(args.child, sizes, args.sample)
        return 0
    print(
        f"{'backend':<8} {'pending':>10} {'µs/claim':>9} {'µs/ack+add':>11} {'RSS MB':>8} "
        f"{'add s':>7}"
    )
    for backend in args.backends.split(","):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                backend,
                "--pending",
                str(args.pending),
                "--sample",
                str(args.sample),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for row in json.loads(out):
            print(
                f"{row['backend']:<8} {row['pending']:>10,} {row['us_per_claim']:>9.1f} "
                f"{row['us_per_ack']:>11.1f} {row['rss_mb']:>8.1f} {row['add_seconds']:>7.1f}"
            )
        print(f"{backend}: peak RSS {row['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
