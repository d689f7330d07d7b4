"""A proxy on this machine through which a tab's own requests leave as fw's own would.

What a rendered page fetches itself (scripts, XHR, images) leaves through the proxy its
document came through, as everything fw fetches does. Chromium takes a proxy per context,
but while fw routes a tab's requests it cannot answer a proxy's 407 with credentials
(measured: it asks again without them until it gives up). So a tab's context is given this
relay, which asks for nothing, and the relay adds the proxy's credentials on the way out:
they never reach the browser. A relay either sends everything through one proxy, or
chooses for each request as fw's downloader does from the environment (``HTTP_PROXY``,
``HTTPS_PROXY``, ``NO_PROXY``, ``~/.netrc``, read by aiohttp's own functions), going
straight to the site where no proxy applies.

Since it adds credentials, the relay is strict about whom it serves and what it passes on:

- only live connections of this user's processes (``peer.py``);
- only what a browser sends a proxy, in one reading: ``CONNECT host:port`` (then bytes,
  both ways) or requests in absolute form, each head in CRLF lines with at most one
  ``Content-Length``. Anything a proxy might split otherwise (bare LF, folded or repeated
  headers, ``Transfer-Encoding``) is answered 400, lest the credentials go out with a
  request the relay did not see;
- a connection quiet both ways for ``_IDLE_S`` is closed, so none outlives its tab.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.request import proxy_bypass

import aiohttp
from aiohttp.helpers import proxies_from_env
from yarl import URL

from .peer import same_user

__all__ = ["Relay"]

#: Headers of the tab's request that are the relay's to set, not the tab's.
_REPLACED = frozenset({b"proxy-authorization", b"proxy-connection"})
#: A head's most bytes, as a browser never comes near.
_HEAD_BYTES = 65_536
#: Bytes of a body or a tunnel passed on at a time.
_CHUNK = 65_536
#: Seconds a connection may stay quiet both ways before the relay closes it.
_IDLE_S = 120.0
#: Seconds the far end has to finish its answers once the tab hung up (a tab never
#: half-closes: it is gone), and to be found and connected to.
_GRACE_S, _CONNECT_S = 5.0, 10.0
#: Threads looking up the sites the relay connects to itself, apart from the crawl's:
#: a name that never resolves must not hold up fw's own work.
_LOOKUPS = 16
#: A request line a browser sends a proxy: absolute form, or CONNECT host:port.
_LINE = re.compile(rb"(?:CONNECT [^\s/]+:\d+|[A-Z]+ https?://[\x21-\x7e]+) HTTP/1\.[01]", re.ASCII)
#: A header line: a token, a colon, a value of anything but NUL (CR and LF end lines).
_FIELD = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\x00\r\n]*")
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\n\r\n"
_BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
_TIMEOUT = b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n"


class Refused(Exception):
    """A head the relay does not pass on; ``answer`` is the status it gets instead."""

    def __init__(self, answer: bytes) -> None:
        super().__init__(answer.decode())
        self.answer = answer


@dataclass(frozen=True)
class Hop:
    """Where the relay sends a request: a proxy, with the line that carries its
    credentials, or the site itself."""

    host: str
    port: int
    proxy: bool
    tls: bool = False
    auth: bytes = field(default=b"", repr=False)


class Relay:
    """Forward a tab's proxy requests, with the credentials: to ``upstream``, or, for
    None, each as the environment says.

    Where the relay connects to a site itself, Chromium cannot tell what address it is:
    so, as Chromium's own Local Network Access checks would, it refuses one that is not
    public (loopback, private, link-local), unless ``local``, or unless it is one of
    ``pages``: the hosts of the pages rendered, whose own resources a page may load, as
    Chromium lets a page reach its own origin.
    """

    def __init__(
        self, upstream: str | None, *, local: bool = False, pages: Set[str] = frozenset()
    ) -> None:
        if upstream is None:
            self._fixed: Hop | None = None
            self._environment = proxies_from_env()  # once: it reads ~/.netrc
        else:
            url = URL(upstream)
            self._fixed = _proxy(url, aiohttp.BasicAuth.from_url(url))
        self._local, self._pages = local, pages
        self._tls: ssl.SSLContext | None = None
        self._lookups: ThreadPoolExecutor | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        """Listen on a free port of 127.0.0.1; return the URL a context's proxy is set to."""
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0, limit=_HEAD_BYTES)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        """Stop listening and end every connection still relayed."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._lookups is not None:  # a look-up still hanging ends in its own time
            self._lookups.shutdown(wait=False, cancel_futures=True)

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if same_user(writer):
                head = await asyncio.wait_for(_head(reader), _IDLE_S)
                await self._relay(head, reader, writer)
        except Refused as refused:
            writer.write(refused.answer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the tab went away, or went quiet: nothing to answer
        finally:
            writer.close()

    def _hop(self, head: bytes) -> Hop:
        """The way out for the request ``head`` starts."""
        if self._fixed is not None:
            return self._fixed
        target = _target(head)
        scheme = "ws" if _tunnel(head) and target.port == 80 else target.scheme
        found = None if target.host and proxy_bypass(target.host) else scheme
        info = self._environment.get(found or "")
        if info is None:
            return Hop(target.raw_host or "", target.port or 80, proxy=False)
        return _proxy(info.proxy, info.proxy_auth)

    async def _relay(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            hop = self._hop(head)
        except ValueError:  # a host no URL can hold (bad IDNA, a port past 65535)
            raise Refused(_BAD_REQUEST) from None
        try:
            async with asyncio.timeout(_CONNECT_S):
                far_reader, far_writer = await self._connect(hop)
        except TimeoutError:
            raise Refused(_TIMEOUT) from None
        except OSError:  # the tab's request fails as the proxy's, as it would without us
            raise Refused(_BAD_GATEWAY) from None
        quiet = _Quiet()
        if hop.proxy or not _tunnel(head):
            asking = asyncio.ensure_future(self._ask(head, hop, reader, far_writer, quiet))
        else:  # straight to the site: the relay is the end of the tunnel
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            asking = asyncio.ensure_future(_pipe(reader, far_writer, quiet))
        answering = asyncio.ensure_future(_pipe(far_reader, writer, quiet))
        try:  # until the far end hangs up, or shortly after the tab did
            await asyncio.wait({answering, asking}, return_when=asyncio.FIRST_COMPLETED)
            if not answering.done() and not _ended_badly(asking):
                await asyncio.wait({answering}, timeout=_GRACE_S)
        finally:
            far_writer.close()  # first: the relay's close may cancel the wait below
            for task in (asking, answering):
                task.cancel()
            await asyncio.gather(asking, answering, return_exceptions=True)

    async def _ask(
        self,
        head: bytes,
        hop: Hop,
        reader: asyncio.StreamReader,
        far: asyncio.StreamWriter,
        quiet: _Quiet,
    ) -> None:
        """Send the tab's requests on, each with the credentials, while they take ``hop``."""
        while True:
            far.write(_forwarded(head, hop))
            if _tunnel(head):  # through the proxy: bytes from now on, both ways
                await _pipe(reader, far, quiet)
                return
            await _send_body(reader, far, _body_length(head), quiet)
            try:
                head = await quiet.read(_head(reader))
            except (asyncio.IncompleteReadError, Refused):  # done, or nothing to pass on
                _end(far)  # the answers to what went before still come back
                return
            if (_tunnel(head) and not hop.proxy) or self._same_hop(head) != hop:
                _end(far)  # another way out: the tab asks again on a new connection
                return

    def _same_hop(self, head: bytes) -> Hop | None:
        """The hop of a later request on a connection; None for one with no valid host."""
        try:
            return self._hop(head)
        except ValueError:
            return None

    async def _connect(self, hop: Hop) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a connection to ``hop``: a proxy by its name; a site at an address looked up
        on the relay's own threads, and refused if not public (unless ``local``)."""
        if hop.proxy:
            tls = self._context() if hop.tls else None
            return await asyncio.open_connection(hop.host, hop.port, ssl=tls)
        if self._lookups is None:
            self._lookups = ThreadPoolExecutor(_LOOKUPS, thread_name_prefix="fw-relay-lookup")
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(
            self._lookups, socket.getaddrinfo, hop.host, hop.port, 0, socket.SOCK_STREAM
        )
        addresses = [str(info[4][0]) for info in found]
        trusted = self._local or hop.host.lower() in self._pages
        if not trusted and not all(map(_public, addresses)):
            raise OSError(f"{hop.host} is not a public address")
        for address in addresses[:-1]:  # as a browser does: the next one if one fails
            with contextlib.suppress(OSError):
                return await asyncio.open_connection(address, hop.port)
        return await asyncio.open_connection(addresses[-1], hop.port)

    def _context(self) -> ssl.SSLContext:
        """The TLS settings for an https proxy, made once: a new one costs ~20 ms."""
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls


def _proxy(url: URL, auth: aiohttp.BasicAuth | None) -> Hop:
    """The hop through the proxy at ``url``; its credentials encoded as aiohttp does."""
    line = b"" if auth is None else f"Proxy-Authorization: {auth.encode()}\r\n".encode()
    tls = url.scheme == "https"
    return Hop(url.raw_host or "", url.port or (443 if tls else 80), True, tls, line)


def _forwarded(head: bytes, hop: Hop) -> bytes:
    """The tab's request head as ``hop`` gets it: a proxy with its credentials, a site in
    origin form (``GET /path``, the rest of the target byte for byte) with no proxy
    headers."""
    line, *fields = head[:-4].split(b"\r\n")
    kept = [f for f in fields if f.partition(b":")[0].lower() not in _REPLACED]
    if not hop.proxy:
        method, target, version = line.split(b" ")
        rest = re.sub(rb"^[a-z]+://[^/?]*", b"", target, flags=re.IGNORECASE)
        line = b" ".join([method, rest if rest.startswith(b"/") else b"/" + rest, version])
    return b"\r\n".join([line, *kept]) + b"\r\n" + hop.auth + b"\r\n"


def _public(address: str) -> bool:
    """Whether a site's address is on the public internet (not 127.x, 10.x, fe80::...),
    IPv4 addresses carried in IPv6 ones (mapped, 6to4, Teredo, NAT64) included."""
    ip = ipaddress.ip_address(address.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        carried = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if carried is None and (ip in _NAT64 or int(ip) >> 32 == 0):  # or ::a.b.c.d
            carried = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
        if carried is not None and not _public(str(carried)):
            return False
    return ip.is_global and not ip.is_multicast and not any(ip in net for net in _NOT_PUBLIC)


#: Python's is_global leaves out: NAT64's prefix (checked by the address it carries),
#: IPv6 site-local addresses, and the IETF's 192.0.0.0/24 past its first /29.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NOT_PUBLIC = (ipaddress.IPv6Network("fec0::/10"), ipaddress.IPv4Network("192.0.0.0/24"))


def _tunnel(head: bytes) -> bool:
    return head.startswith(b"CONNECT ")


def _target(head: bytes) -> URL:
    """The URL a checked head asks for (``https://host:port`` for a tunnel)."""
    target = head.split(b" ", 2)[1].decode("ascii")
    return URL(f"https://{target}") if _tunnel(head) else URL(target)


class _Quiet:
    """When a connection last moved, either way; reads that wait past ``_IDLE_S`` with
    nothing moving either way time out."""

    def __init__(self) -> None:
        self.last = asyncio.get_running_loop().time()

    async def read(self, reading: Awaitable[bytes]) -> bytes:
        task = asyncio.ensure_future(reading)
        loop = asyncio.get_running_loop()
        try:
            while True:
                left = self.last + _IDLE_S - loop.time()
                done, _ = await asyncio.wait({task}, timeout=max(left, 0.0))
                if done:
                    data = task.result()
                    self.last = loop.time()
                    return data
                if self.last + _IDLE_S <= loop.time():
                    raise TimeoutError
        finally:
            task.cancel()


async def _head(reader: asyncio.StreamReader) -> bytes:
    """Read one request head, checked; raise ``Refused`` for one not to pass on."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise Refused(b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n") from None
    line, *fields = head[:-4].split(b"\r\n")
    lines = head.replace(b"\r\n", b"")
    if b"\n" in lines or b"\r" in lines:  # a bare LF or CR: where a line ends is moot
        raise Refused(_BAD_REQUEST)
    if not _LINE.fullmatch(line) or not all(map(_FIELD.fullmatch, fields)):
        raise Refused(_BAD_REQUEST)
    names = [f.partition(b":")[0].lower() for f in fields]
    if names.count(b"content-length") > 1 or b"transfer-encoding" in names:
        raise Refused(_BAD_REQUEST)  # framing a proxy may read otherwise
    if not _tunnel(head) and _body_length(head) < 0:
        raise Refused(_BAD_REQUEST)  # a length that is no number
    return head


def _body_length(head: bytes) -> int:
    """The length of the body after ``head``; -1 if it says no number."""
    for field_ in head[:-4].split(b"\r\n")[1:]:
        name, _, value = field_.partition(b":")
        if name.lower() == b"content-length":
            return int(value) if value.strip().isdigit() else -1
    return 0


async def _send_body(
    reader: asyncio.StreamReader, far: asyncio.StreamWriter, length: int, quiet: _Quiet
) -> None:
    """Pass a body on as it comes, a chunk at a time: a big upload is never held whole."""
    while length:
        chunk = await quiet.read(reader.read(min(length, _CHUNK)))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", length)
        far.write(chunk)
        await far.drain()
        length -= len(chunk)
    await far.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, quiet: _Quiet) -> None:
    """Copy one direction until it ends; then end it on the other side too."""
    while data := await quiet.read(reader.read(_CHUNK)):
        writer.write(data)
        await writer.drain()
    _end(writer)


def _end(writer: asyncio.StreamWriter) -> None:
    """Tell the other side nothing more comes. A TLS stream cannot be half-closed: it is
    left open for the answers still coming, until its far end or the quiet ends it."""
    if writer.can_write_eof():
        writer.write_eof()


def _ended_badly(task: asyncio.Future[None]) -> bool:
    """Whether the tab's side ended in a way the far end's answers cannot outlive."""
    return task.done() and (task.cancelled() or task.exception() is not None)
