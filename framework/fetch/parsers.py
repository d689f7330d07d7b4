"""Choose the parser for a response by its media type; fw's own parsers live here too.

fw's built-in plugin (``hooks/builtin.py``) registers them ``trylast``, so any plugin's
parser for the same media type replaces these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping

from lxml import etree, html
from parsel import Selector

from framework.http import Parser, Response

__all__ = ["BUILT_IN", "Parsers", "html_root", "parse_big"]

log = logging.getLogger("fw")

#: A body this big is parsed in a worker thread (``parse_big``).
BIG = 256 * 1024
_RESOURCE_LIMIT = etree.ErrorTypes.ERR_RESOURCE_LIMIT
_ENCODING_ERRORS = frozenset(
    {etree.ErrorTypes.ERR_INVALID_CHAR, etree.ErrorTypes.ERR_INVALID_ENCODING}
)


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


async def parse_big(response: Response) -> None:
    """Parse a big document now, in a worker thread, so that its callback finds it parsed.

    lxml lets go of the GIL while it parses, so the event loop goes on meanwhile with other
    downloads and callbacks: parsing a 2 MB page takes ~11 ms, which on the loop would delay
    everything else that long (``benchmarks/looplag.py``). A parser that fails here is left
    for the callback to meet, as if nothing had been done.
    """
    if len(response.body) >= BIG and response.parseable:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(lambda: response.selector)


def parse_html(response: Response) -> Selector:
    """Parse HTML leniently with lxml, as browsers do with broken markup.

    A UTF-8 page is parsed from its bytes: decoding it to text only for lxml to encode it
    back would cost a tenth of the parse.
    """
    body = response.utf8_body
    if body is None:
        body = response.text.strip().encode("utf-8")
    return Selector(root=html_root(body, response.url), type="html")


def html_root(body: bytes, url: str) -> etree._Element:
    """Build the tree of a UTF-8 HTML document, as parsel does, but to any depth.

    libxml2 stops building a tree 2,048 elements deep (even with ``huge_tree``) and
    silently drops the rest of the page, links and all; it notes that as its last error.
    Such a page is parsed again by a parser feeding a tree builder, which has no depth
    limit but takes four times as long, and makes plain ``lxml.etree`` elements rather
    than ``lxml.html`` ones. Checking the last error costs nothing on other pages.
    """
    if b"\x00" in body:
        body = body.replace(b"\x00", b"")
    body = body.strip() or b"<html/>"
    parser = _html_parser()
    root: etree._Element | None
    try:
        root = etree.fromstring(body, parser=parser, base_url=url)
    except etree.XMLSyntaxError:
        if not _bad_bytes(parser):
            raise
        root = None
    if _bad_bytes(parser):  # lxml keeps invalid UTF-8 in the tree, which reading then raises
        return html_root(body.decode("utf-8", "replace").encode("utf-8"), url)
    last = parser.error_log.last_error
    if last is not None and last.type == _RESOURCE_LIMIT:
        log.debug("%s is nested too deep for lxml's tree: parsed again without limits", url)
        deep = etree.HTMLParser(target=etree.TreeBuilder(), encoding="utf-8", huge_tree=True)
        root = etree.fromstring(body, parser=deep)
    if root is None:  # nothing but comments or whitespace
        root = etree.fromstring(b"<html/>", parser=parser, base_url=url)
    return root


_parsers = threading.local()


def _html_parser() -> html.HTMLParser:
    """This thread's HTML parser: made once, since each parse starts a fresh error log.

    One per thread because big pages are parsed in worker threads (``parse_big``).
    """
    parser: html.HTMLParser | None = getattr(_parsers, "html", None)
    if parser is None:
        parser = _parsers.html = html.HTMLParser(recover=True, encoding="utf-8", huge_tree=True)
    return parser


def _bad_bytes(parser: etree.HTMLParser) -> bool:
    return any(error.type in _ENCODING_ERRORS for error in parser.error_log)


def parse_xml(response: Response) -> Selector:
    """Parse XML (feeds, sitemaps); entities are not resolved, for safety."""
    return Selector(text=response.text, type="xml", base_url=response.url)


def parse_json(response: Response) -> Selector:
    """Parse JSON so that ``response.selector.jmespath(...)`` queries it."""
    return Selector(text=response.text, type="json", base_url=response.url)


#: fw's own parsers, by media type.
BUILT_IN: Mapping[str, Callable[[Response], Selector]] = {
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
