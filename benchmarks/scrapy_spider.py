"""The Scrapy peer: the same crawl as the floor, one item per page, related links followed.

Runs in its own virtualenv (``setup_peers.sh``); run.py passes the concurrency with -s:
  scrapy runspider benchmarks/scrapy_spider.py -a base=BASE -O items.jsonl:jsonlines \
      -s CONCURRENT_REQUESTS=32 -s CONCURRENT_REQUESTS_PER_DOMAIN=32
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy.http import Response


class ShopSpider(scrapy.Spider):
    """Scrape the generated shop site with Scrapy's defaults, bar logging and robots.txt."""

    name = "shop"
    base: str
    custom_settings = {  # noqa: RUF012 - Scrapy's own convention for per-spider settings
        "LOG_LEVEL": "WARNING",
        "ROBOTSTXT_OBEY": False,  # fw does not read robots.txt yet: compare like with like
        "TELNETCONSOLE_ENABLED": False,
    }

    async def start(self) -> AsyncIterator[scrapy.Request]:
        """Start from the page every other is reachable from."""
        yield scrapy.Request(self.base + "/p/0.html")

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        """Yield the page's product, then a request for each related product."""
        product = response.css("div.product")
        yield {
            "url": response.url,
            "sku": product.attrib.get("data-sku"),
            "title": product.css("h1.title::text").get(),
            "price": float(product.css("span.price::text").get() or "nan"),
            "desc": product.css("p.desc::text").get(),
        }
        for href in response.css("ul.related a::attr(href)").getall():
            yield response.follow(href, self.parse)
