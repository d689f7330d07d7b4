"""Keep the browser's cookies and fw's cookie jar the same, both ways."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from email.utils import formatdate
from http.cookies import CookieError, Morsel
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from yarl import URL

if TYPE_CHECKING:
    from aiohttp.abc import AbstractCookieJar
    from playwright.async_api import BrowserContext

__all__ = ["CookieSync"]

log = logging.getLogger("fw.browser")

#: A cookie's identity: domain (a leading dot for a domain cookie), path, name.
Key = tuple[str, str, str]


class CookieSync:
    """Copy cookies new to one side to the other, remembering what each side was told.

    What a context knows is its own: pages through different proxies render in different
    contexts, and a cookie one of them set reaches the others through the jar.
    """

    def __init__(self, jar: AbstractCookieJar) -> None:
        self._jar = jar
        self._known: WeakKeyDictionary[BrowserContext, dict[Key, str]] = WeakKeyDictionary()

    async def to_browser(self, context: BrowserContext) -> None:
        """Give the context the cookies fw's jar holds that it does not have yet."""
        from playwright.async_api import Error

        known = self._known.setdefault(context, {})
        new = [c for c in _of_jar(self._jar) if known.get(_key(c)) != c["value"]]
        if not new:
            return
        try:
            await context.add_cookies(new)  # type: ignore[arg-type]
        except Error:  # one Chromium refuses (a quoted value with a ';') fails them all
            for cookie in new:
                try:
                    await context.add_cookies([cookie])  # type: ignore[list-item]
                except Error as exc:
                    log.debug("browser: cookie %s refused: %s", cookie["name"], exc)
        # Refused ones too: offered again only once the jar holds another value.
        known.update((_key(c), c["value"]) for c in new)

    async def to_jar(self, context: BrowserContext) -> None:
        """Put the cookies the context set (by HTTP or by script) into fw's jar."""
        known = self._known.setdefault(context, {})
        for cookie in await context.cookies():
            key = _key(cookie)
            if known.get(key) != cookie["value"]:
                known[key] = cookie["value"]
                _store(self._jar, cookie)


def _key(cookie: Mapping[str, Any]) -> Key:
    return (cookie["domain"], cookie["path"], cookie["name"])


def _of_jar(jar: AbstractCookieJar) -> Iterable[dict[str, Any]]:
    """The jar's cookies as Playwright takes them."""
    host_only = _host_only(jar)
    for morsel in jar:
        domain = morsel["domain"]
        if domain and not host_only(morsel) and not _is_ip(domain):
            domain = "." + domain  # a Domain cookie: its subdomains get it too
        yield {
            "name": morsel.key,
            "value": morsel.value,
            "domain": domain,
            "path": morsel["path"] or "/",
            "secure": bool(morsel["secure"]),
            "httpOnly": bool(morsel["httponly"]),
        }


def _host_only(jar: AbstractCookieJar) -> Callable[[Morsel[str]], bool]:
    """Tell a host-only cookie of ``jar`` (set with no Domain) by how aiohttp keys them."""
    # Published from aiohttp 3.14; before, only the jar's own set, of 2-tuples at first.
    found: Collection[tuple[str, ...]] = (
        getattr(jar, "host_only_cookies", None) or getattr(jar, "_host_only_cookies", None) or ()
    )
    if any(len(key) == 2 for key in found):  # (domain, name)
        return lambda morsel: (morsel["domain"], morsel.key) in found
    return lambda morsel: (  # (domain, path less its last /, name)
        (morsel["domain"], (morsel["path"] or "/").rstrip("/"), morsel.key) in found
    )


def _store(jar: AbstractCookieJar, cookie: Mapping[str, Any]) -> None:
    morsel: Morsel[str] = Morsel()
    try:
        morsel.set(cookie["name"], cookie["value"], cookie["value"])
    except CookieError:  # a name a browser takes and Python's cookies do not (a space)
        log.debug("browser: cookie %r not kept: not a name fw can send", cookie["name"])
        return
    morsel["path"] = cookie["path"]
    domain = cookie["domain"]
    if domain.startswith("."):
        morsel["domain"] = domain[1:]
    if cookie.get("expires", -1) > 0:
        morsel["expires"] = formatdate(cookie["expires"], usegmt=True)
    morsel["secure"] = cookie.get("secure", False)
    morsel["httponly"] = cookie.get("httpOnly", False)
    scheme = "https" if cookie.get("secure") else "http"
    jar.update_cookies({cookie["name"]: morsel}, URL.build(scheme=scheme, host=domain.lstrip(".")))


def _is_ip(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host
