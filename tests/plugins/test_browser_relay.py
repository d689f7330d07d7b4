"""The relay a rendered page's own requests take to the crawl's proxy: real sockets only."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from fwcrawl_plugins.browser.relay import Relay

from tests.conftest import Proxies, Serve, pages
from tests.proxies import ForwardProxy, closed_port


@pytest.fixture
async def relays() -> AsyncIterator[list[Relay]]:
    started: list[Relay] = []
    yield started
    for relay in started:
        await relay.close()


async def relayed(relays: list[Relay], upstream: str) -> tuple[str, int]:
    relay = Relay(upstream)
    relays.append(relay)
    host, _, port = (await relay.start()).removeprefix("http://").partition(":")
    return host, int(port)


def anything() -> web.Application:
    """A site that answers any method on any path with the method, path and body."""

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=f"{request.method} {request.path} {await request.text()}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def ask(address: tuple[str, int], request: bytes) -> bytes:
    """Send one request to the relay; return all it answers until it closes."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_a_tunnel_reaches_the_site_with_the_proxys_credentials_added(
    serve: Serve, proxies: Proxies, relays: list[Relay]
) -> None:
    site = (await serve(pages({"/": "<h1>through</h1>"}))).removeprefix("http://")
    guarded = ForwardProxy(credentials=("crawler", "s3cret:/@"))
    upstream = (await proxies(guarded)).replace("http://", "http://crawler:s3cret%3A%2F%40@")
    reader, writer = await asyncio.open_connection(*await relayed(relays, upstream))
    try:
        writer.write(f"CONNECT {site} HTTP/1.1\r\nHost: {site}\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.write(f"GET / HTTP/1.1\r\nHost: {site}\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200") and b"<h1>through</h1>" in answer
    assert guarded.tunnelled == {site: 1} and guarded.refused == 0


async def test_every_request_of_a_kept_alive_connection_goes_with_the_credentials(
    serve: Serve, proxies: Proxies, relays: list[Relay]
) -> None:
    """Each request on the connection, a POST's body between them, gets the proxy's
    credentials, not the tab's own."""
    site = await serve(anything())
    guarded = ForwardProxy(credentials=("crawler", "pw"))
    upstream = (await proxies(guarded)).replace("http://", "http://crawler:pw@")
    own = "Proxy-Authorization: Basic d3Jvbmc6d3Jvbmc=\r\n"  # the tab's own: replaced
    asked = (
        f"GET {site}/a HTTP/1.1\r\nProxy-Connection: keep-alive\r\n{own}\r\n"
        f"POST {site}/b HTTP/1.1\r\nContent-Length: 5\r\n{own}\r\nhello"
        f"GET {site}/c HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    answer = await ask(await relayed(relays, upstream), asked.encode())
    assert answer.count(b"HTTP/1.1 200") == 3
    assert answer.endswith(b"GET /c ") and b"POST /b hello" in answer
    assert guarded.relayed == {f"{site}/a": 1, f"{site}/b": 1, f"{site}/c": 1}
    assert guarded.refused == 0


async def test_a_chunked_body_goes_whole_and_ends_the_connection(
    relays: list[Relay],
) -> None:
    """Where a chunked body ends the relay does not read: the proxy is told to close."""
    got = bytearray()

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.extend(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    async with server:
        upstream = f"http://u:p@127.0.0.1:{server.sockets[0].getsockname()[1]}"
        body = b"3\r\nabc\r\n0\r\n\r\n"
        head = b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive"
        answer = await ask(await relayed(relays, upstream), head + b"\r\n\r\n" + body)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    sent_head, _, sent_body = bytes(got).partition(b"\r\n\r\n")
    assert sent_head.split(b"\r\n") == [
        b"POST http://a/ HTTP/1.1",
        b"Transfer-Encoding: chunked",
        b"Connection: close",
        b"Proxy-Authorization: Basic dTpw",
    ]
    assert sent_body == body


async def test_a_proxy_that_cannot_be_reached_is_a_bad_gateway(relays: list[Relay]) -> None:
    answer = await ask(await relayed(relays, closed_port()), b"GET http://a/ HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
async def test_another_users_process_gets_nothing(
    proxies: Proxies, relays: list[Relay], serve: Serve
) -> None:
    """Any local user could otherwise ride on the proxy's credentials."""
    site = await serve(pages({"/": "<h1>secret</h1>"}))
    guarded = ForwardProxy(credentials=("crawler", "pw"))
    upstream = (await proxies(guarded)).replace("http://", "http://crawler:pw@")
    host, port = await relayed(relays, upstream)
    other = f"""
import encodings.idna, os, socket
os.setuid(65534)  # nobody
s = socket.create_connection(({host!r}, {port}))
s.sendall(b"GET {site}/ HTTP/1.1\\r\\n\\r\\n")
try:
    print(s.recv(100) or "closed")
except ConnectionResetError:
    print("closed")
"""
    done = await asyncio.create_subprocess_exec(sys.executable, "-c", other, stdout=subprocess.PIPE)
    out, _ = await asyncio.wait_for(done.communicate(), 20)
    assert (done.returncode, out.strip()) == (0, b"closed")
    assert guarded.relayed == {}
    mine = await ask((host, port), f"GET {site}/ HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
    assert mine.endswith(b"<h1>secret</h1>")  # the same request from this user goes through
