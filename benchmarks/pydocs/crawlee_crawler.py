"""The Crawlee peer for the Python docs: ``ParselCrawler`` with ``enqueue_links``.

Runs in its own virtualenv (``setup_peers.sh``), concurrency pinned as for the shop.
``enqueue_links`` keeps to the page's host by default (``strategy="same-hostname"``) and
leaves fragments out of its duplicate check but not out of the URL it fetches and
reports, so each link is enqueued without its fragment.

usage: python benchmarks/pydocs/crawlee_crawler.py BASE OUT.json CONCURRENCY
"""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import urldefrag

from crawlee import ConcurrencySettings, RequestOptions
from crawlee.crawlers import ParselCrawler, ParselCrawlingContext


def without_fragment(options: RequestOptions) -> RequestOptions:
    """Drop the link's fragment: the page is the same with or without it."""
    options["url"] = urldefrag(options["url"])[0]
    return options


async def crawl(base: str, out: str, concurrency: int) -> None:
    """Crawl every page reachable from ``base/index.html`` and export the items to ``out``."""
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
        page = context.selector
        await context.push_data(
            {
                "url": context.request.url,
                "title": page.css("title::text").get(),
                "h1": page.css("h1::text").get(),
                "links": len(page.css("a[href]")),
            }
        )
        await context.enqueue_links(
            selector="a[href]",
            strategy="same-hostname",
            transform_request_function=without_fragment,
        )

    await crawler.run([base + "/index.html"])
    await crawler.export_data(out)


if __name__ == "__main__":
    asyncio.run(crawl(sys.argv[1], sys.argv[2], int(sys.argv[3])))
