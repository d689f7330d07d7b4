"""fw parse and fw shell: one page, seen the way a spider sees it."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from aiohttp import web

from framework.http import Request
from framework.spider import CallbackOutput
from framework.tools.probe import format_outcome
from tests.conftest import Completed, Serve, fw_command, pages, run_fw, write_project
from tests.distributions import fake_distribution, on_path

SPIDER = """
from framework import Request, Spider, hookimpl

class Shop(Spider):
    name = "shop"

    def parse(self, response):
        yield {"title": response.css("h1::text").get(), "url": response.url}
        yield response.follow("/b", callback=self.detail, priority=3, meta={"from": "a"})

    def detail(self, response):
        raise ValueError("no price on " + response.url)

@hookimpl
def register_spiders(register):
    register(Shop)
"""


#: The X-Team header of each request the site received: the project's headers apply.
SEEN_HEADERS: list[str] = []


@pytest.fixture
async def project(serve: Serve, tmp_path: Path) -> tuple[str, Path]:
    seen = SEEN_HEADERS
    seen.clear()

    async def page(request: web.Request) -> web.Response:
        seen.append(request.headers.get("X-Team", ""))
        if request.path == "/old":
            raise web.HTTPFound("/a")
        if request.path == "/gone":
            raise web.HTTPNotFound(text="<h1>Not here</h1>", content_type="text/html")
        return web.Response(text=f"<h1>Page {request.path}</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    base = await serve(app)
    (tmp_path / "shop.py").write_text(SPIDER, encoding="utf-8")
    path = write_project(
        tmp_path,
        f"""
        spider: shop
        start_urls: [{base}/]
        plugins: [./shop.py]
        headers: {{X-Team: crawlers}}
        """,
    )
    return base, path


async def test_parse_prints_items_and_requests_after_following_redirects(
    project: tuple[str, Path],
) -> None:
    base, path = project
    done = await run_fw("parse", f"{base}/old", "-p", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "# items (1)",
        json.dumps({"title": "Page /a", "url": f"{base}/a"}),
        "# requests (1)",
        f'GET {base}/b callback=detail priority=3 meta={{"from": "a"}}',
    ]
    assert SEEN_HEADERS == ["crawlers", "crawlers"]  # /old, then /a, with the header


async def test_parse_shows_the_requests_it_found_without_the_urls_password(
    project: tuple[str, Path],
) -> None:
    base, path = project
    secret = base.replace("http://", "http://ada:pa55@")
    text = await run_fw("parse", f"{secret}/a", "-p", str(path))
    shown = await run_fw("parse", f"{secret}/a", "-p", str(path), "--json")
    assert text.returncode == shown.returncode == 0, text.stderr + shown.stderr
    assert text.stdout.splitlines()[-1].startswith(f"GET {base.replace('//', '//***@')}/b ")
    assert json.loads(shown.stdout)["requests"][0]["url"] == f"{secret}/b".replace(
        "ada:pa55", "***"
    )


async def test_parse_json_and_a_failing_callback(project: tuple[str, Path]) -> None:
    base, path = project
    done = await run_fw("parse", f"{base}/b", "-p", str(path), "--callback", "detail", "--json")
    assert done.returncode == 1
    shown = json.loads(done.stdout)
    assert shown["items"] == [] and shown["requests"] == []
    assert shown["problems"] == [f"spider shop: detail raised ValueError: no price on {base}/b"]


async def test_parse_keeps_the_requests_a_crawl_would(serve: Serve, tmp_path: Path) -> None:
    base = await serve(pages({"/": "".join(f'<a href="/{n}">{n}</a>' for n in range(5))}))
    path = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{base}/]
        max_requests_per_page: 2
        rules: {{follow: [a], items: [{{fields: {{title: h1::text}}}}]}}
        """,
    )
    text = await run_fw("parse", f"{base}/", "-p", str(path))
    shown = await run_fw("parse", f"{base}/", "-p", str(path), "--json")
    assert text.returncode == shown.returncode == 0, text.stderr + shown.stderr
    assert text.stdout.splitlines()[-4:] == [
        "# requests (2)",
        f"GET {base}/0",
        f"GET {base}/1",
        "# dropped (3): past max_requests_per_page, as a crawl does",
    ]
    assert [r["url"] for r in json.loads(shown.stdout)["requests"]] == [f"{base}/0", f"{base}/1"]
    assert json.loads(shown.stdout)["dropped_requests"] == 3


@pytest.mark.parametrize("callback", ["__init__", "__class__"])
async def test_parse_runs_no_dunder_of_the_spider_as_a_callback(
    project: tuple[str, Path], callback: str
) -> None:
    base, path = project
    done = await run_fw("parse", f"{base}/b", "-p", str(path), "--callback", callback, "--json")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["problems"] == [f"spider shop has no callback {callback!r}"]


async def test_parse_of_an_error_page_fails_as_fw_run_would_without_parsing_it(
    project: tuple[str, Path],
) -> None:
    base, path = project
    done = await run_fw("parse", f"{base}/gone", "-p", str(path))
    assert done.returncode == 1
    assert done.stdout == ""  # not {"title": "Not here"}: fw run counts it http_404
    assert done.stderr.strip() == f"Error: {base}/gone: http_404: HTTP 404"


async def test_parse_needs_a_spider_and_a_live_server(project: tuple[str, Path]) -> None:
    nothing = await run_fw("parse", "http://127.0.0.1:9/")
    assert nothing.returncode == 2 and "--spider NAME" in nothing.stderr
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    dead = await run_fw("parse", f"http://127.0.0.1:{port}/", "-p", str(project[1]))
    assert dead.returncode == 1
    assert dead.stderr.startswith(f"Error: http://127.0.0.1:{port}/: connection")


async def test_shell_runs_code_with_the_response_at_hand(project: tuple[str, Path]) -> None:
    base, path = project
    script = (
        'print(response.status, response.css("h1::text").get())\n'
        f'print(fetch("{base}/c").css("h1::text").get())\n'
    )
    done = await shell(script, f"{base}/a", "-p", str(path))
    assert done.returncode == 0, done.stderr
    assert "200 Page /a" in done.stdout and "Page /c" in done.stdout
    assert f"fw shell: 200 {base}/a" in done.stderr


async def test_fetch_in_the_shell_makes_the_new_page_the_response(
    project: tuple[str, Path],
) -> None:
    base, _ = project
    script = f'fetch("{base}/c")\nprint(response.url, request.url)\n'
    done = await shell(script, f"{base}/a")
    assert done.returncode == 0, done.stderr
    assert f"{base}/c {base}/c" in done.stdout


async def test_an_unknown_spider_that_a_project_here_uses_points_at_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "shop.yaml").write_text("spider: myshop\nplugins: [./shop.py]\n")
    done = await run_fw("parse", "http://127.0.0.1:9/", "--spider", "myshop", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("; shop.yaml defines it: use -p shop.yaml")


async def test_shell_needs_no_spider_and_no_ipython(project: tuple[str, Path]) -> None:
    base, _ = project
    script = (
        'print(response.status, response.css("h1::text").get(), spider)\n'
        'import sys; print("IPython loaded:", "IPython" in sys.modules)\n'
    )
    done = await shell(script, f"{base}/plain")
    assert done.returncode == 0, done.stderr
    shown = [line.removeprefix(">>> ") for line in done.stdout.splitlines()]  # the prompts
    assert shown == ["200 Page /plain None", "IPython loaded: False", ""]
    assert done.stderr.startswith(f"fw shell: 200 {base}/plain (")
    assert "spider" not in done.stderr.splitlines()[1]


PROBESHOP = """
    from framework import Spider, hookimpl

    class ProbeShop(Spider):
        name = "probeshop"

        def parse(self, response):
            yield {"title": response.css("h1::text").get()}
            yield response.follow("/next")

    @hookimpl
    def register_spiders(register):
        register(ProbeShop)
    """


async def test_parse_with_an_installed_spider_needs_no_project(
    project: tuple[str, Path], tmp_path: Path
) -> None:
    base, _ = project
    site = fake_distribution(
        tmp_path / "site", "fw-probeshop", "1.0", "probeshop", "fw_probeshop", PROBESHOP
    )
    done = await run_fw("parse", f"{base}/old", "--spider", "probeshop", env=on_path(site))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "# items (1)",
        json.dumps({"title": "Page /a"}),
        "# requests (1)",
        f"GET {base}/next",
    ]
    assert SEEN_HEADERS == ["", ""]  # fw's defaults: no project, no X-Team header


async def test_a_spider_that_needs_options_without_a_project_names_the_flag() -> None:
    done = await run_fw("parse", "http://127.0.0.1:9/", "--spider", "rules")
    assert done.returncode == 2
    assert done.stderr == (
        "Error: --spider rules: rules.items: required key is missing; "
        "give the options with -p PROJECT.yaml\n"
    )


async def shell(script: str, *args: str) -> Completed:
    process = await asyncio.create_subprocess_exec(
        *fw_command(),
        "shell",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(script.encode()), 30)
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(), err.decode())


def test_a_request_shown_has_no_password_in_its_proxy_nor_where_it_came_from() -> None:
    moved = Request(
        "http://ada:pa55@a.test/b",
        proxy="http://bob:proxypw@proxy.test:3128",
        meta={"redirect_urls": ["http://ada:pa55@a.test/a"]},
    )
    outcome = CallbackOutput(requests=[moved])
    for shown in (format_outcome(outcome, as_json=True), format_outcome(outcome, as_json=False)):
        assert "pa55" not in shown and "proxypw" not in shown and "http://***@a.test/a" in shown
