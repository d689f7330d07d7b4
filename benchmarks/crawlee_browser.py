"""The Crawlee peer of the browser benchmark: ``PlaywrightCrawler`` on the JS shop.

Runs in its own virtualenv (``setup_peers.sh``) with Crawlee's defaults, except that it
runs the same Chromium as fw (``executable_path``) and its concurrency is pinned so that
it cannot autoscale away from fw's. Like fw's project, it waits for ``.product``.

usage: python benchmarks/crawlee_browser.py BASE OUT.json CONCURRENCY CHROMIUM
"""

from __future__ import annotations

import asyncio
import sys

from crawlee import ConcurrencySettings
from crawlee.crawlers import PlaywrightCrawler, PlaywrightCrawlingContext


async def crawl(base: str, out: str, concurrency: int, chromium: str) -> None:
    """Render every page reachable from ``base/js/0`` and export one item per page."""
    crawler = PlaywrightCrawler(
        browser_type="chromium",
        headless=True,
        # as fw (Playwright's default): Chromium refuses its sandbox when run as root
        browser_launch_options={"executable_path": chromium, "chromium_sandbox": False},
        concurrency_settings=ConcurrencySettings(
            min_concurrency=concurrency,
            desired_concurrency=concurrency,
            max_concurrency=concurrency,
        ),
        max_requests_per_crawl=None,
    )

    @crawler.router.default_handler
    async def handler(context: PlaywrightCrawlingContext) -> None:
        page = context.page
        await page.wait_for_selector(".product")
        await context.push_data(
            {
                "url": context.request.url,
                "names": await page.locator(".product h2").all_inner_texts(),
            }
        )
        await context.enqueue_links(selector="a.next")

    await crawler.run([base + "/js/0"])
    await crawler.export_data(out)


if __name__ == "__main__":
    asyncio.run(crawl(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
