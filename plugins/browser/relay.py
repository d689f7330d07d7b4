"""A proxy on this machine through which a tab's own requests reach the crawl's proxy.

What a rendered page fetches itself (scripts, XHR, images) leaves through the proxy its
document came through, as everything fw fetches does. Chromium takes a proxy per context,
but while fw routes a tab's requests it cannot answer a proxy's 407 with credentials
(measured: it asks again without them until it gives up). So a tab's context is given this
relay, which asks for nothing, and the relay adds the proxy's credentials on the way out:
they never reach the browser. It serves this user's processes only: any other local user
reaching its port would otherwise ride on the credentials.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["Relay"]

#: Headers of the tab's request that are the relay's to set, not the tab's.
_REPLACED = (b"proxy-authorization", b"proxy-connection")
#: Where Linux lists TCP sockets with their owners' user ids.
_SOCKETS = Path("/proc/net/tcp")


class Relay:
    """Forward a tab's proxy requests to ``upstream``, with its credentials."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._tls else 80)
        self._auth = b""
        if parts.username is not None:
            user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(user.encode("utf-8"))
            self._auth = b"Proxy-Authorization: Basic " + token + b"\r\n"
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        """Listen on a free port of 127.0.0.1; return the URL a context's proxy is set to."""
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
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
                await self._relay(await reader.readuntil(b"\r\n\r\n"), reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the tab went away, or sent no proxy request: nothing to answer
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
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        asking = asyncio.ensure_future(self._ask(head, reader, far_writer))
        try:  # the answers go back as they come; once the proxy hangs up, so does the relay
            await _pipe(far_reader, writer)
        finally:
            asking.cancel()
            await asyncio.gather(asking, return_exceptions=True)
            far_writer.close()

    async def _ask(
        self, head: bytes, reader: asyncio.StreamReader, far: asyncio.StreamWriter
    ) -> None:
        """Send the tab's requests on, each with the credentials, until it hangs up."""
        while True:
            length = None if head.upper().startswith(b"CONNECT ") else _body_length(head)
            far.write(self._forwarded(head, last=length is None))
            if length is None:  # a tunnel, or a body of unknown length: bytes from now on
                await _pipe(reader, far)
                return
            far.write(await reader.readexactly(length))
            await far.drain()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the tab is done with the connection
                if far.can_write_eof():
                    far.write_eof()
                return

    def _forwarded(self, head: bytes, *, last: bool) -> bytes:
        """The tab's request head as the proxy gets it: with the credentials, and closing
        the connection when the relay cannot find where the next request starts."""
        line, *fields = head[:-4].split(b"\r\n")
        kept = [f for f in fields if _name(f) not in _REPLACED]
        if last and not line.upper().startswith(b"CONNECT "):
            kept = [f for f in kept if _name(f) != b"connection"] + [b"Connection: close"]
        return b"\r\n".join([line, *kept]) + b"\r\n" + self._auth + b"\r\n"


def _name(field: bytes) -> bytes:
    return field.partition(b":")[0].strip().lower()


def _body_length(head: bytes) -> int | None:
    """The length of the body after ``head``; None when it is chunked (or unreadable)."""
    length = 0
    for field in head[:-4].split(b"\r\n")[1:]:
        name, _, value = field.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            if not value.strip().isdigit():
                return None
            length = int(value)
    return length


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until it ends; then end it on the other side too."""
    try:
        while data := await reader.read(65_536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


def _same_user(writer: asyncio.StreamWriter) -> bool:
    """Tell whether the connecting process is this user's (Linux); elsewhere, assume so."""
    try:
        table = _SOCKETS.read_text(encoding="ascii")
    except OSError:
        return True
    peer, own = writer.get_extra_info("peername"), writer.get_extra_info("sockname")
    wanted = f"{_hex(peer)} {_hex(own)}"
    for row in table.splitlines()[1:]:
        cells = row.split()
        if f"{cells[1]} {cells[2]}" == wanted:
            return int(cells[7]) == os.getuid()
    return False


def _hex(address: tuple[str, int]) -> str:
    """An IPv4 address and port as /proc/net/tcp writes them: ``0100007F:1F90``."""
    (number,) = struct.unpack("<I", socket.inet_aton(address[0]))
    return f"{number:08X}:{address[1]:04X}"
