"""Servers that misbehave on purpose: every failure ends cleanly, alone, and counted by kind.

Each test starts a good site on 127.0.0.1 whose root page links to three good pages and to
one or more hostile URLs, crawls it in-process, and checks three things: the crawl ends by
itself ("finished"), every good page is still fetched and exported, and each hostile URL
shows in ``stats.errors`` under the kind a user would look for.

Each hostile server gets a loopback address of its own (127.0.0.2, .3, ...), so fw's
per-host politeness toward it (backoff, throttling, robots.txt) never slows the good site.
Raw ``asyncio`` servers break HTTP itself (resets, truncation, garbage); aiohttp apps
serve whatever is valid HTTP, however unpleasant.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import socket
import struct
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from aiohttp import web
from multidict import CIMultiDict

from framework.crawl.stats import Stats
from tests.conftest import Serve, crawl, read_jsonl, run_fw, write_project

MiB = 2**20
SITE_HOST = "127.0.0.1"
HOSTILE_HOSTS = tuple(f"127.0.0.{n}" for n in range(2, 20))
OFFSITE_HOST = "127.0.0.99"  # not in allowed_domains
GOOD = ("/ok/0", "/ok/1", "/ok/2")
LIMIT = 100_000  # max_response_size in these projects

SPIDER = '''
from framework import Spider, hookimpl

class Hostile(Spider):
    """Export every page and follow every link; raise on pages whose URL asks for it."""

    name = "hostile"

    async def parse(self, response):
        yield {"url": response.url, "status": response.status, "size": len(response.body),
               "start": response.text[:40]}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href)
        if "/boom" in response.url:
            raise ValueError("kaboom")

@hookimpl
def register_spiders(register):
    register(Hostile)
'''

HOOKS = """
from framework import hookimpl

@hookimpl
def response_received(response):
    if response.url.endswith("/hook-boom"):
        raise RuntimeError("hook went wrong")

@hookimpl
async def item_scraped(item):
    if item["url"].endswith("/item-boom"):
        raise KeyError("no such field")
"""


def hostile_project(tmp_path: Path, base: str, *, plugins: str = "./hostile.py") -> Path:
    """A project crawling ``base`` with small timeouts and quick retries."""
    (tmp_path / "hostile.py").write_text(SPIDER, encoding="utf-8")
    return write_project(
        tmp_path,
        f"""
        spider: hostile
        start_urls: [{base}/]
        allowed_domains: [{SITE_HOST}, {", ".join(HOSTILE_HOSTS)}]
        plugins: [{plugins}]
        exporters: [{{path: out/items.jsonl}}]
        retries: 2
        timeout: 2
        max_response_size: {LIMIT}
        backoff: {{base: 0.01, max: 0.05}}
        """,
    )


async def crawl_quickly(project: Path, *overrides: str) -> Stats:
    """Crawl, failing the test instead of hanging if the crawl does not end by itself."""
    async with asyncio.timeout(15):
        return await crawl(project, *overrides)


def page(*links: str) -> web.Response:
    body = "".join(f'<a href="{href}">x</a>' for href in links)
    return web.Response(text=f"<html><body>{body}</body></html>", content_type="text/html")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def linking(*links: str) -> Handler:
    """A handler answering a page with these links."""

    async def handler(request: web.Request) -> web.Response:
        return page(*links)

    return handler


async def start_app(
    serve: Serve, routes: dict[str, Handler], host: str
) -> tuple[str, Counter[str]]:
    """Serve ``routes`` on ``host``; return the base URL and a count of hits by path."""
    hits: Counter[str] = Counter()

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        hits[request.path_qs] += 1
        return await handler(request)

    app = web.Application(middlewares=[count])
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    return await serve(app, host), hits


async def site(
    serve: Serve, *links: str, routes: dict[str, Handler] | None = None
) -> tuple[str, Counter[str]]:
    """Start the good site: its root links to the good pages and to ``links``."""
    return await start_app(
        serve, {"/": linking(*GOOD, *links), "/ok/{n}": linking(), **(routes or {})}, SITE_HOST
    )


def exported(tmp_path: Path) -> set[str]:
    return {item["url"] for item in read_jsonl(tmp_path / "out/items.jsonl")}


def sizes(tmp_path: Path) -> dict[str, int]:
    return {item["url"]: item["size"] for item in read_jsonl(tmp_path / "out/items.jsonl")}


def good_urls(base: str) -> set[str]:
    return {f"{base}/", *(base + path for path in GOOD)}


# -------------------------------------------------------------------------------------------
# Hostile servers, each on a loopback address of its own
# -------------------------------------------------------------------------------------------

Respond = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawServer:
    """A server that reads one request head per connection and answers with ``respond``."""

    url: str
    heads: list[bytes] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        """Requests received, robots.txt aside (whether fw reads it is tested elsewhere)."""
        return sum(not h.startswith(b"GET /robots.txt ") for h in self.heads)


class Hostile:
    """Start misbehaving servers: raw TCP ones and aiohttp apps."""

    def __init__(self, serve: Serve) -> None:
        self._serve = serve
        self._hosts: Iterator[str] = iter(HOSTILE_HOSTS)
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()

    async def app(self, routes: dict[str, Handler]) -> tuple[str, Counter[str]]:
        """Serve ``routes``; return the base URL and a count of hits by path."""
        return await start_app(self._serve, routes, next(self._hosts))

    async def raw(self, respond: Respond) -> RawServer:
        """Start a raw server; the connection is closed when ``respond`` returns."""

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._connections.add(task)
            try:
                server.heads.append(await reader.readuntil(b"\r\n\r\n"))
                await respond(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass  # the client gave up: that is what these servers are for
            finally:
                self._connections.discard(task)
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

        host = next(self._hosts)
        listening = await asyncio.start_server(connected, host, 0)
        self._servers.append(listening)
        server = RawServer(f"http://{host}:{listening.sockets[0].getsockname()[1]}")
        return server

    async def close(self) -> None:
        for listening in self._servers:
            listening.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for listening in self._servers:
            await listening.wait_closed()


@pytest.fixture
async def hostile(serve: Serve) -> AsyncIterator[Hostile]:
    servers = Hostile(serve)
    yield servers
    await servers.close()


def head(status: str = "200 OK", **headers: str | int) -> bytes:
    """An HTTP/1.1 response head; ``Content_Length=5`` becomes ``Content-Length: 5``."""
    lines = [
        f"HTTP/1.1 {status}",
        "Connection: close",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(data: bytes) -> Respond:
    """Answer with these bytes, then close cleanly."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()

    return respond


def reset(data: bytes = b"") -> Respond:
    """Answer with these bytes, then reset the connection (RST, not FIN)."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    return respond


def stall(data: bytes = b"") -> Respond:
    """Answer with these bytes, then nothing, until the client gives up."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        while await reader.read(65536):
            pass

    return respond


def dead_url(host: str) -> str:
    """A URL on a port nothing listens on."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return f"http://{host}:{sock.getsockname()[1]}/gone"


# -------------------------------------------------------------------------------------------
# 1-5, 13: the connection fails, or what comes back is not HTTP
# -------------------------------------------------------------------------------------------


async def test_connection_refused_is_retried_and_counted(tmp_path: Path, serve: Serve) -> None:
    base, _ = await site(serve, dead_url(HOSTILE_HOSTS[0]))
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished"
    assert stats.errors == {"connection": 1} and stats.retries == 2
    assert exported(tmp_path) == good_urls(base)


async def test_a_connection_reset_mid_body_is_truncated(
    tmp_path: Path, serve: Serve, hostile: Hostile
) -> None:
    server = await hostile.raw(
        reset(head(Content_Type="text/html", Content_Length=100_000) + b"<html>" * 1000)
    )
    base, _ = await site(serve, server.url + "/reset")
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished"
    assert stats.errors == {"truncated": 1}  # aiohttp: ContentLengthError, then the reset
    assert server.attempts == 3 and stats.retries == 2
    assert exported(tmp_path) == good_urls(base)


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
async def test_a_body_the_connection_ends_is_truncated_by_a_reset_and_whole_by_a_close(
    tmp_path: Path, serve: Serve, hostile: Hostile, version: str
) -> None:
    # No length, not chunked: the body ends with the connection. A reset was taken for
    # its end, and the half page exported as whole.
    data = head(Content_Type="text/html").replace(b"HTTP/1.1", version.encode(), 1)
    data += b"<html>" * 1000
    cut, whole = await hostile.raw(reset(data)), await hostile.raw(answer(data))
    base, _ = await site(serve, cut.url + "/cut", whole.url + "/whole")
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished"
    assert stats.errors == {"truncated": 1} and cut.attempts == 3
    assert exported(tmp_path) == good_urls(base) | {whole.url + "/whole"}
    assert sizes(tmp_path)[whole.url + "/whole"] == 6000


async def test_a_body_shorter_than_its_content_length_is_truncated(
    tmp_path: Path, serve: Serve, hostile: Hostile
) -> None:
    # A clean close (FIN) 99,400 bytes early.
    server = await hostile.raw(
        answer(head(Content_Type="text/html", Content_Length=100_000) + b"<html>" * 100)
    )
    base, _ = await site(serve, server.url + "/short")
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished"
    assert stats.errors == {"truncated": 1} and server.attempts == 3
    assert exported(tmp_path) == good_urls(base)


async def test_a_server_that_hangs_up_without_answering_is_counted(
    tmp_path: Path, serve: Serve, hostile: Hostile
) -> None:
    closing, resetting = await hostile.raw(answer(b"")), await hostile.raw(reset())
    base, _ = await site(serve, closing.url + "/hang-up", resetting.url + "/reset")
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished"
    assert stats.errors == {"disconnected": 1, "connection": 1} and stats.retries == 4
    assert closing.attempts >= 3 and resetting.attempts >= 3
    assert exported(tmp_path) == good_urls(base)


async def test_a_server_that_hangs_up_is_asked_a_bounded_number_of_times(
    tmp_path: Path, serve: Serve, hostile: Hostile
) -> None:
    closing, resetting = await hostile.raw(answer(b"")), await hostile.raw(reset())
    base, _ = await site(serve, closing.url + "/hang-up", resetting.url + "/reset")
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    # fw makes retries + 1 = 3 attempts; within each, aiohttp itself resends an idempotent
    # request once when the connection drops before any answer (a kept-alive connection the
    # server had just closed looks the same), so the server sees each attempt twice.
    assert (closing.attempts, resetting.attempts) == (6, 6)
    assert stats.retries == 4 and sum(stats.errors.values()) == 2


async def test_a_server_that_stalls_times_out(
    tmp_path: Path, serve: Serve, hostile: Hostile
) -> None:
    silent = await hostile.raw(stall())
    stalling = await hostile.raw(
        stall(head(Content_Type="text/html", Content_Length=1000) + b"<html><body>")
    )
    base, _ = await site(serve, silent.url + "/silent", stalling.url + "/stall")
    stats = await crawl_quickly(hostile_project(tmp_path, base), "timeout=0.3", "retries=1")
    assert stats.reason == "finished"
    assert stats.errors == {"timeout": 2} and stats.retries == 2
    assert silent.attempts == stalling.attempts == 2
    assert exported(tmp_path) == good_urls(base)


GARBAGE = {
    "status line": b"HELLO THERE\r\n\r\n",
    "a page for a status line": b"<html>" + b"<p>words</p>" * 700 + b"\r\n\r\n",
    "no status line at all (HTTP/0.9)": b"<html><body>hello</body></html>",
    "header without a colon": head(Content_Length=5)[:-2] + b"No colon here\r\n\r\nhello",
    "two content lengths": head(Content_Length=5)[:-2] + b"Content-Length: 9\r\n\r\nhello",
    "negative content length": head(Content_Length=-5) + b"hello",
    "NUL in a header": head(Content_Length=5)[:-2] + b"X-Bad: a\x00b\r\n\r\nhello",
    "chunk size not hex": head(Transfer_Encoding="chunked") + b"zz\r\nhello\r\n0\r\n\r\n",
}


async def test_malformed_http_is_a_bad_response(
    tmp_path: Path, serve: Serve, hostile: Hostile
) -> None:
    servers = {name: await hostile.raw(answer(data)) for name, data in GARBAGE.items()}
    base, _ = await site(serve, *(server.url + "/garbage" for server in servers.values()))
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished"
    assert stats.errors == {"bad_response": len(GARBAGE)}
    assert {name: s.attempts for name, s in servers.items()} == dict.fromkeys(GARBAGE, 3)
    assert exported(tmp_path) == good_urls(base)


async def test_huge_response_headers_are_a_bad_response(
    tmp_path: Path, serve: Serve, hostile: Hostile
) -> None:
    huge = await hostile.raw(
        answer(
            head(Content_Type="text/html", Content_Length=6, Set_Cookie="a=" + "x" * 100_000)
            + b"<html>"
        )
    )
    headers = b"".join(b"X-H%d: %d\r\n" % (n, n) for n in range(20_000))
    numerous = await hostile.raw(
        answer(head(Content_Type="text/html", Content_Length=6)[:-2] + headers + b"\r\n<html>")
    )
    base, _ = await site(serve, huge.url + "/cookie", numerous.url + "/many")
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished"
    assert stats.errors == {"bad_response": 2}
    assert exported(tmp_path) == good_urls(base)


# -------------------------------------------------------------------------------------------
# 6-7: statuses and redirects
# -------------------------------------------------------------------------------------------


def statuses(*answers: int, headers: dict[str, str] | None = None) -> tuple[Handler, list[float]]:
    """A handler answering each status in turn, then a page; it records when it was hit."""
    hits: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(asyncio.get_running_loop().time())
        if len(hits) <= len(answers):
            return web.Response(status=answers[len(hits) - 1], headers=headers)
        return page()

    return handler, hits


async def test_5xx_is_retried_and_4xx_is_not(
    tmp_path: Path, serve: Serve, hostile: Hostile
) -> None:
    routes = {
        "/recovers": statuses(503),
        "/broken": statuses(*[500] * 10),
        "/missing": statuses(*[404] * 10),
        "/gone": statuses(*[410] * 10),
    }
    urls = {
        path: (await hostile.app({path: handler}))[0] + path
        for path, (handler, _) in routes.items()
    }
    base, _ = await site(serve, *urls.values())
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished"
    assert stats.errors == {"http_500": 1, "http_404": 1, "http_410": 1}
    assert {path: len(hits) for path, (_, hits) in routes.items()} == {
        "/recovers": 2,
        "/broken": 3,
        "/missing": 1,
        "/gone": 1,
    }
    assert stats.retries == 1 + 2
    assert exported(tmp_path) == good_urls(base) | {urls["/recovers"]}


async def test_429_waits_as_long_as_retry_after_says(
    tmp_path: Path, serve: Serve, hostile: Hostile
) -> None:
    limited, hits = statuses(429, headers={"Retry-After": "1"})
    bad, _ = await hostile.app({"/limited": limited})
    base, _ = await site(serve, f"{bad}/limited")
    stats = await crawl_quickly(hostile_project(tmp_path, base), "backoff.max=2")
    assert stats.reason == "finished" and stats.errors == {}
    assert len(hits) == 2 and hits[1] - hits[0] >= 1.0
    assert exported(tmp_path) == good_urls(base) | {f"{bad}/limited"}


def redirect(to: str, status: int = 302) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": to})

    return handler


async def chain(request: web.Request) -> web.Response:
    return web.Response(
        status=301, headers={"Location": f"/chain/{int(request.match_info['n']) + 1}"}
    )


async def test_a_redirect_chain_longer_than_max_redirects_is_cut(
    tmp_path: Path, serve: Serve
) -> None:
    base, hits = await site(serve, "/chain/0", routes={"/chain/{n}": chain})
    stats = await crawl_quickly(hostile_project(tmp_path, base), "max_redirects=3")
    assert stats.reason == "finished" and stats.errors == {"redirects": 1}
    assert sorted(p for p in hits if p.startswith("/chain")) == [f"/chain/{n}" for n in range(4)]
    assert exported(tmp_path) == good_urls(base)


LOOPS = {"/a": redirect("/b"), "/b": redirect("/a", 307), "/self": redirect("/self")}


async def test_a_redirect_loop_ends(tmp_path: Path, serve: Serve) -> None:
    base, hits = await site(serve, "/a", "/self", routes=LOOPS)
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished"
    assert (hits["/a"], hits["/b"], hits["/self"]) == (1, 1, 1)
    assert exported(tmp_path) == good_urls(base)


async def test_a_redirect_loop_is_counted(tmp_path: Path, serve: Serve) -> None:
    base, _ = await site(serve, "/a", "/self", routes=LOOPS)
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.errors == {"redirects": 2}


async def test_a_location_with_bytes_that_are_not_utf8_is_followed_percent_encoded(
    tmp_path: Path, serve: Serve, hostile: Hostile
) -> None:
    # A raw Latin-1 "é" crashed the whole crawl, when it fingerprinted the redirect.
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if server.heads[-1].startswith(b"GET /moved "):
            writer.write(head("302 Found", Content_Length=0)[:-2] + b"Location: /caf\xe9\r\n\r\n")
        else:
            writer.write(head(Content_Type="text/html", Content_Length=6) + b"<html>")
        await writer.drain()

    server = await hostile.raw(respond)
    base, _ = await site(serve, server.url + "/moved")
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished" and stats.errors == {}
    assert exported(tmp_path) == good_urls(base) | {server.url + "/caf%E9"}
    assert server.heads[-1].startswith(b"GET /caf%E9 HTTP/1.1")


# -------------------------------------------------------------------------------------------
# 8: bodies larger than max_response_size
# -------------------------------------------------------------------------------------------


@dataclass
class Firehose:
    """A handler streaming 50 MiB, counting what it wrote before the client went away."""

    announce: bool  # a Content-Length, or chunked with no length
    sent: int = 0
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse(headers={"Content-Type": "text/html"})
        if self.announce:
            answer.content_length = 50 * MiB
        else:
            answer.enable_chunked_encoding()
        await answer.prepare(request)
        chunk = b"<p>" + b"x" * (64 * 1024 - 3)
        try:
            while self.sent < 50 * MiB:
                await answer.write(chunk)
                self.sent += len(chunk)
        except ConnectionError:
            self.gone.set()
        return answer


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_max_response_size_is_cut_off(
    tmp_path: Path, serve: Serve, hostile: Hostile, announce: bool
) -> None:
    firehose = Firehose(announce)
    bad, hits = await hostile.app({"/firehose": firehose.handle})
    base, _ = await site(serve, f"{bad}/firehose")
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished"
    assert stats.errors == {"too_large": 1} and hits["/firehose"] == 1  # never retried
    async with asyncio.timeout(5):
        await firehose.gone.wait()
    # The client hung up long before the end: all the server could write went into the
    # socket buffers (about 4 MiB on Linux loopback), not to a reader.
    assert firehose.sent < 16 * MiB
    assert exported(tmp_path) == good_urls(base)


def compress(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data, mtime=0)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "raw-deflate":  # what some servers send as "deflate"
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return packer.compress(data) + packer.flush()
    brotli = pytest.importorskip("brotli")
    return bytes(brotli.compress(data, quality=5))


@cache
def bomb(encoding: str) -> bytes:
    """50 MiB of zeros, compressed to a few kilobytes."""
    return compress(encoding, bytes(50 * MiB))


def compressed(body: bytes, encoding: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=body,
            headers={"Content-Type": "text/html", "Content-Encoding": encoding.rpartition("-")[2]},
        )

    return handler


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_a_compression_bomb_is_too_large_once_decompressed(
    tmp_path: Path, serve: Serve, encoding: str
) -> None:
    body = bomb(encoding)
    assert len(body) < LIMIT  # only decompressed is it too large
    base, hits = await site(serve, "/bomb", routes={"/bomb": compressed(body, encoding)})
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished"
    assert stats.errors == {"too_large": 1} and hits["/bomb"] == 1
    assert exported(tmp_path) == good_urls(base)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate", "br"])
async def test_a_compressed_page_within_the_limit_is_decoded(
    tmp_path: Path, serve: Serve, encoding: str
) -> None:
    html = b'<html><body><a href="/ok/2">x</a>' + b"<p>ok</p>" * 10_000
    body = compress(encoding, html)
    base, _ = await site(serve, "/packed", routes={"/packed": compressed(body, encoding)})
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished" and stats.errors == {}
    assert exported(tmp_path) == good_urls(base) | {f"{base}/packed"}
    assert sizes(tmp_path)[f"{base}/packed"] == len(html)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate", "br"])
async def test_a_compressed_stream_cut_short_is_truncated_though_its_length_matched(
    tmp_path: Path, serve: Serve, encoding: str
) -> None:
    # aiohttp checked only deflate's end: a half gzip or Brotli stream was a whole page.
    html = b"<html><body>" + b"<p>ok</p>" * 10_000
    half = compress(encoding, html)[: len(compress(encoding, html)) // 2]
    base, hits = await site(serve, "/cut", routes={"/cut": compressed(half, encoding)})
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished"
    assert stats.errors == {"truncated": 1} and hits["/cut"] == 3  # retried: it may be whole
    assert exported(tmp_path) == good_urls(base)


def coded(body: bytes, codings: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=body, headers={"Content-Type": "text/html", "Content-Encoding": codings}
        )

    return handler


async def test_every_coding_of_a_list_is_undone_up_to_one_no_browser_knows(
    tmp_path: Path, serve: Serve
) -> None:
    html = b'<html><body><a href="/ok/2">x</a>' + b"<p>ok</p>" * 1_000
    twice = compress("br", compress("gzip", html))  # gzip applied first, then br
    unknown = compress("gzip", html) + b"?"  # as x-custom would have coded it
    routes = {"/twice": coded(twice, "gzip, br"), "/unknown": coded(unknown, "gzip,x-custom")}
    base, _ = await site(serve, "/twice", "/unknown", routes=routes)
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished" and stats.errors == {}
    assert sizes(tmp_path)[f"{base}/twice"] == len(html)
    assert sizes(tmp_path)[f"{base}/unknown"] == len(unknown)  # left as it came, as browsers do


async def test_codings_named_on_two_header_lines_are_one_list(tmp_path: Path, serve: Serve) -> None:
    # HTTP lets a list header come as several lines; they mean the lines joined by commas.
    html = b'<html><body><a href="/ok/2">x</a>' + b"<p>ok</p>" * 1_000
    twice = compress("br", compress("gzip", html))

    async def handler(request: web.Request) -> web.Response:
        lines = [("Content-Type", "text/html"), ("Content-Encoding", "gzip")]
        return web.Response(body=twice, headers=CIMultiDict([*lines, ("Content-Encoding", "br")]))

    base, _ = await site(serve, "/twice", routes={"/twice": handler})
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished" and stats.errors == {}
    assert sizes(tmp_path)[f"{base}/twice"] == len(html)


async def test_a_gzip_body_of_several_members_is_undone_whole_and_what_follows_the_end_left(
    tmp_path: Path, serve: Serve
) -> None:
    # Files concatenated, a log appended to: the first version kept the first member alone.
    # After the last member, zero padding or stray bytes are left, as gzip leaves them.
    html = b'<html><body><a href="/ok/2">x</a>' + b"<p>ok</p>" * 1_000
    routes = {
        "/members": coded(compress("gzip", html) + compress("gzip", html), "gzip"),
        "/padded": coded(compress("gzip", html) + bytes(512), "gzip"),
        "/cut": coded(compress("gzip", html) + compress("gzip", html)[:-8], "gzip"),
    }
    base, _ = await site(serve, "/members", "/padded", "/cut", routes=routes)
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished" and stats.errors == {"truncated": 1}
    assert sizes(tmp_path)[f"{base}/members"] == 2 * len(html)
    assert sizes(tmp_path)[f"{base}/padded"] == len(html)


CORRUPT_GZIP = (
    head(Content_Type="text/html", Content_Encoding="gzip", Content_Length=20)
    + b"this is not gzip !!!"
)


async def test_a_corrupt_compressed_body_fails_alone(
    tmp_path: Path, serve: Serve, hostile: Hostile
) -> None:
    server = await hostile.raw(answer(CORRUPT_GZIP))
    base, _ = await site(serve, server.url + "/corrupt")
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished" and stats.errors.total() == 1
    assert exported(tmp_path) == good_urls(base)


async def test_a_corrupt_compressed_body_is_a_bad_response(
    tmp_path: Path, serve: Serve, hostile: Hostile
) -> None:
    server = await hostile.raw(answer(CORRUPT_GZIP))
    base, _ = await site(serve, server.url + "/corrupt")
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.errors == {"bad_response": 1}
    assert server.attempts == 1  # the same bytes would come back: not worth retrying


async def test_each_failure_is_logged_on_one_line(
    tmp_path: Path, serve: Serve, hostile: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    servers = [await hostile.raw(answer(data)) for data in (CORRUPT_GZIP, *GARBAGE.values())]
    base, _ = await site(serve, *(server.url + "/hostile" for server in servers))
    caplog.set_level(logging.WARNING, logger="fw")
    stats = await crawl_quickly(hostile_project(tmp_path, base), "retries=0")
    assert stats.errors.total() == len(servers)
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(failures) == len(servers)
    assert [message for message in failures if "\n" in message] == []
    assert max(map(len, failures)) < 500  # a page sent for a status line is not echoed whole


# -------------------------------------------------------------------------------------------
# 9-10: bodies a parser cannot read, or can barely
# -------------------------------------------------------------------------------------------

BINARIES = {
    "/image.png": ("image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4),
    "/doc.pdf": ("application/pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + bytes(1000)),
    "/blob": ("application/octet-stream", bytes(range(256)) * 4),
}


def binaries() -> dict[str, Handler]:
    def serve_bytes(media_type: str, body: bytes) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type=media_type)

        return handler

    return {path: serve_bytes(*answer) for path, answer in BINARIES.items()}


async def test_binary_responses_are_fetched_without_stopping_the_crawl(
    tmp_path: Path, serve: Serve
) -> None:
    base, hits = await site(serve, *BINARIES, routes=binaries())
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished"
    assert all(hits[path] == 1 for path in BINARIES)
    # The spider yields its item before it calls css(), so each binary is exported whole.
    assert exported(tmp_path) == good_urls(base) | {base + path for path in BINARIES}
    assert {path: sizes(tmp_path)[base + path] for path in BINARIES} == {
        path: len(body) for path, (_, body) in BINARIES.items()
    }


async def test_a_response_with_no_parser_is_not_an_error(tmp_path: Path, serve: Serve) -> None:
    base, _ = await site(serve, *BINARIES, routes=binaries())
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.errors == {}


MALFORMED = {
    "unclosed": b"<html><body><div><p>text<table><tr><td>cell<a href='/found/unclosed'>x",
    "garbage": bytes(range(1, 256)) * 40
    + b"<a href='/found/garbage'>x</a>"
    + bytes(range(255, 0, -1)) * 40,
    "nul": b"<html><body>\x00\x00<p>a\x00b</p><a href='/found/nul'>x</a>\x00</body></html>",
    "long-line": b"<html><body><p>" + b"word " * (MiB // 5) + b"<a href='/found/long-line'>x</a>",
    "deep": b"<html><body><a href='/found/deep'>x</a>"
    + b"<div>" * 10_000
    + b"deep"
    + b"</div>" * 10_000,
    "bad-utf8": "<html><body>caf\xe9 <a href='/found/bad-utf8'>x</a>".encode("latin-1")
    + b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x82",
    "bogus-charset": "<html><body>na\u00efve <a href='/found/bogus-charset'>x</a>".encode(),
}
CHARSETS = {"bad-utf8": "utf-8", "bogus-charset": "x-nonsense"}


async def test_malformed_html_is_still_parsed(tmp_path: Path, serve: Serve) -> None:
    def serve_html(name: str, body: bytes) -> Handler:
        charset = CHARSETS.get(name)
        content_type = "text/html" + (f"; charset={charset}" if charset else "")

        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, headers={"Content-Type": content_type})

        return handler

    routes = {f"/{name}": serve_html(name, body) for name, body in MALFORMED.items()}
    base, _ = await site(serve, *routes, routes={**routes, "/found/{name}": linking()})
    stats = await crawl_quickly(hostile_project(tmp_path, base), f"max_response_size={2 * MiB}")
    assert stats.reason == "finished" and stats.errors == {}
    # Each page reached the spider, and the link on it was found and followed.
    assert exported(tmp_path) == good_urls(base) | {
        f"{base}{prefix}{name}" for name in MALFORMED for prefix in ("/", "/found/")
    }
    starts = {item["url"]: item["start"] for item in read_jsonl(tmp_path / "out/items.jsonl")}
    assert starts[f"{base}/bad-utf8"].startswith("<html><body>caf\ufffd <a")
    assert starts[f"{base}/bogus-charset"].startswith("<html><body>na\u00efve <a")


async def test_a_link_after_deep_nesting_is_found(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    # lxml's tree stops 2,048 elements deep and drops the rest of the page unless told.
    async def deep(request: web.Request) -> web.Response:
        return web.Response(
            body=b"<html><body>"
            + b"<div>" * 10_000
            + b"</div>" * 10_000
            + b"<a href='/after-deep'>x</a>",
            content_type="text/html",
        )

    caplog.set_level(logging.DEBUG, logger="fw")
    base, hits = await site(serve, "/deep", routes={"/deep": deep, "/after-deep": linking()})
    stats = await crawl_quickly(hostile_project(tmp_path, base), f"max_response_size={MiB}")
    assert stats.reason == "finished"
    assert hits["/after-deep"] == 1
    deep_pages = [r.getMessage() for r in caplog.records if "nested too deep" in r.getMessage()]
    assert deep_pages == [
        f"{base}/deep is nested too deep for lxml's tree: parsed again without limits"
    ]


# -------------------------------------------------------------------------------------------
# 11: links that are not for this crawler
# -------------------------------------------------------------------------------------------


async def test_other_schemes_offsite_links_and_fragments_are_filtered(
    tmp_path: Path, serve: Serve, hostile: Hostile
) -> None:
    ftp = await hostile.raw(answer(b"220 welcome\r\n"))
    offsite, offsite_hits = await start_app(serve, {"/": linking()}, OFFSITE_HOST)
    schemes = [
        "mailto:someone@example.com",
        "javascript:void(0)",
        "tel:+15550100",
        "data:text/html,<a href='/x'>x</a>",
        ftp.url.replace("http:", "ftp:") + "/file",
    ]
    fragments = ["#top", "/ok/0#section", "/ok/1#"]
    base, hits = await site(serve, *schemes, f"{offsite}/", "http://elsewhere.invalid/", *fragments)
    stats = await crawl_quickly(hostile_project(tmp_path, base))
    assert stats.reason == "finished" and stats.errors == {}
    assert stats.filtered == {"scheme": 5, "offsite": 2, "duplicate": 3}
    assert ftp.attempts == 0 and not offsite_hits
    assert all(n == 1 for n in hits.values())
    assert exported(tmp_path) == good_urls(base)


# -------------------------------------------------------------------------------------------
# 12: plugins that raise
# -------------------------------------------------------------------------------------------


async def test_a_raising_callback_or_hook_is_named_counted_and_survived(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    routes = {
        "/boom": linking("/after-boom"),
        "/hook-boom": linking(),
        "/item-boom": linking(),
        "/after-boom": linking(),
    }
    base, hits = await site(serve, "/boom", "/hook-boom", "/item-boom", routes=routes)
    (tmp_path / "hooks.py").write_text(HOOKS, encoding="utf-8")
    project = hostile_project(tmp_path, base, plugins="./hostile.py, ./hooks.py")
    caplog.set_level(logging.WARNING, logger="fw")
    stats = await crawl_quickly(project)
    assert stats.reason == "finished"
    assert stats.errors == {"spider_error": 1, "plugin_error": 2}
    # What the callback yielded before it raised is kept, its link included.
    assert hits["/after-boom"] == 1
    assert exported(tmp_path) == good_urls(base) | {base + path for path in routes}
    messages = [record.getMessage() for record in caplog.records]
    for parts in [
        ("spider hostile", "ValueError: kaboom", f"{base}/boom"),
        ("plugin 'hooks.py'", "response_received", f"{base}/hook-boom"),
        ("plugin 'hooks.py'", "item_scraped", f"{base}/item-boom"),
    ]:
        assert any(all(part in message for part in parts) for message in messages), parts


# -------------------------------------------------------------------------------------------
# What the user reads
# -------------------------------------------------------------------------------------------


async def test_fw_run_summary_names_each_error_kind(
    tmp_path: Path, serve: Serve, hostile: Hostile
) -> None:
    truncating = await hostile.raw(
        answer(head(Content_Type="text/html", Content_Length=1000) + b"<html>")
    )
    missing, _ = statuses(*[404] * 10)
    base, _ = await site(
        serve,
        dead_url(HOSTILE_HOSTS[-1]),
        truncating.url + "/short",
        "/missing",
        routes={"/missing": missing},
    )
    project = hostile_project(tmp_path, base)
    done = await run_fw("run", str(project), "--stats", str(tmp_path / "stats.json"))
    assert done.returncode == 0, done.stderr
    summary = next(line for line in done.stderr.splitlines() if ": finished in " in line)
    assert "5 pages" in summary and "3 errors" in summary, summary
    for kind in ("connection 1", "truncated 1", "http_404 1"):
        assert kind in summary, summary
    saved = json.loads((tmp_path / "stats.json").read_text(encoding="utf-8"))
    assert saved["errors"] == {"connection": 1, "truncated": 1, "http_404": 1}
