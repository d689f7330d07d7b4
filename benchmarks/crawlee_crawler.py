"""The Crawlee peer: the same crawl as the floor with Crawlee for Python's ParselCrawler.

Runs in its own virtualenv (``setup_peers.sh``) with Crawlee's defaults (its HTTP client,
its file-system storage under ./storage, so run.py starts it in a scratch directory),
except that the concurrency is pinned so that it cannot autoscale away from the others'.

usage: python benchmarks/crawlee_crawler.py BASE OUT.json CONCURRENCY
"""

from __future__ import annotations

import asyncio
import sys

from crawlee import ConcurrencySettings
from crawlee.crawlers import ParselCrawler, ParselCrawlingContext


async def crawl(base: str, out: str, concurrency: int) -> None:
    """Crawl every page reachable from ``base/p/0.html`` and export the items to ``out``."""
    crawler = ParselCrawler(
        concurrency_settings=ConcurrencySettings(
            min_concurrency=concurrency,
            desired_concurrency=concurrency,
            max_concurrency=concurrency,
        ),
        max_requests_per_crawl=None,
    )

    @crawler.router.default_handler
    async def handler(context: ParselCrawlingContext) -> None:
        product = context.selector.css("div.product")
        await context.push_data(
            {
                "url": context.request.url,
                "sku": product.attrib.get("data-sku"),
                "title": product.css("h1.title::text").get(),
                "price": float(product.css("span.price::text").get() or "nan"),
                "desc": product.css("p.desc::text").get(),
            }
        )
        await context.enqueue_links(selector="ul.related a")

    await crawler.run([base + "/p/0.html"])
    await crawler.export_data(out)


if __name__ == "__main__":
    asyncio.run(crawl(sys.argv[1], sys.argv[2], int(sys.argv[3])))
