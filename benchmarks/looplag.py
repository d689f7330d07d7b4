"""Measure how long fw blocks its event loop, with and without 2 MB pages in the crawl.

fw runs in this process (as ``tests/conftest.py``'s ``crawl()`` does) over a small shop
site served from another process, while a ticker task asks to wake every 5 ms and records
how late each wake-up is. A late tick means the loop was busy that long: every other
request in flight, timer and signal handler waited. Two sites are crawled: ~16 KB pages
only, then the same site with every ``--big-every``-th page blown up to ``--big-mb`` MB.
The floor's crawl (``limit_aiohttp.crawl``) runs the same way for comparison, and fw's
parsing of one page of each size is timed on its own: that is what one page costs the
loop. At concurrency 32 the lag also adds up the callbacks one loop iteration runs back
to back; ``--concurrency 1`` isolates the cost of a single page.

usage: python benchmarks/looplag.py [--pages 2000] [--big-every 20] [--big-mb 2]
                                    [--concurrency 32] [--period-ms 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import limit_aiohttp
from servers import running_server
from shop import ShopSpider
from shopsite import KiB, MiB, write_site

from framework.crawl import runner
from framework.fetch.parsers import parse_html
from framework.http import Request, Response

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Lag:
    """What the ticker saw during the repeats of one crawl."""

    scenario: str
    items: int  # the fewest items a repeat exported
    seconds: float  # the median duration of a crawl
    ticks: list[float]  # how late each tick was, in seconds, over all repeats

    def row(self) -> str:
        """Format the scenario as one line of the report (milliseconds)."""
        ms = sorted(1000 * t for t in self.ticks)
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        over = sum(t > 50 for t in ms)
        return (
            f"{self.scenario:<26} {self.items:>6} {self.seconds:>7.2f} "
            f"{len(ms):>6} {statistics.median(ms):>8.2f} {p99:>8.2f} {ms[-1]:>8.2f} "
            f"{over:>7}"
        )


HEADER = (
    f"{'crawler, pages':<26} {'items':>6} {'secs':>7} {'ticks':>6} "
    f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'>50 ms':>7}"
)


async def ticker(period: float, lags: list[float], stop: asyncio.Event) -> None:
    """Ask to wake every ``period`` seconds; record how much later than asked each wake is."""
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(period)
        now = time.perf_counter()
        lags.append(max(0.0, now - last - period))
        last = now


#: Crawls a site (base URL, scratch directory, concurrency) and returns the items exported.
Crawl = Callable[[str, Path, int], Awaitable[int]]


async def crawl_fw(base: str, workdir: Path, concurrency: int) -> int:
    """Crawl with fw in this event loop, the way ``tests/conftest.py``'s ``crawl()`` does."""
    prepared = runner.prepare(
        HERE / "shop.yaml",
        [
            f'start_urls=["{base}/p/0.html"]',
            f"concurrency.total={concurrency}",
            f"concurrency.per_domain={concurrency}",
        ],
        [str(workdir / "items.jsonl")],
    )
    stats = await runner.build_engine(prepared, failures_file=False).run()
    return stats.items


async def crawl_floor(base: str, workdir: Path, concurrency: int) -> int:
    """Crawl with the aiohttp + parsel floor, for comparison; its items stay in memory."""
    out = io.StringIO()
    await limit_aiohttp.crawl(base, out, concurrency)
    return out.getvalue().count("\n")


async def measured(
    crawl: Crawl, base: str, workdir: Path, concurrency: int, period: float
) -> tuple[int, float, list[float]]:
    """Run ``crawl`` while the ticker runs; return the items, the seconds and the lags."""
    lags: list[float] = []
    stop = asyncio.Event()
    tick_task = asyncio.create_task(ticker(period, lags, stop))
    started = time.perf_counter()
    try:
        items = await crawl(base, workdir, concurrency)
    finally:
        stop.set()
        await tick_task
    return items, time.perf_counter() - started, lags


def run_scenario(name: str, root: Path, args: argparse.Namespace) -> list[Lag]:
    """Serve the site under ``root`` from another process; crawl it with fw and the floor.

    Each crawl runs ``--repeat`` times, alternating, and their ticks are pooled: a loop
    busy with 32 callbacks at a time wakes the ticker only a few dozen times per crawl.
    """
    crawls: dict[str, Crawl] = {"fw": crawl_fw, "floor": crawl_floor}
    seen: dict[str, list[tuple[int, float, list[float]]]] = {c: [] for c in crawls}
    with running_server(root, args.server) as server:
        for _ in range(args.repeat):
            for crawler, crawl in crawls.items():
                with tempfile.TemporaryDirectory(prefix="fw-looplag-") as tmp:
                    seen[crawler].append(
                        asyncio.run(
                            measured(
                                crawl,
                                server.base,
                                Path(tmp),
                                args.concurrency,
                                args.period_ms / 1000,
                            )
                        )
                    )
    return [
        Lag(
            f"{crawler}, {name}",
            min(items for items, _, _ in runs),
            statistics.median(seconds for _, seconds, _ in runs),
            [lag for _, _, ticks in runs for lag in ticks],
        )
        for crawler, runs in seen.items()
    ]


def parse_cost(path: Path, repeat: int = 5) -> float:
    """Return the best time, in ms, fw takes to decode, parse and scrape one page."""
    body = path.read_bytes()
    spider = ShopSpider()
    best = float("inf")
    for _ in range(repeat):
        url = "http://127.0.0.1/p/" + path.name
        response = Response(url, 200, {"Content-Type": "text/html"}, body, Request(url), parse_html)
        started = time.perf_counter()
        list(spider.parse(response))
        best = min(best, time.perf_counter() - started)
    return 1000 * best


def main() -> None:
    """Generate both sites, crawl each with the ticker running, print the lag table."""
    args = _parser().parse_args()
    with tempfile.TemporaryDirectory(prefix="fw-looplag-sites-") as tmp:
        normal = write_site(Path(tmp) / "normal", args.pages)
        mixed = write_site(
            Path(tmp) / "mixed",
            args.pages,
            big_every=args.big_every,
            big_bytes=int(args.big_mb * MiB),
        )
        big_page = mixed.root / "p" / f"{args.big_every - 1}.html"
        print(
            f"{args.pages} pages; the mixed site has {args.pages // args.big_every} of "
            f"{big_page.stat().st_size / MiB:.1f} MB; concurrency {args.concurrency}, "
            f"tick every {args.period_ms:g} ms\n"
        )
        print(
            f"fw parses one page in {parse_cost(normal.root / 'p' / '0.html'):.2f} ms "
            f"({(normal.root / 'p' / '0.html').stat().st_size / KiB:.0f} KB) and "
            f"{parse_cost(big_page):.1f} ms ({big_page.stat().st_size / MiB:.1f} MB)\n"
        )
        results = [
            *run_scenario("16 KB pages only", normal.root, args),
            *run_scenario(f"with {args.big_mb:g} MB pages", mixed.root, args),
        ]
    print(HEADER)
    for result in results:
        print(result.row())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument(
        "--big-every", type=int, default=20, help="every Nth page is a big one (default 20)"
    )
    parser.add_argument("--big-mb", type=float, default=2.0, help="big page size in MB")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--period-ms", type=float, default=5.0, help="ticker period")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="crawls per crawler and site, ticks pooled (default 3)",
    )
    parser.add_argument(
        "--server",
        choices=["auto", "nginx", "python"],
        default="auto",
        help="auto: nginx if installed, else fastserver.py",
    )
    return parser


if __name__ == "__main__":
    main()
