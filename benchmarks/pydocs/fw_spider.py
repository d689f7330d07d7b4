"""The benchmark's fw spider for the Python docs, written as a fw user would write it.

One item per page answered 200 (url, title, h1, link count), every ``a[href]`` followed;
fw drops the fragments, the links to other hosts (``allowed_domains`` defaults to the
start URL's host) and the pages already seen. A page fw does not parse (not HTML)
matches no query: an item with no title, h1 or links.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from framework import Request, Response, Spider, hookimpl

__all__ = ["DocsSpider"]


class DocsSpider(Spider):
    """Crawl a documentation site."""

    name = "pydocs"

    def parse(self, response: Response) -> Iterator[dict[str, Any] | Request]:
        """Yield the page's item, then a request for each of its links."""
        yield {
            "url": response.url,
            "title": response.css("title::text").get(),
            "h1": response.css("h1::text").get(),
            "links": int(float(response.xpath("count(//a[@href])").get() or 0)),
        }
        yield from response.follow_all(css="a[href]")


@hookimpl
def register_spiders(register: Callable[[type[Spider]], None]) -> None:
    """Make ``spider: pydocs`` available."""
    register(DocsSpider)
