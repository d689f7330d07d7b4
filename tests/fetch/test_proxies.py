"""Crawling through a real forward proxy on loopback: the environment's, or a request's own."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from framework.errors import FetchError
from framework.fetch.downloader import Downloader, DownloadSettings
from framework.fetch.parsers import Parsers
from framework.frontier import decode_request, encode_request
from framework.http import Request
from framework.http.urls import fingerprint, redact_proxy
from tests.conftest import Proxies, Serve, pages, read_jsonl, run_fw, write_project
from tests.proxies import ForwardProxy, closed_port


async def test_http_proxy_from_the_environment_carries_every_request(
    tmp_path: Path, serve: Serve, proxies: Proxies
) -> None:
    base = await serve(pages({"/": '<a href="/a">a</a>', "/a": "<h1>a</h1>"}))
    proxy = ForwardProxy()
    proxy_url = await proxies(proxy)
    project = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{base}/]
        rules: {{follow: [a], items: [{{fields: {{page: {{value: url}}}}}}]}}
        """,
    )
    done = await run_fw(
        "run",
        str(project),
        "-q",
        "-o",
        str(tmp_path / "items.jsonl"),
        env={"HTTP_PROXY": proxy_url, "NO_PROXY": ""},
    )
    assert done.returncode == 0, done.stderr
    assert len(read_jsonl(tmp_path / "items.jsonl")) == 2
    assert proxy.relayed == {f"{base}/robots.txt": 1, f"{base}/": 1, f"{base}/a": 1}


# -------------------------------------------------------------------------------------------
# A request's own proxy, through the downloader
# -------------------------------------------------------------------------------------------


def recording_site(seen: list[CIMultiDictProxy[str]]) -> web.Application:
    """A site that keeps the headers of every request it gets."""

    async def page(request: web.Request) -> web.Response:
        seen.append(request.headers)
        return web.Response(text="<h1>hi</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    return app


def downloader() -> Downloader:
    return Downloader(DownloadSettings(4, 10.0, 1 << 20, {}, cookies=False), Parsers())


async def test_a_request_names_its_proxy_which_beats_the_environment(
    serve: Serve, proxies: Proxies, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[CIMultiDictProxy[str]] = []
    site = await serve(recording_site(seen))
    named, environment = ForwardProxy(), ForwardProxy()
    monkeypatch.setenv("HTTP_PROXY", await proxies(environment))
    monkeypatch.setenv("NO_PROXY", "")
    proxy_url = await proxies(named)
    async with downloader() as fetcher:
        response = await fetcher.fetch(Request(f"{site}/a", proxy=proxy_url))
        await fetcher.fetch(Request(f"{site}/b"))
    assert response.status == 200
    assert response.request.proxy == proxy_url
    assert named.relayed == {f"{site}/a": 1}
    assert environment.relayed == {f"{site}/b": 1}


async def test_credentials_go_to_the_proxy_and_never_to_the_site(
    serve: Serve, proxies: Proxies
) -> None:
    seen: list[CIMultiDictProxy[str]] = []
    site = await serve(recording_site(seen))
    guarded = ForwardProxy(credentials=("crawler", "s3cret:/@"))
    proxy_url = await proxies(guarded)
    with_secret = proxy_url.replace("http://", "http://crawler:s3cret%3A%2F%40@")
    async with downloader() as fetcher:
        response = await fetcher.fetch(Request(f"{site}/", proxy=with_secret))
    assert response.status == 200
    assert guarded.relayed == {f"{site}/": 1}
    assert guarded.refused == 0
    assert seen and not any("Proxy-Authorization" in h or "Authorization" in h for h in seen)


@pytest.mark.parametrize(
    ("userinfo", "why"),
    [("", "it asks for credentials"), ("crawler:wrong@", "it refused the credentials")],
)
async def test_a_proxy_that_answers_407_fails_the_request_as_proxy(
    serve: Serve, proxies: Proxies, userinfo: str, why: str
) -> None:
    site = await serve(pages({"/": "<h1>hi</h1>"}))
    proxy_url = await proxies(ForwardProxy(credentials=("crawler", "right")))
    proxy = proxy_url.replace("http://", f"http://{userinfo}")
    async with downloader() as fetcher:
        with pytest.raises(FetchError) as failed:
            await fetcher.fetch(Request(f"{site}/", proxy=proxy))
    assert failed.value.kind == "proxy"
    assert failed.value.retryable
    assert str(failed.value) == f"proxy {redact_proxy(proxy)}: HTTP 407: {why}"
    assert "wrong" not in str(failed.value)


@pytest.mark.parametrize(
    ("userinfo", "why"),
    [("", "it asks for credentials"), ("crawler:wrong@", "it refused the credentials")],
)
async def test_a_407_of_the_environments_proxy_fails_the_request_as_proxy(
    serve: Serve, proxies: Proxies, monkeypatch: pytest.MonkeyPatch, userinfo: str, why: str
) -> None:
    # For a plain-http page the proxy answers in the site's place: it was http_407.
    site = await serve(pages({"/": "<h1>hi</h1>"}))
    proxy_url = await proxies(ForwardProxy(credentials=("crawler", "right")))
    proxy = proxy_url.replace("http://", f"http://{userinfo}")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "")
    async with downloader() as fetcher:
        with pytest.raises(FetchError) as failed:
            await fetcher.fetch(Request(f"{site}/"))
    assert failed.value.kind == "proxy"
    assert str(failed.value) == f"proxy {redact_proxy(proxy)}: HTTP 407: {why}"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # not through it: the site's own 407
    async with downloader() as fetcher:
        answer = await fetcher.fetch(Request(f"{site}/"))
    assert answer.status == 200


@pytest.mark.parametrize("userinfo", ["crawler:hunter2@", ""])
async def test_a_proxy_that_is_down_fails_as_proxy_and_names_it_without_its_secret(
    serve: Serve, userinfo: str
) -> None:
    site = await serve(pages({"/": "<h1>hi</h1>"}))
    down = closed_port()
    async with downloader() as fetcher:
        with pytest.raises(FetchError) as failed:
            await fetcher.fetch(Request(f"{site}/", proxy=down.replace("//", "//" + userinfo)))
    assert failed.value.kind == "proxy"
    shown = down.replace("//", "//***@" if userinfo else "//")
    assert str(failed.value).startswith(f"proxy {shown}: cannot reach it: Cannot connect to ")
    assert down.removeprefix("http://").replace(":", "', ") in str(failed.value)  # the address
    assert "hunter2" not in str(failed.value)


@pytest.mark.parametrize(
    "proxy",
    ["socks5://crawler:hunter2@127.0.0.2:1080", "http://crawler:hunter2@", "proxy.local:3128"],
)
async def test_a_proxy_fw_cannot_use_fails_the_request_naming_it(proxy: str) -> None:
    async with downloader() as fetcher:
        with pytest.raises(FetchError) as failed:
            await fetcher.fetch(Request("http://127.0.0.1:9/", proxy=proxy))
    assert failed.value.kind == "proxy"
    assert "not an http:// or https:// URL with a host" in str(failed.value)
    assert "hunter2" not in str(failed.value)
    assert not failed.value.retryable


def test_a_proxy_is_a_field_of_the_request_but_not_of_its_identity() -> None:
    plain = Request("http://a.test/")
    proxied = Request("http://a.test/", proxy="http://u:p@proxy.test:3128")
    assert fingerprint(plain) == fingerprint(proxied)
    assert proxied.replace(url="http://b.test/").proxy == proxied.proxy
    assert Request.from_dict(proxied.to_dict()) == proxied
    assert decode_request(encode_request(proxied)) == proxied
    assert encode_request(plain) == "http://a.test/"  # no proxy: nothing more is stored


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:p@h:1", "http://***@h:1"),
        ("http://h:1", "http://h:1"),
        ("http://u:p/#?x@h:1", "http://***@h:1"),  # a password written unescaped
        ("https://a@b@h/", "https://***@h/"),
    ],
)
def test_redact_masks_everything_before_the_last_at(url: str, shown: str) -> None:
    assert redact_proxy(url) == shown
    assert redact_proxy(url, mask="") == shown.replace("***@", "")
