"""Which proxy a rendered page's own requests go through: the one fw fetched its document
through, as fw would fetch the rest.

That is the request's own ``proxy`` (``Request(proxy=...)``, or the one the ``proxies``
plugin chose); else, if the environment names proxies, the environment's, chosen for each
request by the relay as fw's downloader chooses (``relay.py``); else none. Chromium is
launched without the environment's proxy variables, so that it neither holds their
credentials nor goes its own way: every proxy reaches it through a relay.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.request import getproxies

from framework import Request

__all__ = ["Upstream", "browser_environment", "upstream"]

#: What of fw's environment Chromium gets: what a browser needs to start, find its fonts
#: and display, and speak the locale. Nothing else: a variable may hold a secret
#: (``$env`` values, a proxy's URL with its password, API tokens), and the proxy variables
#: Chromium would read itself, going around the relays.
_BROWSER_VARIABLES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TMP",
        "TEMP",
        "DISPLAY",
        "WAYLAND_DISPLAY",
        "XAUTHORITY",
        "DBUS_SESSION_BUS_ADDRESS",
        "FONTCONFIG_FILE",
        "FONTCONFIG_PATH",
        "LD_LIBRARY_PATH",
        "CHROME_DEVEL_SANDBOX",
        *(
            f"LC_{category}"
            for category in (
                "ALL",
                "CTYPE",
                "COLLATE",
                "MESSAGES",
                "MONETARY",
                "NUMERIC",
                "TIME",
                "PAPER",
                "NAME",
                "ADDRESS",
                "TELEPHONE",
                "MEASUREMENT",
                "IDENTIFICATION",
            )
        ),
        *(
            f"XDG_{folder}"
            for folder in (
                "RUNTIME_DIR",
                "CONFIG_HOME",
                "CACHE_HOME",
                "DATA_HOME",
                "STATE_HOME",
                "CONFIG_DIRS",
                "DATA_DIRS",
            )
        ),
    }
)
#: The schemes whose proxies fw's downloader (aiohttp) takes from the environment.
_SCHEMES = ("http", "https", "ws", "wss")


@dataclass(frozen=True)
class Upstream:
    """The proxy a tab's own requests go through: ``url`` (credentials and all: the
    relay's to use, never the browser's), or the environment's for None."""

    url: str | None = field(repr=False)


def upstream(request: Request) -> Upstream | None:
    """Return the proxy the page of ``request`` sends its own requests through, if any."""
    if request.proxy is not None:
        return Upstream(request.proxy)
    found = getproxies()
    return Upstream(None) if any(scheme in found for scheme in _SCHEMES) else None


def browser_environment(
    environment: Mapping[str, str] = os.environ,
) -> dict[str, str | float | bool]:
    """The environment Chromium is launched with: the part of fw's a browser needs
    (``_BROWSER_VARIABLES``), never its proxy variables nor its secrets."""
    return {name: value for name, value in environment.items() if name in _BROWSER_VARIABLES}
