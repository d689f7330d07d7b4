"""The benchmark's fw spider: the same crawl as the floor (``limit_aiohttp.py``).

One item per product page (url, sku, title, price, desc), and every link in
``ul.related`` followed with ``follow_all``, fw's way of following many links; fw's
frontier drops the pages already seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from framework import Request, Response, Spider, hookimpl

__all__ = ["ShopSpider"]


class ShopSpider(Spider):
    """Scrape the generated shop site."""

    name = "shop"

    def parse(self, response: Response) -> Iterator[dict[str, Any] | Request]:
        """Yield the page's product, then a request for each related product."""
        product = response.css("div.product")
        yield {
            "url": response.url,
            "sku": product.attrib.get("data-sku"),
            "title": product.css("h1.title::text").get(),
            "price": float(product.css("span.price::text").get() or "nan"),
            "desc": product.css("p.desc::text").get(),
        }
        yield from response.follow_all(css="ul.related a")


@hookimpl
def register_spiders(register: Callable[[type[Spider]], None]) -> None:
    """Make ``spider: shop`` available."""
    register(ShopSpider)
