"""Measure what a pause between two pages costs the next one, on this machine.

A crawl held to a polite pace handles a page, sleeps until the next response, and
handles that one: the broad benchmark's crawl wakes once or twice a page where a crawl
running flat out handles dozens of pages a wake-up. This parses the same broad-site page
(``broadsite.py``: ~4 KB, ~30 links) with parsel, as a spider would (its title and every
``a[href]``), in three ways, and times the CPU of each parse alone:

- **back to back**: page after page, the way a saturated crawl runs;
- **paced**: a sleep of ``--pause-ms`` between two pages, the way a paced crawl runs;
- **in bursts**: ``--burst`` pages back to back, then one sleep as long as their pauses.

The three take turns, round after round, and each is compared with back to back in its own
round: the machine's speed drifts more between rounds than between two modes of one.
No crawler is involved: what it shows is the machine's, and any crawl that sleeps between
pages pays it.

usage: python benchmarks/pace.py [--pages 100] [--rounds 30] [--pause-ms 0.3] [--burst 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from broadsite import sample_page
from parsel import Selector

Mode = Callable[[bytes, int, float], list[float]]


def parse(body: bytes) -> int:
    """Do a spider's work on one page: its title and every link."""
    selector = Selector(body=body, type="html")
    selector.css("title::text").get()
    return len(selector.css("a::attr(href)").getall())


def timed(body: bytes) -> float:
    """Return the CPU seconds one parse of ``body`` takes."""
    started = time.thread_time()
    parse(body)
    return time.thread_time() - started


def back_to_back(body: bytes, pages: int, pause: float) -> list[float]:
    return [timed(body) for _ in range(pages)]


def paced(body: bytes, pages: int, pause: float) -> list[float]:
    costs = []
    for _ in range(pages):
        time.sleep(pause)
        costs.append(timed(body))
    return costs


def bursts(body: bytes, pages: int, pause: float, burst: int) -> list[float]:
    costs: list[float] = []
    while len(costs) < pages:
        time.sleep(pause * burst)
        costs += (timed(body) for _ in range(min(burst, pages - len(costs))))
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pages", type=int, default=100, help="parses per mode and round")
    parser.add_argument("--rounds", type=int, default=30, help="rounds of the three modes")
    parser.add_argument("--pause-ms", type=float, default=0.3, help="sleep between two pages")
    parser.add_argument("--burst", type=int, default=30, help="pages a burst parses together")
    args = parser.parse_args()
    body, pause = sample_page(), args.pause_ms / 1000
    modes: dict[str, Mode] = {
        "back to back": back_to_back,
        f"paced, {args.pause_ms:g} ms apart": paced,
        f"in bursts of {args.burst}": lambda b, n, p: bursts(b, n, p, args.burst),
    }
    rounds = [
        {name: statistics.median(mode(body, args.pages, pause)) for name, mode in modes.items()}
        for _ in range(args.rounds)
    ]
    print(
        f"CPU of one parse of a {len(body):,}-byte page with {parse(body)} links, "
        f"{args.rounds} rounds of {args.pages} parses a mode; the machine's speed drifts, "
        "so each mode is compared with back to back within its round\n"
    )
    print(f"  {'':<24} {'µs a parse':>10}  {'/ back to back':>14}  {'rounds':>13}")
    for name in modes:
        cost = statistics.median(found[name] for found in rounds)
        ratios = [found[name] / found["back to back"] for found in rounds]
        spread = f"{min(ratios):.2f}–{max(ratios):.2f}x"
        print(f"  {name:<24} {cost * 1e6:10.0f}  {statistics.median(ratios):13.2f}x  {spread:>13}")


if __name__ == "__main__":
    main()
