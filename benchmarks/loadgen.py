"""A wrk-like load generator: keep-alive connections fetching pages as fast as they can.

It measures how many pages per second the *server* can deliver, so that the crawl numbers
can be trusted to measure the crawlers. It is a bare asyncio ``Protocol`` that counts
bytes instead of parsing bodies, so on one core it outruns any of the crawlers; when
the server's CPU time is known too, ``run.py`` also reports what the server could do
with a whole core.

usage: python benchmarks/loadgen.py BASE_URL [--seconds 3] [--connections 32] [PATH ...]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

__all__ = ["LoadResult", "hammer"]


@dataclass(frozen=True)
class LoadResult:
    """What a load run achieved."""

    requests: int
    bytes: int
    seconds: float
    errors: int

    @property
    def rate(self) -> float:
        """Requests answered per second."""
        return self.requests / self.seconds if self.seconds else 0.0


class _Client(asyncio.Protocol):
    """One keep-alive connection sending the next request as soon as an answer is whole."""

    def __init__(self, host: str, paths: Iterator[str], deadline: float) -> None:
        self._host, self._paths, self._deadline = host, paths, deadline
        self._buffer = bytearray()
        self._remaining: int | None = None  # body bytes still due; None while reading a head
        self._transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()
        self.requests = self.bytes = self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.errors += 1
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._consume():
            self.requests += 1
            if time.perf_counter() >= self._deadline:
                self.done.set_result(None)
                assert self._transport is not None
                self._transport.close()
                return
            self._send()

    def _consume(self) -> bool:
        """Take one whole response off the buffer if it is there."""
        buffer = self._buffer
        if self._remaining is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = bytes(buffer[:end]).lower()
            if not head.startswith(b"http/1.1 200"):
                self.errors += 1
            length = head.partition(b"content-length:")[2].partition(b"\r\n")[0]
            self._remaining = int(length or 0)
            del buffer[: end + 4]
        if len(buffer) < self._remaining:
            return False
        self.bytes += self._remaining
        del buffer[: self._remaining]
        self._remaining = None
        return True

    def _send(self) -> None:
        assert self._transport is not None
        request = f"GET {next(self._paths)} HTTP/1.1\r\nHost: {self._host}\r\n\r\n"
        self._transport.write(request.encode())


async def hammer(
    base: str, paths: Sequence[str], *, seconds: float = 3.0, connections: int = 32
) -> LoadResult:
    """Fetch ``paths`` round-robin over ``connections`` connections for ``seconds``."""
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    cycle = itertools.cycle(paths)
    start = time.perf_counter()
    deadline = start + seconds
    clients = []
    for _ in range(connections):
        _, client = await loop.create_connection(
            lambda: _Client(parts.netloc, cycle, deadline), host, port
        )
        clients.append(client)
    await asyncio.gather(*(client.done for client in clients))
    elapsed = time.perf_counter() - start
    return LoadResult(
        sum(c.requests for c in clients),
        sum(c.bytes for c in clients),
        elapsed,
        sum(c.errors for c in clients),
    )


def main() -> None:
    """Parse the command line, load the server, print the rate."""
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("base", help="e.g. http://127.0.0.1:8088")
    parser.add_argument("paths", nargs="*", default=["/p/0.html"])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    result = asyncio.run(
        hammer(args.base, args.paths, seconds=args.seconds, connections=args.connections)
    )
    print(
        f"{result.rate:,.0f} requests/s, {result.bytes / result.seconds / 2**20:,.1f} MiB/s, "
        f"{result.errors} errors"
    )


if __name__ == "__main__":
    main()
