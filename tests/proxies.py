"""A real HTTP forward proxy on loopback: what ``HTTP_PROXY`` or a crawl's proxy points at.

It answers absolute-form requests (``GET http://host:port/path HTTP/1.1``) by fetching them
itself, as squid or tinyproxy would for plain http, and ``CONNECT host:port`` (https) by
opening a tunnel it relays bytes through without reading them. It counts what it relayed
and tunnelled. With ``credentials`` it asks for ``Proxy-Authorization: Basic …`` and
answers 407 without it. ``answer`` makes it answer every request with that status
instead (a proxy a site bans: 403, 429); ``drop`` makes it close every connection at once,
unanswered. Both may change while it runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
from collections import Counter
from http import HTTPStatus
from pathlib import Path

import aiohttp
import trustme
from multidict import CIMultiDict

from tests.connections import Connections

__all__ = ["ForwardProxy", "TestCA", "closed_port"]

#: Response headers relayed to the client (the body is relayed decoded).
_KEPT = frozenset(
    {"content-type", "content-encoding", "location", "retry-after", "set-cookie", "etag"}
)


class ForwardProxy:
    """Relay plain-http requests and tunnel https ones; count both by target."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.relayed: Counter[str] = Counter()
        self.tunnelled: Counter[str] = Counter()
        self.refused = 0
        #: Requests it answered with ``answer``, and connections it dropped.
        self.answered = 0
        self.dropped = 0
        self.answer: int | None = None
        self.drop = False
        #: Answer every request with this instead of HTTP (a broken or hostile proxy).
        self.garbage: bytes | None = None
        self._expected = (
            "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
            if credentials
            else None
        )
        self._server: asyncio.Server | None = None
        self._session: aiohttp.ClientSession | None = None
        self._connections = Connections()

    async def start(self, host: str = "127.0.0.2") -> str:
        """Listen on a free port of ``host``; return the proxy's URL."""
        # A body goes on as it came, compressed or not (or broken): a proxy does not read it.
        self._session = aiohttp.ClientSession(auto_decompress=False)
        self._server = await asyncio.start_server(self._accepted, host, 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://{host}:{port}"

    async def stop(self) -> None:
        """Close the listening socket, every connection and the relaying session."""
        if self._server is not None:
            self._server.close()
        await self._connections.close()
        if self._session is not None:
            await self._session.close()

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.serve(writer, self._connected(reader, writer))

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.drop:
                self.dropped += 1
                return
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; return whether the connection may carry another."""
        head = await reader.readuntil(b"\r\n\r\n")
        line, *fields = head.decode("latin-1").split("\r\n")[:-2]
        method, target, _ = line.split(" ", 2)
        headers = CIMultiDict(field.split(": ", 1) for field in fields)
        body = await reader.readexactly(int(headers.get("Content-Length", "0")))
        if self._expected and headers.get("Proxy-Authorization") != self._expected:
            self.refused += 1
            await _write(writer, 407, {"Proxy-Authenticate": 'Basic realm="fw"'})
            return method != "CONNECT"
        if self.answer is not None:
            self.answered += 1
            await _write(writer, self.answer)
            return method != "CONNECT"
        if self.garbage is not None:
            self.answered += 1
            writer.write(self.garbage)
            await writer.drain()
            return False
        if method == "CONNECT":
            await self._tunnel(target, reader, writer)
            return False
        await self._relay(method, target, headers, body, writer)
        return headers.get("Connection", "").lower() != "close"

    async def _relay(
        self,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> None:
        assert self._session is not None
        self.relayed[target] += 1
        # What a proxy consumes itself, and what aiohttp sets again, does not go on.
        sent = {
            k: v
            for k, v in headers.items()
            if not k.lower().startswith("proxy-")
            and k.lower() not in ("host", "content-length", "connection")
        }
        async with self._session.request(
            method, target, headers=sent, data=body or None, allow_redirects=False
        ) as answer:
            data = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() in _KEPT}
        await _write(writer, answer.status, kept, data)

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port = target.rpartition(":")
        try:
            far_reader, far_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            await _write(writer, 502)
            return
        try:  # from the connection on: a client gone before the tunnel must not leak it
            self.tunnelled[target] += 1
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, far_writer), _pipe(far_reader, writer))
        finally:
            far_writer.close()


async def _write(
    writer: asyncio.StreamWriter,
    status: int,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> None:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes one way until the reader ends; then end the writer's side."""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


def closed_port(host: str = "127.0.0.2") -> str:
    """Return the URL of a port of ``host`` nothing listens on: a proxy that is down."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    return f"http://{host}:{port}"


class TestCA:
    """A certificate authority of its own for https sites on loopback (trustme).

    ``fw`` trusts it when run with ``SSL_CERT_FILE`` set to ``pem(folder)``.
    """

    __test__ = False  # not a test class, whatever pytest makes of its name

    def __init__(self) -> None:
        self._ca = trustme.CA()
        self._site = self._ca.issue_cert("127.0.0.1", "localhost")

    def server(self) -> ssl.SSLContext:
        """The context an https site on 127.0.0.1 or localhost serves with."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._site.configure_cert(context)
        return context

    def pem(self, folder: Path) -> Path:
        """Write the CA's certificate to ``folder``; return its path."""
        path = folder / "ca.pem"
        self._ca.cert_pem.write_to_path(str(path))
        return path
