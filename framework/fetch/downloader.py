"""Fetch requests over one aiohttp session: a Response, or a FetchError naming the failure."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import yarl
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.http_exceptions import ContentEncodingError
from multidict import CIMultiDict

from framework.__about__ import DISTRIBUTION, __version__
from framework.config.project import DomainPolicy, Project
from framework.errors import FetchError
from framework.fetch.codings import CutShort, Decoding, TooLarge, Undecodable
from framework.fetch.cookies import CookieJar
from framework.fetch.credentials import HostHeaders
from framework.fetch.parsers import Parsers
from framework.fetch.retry import retryable_status
from framework.fetch.stalls import Stalls
from framework.http import Request, Response, media_type
from framework.http.urls import host_of, redact_proxy

__all__ = [
    "DEFAULT_HEADERS",
    "MAX_SIZE",
    "READ_AT_MOST",
    "DownloadSettings",
    "Downloader",
    "Fetcher",
    "Traffic",
    "user_agent",
]

DEFAULT_HEADERS: Mapping[str, str] = {
    "User-Agent": f"fw/{__version__} (+https://pypi.org/project/{DISTRIBUTION}/)",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en;q=0.9,*;q=0.5",
}


#: A request's meta key: read at most this many bytes of the body and keep them, instead of
#: failing as ``too_large`` past ``max_response_size`` (robots.txt, of which RFC 9309 reads
#: the first 500 KiB).
READ_AT_MOST = "read_at_most"
#: A request's meta key: the largest body in bytes to accept for it, in place of
#: ``max_response_size`` (an item step's download, ``files.max_size``).
MAX_SIZE = "max_size"


class Fetcher(Protocol):
    """The fetching seam, an async context manager. This is all the engine calls."""

    async def __aenter__(self) -> Fetcher:
        """Open connections, sessions, whatever fetching needs; return the fetcher itself
        (the engine calls ``fetch`` of the object it was given)."""

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Release them."""

    async def fetch(self, request: Request) -> Response:
        """Return the response to ``request`` (no redirects followed), or raise FetchError."""


@dataclass(frozen=True)
class DownloadSettings:
    """What the downloader needs from the project."""

    concurrency: int
    timeout: float
    max_response_size: int
    headers: Mapping[str, str]
    cookies: bool
    domains: Mapping[str, DomainPolicy] = field(default_factory=dict)
    #: The hosts the project's credentials go to (none named: every host).
    allowed_domains: tuple[str, ...] = ()
    #: The start URLs: a host one names with ``https`` gets no credentials over ``http``.
    start_urls: tuple[str, ...] = ()

    @classmethod
    def of(cls, project: Project, concurrency: int | None = None) -> DownloadSettings:
        """Take the project's settings; ``concurrency`` defaults to ``concurrency.total``."""
        return cls(
            concurrency or project.concurrency.total,
            project.timeout,
            project.max_response_size,
            project.headers,
            project.cookies,
            project.domains,
            project.allowed_domains or (),
            project.start_urls,
        )


class Traffic(Protocol):
    """Where the downloader counts what pooling saves: new connections and DNS look-ups."""

    connections: int
    dns_lookups: int


@dataclass
class _Uncounted:
    connections: int = 0
    dns_lookups: int = 0


def user_agent(headers: Mapping[str, str]) -> str:
    """Return the User-Agent sent with ``headers``: robots.txt rules are matched against it."""
    for name, value in headers.items():
        if name.lower() == "user-agent":
            return value
    return DEFAULT_HEADERS["User-Agent"]


class Downloader:
    """Own the crawl's ``ClientSession`` and turn each request into a response."""

    def __init__(
        self,
        settings: DownloadSettings,
        parsers: Parsers,
        traffic: Traffic | None = None,
        stalls: Stalls | None = None,
    ) -> None:
        self._settings, self._parsers = settings, parsers
        self._traffic = traffic or _Uncounted()
        self._stalls = stalls or Stalls()
        self._session: aiohttp.ClientSession | None = None
        self._host_headers = HostHeaders(
            settings.headers, settings.domains, settings.allowed_domains, settings.start_urls
        )

    async def __aenter__(self) -> Downloader:
        settings = self._settings
        _size_host_caches()
        headers = CIMultiDict(DEFAULT_HEADERS)
        headers.update(self._host_headers.everywhere)  # credentials go per request
        # fw enforces per-host limits itself; the pool only caps the total and reuses
        # connections, and its DNS cache saves a look-up per request on the same host.
        connector = aiohttp.TCPConnector(
            limit=settings.concurrency,
            limit_per_host=0,
            ttl_dns_cache=300,
            resolver=_CountingResolver(aiohttp.DefaultResolver(), self._traffic),
            socket_factory=self._new_socket,
        )
        jar = CookieJar() if settings.cookies else aiohttp.DummyCookieJar()
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            cookie_jar=jar,
            trust_env=_environment_matters(),
            timeout=aiohttp.ClientTimeout(total=None),  # fetch() keeps its own deadline
            auto_decompress=False,  # _read undoes codings, checking each stream whole
        )
        return self

    def _env_proxy(self, request: Request) -> str | None:
        """Return the environment's proxy that carried ``request``, if one did (a 407
        answer is that proxy's, never the site's)."""
        assert self._session is not None
        if not self._session.trust_env:
            return None
        proxies = getproxies()
        found = proxies.get(request.url.partition(":")[0].lower())
        if found is None or proxy_bypass(host_of(request.url)):
            return None
        return found

    def _new_socket(self, address: AddrInfoType) -> socket.socket:
        """Open a socket for a new connection, counting it: what pooling saves."""
        self._traffic.connections += 1
        family, kind, proto, _, _ = address
        return socket.socket(family, kind, proto)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def cookies(self) -> aiohttp.abc.AbstractCookieJar:
        """The crawl's cookie jar, which fetch layers share (a headless browser's cookies)."""
        assert self._session is not None, "use the downloader as an async context manager"
        return self._session.cookie_jar

    async def fetch(self, request: Request) -> Response:
        """Fetch ``request`` without following redirects (the engine does, through dedup).

        Through ``request.proxy`` if it names one, else through the environment's proxy
        if any. aiohttp sends the proxy's credentials to the proxy alone: for https they
        go with ``CONNECT`` only, never into the tunnel.
        """
        assert self._session is not None, "use the downloader as an async context manager"
        proxy = request.proxy
        if proxy is not None:
            _check_proxy(proxy)
        if request.render:  # a fetch layer renders these, passing on ``render=False``
            raise _not_rendered()
        try:
            # The time a blocking callback held the loop is not the server's.
            async with (
                self._stalls.deadline(self._settings.timeout),
                self._session.request(
                    request.method,
                    request.url,
                    headers=self._headers(request),
                    data=request.body,
                    allow_redirects=False,
                    proxy=proxy,
                ) as answer,
            ):
                if answer.status == 407 and (refused := proxy or self._env_proxy(request)):
                    raise _proxy_refused(refused)
                body = await self._read(
                    answer, request.meta.get(READ_AT_MOST), request.meta.get(MAX_SIZE)
                )
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
            timeout = self._settings.timeout
            if proxy is None:
                raise _classify(exc, timeout) from exc
            raise _proxy_failure(exc, timeout, proxy) from exc
        return Response(
            request.url,
            answer.status,
            answer.headers,
            body,
            request,
            self._parsers.for_type(media_type(answer.headers)),
        )

    def _headers(self, request: Request) -> Mapping[str, str] | None:
        """The request's headers beyond the session's: the project's for its host (see
        ``credentials``), then its own."""
        if not self._host_headers:
            return request.headers
        scoped = self._host_headers.for_request(request)
        if not request.headers:
            return scoped
        merged = CIMultiDict(scoped)
        merged.update(request.headers)  # the request's own win, whatever their case
        return merged

    async def _read(
        self,
        answer: aiohttp.ClientResponse,
        at_most: int | None = None,
        max_size: int | None = None,
    ) -> bytes:
        """Read the body as it streams in, stopping as soon as it exceeds the limit.

        The limit applies to decoded bytes, so a small gzip bomb is cut off too; a coded
        body must be whole (``codings``).
        ``at_most`` (the request's ``READ_AT_MOST``) keeps that many bytes instead of failing;
        ``max_size`` (its ``MAX_SIZE``) replaces ``max_response_size``.
        """
        cap = self._settings.max_response_size if max_size is None else max_size
        limit = cap if at_most is None else at_most
        length = answer.content_length
        if length is not None and length > limit and at_most is None:
            raise _too_large(limit, max_size is not None)
        if length is not None and length <= limit and "Content-Encoding" not in answer.headers:
            return await answer.read()  # the usual case: bounded by the length just checked
        try:
            return await _streamed(answer, limit)
        except TooLarge as exc:
            if at_most is None:
                raise _too_large(limit, max_size is not None) from None
            return exc.read[:limit]
        except CutShort as exc:  # on the way, most likely: another try may get it whole
            raise aiohttp.ClientPayloadError(f"the body was cut short: {exc}") from None
        except Undecodable as exc:  # the same bytes would come again
            raise FetchError("bad_response", f"undecodable body: {exc}") from None


async def _streamed(answer: aiohttp.ClientResponse, limit: int) -> bytes:
    """Read the body as it streams in, its codings undone; raise ``TooLarge`` past
    ``limit`` bytes, and ``CutShort`` for a body that did not come whole."""
    end = _connections_end(answer)
    # A list header may come as several lines: they mean the lines joined by commas.
    decoding = Decoding(", ".join(answer.headers.getall("Content-Encoding", ())))
    chunks: list[bytes] = []
    size = 0
    async for received in answer.content.iter_any():
        try:
            chunk = decoding.feed(received, limit - size) if decoding.active else received
        except TooLarge:  # inflated under another coding: what was read so far
            raise TooLarge(b"".join(chunks)) from None
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise TooLarge(b"".join(chunks))
    if end is not None and end.done() and (reset := end.exception()) is not None:
        raise aiohttp.ClientPayloadError(f"the connection broke before its end: {reset}")
    decoding.end()
    return b"".join(chunks)


def _connections_end(answer: aiohttp.ClientResponse) -> asyncio.Future[None] | None:
    """For a body that the connection's end delimits (no length, not chunked), the future
    of that end: aiohttp takes a reset there for the body's end, a cut page for a whole one.

    None for a body with a length, or none at all.
    """
    if answer.content_length is not None or "Transfer-Encoding" in answer.headers:
        return None
    if answer.status in (204, 304) or answer.method == "HEAD":
        return None
    protocol = answer.connection.protocol if answer.connection is not None else None
    end = protocol.closed if protocol is not None else None
    if end is not None:  # seen by the read, or here: never "exception never retrieved"
        end.add_done_callback(_seen)
    return end


def _seen(end: asyncio.Future[None]) -> None:
    if not end.cancelled():
        end.exception()


#: Hosts whose encoded forms yarl keeps; its own caches keep 256-512.
_HOST_CACHE = 16_384


def _size_host_caches() -> None:
    """Let yarl remember as many hosts as a broad crawl visits in turn.

    aiohttp parses each request's URL with yarl, which caches the work done on its host
    (validating a name, encoding it to IDNA, parsing an IP address). A crawl going round
    2,000 hosts would miss those caches on every request: parsing 127.20.x.y alone cost
    3% of the broad benchmark's CPU. A full cache is a few megabytes.
    """
    info = yarl.cache_info()
    sizes = {name: info[name].maxsize for name in ("idna_encode", "idna_decode", "encode_host")}
    if any(size is not None and size < _HOST_CACHE for size in sizes.values()):
        # Configuring empties every cache: only when one is too small, never shrinking one.
        yarl.cache_configure(
            **{f"{name}_size": _at_least(size, _HOST_CACHE) for name, size in sizes.items()}
        )


def _at_least(size: int | None, least: int) -> int | None:
    return None if size is None else max(size, least)  # None: unbounded


class _CountingResolver(AbstractResolver):
    """Count look-ups that miss the connector's DNS cache (a trace would cost every request)."""

    def __init__(self, resolver: AbstractResolver, traffic: Traffic) -> None:
        self._resolver, self._traffic = resolver, traffic

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self._traffic.dns_lookups += 1
        return await self._resolver.resolve(host, port, family)

    async def close(self) -> None:
        await self._resolver.close()


def _environment_matters() -> bool:
    """Tell whether proxy variables or a netrc file exist for aiohttp to honour.

    aiohttp's ``trust_env`` looks both up in a worker thread on every request; when neither
    exists (the usual case) that is two thread round trips per page for nothing.
    """
    netrc = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    return bool(getproxies()) or netrc.is_file()


def _not_rendered() -> FetchError:
    return FetchError(
        "not_rendered",
        "Request(render=True), and no installed plugin renders pages: install fw's browser "
        "extra (pip install 'fwcrawl[browser]') and do not disable its browser plugin",
    )


def _check_proxy(proxy: str) -> None:
    """Refuse a proxy aiohttp cannot use, naming it without its secret."""
    try:
        parts = urlsplit(proxy)
        usable = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises for a port out of range
    except ValueError:  # that, or an unclosed IPv6 bracket
        usable = False
    if not usable:
        raise FetchError(
            "proxy", f"proxy {redact_proxy(proxy)}: not an http:// or https:// URL with a host"
        )


def _proxy_failure(exc: BaseException, timeout: float, proxy: str) -> FetchError:
    """Name a failure through ``proxy``: which proxy, if its own, and never its secret."""
    if isinstance(exc, aiohttp.ClientHttpProxyError) and exc.status == 407:
        return _proxy_refused(proxy)
    error = _classify(exc, timeout)
    message = str(error)
    if error.kind == "proxy":
        message = f"proxy {redact_proxy(proxy)}: {message.removeprefix('the proxy: ')}"
    secret = proxy[: proxy.rfind("@")].partition("//")[2] if "@" in proxy else ""
    if secret:  # should aiohttp ever quote the proxy's URL
        message = message.replace(secret, "***")
    return FetchError(error.kind, message, retryable=error.retryable, retry_after=error.retry_after)


def _proxy_refused(proxy: str) -> FetchError:
    """A 407: the proxy wants credentials, or other ones. The pool may route elsewhere."""
    why = "it refused the credentials" if "@" in proxy else "it asks for credentials"
    return FetchError("proxy", f"proxy {redact_proxy(proxy)}: HTTP 407: {why}", retryable=True)


def _too_large(limit: int, own: bool = False) -> FetchError:
    """``own``: the request's ``MAX_SIZE`` set the limit, not ``max_response_size``."""
    return FetchError(
        "too_large",
        f"body larger than {'its max_size' if own else 'max_response_size'} ({limit} bytes)",
    )


def _classify(exc: BaseException, timeout: float) -> FetchError:
    """Name a failed fetch for the stats, and say whether trying again may help."""
    if isinstance(exc, TimeoutError):
        return FetchError("timeout", f"no complete answer within {timeout:g}s", retryable=True)
    if isinstance(exc, ValueError) and "AUTHORIZATION header" in str(exc):  # aiohttp's words
        return FetchError(
            "invalid_url",
            "the URL's user:password@ and an Authorization header (headers:, domains:) both "
            "give credentials; keep one",
        )
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return FetchError("invalid_url", f"cannot fetch this URL: {exc}")
    if isinstance(exc.__cause__, ContentEncodingError):  # the same bytes will not inflate
        return FetchError("bad_response", f"undecodable body: {_one_line(exc.__cause__)}")
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return FetchError("proxy", f"the proxy: cannot reach it: {_one_line(exc)}", retryable=True)
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # an https tunnel the proxy refused
        return _tunnel_refused(exc)
    kinds: tuple[tuple[type[Exception], str], ...] = (
        (aiohttp.ClientConnectorDNSError, "dns"),
        (aiohttp.ClientConnectorError, "connection"),
        (aiohttp.ServerDisconnectedError, "disconnected"),
        (aiohttp.ClientPayloadError, "truncated"),
        (aiohttp.ClientResponseError, "bad_response"),
        (aiohttp.ClientError, "connection"),
    )
    kind = next((name for cls, name in kinds if isinstance(exc, cls)), "connection")
    detail = exc.message if isinstance(exc, aiohttp.ClientResponseError) else exc
    return FetchError(
        kind, f"{type(exc).__name__}: {_one_line(detail)}".rstrip(": "), retryable=True
    )


def _tunnel_refused(exc: aiohttp.ClientHttpProxyError) -> FetchError:
    """Name a ``CONNECT`` the proxy refused: its credentials, or the site beyond it, which
    fails as the status the proxy gave, as it would have for a plain-http page."""
    if exc.status == 407:
        return FetchError("proxy", "the proxy: HTTP 407 to CONNECT", retryable=True)
    return FetchError(
        f"http_{exc.status}",
        f"the proxy could not open a tunnel to the site: HTTP {exc.status} {exc.message}",
        retryable=retryable_status(exc.status),
    )


def _one_line(detail: object) -> str:
    """Squeeze a message onto one line: aiohttp's span several for some errors, and echo
    what the server sent (a bad status line quotes kilobytes of the page): cut short."""
    line = " ".join(str(detail).split())
    return line if len(line) <= _LONGEST else line[: _LONGEST - 1] + "…"


#: The most of an error's detail a failure's message keeps.
_LONGEST = 300
