"""Sitemaps: seed any crawl with the pages a site's sitemaps list.

A ``sitemaps:`` section (``SitemapsOptions``) works with any spider. fw reads each sitemap
and robots.txt as a request of the crawl, with the callbacks this plugin registers
(``sitemaps:sitemap``, ``sitemaps:robots``), and queues the pages they list for the
spider, at depth 0, as it queues start URLs. ``sitemaps_documents`` reads one document,
bounded and safe. The reference, with every rule and limit: docs/sitemaps.md.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from framework import FetchError, Request, Response, Spider, hookimpl, option
from framework.config import KeyPath, Source, build, convert

from .sitemaps_documents import MAX_ENTRIES, Document, Entry, period, read

__all__ = ["ROBOTS", "SITEMAP", "SitemapsOptions", "options_of"]

log = logging.getLogger("fw.sitemaps")

#: The project file's section, and the plugin's name.
SECTION = "sitemaps"
#: The callbacks that read a sitemap and a robots.txt.
SITEMAP, ROBOTS = "sitemaps:sitemap", "sitemaps:robots"
#: How many sitemap indexes deep a sitemap is read.
MAX_NESTED = 5
#: A robots.txt answered with one of these does not exist (RFC 9309); 429 is retried.
_NO_ROBOTS = frozenset(range(400, 500)) - {429}
#: A body this large (or gzip) is read in a worker thread, so the event loop runs on.
_BIG = 256 * 1024
#: Where a sitemap request keeps the sitemaps that led to it, for loops and nesting.
_VIA = "sitemaps.via"


# -------------------------------------------------------------------------------------------
# The section
# -------------------------------------------------------------------------------------------


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    return url


def _regexes(raw: Any, source: Source, path: KeyPath) -> tuple[re.Pattern[str], ...]:
    patterns = convert(tuple[str, ...], raw, source, path)
    compiled = []
    for index, pattern in enumerate(patterns):
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise source.error((*path, index), f"not a valid regular expression: {exc}") from None
    return tuple(compiled)


def _since(raw: Any, source: Source, path: KeyPath) -> datetime | None:
    if raw is None:
        return None
    if isinstance(raw, datetime):  # YAML reads 2026-11-01T10:00:00Z as one
        try:
            return raw.replace(tzinfo=UTC) if raw.tzinfo is None else raw.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is in the year 0 in UTC
            raise source.error(path, f"expected a date such as 2026-11-01, got {raw}") from None
    if isinstance(raw, date):  # and 2026-11-01 as a date
        return datetime(raw.year, raw.month, raw.day, tzinfo=UTC)
    span = period(convert(str, raw, source, path))
    if span is None:
        raise source.error(path, f"expected a date such as 2026-11-01, got {raw!r}")
    return span[0]


@dataclass(frozen=True)
class SitemapsOptions:
    """The ``sitemaps:`` section: which sitemaps to read, and which pages to keep."""

    urls: tuple[str, ...] = option(
        (),
        doc="The sitemaps to read: XML (a urlset or a sitemap index) or text (one URL a "
        "line), gzip-compressed or not; a URL ending in /robots.txt reads the sitemaps it lists.",
        each=_http_url,
    )
    robots: bool = option(
        False,
        doc="Also read the sitemaps listed (Sitemap: lines) by the robots.txt of each start "
        "URL's host and each allowed_domains entry.",
    )
    follow: tuple[re.Pattern[str], ...] = option(
        (),
        doc="Queue only the pages whose URL one of these regexes matches (anywhere in it); "
        "every sitemap an index lists is read.",
        parse=_regexes,
    )
    since: datetime | None = option(
        None,
        doc="Queue only the pages, and read only the sitemaps, whose lastmod is on or after "
        "this date or time (UTC unless given); those with no readable lastmod are kept.",
        parse=_since,
    )
    callback: str | None = option(
        None,
        doc="The spider method the pages go to; by default the spider's default callback (parse).",
    )

    def __post_init__(self) -> None:
        if not self.urls and not self.robots:
            raise ValueError(
                "nothing to read: give the sitemaps (urls: [https://…/sitemap.xml]), or "
                "robots: true to read those robots.txt lists"
            )


#: How sitemaps are read when a resumed crawl's project lost its section: keep every page.
_KEEP_ALL = SitemapsOptions(robots=True)


def options_of(project: Any) -> SitemapsOptions | None:
    """Return the project's ``sitemaps:`` section, checked; None if it has none."""
    if SECTION not in project.sections:
        return None
    return build(SitemapsOptions, project.section(SECTION), project.error_source, (SECTION,))


# -------------------------------------------------------------------------------------------
# The hooks
# -------------------------------------------------------------------------------------------


@hookimpl
def register_callbacks(register: Callable[..., None]) -> None:
    """Provide the callbacks that read sitemaps and robots.txt."""
    register(SITEMAP, read_sitemap)
    register(ROBOTS, read_robots, allowed_status=_NO_ROBOTS)


@hookimpl
def extra_start_requests(project: Any, spider: Spider) -> list[Request]:
    """Start the crawl with the sitemaps of the section, and the robots.txt that list more."""
    options = options_of(project)
    if options is None:
        return []
    _check(options, project, spider)
    robots = robots_urls(project) if options.robots else []
    return [Request(url, callback=ROBOTS) for url in robots] + [
        Request(url, callback=ROBOTS if _is_robots(url) else SITEMAP) for url in options.urls
    ]


def _check(options: SitemapsOptions, project: Any, spider: Spider) -> None:
    """Refuse a section the crawl would follow wrongly, or not at all."""
    source = project.error_source
    if not project.allowed_domains:
        raise source.error(
            (SECTION,),
            "the crawl has no start_urls, so no default allowed_domains: it would follow "
            "links to any host; give allowed_domains: [the sites whose sitemaps it reads]",
        )
    for index, url in enumerate(options.urls):
        if not project.allows(url):
            raise source.error(
                (SECTION, "urls", index),
                f"{url} is not on a host of allowed_domains "
                f"[{', '.join(project.allowed_domains)}]: it would not be read; add its host",
            )
    name = options.callback
    if name is not None and not callable(getattr(spider, name, None)):
        methods = [m for m in dir(spider) if not m.startswith("_")]
        close = difflib.get_close_matches(name, methods, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise source.error(
            (SECTION, "callback"), f"spider {spider.name} has no method {name!r}{hint}"
        )


def robots_urls(project: Any) -> list[str]:
    """Return the robots.txt of each start URL's host, and of each ``allowed_domains``
    entry no start URL is on (https, or http on port 80)."""
    origins: dict[tuple[str, int | None], str] = {}
    for url in project.start_urls:
        parts = urlsplit(url)
        host = parts.hostname or ""
        origins.setdefault((host, parts.port), f"{parts.scheme}://{_netloc(host, parts.port)}")
    for entry in project.allowed_domains or ():
        host, port = _host_and_port(entry)
        if not any(h == host and port in (None, p) for h, p in origins):
            scheme = "http" if port == 80 else "https"
            origins[host, port] = f"{scheme}://{_netloc(host, port)}"
    return [origin + "/robots.txt" for origin in origins.values()]


def _host_and_port(entry: str) -> tuple[str, int | None]:
    """Split an ``allowed_domains`` entry (``a.test``, ``a.test:8080``, ``::1``, ``[::1]:80``)."""
    text = entry.strip().lower().lstrip(".")
    if text.count(":") > 1 and not text.startswith("["):
        text = f"[{text}]"
    parts = urlsplit("//" + text)
    return parts.hostname or text, parts.port


def _netloc(host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return host if port is None else f"{host}:{port}"


def _is_robots(url: str) -> bool:
    return urlsplit(url).path == "/robots.txt"


# -------------------------------------------------------------------------------------------
# robots.txt
# -------------------------------------------------------------------------------------------


def read_robots(response: Response, project: Any) -> Iterator[Request]:
    """Queue the sitemaps a robots.txt lists on its ``Sitemap:`` lines."""
    if response.status in _NO_ROBOTS:
        log.info("%s: HTTP %d: no robots.txt, so no sitemap from it", response.url, response.status)
        return
    listed = sitemap_lines(response.text, response.url)
    if not listed:
        log.info("%s lists no sitemap", response.url)
    for url in listed[:MAX_ENTRIES]:
        if project.allows(url):
            yield Request(url, callback=SITEMAP)
        else:
            log.warning(
                "%s lists the sitemap %s, on a host outside allowed_domains: not read; "
                "add the host to allowed_domains to read it",
                response.url,
                url,
            )


def sitemap_lines(text: str, base: str) -> list[str]:
    """Return the URLs of a robots.txt's ``Sitemap:`` lines, made absolute."""
    found = []
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        words = value.split()  # the URL, and maybe a comment
        if colon and name.strip().lower() == "sitemap" and words:
            found.append(_absolute(base, words[0]))
    return [url for url in dict.fromkeys(found) if url]


# -------------------------------------------------------------------------------------------
# Sitemaps
# -------------------------------------------------------------------------------------------


async def read_sitemap(response: Response, project: Any) -> AsyncIterator[Request]:
    """Queue what a sitemap lists: its pages for the spider, or the sitemaps of an index.

    What could be read of a broken sitemap is queued before the failure is raised.
    """
    options = options_of(project) or _KEEP_ALL
    document = await _read(response.body, project.max_response_size)
    via = [*response.meta.get(_VIA, ()), *response.meta.get("redirect_urls", ()), response.url]
    if document.kind == "sitemapindex":
        found = _Sitemaps(via, options, project).read(document)
    else:
        found = _Pages(response.url, options, project).read(document)
    for request in found.requests:
        yield request
    _log(response.url, document, found, project.max_requests_per_page)
    problem = found.problem or document.problem
    if problem:
        raise FetchError("bad_sitemap", problem)


async def _read(body: bytes, limit: int) -> Document:
    if len(body) < _BIG and not body.startswith(b"\x1f\x8b"):
        return read(body, limit)
    return await asyncio.to_thread(read, body, limit)


@dataclass
class _Found:
    """What a sitemap's entries came to: requests, and why the others were left out."""

    requests: list[Request]
    left_out: Counter[str]
    problem: str | None = None


#: Why the section's own options leave an entry out: on purpose, not worth a warning.
_FILTERS = ("not matching follow", "older than since")


def _log(url: str, document: Document, found: _Found, most: int) -> None:
    """Say what the sitemap came to; of its requests, the crawl keeps ``most``."""
    listed = len(document.entries) + document.unusable
    what = "sitemaps" if document.kind == "sitemapindex" else "pages"
    queued = min(len(found.requests), most)
    left = found.left_out + Counter(
        {
            "unusable (no URL)": document.unusable,
            "past max_requests_per_page": len(found.requests) - queued,
        }
    )
    why = ", ".join(f"{n} {reason}" for reason, n in left.items() if n)
    # Nothing queued, and not only by the section's own filters: a sitemap of another
    # host (allowed_domains), or of no URLs, seeds nothing, which the user must hear of.
    unmeant = +(left - Counter({reason: left[reason] for reason in _FILTERS}))
    log.log(
        logging.WARNING if listed and not found.requests and unmeant else logging.INFO,
        "sitemap %s: %d listed, %d %s queued%s",
        url,
        listed,
        queued,
        what,
        f"; left out: {why}" if why else "",
    )


def _absolute(base: str, loc: str) -> str:
    """Return ``loc`` made absolute against ``base``; "" if it cannot be a URL."""
    try:
        return urljoin(base, loc)
    except ValueError:  # "http://[::1": one bad entry must not lose the others
        return ""


def _recent(entry: Entry, since: datetime | None) -> bool | None:
    """Tell whether the entry's lastmod may be on or after ``since``; None if unknown."""
    if since is None or entry.lastmod is None:
        return True
    span = period(entry.lastmod)
    return None if span is None else span[1] >= since


class _Pages:
    """Turn the entries of a ``<urlset>`` or text sitemap into requests for the spider."""

    def __init__(self, sitemap: str, options: SitemapsOptions, project: Any) -> None:
        self._sitemap, self._options, self._project = sitemap, options, project

    def read(self, document: Document) -> _Found:
        found = _Found([], Counter())
        for entry in document.entries:
            url = _absolute(self._sitemap, entry.loc)
            reason = self._left_out(url, entry) if url else "not a URL"
            if reason is None:
                meta = {"sitemap": {"url": self._sitemap, "lastmod": entry.lastmod}}
                found.requests.append(Request(url, callback=self._options.callback, meta=meta))
            else:
                found.left_out[reason] += 1
        return found

    def _left_out(self, url: str, entry: Entry) -> str | None:
        follow = self._options.follow
        if follow and not any(pattern.search(url) for pattern in follow):
            return "not matching follow"
        recent = _recent(entry, self._options.since)
        if recent is False:
            return "older than since"
        if not self._project.allows(url):
            return "outside allowed_domains"
        if recent is None:
            log.debug("%s: unreadable lastmod %r, kept", url, entry.lastmod)
        return None


class _Sitemaps:
    """Turn the entries of a ``<sitemapindex>`` into requests for the sitemaps it lists."""

    def __init__(self, via: Sequence[str], options: SitemapsOptions, project: Any) -> None:
        self._via, self._options, self._project = list(via), options, project

    def read(self, document: Document) -> _Found:
        found = _Found([], Counter())
        for entry in document.entries:
            url = _absolute(self._via[-1], entry.loc)
            reason = self._left_out(url, entry) if url else "not a URL"
            if reason is None:
                found.requests.append(Request(url, callback=SITEMAP, meta={_VIA: self._via}))
            else:
                found.left_out[reason] += 1
        if deep := found.left_out["nested too deep"]:
            found.problem = (
                f"sitemap indexes nest more than {MAX_NESTED} deep: {deep} of the sitemaps "
                "it lists not read"
            )
        return found

    def _left_out(self, url: str, entry: Entry) -> str | None:
        if url.partition("#")[0] in self._via:
            log.warning(
                "sitemap loop cut: %s lists %s, which led to it", " -> ".join(self._via), url
            )
            return "loop"
        if _recent(entry, self._options.since) is False:
            return "older than since"
        if not self._project.allows(url):
            log.warning(
                "sitemap %s lists the sitemap %s, on a host outside allowed_domains: not "
                "read; add the host to allowed_domains to read it",
                self._via[-1],
                url,
            )
            return "outside allowed_domains"
        if len(self._via) > MAX_NESTED:
            return "nested too deep"
        return None
