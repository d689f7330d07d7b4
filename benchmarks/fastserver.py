"""A small, fast HTTP/1.1 keep-alive server for a static site, used when nginx is absent.

It reads every file into memory at start-up with its response headers already attached,
so answering a request is one dictionary look-up and one ``transport.write``: an asyncio
``Protocol`` (on uvloop when it is installed) with no framework in between. That keeps the
server well ahead of the crawlers it feeds; ``run.py`` measures how far ahead.

Only what a crawler needs: GET and HEAD, keep-alive, pipelining, ``Connection: close``,
404 for anything else. Content types mirror nginx's (``text/html`` with no charset), so
crawlers decode the same way whichever server runs.

usage: python benchmarks/fastserver.py ROOT [--host 127.0.0.1] [--port 0]
It prints ``listening on http://HOST:PORT`` once it is ready to answer.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import cast

__all__ = ["HttpProtocol", "load_responses", "serve"]

_TYPES = {".html": b"text/html", ".json": b"application/json", ".txt": b"text/plain"}
_MAX_HEAD = 64 * 1024  # a request head longer than this is not from a crawler
_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nServer: fastserver\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 10\r\n\r\nnot found\n"
)
_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\nServer: fastserver\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)


def load_responses(root: Path) -> dict[bytes, tuple[bytes, int]]:
    """Map each URL path under ``root`` to its whole response and the length of its head."""
    responses = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            body = path.read_bytes()
            head = (
                b"HTTP/1.1 200 OK\r\nServer: fastserver\r\nContent-Type: "
                + _TYPES.get(path.suffix, b"application/octet-stream")
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
            )
            url = "/" + path.relative_to(root).as_posix()
            responses[url.encode()] = (head + body, len(head))
    return responses


class HttpProtocol(asyncio.Protocol):
    """Answer the requests of one connection from the in-memory responses."""

    def __init__(self, responses: Mapping[bytes, tuple[bytes, int]]) -> None:
        self._responses = responses
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to write answers to."""
        # A cast, not an isinstance check: uvloop's transports do not subclass asyncio's.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Answer every complete request head received so far (clients may pipeline)."""
        buffer = self._buffer
        buffer += data
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            if not self._answer(head):
                return
        if len(buffer) > _MAX_HEAD:
            self._close(_BAD_REQUEST)

    def _answer(self, head: bytes) -> bool:
        """Write the response to one request; return False once the connection is closed."""
        assert self._transport is not None
        line, _, headers = head.partition(b"\r\n")
        parts = line.split(b" ")
        if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
            self._close(_BAD_REQUEST)  # bodies are not read, so nothing after this is safe
            return False
        method, target, version = parts
        response, head_length = self._responses.get(
            target.partition(b"?")[0], (_NOT_FOUND, len(_NOT_FOUND) - 10)
        )
        self._transport.write(response if method == b"GET" else response[:head_length])
        if _wants_close(version, headers):
            self._close(b"")
            return False
        return True

    def _close(self, last: bytes) -> None:
        assert self._transport is not None
        if last:
            self._transport.write(last)
        self._transport.close()


def _wants_close(version: bytes, headers: bytes) -> bool:
    """Tell whether the client asked to close: HTTP/1.0 closes unless asked to keep alive."""
    lowered = headers.lower()
    if version == b"HTTP/1.0":
        return b"connection: keep-alive" not in lowered
    return b"connection: close" in lowered


async def serve(root: Path, host: str, port: int) -> None:
    """Serve ``root`` until SIGTERM or SIGINT."""
    responses = load_responses(root)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpProtocol(responses), host, port, backlog=4096, reuse_address=True
    )
    bound = server.sockets[0].getsockname()
    print(
        f"listening on http://{bound[0]}:{bound[1]} ({len(responses)} files, "
        f"{type(loop).__module__.partition('.')[0]} loop)",
        flush=True,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def _install_uvloop() -> None:
    """Use uvloop when it is installed: it roughly doubles what one process can serve."""
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("root", type=Path, help="the directory to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop")
    args = parser.parse_args()
    if not args.no_uvloop:
        _install_uvloop()
    asyncio.run(serve(args.root, args.host, args.port))


if __name__ == "__main__":
    main()
