"""Turn a project file into a running crawl: load, find plugins, assemble, run, stop on signal."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from framework.config.project import ExporterSpec, Project, load_project
from framework.crawl.engine import Engine
from framework.crawl.failures import FailureLog, failures_path, load_failures
from framework.crawl.progress import Mode, Progress
from framework.crawl.stats import Stats
from framework.errors import UsageError
from framework.hooks.components import Components, assemble, configure_plugins
from framework.hooks.manager import PluginManager, make_plugin_manager
from framework.hooks.registry import Registry
from framework.http import Request
from framework.spider import Spider

__all__ = ["Prepared", "load_plugins", "output_spec", "prepare", "run"]

#: Seconds the in-flight requests get after Ctrl-C, beyond the request timeout.
_GRACE_EXTRA = 5.0


@dataclass(frozen=True)
class Prepared:
    """A validated project with its plugins loaded and its components built."""

    project: Project
    pm: PluginManager
    registry: Registry
    components: Components
    #: Where this crawl lists the requests that failed.
    failures: Path
    #: The requests to start from instead of the spider's (``--retry-failed``).
    seeds: list[Request] | None = None
    #: Discard a persistent frontier's saved state (``--fresh``).
    fresh: bool = False
    #: Save every response to this folder (``--record``).
    record: Path | None = None
    #: Answer every request from this recording, never the network (``--replay``).
    replay: Path | None = None


def output_spec(path: str) -> ExporterSpec:
    """Turn ``-o PATH`` into an exporter spec: ``-`` streams JSON lines to stdout."""
    if path == "-":
        return ExporterSpec("jsonl", "-")
    # abspath, not resolve(): a symlink keeps the name whose extension picks the format.
    return ExporterSpec(None, os.path.abspath(path))  # noqa: PTH100


def prepare(
    file: Path,
    overrides: Sequence[str] = (),
    outputs: Sequence[str] = (),
    *,
    retry_failed: bool = False,
    fresh: bool = False,
    record: Path | None = None,
    replay: Path | None = None,
) -> Prepared:
    """Do everything short of crawling; raise a ``UsageError`` for any invalid input.

    With ``retry_failed`` the crawl starts from the last run's failures file and the
    exporters add to what that run wrote.
    """
    project, pm, registry = load_plugins(load_project(file, overrides))
    names = [name for name, _ in pm.list_name_plugin() if name]
    components = assemble(
        project, registry, names, [output_spec(o) for o in outputs], append=retry_failed
    )
    if not retry_failed:
        _check_has_start(project, components.spider)
    failures = failures_path(file, project.name, [e.path for e in components.exporters])
    seeds = load_failures(failures) if retry_failed else None
    if record is not None and replay is not None:
        raise UsageError("--record and --replay exclude each other")
    return Prepared(project, pm, registry, components, failures, seeds, fresh, record, replay)


def _check_has_start(project: Project, spider: Spider) -> None:
    """Refuse a crawl that could fetch nothing: no start URL for a spider that needs one.

    A spider that overrides ``start_requests()`` may need none, and a persistent frontier
    may hold the requests of an earlier run or of other workers.
    """
    if project.start_urls or project.frontier != "memory":
        return
    if type(spider).start_requests is Spider.start_requests:
        raise project.error_source.error(
            ("start_urls",),
            f"no start URLs, and spider {spider.name} starts from them: "
            "the crawl would fetch nothing; give one, e.g. start_urls: [https://example.com/]",
        )


def load_plugins(project: Project) -> tuple[Project, PluginManager, Registry]:
    """Load the project's plugins; return the project with their options validated."""
    pm = make_plugin_manager(
        project.plugins, source=project.source, disabled=project.disable_plugins
    )
    registry = Registry.collect(pm)
    return configure_plugins(project, pm.list_name_plugin()), pm, registry


def run(prepared: Prepared, progress: Mode = "off") -> Stats:
    """Run the crawl to its end; Ctrl-C stops it cleanly (``stats.reason`` says so)."""
    engine = Engine(
        prepared.project,
        prepared.components,
        prepared.pm,
        seeds=prepared.seeds,
        failures=FailureLog(prepared.failures),
        fresh=prepared.fresh,
        record=prepared.record,
        replay=prepared.replay,
    )
    shown = Progress(engine.snapshot, progress, prepared.project.name)
    try:
        return asyncio.run(_run(engine, prepared.project.timeout + _GRACE_EXTRA, shown))
    except asyncio.CancelledError:  # the grace period after Ctrl-C ran out
        return engine.stats


async def _run(engine: Engine, grace: float, progress: Progress) -> Stats:
    """Run ``engine``; the first signal stops it gracefully, a second one exits at once."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None

    presses = 0

    def interrupted() -> None:
        nonlocal presses
        presses += 1
        if presses > 1:
            print("Quitting now.", file=sys.stderr, flush=True)
            os._exit(130)  # the exporters write whole records as they go: nothing is torn
        print(
            f"\nStopping: letting {engine.in_flight} requests in flight finish "
            "(press Ctrl-C again to quit now)",
            file=sys.stderr,
            flush=True,
        )
        engine.stop("interrupted")
        loop.call_later(grace, main.cancel)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted)
    shown = asyncio.create_task(progress.run())
    try:
        return await engine.run()
    finally:
        shown.cancel()
        await asyncio.gather(shown, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
