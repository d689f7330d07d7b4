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
``int``); ``bool`` is false for false/no/off/0 and true for any other match; ``url`` is
joined against the page. A field is missing when nothing matched or the text is empty: it
is then null (``[]`` with ``many``), or its ``default``. Inside ``each``, an XPath
starting with ``//`` searches the whole page: write ``.//`` to stay inside.
"""

from __future__ import annotations

import copy
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from re import Pattern
from types import MappingProxyType
from typing import Any, Literal

from cssselect import SelectorError
from parsel import Selector, css2xpath

from framework import NotSupported, Request, Response, Spider, hookimpl, option
from framework.schema import build, convert
from framework.yamlfile import KeyPath, Source

__all__ = ["Field", "FollowRule", "ItemRule", "Query", "RulesOptions", "RulesSpider"]

log = logging.getLogger("fw.spider.rules")

FieldType = Literal["str", "int", "float", "bool", "url"]


@dataclass(frozen=True)
class Query:
    """A CSS or XPath query as written, and the XPath it runs as."""

    written: str
    xpath: str


# ---------------------------------------------------------------------------------------
# Parsing: compile every selector and regex once, when the project file is loaded
# ---------------------------------------------------------------------------------------

#: An empty page to run each XPath on once: lxml reports bad syntax and unknown functions
#: only when an expression is evaluated. parsel then caches the compiled expression.
_PROBE = Selector(text="<html></html>")


def _compiled(compile: Callable[[str], Any], what: str,
              errors: type[Exception]) -> Callable[[Any, Source, KeyPath], Any]:
    """Make a ``parse=`` hook that compiles a string option, reporting errors at its key."""
    def parse(raw: Any, source: Source, path: KeyPath) -> Any:
        if raw is None:
            return None
        text = convert(str, raw, source, path)
        try:
            return compile(text)
        except errors as exc:
            raise source.error(path, f"not a valid {what}: {exc}") from None
    return parse


def _css_query(text: str) -> Query:
    return Query(text, css2xpath(text))


def _xpath_query(text: str) -> Query:
    _PROBE.xpath(text)
    return Query(text, text)


_css = _compiled(_css_query, "CSS selector", SelectorError)
_xpath = _compiled(_xpath_query, "XPath expression", ValueError)
_regex = _compiled(re.compile, "regular expression", re.error)
#: What a follow rule without css or xpath follows.
_ALL_LINKS = _css_query("a[href]")


def _entry(raw: Any, schema: type[Any], source: Source, path: KeyPath) -> Any:
    """Build ``schema`` from a mapping, or from a string taken as its CSS query."""
    if isinstance(raw, str):
        return schema(css=_css(raw, source, path))
    if isinstance(raw, Mapping):
        return build(schema, raw, source, path)
    got = "a list" if isinstance(raw, list) else "nothing" if raw is None else repr(raw)
    raise source.error(path, f"expected a CSS query or a mapping such as {{css: h1}}, got {got}")


def _fields(raw: Any, source: Source, path: KeyPath) -> Mapping[str, Field]:
    if not isinstance(raw, Mapping) or not raw:
        raise source.error(path, "expected a mapping of field names to CSS queries or "
                           "options, such as {title: h1, price: {css: .price, type: float}}")
    for name in raw:
        if not isinstance(name, str):  # YAML reads `on:`, `no:` as booleans, `1:` as a number
            raise source.error(path, f"field name {name!r} is not a string: quote it")
    return MappingProxyType({name: _entry(spec, Field, source, (*path, name))
                             for name, spec in raw.items()})


def _follow(raw: Any, source: Source, path: KeyPath) -> tuple[FollowRule, ...]:
    if not isinstance(raw, list):
        raise source.error(path, "expected a list of CSS queries or follow rules")
    return tuple(_entry(spec, FollowRule, source, (*path, i)) for i, spec in enumerate(raw))


def _some_items(rules: tuple[ItemRule, ...]) -> tuple[ItemRule, ...]:
    if not rules:
        raise ValueError("give at least one item rule, such as {fields: {title: h1}}")
    return rules


# ---------------------------------------------------------------------------------------
# The schema of the `rules:` section
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One field of an item: where its value comes from and how to read it."""

    css: Query | None = option(None, doc="A CSS query (parsel: ::text and ::attr() work); "
                               "the first match is the value.", parse=_css)
    xpath: Query | None = option(None, doc="An XPath query, instead of css.", parse=_xpath)
    value: Literal["url"] | None = option(None, doc="A value of the page instead of a "
                                          "query: url.")
    const: Any = option(None, doc="A fixed value, used as written.")
    attr: str | None = option(None, doc="Read this attribute of the matched element "
                              "instead of its text.")
    re: Pattern[str] | None = option(None, doc="A regex searched in the text: its first "
                                     "group (or the whole match) is the value.", parse=_regex)
    type: FieldType = option("str", doc="Convert the text to str, int, float, bool or url.")
    many: bool = option(False, doc="Take every match, as a list.")
    default: Any = option(None, doc="The value when nothing matched.")
    required: bool = option(False, doc="Skip the item when this field is missing.")

    def __post_init__(self) -> None:
        given = [k for k in ("css", "xpath", "value", "const") if getattr(self, k) is not None]
        if len(given) != 1:
            got = f", not {' and '.join(given)}" if given else " to say where the value is"
            raise ValueError(f"give one of css, xpath, value or const{got}")
        if self.attr is not None and self.query is None:
            raise ValueError("attr reads an attribute of the element css or xpath matched")
        if self.attr is not None and self.css is not None and "::" in self.css.written:
            raise ValueError("give attr or a ::text/::attr() query, not both")
        if self.required and self.default is not None:
            raise ValueError("a field with a default is never missing: drop required")

    @property
    def query(self) -> Query | None:
        """The CSS or XPath query, if the value comes from the page's content."""
        return self.css or self.xpath

    def extract(self, scope: Selector, response: Response) -> Any:
        """Return the value in ``scope``: the first match, or a list with ``many``."""
        if self.const is not None:
            return _fresh(self.const)
        found = (v for text in self._texts(scope, response)
                 if (v := self._read(text, response)) is not None)
        value = list(found) if self.many else next(found, None)
        return _fresh(self.default) if _missing(value) and self.default is not None else value

    def _texts(self, scope: Selector, response: Response) -> Iterator[str]:
        if self.query is None:  # value: url
            yield response.url
            return
        for match in scope.xpath(self.query.xpath):
            text = _text(match, self.attr, link=self.type == "url")
            if text is not None:
                yield text

    def _read(self, text: str, response: Response) -> Any:
        """Turn one matched text into a value, or None if it has none."""
        text = " ".join(text.split())
        if self.re is not None:
            found = self.re.search(text)
            if found is None:
                return None
            text = (found.group(1 if self.re.groups else 0) or "").strip()
        return _TYPES[self.type](text, response)


@dataclass(frozen=True)
class FollowRule:
    """Which links of a page to follow."""

    css: Query | None = option(None, doc="Elements whose href/src (or whose links inside) "
                               "to follow, or ::attr() strings.", parse=_css)
    xpath: Query | None = option(None, doc="The same as an XPath query, instead of css.",
                                 parse=_xpath)
    match: Pattern[str] | None = option(None, doc="Follow only links whose absolute URL "
                                        "this regex matches.", parse=_regex)
    pages: Pattern[str] | None = option(None, doc="Apply the rule only on pages whose URL "
                                        "this regex matches.", parse=_regex)

    def __post_init__(self) -> None:
        if self.css is not None and self.xpath is not None:
            raise ValueError("give css or xpath, not both")

    def links(self, page: Selector, response: Response) -> Iterator[str]:
        """Yield the absolute URLs this rule picks on ``page``."""
        query = self.css or self.xpath or _ALL_LINKS
        for match in page.xpath(query.xpath):
            for href in _hrefs(match):
                url = response.urljoin(href.strip())
                if self.match is None or self.match.search(url):
                    yield url


@dataclass(frozen=True)
class ItemRule:
    """Which items a page holds, and their fields."""

    fields: Mapping[str, Field] = option(doc="Field name → a CSS query, or the field's "
                                         "options.", parse=_fields)
    each: Query | None = option(None, doc="A CSS query: one item per match, its fields "
                                "queried inside it. Default: the page is one item.",
                                parse=_css)
    each_xpath: Query | None = option(None, doc="The same as an XPath query, instead of "
                                      "each.", parse=_xpath)
    pages: Pattern[str] | None = option(None, doc="Apply the rule only on pages whose URL "
                                        "this regex matches.", parse=_regex)

    def __post_init__(self) -> None:
        if self.each is not None and self.each_xpath is not None:
            raise ValueError("give each or each_xpath, not both")

    def scopes(self, page: Selector) -> Iterable[Selector]:
        """Return the parts of ``page`` that are one item each."""
        each = self.each or self.each_xpath
        return [page] if each is None else page.xpath(each.xpath)

    def extract(self, scope: Selector, response: Response) -> dict[str, Any]:
        """Return the item in ``scope``, missing fields included."""
        return {name: field.extract(scope, response) for name, field in self.fields.items()}

    def missing(self, item: Mapping[str, Any]) -> str | None:
        """Return the first required field ``item`` lacks, if any."""
        return next((name for name, field in self.fields.items()
                     if field.required and _missing(item[name])), None)


@dataclass(frozen=True)
class RulesOptions:
    """The ``rules:`` section of a project file."""

    items: tuple[ItemRule, ...] = option(doc="What to extract: a list of item rules.",
                                         check=_some_items)
    follow: tuple[FollowRule, ...] = option((), doc="Which links to follow: CSS queries or "
                                            "follow rules.", parse=_follow)


# ---------------------------------------------------------------------------------------
# Reading matched nodes
# ---------------------------------------------------------------------------------------


def _text(match: Selector, attr: str | None, *, link: bool) -> str | None:
    """Return what a match says: a string as is, an element's attribute or text content."""
    root = match.root
    if not hasattr(root, "itertext"):  # a text node, an attribute, an XPath number
        return (root if isinstance(root, str) else match.get()) if attr is None else None
    if attr is not None:
        value: str | None = root.get(attr)
        return value
    return _own_link(root) if link else "".join(root.itertext())


def _hrefs(match: Selector) -> list[str]:
    """Return a match's link: its own href or src, else those of the links inside it."""
    if isinstance(match.root, str):
        return [match.root]
    own = _own_link(match.root)
    return [own] if own else match.xpath(".//a/@href").getall()


def _own_link(element: Any) -> str | None:
    link: str | None = element.get("href") or element.get("src")
    return link


def _missing(value: Any) -> bool:
    return value is None or value == []


def _fresh(value: Any) -> Any:
    """Copy a YAML list or mapping, so that changing one item cannot change the next."""
    return copy.deepcopy(value) if isinstance(value, list | dict) else value


# ---------------------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------------------

_NUMBER = re.compile(r"""
    (?:(?<!\w)(?P<sign>[-\u2212]))?       # a minus, unless it joins words (COVID-19)
    (?P<digits>\d{1,3}(?:,\d{3})+(?!\d)   # 1,234,567: commas between thousands
              |\d+)
    (?P<fraction>\.\d+)?
    (?P<suffix>[kKMB](?![a-zA-Z]))?        # 1.5k, 3M, 2B; not the K of "5 Kids"
    """, re.VERBOSE)
_EXPONENT: dict[str | None, int] = {None: 0, "k": 3, "K": 3, "M": 6, "B": 9}
_FALSE = frozenset({"false", "no", "off", "0"})


def _number(text: str, kind: Callable[[Decimal], Any]) -> Any:
    """Read the first number in ``text`` as ``kind`` (int or float), or return None."""
    found = _NUMBER.search(text)
    if found is None:
        return None
    sign, digits, fraction, suffix = found.group("sign", "digits", "fraction", "suffix")
    # Building a Decimal from text is exact (arithmetic would round to 28 digits), so a
    # 40-digit integer stays exact; int() of it drops a fraction toward zero.
    number = Decimal(f"{'-' if sign else ''}{digits.replace(',', '')}{fraction or ''}"
                     f"E{_EXPONENT[suffix]}")
    return kind(number)


_TYPES: dict[str, Callable[[str, Response], Any]] = {
    "str": lambda text, response: text or None,
    "int": lambda text, response: _number(text, int),
    "float": lambda text, response: _number(text, float),
    "bool": lambda text, response: text.lower() not in _FALSE,
    "url": lambda text, response: response.urljoin(text) if text else None,
}


# ---------------------------------------------------------------------------------------
# The spider
# ---------------------------------------------------------------------------------------


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
        """Yield the page's items, then a request for each link to follow."""
        try:
            page = response.selector
        except NotSupported:  # an image or PDF a broad follow rule led to: nothing to read
            self.logger.debug("no parser for %s; not read: %s", response.media_type,
                              response.url)
            return
        yield from self._items(page, response)
        for url in dict.fromkeys(self._links(page, response)):
            yield Request(url)

    def _items(self, page: Selector, response: Response) -> Iterator[dict[str, Any]]:
        for index, rule in enumerate(self.options.items):
            if rule.pages is not None and not rule.pages.search(response.url):
                continue
            for scope in rule.scopes(page):
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
