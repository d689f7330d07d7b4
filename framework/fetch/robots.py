"""Obey robots.txt: fetch it once per site, then ask it before each request.

A robots.txt that is missing (4xx), broken (5xx, a timeout, a refused connection) or not
parseable allows the whole site: a crawler that stopped on a flaky robots.txt would fail
for no reason of the site's making. A plugin that fails on the way to it is fw's own
failure, not the site's: the request that asked fails with it, and the next one reads
robots.txt again.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urljoin, urlsplit

from protego import Protego

from framework.errors import FetchError, IgnoreRequest, Unchanged
from framework.fetch.credentials import UNCREDENTIALED
from framework.fetch.downloader import READ_AT_MOST
from framework.fetch.politeness import Pace
from framework.fetch.statuses import REDIRECTS
from framework.http import Request, Response
from framework.http.urls import header_url, host_of, redact
from framework.middleware import Handler

__all__ = ["Robots"]

log = logging.getLogger("fw")

_MAX_REDIRECTS = 5
#: The failure of a plugin (a middleware, a fetch layer) on the way to robots.txt: the
#: requests waiting for it fail too, and the next one reads it again.
_OURS = "plugin_error"
#: RFC 9309: a crawler reads at least the first 500 KiB of a robots.txt; a longer one is
#: cut there, not ignored (ignoring it would crawl everything it disallows).
_READ = 500 * 1024


class _Abandoned(Exception):
    """The request reading a site's robots.txt stopped before it was read."""


class Robots:
    """The robots.txt of every site the crawl visits, each fetched once on first use."""

    def __init__(self, fetch: Handler, user_agent: str, pace: Pace) -> None:
        self._fetch, self._agent, self._pace = fetch, user_agent, pace
        self._sites: dict[str, asyncio.Future[Protego | None]] = {}
        self.fetched = 0

    async def allows(self, request: Request) -> bool:
        """Tell whether the site's robots.txt lets this crawler fetch ``request``."""
        origin = _origin(request.url)
        site = self._sites.get(origin)
        # Once a site's robots.txt is read, asking it costs no await (it runs per request).
        if site is not None and site.done():
            rules = site.result()
        else:  # a request that a redirect brought here uncredentialed reads it so too
            rules = await self._rules(origin, bool(request.meta.get(UNCREDENTIALED)))
        return rules is None or bool(rules.can_fetch(request.url, self._agent))

    async def _rules(self, origin: str, uncredentialed: bool) -> Protego | None:
        """The site's rules: read by the first request to it, which the others wait for.

        A waiter cancelled (a stop, its deadline) leaves the reading to go on for the
        others; a reader cancelled leaves it to the next request, which reads it itself:
        never a site crawled unread, nor a waiter whose cancellation is lost.
        """
        while (site := self._sites.get(origin)) is not None:
            try:
                return await asyncio.shield(site)
            except _Abandoned:
                continue
        site = self._sites[origin] = asyncio.get_running_loop().create_future()
        try:
            rules = await self._read(origin, uncredentialed)
        except BaseException:
            del self._sites[origin]
            site.set_exception(_Abandoned())
            site.exception()  # seen here: a site nobody else waited for logs nothing
            raise
        site.set_result(rules)
        return rules

    async def _read(self, origin: str, uncredentialed: bool) -> Protego | None:
        url = origin + "/robots.txt"
        self.fetched += 1
        try:
            response = await self._get(url, uncredentialed)
        except (FetchError, IgnoreRequest, Unchanged) as exc:
            if isinstance(exc, FetchError) and exc.kind == _OURS:  # fw's side, not the site's:
                raise  # no licence to crawl it
            log.info("robots.txt of %s could not be read (%s): crawling it all", origin, exc)
            return None
        if response.status != 200:
            return None
        try:
            rules = Protego.parse(response.text)
        except Exception as exc:  # protego on a hostile file: allow, as browsers would
            log.info("robots.txt of %s is unreadable (%s): crawling it all", origin, exc)
            return None
        delay = rules.crawl_delay(self._agent)
        if delay:
            await self._pace.crawl_delay(host_of(origin), float(delay))
        return rules

    async def _get(self, url: str, uncredentialed: bool) -> Response:
        """Fetch robots.txt, following a few redirects (sites move it to www., https)."""
        meta: dict[str, object] = {"robots.txt": True, READ_AT_MOST: _READ}
        if uncredentialed:
            meta[UNCREDENTIALED] = True
        request = Request(url, meta=meta)
        for _ in range(_MAX_REDIRECTS):
            response = await self._fetch(request)
            location = response.headers.get("Location")
            if response.status not in REDIRECTS or not location:
                return response
            target = urljoin(response.url, header_url(location))
            if not _same_site(request.url, target):
                log.info(
                    "robots.txt of %s redirects to %s, off its site: not followed",
                    redact(url),
                    redact(target),
                )
                return response  # not a 200: read as no robots.txt
            request = Request(target, meta=request.meta)
        raise FetchError("redirects", "robots.txt redirects too often")


def _same_site(source: str, target: str) -> bool:
    """Whether a robots.txt redirect stays on its site (RFC 9309): the same host, port and
    scheme, or the same host moved from http to https. Anywhere else would take the
    project's credentials there, or point fw at an address it was never meant to reach."""
    before, after = urlsplit(source), urlsplit(target)
    if before.hostname != after.hostname:
        return False
    if (before.scheme, before.port) == (after.scheme, after.port):
        return True
    upgrade = before.scheme == "http" and after.scheme == "https"
    return upgrade and before.port in (None, 80) and after.port in (None, 443)


def _origin(url: str) -> str:
    """Return ``scheme://host[:port]`` of a fetchable URL, cheaply: it runs per request."""
    start = url.index("://") + 3
    end = min((i for i in (url.find(c, start) for c in "/?#") if i != -1), default=len(url))
    at = max(url.rfind("@", start, end) + 1, start)  # credentials keep their case
    return url[:start].lower() + url[start:at] + url[at:end].lower()
