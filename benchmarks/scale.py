"""Measure what one URL costs a persistent frontier, for sizing a crawl (docs/scale.md).

For each backend, a fresh store (a throw-away ``redis-server``, or an SQLite file in a
temporary folder) gets ``--entries`` distinct requests over ``--hosts`` hosts through
the frontier's own ``add``, in batches of 1,000, as a crawl's discoveries arrive. Then
every one is claimed and settled as done, in rounds of ``--batch`` claims and one settle
of them all, as a worker with that many requests in flight does. Three figures come out:

- **bytes per pending request**: the store's size with everything queued, less its size
  once all is settled (when only the seen-set and the hosts are left), per request;
- **bytes per fingerprint**: that settled size, less the empty store's, per URL (it
  includes each host's small state: ``--hosts`` of them);
- **claims/s and settles/s per core**: requests leased and settled per second of the
  store's own CPU time (Redis: ``INFO cpu``; SQLite runs in the worker, so its figure is
  per second of the worker's CPU, which includes fw's Python side).

Redis's size is ``used_memory`` from ``INFO memory``; SQLite's the database file's,
after a checkpoint. With ``--density N`` the Redis seen-set is also measured with the
fingerprints as crowded as they are at N URLs (fewer shards, same count per shard).

With ``--queued-only`` the URLs are only queued: the store's size with all of them waiting
(queue and seen-set together) and the worker's peak memory, the figures for sizing a crawl
that queues faster than it fetches.

usage: python benchmarks/scale.py [--entries 1000000] [--hosts 10000] [--batch 500]
                                  [--backends redis,sqlite] [--density 100000000]
                                  [--queued-only]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/

import redis

from framework.fetch.politeness import HostPolicy, Politeness
from framework.frontier import Frontier, Lease, Settlement
from framework.frontier import redis as redis_frontier
from framework.frontier.redis import RedisFrontier
from framework.frontier.sqlite import SqliteFrontier
from framework.http import Request
from tests.redis_server import RedisServer

ADDED_AT_ONCE = 1_000
#: Unlimited concurrency and no delay per host: the benchmark is the store, not politeness.
UNLIMITED = Politeness(HostPolicy(10**9, 0.0), {})


def urls(count: int, hosts: int) -> Iterator[str]:
    """Distinct URLs of the length real pages link to (70-90 characters)."""
    for n in range(count):
        yield (
            f"https://www{n % hosts}.example-shop.com/catalogue/category-{n % 97}/"
            f"item-{n}.html?ref=list&page={n // hosts % 50}"
        )


def batches(count: int, hosts: int) -> Iterator[list[Request]]:
    batch: list[Request] = []
    for url in urls(count, hosts):
        batch.append(Request(url, callback="parse_item", depth=2))
        if len(batch) == ADDED_AT_ONCE:
            yield batch
            batch = []
    if batch:
        yield batch


class Store:
    """How big a store is and how much CPU it has spent, whatever it is."""

    def __init__(self, size: Callable[[], int], cpu: Callable[[], float]) -> None:
        self.size, self.cpu = size, cpu


def redis_store(url: str) -> Store:
    client = redis.Redis.from_url(url, socket_timeout=None)

    def cpu() -> float:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    return Store(lambda: int(client.info("memory")["used_memory"]), cpu)


def sqlite_store(path: Path) -> Store:
    def size() -> int:
        # The pages in use: a settled request's freed bytes stay in the file, for reuse.
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            free = db.execute("PRAGMA freelist_count").fetchone()[0]
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * page_size)

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    return Store(size, cpu)


async def drain(frontier: Frontier, store: Store, total: int, batch: int) -> tuple[float, float]:
    """Claim and settle everything, ``batch`` at a time; return the store's CPU seconds
    spent on claims and on settles."""
    claiming = settling = 0.0
    settled = 0
    while settled < total:
        before = store.cpu()
        claims = await asyncio.gather(*(frontier.claim() for _ in range(batch)))
        leases = [lease for lease in claims if isinstance(lease, Lease)]
        middle = store.cpu()
        await frontier.settle([Settlement(lease, []) for lease in leases])
        claiming, settling = claiming + middle - before, settling + store.cpu() - middle
        settled += len(leases)
        if not leases:
            raise RuntimeError(f"nothing left to claim after {settled} of {total}: {claims[:3]}")
    return claiming, settling


async def measure(backend: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Fill one store, drain it, and return the figures."""
    server = RedisServer(folder / "redis")
    if backend == "redis":
        server.start()
        store = redis_store(server.url)
        frontier: Frontier = RedisFrontier(server.url, UNLIMITED, name="scale")
    else:
        store = sqlite_store(folder / "crawl.db")
        frontier = SqliteFrontier(folder / "crawl.db", UNLIMITED)
    try:
        await frontier.open()
        empty = store.size()
        started = time.perf_counter()
        for batch in batches(args.entries, args.hosts):
            await frontier.add(batch)
        added = time.perf_counter() - started
        full = store.size()
        if args.queued_only:
            await frontier.close()
            return queued_row(backend, args, full - empty, added)
        claiming, settling = await drain(frontier, store, args.entries, args.batch)
        await frontier.close()
        settled = seen = store.size()
        if backend == "redis":
            keep_only_seen(server.url)
            seen = store.size()
    finally:
        server.stop()
    return {
        "backend": backend,
        "entries": args.entries,
        "hosts": args.hosts,
        "bytes_per_pending": round((full - settled) / args.entries, 1),
        "bytes_per_fingerprint": round((seen - empty) / args.entries, 1),
        "bytes_per_host": round((settled - seen) / args.hosts),
        "claims_per_core_s": round(args.entries / claiming),
        "settles_per_core_s": round(args.entries / settling),
        "add_s": round(added, 1),
    }


def queued_row(backend: str, args: argparse.Namespace, used: int, added: float) -> dict[str, Any]:
    """The figures of ``--queued-only``: what the store holds with every URL queued."""
    return {
        "backend": backend,
        "bytes_per_queued": round(used / args.entries, 1),
        "store_mb": round(used / 2**20),
        "worker_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "add_s": round(added, 1),
    }


def keep_only_seen(url: str) -> None:
    """Delete all but the seen-set and the counters, to weigh the seen-set alone."""
    client = redis.Redis.from_url(url, socket_timeout=None)
    for key in client.scan_iter("fw:scale:*", count=1000):
        if not key.startswith(b"fw:scale:seen:") and key != b"fw:scale:meta":
            client.delete(key)


async def seen_at_density(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """The Redis seen-set's bytes per fingerprint with ``args.density`` URLs' crowding:
    ``entries`` fingerprints in as few shards as ``density`` would leave that many each."""
    per_shard = args.density / (1 << redis_frontier.SHARD_BITS)
    bits = max(1, round(math.log2(args.entries / per_shard)))
    redis_frontier.SHARD_BITS = bits  # this process's crawl only
    # As many fingerprints as make the shards exactly as crowded: past 512 a shard is no
    # longer an intset, so a rounded density would tell another story.
    count = round(per_shard * (1 << bits))
    server = RedisServer(folder / "redis")
    server.start()
    try:
        store = redis_store(server.url)
        frontier = RedisFrontier(server.url, UNLIMITED, name="scale")
        await frontier.open()
        empty = store.size()
        for batch in batches(count, args.hosts):
            await frontier.add(batch)
        await frontier.close()
        keep_only_seen(server.url)
        seen = store.size()
    finally:
        server.stop()
    return {
        "density": args.density,
        "per_shard": round(count / (1 << bits)),
        "bytes_per_fingerprint": round((seen - empty) / count, 1),
    }


def child(name: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        if name == "density":
            row = asyncio.run(seen_at_density(args, Path(folder)))
        else:
            row = asyncio.run(measure(name, args, Path(folder)))
    print(json.dumps(row))


def run_child(name: str, argv: list[str]) -> dict[str, Any]:
    """Measure in a fresh process, so that one backend's garbage does not weigh on another."""
    out = subprocess.run(
        [sys.executable, __file__, *argv, "--child", name],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    row: dict[str, Any] = json.loads(out.splitlines()[-1])
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--backends", default="redis,sqlite")
    parser.add_argument("--density", type=int, default=100_000_000)
    parser.add_argument(
        "--queued-only",
        action="store_true",
        help="only queue the URLs, and report the store's size and the worker's memory",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args)
        return 0
    argv = sys.argv[1:]
    print(f"{args.entries:,} URLs over {args.hosts:,} hosts; redis-server {redis_version()}")
    if args.queued_only:
        return queued_only(args, argv)
    print(
        f"{'backend':<8} {'B/pending':>10} {'B/fingerprint':>14} {'claims/core-s':>14} "
        f"{'settles/core-s':>15} {'B/host':>7} {'add s':>7}"
    )
    for backend in args.backends.split(","):
        row = run_child(backend, argv)
        print(
            f"{backend:<8} {row['bytes_per_pending']:>10} {row['bytes_per_fingerprint']:>14} "
            f"{row['claims_per_core_s']:>14,} {row['settles_per_core_s']:>15,} "
            f"{row['bytes_per_host']:>7} {row['add_s']:>7}"
        )
    if "redis" in args.backends and args.density:
        row = run_child("density", argv)
        print(
            f"redis seen-set as crowded as at {row['density']:,} URLs ({row['per_shard']} "
            f"per shard): {row['bytes_per_fingerprint']} B/fingerprint"
        )
    return 0


def queued_only(args: argparse.Namespace, argv: list[str]) -> int:
    print(f"{'backend':<8} {'B/queued URL':>13} {'store MB':>9} {'worker RSS MB':>14} {'add s':>7}")
    for backend in args.backends.split(","):
        row = run_child(backend, argv)
        print(
            f"{backend:<8} {row['bytes_per_queued']:>13} {row['store_mb']:>9,} "
            f"{row['worker_rss_mb']:>14,} {row['add_s']:>7}"
        )
    return 0


def redis_version() -> str:
    from tests.redis_server import redis_binary

    binary = redis_binary() or "redis-server"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[2]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
