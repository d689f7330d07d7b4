"""Read a broad crawl's pace from its items: each carries its URL and when it was parsed.

* **all hosts known**: when the last host's first page came. Until then the crawl is
  still finding hosts, and fewer hosts means a lower politeness-bound rate.
* **first host done**: when the first host's last page came. From then on some host has
  nothing left, and the politeness-bound rate falls again.
* **sustained rate**: pages parsed between the two, per second. Over that window every
  host has pages left, so the best any crawler can do is the lower of two ideals: the
  politeness-bound ``hosts / delay`` and the CPU-bound rate of the same pages from one
  host with no delay.

Times are seconds from the first page. The hosts are the URLs' host names.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Timeline", "politeness_floor", "read_times", "timeline"]


@dataclass(frozen=True)
class Timeline:
    """When a crawl's pages came, as the figures the broad benchmark reports."""

    pages: int
    hosts: int
    crawl_s: float  # first page to last
    all_known_s: float  # the last host's first page
    first_done_s: float  # the first host's last page
    window_pages: int  # pages parsed between the two

    @property
    def crawl_rate(self) -> float:
        """Pages per second from the first page to the last (start-up left out)."""
        return self.pages / self.crawl_s if self.crawl_s > 0 else 0.0

    @property
    def window_s(self) -> float:
        """How long every host was known and none was done (0 if never)."""
        return max(0.0, self.first_done_s - self.all_known_s)

    @property
    def sustained_rate(self) -> float:
        """Pages per second while every host was known and none was done."""
        return self.window_pages / self.window_s if self.window_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """Return every field and derived figure, for the results file."""
        derived = {
            "crawl_rate": self.crawl_rate,
            "window_s": self.window_s,
            "sustained_rate": self.sustained_rate,
        }
        return asdict(self) | derived


def read_times(path: Path) -> list[tuple[str, float]]:
    """Return ``(url, t)`` of each item of a JSON-lines export (a torn last line is skipped)."""
    found = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        found.append((item["url"], float(item["t"])))
    return found


def timeline(items: Iterable[tuple[str, float]]) -> Timeline | None:
    """Work out the crawl's pace from ``(url, t)`` pairs; None if there are none."""
    firsts: dict[str, float] = {}
    lasts: dict[str, float] = {}
    times = []
    for url, t in items:
        host = urlsplit(url).hostname or ""
        times.append(t)
        firsts[host] = min(t, firsts.get(host, t))
        lasts[host] = max(t, lasts.get(host, t))
    if not times:
        return None
    start = min(times)
    known, done = max(firsts.values()), min(lasts.values())
    return Timeline(
        pages=len(times),
        hosts=len(firsts),
        crawl_s=max(times) - start,
        all_known_s=known - start,
        first_done_s=done - start,
        window_pages=sum(1 for t in times if known <= t <= done),
    )


def politeness_floor(hosts: int, pages: int, delay: float, trials: int = 20) -> float:
    """Return the least time any crawl needs for ``pages`` pages on each of ``hosts``.

    A host's first page may come at once, each next one a jittered delay later (0.5x to
    1.5x, uniformly, as fw and Scrapy both draw it): the crawl lasts as long as its
    slowest host's ``pages - 1`` delays, here averaged over ``trials`` draws. Finding the
    hosts and the start-up come on top.
    """
    rng = random.Random(1)
    slowest = [
        max(sum(delay * (0.5 + rng.random()) for _ in range(pages - 1)) for _ in range(hosts))
        for _ in range(trials)
    ]
    return sum(slowest) / trials
