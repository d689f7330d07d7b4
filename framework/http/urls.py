"""What the engine needs to know about a URL: is it fetchable, is it on-site, is it new."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from hashlib import blake2b
from typing import Any, NamedTuple
from urllib.parse import unquote_to_bytes, urlsplit

from w3lib.url import canonicalize_url

from framework.http import Request, is_plugin_callback
from framework.http.forms import SECRET_QUERY

__all__ = [
    "Offsite",
    "SignInPassword",
    "blank_in_credentials",
    "canonical_url",
    "fingerprint",
    "header_url",
    "host_and_port",
    "host_of",
    "older_fingerprint",
    "redact",
    "redact_all",
    "redact_proxy",
    "redacted_request",
    "sign_in_passwords",
    "site_of",
    "split_host",
    "unfetchable",
    "without_sign_in",
]

_FETCHABLE = ("http://", "https://")
# No ";": w3lib reads it as the start of path parameters and drops empty ones.
_CANONICAL = re.compile(r"https?://[a-z0-9.-]+(?::[0-9]{1,5})?/[A-Za-z0-9\-._~!$&'()*+,=:@/]*\Z")
#: Where a URL's authority begins: after its scheme and "//". The scheme is bounded, so that
#: a long run of letters and dots (a hostile page's words in an error) costs linear time.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}://")
#: The userinfo after a URL's "//": up to its last "@" before the path, query or fragment.
#: Across quotes: a password may hold one, and a secret shown costs more than a value hidden.
_USERINFO = re.compile(r"[^/?#@\s]*(?:@[^/?#@\s]*)*@")
#: The authority after a URL's "//", as a text shows it: up to a path, a blank or a double
#: quote. A single quote stays in: a password may start with one ("ada:'#x@h").
_AUTHORITY = re.compile(r"[^/?#@\s\"<>]*")
#: What ends a URL in a sentence rather than its port: "(http://h:80)," keeps its port.
_TRAILING = ").,;:!]'\""
_BLANK = re.compile(r"\s")
#: What goes on after an authority within a URL: a path, a query, a fragment, userinfo.
_GOES_ON = frozenset("/?#@")
_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|\Z)")
#: C0 controls and DEL: a raw line break in an href would forge a log line or a header.
#: And lone surrogates, which no URL can be encoded with (a spider's own, undecoded bytes).
_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
#: A byte of a header that is not UTF-8, as aiohttp keeps it: a surrogate escape.
_RAW_BYTE = re.compile("[\udc80-\udcff]")


def redact(url: str) -> str:
    """Return ``url`` for people to read: any credentials in it (``user:password@``)
    become ``***@``. A username alone may be a token, so it goes too.

    A password written with a raw ``/``, ``?`` or ``#`` ends the authority early, leaving
    a "port" that is no number (``http://ada:pa#ss@host/``): then everything up to the
    last ``@`` goes, or with no ``@`` left (a URL cut short in an error), that "port".
    """
    found = _SCHEME.match(url)
    if found is None:
        return url
    shown, stop = _masked(url, found.end(), lambda start: url.rfind("@", start))
    return url[: found.end()] + shown + url[stop:]


def shown_url(request: Request) -> str:
    """Return ``request``'s URL as fw shows and records it: redacted, a URL in its query
    too (``redact_all``: a redirector's ``?to=ftp://user:password@host/``), and without the
    query of a sign-in form sent by GET (``SECRET_QUERY``), which holds the password."""
    url = redact_all(request.url)
    return url.partition("?")[0] if request.meta.get(SECRET_QUERY) else url


class SignInPassword(NamedTuple):
    """A password a sign-in form sent in a request's query (``SECRET_QUERY``)."""

    written: str  # as the query writes it, percent-encoded
    text: str  # decoded: UTF-8, else a character a byte (a form sent in Latin-1, cp1251)
    raw: bytes  # the bytes sent


def sign_in_passwords(request: Request) -> list[SignInPassword]:
    """Return the passwords a GET sign-in form sent in ``request``'s query; those too
    short to tell from other words of a text (``_SHORTEST_SECRET``) are left out."""
    fields = request.meta.get(SECRET_QUERY)
    if not fields:
        return []
    found = []
    for part in urlsplit(request.url).query.split("&"):
        name, _, value = part.partition("=")
        if fields is True or _query_word(name)[0] in fields:
            text, raw = _query_word(value)
            if len(text) >= _SHORTEST_SECRET:
                found.append(SignInPassword(value, text, raw))
    return found


def _query_word(word: str) -> tuple[str, bytes]:
    """Decode a name or value of a query, and return it with its bytes: UTF-8 if they are
    that, else a character a byte, never U+FFFD, so that it is still found byte by byte."""
    raw = unquote_to_bytes(word.replace("+", " ").encode("utf-8", "surrogatepass"))
    try:
        return raw.decode("utf-8"), raw
    except UnicodeDecodeError:
        return raw.decode("latin-1"), raw


#: A shorter password is not masked where it is repeated: it would mask words of the text.
_SHORTEST_SECRET = 4


def without_sign_in(text: str, request: Request | None) -> str:
    """Return ``text`` (an error about ``request``) with the passwords a sign-in form sent
    in its query masked, as the URL writes them and decoded: a redirect or a spider's
    error may quote the URL, or a URL that repeats them."""
    for password in sign_in_passwords(request) if request is not None else ():
        for spelling in sorted({password.written, password.text}, key=len, reverse=True):
            text = text.replace(spelling, "***")
    return text


def redact_all(text: str) -> str:
    """Return ``text`` (a log line, an error) with every URL in it redacted (``redact``).

    In linear time: the text may hold a hostile page's words."""
    if "://" not in text:
        return text
    word = (0, -1)  # the end of the blank-free run a URL is in, and its last "@" (or -1)

    def last_at(start: int) -> int:
        nonlocal word
        if start >= word[0]:  # once per run, not once per URL in it
            blank = _BLANK.search(text, start)
            end = blank.start() if blank else len(text)
            word = (end, text.rfind("@", start, end))
        return word[1] if word[1] >= start else -1

    pieces, done = [], 0
    for found in _SCHEME.finditer(text):
        if found.end() <= done:  # inside what the URL before it masked
            continue
        shown, stop = _masked(text, found.end(), last_at)
        pieces += [text[done : found.end()], shown]
        done = stop
    pieces.append(text[done:])
    return "".join(pieces)


def _masked(text: str, start: int, last_at: Callable[[int], int]) -> tuple[str, int]:
    """Mask the credentials of the URL whose authority begins at ``start``: return what to
    show, and where in ``text`` what it replaces ends (``start``: nothing)."""
    userinfo = _USERINFO.match(text, start)
    if userinfo is not None:
        return "***@", userinfo.end()
    found = _AUTHORITY.match(text, start)
    authority = found[0] if found else ""
    host, colon, port = authority.rpartition(":")
    end = start + len(authority)
    if text[end : end + 1] not in _GOES_ON:  # ")," ending a sentence, not a password going on
        port = port.rstrip(_TRAILING)
    if not colon or not port or port.isdigit() or "]" in port:  # a port or none: no password
        return "", start
    at = last_at(start)
    if at != -1:  # a password with a raw / ? or #: up to the last @ of the URL
        return "***@", at + 1
    return f"{host}:***", start + len(host) + 1 + len(port)  # a URL cut short at it


def redacted_request(request: Request) -> dict[str, Any]:
    """Return ``request.to_dict()`` as people and files may see it: no password of its
    URL, nor of the URLs that redirected to it, and its proxy without its credentials."""
    data = {**request.to_dict(), "url": redact(request.url)}
    if chain := request.meta.get("redirect_urls"):
        data["meta"] = {**request.meta, "redirect_urls": [redact(url) for url in chain]}
    if request.proxy is not None:
        data["proxy"] = redact_proxy(request.proxy, mask="")
    return data


def unfetchable(url: str) -> str | None:
    """Say why fw would not fetch ``url`` (``scheme`` or ``invalid_url``), or return None.

    Only absolute http(s) URLs with a host and a valid port are fetched; ``mailto:`` and
    ``javascript:`` links are not errors, just not for a crawler. A URL holding a control
    character (a raw line break, a tab) is invalid: urllib would quietly drop it.
    """
    if _CONTROL.search(url):
        return "invalid_url"
    if not url[:8].lower().startswith(_FETCHABLE):
        return "scheme"
    if _BLANK_IN_AUTHORITY.match(url):  # in user:password@, redact could not find it all
        return "invalid_url"
    try:
        parts = urlsplit(url)
        valid = bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:  # an unbalanced IPv6 bracket, a port like 99999
        valid = False
    return None if valid else "invalid_url"


def blank_in_credentials(url: str) -> bool:
    """Whether ``url`` has a blank in its credentials (``ada:pass word@``): an error must
    not quote it, since ``redact`` cannot find where its password ends."""
    return _BLANK_IN_CREDENTIALS.match(url) is not None


#: A blank before a URL's path: in its host, or in its credentials.
_BLANK_IN_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#\s]*\s")
_BLANK_IN_CREDENTIALS = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*\s[^/?#]*@")


def header_url(value: str) -> str:
    """Return the URL a header gives (``Location``) as a browser reads it: its bytes that
    are not UTF-8 (a Latin-1 ``é``) percent-encoded, as they came."""
    return _RAW_BYTE.sub(lambda raw: f"%{ord(raw[0]) - 0xDC00:02X}", value.strip())


def host_of(url: str) -> str:
    """Return the lower-cased host name of ``url`` (no port, an IPv6 address without its
    brackets), or ``""`` if it has none."""
    try:
        return _same_ip6(urlsplit(url).hostname or "")
    except ValueError:  # e.g. an unbalanced IPv6 bracket in a hostile link
        return ""


def _same_ip6(host: str) -> str:
    """Write an IPv6 address one way (``::1``, not ``0::1``), so that it is one host."""
    if ":" not in host:  # a name or an IPv4 address: the usual case, and cheap
        return host
    try:
        return ipaddress.IPv6Address(host).compressed
    except ValueError:
        return host


def canonical_url(url: str) -> str:
    """Return ``url`` with the fragment dropped and the query sorted, for dedup.

    Most URLs are canonical already: a lower-case host, a path of plain characters, no
    query, fragment, escape or dot segment. Those are returned as they are, which is what
    w3lib would return (a test checks it) at a fraction of the cost. A URL w3lib cannot
    take apart is its own canonical form: fetching it will say what is wrong.
    """
    if _CANONICAL.match(url) and not _DOT_SEGMENT.search(url):
        return url
    try:
        return canonicalize_url(url)
    except ValueError:
        return url


def fingerprint(request: Request) -> int:
    """Return a 64-bit fingerprint of method + canonical URL + body, and the callback of
    a plugin's request: a sitemap a page links to is a page, and a sitemap too.

    64 bits keep a billion-URL seen-set small; the chance of any collision among
    10 million URLs is about 3 in a million.
    """
    digest = _digest(request)
    if is_plugin_callback(request.callback):  # a spider's pages' fingerprints stay as they were
        digest.update(b"\0" + str(request.callback).encode())
    return int.from_bytes(digest.digest(), "big")


def older_fingerprint(request: Request) -> int | None:
    """Return the fingerprint fw gave a plugin's request before its callback was part of
    it, to find what an older fw stored under it (a recording, a failure); None for any
    other request, whose fingerprint has not changed."""
    if not is_plugin_callback(request.callback):
        return None
    return int.from_bytes(_digest(request).digest(), "big")


def _digest(request: Request) -> Any:
    digest = blake2b(digest_size=8)
    digest.update(request.method.encode())
    digest.update(canonical_url(request.url).encode())
    if request.body:
        digest.update(request.body)
    return digest


#: The standard web ports count as one, so that a site's redirect from http to https stays
#: on-site; any other port is a service of its own.
_WEB_PORTS = frozenset({80, 443})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_and_port(url: str) -> tuple[str, int | None]:
    """Return the lower-cased host name of ``url`` and its port, the scheme's if unwritten."""
    try:
        parts = urlsplit(url)
        host = _same_ip6(parts.hostname or "")
        return host, parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:  # an unbalanced IPv6 bracket, a port like 99999
        return "", None


def site_of(url: str) -> str:
    """Return ``host:port`` of ``url``, its port the scheme's if unwritten (``a.test:443``,
    ``[::1]:8080``)."""
    host, port = host_and_port(url)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def redact_proxy(proxy: str, mask: str = "***") -> str:
    """Return a proxy's URL with its credentials (``user:password@``) replaced by ``mask``;
    an empty mask drops them with their ``@``. A proxy is shown this way everywhere.

    Everything up to the last ``@`` goes, even a ``/`` or ``#`` a password was written with
    unescaped: a proxy's URL has no path worth keeping, and a secret must not show.
    """
    start = proxy.find("//") + 2 if "//" in proxy else 0
    at = proxy.rfind("@", start)
    if at == -1:
        return proxy
    return proxy[:start] + (f"{mask}@" if mask else "") + proxy[at + 1 :]


_HOST_PORT = re.compile(
    r"(?:\[(?P<ip6>[0-9a-f:.]+(?:%[^\]\s]+)?)\]|(?P<name>[^/:@\s\[\]]+))"
    r"(?::(?P<port>[0-9]{1,5}))?\Z"
)


def split_host(entry: str) -> tuple[str, int | None]:
    """Split an ``allowed_domains`` entry into its host and port (None if unwritten).

    An entry is ``host``, ``host:port``, ``[::1]``, ``[::1]:8080``, or a bare IPv6
    address (``::1``), which has no port; a leading dot is dropped. Raise ``ValueError``
    saying what is wrong with anything else.
    """
    text = entry.strip().lower().lstrip(".")
    if text.count(":") > 1 and not text.startswith("["):
        text = f"[{text}]"
    found = _HOST_PORT.match(text)
    if found is None:
        raise ValueError(
            "not a host name; write it like movie.douban.com, with a port if the crawl must "
            "stay on one (example.com:8080); an IPv6 address as ::1 or [::1]:8080"
        )
    port = int(found["port"]) if found["port"] else None
    if port is not None and not 0 < port < 65536:
        raise ValueError("a port is a number from 1 to 65535")
    if found["name"] is not None:
        return found["name"], port
    try:
        return ipaddress.IPv6Address(found["ip6"]).compressed, port
    except ValueError as exc:
        raise ValueError(f"not an IPv6 address: {exc}") from None


class Offsite:
    """Decide which hosts a crawl may visit: the allowed domains and their subdomains.

    An entry with a port (``example.com:8080``) allows that port only, the standard web
    ports 80 and 443 counting as one; an entry without one allows any port.
    """

    def __init__(self, allowed_domains: Iterable[str]) -> None:
        self._domains = tuple(split_host(d) for d in allowed_domains)
        self._verdicts: dict[str, bool] = {}

    def allows(self, url: str) -> bool:
        """Tell whether ``url`` is on an allowed host (every host if none were named)."""
        if not self._domains:
            return True
        key = _authority(url)  # the same authority always gets the same verdict
        verdict = self._verdicts.get(key)
        if verdict is None:
            host, port = host_and_port(url)
            verdict = self._verdicts[key] = any(
                _on(host, port, domain, pinned) for domain, pinned in self._domains
            )
        return verdict


def _on(host: str, port: int | None, domain: str, pinned: int | None) -> bool:
    if host != domain and not host.endswith("." + domain):
        return False
    return pinned is None or port == pinned or {port, pinned} <= _WEB_PORTS


def _authority(url: str) -> str:
    """Return the part of ``url`` between ``//`` and the path, cheaply: it runs per link."""
    start = url.find("//") + 2
    end = min((i for i in (url.find(c, start) for c in "/?#") if i != -1), default=len(url))
    return url[:end].lower()
