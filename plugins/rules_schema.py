"""The schema of the ``rules:`` section: follow rules, item rules and their fields.

Every selector and regex is compiled once, when the project file is loaded, so that a
typo is an ``Error: FILE:LINE: key: ...``. Each rule also knows what it extracts from a
page. See ``plugins.rules`` for the section by example.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from re import Pattern
from types import MappingProxyType
from typing import Any, Literal

from cssselect import SelectorError
from cssselect import parse as parse_css
from parsel import Selector, css2xpath

from framework import Response, option
from framework.config import KeyPath, Source, build, convert

from .rules_values import TYPES, FieldType, fresh, hrefs, is_element, is_missing, text_of

__all__ = ["Field", "FollowRule", "ItemRule", "Query", "RulesOptions"]


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


def _compiled(
    compile: Callable[[str], Any], what: str, errors: type[Exception]
) -> Callable[[Any, Source, KeyPath], Any]:
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

#: The last step of an XPath selecting text or attributes: ``/text()``, ``/@href``.
_LAST_STEP_NOT_ELEMENTS = re.compile(
    r"(?:(?:^|/|::)\s*text\(\)|(?:^|/)\s*(?:@|attribute::)[\w.:*-]+)"
    r"(?:\s*\[[^\[\]]*\])*\s*$"  # and predicates: text()[normalize-space()], @href[1]
)
#: What ``each`` needs, with an example in its own language.
_EACH_NEEDS = (
    "{key} needs elements, one item per match (such as {example}); read text and attributes "
    "in its fields"
)


def _each_css(raw: Any, source: Source, path: KeyPath) -> Query | None:
    """Read ``each``: a CSS query of elements, without ``::text`` or ``::attr()``."""
    query: Query | None = _css(raw, source, path)
    if query is not None and any(s.pseudo_element for s in parse_css(query.written)):
        needs = _EACH_NEEDS.format(key="each", example="div.quote")
        raise source.error(path, f"::text and ::attr() select strings, not elements: {needs}")
    return query


def _each_xpath(raw: Any, source: Source, path: KeyPath) -> Query | None:
    """Read ``each_xpath``: an XPath that may select elements, as far as can be told."""
    query: Query | None = _xpath(raw, source, path)
    if query is not None and not _selects_elements(query.xpath):
        needs = _EACH_NEEDS.format(key="each_xpath", example="//div[@class='quote']")
        raise source.error(path, f"selects strings or a value, not elements: {needs}")
    return query


def _selects_elements(xpath: str) -> bool:
    """Tell whether ``xpath`` may select elements: not if it is a value (``count(//a)``,
    ``string(.)``), which the probe page shows, or ends in ``/text()`` or ``/@name``."""
    if _LAST_STEP_NOT_ELEMENTS.search(xpath):
        return False
    return all(is_element(found) for found in _PROBE.xpath(xpath))


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
        raise source.error(
            path,
            "expected a mapping of field names to CSS queries or "
            "options, such as {title: h1, price: {css: .price, type: float}}",
        )
    for name in raw:
        if not isinstance(name, str):  # YAML reads `on:`, `no:` as booleans, `1:` as a number
            raise source.error(path, f"field name {name!r} is not a string: quote it")
    return MappingProxyType(
        {name: _entry(spec, Field, source, (*path, name)) for name, spec in raw.items()}
    )


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

    css: Query | None = option(
        None,
        doc="A CSS query (parsel: ::text and ::attr() work); the first match is the value.",
        parse=_css,
    )
    xpath: Query | None = option(None, doc="An XPath query, instead of css.", parse=_xpath)
    value: Literal["url"] | None = option(None, doc="A value of the page instead of a query: url.")
    const: Any = option(None, doc="A fixed value, used as written.")
    attr: str | None = option(
        None, doc="Read this attribute of the matched element instead of its text."
    )
    re: Pattern[str] | None = option(
        None,
        doc="A regex searched in the text: its first group (or the whole match) is the value.",
        parse=_regex,
    )
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
            return fresh(self.const)
        found = (
            v
            for text in self._texts(scope, response)
            if (v := self._read(text, response)) is not None
        )
        value = list(found) if self.many else next(found, None)
        return fresh(self.default) if is_missing(value) and self.default is not None else value

    def _texts(self, scope: Selector, response: Response) -> Iterator[str]:
        if self.query is None:  # value: url
            yield response.url
            return
        for match in scope.xpath(self.query.xpath):
            text = text_of(match, self.attr, link=self.type == "url")
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
        return TYPES[self.type](text, response)


@dataclass(frozen=True)
class FollowRule:
    """Which links of a page to follow."""

    css: Query | None = option(
        None,
        doc="Elements whose href/src (or whose links inside) to follow, or ::attr() strings.",
        parse=_css,
    )
    xpath: Query | None = option(
        None, doc="The same as an XPath query, instead of css.", parse=_xpath
    )
    match: Pattern[str] | None = option(
        None, doc="Follow only links whose absolute URL this regex matches.", parse=_regex
    )
    pages: Pattern[str] | None = option(
        None, doc="Apply the rule only on pages whose URL this regex matches.", parse=_regex
    )

    def __post_init__(self) -> None:
        if self.css is not None and self.xpath is not None:
            raise ValueError("give css or xpath, not both")

    def links(self, page: Selector, response: Response) -> Iterator[str]:
        """Yield the absolute URLs this rule picks on ``page``."""
        query = self.css or self.xpath or _ALL_LINKS
        for match in page.xpath(query.xpath):
            for href in hrefs(match):
                url = response.urljoin(href.strip())
                if self.match is None or self.match.search(url):
                    yield url


@dataclass(frozen=True)
class ItemRule:
    """Which items a page holds, and their fields."""

    fields: Mapping[str, Field] = option(
        doc="Field name → a CSS query, or the field's options.", parse=_fields
    )
    each: Query | None = option(
        None,
        doc="A CSS query of elements: one item per match, its fields "
        "queried inside it. Default: the page is one item.",
        parse=_each_css,
    )
    each_xpath: Query | None = option(
        None, doc="The same as an XPath query, instead of each.", parse=_each_xpath
    )
    pages: Pattern[str] | None = option(
        None, doc="Apply the rule only on pages whose URL this regex matches.", parse=_regex
    )

    def __post_init__(self) -> None:
        if self.each is not None and self.each_xpath is not None:
            raise ValueError("give each or each_xpath, not both")

    def scopes(self, page: Selector) -> list[Selector]:
        """Return the parts of ``page`` that are one item each."""
        each = self.each or self.each_xpath
        return [page] if each is None else page.xpath(each.xpath)

    def extract(self, scope: Selector, response: Response) -> dict[str, Any]:
        """Return the item in ``scope``, missing fields included."""
        return {name: field.extract(scope, response) for name, field in self.fields.items()}

    def missing(self, item: Mapping[str, Any]) -> str | None:
        """Return the first required field ``item`` lacks, if any."""
        return next(
            (
                name
                for name, field in self.fields.items()
                if field.required and is_missing(item[name])
            ),
            None,
        )


@dataclass(frozen=True)
class RulesOptions:
    """The ``rules:`` section of a project file."""

    items: tuple[ItemRule, ...] = option(
        doc="What to extract: a list of item rules.", check=_some_items
    )
    follow: tuple[FollowRule, ...] = option(
        (), doc="Which links to follow: CSS queries or follow rules.", parse=_follow
    )
