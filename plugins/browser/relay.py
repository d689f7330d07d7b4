"""A proxy on this machine through which a tab's own requests reach the crawl's proxy.

What a rendered page fetches itself (scripts, XHR, images) leaves through the proxy its
document came through, as everything fw fetches does. Chromium takes a proxy per context,
but while fw routes a tab's requests it cannot answer a proxy's 407 with credentials
(measured: it asks again without them until it gives up). So a tab's context is given this
relay, which asks for nothing, and the relay adds the proxy's credentials on the way out:
they never reach the browser.

Since it adds credentials, the relay is strict about whom it serves and what it passes on:

- on Linux it asks the kernel (sock_diag) who owns the connecting socket, and serves only
  live connections of this user's processes: any other local user reaching its port would
  ride on the credentials;
- it passes on only what a browser sends a proxy, in one reading: ``CONNECT host:port``
  (then bytes, both ways) or requests in absolute form, each head in CRLF lines with at
  most one ``Content-Length``. Anything a proxy might split otherwise (bare LF, folded or
  repeated headers, ``Content-Length`` with ``Transfer-Encoding``) is answered 400, lest
  the credentials go out with a request the relay did not see;
- a connection quiet for ``_IDLE_S`` is closed, so none outlives its tab for long.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import re
import socket
import struct
import sys
from collections.abc import Awaitable

import aiohttp
from yarl import URL

__all__ = ["Relay"]

log = logging.getLogger("fw.browser")

#: Headers of the tab's request that are the relay's to set, not the tab's.
_REPLACED = frozenset({b"proxy-authorization", b"proxy-connection"})
#: A head's longest line and most lines, as a browser never comes near.
_HEAD_BYTES = 65_536
#: Seconds a connection may stay quiet both ways before the relay closes it.
_IDLE_S = 120.0
#: A request line a browser sends a proxy: absolute form, or CONNECT host:port.
_LINE = re.compile(rb"(?:CONNECT [^\s/]+:\d+|[A-Z]+ https?://[\x21-\x7e]+) HTTP/1\.[01]", re.ASCII)
#: A header line: a token, a colon, a value of visible characters, spaces and tabs.
_FIELD = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*")


class Refused(Exception):
    """A head the relay does not pass on; ``answer`` is the status it gets instead."""

    def __init__(self, answer: bytes) -> None:
        super().__init__(answer.decode())
        self.answer = answer


class Relay:
    """Forward a tab's proxy requests to ``upstream``, with its credentials."""

    def __init__(self, upstream: str) -> None:
        url = URL(upstream)
        self._tls = url.scheme == "https"
        self._host = url.host or ""
        self._port = url.port or (443 if self._tls else 80)
        auth = aiohttp.BasicAuth.from_url(url)  # encoded as fw's own requests encode them
        self._auth = b"" if auth is None else f"Proxy-Authorization: {auth.encode()}\r\n".encode()
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

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if _same_user(writer):
                head = await asyncio.wait_for(_head(reader), _IDLE_S)
                await self._relay(head, reader, writer)
        except Refused as refused:
            writer.write(refused.answer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the tab went away, or went quiet: nothing to answer
        finally:
            writer.close()

    async def _relay(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            far_reader, far_writer = await asyncio.open_connection(
                self._host, self._port, ssl=True if self._tls else None
            )
        except OSError:  # the tab's request fails as the proxy's, as it would without us
            raise Refused(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n") from None
        quiet = _Quiet()
        asking = asyncio.ensure_future(self._ask(head, reader, far_writer, quiet))
        answering = asyncio.ensure_future(_pipe(far_reader, writer, quiet))
        try:  # until the proxy hangs up, or the tab does and the proxy cannot be told
            await asyncio.wait({answering, asking}, return_when=asyncio.FIRST_COMPLETED)
            if not answering.done() and _ended_badly(asking):
                answering.cancel()
            await asyncio.wait({answering})
        finally:
            far_writer.close()  # first: the relay's close may cancel the wait below
            for task in (asking, answering):
                task.cancel()
            await asyncio.gather(asking, answering, return_exceptions=True)

    async def _ask(
        self,
        head: bytes,
        reader: asyncio.StreamReader,
        far: asyncio.StreamWriter,
        quiet: _Quiet,
    ) -> None:
        """Send the tab's requests on, each with the credentials, until it hangs up."""
        while True:
            length = _body_length(head)
            far.write(self._forwarded(head))
            if length is None:  # CONNECT: bytes from now on, both ways
                await _pipe(reader, far, quiet)
                return
            far.write(await quiet.read(reader.readexactly(length)))
            await far.drain()
            try:
                head = await quiet.read(_head(reader))
            except (asyncio.IncompleteReadError, Refused):  # done, or nothing to pass on
                _end(far)  # the answers to what went before still come back
                return

    def _forwarded(self, head: bytes) -> bytes:
        """The tab's request head as the proxy gets it: with the relay's credentials."""
        line, *fields = head[:-4].split(b"\r\n")
        kept = [field for field in fields if _name(field) not in _REPLACED]
        return b"\r\n".join([line, *kept]) + b"\r\n" + self._auth + b"\r\n"


class _Quiet:
    """When a connection last moved, either way; reads that wait past ``_IDLE_S`` with
    nothing moving either way time out."""

    def __init__(self) -> None:
        self.last = asyncio.get_running_loop().time()

    async def read(self, reading: Awaitable[bytes]) -> bytes:
        task = asyncio.ensure_future(reading)
        try:
            while True:
                left = self.last + _IDLE_S - asyncio.get_running_loop().time()
                done, _ = await asyncio.wait({task}, timeout=max(left, 0.0))
                if done:
                    data: bytes = task.result()
                    self.last = asyncio.get_running_loop().time()
                    return data
                if self.last + _IDLE_S <= asyncio.get_running_loop().time():
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
    bare = b"\n" in head.replace(b"\r\n", b"") or b"\r" in head.replace(b"\r\n", b"")
    if bare or not _LINE.fullmatch(line) or not all(map(_FIELD.fullmatch, fields)):
        raise Refused(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    names = [_name(field) for field in fields]
    if names.count(b"content-length") > 1 or b"transfer-encoding" in names:
        raise Refused(b"HTTP/1.1 400 Bad Request\r\n\r\n")  # framing a proxy may read otherwise
    if not line.startswith(b"CONNECT ") and _body_length(head) is None:
        raise Refused(b"HTTP/1.1 400 Bad Request\r\n\r\n")  # a length that is no number
    return head


def _name(field: bytes) -> bytes:
    return field.partition(b":")[0].lower()


def _body_length(head: bytes) -> int | None:
    """The length of the body after ``head``: None for a tunnel (or an unreadable length)."""
    if head.startswith(b"CONNECT "):
        return None
    for field in head[:-4].split(b"\r\n")[1:]:
        name, _, value = field.partition(b":")
        if name.lower() == b"content-length":
            return int(value) if value.strip().isdigit() else None
    return 0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, quiet: _Quiet) -> None:
    """Copy one direction until it ends; then end it on the other side too."""
    while data := await quiet.read(reader.read(65_536)):
        writer.write(data)
        await writer.drain()
    _end(writer)


def _end(writer: asyncio.StreamWriter) -> None:
    """Tell the other side nothing more comes; a TLS stream cannot be half-closed."""
    if writer.can_write_eof():
        writer.write_eof()
    else:
        writer.close()


def _ended_badly(task: asyncio.Future[None]) -> bool:
    """Whether the tab's side ended in a way the proxy's answers cannot outlive."""
    return task.done() and (task.cancelled() or task.exception() is not None)


# -- who is asking ------------------------------------------------------------------------

#: Linux's sock_diag: the netlink family, its request type and TCP's ESTABLISHED state.
_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY, _NLMSG_ERROR, _ESTABLISHED = 4, 20, 2, 1


def _same_user(writer: asyncio.StreamWriter) -> bool:
    """Tell whether a live connection of this user's comes in. Where the kernel cannot
    say (not Linux), assume so; on Linux, a connection it cannot vouch for is refused."""
    if sys.platform != "linux":
        return True
    peer, own = writer.get_extra_info("peername"), writer.get_extra_info("sockname")
    try:
        state, uid = _owner(peer, own)
    except OSError as exc:
        _unverifiable(exc)
        return False
    return state == _ESTABLISHED and uid == os.getuid()


def _owner(peer: tuple[str, int], own: tuple[str, int]) -> tuple[int, int]:
    """Ask the kernel for the TCP state and owner of the socket at ``peer`` connected to
    ``own`` (an exact look-up, not a scan of every socket). Raises ``OSError``."""
    sockid = (
        struct.pack("!HH", peer[1], own[1])
        + socket.inet_aton(peer[0]).ljust(16, b"\0")
        + socket.inet_aton(own[0]).ljust(16, b"\0")
        + struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)  # any interface, no cookie
    )
    ask = struct.pack("=BBxxI", socket.AF_INET, socket.IPPROTO_TCP, 0xFFFFFFFF) + sockid
    head = struct.pack("=IHHII", 16 + len(ask), _SOCK_DIAG_BY_FAMILY, 1, 1, 0)  # a request
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as diag:
        diag.settimeout(1.0)
        diag.send(head + ask)
        answer = diag.recv(4096)
    if len(answer) < 20:
        raise OSError(errno.EPROTO, "a short answer from sock_diag")
    if struct.unpack_from("=H", answer, 4)[0] == _NLMSG_ERROR:
        code = -struct.unpack_from("=i", answer, 16)[0]
        raise OSError(code, os.strerror(code))  # ENOENT: that socket is gone already
    if len(answer) < 16 + 72:
        raise OSError(errno.EPROTO, "a short answer from sock_diag")
    return answer[17], struct.unpack_from("=I", answer, 16 + 64)[0]


def _unverifiable(error: OSError) -> None:
    if error.errno != errno.ENOENT:  # a socket gone already is no news
        _cannot_verify(error.strerror or str(error))


@functools.cache  # once a crawl
def _cannot_verify(why: str) -> None:
    log.warning(
        "browser: the kernel will not say who connects to the proxy relay (%s): its "
        "connections are refused, so rendered pages' resources fail",
        why,
    )
