"""The broad crawl's fw spider: one item per page, with the time it was parsed; every link.

The time (``t``, seconds since the epoch) is what the benchmark reads the crawl's pace
from: when the last new host's first page came, and the rate after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from framework import Request, Response, Spider, hookimpl

__all__ = ["BroadSpider"]


class BroadSpider(Spider):
    """Crawl every page of every host the pages link to."""

    name = "broad"

    def parse(self, response: Response) -> Iterator[dict[str, Any] | Request]:
        """Yield the page's item, then a request for each of its links."""
        yield {"url": response.url, "t": time.time()}
        yield from response.follow_all(css="a[href]")


@hookimpl
def register_spiders(register: Callable[[type[Spider]], None]) -> None:
    """Make ``spider: broad`` available."""
    register(BroadSpider)
