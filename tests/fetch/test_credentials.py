"""Credentials go only where they were meant to: two real hosts on loopback (127.0.0.1
and 127.0.0.2), one of them over https with a test CA, each recording the headers it got.

The model is curl's and requests' rule after their CVEs: a redirect that changes the
scheme, host or port drops ``Authorization``, ``Cookie``, ``Proxy-Authorization`` and any
header whose value came from ``$env``; robots.txt is never fetched off its site.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from framework import Request
from framework.fetch.credentials import HostHeaders
from tests.conftest import Serve, crawl, read_jsonl, run_fw, write_project

TOKEN = "Bearer t0ken-for-the-api"


@dataclass
class Host:
    """A loopback site that answers from ``routes`` and keeps what each request carried."""

    routes: dict[str, Callable[[web.Request], web.StreamResponse]]
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.seen.append((request.path, dict(request.headers)))
            route = self.routes.get(request.path)
            if route is None:
                raise web.HTTPNotFound()
            return route(request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app

    def got(self, path: str, header: str) -> list[str | None]:
        """What ``header`` each request for ``path`` carried."""
        return [headers.get(header) for seen, headers in self.seen if seen == path]


def html(text: str) -> Callable[[web.Request], web.StreamResponse]:
    return lambda _: web.Response(text=text, content_type="text/html")


def redirect(location: Callable[[], str], status: int = 302) -> Callable[..., web.StreamResponse]:
    return lambda _: web.Response(status=status, headers={"Location": location()})


Start = Callable[[Host, str], Awaitable[str]]


@pytest.fixture
async def start(serve: Serve) -> Start:
    async def start(host: Host, address: str = "127.0.0.1") -> str:
        host.url = await serve(host.app(), address)
        return host.url

    return start


def project(directory: Path, start: str, extra: str = "") -> Path:
    """A rules crawl from ``start`` that follows every link, one item per page; ``extra``
    are more top-level lines."""
    lines = [
        "spider: rules",
        f'start_urls: ["{start}"]',
        "rules:",
        "  items: [{fields: {title: title}}]",
        "  follow: [a]",
        extra,
    ]
    return write_project(directory, "\n".join(lines) + "\n")


# -------------------------------------------------------------------------------------------
# robots.txt
# -------------------------------------------------------------------------------------------


async def test_robots_txt_is_not_fetched_off_its_site_nor_given_the_token(
    start: Start, tmp_path: Path
) -> None:
    other = Host({"/robots.txt": html("User-agent: *\nDisallow: /")})
    await start(other, "127.0.0.2")
    site = Host(
        {
            "/robots.txt": redirect(lambda: other.url + "/robots.txt"),
            "/": html("<title>home</title>"),
        }
    )
    await start(site)
    stats = await crawl(project(tmp_path, site.url + "/", f'headers: {{Authorization: "{TOKEN}"}}'))
    assert other.seen == []  # neither followed nor credentialed
    assert stats.pages == 1  # read as no robots.txt: the crawl goes on


async def test_robots_txt_moved_on_its_own_site_is_followed_and_obeyed(
    start: Start, tmp_path: Path
) -> None:
    site = Host(
        {
            "/robots.txt": redirect(lambda: site.url + "/moved/robots.txt", 301),
            "/moved/robots.txt": lambda _: web.Response(text="User-agent: *\nDisallow: /x"),
            "/": html('<title>home</title><a href="/x">x</a>'),
            "/x": html("<title>x</title>"),
        }
    )
    await start(site)
    stats = await crawl(project(tmp_path, site.url + "/"))
    assert site.got("/x", "User-Agent") == []
    assert stats.filtered["robots"] == 1


# -------------------------------------------------------------------------------------------
# Project headers
# -------------------------------------------------------------------------------------------


async def test_a_redirect_to_another_host_drops_the_projects_credentials(
    start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = Host({"/landing": html("<title>landing</title>"), "/linked": html("<title>l</title>")})
    await start(other, "127.0.0.2")
    site = Host(
        {
            "/": html(f'<title>home</title><a href="/go"></a><a href="{other.url}/linked"></a>'),
            "/go": redirect(lambda: other.url + "/landing"),
        }
    )
    await start(site)
    hosts = f"{site.url.split('//')[1]}, {other.url.split('//')[1]}"
    extra = f'headers: {{Authorization: "{TOKEN}", X-Trace: t-1}}\nallowed_domains: [{hosts}]'
    with caplog.at_level(logging.WARNING, logger="fw"):
        await crawl(project(tmp_path, site.url + "/", extra))
    assert site.got("/", "Authorization") == [TOKEN]
    assert site.got("/go", "Authorization") == [TOKEN]
    assert other.got("/landing", "Authorization") == [None]  # the redirect crossed hosts
    assert other.got("/landing", "X-Trace") == ["t-1"]  # not a credential: it still goes
    assert other.got("/linked", "Authorization") == [TOKEN]  # an allowed host, linked to
    assert "headers: Authorization will be sent to 2 hosts and their subdomains" in caplog.text


async def test_a_header_from_env_counts_as_a_credential(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FW_KEY", "k-123")
    other = Host({"/landing": html("<title>landing</title>")})
    await start(other, "127.0.0.2")
    site = Host({"/": redirect(lambda: other.url + "/landing")})
    await start(site)
    extra = (
        "headers: {X-Api-Key: {$env: FW_KEY}}\n"
        f"allowed_domains: [{site.url.split('//')[1]}, {other.url.split('//')[1]}]"
    )
    await crawl(project(tmp_path, site.url + "/", extra))
    assert site.got("/", "X-Api-Key") == ["k-123"]
    assert other.got("/landing", "X-Api-Key") == [None]


async def test_domain_headers_go_only_to_matching_hosts(start: Start, tmp_path: Path) -> None:
    api = Host({"/data": html("<title>data</title>")})
    await start(api, "127.0.0.2")
    site = Host({"/": html(f'<title>home</title><a href="{api.url}/data"></a>')})
    await start(site)
    extra = (
        f"allowed_domains: [{site.url.split('//')[1]}, {api.url.split('//')[1]}]\n"
        f'domains: {{"127.0.0.2": {{headers: {{Authorization: "{TOKEN}"}}}}}}'
    )
    await crawl(project(tmp_path, site.url + "/", extra))
    assert site.got("/", "Authorization") == [None]
    assert api.got("/data", "Authorization") == [TOKEN]


# -------------------------------------------------------------------------------------------
# A spider's own headers and bodies
# -------------------------------------------------------------------------------------------

OWN = """
from framework import Request, Spider, hookimpl


class Own(Spider):
    name = "own"
    method, body = "GET", None

    def start_requests(self):
        for url in self.start_urls:
            yield Request(
                url,
                method=self.method,
                body=self.body,
                headers={"Authorization": "TOKEN", "Cookie": "session=abc"},
                errback="failed",
            )

    def parse(self, response):
        yield {"url": response.url}

    def failed(self, request, error):
        yield {"failed": request.url, "kind": error.kind}


class Poster(Own):
    name = "poster"
    method, body = "POST", b"password=hunter2"


@hookimpl
def register_spiders(register):
    register(Own)
    register(Poster)
"""


async def own_crawl(tmp_path: Path, spider: str, start: str, allowed: str) -> list[dict[str, str]]:
    (tmp_path / "own.py").write_text(OWN.replace("TOKEN", TOKEN))
    path = write_project(
        tmp_path,
        f"spider: {spider}\nplugins: [own.py]\nstart_urls: [{start!r}]\n"
        f"allowed_domains: [{allowed}]\n",
    )
    out = tmp_path / "out.jsonl"
    done = await run_fw("run", str(path), "-o", str(out))
    assert done.returncode == 0, done.stderr
    return read_jsonl(out)


async def test_a_spiders_own_credentials_stop_at_a_redirect_to_another_host(
    start: Start, tmp_path: Path
) -> None:
    other = Host({"/landing": html("<title>landing</title>")})
    await start(other, "127.0.0.2")
    site = Host({"/go": redirect(lambda: other.url + "/landing")})
    await start(site)
    allowed = f"{site.url.split('//')[1]}, {other.url.split('//')[1]}"
    items = await own_crawl(tmp_path, "own", site.url + "/go", allowed)
    assert items == [{"url": other.url + "/landing"}]
    assert site.got("/go", "Authorization") == [TOKEN]
    assert other.got("/landing", "Authorization") == [None]
    assert other.got("/landing", "Cookie") == [None]


async def test_a_post_body_is_not_resent_to_another_host(start: Start, tmp_path: Path) -> None:
    other = Host({"/login": html("<title>caught</title>")})
    await start(other, "127.0.0.2")
    site = Host({"/login": redirect(lambda: other.url + "/login", 307)})
    await start(site)
    allowed = f"{site.url.split('//')[1]}, {other.url.split('//')[1]}"
    items = await own_crawl(tmp_path, "poster", site.url + "/login", allowed)
    assert items == [{"failed": site.url + "/login", "kind": "bad_redirect"}]
    assert other.seen == []


# -------------------------------------------------------------------------------------------
# https, with a test CA
# -------------------------------------------------------------------------------------------


@pytest.fixture
async def https(tmp_path: Path) -> AsyncIterator[Callable[[Host], Awaitable[tuple[str, Path]]]]:
    """Serve a host over https on 127.0.0.1 with a certificate from a test CA; return its
    URL and the CA bundle a client must trust."""
    ca, runners = trustme.CA(), []
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))

    async def start(host: Host) -> tuple[str, Path]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        runner = web.AppRunner(host.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        host.url = f"https://127.0.0.1:{port}"
        return host.url, bundle

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_an_https_page_redirecting_to_plain_http_elsewhere_loses_its_credentials(
    start: Start, https: Callable[[Host], Awaitable[tuple[str, Path]]], tmp_path: Path
) -> None:
    plain = Host({"/landing": html("<title>landing</title>")})
    await start(plain, "127.0.0.2")
    secure = Host({"/": redirect(lambda: plain.url + "/landing")})
    url, bundle = await https(secure)
    allowed = f"{url.split('//')[1]}, {plain.url.split('//')[1]}"
    path = project(tmp_path, url + "/", f'headers: {{Cookie: "s=1"}}\nallowed_domains: [{allowed}]')
    out = tmp_path / "out.jsonl"
    done = await run_fw("run", str(path), "-o", str(out), env={"SSL_CERT_FILE": str(bundle)})
    assert done.returncode == 0, done.stderr
    assert secure.got("/", "Cookie") == ["s=1"]
    assert plain.got("/landing", "Cookie") == [None]
    assert [item["title"] for item in read_jsonl(out)] == ["landing"]


async def test_robots_txt_of_a_site_an_https_page_downgraded_to_gets_no_credentials(
    start: Start, https: Callable[[Host], Awaitable[tuple[str, Path]]], tmp_path: Path
) -> None:
    # The redirect's target goes without the host's Authorization (it crossed to http);
    # so must the robots.txt read on its behalf, which went over http with it.
    plain = Host({"/landing": html("<title>landing</title>"), "/robots.txt": html("")})
    await start(plain)
    secure = Host({"/": redirect(lambda: plain.url + "/landing")})
    url, bundle = await https(secure)
    allowed = f"{url.split('//')[1]}, {plain.url.split('//')[1]}"
    extra = f'domains: {{"127.0.0.1": {{headers: {{Authorization: "{TOKEN}"}}}}}}'
    path = project(tmp_path, url + "/", f"{extra}\nallowed_domains: [{allowed}]")
    done = await run_fw("run", str(path), env={"SSL_CERT_FILE": str(bundle)})
    assert done.returncode == 0, done.stderr
    assert secure.got("/", "Authorization") == [TOKEN]
    assert plain.got("/landing", "Authorization") == [None]
    assert plain.got("/robots.txt", "Authorization") == [None]


@pytest.mark.parametrize("scoped", [False, True])
async def test_a_link_from_an_https_site_to_plain_http_on_its_host_gets_no_credentials(
    start: Start,
    https: Callable[[Host], Awaitable[tuple[str, Path]]],
    tmp_path: Path,
    scoped: bool,
) -> None:
    # Not a redirect: a link (or a sitemap entry) written with http:// on the host the
    # crawl reaches over https. The credentials would cross the network in clear.
    plain = Host({"/plain": html("<title>plain</title>"), "/robots.txt": html("")})
    await start(plain)  # the same host, 127.0.0.1, another port
    secure = Host({"/": lambda _: web.Response(text="", content_type="text/html")})
    url, bundle = await https(secure)
    secure.routes["/"] = html(f'<title>secure</title><a href="{plain.url}/plain">x</a>')
    allowed = f"{url.split('//')[1]}, {plain.url.split('//')[1]}"
    given = f'{{Authorization: "{TOKEN}"}}'
    extra = f'domains: {{"127.0.0.1": {{headers: {given}}}}}' if scoped else f"headers: {given}"
    path = project(tmp_path, url + "/", f"{extra}\nallowed_domains: [{allowed}]")
    out = tmp_path / "out.jsonl"
    done = await run_fw("run", str(path), "-o", str(out), env={"SSL_CERT_FILE": str(bundle)})
    assert done.returncode == 0, done.stderr
    assert secure.got("/", "Authorization") == [TOKEN]
    assert plain.got("/plain", "Authorization") == [None]
    assert plain.got("/robots.txt", "Authorization") == [None]
    assert sorted(item["title"] for item in read_jsonl(out)) == ["plain", "secure"]
    warned = [line for line in done.stderr.splitlines() if "never go over plain http" in line]
    assert len(warned) == 1 and f"{plain.url}/" in warned[0], done.stderr


@pytest.mark.parametrize(
    "host",
    [
        "localhost.",
        "LOCALHOST.",
        "localhost..",
        "localhost\u3002",
        "\uff2c\uff2f\uff23\uff21\uff2c\uff28\uff2f\uff33\uff34",
    ],
)
def test_a_host_written_another_way_is_the_host_the_crawl_reaches_over_https(
    host: str,
) -> None:
    headers = HostHeaders({"Authorization": TOKEN}, {}, (), ["https://localhost:8443/"])
    assert headers.for_request(Request("https://localhost:8443/a"))["Authorization"] == TOKEN
    assert "Authorization" not in headers.for_request(Request(f"http://{host}:8080/b"))


async def test_a_url_with_credentials_and_an_authorization_header_name_the_clash(
    start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = Host({"/": html("<title>home</title>")})
    url = (await start(site)).replace("http://", "http://ada:pa55@") + "/"
    extra = f'headers: {{Authorization: "{TOKEN}"}}\nrobots: ignore'
    stats = await crawl(project(tmp_path, url, extra))
    assert stats.errors == {"invalid_url": 1} and site.seen == []
    (said,) = [r.getMessage() for r in caplog.records if "invalid_url" in r.getMessage()]
    assert "user:password@ and an Authorization header (headers:, domains:) both" in said
