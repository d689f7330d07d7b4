"""Measure what the HTTP client alone pays a fetch at 2,000 hosts, at a broad crawl's pace.

The broad benchmark compares fw's CPU per page on 2,000 paced hosts with one host flat out.
Part of the difference is not fw's: aiohttp and the kernel pay more for a fetch on a
connection that has sat idle for seconds among 2,000 others than for one of 256 busy
connections to one host. This fetches the broad site's pages (``broadsite.py``) with
aiohttp alone, nothing parsed, in four ways:

- ``one``: the one-host copy, ``--concurrency`` in flight, flat out;
- ``hosts``: the same pages from the 2,000 hosts, flat out;
- ``one-waves``: the one-host copy, paced as fw paces a broad crawl: host *i*'s page *p*
  is due at *p* × ``--delay`` plus its wave's offset, in waves of a quarter of the delay;
- ``hosts-waves``: the 2,000 hosts in the same waves: the broad crawl's fetches.

Each runs in a child process of its own (a fresh pool and fresh caches) that times the CPU
of its fetches (user and system) from its first request to its last answer, start-up left
out. The modes take turns round after round, and each is divided by ``one`` of its own
round, because the machine's speed drifts between rounds. yarl's host caches are sized as
fw sizes them, so that the client does not parse 2,000 addresses again on every request.

usage: python benchmarks/client.py [--hosts 2000] [--pages-per-host 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import yarl
from broad import raise_file_limit
from broadsite import BroadSite, address, ensure_broad_site
from servers import serving_hosts

HERE = Path(__file__).resolve().parent
MODES = ("one", "hosts", "one-waves", "hosts-waves")
#: Waves in one delay: fw's at ``delay: 2`` (``framework.fetch.politeness.wave_of``).
_WAVES = 4


def main() -> int:
    args = _arguments()
    if args.child:  # one mode's plan comes on standard input: too long for an argument
        print(json.dumps(asyncio.run(_fetch_all(json.load(sys.stdin)))))
        return 0
    raise_file_limit(args.hosts)
    root = HERE / "site-broad" / f"{args.hosts}x{args.pages_per_host}"
    site = ensure_broad_site(root, args.hosts, args.pages_per_host)
    addresses = [address(host) for host in range(site.hosts)]
    with serving_hosts(site.single_root, site.broad_root, addresses, site.port, {}):
        rounds = [_round(site, args, number) for number in range(1, args.rounds + 1)]
    _report(rounds)
    return 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hosts", type=int, default=2000, help="hosts of the broad site")
    parser.add_argument("--pages-per-host", type=int, default=20, help="pages of each host")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds between two pages")
    parser.add_argument("--concurrency", type=int, default=256, help="fetches in flight")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the four modes")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def _round(site: BroadSite, args: argparse.Namespace, number: int) -> dict[str, float]:
    """Run each mode once in its own process; return its CPU µs a fetch."""
    costs = {}
    for mode in MODES:
        plan = {"urls": _urls(site, mode), "concurrency": args.concurrency}
        plan["due"] = _due(site, args.delay) if mode.endswith("waves") else None
        done = subprocess.run(
            [sys.executable, __file__, "--child"],
            input=json.dumps(plan),
            check=True,
            capture_output=True,
            text=True,
        )
        measured = json.loads(done.stdout)
        if measured["failed"]:
            raise SystemExit(f"{mode}: {measured['failed']} fetches failed: {measured['error']}")
        costs[mode] = 1e6 * measured["cpu"] / len(plan["urls"])
        print(f"round {number}, {mode}: {costs[mode]:.0f} µs a fetch", flush=True)
    return costs


def _urls(site: BroadSite, mode: str) -> list[str]:
    """Every page, page 0 of every host first: the order a crawl finds them in."""
    single = mode.startswith("one")
    return [site.url(h, p, single) for p in range(site.pages) for h in range(site.hosts)]


def _due(site: BroadSite, delay: float) -> list[float]:
    """When each of ``_urls``' fetches may start, in seconds from the first."""
    wave = delay / _WAVES
    return [p * delay + h % _WAVES * wave for p in range(site.pages) for h in range(site.hosts)]


async def _fetch_all(plan: dict[str, object]) -> dict[str, object]:
    """In the child: fetch ``plan``'s URLs, each once its time is due; return the CPU."""
    urls, due = plan["urls"], plan["due"]
    assert isinstance(urls, list) and isinstance(plan["concurrency"], int)
    yarl.cache_configure(idna_encode_size=65536, idna_decode_size=65536, encode_host_size=65536)
    connector = aiohttp.TCPConnector(limit=plan["concurrency"], limit_per_host=0)
    slots = asyncio.Semaphore(plan["concurrency"])
    failures: list[str] = []
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

        async def fetch(url: str) -> None:
            async with slots:
                try:
                    async with session.get(url) as response:
                        if response.status != 200 or not await response.read():
                            failures.append(f"{url}: {response.status}")
                except aiohttp.ClientError as exc:
                    failures.append(f"{url}: {exc!r}")

        started = _cpu()
        await _in_time(fetch, urls, due if isinstance(due, list) else None)
        spent = _cpu() - started
    return {"cpu": spent, "failed": len(failures), "error": failures[:1]}


async def _in_time(
    fetch: Callable[[str], Awaitable[None]], urls: list[str], due: list[float] | None
) -> None:
    """Start each fetch when it is due (all at once without ``due``); wait for them all."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.TaskGroup() as group:
        for index, url in enumerate(urls):
            if due is not None and due[index] > loop.time() - start:
                await asyncio.sleep(due[index] - (loop.time() - start))
            group.create_task(fetch(url))


def _cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def _report(rounds: list[dict[str, float]]) -> None:
    print("\nmode          CPU µs a fetch (median)   / one, round by round        median")
    for mode in MODES:
        ratios = [costs[mode] / costs["one"] for costs in rounds]
        listed = ", ".join(f"{ratio:.2f}" for ratio in ratios)
        median = statistics.median(costs[mode] for costs in rounds)
        print(f"{mode:<13} {median:>22.0f}   {listed:<28} {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    sys.exit(main())
