"""Spider or plugin code calling ``sys.exit()``, raising ``GeneratorExit`` or a
``CancelledError`` nobody asked for: that code's failure, counted and named like any
exception, never a page dropped without a word or a crawl stopped that reports success."""

from __future__ import annotations

import asyncio
import signal
import textwrap
from pathlib import Path

import pytest

from framework.errors import reportable
from tests.conftest import Serve, crawl, pages, read_jsonl, run_fw, write_project

SITE = {
    "/": '<h1>home</h1><a href="/a">a</a><a href="/b">b</a><a href="/c">c</a>',
    "/a": "<h1>a</h1>",
    "/b": "<h1>b</h1>",
    "/c": "<h1>c</h1>",
}

PLUGIN = """
import asyncio, os, sys
from framework import Middleware, Spider, hookimpl

RAISED = {"cancel": asyncio.CancelledError, "exit": lambda: SystemExit(0),
          "generator": GeneratorExit, "interrupt": KeyboardInterrupt}[os.environ["FW_TEST_RAISE"]]
WHERE = os.environ["FW_TEST_WHERE"]


def boom(where):
    if where == WHERE:
        raise RAISED()


class Stray(Spider):
    name = "stray"

    def parse(self, response):
        yield {"url": response.url}
        if response.url.endswith("/b"):
            boom("callback")
        yield from response.follow_all(css="a")


class Trap(Middleware):
    name = "trap"

    async def __call__(self, request, handler):
        if request.url.endswith("/c"):
            boom("middleware")
        return await handler(request)


@hookimpl
def register_spiders(register):
    register(Stray)


@hookimpl
def register_middlewares(register):
    register(Trap)


@hookimpl
def item_scraped(item, response, spider):
    if response.url.endswith("/a"):
        boom("item_scraped")
"""

RAISES = ["cancel", "exit", "generator"]


async def site_and_project(
    tmp_path: Path, serve: Serve, plugin: str, settings: str
) -> tuple[str, Path]:
    """Serve SITE; write ``plugin`` as plugin.py and a project using it; return both."""
    base = await serve(pages(SITE))
    (tmp_path / "plugin.py").write_text(plugin, encoding="utf-8")
    head = f"start_urls: [{base}/]\nplugins: [./plugin.py]\nrobots: ignore\n"
    return base, write_project(tmp_path, head + textwrap.dedent(settings))


async def stray_crawl(
    tmp_path: Path, serve: Serve, monkeypatch: pytest.MonkeyPatch, raised: str, where: str
) -> tuple[dict[str, int], set[str]]:
    monkeypatch.setenv("FW_TEST_RAISE", raised)
    monkeypatch.setenv("FW_TEST_WHERE", where)
    settings = "spider: stray\ntrap: {}\nretries: 0\nexporters: [{path: items.jsonl}]\n"
    base, project = await site_and_project(tmp_path, serve, PLUGIN, settings)
    stats = await asyncio.wait_for(crawl(project), 30)
    exported = {item["url"].removeprefix(base) for item in read_jsonl(tmp_path / "items.jsonl")}
    return dict(stats.errors), exported


#: Where the plugin raises, the failure that is counted, and the pages whose items are
#: exported: a callback keeps the items it yielded before the raise (/b's), a hook fails
#: alone, and a middleware fails only its request (/c).
WHERES = [
    ("callback", "spider_error", {"/", "/a", "/b", "/c"}),
    ("item_scraped", "plugin_error", {"/", "/a", "/b", "/c"}),
    ("middleware", "plugin_error", {"/", "/a", "/b"}),
]


@pytest.mark.parametrize("raised", RAISES)
@pytest.mark.parametrize(("where", "kind", "kept"), WHERES, ids=[w[0] for w in WHERES])
async def test_code_that_exits_is_a_counted_failure_and_the_crawl_goes_on(
    raised: str,
    where: str,
    kind: str,
    kept: set[str],
    tmp_path: Path,
    serve: Serve,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    errors, exported = await stray_crawl(tmp_path, serve, monkeypatch, raised, where)
    assert errors == {kind: 1}
    assert exported == kept


async def test_fw_run_names_the_exit_on_one_line_and_finishes(tmp_path: Path, serve: Serve) -> None:
    await site_and_project(tmp_path, serve, PLUGIN, "spider: stray\n")
    env = {"FW_TEST_RAISE": "exit", "FW_TEST_WHERE": "callback"}
    done = await run_fw("run", "project.yaml", "-o", "items.jsonl", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr  # finished; the failed page is counted
    assert "Traceback" not in done.stderr
    assert "spider_error: spider stray: parse raised SystemExit: 0" in done.stderr
    assert len(read_jsonl(tmp_path / "items.jsonl")) == 4


async def test_a_keyboard_interrupt_no_key_raised_is_the_plugins_failure(
    tmp_path: Path, serve: Serve
) -> None:
    # fw run handles Ctrl-C itself: a KeyboardInterrupt inside the crawl is code's own.
    await site_and_project(tmp_path, serve, PLUGIN, "spider: stray\n")
    env = {"FW_TEST_RAISE": "interrupt", "FW_TEST_WHERE": "item_scraped"}
    done = await run_fw("run", "project.yaml", "-o", "items.jsonl", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "never retrieved" not in done.stderr
    assert "plugin_error: plugin 'plugin.py': item_scraped raised KeyboardInterrupt" in done.stderr
    assert len(read_jsonl(tmp_path / "items.jsonl")) == 4


async def test_a_real_cancellation_is_not_reportable() -> None:
    seen: list[bool] = []

    async def waits() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError as exc:
            seen.append(reportable(exc))
            raise

    task = asyncio.create_task(waits())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [False]
    assert reportable(asyncio.CancelledError())  # raised by code, in a task nobody cancelled
    assert reportable(SystemExit(0)) and reportable(GeneratorExit())
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # Ctrl-C may raise it
        assert not reportable(KeyboardInterrupt())


LIFECYCLE = """
import os, sys
from framework import Exporter, Middleware, hookimpl

WHERE = os.environ["FW_TEST_WHERE"]


class Exits(Exporter):
    format = "exits"
    extensions = (".exits",)

    def open(self):
        if WHERE == "exporter open":
            sys.exit(0)

    def write(self, item):
        pass

    def close(self):
        if WHERE == "exporter close":
            sys.exit(0)


class Opens(Middleware):
    name = "opens"

    async def open(self, project):
        if WHERE == "middleware open":
            sys.exit(0)

    async def __call__(self, request, handler):
        return await handler(request)


@hookimpl
def register_exporters(register):
    register(Exits)


@hookimpl
def register_middlewares(register):
    register(Opens)
"""


@pytest.mark.parametrize(
    ("where", "error"),
    [
        ("exporter open", "Error: exporter exits cannot open {out}: SystemExit: 0"),
        ("exporter close", "Error: export {out}: cannot close it: SystemExit: 0"),
        ("middleware open", "Error: middleware 'opens' failed to open: SystemExit: 0"),
    ],
)
async def test_an_exporter_or_middleware_exiting_as_it_opens_or_closes_aborts_with_1(
    where: str, error: str, tmp_path: Path, serve: Serve
) -> None:
    settings = """
        spider: rules
        opens: {}
        rules: {items: [{fields: {page: {value: url}}}]}
        exporters: [{path: items.exits}]
        """
    await site_and_project(tmp_path, serve, LIFECYCLE, settings)
    env = {"FW_TEST_WHERE": where}
    done = await run_fw("run", "project.yaml", cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stderr  # it did not finish: never 0
    assert done.stderr.strip().splitlines()[-1] == error.format(out=tmp_path / "items.exits")


SEEDS = """
import asyncio
from framework import Request, Spider, hookimpl


class Seeds(Spider):
    name = "seeds"

    def start_requests(self):
        for n in range(400):
            yield Request(f"{self.start_urls[0]}?n={n}")

    def parse(self, response):
        yield {"url": response.url}


@hookimpl
def register_spiders(register):
    register(Seeds)


@hookimpl
async def request_scheduled(request, spider):
    await asyncio.sleep(0.001)  # the seeder waits here when the crawl stops
"""


async def test_stopping_while_start_requests_are_queued_is_no_spider_error(
    tmp_path: Path, serve: Serve
) -> None:
    _, project = await site_and_project(tmp_path, serve, SEEDS, "spider: seeds\n")
    stats = await asyncio.wait_for(crawl(project, "max_pages=1"), 30)
    assert stats.reason == "max_pages reached"
    assert stats.errors == {}  # closing the seeder at its yield is not start_requests failing
