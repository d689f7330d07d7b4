"""The Scrapy peer for the Python docs: the same crawl as the floor, written idiomatically.

Runs in its own virtualenv (``setup_peers.sh``); run.py passes the concurrency with -s:
  scrapy runspider benchmarks/pydocs/scrapy_spider.py -a base=BASE -O items.jsonl:jsonlines \
      -s CONCURRENT_REQUESTS=16 -s CONCURRENT_REQUESTS_PER_DOMAIN=16

Scrapy's duplicate filter ignores fragments, so each page is fetched once, but its
``response.url`` keeps the fragment of the link that found it: the item drops it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urldefrag, urlsplit

import scrapy
from scrapy.http import Response, TextResponse


class DocsSpider(scrapy.Spider):
    """Crawl the docs with Scrapy's defaults, bar logging and robots.txt."""

    name = "pydocs"
    base: str
    custom_settings = {  # noqa: RUF012 - Scrapy's own convention for per-spider settings
        "LOG_LEVEL": "WARNING",
        "ROBOTSTXT_OBEY": False,
        "TELNETCONSOLE_ENABLED": False,
    }

    def __init__(self, base: str, **kwargs: Any) -> None:
        super().__init__(base=base, **kwargs)
        self.allowed_domains = [urlsplit(base).hostname]

    async def start(self) -> AsyncIterator[scrapy.Request]:
        """Start from the docs' home page."""
        yield scrapy.Request(self.base + "/index.html")

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        """Yield the page's item, then a request for each of its links."""
        url = urldefrag(response.url)[0]
        if not isinstance(response, TextResponse):
            yield {"url": url, "title": None, "h1": None, "links": 0}
            return
        links = response.css("a[href]")
        yield {
            "url": url,
            "title": response.css("title::text").get(),
            "h1": response.css("h1::text").get(),
            "links": len(links),
        }
        yield from response.follow_all(links)
