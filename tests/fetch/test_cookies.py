"""Cookies stay with the sites that set them: a cookie for a public suffix (``Domain=com``,
``Domain=co.uk``) is refused. The hosts are names, so a real forward proxy on loopback
plays every one of them: fw sends it each request by its absolute URL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from tests.conftest import Serve, run_fw, write_project


class Internet:
    """A forward proxy that answers for any host name from ``sites`` (host -> path -> page)
    and keeps the ``Cookie`` header each host received."""

    def __init__(self, sites: dict[str, dict[str, Callable[[], web.Response]]]) -> None:
        self.sites = sites
        self.cookies: dict[str, list[str | None]] = {}

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            host = request.url.host or ""
            self.cookies.setdefault(host, []).append(request.headers.get("Cookie"))
            page = self.sites.get(host, {}).get(request.path)
            if page is None:
                raise web.HTTPNotFound()
            return page()

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


def page(links: list[str], cookies: tuple[str, ...] = ()) -> Callable[[], web.Response]:
    def answer() -> web.Response:
        html = "<title>t</title>" + "".join(f'<a href="{link}">x</a>' for link in links)
        response = web.Response(text=html, content_type="text/html")
        for cookie in cookies:
            response.headers.add("Set-Cookie", cookie)
        return response

    return answer


async def test_a_cookie_for_a_public_suffix_is_refused(tmp_path: Path, serve: Serve) -> None:
    internet = Internet(
        {
            "shop.example.com": {
                "/": page(
                    ["http://shop.example.co.uk/", "http://www.example.com/"],
                    ("super=1; Domain=com; Path=/", "own=1; Domain=example.com; Path=/"),
                )
            },
            "shop.example.co.uk": {
                "/": page(
                    ["http://other.com/", "http://other.co.uk/"],
                    # As aiohttp reads them: quotes stripped, an attribute with no ; before it.
                    (
                        "uk=1; Domain=.co.uk",
                        'quoted=1; Domain="co.uk"',
                        "bare=1; Path=/ Domain=co.uk",
                    ),
                )
            },
            "www.example.com": {"/": page([])},
            "other.com": {"/": page([])},
            "other.co.uk": {"/": page([])},
        }
    )
    proxy = await serve(internet.app(), "127.0.0.2")
    project = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: ["http://shop.example.com/"]
        allowed_domains: []
        robots: ignore
        rules: {follow: [a], items: [{fields: {title: title}}]}
        """,
    )
    done = await run_fw("run", str(project), "-q", env={"HTTP_PROXY": proxy, "NO_PROXY": ""})
    assert done.returncode == 0, done.stderr
    assert internet.cookies["www.example.com"] == ["own=1"]  # its own domain's cookie: kept
    assert internet.cookies["other.com"] == [None]
    assert internet.cookies["other.co.uk"] == [None]


async def test_a_host_that_is_a_public_suffix_keeps_its_cookie_for_itself(
    tmp_path: Path, serve: Serve
) -> None:
    internet = Internet(
        {
            "intranet": {
                "/": page(
                    ["http://intranet/next", "http://wiki.intranet/"], ("s=1; Domain=intranet",)
                ),
                "/next": page([]),
            },
            "wiki.intranet": {"/": page([])},
        }
    )
    proxy = await serve(internet.app(), "127.0.0.2")
    project = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: ["http://intranet/"]
        allowed_domains: []
        robots: ignore
        rules: {follow: [a], items: [{fields: {title: title}}]}
        """,
    )
    done = await run_fw("run", str(project), "-q", env={"HTTP_PROXY": proxy, "NO_PROXY": ""})
    assert done.returncode == 0, done.stderr
    assert internet.cookies["intranet"] == [None, "s=1"]  # host-only, as RFC 6265 says
    assert internet.cookies["wiki.intranet"] == [None]
