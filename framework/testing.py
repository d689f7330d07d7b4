"""The offline testing kit for spider authors: a pytest plugin installed with fw.

Fixtures (available in any project that has fw installed):

``fw_pages``
    ``await fw_pages(folder, hosts=("movie.douban.com",), routes={...})`` serves a folder
    of saved pages on 127.0.0.1 and returns its base URL. A URL path is answered with the
    file of that path (``/a/b/`` → ``a/b/index.html`` or ``a/b.html``), or the file a
    ``routes`` regex names; in every text answer, absolute links to ``hosts``
    (``https://movie.douban.com/x``, ``//movie.douban.com:443/x``; not
    ``movie.douban.com.example.org``) are rewritten to the loopback server, so a spider
    that follows links stays offline.

``fw_crawl``
    ``await fw_crawl("douban", start_urls=[...], options={...}, settings={...})`` runs a
    crawl in this process and returns a ``Crawl``: the ``items`` exported, the
    ``requests`` scheduled, and the ``stats``. ``options`` is the spider's section of the
    project file, ``settings`` any other project keys (robots.txt is ignored by default).

``fw_snapshot``
    ``fw_snapshot(items)`` compares data with the snapshot stored beside the test
    (``snapshots/<module>/<test>.json``) and fails with a readable diff; run pytest with
    ``--fw-update-snapshots`` to write (or rewrite) the snapshots. The base URL of each
    ``fw_pages`` server, whose port changes from run to run, is written as the first of
    its ``hosts`` (``https://movie.douban.com``), or as ``http://fw-pages`` (then
    ``http://fw-pages-2``, ...) for a server given no hosts, so ``response.url`` in an
    item gives the same snapshot every run.
"""

from __future__ import annotations

import difflib
import json
import mimetypes
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from framework import hookimpl
from framework.crawl import runner
from framework.crawl.stats import Stats
from framework.http import Request

__all__ = ["Crawl", "Snapshot", "page_server"]

#: Text types whose absolute links to the mapped hosts are rewritten.
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
#: What may follow a host in a link: the path, query or fragment, or the link's end.
_HOST_END = r"""(?=[/?#"'\s<>)\\]|$)"""


@dataclass(frozen=True)
class Crawl:
    """What one ``fw_crawl`` produced."""

    items: list[dict[str, Any]]
    requests: list[Request]
    stats: Stats


def page_server(
    folder: Path,
    base: Callable[[], str],
    hosts: Iterable[str] = (),
    routes: Mapping[str, str] | None = None,
) -> web.Application:
    """Build the application ``fw_pages`` serves; ``base()`` is its URL once started."""
    folder = folder.resolve()
    patterns = [(re.compile(pattern), name) for pattern, name in (routes or {}).items()]
    links = _links_to(hosts)

    async def answer(request: web.Request) -> web.StreamResponse:
        file = _find(folder, request.path, patterns)
        if file is None:
            return web.Response(status=404, text=f"{request.path} is not among the saved pages")
        kind = mimetypes.guess_type(file.name)[0] or "text/html"
        body = file.read_bytes()
        if links is not None and kind.startswith(_TEXT_TYPES):
            text = links.sub(lambda _: base(), body.decode("utf-8", "surrogateescape"))
            body = text.encode("utf-8", "surrogateescape")
        return web.Response(body=body, content_type=kind)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    return app


def _links_to(hosts: Iterable[str]) -> re.Pattern[str] | None:
    """Match ``scheme://host[:port]`` of a link to one of ``hosts``, and nothing longer.

    The lookahead keeps ``example.com.evil.org`` and ``example.com-cdn.net`` out; the
    port goes with the host, since the loopback server has a port of its own.
    """
    names = "|".join(re.escape(host) for host in hosts)
    if not names:
        return None
    return re.compile(f"(?:https?:)?//(?:{names})(?::\\d+)?{_HOST_END}", re.IGNORECASE)


def _find(folder: Path, path: str, patterns: list[tuple[re.Pattern[str], str]]) -> Path | None:
    for pattern, name in patterns:
        if pattern.fullmatch(path):
            return folder / name
    relative = path.strip("/")
    candidates = (
        [folder / relative / "index.html", folder / f"{relative}.html", folder / relative]
        if relative
        else [folder / "index.html"]
    )
    for candidate in candidates:
        resolved = candidate.resolve()
        if resolved.is_file() and resolved.is_relative_to(folder):
            return resolved
    return None


@pytest.fixture
def fw_served_urls() -> dict[str, str]:
    """Map each ``fw_pages`` base URL of this test to the stable URL snapshots show."""
    return {}


@pytest.fixture
async def fw_pages(fw_served_urls: dict[str, str]) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Serve folders of saved pages on loopback; see the module docstring."""
    runners: list[web.AppRunner] = []

    async def serve(
        folder: str | Path, *, hosts: Iterable[str] = (), routes: Mapping[str, str] | None = None
    ) -> str:
        hosts = tuple(hosts)  # read twice: for the links, and for snapshots
        where: list[str] = []
        app_runner = web.AppRunner(
            page_server(Path(folder), lambda: where[0], hosts, routes), access_log=None
        )
        await app_runner.setup()
        site = web.TCPSite(app_runner, "127.0.0.1", 0)
        await site.start()
        runners.append(app_runner)
        where.append(f"http://127.0.0.1:{app_runner.addresses[0][1]}")
        fw_served_urls[where[0]] = _stable_url(hosts, len(fw_served_urls))
        return where[0]

    yield serve
    for app_runner in runners:
        await app_runner.cleanup()


class _Collector:
    """A plugin that keeps what the crawl scheduled and exported."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.requests: list[Request] = []

    @hookimpl(trylast=True)  # after every other plugin had its say about the item
    def item_scraped(self, item: dict[str, Any]) -> None:
        self.items.append(item)

    @hookimpl
    def request_scheduled(self, request: Request) -> None:
        self.requests.append(request)


@pytest.fixture
def fw_crawl(tmp_path: Path) -> Callable[..., Awaitable[Crawl]]:
    """Run a crawl in this process; see the module docstring."""

    async def crawl(
        spider: str,
        start_urls: Iterable[str],
        *,
        options: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Crawl:
        project: dict[str, Any] = {
            "spider": spider,
            "start_urls": list(start_urls),
            "robots": "ignore",
            **(settings or {}),
        }
        if options is not None:
            project[spider] = dict(options)
        file = tmp_path / f"{spider}-crawl.yaml"
        file.write_text(yaml.safe_dump(project, allow_unicode=True), encoding="utf-8")
        prepared = runner.prepare(file)
        collector = _Collector()
        prepared.pm.register(collector, name="fw-testing")
        stats = await runner.build_engine(prepared, failures_file=False).run()
        return Crawl(collector.items, collector.requests, stats)

    return crawl


def _stable_url(hosts: Iterable[str], index: int) -> str:
    """Return what a server's base URL reads as in snapshots: not its port of the day."""
    first = next(iter(hosts), None)
    if first is not None:
        return f"https://{first.lower()}"
    return "http://fw-pages" if index == 0 else f"http://fw-pages-{index + 1}"


class Snapshot:
    """Compare data with a stored JSON snapshot; rewrite it when asked to.

    ``served`` maps URLs that change between runs (a loopback server's base URL) to what
    the snapshot shows instead; it is read at each comparison, so servers started after
    the snapshot fixture are covered.
    """

    def __init__(self, path: Path, update: bool, served: Mapping[str, str] | None = None) -> None:
        self.path, self.update = path, update
        self.served: Mapping[str, str] = served if served is not None else {}

    def __call__(self, data: Any) -> None:
        """Fail with a unified diff if ``data`` differs from the snapshot."""
        text = self._stable(
            json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True, default=str)
        )
        if self.update:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(text + "\n", encoding="utf-8")
            return
        if not self.path.exists():
            pytest.fail(
                f"no snapshot {self.path}; run pytest --fw-update-snapshots to write it",
                pytrace=False,
            )
        stored = self.path.read_text(encoding="utf-8").rstrip("\n")
        if stored != text:
            diff = difflib.unified_diff(
                stored.splitlines(),
                text.splitlines(),
                f"{self.path.name} (stored)",
                "this run",
                lineterm="",
            )
            pytest.fail(
                f"items differ from the snapshot {self.path} (rerun with "
                "--fw-update-snapshots if the change is right):\n" + "\n".join(diff),
                pytrace=False,
            )

    def _stable(self, text: str) -> str:
        for served, stable in self.served.items():
            # Not inside a longer port: http://127.0.0.1:8000 is no prefix of ...:80001.
            text = re.sub(re.escape(served) + r"(?!\d)", stable, text)
        return text


@pytest.fixture
def fw_snapshot(request: pytest.FixtureRequest, fw_served_urls: dict[str, str]) -> Snapshot:
    """Compare with ``snapshots/<module>/<test>.json`` beside the test file."""
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    path = Path(request.node.path).parent / "snapshots" / request.node.path.stem / f"{name}.json"
    update = bool(request.config.getoption("fw_update_snapshots"))
    return Snapshot(path, update, fw_served_urls)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--fw-update-snapshots``."""
    parser.addoption(
        "--fw-update-snapshots",
        action="store_true",
        default=False,
        help="fw: write item snapshots instead of comparing with them",
    )
