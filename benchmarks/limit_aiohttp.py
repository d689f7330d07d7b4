"""The floor an asyncio crawler pays: aiohttp + parsel, N workers on a queue, JSON lines out.

No retries, no politeness, no plugins: what an asyncio crawler cannot go below. Copied
from the team's ``shared/bench/limit_aiohttp.py`` with the same crawl; the only change is
that a page that fails is counted instead of silently killing its worker (which would have
lowered the concurrency for the rest of the run).

usage: python benchmarks/limit_aiohttp.py BASE OUT.jsonl CONCURRENCY [uvloop]
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TextIO
from urllib.parse import urljoin

import aiohttp
from parsel import Selector


async def crawl(base: str, out: TextIO, concurrency: int) -> int:
    """Crawl every page reachable from ``base/p/0.html``; return how many pages failed."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    seen = {base + "/p/0.html"}
    queue.put_nowait(base + "/p/0.html")
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            while True:
                url = await queue.get()
                try:
                    async with session.get(url) as response:
                        text = await response.text()
                    for link in scrape(url, text, out):
                        if link not in seen:
                            seen.add(link)
                            queue.put_nowait(link)
                except Exception as exc:
                    failures += 1
                    print(f"{url}: {type(exc).__name__}: {exc}", file=sys.stderr)
                finally:
                    queue.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await queue.join()
        for task in workers:
            task.cancel()
    return failures


def scrape(url: str, text: str, out: TextIO) -> list[str]:
    """Write the page's item as one JSON line; return the absolute related links."""
    page = Selector(text=text)
    product = page.css("div.product")
    item = {
        "url": url,
        "sku": product.attrib.get("data-sku"),
        "title": product.css("h1.title::text").get(),
        "price": float(product.css("span.price::text").get() or "nan"),
        "desc": product.css("p.desc::text").get(),
    }
    out.write(json.dumps(item, ensure_ascii=False) + "\n")
    return [urljoin(url, href) for href in page.css("ul.related a::attr(href)").getall()]


def main() -> None:
    """Parse the command line and crawl."""
    base, out, concurrency = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    if sys.argv[4:] == ["uvloop"]:
        import uvloop

        uvloop.install()
    with out.open("w", encoding="utf-8") as file:
        failures = asyncio.run(crawl(base, file, concurrency))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
