"""Choose the parser for a response by its media type; fw's own parsers live here too.

This module is registered as the built-in plugin ``fw`` with ``trylast``, so any
plugin's parser for the same media type replaces these.
"""

from __future__ import annotations

from collections.abc import Callable

from parsel import Selector

from framework.hookspecs import hookimpl
from framework.http import Parser, Response

__all__ = ["Parsers", "register_parsers"]


class Parsers:
    """Media type → parser, with suffix (``+xml``) and wildcard (``text/*``) fallbacks."""

    def __init__(self) -> None:
        self._by_type: dict[str, Parser] = {}

    def add(self, media_type: str, parser: Parser) -> bool:
        """Register ``parser``; return False if an earlier plugin already took the type."""
        key = media_type.strip().lower()
        if key in self._by_type:
            return False
        self._by_type[key] = parser
        return True

    def for_type(self, media_type: str) -> Parser | None:
        """Return the parser for ``media_type`` (no parameters), or None if there is none."""
        by_type = self._by_type
        parser = by_type.get(media_type)
        if parser is None and "+" in media_type:
            parser = by_type.get("+" + media_type.rpartition("+")[2])
        if parser is None and "/" in media_type:
            parser = by_type.get(media_type.partition("/")[0] + "/*")
        return parser


def parse_html(response: Response) -> Selector:
    """Parse HTML leniently with lxml, as browsers do with broken markup.

    A UTF-8 page is parsed from its bytes: decoding it to text only for parsel to encode
    it back would cost a tenth of the parse.
    """
    body = response.utf8_body
    if body:  # parsel wants text for an empty page
        return Selector(body=body, encoding="utf-8", type="html", base_url=response.url)
    return Selector(text=response.text, type="html", base_url=response.url)


def parse_xml(response: Response) -> Selector:
    """Parse XML (feeds, sitemaps); entities are not resolved, for safety."""
    return Selector(text=response.text, type="xml", base_url=response.url)


def parse_json(response: Response) -> Selector:
    """Parse JSON so that ``response.selector.jmespath(...)`` queries it."""
    return Selector(text=response.text, type="json", base_url=response.url)


_BUILT_IN: dict[str, Callable[[Response], Selector]] = {
    "text/html": parse_html,
    "application/xhtml+xml": parse_html,
    "": parse_html,  # no Content-Type: browsers sniff, and HTML is by far the likeliest
    "text/plain": parse_html,
    "text/xml": parse_xml,
    "application/xml": parse_xml,
    "+xml": parse_xml,
    "application/json": parse_json,
    "+json": parse_json,
}


@hookimpl(trylast=True)
def register_parsers(register: Callable[[str, Parser], None]) -> None:
    """Provide fw's parsers, last, so that plugins can replace any of them."""
    for media_type, parser in _BUILT_IN.items():
        register(media_type, parser)
