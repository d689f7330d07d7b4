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
    """Copy what changed on one side to the other — cookies set, changed or deleted —
    remembering what each context was told and has.

    What a context knows is its own: pages through different proxies render in different
    contexts, and a cookie one of them set reaches the others through the jar.
    """

    def __init__(self, jar: AbstractCookieJar) -> None:
        self._jar = jar
        #: The cookies each context holds, as last seen or told, by key: their values.
        self._held: WeakKeyDictionary[BrowserContext, dict[Key, str]] = WeakKeyDictionary()
        #: Cookies each context refused, by key: offered again only with another value.
        self._refused: WeakKeyDictionary[BrowserContext, dict[Key, str]] = WeakKeyDictionary()

    async def to_browser(self, context: BrowserContext) -> None:
        """Give the context the jar's cookies it does not hold, and delete from it those
        the jar no longer has (a logout fw fetched)."""
        held = self._held.setdefault(context, {})
        refused = self._refused.setdefault(context, {})
        jar = {_key(c): c for c in _of_jar(self._jar)}
        if gone := [key for key in held if key not in jar]:
            await self._delete_in(context, gone, held)
        new = [c for key, c in jar.items() if c["value"] not in (held.get(key), refused.get(key))]
        for cookie in await self._added(context, new):
            held[_key(cookie)] = cookie["value"]
        refused.update((_key(c), c["value"]) for c in new if held.get(_key(c)) != c["value"])

    async def _delete_in(
        self, context: BrowserContext, gone: list[Key], held: dict[Key, str]
    ) -> None:
        """Delete from the context the cookies the jar lost, unless the context set one
        anew meanwhile (another tab of it): then the jar gets the new one back."""
        now = {_key(cookie): cookie for cookie in await context.cookies()}
        for key in gone:
            cookie = now.get(key)
            if cookie is not None and cookie["value"] != held[key]:
                held[key] = cookie["value"]
                _store(self._jar, cookie)
                continue
            domain, path, name = key
            await context.clear_cookies(name=name, domain=domain, path=path)
            del held[key]

    async def _added(
        self, context: BrowserContext, cookies: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Add ``cookies`` to the context; return those it took. One Chromium refuses (a
        quoted value with a ``;``) fails them all at once: then they go one by one."""
        from playwright.async_api import Error

        try:
            await context.add_cookies(cookies)  # type: ignore[arg-type]
            return cookies
        except Error:
            pass
        taken = []
        for cookie in cookies:
            try:
                await context.add_cookies([cookie])  # type: ignore[list-item]
                taken.append(cookie)
            except Error as exc:
                log.debug("browser: cookie %s refused: %s", cookie["name"], exc)
        return taken

    async def to_jar(self, context: BrowserContext) -> None:
        """Put the cookies the context set (by HTTP or by script) into fw's jar, and delete
        from it those the context deleted (or let expire) since."""
        held = self._held.setdefault(context, {})
        now = {_key(cookie): cookie for cookie in await context.cookies()}
        for key, cookie in now.items():
            if held.get(key) != cookie["value"] and _store(self._jar, cookie):
                held[key] = cookie["value"]  # a cookie the jar cannot hold stays unheld
        jar = {_key(c): c["value"] for c in _of_jar(self._jar)}
        for key in [key for key in held if key not in now]:
            if jar.get(key) == held.pop(key):  # not set anew meanwhile by fw's own fetch
                _delete(self._jar, key)


def _key(cookie: Mapping[str, Any]) -> Key:
    return (cookie["domain"], cookie["path"], cookie["name"])


def _of_jar(jar: AbstractCookieJar) -> Iterable[dict[str, Any]]:
    """The jar's cookies as Playwright takes them."""
    host_only = _host_only(jar)
    for morsel in jar:
        domain = morsel["domain"]
        if domain and not host_only(morsel) and not _is_ip(domain):
            domain = "." + domain  # a Domain cookie: its subdomains get it too
        quoted = morsel.coded_value.startswith('"')  # sent quoted: the page sees it so
        yield {
            "name": morsel.key,
            "value": morsel.coded_value if quoted else morsel.value,
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


def _store(jar: AbstractCookieJar, cookie: Mapping[str, Any]) -> bool:
    """Put a cookie of the browser's into the jar; say whether the jar could take it."""
    morsel: Morsel[str] = Morsel()
    try:
        morsel.set(cookie["name"], cookie["value"], cookie["value"])
    except CookieError:  # a name a browser takes and Python's do not: a space, "version"
        log.debug("browser: cookie %r not kept: not a name fw can send", cookie["name"])
        return False
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
    return True


def _delete(jar: AbstractCookieJar, key: Key) -> None:
    """Delete a cookie from the jar, as a server does: the same one, expired."""
    domain, path, name = key
    morsel: Morsel[str] = Morsel()
    morsel.set(name, "", "")
    morsel["path"] = path
    if domain.startswith("."):
        morsel["domain"] = domain[1:]
    morsel["max-age"] = "0"
    jar.update_cookies({name: morsel}, URL.build(scheme="http", host=domain.lstrip(".")))


def _is_ip(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host
