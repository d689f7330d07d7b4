"""The Scrapy peer of the broad crawl, with Scrapy's broad-crawl recommendations.

Runs in its own virtualenv (``setup_peers.sh``). The settings below match fw's
``broad/fw.yaml`` (256 requests in flight, 1 per host, 2 s between two requests to a
host, jittered 0.5x-1.5x as Scrapy does by default); run.py overrides them with -s for
the one-host crawl. From "Broad Crawls" in Scrapy's docs: a scheduler queue that
spreads requests over the hosts, a bigger DNS thread pool (unused here: the hosts are
IP addresses), no cookies, no retries.

usage: scrapy runspider benchmarks/broad/scrapy_spider.py -a start_url=URL -O items.jsonl:jsonlines
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy.http import Response


class BroadSpider(scrapy.Spider):
    """Crawl every page of every host the pages link to."""

    name = "broad"
    start_url: str
    custom_settings = {  # noqa: RUF012 - Scrapy's own convention for per-spider settings
        "CONCURRENT_REQUESTS": 256,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
        "DOWNLOAD_DELAY": 2,
        "SCHEDULER_PRIORITY_QUEUE": "scrapy.pqueues.DownloaderAwarePriorityQueue",
        "REACTOR_THREADPOOL_MAXSIZE": 20,
        "COOKIES_ENABLED": False,
        "RETRY_ENABLED": False,
        "ROBOTSTXT_OBEY": False,
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,
    }

    async def start(self) -> AsyncIterator[scrapy.Request]:
        """Start from host 0's first page."""
        yield scrapy.Request(self.start_url)

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        """Yield the page's item, then a request for each of its links."""
        yield {"url": response.url, "t": time.time()}
        yield from response.follow_all(css="a[href]")
