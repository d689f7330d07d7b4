"""A page's links, resolved fast: a page of the Python docs has ~310 of them, most relative.

``Joiner`` drops a link's fragment (a fragment is never sent to a server) and the
whitespace around what is left, then resolves it against one base URL exactly as
``urllib.parse.urljoin`` does, but without parsing the base
again for each link: the usual forms (``x.html``, ``../x/y.html``, ``/x``, an absolute
``https://…``) take a fast path, anything unusual goes to ``urljoin``. The answers of the
fast path depend only on the base's folder, so they are kept for every page of that folder
(pages of one site link to the same places over and over); the others for the page. A clean
absolute link joins to itself on any page, so those are kept for every page of every site:
a broad crawl meets a host's links again only after the host's delay, when hundreds of
other folders have come and gone. A test checks it all against ``urljoin`` on generated
links.

``hrefs`` reads links straight from lxml: strings, not a parsel ``Selector`` per ``<a>``.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from urllib.parse import urldefrag, urljoin, urlsplit

from lxml import etree
from parsel import css2xpath

__all__ = ["Joiner", "hrefs"]

#: A scheme at the start of a link (``mailto:``, ``javascript:``, ``HTTP:``).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
#: Characters urljoin drops silently (a raw line break): such a link is refused instead.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: What a link on the fast path may hold: no whitespace, backslash or ``;params``.
_SIMPLE = re.compile(r"[^\s\\;]*")
#: An absolute http(s) URL that urljoin would return as written.
_CLEAN_ABSOLUTE = re.compile(r"https?://[^/?#\s\\;@]+(?:/[^?#\s\\;]*)?(?:\?[^#\s\\;]+)?")
#: Links remembered per page or folder, past which new ones are joined but not kept.
_KEPT = 4_000
#: Folders whose links are remembered, the least recently used forgotten first.
_FOLDERS = 64
_shared: OrderedDict[str, dict[str, str]] = OrderedDict()
#: Clean absolute links met lately on any page, each its own join; forgotten all at once
#: past this many (a few megabytes), to start again with what the crawl meets now.
_ABSOLUTE_KEPT = 50_000
_absolute: dict[str, str] = {}


class Joiner:
    """Resolve the links of one page against its base URL; see the module docstring."""

    __slots__ = ("_base", "_cache", "_dir", "_fast", "_folder", "_origin", "_path", "_query")

    def __init__(self, base: str) -> None:
        self._base = urldefrag(base)[0]
        self._cache: dict[str, str] = {}
        try:
            parts = urlsplit(self._base)
        except ValueError:
            parts = urlsplit("")
        # The fast path needs a plain http(s) base; anything else joins the slow way.
        self._fast = (
            parts.scheme in ("http", "https")
            and bool(parts.netloc)
            and (";" not in parts.path and "/." not in parts.path)
        )
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._path = parts.path
        directory = parts.path or "/"
        self._dir = directory[: directory.rfind("/") + 1]
        self._query = parts.query
        self._folder = _folder(self._origin + self._dir) if self._fast else {}

    def join(self, href: str) -> str:
        """Return ``href`` resolved against the base, without its fragment."""
        if "#" in href:  # links to many places in one page join alike
            href = href.partition("#")[0]
        url = _absolute.get(href) or self._folder.get(href) or self._cache.get(href)
        if url is None:
            url = self._join_new(href)
        return url

    def _join_new(self, href: str) -> str:
        """Resolve a link not met lately, and remember the answer for where it holds."""
        if _CLEAN_ABSOLUTE.fullmatch(href) and "/." not in href:
            if len(_absolute) >= _ABSOLUTE_KEPT:
                _absolute.clear()
            _absolute[href] = href
            return href
        url, folder_wide = self._join(href)
        kept = self._folder if folder_wide else self._cache
        if len(kept) < _KEPT:
            kept[href] = url
        return url

    def _join(self, href: str) -> tuple[str, bool]:
        """Resolve ``href`` (no fragment); say whether the answer holds for the whole folder."""
        if self._fast:
            found = self._fast_join(href)
            if found is not None:
                return found
        link = href.strip()
        if _CONTROL.search(link):
            return link, False  # urljoin would drop them: the engine refuses it
        try:
            return urldefrag(urljoin(self._base, link))[0], False
        except ValueError:  # too broken to resolve: the engine drops it as invalid_url
            return link, False

    def _fast_join(self, link: str) -> tuple[str, bool] | None:
        """Resolve the usual relative forms without urljoin, as ``_join``; None for any
        other (a clean absolute link never comes here: ``_join_new``)."""
        if not link.strip():
            return self._base, False  # this page itself
        if _SIMPLE.fullmatch(link) and not _SCHEME.match(link) and not link.startswith("//"):
            joined = self._relative(link)
            if joined is not None:
                return joined, not link.startswith("?")
        return None

    def _relative(self, link: str) -> str | None:
        """Join a relative reference (RFC 3986 5.2.2), or None for one urljoin treats oddly."""
        path, has_query, query = link.partition("?")
        if (has_query and not query) or "//" in path:
            return None  # urljoin drops an empty query and empty segments: its rules
        if not path:  # ?query alone: this page's path
            return f"{self._origin}{self._path}?{query}"
        merged = path if path.startswith("/") else self._dir + path
        if "/." in merged or merged.startswith("."):
            merged = _without_dot_segments(merged)
        return f"{self._origin}{merged}?{query}" if has_query else self._origin + merged


def _folder(key: str) -> dict[str, str]:
    """Return the links remembered for one folder (``https://host/a/b/``)."""
    found = _shared.get(key)
    if found is None:
        found = _shared[key] = {}
        if len(_shared) > _FOLDERS:
            _shared.popitem(last=False)
    else:
        _shared.move_to_end(key)
    return found


def _without_dot_segments(path: str) -> str:
    """Remove ``.`` and ``..`` segments (RFC 3986 5.2.4) from an absolute path."""
    kept: list[str] = []
    segments = path.split("/")[1:]
    for segment in segments:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    if segments and segments[-1] in (".", ".."):
        kept.append("")  # a path ending in a dot segment ends with a slash
    return "/" + "/".join(kept)


def hrefs(root: etree._Element, *, css: str | None = None, xpath: str | None = None) -> list[str]:
    """Return the links a query picks in a parsed page, as strings.

    A query that picks elements gives each one's ``href`` (else ``src``); one that picks
    attributes or text (``a::attr(href)``, ``//a/@href``) gives those.
    """
    found = _compiled(xpath if xpath is not None else css2xpath(css or "a[href]"))(root)
    return (
        [link for link in found if isinstance(link, str) and link]
        if isinstance(found, list)
        else []
    )


@functools.lru_cache(maxsize=256)
def _compiled(query: str) -> etree.XPath:
    """Compile a query; one that picks elements is asked for their links instead, so that
    lxml hands back strings, not an element object per link."""
    if not _PICKS_STRINGS.search(query):
        query = f"({query})/@href | ({query})[not(@href)]/@src"
    return etree.XPath(query, smart_strings=False)


#: A query whose last step picks attributes or text already.
_PICKS_STRINGS = re.compile(r"(?:/@[\w:*-]+|text\(\)|@\*)\s*$")
