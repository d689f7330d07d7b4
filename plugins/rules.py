r"""The ``rules`` spider: a crawl described entirely in the project file, with no Python.

Follow rules say which links to follow; item rules say which items to extract, each
field with a CSS or XPath query. Every page the crawl fetches goes through every rule
whose ``pages:`` matches its URL. The whole section is validated when the project loads,
selectors and regexes included, so a typo is an ``Error: FILE:LINE: key: ...``, not an
empty export. The schema, by example::

    spider: rules
    start_urls: [https://quotes.toscrape.com/]
    rules:
      follow:                      # links to follow; a string is a CSS query
        - li.next a
        - css: .quote a[href^="/author/"]  # elements: their href or src, else the links
                                   # inside them; ::attr() strings are taken as URLs.
                                   # Or xpath: instead; neither: every a[href]
          match: /author/          # only links whose absolute URL this regex matches
          pages: '/(page/\d+/)?$'  # only on pages whose URL this regex matches
      items:                       # at least one item rule
        - each: div.quote          # one item per match (or each_xpath:); default: the page
          fields:                  # queried inside the `each` match
            text: span.text::text  # a string is a CSS query
            author: {css: small.author::text, required: true}  # missing: skip the item
            tags: {css: a.tag::text, many: true}               # every match, as a list
            author_url: {css: 'a[href^="/author/"]', type: url}  # its href, made absolute
            id: {css: span.text, attr: data-id, type: int}     # an attribute, as a number
            year: {xpath: './/span[@class="year"]/text()', re: '\d{4}', type: int}
            likes: {css: .likes, type: int, default: 0}        # "1.2k" is 1200
            page: {value: url}     # the page's URL
            kind: {const: quote}   # a fixed value, e.g. to tell item kinds apart
        - pages: /author/          # only on pages whose URL this regex matches
          fields: {name: h3.author-title::text}

A field takes its value from exactly one of ``css``, ``xpath``, ``value`` or ``const``:
the first match that gives one, or every match with ``many``. A matched element gives
its text content (``attr:`` one of its attributes instead; with ``type: url``, its href or
src). Whitespace is normalised. ``re`` keeps the first group (or the whole match) of its
first match. ``type`` converts the text: ``str``; ``int`` and ``float`` read the first
number (``1,234`` → 1234, ``1.5k`` → 1500, ``3M``, ``2B``; a fraction is dropped for
``int``); ``bool`` is false for false/no/off/0 and true for any other match, an empty
element included (a flag: ``<span class="sale"></span>`` there or not); ``url`` is
joined against the page. Any other field is missing when nothing matched or the text is
empty: it is then null (``[]`` with ``many``), or its ``default``. Inside ``each``, an XPath
starting with ``//`` searches the whole page: write ``.//`` to stay inside.

This module is the plugin: the spider and its hooks. The section's schema, and what each
rule extracts, is in ``plugins.rules_schema``; reading matched nodes and converting their
text by ``type`` in ``plugins.rules_values``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from parsel import Selector

from framework import NotSupported, Request, Response, Spider, hookimpl

from .rules_schema import Field, FollowRule, ItemRule, Query, RulesOptions
from .rules_values import is_element

__all__ = ["Field", "FollowRule", "ItemRule", "Query", "RulesOptions", "RulesSpider"]

log = logging.getLogger("fw.spider.rules")


class RulesSpider(Spider):
    """Follow links and extract items as the project file's ``rules:`` section says."""

    name = "rules"
    Options = RulesOptions
    options: RulesOptions

    def __init__(self, options: RulesOptions, *, start_urls: Iterable[str] = ()) -> None:
        super().__init__(options, start_urls=start_urls)
        #: Items skipped for a missing required field, by rule and field.
        self.skipped: Counter[str] = Counter()

    def parse(self, response: Response) -> Iterator[dict[str, Any] | Request]:
        """Yield the page's items, then a request for each link to follow; then fail the
        page if an ``each`` matched text, attributes or a value, which hold no fields."""
        try:
            page = response.selector
        except NotSupported:  # an image or PDF a broad follow rule led to: nothing to read
            self.logger.debug("no parser for %s; not read: %s", response.media_type, response.url)
            return
        strays: list[str] = []
        yield from self._items(page, response, strays)
        for url in dict.fromkeys(self._links(page, response)):
            yield Request(url)
        if strays:  # last: the page's other items and links are kept
            raise ValueError(
                f"{', '.join(strays)} matched strings or a value, not elements: no item is "
                "read from those; select elements, and read text in fields"
            )

    def _items(
        self, page: Selector, response: Response, strays: list[str]
    ) -> Iterator[dict[str, Any]]:
        for index, rule in enumerate(self.options.items):
            if rule.pages is not None and not rule.pages.search(response.url):
                continue
            found = rule.scopes(page)
            scopes = [scope for scope in found if is_element(scope)]
            if len(scopes) < len(found):
                key = "each" if rule.each is not None else "each_xpath"
                strays.append(f"rules.items[{index}].{key}")
            for scope in scopes:
                item = rule.extract(scope, response)
                if (missing := rule.missing(item)) is None:
                    yield item
                else:
                    self._skip(f"rules.items[{index}].fields.{missing}", response)

    def _links(self, page: Selector, response: Response) -> Iterator[str]:
        for rule in self.options.follow:
            if rule.pages is None or rule.pages.search(response.url):
                yield from rule.links(page, response)

    def _skip(self, field: str, response: Response) -> None:
        self.skipped[field] += 1
        self.logger.debug("item skipped: %s is missing on %s", field, response.url)


@hookimpl(trylast=True)  # bundled: any installed plugin may override it
def register_spiders(register: Callable[[type[Spider]], None]) -> None:
    """Provide the ``rules`` spider."""
    register(RulesSpider)


@hookimpl
def crawl_finished(spider: Spider) -> None:
    """Say once, at the end, how many items lacked a required field (each is logged at debug)."""
    if isinstance(spider, RulesSpider) and spider.skipped:
        counts = ", ".join(f"{field} {n}" for field, n in spider.skipped.most_common())
        log.warning("items skipped for lacking a required field: %s", counts)
