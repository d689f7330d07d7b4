"""The relay a rendered page's own requests take to the crawl's proxy: real sockets only."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from fwcrawl_plugins.browser import peer
from fwcrawl_plugins.browser import relay as relays_module
from fwcrawl_plugins.browser.relay import Relay

from framework import Request
from framework.fetch.downloader import Downloader, DownloadSettings
from framework.fetch.parsers import Parsers
from tests.conftest import Proxies, Serve, pages
from tests.proxies import ForwardProxy, closed_port

#: What a tab's requests must never carry out: their own, to be replaced.
OWN = "Proxy-Authorization: Basic d3Jvbmc6d3Jvbmc=\r\n"


@pytest.fixture
async def relays() -> AsyncIterator[list[Relay]]:
    started: list[Relay] = []
    yield started
    for relay in started:
        await relay.close()


async def relayed(
    relays: list[Relay], upstream: str | None, *, local: bool = False
) -> tuple[str, int]:
    """Start a relay; return its address. ``local``: it may reach this machine's sites
    itself (the tests' sites are all on loopback)."""
    relay = Relay(upstream, local=local)
    relays.append(relay)
    host, _, port = (await relay.start()).removeprefix("http://").partition(":")
    return host, int(port)


async def guarded(proxies: Proxies) -> tuple[ForwardProxy, str]:
    """A forward proxy that wants ``crawler``'s password, and its URL with it."""
    proxy = ForwardProxy(credentials=("crawler", "s3cret:/@"))
    url = (await proxies(proxy)).replace("http://", "http://crawler:s3cret%3A%2F%40@")
    return proxy, url


def anything() -> web.Application:
    """A site that answers any method on any path with the method, path and body."""

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=f"{request.method} {request.path} {await request.text()}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def ask(address: tuple[str, int], request: bytes) -> bytes:
    """Send one request to the relay; return all it answers until it closes (nothing, if
    it closed without reading what was sent)."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


class Recorder:
    """A raw server standing for the proxy: it records every connection and its bytes."""

    def __init__(self, answer: bytes | None = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"):
        self.got: list[bytes] = []
        self._answer = answer
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        return f"http://u:p@127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.got.append(b"")
        if self._answer is None:  # a proxy that never answers
            await reader.read()
        else:
            self.got[-1] = await reader.readuntil(b"\r\n\r\n")
            writer.write(self._answer)
        writer.close()


async def test_a_tunnel_reaches_the_site_with_the_proxys_credentials_added(
    serve: Serve, proxies: Proxies, relays: list[Relay]
) -> None:
    site = (await serve(pages({"/": "<h1>through</h1>"}))).removeprefix("http://")
    proxy, upstream = await guarded(proxies)
    reader, writer = await asyncio.open_connection(*await relayed(relays, upstream))
    try:
        writer.write(f"CONNECT {site} HTTP/1.1\r\nHost: {site}\r\n{OWN}\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.write(f"GET / HTTP/1.1\r\nHost: {site}\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200") and b"<h1>through</h1>" in answer
    assert proxy.tunnelled == {site: 1} and proxy.refused == 0


async def test_every_request_of_a_kept_alive_connection_goes_with_the_credentials(
    serve: Serve, proxies: Proxies, relays: list[Relay]
) -> None:
    """Each request on the connection, a POST's body between them, gets the proxy's
    credentials, not the tab's own."""
    site = await serve(anything())
    proxy, upstream = await guarded(proxies)
    asked = (
        f"GET {site}/a HTTP/1.1\r\nProxy-Connection: keep-alive\r\n{OWN}\r\n"
        f"POST {site}/b HTTP/1.1\r\nContent-Length: 5\r\n{OWN}\r\nhello"
        f"GET {site}/c HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    answer = await ask(await relayed(relays, upstream), asked.encode())
    assert answer.count(b"HTTP/1.1 200") == 3
    assert answer.endswith(b"GET /c ") and b"POST /b hello" in answer
    assert proxy.relayed == {f"{site}/a": 1, f"{site}/b": 1, f"{site}/c": 1}
    assert proxy.refused == 0


#: NO_PROXY values, as curl and Python read them; "PORT" stands for the site's port.
NO_PROXIES = ["", "127.0.0.3", ".0.0.3", "localhost,*", "*", "*.0.0.3", "127.0.0.0/8", "x:PORT"]


@pytest.mark.parametrize("no_proxy", NO_PROXIES)
async def test_the_environments_proxy_is_taken_or_left_as_fws_own_requests_do(
    serve: Serve,
    proxies: Proxies,
    relays: list[Relay],
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
) -> None:
    """A tab's request leaves as fw's downloader sends the same request: through
    HTTP_PROXY, credentials added, or straight to the site."""
    site = await serve(anything(), host="127.0.0.3")
    proxy, upstream = await guarded(proxies)
    monkeypatch.setenv("HTTP_PROXY", upstream)
    monkeypatch.setenv("NO_PROXY", no_proxy.replace("PORT", site.rsplit(":", 1)[1]))
    settings = DownloadSettings(4, 10.0, 1 << 20, {}, cookies=False)
    async with Downloader(settings, Parsers()) as fetcher:
        assert (await fetcher.fetch(Request(f"{site}/fw"))).status == 200
    asked = f"GET {site}/tab HTTP/1.1\r\nHost: {site[7:]}\r\nConnection: close\r\n\r\n"
    answer = await ask(await relayed(relays, None, local=True), asked.encode())
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"GET /tab ")
    assert (f"{site}/tab" in proxy.relayed) == (f"{site}/fw" in proxy.relayed)
    assert proxy.refused == 0


async def test_each_scheme_takes_its_own_proxy_from_the_environment(
    serve: Serve, proxies: Proxies, relays: list[Relay], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY alone: a tunnel goes through it, a plain request straight to the site,
    as fw's own would; one connection that asks for both ends at the switch."""
    site = await serve(anything())
    proxy, upstream = await guarded(proxies)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", upstream)
    monkeypatch.setenv("NO_PROXY", "")
    address = await relayed(relays, None, local=True)
    plain = f"GET {site}/plain HTTP/1.1\r\nHost: {site[7:]}\r\n\r\n"
    answer = await ask(address, (plain + f"CONNECT {site[7:]} HTTP/1.1\r\n\r\n").encode())
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"GET /plain ")
    assert proxy.relayed == {} and proxy.tunnelled == {}  # straight, and no tunnel after it
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(f"CONNECT {site[7:]} HTTP/1.1\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.write(f"GET /t HTTP/1.1\r\nHost: {site[7:]}\r\nConnection: close\r\n\r\n".encode())
        assert (await asyncio.wait_for(reader.read(), 10)).endswith(b"GET /t ")
    finally:
        writer.close()
    assert proxy.tunnelled == {site[7:]: 1} and proxy.refused == 0


@pytest.mark.parametrize("tunnel", [False, True])
async def test_a_site_on_this_machine_or_its_network_is_not_reached_for_a_page(
    serve: Serve, relays: list[Relay], monkeypatch: pytest.MonkeyPatch, tunnel: bool
) -> None:
    """Chromium keeps a public page from local services (Local Network Access); it cannot
    tell where the relay connects, so the relay refuses non-public addresses itself."""
    served: list[str] = []

    async def secret(request: web.Request) -> web.Response:
        served.append(request.path)
        return web.Response(text="SECRET", headers={"Access-Control-Allow-Origin": "*"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", secret)
    site = (await serve(app, host="127.0.0.3")).removeprefix("http://")
    monkeypatch.setenv("HTTP_PROXY", closed_port())
    monkeypatch.setenv("NO_PROXY", "127.0.0.3,localhost")
    head = f"CONNECT {site} HTTP/1.1" if tunnel else f"GET http://{site}/s HTTP/1.1"
    for name in (site, site.replace("127.0.0.3", "localhost")):
        answer = await ask(
            await relayed(relays, None), head.replace(site, name).encode() + b"\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 502 Bad Gateway")
    assert served == []


async def test_a_local_page_may_load_its_own_resources_but_no_other_local_hosts(
    serve: Serve, relays: list[Relay], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chromium lets a page reach its own origin, an intranet page included: the hosts of
    the pages rendered are reached, however local; other local hosts are not."""
    own = await serve(anything(), host="127.0.0.2")
    other = await serve(anything(), host="127.0.0.3")
    monkeypatch.setenv("HTTP_PROXY", closed_port())
    monkeypatch.setenv("NO_PROXY", "127.0.0.2,127.0.0.3")
    relay = Relay(None, pages={"127.0.0.2"})
    relays.append(relay)
    host, port = (await relay.start()).removeprefix("http://").split(":")
    for site, answered in ((own, b"HTTP/1.1 200"), (other, b"HTTP/1.1 502")):
        asked = f"GET {site}/s.js HTTP/1.1\r\nHost: {site[7:]}\r\nConnection: close\r\n\r\n"
        assert (await ask((host, int(port)), asked.encode())).startswith(answered)


async def test_a_site_whose_first_address_does_not_answer_is_reached_at_the_next(
    serve: Serve, relays: list[Relay], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a browser does, the relay tries a name's addresses in turn: one dead address of
    several must not fail the page's resources."""
    site = await serve(anything(), host="127.0.0.3")
    port = int(site.rpartition(":")[2])
    looked_up = socket.getaddrinfo

    def two_addresses(host: str, *args: Any) -> Any:
        if host != "two.test":
            return looked_up(host, *args)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in ("127.0.0.5", "127.0.0.3")  # nothing listens on the first
        ]

    monkeypatch.setattr(socket, "getaddrinfo", two_addresses)
    monkeypatch.setenv("HTTP_PROXY", closed_port())
    monkeypatch.setenv("NO_PROXY", "two.test")
    asked = f"GET http://two.test:{port}/s HTTP/1.1\r\nHost: two.test\r\nConnection: close\r\n\r\n"
    answer = await ask(await relayed(relays, None, local=True), asked.encode())
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"GET /s "), answer


PUBLIC = {
    "93.184.216.34": True,
    "2606:2800:220:1:248:1893:25c8:1946": True,
    "127.0.0.1": False,
    "10.1.2.3": False,
    "169.254.169.254": False,  # a cloud's metadata service
    "0.0.0.0": False,
    "::1": False,
    "fe80::1%eth0": False,
    "::ffff:127.0.0.1": False,  # IPv4-mapped
    "::7f00:1": False,  # IPv4-compatible
    "2002:7f00:1::": False,  # 6to4 of 127.0.0.1
    "64:ff9b::a00:1": False,  # NAT64 of 10.0.0.1
    "fec0::1": False,  # site-local
    "192.0.0.8": False,
    "224.0.0.1": False,  # multicast
}


@pytest.mark.parametrize(("address", "public"), PUBLIC.items(), ids=PUBLIC.keys())
def test_only_an_address_on_the_public_internet_counts_as_public(
    address: str, public: bool
) -> None:
    assert relays_module._public(address) is public


async def test_a_target_with_no_valid_host_is_a_bad_request(
    relays: list[Relay], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", closed_port())
    address = await relayed(relays, None)
    for head in (b"GET http://xn--a.com/ HTTP/1.1", b"CONNECT h:99999 HTTP/1.1"):
        assert await ask(address, head + b"\r\n\r\n") == b"HTTP/1.1 400 Bad Request\r\n\r\n"


async def test_a_direct_request_keeps_its_target_byte_for_byte(
    serve: Serve, relays: list[Relay], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signed URL must reach the site as the page wrote it."""
    seen: list[str] = []

    async def raw(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", raw)
    site = await serve(app)
    monkeypatch.setenv("HTTP_PROXY", closed_port())
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    address = await relayed(relays, None, local=True)
    for target in ("/a%7eb/%41/c%27d?x=[1]&y=%zz&s=Ab%2fD%3d&e=%7E", "?q", ""):
        asked = f"GET {site}{target} HTTP/1.1\r\nHost: {site[7:]}\r\nConnection: close\r\n\r\n"
        assert (await ask(address, asked.encode())).startswith(b"HTTP/1.1 200")
    assert seen == ["/a%7eb/%41/c%27d?x=[1]&y=%zz&s=Ab%2fD%3d&e=%7E", "/?q", "/"]


async def test_a_far_end_that_ignores_the_tabs_leaving_is_let_go_of_shortly(
    relays: list[Relay], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tab never half-closes: once it hung up, the relay gives the far end a few seconds
    to finish, not the two minutes a quiet connection gets."""
    monkeypatch.setattr(relays_module, "_GRACE_S", 0.2)
    asked, never = asyncio.Event(), asyncio.Event()

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        asked.set()
        await never.wait()  # no answer, and the tab's FIN ignored
        writer.close()

    server = await asyncio.start_server(deaf, "127.0.0.1", 0)
    async with server:
        relay = Relay(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        relays.append(relay)
        host, port = (await relay.start()).removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET http://a/ HTTP/1.1\r\n\r\n")
        await asyncio.wait_for(asked.wait(), 10)
        writer.close()  # the tab goes
        await asyncio.wait_for(asyncio.gather(*relay._tasks), 5)
        never.set()


async def test_a_slow_upload_goes_on_as_it_comes_and_stays_alive(
    serve: Serve, proxies: Proxies, relays: list[Relay], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body is passed on a chunk at a time (never held whole: a page could upload
    gigabytes), and each chunk counts as the connection moving."""
    monkeypatch.setattr(relays_module, "_IDLE_S", 0.5)
    site = await serve(anything())
    proxy, upstream = await guarded(proxies)
    reader, writer = await asyncio.open_connection(*await relayed(relays, upstream))
    try:
        writer.write(
            f"POST {site}/up HTTP/1.1\r\nContent-Length: 6\r\nConnection: close\r\n\r\n".encode()
        )
        for part in (b"ab", b"cd", b"ef"):  # 0.9 s in all: longer than the quiet allowed
            await asyncio.sleep(0.3)
            writer.write(part)
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.endswith(b"POST /up abcdef")
    assert proxy.relayed == {f"{site}/up": 1}


#: Heads a proxy might split otherwise than the relay, so that the credentials would go
#: out with a request the relay never saw; and heads a browser never sends a proxy.
AMBIGUOUS = {
    "a bare LF": b"GET http://a/ HTTP/1.1\nContent-Length: 0\r\n\r\n",
    "two lengths": b"POST http://a/ HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 9\r\n\r\n",
    "a chunked body": b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    "a length that is no number": b"POST http://a/ HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
    "a blank line first": b"\r\nCONNECT a:443 HTTP/1.1\r\n\r\n",
    "a folded header": b"GET http://a/ HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n",
    "a space before the colon": b"GET http://a/ HTTP/1.1\r\nContent-Length : 5\r\n\r\n",
    "the origin form": b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "a tunnel without a port": b"CONNECT a HTTP/1.1\r\n\r\n",
}


@pytest.mark.parametrize("head", AMBIGUOUS.values(), ids=AMBIGUOUS.keys())
async def test_a_head_a_proxy_might_read_otherwise_is_refused_unsent(
    relays: list[Relay], head: bytes
) -> None:
    recorder = Recorder()
    async with recorder as upstream:
        answer = await ask(await relayed(relays, upstream), head)
    assert answer == b"HTTP/1.1 400 Bad Request\r\n\r\n"
    assert recorder.got == []  # not even a connection


async def test_after_a_refused_head_only_what_came_before_went_out(
    serve: Serve, proxies: Proxies, relays: list[Relay]
) -> None:
    site = await serve(anything())
    proxy, upstream = await guarded(proxies)
    asked = f"GET {site}/a HTTP/1.1\r\n\r\nPOST {site}/b HTTP/1.1\r\nContent-Length: 0\r\n"
    asked += "Content-Length: 40\r\n\r\n"
    answer = await ask(await relayed(relays, upstream), asked.encode())
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"GET /a ")
    assert proxy.relayed == {f"{site}/a": 1}


async def test_a_head_too_large_is_answered_431(relays: list[Relay]) -> None:
    recorder = Recorder()
    async with recorder as upstream:
        head = b"GET http://a/ HTTP/1.1\r\nX-Big: " + b"x" * 70_000 + b"\r\n\r\n"
        answer = await ask(await relayed(relays, upstream), head)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert recorder.got == []


async def test_a_proxy_that_cannot_be_reached_is_a_bad_gateway(relays: list[Relay]) -> None:
    answer = await ask(await relayed(relays, closed_port()), b"GET http://a/ HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway")


@pytest.mark.parametrize("side", ["tab", "proxy"])
async def test_a_connection_quiet_both_ways_is_closed(
    relays: list[Relay], monkeypatch: pytest.MonkeyPatch, side: str
) -> None:
    """A tab that never sends a head, or a proxy that never answers, holds no task for ever."""
    monkeypatch.setattr(relays_module, "_IDLE_S", 0.3)
    recorder = Recorder(answer=None)
    async with recorder as upstream:
        address = await relayed(relays, upstream)
        sent = b"" if side == "tab" else b"GET http://a/ HTTP/1.1\r\n\r\n"
        assert await ask(address, sent) == b""  # closed, unanswered, within ask's 10 s
    assert len(recorder.got) == (side == "proxy")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
@pytest.mark.parametrize("close", [False, True], ids=["waiting", "sent-and-closed"])
async def test_another_users_process_gets_nothing(
    proxies: Proxies, relays: list[Relay], serve: Serve, close: bool
) -> None:
    """Any local user could otherwise ride on the proxy's credentials; one whose socket
    closed at once is refused too (the kernel then lists it as root's)."""
    site = await serve(pages({"/": "<h1>secret</h1>"}))
    proxy, upstream = await guarded(proxies)
    relay = Relay(upstream)
    relays.append(relay)
    host, port = (await relay.start()).removeprefix("http://").split(":")
    other = f"""
import encodings.idna, os, socket, time
os.setuid(65534)  # nobody
ports = set()
for _ in range({50 if close else 1}):
    s = socket.create_connection(({host!r}, {port}))
    s.sendall(b"GET {site}/ HTTP/1.1\\r\\nConnection: close\\r\\n\\r\\n")
    if not {close}:
        try:
            print(s.recv(100) or "closed")
        except ConnectionResetError:
            print("closed")
        break
    ports.add(s.getsockname()[1])
    s.close()
# Until the kernel lists every closed socket as orphaned, under uid 0: what the relay,
# accepting only now, is shown.
deadline = time.monotonic() + 10
while ports and time.monotonic() < deadline:
    rows = [row.split() for row in open("/proc/net/tcp").read().splitlines()[1:]]
    if not any(int(r[1].split(":")[1], 16) in ports and r[7] != "0" for r in rows):
        break
"""
    if close:  # run while the relay accepts nothing: each socket is closed when it looks
        done = subprocess.run(  # noqa: ASYNC221 - blocking the loop is the point
            [sys.executable, "-c", other], capture_output=True, timeout=20, check=False
        )
        code, out = done.returncode, done.stdout
    else:
        running = await asyncio.create_subprocess_exec(
            sys.executable, "-c", other, stdout=subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(running.communicate(), 20)
        code = running.returncode
    assert (code, out.strip()) == (0, b"" if close else b"closed")
    # The same request from this user goes through; accepted after the others, so that
    # then every connection of theirs is seen to its end.
    mine = await ask(
        (host, int(port)), f"GET {site}/ HTTP/1.1\r\nConnection: close\r\n\r\n".encode()
    )
    await asyncio.wait_for(asyncio.gather(*relay._tasks), 10)
    assert proxy.relayed == {f"{site}/": 1}
    assert mine.endswith(b"<h1>secret</h1>")


async def test_no_word_from_the_kernel_on_whos_asking_refuses_them_saying_why(
    relays: list[Relay], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A kernel without sock_diag (or a sandbox refusing it) cannot vouch for anyone."""

    def refused(*_: object) -> tuple[int, int]:
        raise OSError(errno.EPROTONOSUPPORT, os.strerror(errno.EPROTONOSUPPORT))

    monkeypatch.setattr(peer, "_owner", refused)
    peer._cannot_verify.cache_clear()
    recorder = Recorder()
    async with recorder as upstream:
        address = await relayed(relays, upstream)
        for _ in range(2):
            assert await ask(address, b"GET http://a/ HTTP/1.1\r\n\r\n") == b""
    assert recorder.got == []
    warned = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        "browser: the kernel will not say who connects to the proxy relay (Protocol not "
        "supported): its connections are refused, so rendered pages' resources fail"
    ]
