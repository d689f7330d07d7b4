"""Crawls through a pool of real forward proxies on loopback: rotation, health, secrets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import Proxies, Serve, crawl, read_jsonl, run_fw, write_project
from tests.proxies import ForwardProxy, TestCA, closed_port

SECRET = "hunter2-s3cret"


class Site:
    """A site of ``pages`` linked pages; keeps the headers it got, and how many requests
    it answered at once at most."""

    def __init__(self, pages: int = 6, *, slow: float = 0.0) -> None:
        self.pages, self.slow = pages, slow
        self.headers: list[dict[str, str]] = []
        self.busy = self.most_busy = 0

    def app(self, elsewhere: str = "") -> web.Application:
        """The application; ``/away`` redirects to ``elsewhere``."""

        async def page(request: web.Request) -> web.StreamResponse:
            self.headers.append(dict(request.headers))
            self.busy += 1
            self.most_busy = max(self.most_busy, self.busy)
            try:
                await asyncio.sleep(self.slow)  # the server's own latency, to let requests overlap
                return self._answer(request.path, elsewhere)
            finally:
                self.busy -= 1

        app = web.Application()
        app.router.add_get("/{tail:.*}", page)
        return app

    def _answer(self, path: str, elsewhere: str) -> web.StreamResponse:
        if path == "/away" and elsewhere:
            raise web.HTTPFound(elsewhere)
        if path == "/":
            links = "".join(f'<a href="/p{n}">{n}</a>' for n in range(self.pages))
            return web.Response(text=links, content_type="text/html")
        if path.startswith("/p") or path == "/b":
            return web.Response(text=f"<h1>{path}</h1>", content_type="text/html")
        raise web.HTTPNotFound()

    def saw_credentials(self) -> bool:
        return any(
            name.lower() in ("proxy-authorization", "authorization")
            for headers in self.headers
            for name in headers
        )


def project(tmp_path: Path, start: str, proxies: str, *extra: str) -> Path:
    return write_project(
        tmp_path,
        "\n".join(
            [
                "spider: rules",
                f"start_urls: [{start}/]",
                "rules: {follow: [a], items: [{fields: {page: {value: url}}}]}",
                proxies,
                *extra,
            ]
        ),
    )


def pages_of(base: str, count: int) -> set[str]:
    return {f"{base}/"} | {f"{base}/p{n}" for n in range(count)}


def exported(stats_items: list[dict[str, Any]]) -> set[str]:
    return {item["page"] for item in stats_items}


async def test_requests_take_the_pool_in_turn_and_the_environment_proxy_none(
    tmp_path: Path, serve: Serve, proxies: Proxies, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = await serve(Site(6).app())
    first, second, environment = ForwardProxy(), ForwardProxy(), ForwardProxy()
    urls = [await proxies(first), await proxies(second)]
    monkeypatch.setenv("HTTP_PROXY", await proxies(environment))
    monkeypatch.setenv("NO_PROXY", "")
    path = project(tmp_path, base, f"proxies: {{urls: [{', '.join(urls)}]}}")
    stats = await crawl(path, outputs=(str(tmp_path / "items.jsonl"),))
    assert exported(read_jsonl(tmp_path / "items.jsonl")) == pages_of(base, 6)
    assert environment.relayed.total() == 0
    assert first.relayed.total() + second.relayed.total() == 8  # robots.txt, /, 6 pages
    assert abs(first.relayed.total() - second.relayed.total()) <= 1
    counts = stats.to_dict()["plugins"]["proxies"]
    assert counts == {
        urls[0]: {
            "requests": first.relayed.total(),
            "answered": first.relayed.total(),
            "failures": {},
            "rests": 0,
            "state": "up",
        },
        urls[1]: {
            "requests": second.relayed.total(),
            "answered": second.relayed.total(),
            "failures": {},
            "rests": 0,
            "state": "up",
        },
    }
    line = f"proxies: {urls[0]} {first.relayed.total()} requests; {urls[1]} "
    assert any(line in summary for summary in stats.summary())


async def test_a_proxy_that_is_down_rests_and_the_others_carry_every_request(
    tmp_path: Path, serve: Serve, proxies: Proxies
) -> None:
    base = await serve(Site(6).app())
    good = ForwardProxy()
    down, up = closed_port(), await proxies(good)
    path = project(tmp_path, base, f"proxies: {{urls: [{down}, {up}]}}")
    stats = await crawl(path, outputs=(str(tmp_path / "items.jsonl"),))
    assert exported(read_jsonl(tmp_path / "items.jsonl")) == pages_of(base, 6)
    assert not stats.errors  # sent through the other proxy at once: no retry, no failure
    assert good.relayed.total() == 8
    resting = stats.to_dict()["plugins"]["proxies"][down]
    assert resting["failures"] == {"proxy": resting["requests"]}
    assert resting["rests"] == 1 and resting["state"] == "resting"
    assert f"{down} 1 request (1 failed: proxy 1), rested 1 time, resting" in stats.summary()[-1]


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("banned", "http_403"), ("garbage", "bad_response")],  # garbage: it had no strike
)
async def test_a_proxy_the_site_bans_or_that_answers_garbage_rests_after_fail_after_in_a_row(
    tmp_path: Path, serve: Serve, proxies: Proxies, fault: str, kind: str
) -> None:
    base = await serve(Site(8).app())
    broken, good = ForwardProxy(), ForwardProxy()
    if fault == "banned":
        broken.answer = 403
    else:
        broken.garbage = b"SSH-2.0-OpenSSH_9.2\r\n\r\n"
    urls = [await proxies(broken), await proxies(good)]
    path = project(
        tmp_path,
        base,
        f"proxies: {{urls: [{', '.join(urls)}], fail_after: 2}}",
        "concurrency: {total: 1, per_domain: 1}",
    )
    stats = await crawl(path, outputs=(str(tmp_path / "items.jsonl"),))
    assert exported(read_jsonl(tmp_path / "items.jsonl")) == pages_of(base, 8)
    # Each sent again through the other proxy at once: no retry, no failure.
    assert not stats.errors and stats.statuses == {200: 9}  # / and 8 pages
    assert broken.answered == 2  # then it rested for the rest of the crawl
    assert stats.to_dict()["plugins"]["proxies"][urls[0]]["failures"] == {kind: 2}


async def test_a_site_whose_answers_fw_cannot_read_rests_no_proxy(
    tmp_path: Path, serve: Serve, proxies: Proxies
) -> None:
    # Every proxy brings the same undecodable body: the site's fault, not theirs.
    async def undecodable(request: web.Request) -> web.Response:
        if request.path == "/":
            links = "".join(f'<a href="/p{n}">{n}</a>' for n in range(8))
            return web.Response(text=links, content_type="text/html")
        return web.Response(
            body=b"not gzip at all", headers={"Content-Encoding": "gzip"}, content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", undecodable)
    base = await serve(app)
    one, two = ForwardProxy(), ForwardProxy()
    urls = [await proxies(one), await proxies(two)]
    path = project(tmp_path, base, f"proxies: {{urls: [{', '.join(urls)}], fail_after: 2}}")
    stats = await crawl(path, "retries=0")
    assert stats.aborted is None and stats.errors == {"bad_response": 8}
    report = stats.to_dict()["plugins"]["proxies"]
    assert [report[url]["state"] for url in urls] == ["up", "up"]
    assert [report[url]["rests"] for url in urls] == [0, 0]
    # Each page (and robots.txt) went through both: every answer counted, none held against.
    assert sum(report[url]["failures"]["bad_response"] for url in urls) == 18
    for url in urls:
        counts = report[url]
        assert counts["requests"] == counts["answered"] + sum(counts["failures"].values())


async def test_an_unreadable_answer_is_not_held_against_its_proxy_when_the_other_fails_too(
    tmp_path: Path, serve: Serve, proxies: Proxies
) -> None:
    # Only a readable answer through another proxy says whose fault it was: a proxy that
    # cannot be reached says nothing, and both were taken for dead.
    base = await serve(Site(4).app())
    broken = ForwardProxy()
    broken.garbage = b"SSH-2.0-OpenSSH_9.2\r\n\r\n"
    urls = [await proxies(broken), closed_port()]
    path = project(tmp_path, base, f"proxies: {{urls: [{', '.join(urls)}], fail_after: 1}}")
    stats = await crawl(path, "retries=0", "robots=ignore")
    assert stats.aborted is None  # not "every proxy failed"
    report = stats.to_dict()["plugins"]["proxies"]
    assert report[urls[0]]["rests"] == 0 and report[urls[0]]["failures"] == {"bad_response": 1}


async def test_politeness_is_per_site_however_many_proxies_carry_it(
    tmp_path: Path, serve: Serve, proxies: Proxies
) -> None:
    site = Site(12, slow=0.02)
    base = await serve(site.app())
    urls = [await proxies(ForwardProxy()) for _ in range(3)]
    path = project(
        tmp_path,
        base,
        f"proxies: {{urls: [{', '.join(urls)}], rotate: random}}",
        "concurrency: {total: 8, per_domain: 1}",
    )
    stats = await crawl(path)
    assert stats.pages == 13
    assert site.most_busy == 1


async def test_sticky_per_host_keeps_each_site_on_one_proxy(
    tmp_path: Path, serve: Serve, proxies: Proxies
) -> None:
    one, other = Site(4), Site(4)
    first = await serve(one.app())
    second = (await serve(other.app())).replace("127.0.0.1", "localhost")
    pool = [ForwardProxy(), ForwardProxy()]
    urls = [await proxies(proxy) for proxy in pool]
    path = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{first}/, {second}/]
        rules: {{follow: [a], items: [{{fields: {{page: {{value: url}}}}}}]}}
        proxies: {{urls: [{", ".join(urls)}], rotate: sticky_per_host}}
        """,
    )
    await crawl(path)
    carried = [{url.split("/")[2] for url in proxy.relayed} for proxy in pool]
    assert sorted(len(hosts) for hosts in carried) == [1, 1]
    assert carried[0] != carried[1]
    assert sum(proxy.relayed.total() for proxy in pool) == 12


# -------------------------------------------------------------------------------------------
# As a user runs it: fw run, secrets from $env, https, exit codes
# -------------------------------------------------------------------------------------------


async def test_every_proxy_dead_stops_the_crawl_with_exit_1_naming_each(
    tmp_path: Path, serve: Serve, proxies: Proxies
) -> None:
    base = await serve(Site(6).app())
    wrong = ForwardProxy(credentials=("crawler", "right"))
    refusing = (await proxies(wrong)).replace("http://", f"http://crawler:{SECRET}@")
    down = closed_port()
    path = project(
        tmp_path,
        base,
        "proxies: {urls: [{$env: PROXY_A}, {$env: PROXY_B}], dead_after: 2, "
        "backoff: {base: 0.05, max: 0.1}}",
    )
    done = await run_fw(
        "run",
        str(path),
        "-o",
        str(tmp_path / "items.jsonl"),
        "--stats",
        str(tmp_path / "stats.json"),
        env={"PROXY_A": refusing, "PROXY_B": down},
    )
    assert done.returncode == 1, done.stderr
    masked = refusing.replace(f"crawler:{SECRET}", "***")
    assert (
        f"Error: proxies: every proxy failed 2 times in a row, resting between: "
        f"{masked} (HTTP 407: it refused the credentials), {down} (cannot reach it: "
    ) in done.stderr
    assert f"proxy {masked} is dead: it failed 2 times in a row" in done.stderr
    stats = json.loads((tmp_path / "stats.json").read_text(encoding="utf-8"))
    assert stats["reason"] == "aborted"
    assert {p["state"] for p in stats["plugins"]["proxies"].values()} == {"dead"}
    assert wrong.refused >= 2 and not wrong.relayed
    assert SECRET not in done.stdout + done.stderr + json.dumps(stats)


async def test_credentials_reach_the_proxy_alone_over_https_and_across_redirects(
    tmp_path: Path, serve: Serve, proxies: Proxies
) -> None:
    ca = TestCA()
    plain, secure = Site(2), Site(2)
    other = (await serve(plain.app())).replace("127.0.0.1", "localhost")
    base = await serve(secure.app(elsewhere=f"{other}/b"), tls=ca.server())
    guarded = ForwardProxy(credentials=("crawler", SECRET))
    proxy_url = await proxies(guarded)
    path = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{base}/, {base}/away, {base}/missing]
        allowed_domains: [127.0.0.1, localhost]
        rules: {{follow: [a], items: [{{fields: {{page: {{value: url}}}}}}]}}
        proxies:
          urls: [{{url: '{proxy_url}', username: crawler, password: {{$env: PROXY_PASSWORD}}}}]
        """,
    )
    done = await run_fw(
        "run",
        str(path),
        "--log-level",
        "debug",
        "-o",
        str(tmp_path / "items.jsonl"),
        "--stats",
        str(tmp_path / "stats.json"),
        env={"PROXY_PASSWORD": SECRET, "SSL_CERT_FILE": str(ca.pem(tmp_path))},
    )
    assert done.returncode == 0, done.stderr
    items = exported(read_jsonl(tmp_path / "items.jsonl"))
    assert items == {f"{base}/", f"{base}/p0", f"{base}/p1", f"{other}/b"}
    assert set(guarded.tunnelled) == {base.removeprefix("https://")}  # a tunnel a connection
    assert guarded.relayed == {f"{other}/robots.txt": 1, f"{other}/b": 1}
    assert guarded.refused == 0
    assert not secure.saw_credentials() and not plain.saw_credentials()
    written = [done.stdout, done.stderr, *(p.read_text() for p in tmp_path.glob("*.json*"))]
    assert (tmp_path / "project.failures.jsonl").exists()  # /missing: a 404
    assert not any(SECRET in text for text in written)


SPIDER = """
from framework import Request, Spider, hookimpl


class Pinned(Spider):
    name = "pinned"

    def start_requests(self):
        base, proxy = self.start_urls
        # The pool's proxy by its address: the pool lends it the credentials.
        yield Request(base + "/", proxy=proxy)
        # With the credentials in the request: the failures file must not keep them.
        yield Request(base + "/missing", proxy=proxy.replace("//", "//crawler:%s@"))

    def parse(self, response):
        yield {"page": response.url, "proxy": response.request.proxy}


@hookimpl
def register_spiders(register):
    register(Pinned)
"""


async def test_a_request_pins_a_proxy_the_pool_lends_credentials_to_even_when_retried(
    tmp_path: Path, serve: Serve, proxies: Proxies
) -> None:
    base = await serve(Site(2).app())
    guarded = ForwardProxy(credentials=("crawler", SECRET))
    proxy_url = await proxies(guarded)
    (tmp_path / "pinned.py").write_text(SPIDER % SECRET, encoding="utf-8")
    path = write_project(
        tmp_path,
        f"""
        spider: pinned
        plugins: [./pinned.py]
        start_urls: [{base}, {proxy_url}]
        robots: ignore
        retries: 0
        proxies: {{urls: ['{proxy_url.replace("//", f"//crawler:{SECRET}@")}']}}
        """,
    )
    output = str(tmp_path / "items.jsonl")
    done = await run_fw("run", str(path), "-o", output)
    assert done.returncode == 0, done.stderr
    assert read_jsonl(tmp_path / "items.jsonl") == [{"page": f"{base}/", "proxy": proxy_url}]
    listed = (tmp_path / "project.failures.jsonl").read_text(encoding="utf-8")
    assert json.loads(listed)["request"]["proxy"] == proxy_url
    assert SECRET not in listed + done.stderr
    again = await run_fw("run", str(path), "-o", output, "--retry-failed")
    assert again.returncode == 1, again.stderr  # still missing: the retry fetched nothing
    assert guarded.relayed == {f"{base}/": 1, f"{base}/missing": 2}  # credentials lent again
    assert guarded.refused == 0
