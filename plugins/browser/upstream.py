"""Which proxy a rendered page's own requests go through: the one fw fetched its document
through, as fw would fetch the rest.

That is the request's own ``proxy`` (``Request(proxy=...)``, or the one the ``proxies``
plugin chose), else the environment's (``HTTP_PROXY``, ``HTTPS_PROXY`` by the page's
scheme, with ``NO_PROXY``'s hosts reached directly), else none. Chromium is launched
without the environment's proxy variables, so that it neither holds their credentials nor
goes its own way: every proxy reaches it as an ``Upstream``, through a relay.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.request import getproxies

from framework import Request

__all__ = ["Upstream", "browser_environment", "upstream"]

#: Chromium reaches loopback hosts directly unless told otherwise; fw does not.
_LOOPBACK_TOO = "<-loopback>"
#: The environment's proxy variables, which Chromium would read itself.
_PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy"})
#: A NO_PROXY entry that names addresses, not a host and its subdomains.
_ADDRESSES = re.compile(r"[\d.:\[\]/]+")


@dataclass(frozen=True)
class Upstream:
    """The proxy a tab's own requests go through, and the hosts they reach directly."""

    url: str  # with its credentials: the relay's to use, never the browser's
    bypass: str  # Chromium's bypass rules


def upstream(request: Request) -> Upstream | None:
    """Return the proxy the page of ``request`` sends its own requests through, if any."""
    if request.proxy is not None:
        return Upstream(request.proxy, _LOOPBACK_TOO)
    proxies = getproxies()
    found = proxies.get(request.url.partition(":")[0].lower())
    rules = _bypass(proxies.get("no", ""))
    if found is None or rules is None:
        return None
    return Upstream(found, ",".join([_LOOPBACK_TOO, *rules]))


def browser_environment(
    environment: Mapping[str, str] = os.environ,
) -> dict[str, str | float | bool]:
    """The environment Chromium is launched with: fw's, less its proxy variables."""
    return {k: v for k, v in environment.items() if k.lower() not in _PROXY_VARIABLES}


def _bypass(no_proxy: str) -> list[str] | None:
    """``NO_PROXY`` as Chromium's bypass rules (a host and its subdomains, as curl reads
    it); None if it names every host (``*``)."""
    rules: list[str] = []
    for entry in no_proxy.replace(" ", "").split(","):
        if entry == "*":
            return None
        host = entry.lstrip(".")
        if host:
            rules += [host] if _ADDRESSES.fullmatch(host) else [host, f"*.{host}"]
    return rules
