"""The browser plugin against a real headless Chromium, on pages served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fwcrawl_plugins.browser.chromium import _CONTEXTS as CONTEXTS_KEPT
from fwcrawl_plugins.browser.chromium import Chromium, Setup
from fwcrawl_plugins.browser.cookies import CookieSync, _of_jar
from fwcrawl_plugins.browser.options import BrowserOptions
from fwcrawl_plugins.browser.upstream import Upstream
from playwright.async_api import async_playwright
from yarl import URL

from framework.crawl.stats import Stats
from framework.fetch.cookies import CookieJar
from tests.conftest import Proxies, Serve, crawl, pages, read_jsonl, run_fw, write_project
from tests.plugins.browser_site import PRODUCTS, SCROLL_TOTAL, BrowserSite
from tests.proxies import ForwardProxy

#: A spider that asks for the requests a test lists, each with its own render and meta.
SPIDER = """
import json
from framework import Request, Spider, hookimpl

class Asks(Spider):
    name = "asks"

    def start_requests(self):
        for ask in json.loads(self.options["asks"]):
            yield Request(ask["url"], render=ask.get("render"), meta=ask.get("meta"),
                          dont_filter=True)

    def parse(self, response):
        yield {
            "url": response.url,
            "status": response.status,
            "products": response.css(".product h2::text").getall(),
            "meta": {k: v for k, v in response.meta.items() if k in ("screenshot", "pdf")},
            "text": response.css("body::text").get(),
        }

@hookimpl
def register_spiders(register):
    register(Asks)
"""


@pytest.fixture
async def shop(serve: Serve, chromium: str) -> tuple[BrowserSite, str]:
    site = BrowserSite()
    return site, await serve(site.app())


def asks_project(
    directory: Path, asks: list[dict[str, Any]], browser: str = "{}", extra: str = ""
) -> Path:
    (directory / "asks.py").write_text(SPIDER, encoding="utf-8")
    project = write_project(
        directory,
        f"""
        spider: asks
        plugins: [./asks.py]
        start_urls: []
        robots: ignore
        retries: 0
        asks: {{asks: '{json.dumps(asks)}'}}
        browser: {browser}
        exporters: [{{path: items.jsonl}}]
        """,
    )
    with project.open("a", encoding="utf-8") as file:
        file.write(extra)
    return project


async def crawl_asks(
    directory: Path, asks: list[dict[str, Any]], browser: str = "{}", extra: str = ""
) -> tuple[Stats, dict[str, dict[str, Any]]]:
    """Crawl the asked requests; return the stats and the items by URL path."""
    stats = await crawl(asks_project(directory, asks, browser, extra))
    items = read_jsonl(directory / "items.jsonl")
    return stats, {item["url"].split("/", 3)[3]: item for item in items}


# -------------------------------------------------------------------------------------------
# What a rendered page gives
# -------------------------------------------------------------------------------------------

DOC = (Path(__file__).parents[2] / "docs" / "browser.md").read_text(encoding="utf-8")
#: The project docs/browser.md shows, and the command it runs it with.
SHOP = re.search(r"```yaml\n(spider: rules\n.*?)```", DOC, re.DOTALL).group(1)  # type: ignore[union-attr]
COMMAND = "fw run shop.yaml -o items.jsonl"


async def test_fw_run_renders_a_js_only_page_into_the_items_of_its_static_twin(
    shop: tuple[BrowserSite, str], tmp_path: Path
) -> None:
    site, base = shop
    assert COMMAND in DOC
    rendered = SHOP.replace("http://127.0.0.1:8080", base)
    unrendered = re.sub(r"browser:\n(  .*\n)+", "", rendered)
    exports = {}
    for name, text in [
        ("static", unrendered.replace("/js/", "/static/")),
        ("unrendered", unrendered),
        ("rendered", rendered),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        write_project(folder, text, "shop.yaml")
        done = await run_fw(*COMMAND.split()[1:], cwd=folder, timeout=90)
        assert done.returncode == 0, done.stderr
        exports[name] = sorted(json.dumps(i) for i in read_jsonl(folder / "items.jsonl"))
    assert "browser:" not in unrendered
    assert len(exports["static"]) == sum(map(len, PRODUCTS.values()))
    assert exports["unrendered"] == []  # the page's HTML holds no product
    assert exports["rendered"] == exports["static"]
    assert site.served["/api/products"] == 2  # each rendered page fetched its data itself
    assert site.served["/js/page2"] == 1  # only the rendered page links to it


async def test_infinite_scroll_loads_more_with_scroll_and_stops_when_the_page_stops(
    shop: tuple[BrowserSite, str], tmp_path: Path
) -> None:
    _, base = shop
    stats, items = await crawl_asks(
        tmp_path,
        [
            {"url": f"{base}/scroll?n=0", "render": True},
            {"url": f"{base}/scroll?n=3", "render": True, "meta": {"browser": {"scroll": 3}}},
            {"url": f"{base}/scroll?n=99", "render": True, "meta": {"browser": {"scroll": 99}}},
            {
                "url": f"{base}/scroll?n=a",
                "render": True,
                "meta": {
                    "browser": {"actions": [{"scroll": 2}, {"wait_for": ".product + .product"}]}
                },
            },
        ],
        "{wait_for: .product, scroll_wait: 3}",
    )
    assert stats.errors == {}
    assert len(items["scroll?n=0"]["products"]) == 10
    assert len(items["scroll?n=3"]["products"]) == 40
    # 4 scrolls load everything; the fifth finds the page no longer grows and stops.
    assert items["scroll?n=99"]["products"] == [f"Item {n}" for n in range(SCROLL_TOTAL)]
    assert len(items["scroll?n=a"]["products"]) == 30


# -------------------------------------------------------------------------------------------
# Pages that never settle, and browsers that crash or hang
# -------------------------------------------------------------------------------------------


async def test_a_page_that_never_settles_is_a_counted_timeout_and_the_crawl_goes_on(
    shop: tuple[BrowserSite, str], tmp_path: Path
) -> None:
    _, base = shop
    idle = {"browser": {"wait_until": "networkidle"}}
    products = {"browser": {"wait_for": ".product"}}
    stats, items = await crawl_asks(
        tmp_path,
        [
            {"url": f"{base}/never?idle", "render": True, "meta": idle},
            {"url": f"{base}/never?selector", "render": True, "meta": products},
            {"url": f"{base}/busy", "render": True},
            {"url": f"{base}/js/", "render": True, "meta": products},
        ],
        "{timeout: 4, concurrency: 4}",
    )
    assert stats.errors == {"render_timeout": 3}
    assert list(items) == ["js/"]  # the good page rendered beside the hung ones
    assert items["js/"]["products"] == [name for name, _ in PRODUCTS[1]]


async def test_a_slow_render_is_not_taken_for_a_slow_host(
    serve: Serve, chromium: str, tmp_path: Path
) -> None:
    """Throttling learns a host's speed from its document's fetch: the scripts a page runs
    for a second (and the wait for a tab) are the browser's time, not the host's."""

    async def answer(request: web.Request) -> web.Response:
        wait = 1000 if request.path.startswith("/slow") else 0
        script = f"setTimeout(() => document.body.classList.add('done'), {wait});"
        return web.Response(text=f"<body><script>{script}</script>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    base = await serve(app)
    wait = {"browser": {"wait_for": ".done"}}
    paths = ("launch", "fast", "slow1", "slow2")  # the first render waits for Chromium
    asks = [{"url": f"{base}/{path}", "render": True, "meta": wait} for path in paths]
    one = "concurrency: {total: 1, per_domain: 1}\n"
    stats, items = await crawl_asks(tmp_path, asks, extra=one)
    assert stats.errors == {} and len(items) == 4
    assert stats.to_dict()["throttled"] == {}  # was {host: 1.4}: "slow replies"


async def test_a_render_timeout_is_retried_and_listed_in_the_failures_file(
    shop: tuple[BrowserSite, str], tmp_path: Path
) -> None:
    _, base = shop
    project = asks_project(
        tmp_path,
        [{"url": f"{base}/never", "render": True, "meta": {"browser": {"wait_for": ".product"}}}],
        "{timeout: 1}",
    )
    done = await run_fw("run", str(project), "-s", "retries=1", "-s", "backoff.base=0", timeout=90)
    assert done.returncode == 1, done.stderr  # nothing at all was fetched: exit 1, as ever
    assert "render_timeout" in done.stderr
    assert "waited 1s for '.product' to be on the page" in done.stderr
    listed = read_jsonl(tmp_path / "project.failures.jsonl")
    assert [(line["request"]["url"], line["request"]["render"]) for line in listed] == [
        (f"{base}/never", True)
    ]
    assert shop[0].served["/never"] == 2  # tried, and retried once


def browser_processes() -> list[int]:
    """The Chromium browser processes this test process started (not its helpers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [os.getpid()]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            try:
                # Chromium's helpers rewrite their command line as one string: split both ways.
                argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            words = argv.split()
            if b"--headless" in words and not any(w.startswith(b"--type=") for w in words):
                found.append(pid)
    return found


async def crash_midway(
    shop: tuple[BrowserSite, str], tmp_path: Path, hurt: Callable[[int], None], timeout: str
) -> tuple[Stats, dict[str, dict[str, Any]]]:
    """Crawl 12 JS pages, doing ``hurt`` to Chromium once the site served 4 of them."""
    site, base = shop
    asks = [
        {"url": f"{base}/js/?n={n}", "render": True, "meta": {"browser": {"wait_for": ".product"}}}
        for n in range(12)
    ]

    async def hurt_when_busy() -> None:
        async with asyncio.timeout(60):
            await site.wait_served("/api/products", 4)
        (pid,) = browser_processes()
        hurt(pid)

    hurting = asyncio.create_task(hurt_when_busy())
    result = await crawl_asks(tmp_path, asks, f"{{concurrency: 2, timeout: {timeout}}}")
    await hurting
    return result


async def test_chromium_killed_mid_crawl_fails_its_pages_and_is_launched_again(
    shop: tuple[BrowserSite, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "fw")
    stats, items = await crash_midway(
        shop, tmp_path, lambda pid: os.kill(pid, signal.SIGKILL), timeout="20"
    )
    crashed = stats.errors["browser_crashed"]
    assert 1 <= crashed <= 2  # the pages in its tabs at the time
    assert set(stats.errors) == {"browser_crashed"}
    assert len(items) == 12 - crashed  # every other page rendered, before and after
    assert all(item["products"] == ["Lamp", "Kettle", "Rug"] for item in items.values())
    assert "launched again" in caplog.text
    assert "launched again 1 times" in caplog.text


async def test_a_hung_chromium_is_killed_and_launched_again(
    shop: tuple[BrowserSite, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "fw")
    stats, items = await crash_midway(
        shop, tmp_path, lambda pid: os.kill(pid, signal.SIGSTOP), timeout="3"
    )
    assert set(stats.errors) == {"browser_crashed"}
    assert len(items) == 12 - stats.errors["browser_crashed"]
    assert "Chromium stopped answering; killing it" in caplog.text
    assert not browser_processes()  # the stopped one was killed, the new one closed


# -------------------------------------------------------------------------------------------
# Cookies, blocked resources, files, and what fw decides before the browser sees a page
# -------------------------------------------------------------------------------------------


async def test_cookies_go_both_ways_between_fws_jar_and_the_browser(
    shop: tuple[BrowserSite, str], tmp_path: Path
) -> None:
    site, base = shop
    stats, items = await crawl_asks(
        tmp_path,
        [
            {"url": f"{base}/cookie", "render": True, "meta": {"browser": {"wait_for": ".done"}}},
            {"url": f"{base}/whoami"},  # fetched over aiohttp, after (one request at a time)
        ],
        extra="concurrency: {total: 1}\n",
    )
    assert stats.errors == {}
    # The document's Set-Cookie reached the page's script (jar -> browser): it saw
    # "from_http=h1", 12 characters; the script's cookie reached the jar (browser -> jar).
    assert site.cookies == [{"from_http": "h1", "from_js": "12"}]
    assert json.loads(items["whoami"]["text"]) == {"from_http": "h1", "from_js": "12"}


async def test_a_cookie_one_side_cannot_hold_fails_no_render(
    serve: Serve, chromium: str, tmp_path: Path
) -> None:
    """fw's jar takes ``q="a;b"``, which Chromium refuses: all the jar's cookies went to
    the browser at once, so every render after it failed. A page's script may set a name
    fw cannot hold (``a b``): that failed its render and kept its tab lent."""
    sent: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        sent.append(dict(request.cookies))
        script = "document.cookie = 'a b=1; path=/'; " if request.path == "/odd" else ""
        script += "document.body.classList.add('done');"
        page = web.Response(text=f"<body><script>{script}</script>", content_type="text/html")
        if request.path == "/poison":
            page.headers.add("Set-Cookie", 'q="a;b"; Path=/')
            page.headers.add("Set-Cookie", "ok=1; Path=/")
        return page

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    base = await serve(app)
    wait = {"browser": {"wait_for": ".done"}}
    asks = [{"url": f"{base}/poison"}, {"url": f"{base}/odd", "render": True, "meta": wait}]
    asks += [{"url": f"{base}/after{n}", "render": True, "meta": wait} for n in range(2)]
    stats, items = await crawl_asks(tmp_path, asks, extra="concurrency: {total: 1}\n")
    assert stats.errors == {}
    assert sorted(items) == ["after0", "after1", "odd", "poison"]
    assert all(cookies.get("ok") == "1" for cookies in sent[1:])  # the rest went through


async def test_a_cookie_set_without_domain_stays_on_its_host_in_the_browser() -> None:
    jar = CookieJar()  # fw's: the crawl's cookies, which each rendered page starts with
    headers = ["sid=h", "dom=d; Domain=shop.test", "deep=p; Path=/a/"]
    jar.update_cookies_from_headers(headers, URL("http://shop.test/a/x"))
    given = {cookie["name"]: cookie["domain"] for cookie in _of_jar(jar)}
    # A leading dot gives Chromium a cookie for every subdomain: the Domain one alone.
    assert given == {"sid": "shop.test", "dom": ".shop.test", "deep": "shop.test"}


@pytest.mark.parametrize(
    ("block", "loaded"),
    [(None, set()), ("[]", {"a.png", "f.woff2", "v.mp4"}), ("[image]", {"f.woff2", "v.mp4"})],
)
async def test_images_fonts_and_media_are_not_loaded_unless_asked(
    shop: tuple[BrowserSite, str], tmp_path: Path, block: str | None, loaded: set[str]
) -> None:
    site, base = shop
    settings = "{wait: 1}" if block is None else f"{{wait: 1, block: {block}}}"
    stats, items = await crawl_asks(
        tmp_path, [{"url": f"{base}/pictures", "render": True}], settings
    )
    assert stats.errors == {}
    assert items["pictures"]["products"] == ["Pictures"]
    asked = {path.removeprefix("/media/") for path in site.served if path.startswith("/media/")}
    assert asked == loaded


#: A page fw hands the browser has no address, so Chromium takes it for a public one and
#: refuses it loopback hosts (Local Network Access); these tests serve every host so.
LOOPBACK_HOSTS = "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests"
BROWSER = f"{{wait: 1, block: [], args: ['{LOOPBACK_HOSTS}']}}"


async def test_a_rendered_pages_own_requests_carry_no_credentials_from_headers(
    serve: Serve, chromium: str, tmp_path: Path
) -> None:
    """A page's scripts and images may be on any host, and a header added to one request
    would follow its redirects anywhere: they get the project's headers less credentials.
    fw's own defaults (Accept) stay out of them too."""
    seen: list[tuple[str, str, str | None, str | None, str]] = []

    def app(name: str, page: str = "") -> web.Application:
        async def answer(request: web.Request) -> web.StreamResponse:
            got = request.headers
            seen.append(
                (name, request.path, got.get("Authorization"), got.get("X-Team"), got["Accept"])
            )
            if request.path == "/page":
                return web.Response(text=page, content_type="text/html")
            if request.path == "/moved":
                raise web.HTTPFound(f"{tracker}/moved.gif")
            return web.Response(body=b"GIF89a", content_type="image/gif")

        served = web.Application()
        served.router.add_get("/{tail:.*}", answer)
        return served

    cdn = await serve(app("cdn"), host="127.0.0.2")
    tracker = await serve(app("tracker"), host="127.0.0.3")
    images = "".join(f'<img src="{src}">' for src in ("/x.gif", "/moved", f"{cdn}/x.gif"))
    base = await serve(app("own", f"<html><body><h1>hi</h1>{images}</body></html>"))
    extra = """
allowed_domains: [127.0.0.1]
headers: {Authorization: Bearer top, X-Team: crawlers}
domains: {"127.0.0.2": {headers: {Authorization: Bearer cdn}}}
"""
    stats, items = await crawl_asks(
        tmp_path, [{"url": f"{base}/page", "render": True}], BROWSER, extra
    )
    assert stats.errors == {} and items["page"]["status"] == 200
    fetched = [(who, auth) for who, path, auth, _, _ in seen if path == "/page"]
    assert fetched == [("own", "Bearer top")]  # fw fetched the page itself
    asked = {(who, path, auth, team) for who, path, auth, team, _ in seen if path != "/page"}
    assert asked == {
        ("own", "/x.gif", None, "crawlers"),
        ("own", "/moved", None, "crawlers"),
        ("tracker", "/moved.gif", None, "crawlers"),
        ("cdn", "/x.gif", None, "crawlers"),
    }
    accepts = {accept for _, path, _, _, accept in seen if path != "/page"}
    assert not any(accept.startswith("text/html") for accept in accepts)  # an image's


async def two_hosts_of_images(serve: Serve) -> tuple[str, str, list[str]]:
    """Serve ``/page`` with an image of its own host and one of a CDN's, on 127.0.0.3;
    return both hosts' URLs and the list of what they served."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        seen.append(f"{request.host}{request.path}")
        if request.path == "/page":
            images = f'<img src="/x.gif"><img src="{cdn}/y.gif">'
            return web.Response(text=f"<h1>hi</h1>{images}", content_type="text/html")
        return web.Response(body=b"GIF89a", content_type="image/gif")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    cdn = await serve(app, host="127.0.0.3")
    return await serve(app), cdn, seen


@pytest.mark.parametrize("cookies", [True, False])  # one context for all pages, or one each
async def test_a_rendered_pages_own_requests_go_through_the_proxy_its_page_came_through(
    serve: Serve, proxies: Proxies, chromium: str, tmp_path: Path, cookies: bool
) -> None:
    """What a page fetches itself leaves through its document's proxy, loopback hosts
    included, as fw's own requests do; the proxy's credentials never reach Chromium (it
    would first ask without them, and the proxy would count a refusal)."""
    base, cdn, seen = await two_hosts_of_images(serve)
    guarded = ForwardProxy(credentials=("crawler", "s3cret:/@"))
    proxy = (await proxies(guarded)).replace("http://", "http://crawler:s3cret%3A%2F%40@")
    extra = f"proxies: {{urls: ['{proxy}']}}\ncookies: {str(cookies).lower()}\n"
    stats, items = await crawl_asks(
        tmp_path, [{"url": f"{base}/page", "render": True}], BROWSER, extra
    )
    assert stats.errors == {} and items["page"]["status"] == 200
    assert guarded.relayed == {f"{base}/page": 1, f"{base}/x.gif": 1, f"{cdn}/y.gif": 1}
    assert len(seen) == 3  # nothing went around the proxy
    assert guarded.refused == 0


@pytest.mark.parametrize("no_proxy", ["", "127.0.0.3"])
async def test_the_environments_proxy_carries_a_rendered_pages_own_requests_too(
    serve: Serve,
    proxies: Proxies,
    chromium: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
) -> None:
    """HTTP_PROXY as fw reads it, NO_PROXY included; its credentials reach the relay, not
    Chromium, whose environment has no proxy variables."""
    base, cdn, seen = await two_hosts_of_images(serve)
    guarded = ForwardProxy(credentials=("crawler", "s3cret"))
    monkeypatch.setenv("HTTP_PROXY", (await proxies(guarded)).replace("//", "//crawler:s3cret@"))
    monkeypatch.setenv("NO_PROXY", no_proxy)
    stats, items = await crawl_asks(tmp_path, [{"url": f"{base}/page", "render": True}], BROWSER)
    assert stats.errors == {} and items["page"]["status"] == 200
    through = {f"{base}/page": 1, f"{base}/x.gif": 1} | ({} if no_proxy else {f"{cdn}/y.gif": 1})
    assert guarded.relayed == through
    assert len(seen) == 3 and guarded.refused == 0


def this_machines_address() -> str | None:
    """The address this machine reaches other networks from (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only to pick a route
        except OSError:
            return None
        found = probe.getsockname()[0]
    return None if found.startswith("127.") else str(found)


class Stun(asyncio.DatagramProtocol):
    """A STUN server that only counts what reaches it."""

    def __init__(self) -> None:
        self.got = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.got += 1


async def test_webrtc_never_goes_around_the_pages_proxy(
    serve: Serve, proxies: Proxies, chromium: str, tmp_path: Path
) -> None:
    """WebRTC's UDP would reach any host straight from this machine, telling it the
    machine's address, whatever proxy the page's other requests go through."""
    address = this_machines_address()
    if address is None:
        pytest.skip("no address but loopback for a STUN server off it")
    loop = asyncio.get_running_loop()
    transport, stun = await loop.create_datagram_endpoint(Stun, local_addr=(address, 0))
    port = transport.get_extra_info("sockname")[1]
    script = (
        f"const pc = new RTCPeerConnection({{iceServers: [{{urls: 'stun:{address}:{port}'}}]}});"
        "const done = () => document.body.classList.add('done');"
        "pc.onicecandidate = e => e.candidate || done(); setTimeout(done, 3000);"
        "pc.createDataChannel('x'); pc.createOffer().then(o => pc.setLocalDescription(o));"
    )
    base = await serve(pages({"/page": f"<p>hi</p><script>{script}</script>"}))
    extra = f"proxies: {{urls: ['{await proxies(ForwardProxy())}']}}\n"
    wait = {"browser": {"wait_for": ".done"}}
    try:
        stats, _ = await crawl_asks(
            tmp_path, [{"url": f"{base}/page", "render": True, "meta": wait}], BROWSER, extra
        )
    finally:
        transport.close()
    assert stats.errors == {}
    assert stun.got == 0


async def test_an_intranet_page_past_the_environments_proxy_loads_its_own_scripts(
    serve: Serve, proxies: Proxies, chromium: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_PROXY names the intranet: its pages reach their own (local) host, as Chromium
    lets a page reach its own origin; Chromium's checks are on (no args)."""
    base = await serve(
        pages(
            {
                "/page": "<p id=out></p><script src='/s.js'></script>",
                "/s.js": "document.getElementById('out').textContent = 'ran';"
                "document.body.classList.add('done');",
            }
        ),
        host="127.0.0.2",
    )
    monkeypatch.setenv("HTTP_PROXY", await proxies(ForwardProxy()))
    monkeypatch.setenv("NO_PROXY", "127.0.0.2")
    wait = {"browser": {"wait_for": ".done"}}
    stats, items = await crawl_asks(
        tmp_path, [{"url": f"{base}/page", "render": True, "meta": wait}], "{block: []}"
    )
    assert stats.errors == {}  # .done: the script ran; without it, a render_timeout
    assert items["page"]["status"] == 200


#: Renders the listed paths one after another (each asked once the last one's parsed),
#: an item per page with the cookie its script saw and the one its XHR sent.
IN_TURN = """
import json
from framework import Request, Spider, hookimpl

class InTurn(Spider):
    name = "in_turn"

    def start_requests(self):
        yield self.ask(0)

    def ask(self, i):
        path, render = json.loads(self.options["paths"])[i]
        return Request(self.options["base"] + path, render=render, dont_filter=True,
                       meta={"i": i, "browser": {"wait_for": ".done"}} if render else {"i": i})

    def parse(self, response):
        i = response.meta["i"]
        yield {"i": i, "seen": response.css("#seen::text").get(),
               "sent": response.css("#sent::text").get(), "text": response.text}
        if i + 1 < len(json.loads(self.options["paths"])):
            yield self.ask(i + 1)

@hookimpl
def register_spiders(register):
    register(InTurn)
"""


async def crawl_in_turn(
    tmp_path: Path, base: str, paths: list[list[Any]], extra: str = ""
) -> list[dict[str, Any]]:
    """Crawl ``paths`` of ``base`` one after another (``IN_TURN``); return the items in
    that order, the crawl having had no error."""
    items = await crawl_in_turn(tmp_path, base, paths)
    assert items[0]["seen"] == 'sid="s1"'
    assert (items[2]["seen"], items[2]["sent"]) == ("(none)", "{}")  # logged out
    assert (items[3]["seen"], items[4]["seen"]) == ("k=v", "(none)")
    assert items[5]["text"] == "{}"  # fw's own request: k went with the page's delete


async def test_a_cookie_set_anew_in_the_browser_outlives_the_jars_older_deletion(
    chromium: str,
) -> None:
    """The jar lost a cookie (it expired, say) while a tab of the context set it anew:
    the next sync must not delete the new one, and the jar gets it back. A cookie the jar
    cannot hold (a reserved name) stays in the browser."""
    jar = CookieJar()
    jar.update_cookies({"sid": "old"}, URL("http://127.0.0.1/"))
    sync = CookieSync(jar)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium)
        try:
            context = await browser.new_context()
            await sync.to_browser(context)  # the context holds sid=old
            await context.add_cookies(
                [
                    {"name": "sid", "value": "new", "domain": "127.0.0.1", "path": "/"},
                    {"name": "version", "value": "2", "domain": "127.0.0.1", "path": "/"},
                ]
            )  # as a tab of it would: Set-Cookie, or a script
            jar.clear()
            await sync.to_browser(context)
            await sync.to_jar(context)
            held = {c["name"]: c["value"] for c in await context.cookies()}
        finally:
            await browser.close()
    assert held == {"sid": "new", "version": "2"}
    assert {m.key: m.value for m in jar} == {"sid": "new"}


@pytest.mark.parametrize(
    ("args", "local"),
    [
        ((LOOPBACK_HOSTS,), True),
        (
            ("--disable-features=Foo", "--disable-features=BlockInsecurePrivateNetworkRequests"),
            True,
        ),
        (
            ("--disable-features=LocalNetworkAccessChecksWarn,PrivateNetworkAccessSendPreflights",),
            False,
        ),
        (("--enable-features=LocalNetworkAccessChecks",), False),
    ],
)
def test_only_switching_chromiums_local_network_checks_off_lets_relays_reach_local_sites(
    args: tuple[str, ...], local: bool
) -> None:
    browser = Chromium(BrowserOptions(args=args), Setup(user_agent="fw", headers={}, shared=True))
    assert browser._local is local


async def test_many_proxies_keep_a_bounded_number_of_contexts_and_relays(chromium: str) -> None:
    """A rotating pool of many proxies (or a user name per session) must not keep a
    context, a relay and their sockets for each."""
    browser = Chromium(BrowserOptions(), Setup(user_agent="fw", headers={}, shared=True))
    try:
        lent = await browser.page(Upstream("http://127.0.0.2:1"))  # kept busy
        hot = Upstream("http://127.0.0.2:2")  # used between every two others
        for port in range(3, 30):
            browser.done(await browser.page(hot))
            browser.done(await browser.page(Upstream(f"http://127.0.0.2:{port}")))
        await asyncio.wait_for(asyncio.gather(*browser._closing), 30)
        assert browser._browser is not None
        assert len(browser._browser.contexts) == len(browser._relays) == CONTEXTS_KEPT
        assert not lent.is_closed()  # its context was the least recently used, and busy
        assert hot in browser._contexts  # its tabs were reused, never new ones opened
    finally:
        await browser.close()
    assert browser._relays == {}


async def test_screenshots_and_pdfs_are_stored_as_files_named_in_meta(
    shop: tuple[BrowserSite, str], tmp_path: Path
) -> None:
    _, base = shop
    products = {"wait_for": ".product"}
    stats, items = await crawl_asks(
        tmp_path,
        [
            {"url": f"{base}/js/", "render": True, "meta": {"browser": products}},
            {"url": f"{base}/js/page2", "render": True, "meta": {"browser": {"pdf": True}}},
        ],
        "{screenshot: true, wait_for: .product, files: shots}",
    )
    assert stats.errors == {}
    first, second = items["js/"]["meta"], items["js/page2"]["meta"]
    assert set(first) == {"screenshot"}
    assert set(second) == {"screenshot", "pdf"}
    for path in [first["screenshot"], second["screenshot"], second["pdf"]]:
        assert Path(path).parent == tmp_path / "shots"
    assert Path(first["screenshot"]).read_bytes().startswith(b"\x89PNG")
    assert Path(second["pdf"]).read_bytes().startswith(b"%PDF")
    assert first["screenshot"] != second["screenshot"]
    assert not list((tmp_path / "shots").glob(".*"))  # no half-written file left


async def test_robots_txt_and_dedup_apply_to_rendered_requests(
    shop: tuple[BrowserSite, str], tmp_path: Path
) -> None:
    site, base = shop
    project = asks_project(
        tmp_path,
        [
            {"url": f"{base}/private", "render": True},
            {"url": f"{base}/static/", "render": True},
            {"url": f"{base}/static/", "meta": {"render": True}},  # the same page: deduplicated
        ],
    )
    text = project.read_text(encoding="utf-8").replace("robots: ignore", "robots: obey")
    project.write_text(text, encoding="utf-8")
    (tmp_path / "asks.py").write_text(SPIDER.replace("dont_filter=True", ""), encoding="utf-8")
    stats = await crawl(project)
    assert site.served["/private"] == 0
    assert site.served["/static/"] == 1
    assert stats.filtered["robots"] == 1
    assert stats.errors == {}
    assert [item["products"][:1] for item in read_jsonl(tmp_path / "items.jsonl")] == [["Lamp"]]


async def test_a_redirect_is_followed_by_fw_and_its_target_rendered(
    shop: tuple[BrowserSite, str], tmp_path: Path
) -> None:
    site, base = shop
    meta = {"browser": {"wait_for": ".product"}}
    stats, items = await crawl_asks(tmp_path, [{"url": f"{base}/go", "render": True, "meta": meta}])
    assert stats.errors == {}
    assert list(items) == ["js/"]
    assert items["js/"]["products"] == [name for name, _ in PRODUCTS[1]]
    assert (site.served["/go"], site.served["/js/"]) == (1, 1)


async def test_a_script_cannot_take_the_browser_to_a_page_fw_did_not_fetch(
    shop: tuple[BrowserSite, str], tmp_path: Path
) -> None:
    site, base = shop
    # The wait outlasts the script's timer: the tab is asked to leave while fw waits.
    stats, items = await crawl_asks(
        tmp_path, [{"url": f"{base}/away", "render": True}], "{wait: 0.5}"
    )
    assert stats.errors == {}
    assert items["away"]["products"] == ["Away"]
    assert site.served["/static/"] == 0


async def test_no_chromium_stops_the_crawl_saying_what_to_install(
    shop: tuple[BrowserSite, str], tmp_path: Path
) -> None:
    _, base = shop
    project = asks_project(tmp_path, [{"url": f"{base}/js/"}], "{render: ['127.0.0.1']}")
    env = {"PATH": str(tmp_path / "bin"), "PLAYWRIGHT_BROWSERS_PATH": str(tmp_path / "none")}
    done = await run_fw("run", str(project), env=env, timeout=90)
    assert done.returncode == 1, done.stderr
    assert "browser: no Chromium found" in done.stderr
    assert "apt-get install chromium" in done.stderr
    assert shop[0].served["/js/"] == 0  # nothing fetched before the browser was there


async def test_a_bad_executable_path_is_a_project_error(tmp_path: Path) -> None:
    project = asks_project(tmp_path, [], "{executable_path: ./no-such-chrome}")
    done = await run_fw("check", str(project), timeout=60)
    assert done.returncode == 2
    assert f"{project}:7: browser.executable_path: " in done.stderr
    assert "no-such-chrome is not an executable file: install Chromium" in done.stderr


def test_the_install_commands_the_docs_show_name_the_real_extra_and_package() -> None:
    root = Path(__file__).parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "fwcrawl"
    assert any(r.startswith("playwright") for r in project["optional-dependencies"]["browser"])
    assert project["entry-points"]["fw"]["browser"] == "fwcrawl_plugins.browser"
    assert "pip install 'fwcrawl[browser]'" in DOC
    assert "apt-get install chromium" in DOC
    ci = (root / ".ci" / "run").read_text(encoding="utf-8")
    assert "apt-get install -y -q chromium" in ci
    assert "FW_REQUIRE_BROWSER=1" in ci


def environ_of(pid: int) -> dict[str, str]:
    """The environment process ``pid`` was started with."""
    items = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    pairs = (item.decode(errors="replace").partition("=") for item in items if item)
    return {name: value for name, _, value in pairs}


async def test_chromium_gets_none_of_fws_environment_but_what_a_browser_needs(
    serve: Serve, chromium: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # $env values, a proxy URL with its password, API tokens: fw's environment is secrets.
    monkeypatch.setenv("SHOP_API_TOKEN", "t0ken-never-in-chromium")
    monkeypatch.setenv("LC_TOKEN", "a name that only looks like a locale's")
    monkeypatch.setenv("LC_TIME", "C")
    environments: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.path == "/page":
            return web.Response(text='<h1>hi</h1><img src="/x.gif">', content_type="text/html")
        environments.extend(environ_of(pid) for pid in browser_processes())  # it renders
        return web.Response(body=b"GIF89a", content_type="image/gif")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    base = await serve(app)
    stats, items = await crawl_asks(tmp_path, [{"url": f"{base}/page", "render": True}], BROWSER)
    assert stats.errors == {} and items["page"]["status"] == 200
    assert environments, "no Chromium process found under this one"
    assert not [e for e in environments if "SHOP_API_TOKEN" in e or "LC_TOKEN" in e]
    assert {environment.get("LC_TIME") for environment in environments} == {"C"}
    assert all(environment.get("PATH") for environment in environments)


async def test_popups_a_page_opens_are_closed_and_downloads_refused(chromium: str) -> None:
    """window.open five times a page would keep five tabs for as long as the context
    lives; a download would write any size to disk, past max_response_size."""
    browser = Chromium(BrowserOptions(), Setup(user_agent="fw", headers={}, shared=True))
    try:
        page = await browser.page()
        await page.evaluate("for (let i = 0; i < 5; i++) window.open('about:blank')")
        async with asyncio.timeout(10):
            while len(page.context.pages) > 1:  # noqa: ASYNC110 - no event says all closed
                await asyncio.sleep(0.05)
        assert page.context.pages == [page]
        assert browser._browser is not None
        async with page.expect_download(timeout=5_000) as started:
            await page.evaluate(
                "const a = document.createElement('a'); a.href = 'data:,x';"
                "a.download = 'x.txt'; document.body.appendChild(a); a.click()"
            )
        assert await (await started.value).failure() is not None  # cancelled, never on disk
    finally:
        await browser.close()


async def test_a_hung_chromium_is_killed_when_fw_quits_closing_it(chromium: str) -> None:
    """SIGTERM while Chromium hangs: it must not outlive fw, nor keep its children."""
    browser = Chromium(BrowserOptions(), Setup(user_agent="fw", headers={}, shared=True))
    await browser.page()
    assert browser._pid is not None
    os.kill(browser._pid, signal.SIGSTOP)
    closing = asyncio.create_task(browser.close())
    async with asyncio.timeout(10):  # held once it awaits the browser's close, its last step
        while not browser._lock.locked():  # noqa: ASYNC110 - no event says so
            await asyncio.sleep(0.01)
    closing.cancel()  # fw quitting past stop_timeout, as after SIGTERM
    with contextlib.suppress(asyncio.CancelledError):
        await closing
    async with asyncio.timeout(10):
        while browser._pid in browser_processes():  # noqa: ASYNC110 - it dies when it dies
            await asyncio.sleep(0.05)


SHELL = """<html><body><div id="list"></div><script>
fetch("/api").then(r => r.json()).then(names => {
  for (const name of names) {
    const div = document.createElement("div");
    div.className = "product";
    div.innerHTML = "<h2>" + name + "</h2>";
    document.getElementById("list").appendChild(div);
  }
});
</script></body></html>"""


async def test_a_rendered_page_is_re_crawled_by_what_its_scripts_made_not_its_etag(
    serve: Serve, tmp_path: Path, chromium: str
) -> None:
    """A static shell with an ETag whose products come from an API: the next round must
    see the products change though the shell does not (it would answer 304)."""
    names = ["a", "b"]

    async def shell(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"shell-1"':
            return web.Response(status=304, headers={"ETag": '"shell-1"'})
        return web.Response(text=SHELL, content_type="text/html", headers={"ETag": '"shell-1"'})

    async def api(request: web.Request) -> web.Response:
        return web.json_response(names)

    app = web.Application()
    app.router.add_get("/shell", shell)
    app.router.add_get("/api", api)
    base = await serve(app)
    project = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{base}/shell]
        robots: ignore
        frontier: sqlite:///state.db
        incremental: true
        browser: {{render: [127.0.0.1], wait_for: .product}}
        rules: {{items: [{{fields: {{products: {{css: .product h2::text, many: true}}}}}}]}}
        """,
    )
    first = await crawl(project, outputs=(str(tmp_path / "first.jsonl"),))
    assert first.items == 1 and read_jsonl(tmp_path / "first.jsonl") == [{"products": ["a", "b"]}]
    names.append("NEW")
    second = await crawl(project, outputs=(str(tmp_path / "second.jsonl"),))
    assert second.items == 1, second.errors
    assert read_jsonl(tmp_path / "second.jsonl") == [{"products": ["a", "b", "NEW"]}]
