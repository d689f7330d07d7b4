"""Look at one page the way a spider sees it: ``fw parse`` and ``fw shell``.

Both fetch a single URL with the project's headers, cookies, timeout and middlewares —
following redirects, ignoring robots.txt and politeness, since a person asked for this
one page — and then either run one spider callback on the response and print what it
yields, or open an interactive session with the response at hand. With no project file
fw's defaults apply; ``fw shell URL`` needs no spider at all.
"""

from __future__ import annotations

import asyncio
import code
import importlib
import importlib.util
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from framework.config.project import Project, load_project
from framework.crawl.runner import load_plugins
from framework.errors import CrawlAborted, FetchError, ProjectError, UsageError
from framework.fetch.downloader import Downloader, DownloadSettings
from framework.fetch.layers import FetchLayer, layered
from framework.fetch.parsers import Parsers
from framework.fetch.statuses import check_status, redirect_of
from framework.hooks.components import assemble, fetch_layers, middlewares
from framework.http import Request, Response
from framework.http.urls import Offsite, redacted_request, site_of, unfetchable
from framework.middleware import Middleware, chain, opened
from framework.spider import (
    NO_PLUGIN_CALLBACKS,
    CallbackOutput,
    PluginCallbacks,
    Spider,
    allowed_status,
    run_callback,
)

__all__ = ["Probe", "format_outcome", "parse", "shell"]


@dataclass(frozen=True)
class Probe:
    """A project's settings, middlewares and spider (if any), ready to fetch single pages."""

    project: Project
    spider: Spider | None
    middlewares: tuple[Middleware, ...]
    parsers: Parsers
    #: The callbacks plugins registered, which ``fw parse -c plugin:name`` may run too.
    callbacks: PluginCallbacks = NO_PLUGIN_CALLBACKS
    fetch_layers: tuple[FetchLayer, ...] = ()

    @classmethod
    def load(
        cls, url: str, spider: str | None, project_file: Path | None, overrides: Sequence[str] = ()
    ) -> Probe:
        """Use the project file's settings if given, else defaults; ``spider`` overrides.

        With neither a project nor a spider there is no spider: enough for ``fw shell``.
        """
        if unfetchable(url):
            raise UsageError(f"{url}: not an http(s) URL")
        if project_file is not None:
            return cls._build(load_project(project_file, [*overrides, *_spider(spider)]))
        try:
            return cls._build(Project(spider=spider or "", name="probe"))
        except ProjectError as exc:  # no file of the user's to point at: name what was given
            raise _without_project(spider, exc) from exc

    @classmethod
    def _build(cls, project: Project) -> Probe:
        project, pm, registry = load_plugins(project)
        if not project.spider:
            layers = fetch_layers(project, registry)
            wrappers = middlewares(project, registry)
            return cls(project, None, wrappers, registry.parsers, fetch_layers=layers)
        names = [name for name, _ in pm.list_name_plugin() if name]
        c = assemble(project, registry, names)
        return cls(project, c.spider, c.middlewares, c.parsers, c.callbacks, c.fetch_layers)

    async def fetch(self, url: str) -> Response:
        """Fetch ``url``, following redirects; raise ``FetchError`` if that fails."""
        project = self.project
        settings = DownloadSettings.of(project, concurrency=1)
        downloader = Downloader(settings, self.parsers)
        async with (
            layered(downloader, self.fetch_layers, project, self.parsers) as layers,
            opened(self.middlewares, project),
        ):
            fetch = chain(self.middlewares, layers.fetch, self.parsers.for_type)
            # Redirects stay where fw run would follow them: the project's allowed_domains,
            # else the site of the URL asked for.
            allowed = project.allowed_domains
            offsite = Offsite((site_of(url),) if allowed is None else allowed)
            request: Request | None = Request(url)
            while request is not None:
                response = await fetch(request)
                request = redirect_of(
                    response, max_redirects=project.max_redirects, offsite=offsite
                )
            return response


def _spider(name: str | None) -> list[str]:
    return [f"spider={name}"] if name else []


def _without_project(spider: str | None, error: ProjectError) -> ProjectError:
    """Say what is wrong in terms of the command line, not of a project file never given."""
    given = f"--spider {spider}" if spider else "no project file"
    if error.key == "spider":
        return ProjectError(given, "", error.message + _defined_here(spider))
    return ProjectError(given, error.key, f"{error.message}; give the options with -p PROJECT.yaml")


def _defined_here(spider: str | None) -> str:
    """Point at a project file in the working folder that uses ``spider``, if one does:
    its spider is a plugin of that project, unknown without it."""
    for path in sorted([*Path().glob("*.yaml"), *Path().glob("*.yml")]):
        try:
            if path.stat().st_size < 64 * 1024 and _spider_of(path) == spider:
                return f"; {path} defines it: use -p {path}"
        except (OSError, yaml.YAMLError):
            continue
    return ""


def _spider_of(path: Path) -> object:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data.get("spider") if isinstance(data, dict) else None


def parse(probe: Probe, url: str, callback: str | None) -> CallbackOutput:
    """Fetch ``url`` and run the spider's ``callback`` (default ``parse``) on it."""
    spider = probe.spider
    if spider is None:
        raise UsageError(
            "fw parse needs a spider: name one (--spider NAME) or a project (-p PROJECT.yaml)"
        )

    async def run() -> CallbackOutput:
        response = await probe.fetch(url)
        # An error page is no page to parse, as in fw run: unless the callback takes it.
        asked = Request(url, callback=callback)
        check_status(response, allowed_status(spider, asked, probe.callbacks))
        output = await run_callback(spider, callback, response, plugins=probe.callbacks)
        output.cut_to(probe.project.max_requests_per_page)
        return output

    try:
        return asyncio.run(run())
    except FetchError as exc:
        raise CrawlAborted(f"{url}: {exc.kind}: {exc}") from exc


def format_outcome(outcome: CallbackOutput, *, as_json: bool) -> str:
    """Render what a callback yielded: items as JSON lines, then requests."""
    if as_json:
        return json.dumps(
            {
                "items": outcome.items,
                "requests": [redacted_request(r) for r in outcome.requests],
                "dropped_requests": outcome.dropped,
                "problems": [message for _, _, message in outcome.problems],
            },
            ensure_ascii=False,
            default=str,
            indent=2,
        )
    lines = [f"# items ({len(outcome.items)})"]
    lines += [json.dumps(item, ensure_ascii=False, default=str) for item in outcome.items]
    lines.append(f"# requests ({len(outcome.requests)})")
    lines += [_request_line(r) for r in outcome.requests]
    if outcome.dropped:
        lines.append(f"# dropped ({outcome.dropped}): past max_requests_per_page, as a crawl does")
    if outcome.problems:
        lines.append(f"# problems ({len(outcome.problems)})")
        lines += [f"{kind}: {message}" for kind, _, message in outcome.problems]
    return "\n".join(lines)


def _request_line(request: Request) -> str:
    shown = redacted_request(request)
    extras = [
        f"callback={request.callback}" if request.callback else "",
        f"priority={request.priority}" if request.priority else "",
        f"meta={json.dumps(shown['meta'], default=str)}" if request.meta else "",
        f"proxy={shown['proxy']}" if request.proxy else "",
    ]
    return " ".join([request.method, shown["url"], *filter(None, extras)])


def shell(probe: Probe, url: str) -> None:
    """Open an interactive session with ``response`` (IPython when installed)."""
    try:
        response = asyncio.run(probe.fetch(url))
    except FetchError as exc:
        raise CrawlAborted(f"{url}: {exc.kind}: {exc}") from exc
    names: dict[str, Any] = {"response": response, "request": response.request}

    def fetch(url: str) -> Response:
        """Fetch ``url`` and make it ``response`` (and its request ``request``)."""
        names["response"] = asyncio.run(probe.fetch(url))
        names["request"] = names["response"].request
        return names["response"]  # type: ignore[no-any-return]

    names.update(spider=probe.spider, fetch=fetch)
    banner = (
        f"fw shell: {response.status} {response.url} ({len(response.body)} bytes)\n"
        "response.css(...), response.xpath(...), response.text, fetch(url)"
        + (f", spider ({probe.spider.name})" if probe.spider else "")
    )
    if importlib.util.find_spec("IPython") is None or not sys.stdin.isatty():
        code.interact(banner=banner, local=names, exitmsg="")
        return
    print(banner, file=sys.stderr)  # IPython is optional: nicer when installed
    importlib.import_module("IPython").start_ipython(argv=[], user_ns=names)
