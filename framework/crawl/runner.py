"""Turn a project file into a running crawl: load, find plugins, wire, run, stop on signal.

``prepare`` does everything short of crawling (so ``fw check`` can stop there); ``build_engine``
is the one place a crawl's parts are built and wired together; ``run`` drives it to its
end, stopping it cleanly on a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import inspect
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NamedTuple, NoReturn

from framework.config.project import (
    ExporterSpec,
    Override,
    Project,
    load_project,
    load_project_without,
)
from framework.config.yamlfile import shorten
from framework.crawl.admission import Admission
from framework.crawl.downloads import Downloads, sharing_slots
from framework.crawl.engine import Crew, Engine
from framework.crawl.failures import (
    FailureLog,
    Failures,
    Listed,
    failures_path,
    load_failures,
    spider_origin,
)
from framework.crawl.pipeline import Pipeline
from framework.crawl.progress import Mode, Progress
from framework.crawl.seeding import Seeder, extra_start_requests, plugins_first
from framework.crawl.settle import Settler
from framework.crawl.stats import Stats
from framework.errors import (
    CrawlAborted,
    ErrorList,
    FwError,
    PluginError,
    ProjectError,
    UsageError,
)
from framework.fetch.credentials import warn_of_wide_credentials
from framework.fetch.downloader import Downloader, DownloadSettings, Fetcher, user_agent
from framework.fetch.layers import layered
from framework.fetch.politeness import HostPolicy, Pace, Politeness, Throttler, Tuner
from framework.fetch.recording import Recorder, Replayer
from framework.fetch.retry import RetryPolicy
from framework.fetch.robots import Robots
from framework.fetch.stalls import Stalls
from framework.frontier import ONCE, Frontier
from framework.frontier.backends import check_frontier, make_frontier
from framework.frontier.memory import MemoryFrontier
from framework.hooks.components import (
    Components,
    assemble,
    check_names,
    configure_plugins,
    item_steps,
    spider_alone,
)
from framework.hooks.events import Events
from framework.hooks.manager import (
    PluginManager,
    exited,
    hook_calls,
    make_plugin_manager,
    register_for_crawl,
)
from framework.hooks.registry import Registry
from framework.http import Request, Response
from framework.http.urls import fingerprint
from framework.middleware import chain
from framework.paths import identity
from framework.spider import CallbackResult, Spider

__all__ = ["Prepared", "build_engine", "load_plugins", "output_spec", "prepare", "run"]

log = logging.getLogger("fw")


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
    seeds: list[Listed] | None = None
    #: Discard a persistent frontier's saved state (``--fresh``).
    fresh: bool = False
    #: Save every response to this folder (``--record``).
    record: Path | None = None
    #: Answer every request from this recording, never the network (``--replay``).
    replay: Path | None = None
    #: The start requests plugins add (``extra_start_requests``), queued first.
    added: tuple[Request, ...] = ()
    #: A plugin asked that a finished crawl start a new round (``renew_finished_crawl``).
    renew: bool = False

    def files(self) -> dict[object, str]:
        """Every file the crawl writes or reads as its own (by ``paths.identity``), saying
        what the crawl does with each."""
        exports = {
            identity(e.path): "writes its items (-o -)" if e.path == "-" else "writes an export"
            for e in self.components.exporters
        }
        return {**own_files(self.project, self.failures), **exports}


def own_files(project: Project, failures: Path) -> dict[object, str]:
    """The files a crawl writes besides its exports, and its project file (by
    ``paths.identity``), saying what it does with each: an export there would be replaced
    (the failures file), would break the crawl's state, or would overwrite the project."""
    files: dict[object, str] = {
        identity(str(project.file), follow=follow): "reads its project file"
        for follow in (True, False)  # a link to it too: --stats would replace the link
    }
    files[identity(str(failures))] = "writes its failures file"
    if project.frontier.startswith("sqlite:///"):
        state = project.frontier.removeprefix("sqlite:///")
        for suffix in ("", "-wal", "-shm", "-journal"):  # SQLite's own files beside it
            files[identity(state + suffix)] = "writes its state (frontier)"
    return files


def output_spec(path: str) -> ExporterSpec:
    """Turn ``-o PATH`` into an exporter spec: ``-`` streams JSON lines to stdout."""
    if path == "-":
        return ExporterSpec("jsonl", "-")
    # abspath, not resolve(): a symlink keeps the name whose extension picks the format.
    return ExporterSpec(None, os.path.abspath(path))  # noqa: PTH100


def prepare(
    file: Path,
    overrides: Sequence[str | Override] = (),
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
    try:
        project = load_project(file, overrides)
    except ProjectError as exc:
        partial = load_project_without(file, overrides, exc)
        _raise_with_plugins_checked(exc, partial, outputs, retry_failed)
    checked = _checked(project, outputs, retry_failed)
    project, pm, registry, components, failures, added, renew = checked
    if fresh and retry_failed and project.frontier != "memory":  # a memory one has no state
        raise UsageError(  # the state the failures belong to would be wiped first
            "--fresh and --retry-failed exclude each other: --fresh starts the crawl over, "
            "--retry-failed retries what its last run failed"
        )
    if not retry_failed:
        _check_has_start(project, components.spider, added)
    seeds = load_failures(failures) if retry_failed else None
    if record is not None and replay is not None:
        raise UsageError("--record and --replay exclude each other")
    return Prepared(
        project, pm, registry, components, failures, seeds, fresh, record, replay, added, renew
    )


def _renews(project: Project, pm: PluginManager) -> bool:
    """Ask every plugin whether a finished crawl starts a new round; a ``ValueError`` is
    the plugin refusing the project, at its section."""
    answers = []
    for call in hook_calls(pm, "renew_finished_crawl"):
        try:
            answer = call(project=project)
        except ValueError as exc:
            raise project.error_source.error((call.plugin,), str(exc)) from None
        except SystemExit as exc:  # no Exception: it would end fw, its code for fw's
            raise PluginError(
                f"{pm.named(call.plugin)}: renew_finished_crawl {exited(exc)}"
            ) from exc
        except Exception as exc:
            raise PluginError(
                f"plugin '{call.plugin}': renew_finished_crawl raised {type(exc).__name__}: {exc}"
            ) from exc
        answers.append(_answer(answer, pm.named(call.plugin)))
    return any(answer is True for answer in answers)


def _answer(answer: object, named: str) -> bool | None:
    """Take a plugin's answer to ``renew_finished_crawl``: a coroutine or a truthy 1 would
    otherwise be a silent "no"."""
    if inspect.iscoroutine(answer):
        answer.close()
        raise PluginError(f"{named}: renew_finished_crawl must be a plain def, not async def")
    if answer is not None and not isinstance(answer, bool):
        raise PluginError(
            f"{named}: renew_finished_crawl returned {shorten(repr(answer))}; "
            "it returns True, False or None"
        )
    return answer


def _check_has_start(project: Project, spider: Spider, added: Sequence[Request]) -> None:
    """Refuse a crawl that could fetch nothing: no start URL for a spider that needs one.

    A spider that overrides ``start_requests()`` may need none, nor one whose plugins add
    start requests, and a persistent frontier may hold the requests of an earlier run or
    of other workers.
    """
    if project.start_urls or added or project.frontier != "memory":
        return
    if type(spider).start_requests is Spider.start_requests:
        raise project.error_source.error(
            ("start_urls",),
            f"no start URLs, and spider {spider.name} starts from them: "
            "the crawl would fetch nothing; give one, e.g. start_urls: [https://example.com/]",
        )


class _Checked(NamedTuple):
    """A project with its plugins loaded and the crawl's parts built, each having checked
    its own options."""

    project: Project
    pm: PluginManager
    registry: Registry
    components: Components
    failures: Path
    added: tuple[Request, ...]
    renew: bool


def _checked(project: Project, outputs: Sequence[str], append: bool) -> _Checked:
    """Load the project's plugins and build the crawl's parts from it.

    The checks that do not need each other's results all run, and their mistakes are
    said together: a wrong exporter must not hide a wrong ``sitemaps:`` until it is fixed.
    """
    project, pm, registry = load_plugins(project)
    errors = ErrorList()
    renew, built, items = False, None, None
    added: tuple[Request, ...] = ()
    with errors.collect():
        check_frontier(project)
    with errors.collect():
        built = _components(project, pm, registry, outputs, append)
    spider = (built[0].spider, built[0].callbacks) if built else spider_alone(project, registry)
    if spider is not None:
        with errors.collect():
            items = item_steps(pm, project, spider[0])
        with errors.collect():
            added = extra_start_requests(pm, project, *spider)
    with errors.collect():
        renew = _renews(project, pm)
    errors.raise_any()
    assert built is not None and items is not None  # else raise_any() raised
    components = dataclasses.replace(built[0], items=items)
    return _Checked(project, pm, registry, components, built[1], added, renew)


def _components(
    project: Project,
    pm: PluginManager,
    registry: Registry,
    outputs: Sequence[str],
    append: bool,
) -> tuple[Components, Path]:
    """Build the crawl's components; return them and where its failures file goes."""
    names = [name for name, _ in pm.list_name_plugin() if name]
    specs = [output_spec(o) for o in outputs]
    paths = [spec.path for spec in (*project.exporters, *specs)]
    failures = failures_path(project.file, project.name, paths)
    reserved = own_files(project, failures)
    return assemble(project, registry, names, specs, append=append, reserved=reserved), failures


def _raise_with_plugins_checked(
    error: ProjectError, partial: Project | None, outputs: Sequence[str], append: bool
) -> NoReturn:
    """Raise ``error`` (core keys refused) with the mistakes the plugins find in
    ``partial``, the project without those keys: fixing ``delay: -1`` must not be what it
    takes to hear of a typo in ``rules:``. What is not a mistake in the project file (a
    plugin that fails to load, a wrong ``-o``) is said once the core keys are right."""
    errors = ErrorList()
    with errors.collect():
        raise error
    if partial is not None:
        with contextlib.suppress(FwError), errors.collect():
            _checked(partial, outputs, append)
    errors.raise_any()
    raise error  # not reached: ``errors`` holds ``error`` at least


def load_plugins(project: Project) -> tuple[Project, PluginManager, Registry]:
    """Load the project's plugins; return the project with their options validated."""
    pm = make_plugin_manager(
        project.plugins, source=project.source, disabled=project.disable_plugins
    )
    registry = Registry.collect(pm)
    try:
        return configure_plugins(project, pm.list_name_plugin()), pm, registry
    except ProjectError as exc:
        _raise_with_names_checked(exc, project, pm, registry)


def _raise_with_names_checked(
    error: ProjectError, project: Project, pm: PluginManager, registry: Registry
) -> NoReturn:
    """Raise ``error`` (a plugin's options refused) with what ``check_names`` finds: a
    mistake in one section must not hide a typo elsewhere until it is fixed."""
    errors = ErrorList()
    with errors.collect():
        raise error
    with errors.collect():
        check_names(project, registry, [name for name, _ in pm.list_name_plugin() if name])
    errors.raise_any()
    raise error  # not reached: ``errors`` holds ``error`` at least


def build_engine(
    prepared: Prepared, *, failures_file: bool = True, frontier: Frontier | None = None
) -> Engine:
    """Build every part of the crawl and the engine that drives them.

    This is the one place a crawl is wired together: the frontier, the fetcher behind the
    middlewares, robots.txt, the pace kept per host, admission, seeding, the settle path
    and the failures — each handed only what it needs. ``failures_file`` keeps the
    failures file (in-process test crawls go without); ``frontier`` replaces the one the
    project names.
    """
    project, spider, middlewares = (
        prepared.project,
        prepared.components.spider,
        prepared.components.middlewares,
    )
    warn_of_wide_credentials(project)
    stats = Stats(
        project.name,
        exporters=len(prepared.components.exporters),
        reporters=tuple(middlewares),
    )
    politeness = _politeness(prepared)
    renew = prepared.renew and prepared.seeds is None  # --retry-failed retries, never renews
    frontier = frontier or make_frontier(project, politeness, fresh=prepared.fresh, renew=renew)
    for middleware in prepared.components.middlewares:  # first: its hooks are the crawl's
        register_for_crawl(prepared.pm, middleware, f"{middleware.name} middleware")
    failures = Failures(
        stats,
        spider,
        hook_calls(prepared.pm, "crawl_error"),
        FailureLog(prepared.failures, _retried(prepared.seeds)) if failures_file else None,
        spider_origin(prepared.pm, spider),
    )
    events = Events(prepared.pm, failures.plugin_failed)
    stalls = Stalls()
    fetcher = _fetcher(prepared, stats, stalls)
    steps = prepared.components.items
    # Item steps' downloads have a queue of their own, and share concurrency.total with pages.
    downloading = MemoryFrontier(politeness) if steps.steps else None
    inner = sharing_slots(fetcher.fetch, project.concurrency.total) if downloading else None
    fetch = chain(middlewares, inner or fetcher.fetch, prepared.components.parsers.for_type)
    live = prepared.replay is None  # a replay has no server to spare: it waits for nothing
    throttle = Throttler(
        politeness, enabled=project.throttle.enabled and live, max_delay=project.throttle.max_delay
    )
    pace = Pace(throttle, _Both(frontier, downloading) if downloading else frontier, waits=live)
    robots = Robots(fetch, user_agent(project.headers), pace) if project.robots == "obey" else None
    retry = RetryPolicy(project.retries, project.backoff.base, project.backoff.max, waits=live)
    downloads = (
        Downloads(
            downloading,
            fetch,
            robots,
            pace,
            stalls,
            retry,
            stats,
            failures,
            max_redirects=project.max_redirects,
            received=_received(events, spider),
        )
        if downloading
        else None
    )
    for exporter in prepared.components.exporters:
        exporter.columns = steps.columns
    return Engine(
        Crew(
            project,
            spider,
            stats,
            frontier,
            fetcher,
            fetch,
            robots,
            pace,
            stalls,
            retry,
            Admission(
                project,
                stats,
                spider.name,
                persistent=frontier.persistent,
                forgets=lambda: frontier.forgets,
            ),
            Seeder(
                _starts(prepared, frontier),
                frontier.counts,
                failures,
                spider,
                prepared.components.callbacks,
            ),
            Settler(
                frontier,
                prepared.components.exporters,
                Pipeline(
                    steps.steps,
                    events.item_scraped,
                    failures,
                    stats,
                    spider,
                    downloads.fetch if downloads else None,
                ),
                failures,
                stats,
                spider,
                max_items=project.max_items,
                retrying=prepared.seeds is not None,
                crawl=project.name,
            ),
            failures,
            events,
            retrying=prepared.seeds is not None,
            callbacks=prepared.components.callbacks,
            downloads=downloads,
            middlewares=middlewares,
        )
    )


class _Both:
    """Pace a host in both queues: throttling, Crawl-delay and Retry-After hold for
    pages and downloads alike."""

    def __init__(self, *queues: Tuner) -> None:
        self._queues = queues

    async def tune(self, host: str, *, delay: float | None = None, pause: float = 0.0) -> None:
        for queue in self._queues:
            await queue.tune(host, delay=delay, pause=pause)


def _received(events: Events, spider: Spider) -> Callable[[Response], Awaitable[None]] | None:
    """Tell the ``response_received`` hooks of a download's response, if any plugin has one."""
    hook = events.response_received
    if not hook:
        return None

    async def received(response: Response) -> None:
        await hook(response=response, spider=spider)

    return received


def _politeness(prepared: Prepared) -> Politeness:
    """The project's politeness; a replay has no server to spare, so no delays."""
    if prepared.replay is None:
        return Politeness.of(prepared.project)
    return Politeness(HostPolicy(prepared.project.concurrency.per_domain, 0.0), {})


def _fetcher(prepared: Prepared, stats: Stats, stalls: Stalls) -> Fetcher:
    """The network through aiohttp below the fetch layers, recorded with ``--record``; a
    recording with ``--replay`` (which needs no layer: it answers what they answered)."""
    project, components = prepared.project, prepared.components
    if prepared.replay is not None:
        return Replayer(prepared.replay, components.parsers, project.max_response_size)
    downloader = Downloader(DownloadSettings.of(project), components.parsers, stats, stalls)
    fetcher = layered(downloader, components.fetch_layers, project, components.parsers)
    return Recorder(fetcher, prepared.record) if prepared.record is not None else fetcher


def _starts(prepared: Prepared, frontier: Frontier) -> Callable[[], CallbackResult]:
    """The start requests plugins add, then the spider's; or those ``--retry-failed`` tries
    again.

    A persistent frontier has seen every retried request: they must pass its dedup, yet
    share one entry per request across retries (``Listed.once``), queued again only once
    it failed, lest a retry run again after a crash fetch (and export) again what it had
    already retried.
    """
    if prepared.seeds is None:
        start = prepared.components.spider.start_requests
        return plugins_first(prepared.added, start) if prepared.added else start
    if not frontier.persistent:
        retried = [listed.request for listed in prepared.seeds]
    else:
        retried = [_once(request, once) for request, once in prepared.seeds]
    return lambda: retried


def _once(request: Request, once: int) -> Request:
    return request.replace(dont_filter=True, meta={**request.meta, ONCE: once})


def _retried(seeds: list[Listed] | None) -> dict[int, int]:
    """The ``Listed.once`` of each retried request, by fingerprint: the line a request
    that fails again is listed with names it."""
    return {fingerprint(listed.request): listed.once for listed in seeds or ()}


def run(prepared: Prepared, progress: Mode = "off") -> Stats:
    """Run the crawl to its end and return its stats.

    A signal stops it (``stats.reason`` says which); an abort is ``stats.aborted``.
    """
    crawl = build_engine(prepared)
    shown = Progress(crawl.sample, progress, prepared.project.name)
    try:
        with _collector_tuned():
            asyncio.run(_run(crawl, prepared.project.stop_timeout, shown))
    except asyncio.CancelledError:  # closing took too long after a signal
        pass
    except CrawlAborted as exc:
        crawl.stats.abort(str(exc))
    return crawl.stats


#: Collect the youngest objects every this many allocations, not every 700 (Python's).
_YOUNG_THRESHOLD = 20_000


@contextlib.contextmanager
def _collector_tuned() -> Iterator[None]:
    """Tune Python's garbage collector for the crawl, and restore it after.

    A crawl allocates many short-lived containers a page (requests, trees, items) beside a
    large, long-lived heap (modules, the queue): by default young collections run every
    700 allocations and full ones walk the whole heap again, ~3% of the shop benchmark's
    CPU. What is already allocated is frozen out of every collection, and young ones run
    rarely: what cycles hold waits a little longer to be freed, 20,000 objects at most.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(_YOUNG_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


#: What each signal is called for people, and the reason it gives the crawl's end.
_SIGNALS = {signal.SIGINT: ("Ctrl-C", "interrupted"), signal.SIGTERM: ("SIGTERM", "terminated")}
#: Seconds a second signal lets the step holding the loop finish before exiting without it.
_QUIT_GRACE = 1.0
#: Seconds past twice ``stop_timeout`` after which a crawl a signal did not stop (its loop
#: held by a callback, a hostile page's million links) quits as on a second signal.
_OVERDUE = 2.0


async def _run(crawl: Engine, stop_timeout: float, progress: Progress) -> Stats:
    """Run ``crawl`` until it ends or a signal stops it.

    The first SIGINT or SIGTERM stops claiming; the requests in flight get ``stop_timeout``
    seconds, then are cut short and handed back; closing the exports and the frontier gets
    as long again, then the crawl is cancelled outright. A second signal exits at once.
    """
    main = asyncio.current_task()
    assert main is not None
    stopping = _Stopping(crawl, stop_timeout, main)
    shown = asyncio.create_task(progress.run())
    try:
        with stopping.installed():
            return await crawl.run()
    except asyncio.CancelledError:
        if stopping.signalled and crawl.stats.reason == "finished":  # crawl_finished cut short
            crawl.stats.reason = _SIGNALS[stopping.signalled[0]][1]
        raise
    finally:
        shown.cancel()
        await asyncio.gather(shown, return_exceptions=True)


class _Stopping:
    """Stop a crawl on SIGINT or SIGTERM: cleanly on the first, at once on the second.

    The handlers are Python's (``signal.signal``), not the loop's: they run in the main
    thread between two bytecodes, so also while a callback holds the loop (spinning, or in
    ``time.sleep``), and must raise nothing into the code they interrupt. The clean stop is
    handed to the loop, which runs it once it can.
    """

    def __init__(self, crawl: Engine, stop_timeout: float, main: asyncio.Task[Stats]) -> None:
        self._crawl, self._stop_timeout, self._main = crawl, stop_timeout, main
        self._loop = main.get_loop()
        #: The signals received, in order.
        self.signalled: list[signal.Signals] = []
        self._overdue: threading.Timer | None = None  # quits if the first signal did not

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle the signals meanwhile; then restore the handlers there were."""
        saved = {sig: signal.signal(sig, self._caught) for sig in _SIGNALS}
        try:
            yield
        finally:
            if self._overdue is not None:  # stopped in time: the summary is not cut
                self._overdue.cancel()
            for sig, handler in saved.items():
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def _caught(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        self.signalled.append(sig)
        if len(self.signalled) > 1:
            self._quit(sig)
            return
        name, reason = _SIGNALS[sig]
        again = " (press Ctrl-C again to quit now)" if sig == signal.SIGINT else ""
        # Said at once, even if the loop is held: the user knows the signal arrived.
        _say(
            f"\nStopping ({name}): letting {self._crawl.in_flight} requests in flight "
            f"finish, at most {self._stop_timeout:g}s{again}"
        )
        self._loop.call_soon_threadsafe(self._stop, reason)
        # The loop may not run _stop for a long time: a promise to stop needs a deadline.
        self._overdue = threading.Timer(2 * self._stop_timeout + _OVERDUE, self._gave_up, (sig,))
        self._overdue.daemon = True
        self._overdue.start()

    def _gave_up(self, sig: signal.Signals) -> None:
        """Quit as on a second signal: the first has not stopped the crawl in time, unless
        the crawl is closing its exports, which may take a while and must not be cut."""
        if self._crawl.closing:
            return
        waited = 2 * self._stop_timeout + _OVERDUE
        _say(
            f"Quitting now: the crawl has not stopped {waited:g}s after {_SIGNALS[sig][0]} "
            "(something holds its event loop)."
        )
        self._loop.call_soon_threadsafe(self._exit, sig)
        threading.Timer(_QUIT_GRACE, os._exit, (128 + sig,)).start()

    def _stop(self, reason: str) -> None:
        self._crawl.stop(reason)
        self._loop.call_later(self._stop_timeout, _cut_short, self._crawl)
        self._loop.call_later(2 * self._stop_timeout + 1, self._main.cancel)

    def _quit(self, sig: signal.Signals) -> None:
        """Exit now, the exports finished between two steps of the loop if one comes soon."""
        _say(f"Quitting now ({_SIGNALS[sig][0]} again).")
        if asyncio.current_task(self._loop) is None:  # between two steps: no write half done
            self._exit(sig)
        # A step holds the loop, maybe in an export's write. "At once" gives up on a step
        # that does not end within the grace (a callback spinning or asleep): fw exits
        # without finishing the exports, as a kill would (a JSON array lacks its "]").
        self._loop.call_soon_threadsafe(self._exit, sig)
        threading.Timer(_QUIT_GRACE, os._exit, (128 + sig,)).start()

    def _exit(self, sig: signal.Signals) -> None:
        try:
            self._crawl.quit_now()  # a JSON array gets its closing bracket
        finally:
            os._exit(128 + sig)  # whole records are on disk: nothing is torn


def _say(text: str) -> None:
    """Print ``text`` on stderr from a signal handler, which may have interrupted a write
    to stderr (then write around its buffer) and must raise nothing."""
    try:
        print(text, file=sys.stderr, flush=True)
    except RuntimeError:  # a reentrant call: the handler interrupted a print
        with contextlib.suppress(OSError):
            os.write(2, f"{text}\n".encode())
    except (OSError, ValueError):  # stderr is gone: there is no one to tell
        pass


def _cut_short(crawl: Engine) -> None:
    if cut := crawl.cut_short():
        log.warning("cut short %d requests still in flight; they are fetched again next run", cut)
