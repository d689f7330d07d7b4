"""The ``proxies:`` section: the pool's proxies, how to rotate them, when one has failed.

A proxy is written as a URL (``http://user:password@host:port``, whole from ``$env`` to
keep the secret out of the file) or as a mapping whose ``username`` and ``password`` may
come from ``$env`` alone. No error message ever quotes a credential.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from framework import option
from framework.config import KeyPath, Source, build, check_all, convert

__all__ = ["Backoff", "ProxiesOptions", "ProxyURL", "origin_of", "redact"]


@dataclass(frozen=True)
class ProxyURL:
    """One proxy of the pool: its URL with credentials, and how it is shown."""

    url: str = field(repr=False)  # holds the secret: never printed
    #: The URL with its credentials masked (``http://***@host:port``).
    shown: str
    #: ``scheme://host:port``, lower-cased: what a request's own ``proxy`` is matched by.
    origin: str


def redact(url: str) -> str:
    """Return a proxy's URL with everything before its last ``@`` masked.

    Even a password written with an unescaped ``/`` or ``#`` is masked whole: a proxy's
    URL has no path worth keeping, and a secret must not show.
    """
    start = url.find("//") + 2 if "//" in url else 0
    at = url.rfind("@", start)
    return url if at == -1 else f"{url[:start]}***@{url[at + 1 :]}"


def origin_of(url: str) -> str:
    """Return ``scheme://host:port`` of a proxy URL; ValueError if it has none."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(
            f"{scheme}:// proxies are not supported; write an http:// or https:// proxy"
            if scheme
            else "not a URL; write it like http://proxy.example:3128"
        )
    if not parts.hostname:
        raise ValueError("has no host; write it like http://proxy.example:3128")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:  # urllib's message quotes the "port": maybe a password's start
        if "out of range" in str(exc):
            raise
        raise ValueError(
            "its port is not a number; a password with / ? or # in it must be "
            "percent-encoded, or given as password:"
        ) from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class _Entry:
    """A proxy written as a mapping, to take the secrets alone from ``$env``."""

    url: str = option(doc="The proxy, http:// or https://, without credentials.")
    username: str | None = option(None, doc="The user name it asks for.")
    password: str | None = option(None, doc="The password it asks for.")


def _address(raw: Any, source: Source, path: KeyPath) -> ProxyURL:
    """Read one proxy: a URL, or a mapping of url, username and password."""
    if isinstance(raw, dict):
        entry = build(_Entry, raw, source, path)
        url, at = entry.url, (*path, "url")
        if "@" in url:
            raise source.error(at, "put the credentials in username and password, not here")
        if entry.username is not None or entry.password is not None:
            scheme, _, rest = url.partition("://")
            userinfo = quote(entry.username or "", safe="")
            if entry.password is not None:
                userinfo += ":" + quote(entry.password, safe="")
            url = f"{scheme}://{userinfo}@{rest}"
    else:
        url, at = convert(str, raw, source, path).strip(), path
    try:
        origin = origin_of(url)
    except ValueError as exc:
        raise source.error(at, f"{redact(url)}: {exc}") from None
    return ProxyURL(url, redact(url), origin)


def _addresses(raw: Any, source: Source, path: KeyPath) -> tuple[ProxyURL, ...]:
    """Read the pool: a list of proxies, none listed twice."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise source.error(path, "expected a list of proxy URLs")
    pool: list[ProxyURL] = []

    def add(index: int, item: Any) -> None:  # every bad entry is said, not the first alone
        address = _address(item, source, (*path, index))
        if any(address.url == other.url for other in pool):
            raise source.error((*path, index), f"{address.shown} is listed twice")
        pool.append(address)

    check_all(add, enumerate(raw))
    return tuple(pool)


def _refusal(status: int) -> int:
    if not 400 <= status <= 599 or status == 407:
        raise ValueError(f"{status} is not a status a site refuses with; give a 4xx or 5xx")
    return status


@dataclass(frozen=True)
class Backoff:
    """How long a failed proxy rests."""

    base: float = option(
        5.0,
        doc="Seconds a proxy rests the first time; doubled for each further rest in a row "
        "(with no success between).",
        minimum=0,
    )
    max: float = option(300.0, doc="The longest rest.", minimum=0)


@dataclass(frozen=True)
class ProxiesOptions:
    """The ``proxies:`` section of a project file."""

    urls: tuple[ProxyURL, ...] = option(
        (),
        doc="The proxies every request goes through, one at a time: "
        "`http://host:port`, `http://user:password@host:port` (https:// too), "
        "`{$env: NAME}` for a whole URL, or `{url, username, password}` to take only the "
        "secrets from `$env`. None: the environment's `HTTP(S)_PROXY`, or no proxy.",
        parse=_addresses,
    )
    rotate: Literal["round_robin", "random", "sticky_per_host"] = option(
        "round_robin",
        doc="Which proxy a request takes: the next in turn, any at random, or the one "
        "its host was given first (another only while that one rests).",
    )
    fail_after: int = option(
        3,
        doc="A proxy rests after this many strikes in a row: answers with a "
        "`ban_statuses` status, answers that are not HTTP, timeouts, dropped connections. "
        "One that cannot be "
        "reached, or refuses its credentials (407), rests at once.",
        minimum=1,
    )
    ban_statuses: tuple[int, ...] = option(
        (403, 429),
        each=_refusal,
        doc="Statuses that say a site refuses this proxy: the request is sent again at "
        "once through another, and `fail_after` of them in a row rest it.",
    )
    reroutes: int = option(
        2,
        doc="How many other proxies a request tries at once when its proxy fails "
        "(timeouts excepted) before the failure stands; then fw's `retries` apply.",
        minimum=0,
    )
    dead_after: int = option(
        4,
        doc="A proxy that rested this many times in a row, with no success between, is "
        "dead (still tried after each rest); when every proxy is dead the crawl stops, "
        "exit 1.",
        minimum=1,
    )
    backoff: Backoff = option(doc="How long a failed proxy rests.", default_factory=Backoff)
