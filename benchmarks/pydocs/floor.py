"""The naive floor for the Python docs: aiohttp + parsel, N workers on a queue, a seen-set.

The team's ``shared/bench/floor_docs.py``, kept as naive as it was on purpose: it is the
baseline the benchmark is defined against. Every ``a[href]`` becomes a parsel
``Selector``, and its href goes through ``urljoin`` and ``urldefrag``; same host only.
One item per page answered 200 (url, title, h1, link count); a page that is not HTML
is an item with no title, h1 or links. Changed from the original: such pages carry the
same keys, and a page that fails is counted (exit 1) instead of passing silently.

usage: python benchmarks/pydocs/floor.py BASE OUT.jsonl CONCURRENCY
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TextIO
from urllib.parse import urldefrag, urljoin

import aiohttp
from parsel import Selector


async def crawl(start: str, out: TextIO, concurrency: int) -> int:
    """Crawl every page reachable from ``start`` on its host; return how many failed."""
    host = start.split("/")[2]
    seen, queue = {start}, asyncio.Queue[str]()
    queue.put_nowait(start)
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            while True:
                url = await queue.get()
                try:
                    async with session.get(url) as response:
                        body = await response.read()
                        status = response.status
                        content_type = response.headers.get("Content-Type", "")
                    if status != 200:
                        continue
                    for link in scrape(url, body, "html" in content_type, out):
                        if link.split("/")[2:3] == [host] and link not in seen:
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


def scrape(url: str, body: bytes, is_html: bool, out: TextIO) -> list[str]:
    """Write the page's item as one JSON line; return its links, absolute, unfragmented."""
    if not is_html:
        out.write(json.dumps({"url": url, "title": None, "h1": None, "links": 0}) + "\n")
        return []
    page = Selector(text=body.decode("utf-8", "replace"))
    links = page.css("a[href]")
    item = {
        "url": url,
        "title": page.css("title::text").get(),
        "h1": page.css("h1::text").get(),
        "links": len(links),
    }
    out.write(json.dumps(item) + "\n")
    return [urldefrag(urljoin(url, a.attrib["href"]))[0] for a in links]


def main() -> None:
    """Parse the command line and crawl."""
    base, out, concurrency = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    with out.open("w", encoding="utf-8") as file:
        failures = asyncio.run(crawl(base + "/index.html", file, concurrency))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
