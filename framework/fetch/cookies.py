"""The crawl's cookie jar: aiohttp's, refusing cookies set for a public suffix.

A site may set a cookie for its own registrable domain (``Domain=example.com`` from
``shop.example.com``), never for a suffix anyone can register under (``Domain=com``,
``Domain=co.uk``, ``Domain=github.io``): every host under it would receive that
"supercookie". The suffixes come from the Public Suffix List bundled with the
``publicsuffixlist`` package; it is never fetched at run time.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import cache
from http.cookies import Morsel
from typing import Any

import aiohttp
from aiohttp.typedefs import LooseCookies
from publicsuffixlist import PublicSuffixList
from yarl import URL

__all__ = ["CookieJar"]

_NOWHERE = URL()


class CookieJar(aiohttp.CookieJar):
    """Keep cookies as aiohttp does, cookies from IP-address hosts included, but never one
    for a public suffix: one whose Domain is the suffix of the host that set it is kept for
    that host alone; any other is dropped (RFC 6265 section 5.3, step 5)."""

    def __init__(self) -> None:
        super().__init__(unsafe=True)  # "unsafe" only lets IP-address hosts keep cookies

    def update_cookies(self, cookies: LooseCookies, response_url: URL = _NOWHERE) -> None:
        """Store ``cookies`` that ``response_url`` may set."""
        host = (response_url.raw_host or "").lower()
        items = cookies.items() if hasattr(cookies, "items") else cookies
        super().update_cookies(list(_allowed_morsels(items, host)), response_url)

    def update_cookies_from_headers(self, headers: Sequence[str], response_url: URL) -> None:
        """Store the cookies of ``Set-Cookie`` fields that ``response_url`` may set.

        Read by aiohttp's own parser (aiohttp 3.14 and later call this), so that the Domain
        judged is the one stored: a pattern over the raw field missed ``Domain="co.uk"``.
        """
        # Here, not above: aiohttp has it from 3.12, and calls this method from 3.14 on.
        from aiohttp._cookie_helpers import parse_set_cookie_headers

        if headers:
            self.update_cookies(parse_set_cookie_headers(headers), response_url)


def _allowed_morsels(cookies: Iterable[tuple[str, Any]], host: str) -> Iterable[tuple[str, Any]]:
    for name, cookie in cookies:
        if not isinstance(cookie, Morsel) or not cookie["domain"]:
            yield name, cookie
            continue
        verdict = _verdict(cookie["domain"], host)
        if verdict == "host-only":
            own = cookie.copy()
            own["domain"] = ""
            yield name, own
        elif verdict == "keep":
            yield name, cookie


def _verdict(domain: str, host: str) -> str:
    """Say what to do with a cookie for ``domain`` set by ``host``: keep, host-only or drop."""
    domain = domain.strip().lstrip(".").lower()
    if not domain or _is_ip(host) or not _public().is_public(domain):
        return "keep"  # aiohttp itself drops a cookie for a domain the host is not in
    return "host-only" if domain == host else "drop"


@cache
def _public() -> PublicSuffixList:
    return PublicSuffixList()  # the list bundled with the package: no download


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
