"""A crawl's start requests: those plugins add, checked at start-up, then the spider's,
taken in batches as the frontier has room for them."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence

from framework.config.project import Project
from framework.crawl.failures import Failures
from framework.errors import CloseSpider, PluginError, ProjectError, reportable
from framework.frontier import Counts
from framework.hooks.manager import PluginManager, exited, hook_calls
from framework.http import Request
from framework.spider import (
    NO_PLUGIN_CALLBACKS,
    CallbackResult,
    PluginCallbacks,
    Spider,
    results,
    unknown_callback,
)

__all__ = ["Seeder", "extra_start_requests", "plugins_first"]

_BATCH = 100
#: Start requests wait while this many requests are queued, so an endless start_requests
#: cannot fill memory; they resume below the low mark.
_HIGH, _LOW = 10_000, 5_000


class Seeder:
    """Batch what ``start()`` yields: the spider's start requests, or the ones retried.

    ``counts`` reads the frontier's sizes, for its room; ``close_reason`` is the reason
    the spider gave if ``start_requests`` raised ``CloseSpider``.
    """

    def __init__(
        self,
        start: Callable[[], CallbackResult],
        counts: Callable[[], Counts],
        failures: Failures,
        spider: Spider,
        plugins: PluginCallbacks = NO_PLUGIN_CALLBACKS,
    ) -> None:
        self._start, self._counts, self._failures, self._spider = start, counts, failures, spider
        self._plugins = plugins
        self._room = asyncio.Event()
        self._stopped = False
        #: Why the spider closed the crawl while starting it (``CloseSpider``), if it did.
        self.close_reason: str | None = None

    async def batches(self) -> AsyncGenerator[list[Request]]:
        """Yield the start requests a batch at a time, waiting for room between batches.

        What start_requests yielded before it raised is kept, as a callback's results are.
        """
        batch: list[Request] = []
        try:
            async for request in results(self._start()):
                if self._stopped:
                    break
                if not isinstance(request, Request):
                    await self._misfit(f"{type(request).__name__}; expected a Request")
                    continue
                if (mistake := unknown_callback(self._spider, request, self._plugins)) is not None:
                    await self._misfit(mistake)
                    continue
                batch.append(request)
                if len(batch) >= _BATCH:
                    yield batch
                    batch = []
                    await self._wait_for_room()
        except CloseSpider as exc:
            self.close_reason = exc.reason
        except GeneratorExit:  # this generator closed at its own yield: not the spider's doing
            raise
        except BaseException as exc:
            if not reportable(exc):
                raise
            await self._failures.spider_error(exc, None, "start_requests")
        if batch:
            yield batch

    def stop(self) -> None:
        """Take no more start requests."""
        self._stopped = True
        self._room.set()

    def claimed(self) -> None:
        """Note that a request was claimed: the queue may have room for more seeds now."""
        if not self._room.is_set() and self._counts().pending < _LOW:
            self._room.set()

    async def _misfit(self, what: str) -> None:
        message = f"spider {self._spider.name}: start_requests yielded {what}"
        await self._failures.report(TypeError(message), "spider_error", None, message)

    async def _wait_for_room(self) -> None:
        """Let workers run, and wait while the frontier is full of unclaimed requests."""
        await asyncio.sleep(0)  # a generator that never awaits must not starve the loop
        while not self._stopped and self._counts().pending >= _HIGH:
            self._room.clear()
            await self._room.wait()


def extra_start_requests(
    pm: PluginManager, project: Project, spider: Spider, plugins: PluginCallbacks
) -> tuple[Request, ...]:
    """Collect the start requests plugins add (``extra_start_requests``), each checked.

    A plugin that breaks the hook's contract stops fw, named; one that reports a mistake
    in its section (``ProjectError``) is reported at that line.
    """
    added: list[Request] = []
    for call in hook_calls(pm, "extra_start_requests"):
        named = f"{pm.named(call.plugin)}: extra_start_requests"
        try:
            outcome = call(project=project, spider=spider)
            if inspect.iscoroutine(outcome):
                outcome.close()
                raise PluginError(f"{named} must be a plain def, not async def")
            requests = list(outcome or ())
        except (ProjectError, PluginError):
            raise
        except SystemExit as exc:
            raise PluginError(f"{named} {exited(exc)}") from exc
        except Exception as exc:
            raise PluginError(f"{named} raised {type(exc).__name__}: {exc}") from exc
        added += _checked(requests, named, spider, plugins)
    return tuple(added)


def _checked(
    requests: list[object], named: str, spider: Spider, plugins: PluginCallbacks
) -> list[Request]:
    checked = []
    for request in requests:
        if not isinstance(request, Request):
            raise PluginError(f"{named} returned {type(request).__name__}; expected Requests")
        if (mistake := unknown_callback(spider, request, plugins)) is not None:
            raise PluginError(f"{named} returned {mistake}")
        checked.append(request)
    return checked


def plugins_first(
    added: Sequence[Request], start: Callable[[], CallbackResult]
) -> Callable[[], AsyncIterator[object]]:
    """Return a ``start`` that yields the requests plugins added, then the spider's own.

    Plugins' first: they are few, and a spider's start requests may never end.
    """

    async def starts() -> AsyncIterator[object]:
        for request in added:
            yield request
        async for request in results(start()):
            yield request

    return starts
