"""Shared fixtures: loopback HTTP servers, running ``fw`` as a user would, and in-process crawls."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import ssl
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from framework.crawl import runner
from framework.crawl.stats import Stats
from tests.proxies import ForwardProxy

FIXTURES = Path(__file__).parent / "fixtures"
_FW = Path(sys.executable).with_name("fw")

Serve = Callable[..., Awaitable[str]]


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A test that runs the CLI in-process points the root logger at its captured stderr,
    which pytest then closes: later tests would log into a closed file."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start aiohttp applications on free loopback ports; return each one's base URL.

    ``host`` may be ``::1``: the URL then has it in brackets. A test of IPv6 skips itself
    where the machine has no IPv6 loopback. With ``tls`` (a server context, see
    ``tests/proxies.py``'s ``TestCA``) the site is served over https.
    """
    runners: list[web.AppRunner] = []

    async def start(
        app: web.Application, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> str:
        if ":" in host and not _has_ipv6_loopback():
            pytest.skip("this machine has no IPv6 loopback")
        app_runner = web.AppRunner(app, access_log=None)
        await app_runner.setup()
        site = web.TCPSite(app_runner, host, 0, ssl_context=tls)
        await site.start()
        runners.append(app_runner)
        port = app_runner.addresses[0][1]
        scheme = "https" if tls else "http"
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    yield start
    for app_runner in runners:
        await app_runner.cleanup()


#: Starts a ForwardProxy on 127.0.0.2 and returns its URL.
Proxies = Callable[[ForwardProxy], Awaitable[str]]


@pytest.fixture
async def proxies() -> AsyncIterator[Proxies]:
    """Start forward proxies on loopback (``tests/proxies.py``); stop them afterwards."""
    started: list[ForwardProxy] = []

    async def start(proxy: ForwardProxy) -> str:
        started.append(proxy)
        return await proxy.start()

    yield start
    for proxy in started:
        await proxy.stop()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def pages(html: dict[str, str]) -> web.Application:
    """An app serving these HTML pages by path (``{"/": "<h1>hi</h1>"}``); others are 404."""

    async def page(request: web.Request) -> web.Response:
        if request.path not in html:
            raise web.HTTPNotFound()
        return web.Response(text=html[request.path], content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    return app


@dataclass
class Completed:
    """What a finished ``fw`` process did."""

    returncode: int
    stdout: str
    stderr: str


def fw_command() -> list[str]:
    """Return how to start ``fw``: its console script, as users run it, if installed."""
    return [str(_FW)] if _FW.exists() else [sys.executable, "-m", "framework"]


async def run_fw(
    *args: str, cwd: Path | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> Completed:
    """Run the ``fw`` command in a subprocess while this loop keeps serving test sites."""
    process = await asyncio.create_subprocess_exec(
        *fw_command(),
        *args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(), err.decode())


def write_project(directory: Path, text: str, name: str = "project.yaml") -> Path:
    """Write a project file (dedented) and return its path."""
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


async def crawl(project: Path, *overrides: str, outputs: tuple[str, ...] = ()) -> Stats:
    """Run a project in this process and event loop (faster than a subprocess)."""
    prepared = runner.prepare(project, overrides, outputs)
    return await runner.build_engine(prepared, failures_file=False).run()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSON lines export."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
