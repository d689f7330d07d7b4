"""Which requests a crawl may fetch: valid http(s), an allowed host, not too deep, storable."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable

from framework.config.project import Project
from framework.crawl.stats import Stats
from framework.http import Request, is_plugin_callback
from framework.http.urls import Offsite, redact, unfetchable

__all__ = ["WHY", "Admission"]

log = logging.getLogger("fw")

#: Raw URLs remembered as already queued, so that a link seen again skips canonicalising
#: and fingerprinting; past this many the memo starts over (the frontier still dedups).
_KNOWN_URLS = 100_000
#: The spider's mistakes named one by one; a spider with many gets one more line.
_MISTAKES_SHOWN = 5
#: What a URL with no scheme in a request means: a relative link the spider did not resolve.
_RELATIVE = "a relative URL; response.follow() resolves it against the page"
#: A scheme at the start of a URL (``mailto:``, ``http:``).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
#: Why a page's request with an errback is not fetched, for which its errback runs.
_ERRBACKS = frozenset({"offsite", "depth"})
WHY = {
    "scheme": "not an http(s) URL",
    "invalid_url": "not a valid URL",
    "offsite": "its host is outside allowed_domains",
    "depth": "it is deeper than max_depth",
    "robots": "its site's robots.txt forbids it",
}


class Admission:
    """Sort out the requests a crawl finds before they reach the frontier, counting why."""

    def __init__(
        self,
        project: Project,
        stats: Stats,
        spider: str,
        *,
        persistent: bool,
        forgets: Callable[[], int] = lambda: 0,
    ) -> None:
        self.offsite = Offsite(project.allowed_domains or ())
        self._max_depth, self._stats, self._spider = project.max_depth, stats, spider
        self._max_per_page = project.max_requests_per_page
        self._persistent, self._backend = persistent, project.frontier.split(":")[0]
        self._known: set[str] = set()
        #: The frontier's count of what it may have forgotten (``Frontier.forgets``).
        self._forgets, self._forgot = forgets, 0
        self._warned: Counter[str] = Counter()  # mistakes said so far, by whose

    def admit(
        self,
        requests: Iterable[Request],
        *,
        starting: bool = False,
        found_on: str | None = None,
        callback: str | None = None,
        unfetched: list[tuple[Request, str]] | None = None,
    ) -> list[Request]:
        """Keep the requests the crawl may fetch: valid http(s), allowed host, not too deep.

        Most links on a page lead to pages already queued; a plain GET whose exact URL was
        queued before is a duplicate at the cost of one set look-up. A page's ``mailto:``
        or broken links are only counted. The spider's mistakes are said: a start request
        refused (``starting``), or a relative URL ``callback`` on ``found_on`` made a request
        of (a plugin's callback is named, not the spider).
        A request with an errback dropped offsite or too deep goes to ``unfetched``, with
        why, for its errback to run.
        """
        if (forgot := self._forgets()) != self._forgot:  # Redis back from a snapshot, say:
            self._forgot = forgot  # the pages it lost are fetched again, and their links
            self._known.clear()  # must reach it again, not be taken for queued
        admitted, filtered, known = [], self._stats.filtered, self._known
        for request in requests:
            url = request.url
            plain = _plain(request)
            if plain and url in known:
                filtered["duplicate"] += 1
            elif (why := self._refused(request, starting, found_on, callback)) is not None:
                filtered[why] += 1
                if unfetched is not None and request.errback and why in _ERRBACKS:
                    unfetched.append((request, why))
            else:
                admitted.append(request)
                if plain:
                    self._remember(url)
        return admitted

    def _refused(
        self, request: Request, starting: bool, found_on: str | None, callback: str | None
    ) -> str | None:
        """Say why the crawl may not fetch ``request`` (its ``filtered`` key), if so; warn
        of a start request refused, or a relative URL ``callback`` made a request of."""
        url = request.url
        if (problem := unfetchable(url)) is not None:
            if starting:
                self.refused_start(url, problem)
            elif found_on is not None and problem == "scheme" and not _SCHEME.match(url):
                self._warn(
                    f"request {redact(url)!r} from {redact(found_on)} dropped: {_RELATIVE}",
                    _plugins(callback),
                )
            return problem
        if not self.offsite.allows(url):
            if starting:
                self.refused_start(url, "offsite")
            return "offsite"
        if self._max_depth is not None and request.depth > self._max_depth:
            return "depth"
        if request.meta and self._persistent and not self._storable(request):
            return "unstorable"
        return None

    def admit_one(self, request: Request) -> tuple[list[Request], str | None]:
        """Admit one request; say why it was dropped (its ``filtered`` key), if it was."""
        before = self._stats.filtered.copy()
        admitted = self.admit([request])
        return admitted, next(iter(self._stats.filtered - before), None)

    def refused_start(self, url: str, why: str) -> None:
        """Count and warn of a start request the crawl will not fetch: refused here, or by
        robots.txt when its turn came."""
        self._stats.refused_starts[why] += 1
        self._warn(f"start request {redact(url)!r} dropped: {WHY[why]}")

    def forbidden_start(self, request: Request) -> None:
        """A start request robots.txt forbids: refused, or, if a redirect led there, said."""
        chain = request.meta.get("redirect_urls") or ()
        if not request.redirects or not chain:
            self.refused_start(request.url, "robots")
        else:
            self._warn(
                f"start request {redact(chain[0])!r} redirected to {redact(request.url)!r}, "
                "which its site's robots.txt forbids"
            )

    def overflowed(self, found_on: str, dropped: int, callback: str | None) -> None:
        """Count the requests ``callback`` on ``found_on`` added past
        ``max_requests_per_page``, which it dropped; name the page, and the plugin whose
        callback it was (a sitemap's), if not the spider's."""
        self._stats.filtered["too_many_on_page"] += dropped
        self._warn(
            f"{_requests(dropped)} from {redact(found_on)} dropped: past max_requests_per_page "
            f"({self._max_per_page}), which bounds what one page adds to the crawl",
            _plugins(callback),
        )

    def _warn(self, mistake: str, by: str | None = None) -> None:
        """Warn of the first few mistakes of the spider (or of ``by``, a plugin's
        callback); then say how to count the rest."""
        by = by or f"spider {self._spider}"
        self._warned[by] += 1  # each its own few: a sitemap's cut is not hidden by the spider's
        if self._warned[by] <= _MISTAKES_SHOWN:
            log.warning("%s: %s", by, mistake)
        elif self._warned[by] == _MISTAKES_SHOWN + 1:
            log.warning("%s: more requests dropped; --stats counts them (filtered)", by)

    def queued(self, request: Request) -> None:
        """Remember a request the frontier holds (this worker leased it), as if admitted.

        With several workers most links lead to pages another one queued: a page this one
        leased need not be sent to the frontier again when it meets a link to it.
        """
        if _plain(request):
            self._remember(request.url)

    def _remember(self, url: str) -> None:
        if len(self._known) >= _KNOWN_URLS:
            self._known.clear()
        self._known.add(url)

    def forget(self, requests: Iterable[Request]) -> None:
        """Forget requests admitted for a page whose lease was lost: nothing queued them.

        Whichever worker fetches that page again must send its links again, this one too.
        """
        for request in requests:
            self._known.discard(request.url)

    def _storable(self, request: Request) -> bool:
        """A persistent frontier stores requests as JSON: their meta must be JSON."""
        try:
            json.dumps(request.meta, allow_nan=False)
        except (TypeError, ValueError) as exc:
            log.error(
                "spider_error: spider %s: the meta of %s is not JSON, which a %s "
                "frontier needs to store it: %s",
                self._spider,
                request.url,
                self._backend,
                exc,
            )
            self._stats.errors["spider_error"] += 1
            return False
        return True


def _plugins(callback: str | None) -> str | None:
    """Name a plugin's callback, whose mistakes are not the spider's; None for the spider's."""
    return f"callback {callback}" if is_plugin_callback(callback) else None


def _requests(count: int) -> str:
    return "1 request" if count == 1 else f"{count} requests"


def _plain(request: Request) -> bool:
    """A plain GET, deduplicated by URL alone: its exact URL queued means a duplicate. A
    plugin's request (a sitemap) is not: its fingerprint holds its callback."""
    return (
        request.method == "GET"
        and not request.body
        and not request.dont_filter
        and not is_plugin_callback(request.callback)
    )
