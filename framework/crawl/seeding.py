"""A crawl's start requests: those plugins add, checked at start-up, then the spider's,
taken in batches as they come and as the frontier has room for them."""

from __future__ import annotations

import asyncio
import contextlib
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
#: The longest a start request waits for others to fill its batch: short beside a fetch.
_LINGER = 0.005
#: Start requests wait while this many requests are queued, so an endless start_requests
#: cannot fill memory; they resume below the low mark.
_HIGH, _LOW = 10_000, 5_000


class Seeder:
    """Batch what ``start()`` yields: the spider's start requests, or the ones retried.

    ``pull()`` runs ``start()`` and collects what it yields; ``batches()`` hands over a
    batch once it is whole, or ``_LINGER`` after its first request: a fast ``start()``
    is queued in whole batches, a slow or endless one (reading a queue, an API) as it goes.
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
        self._collected: list[Request] = []  # by pull(), for batches() to take
        self._pulled = False  # start() has ended
        #: Set by pull() at a batch's first request, at a whole batch and at the end.
        self._ready = asyncio.Event()
        self._taken = asyncio.Event()  # set by batches() when it took what was collected
        #: Why the spider closed the crawl while starting it (``CloseSpider``), if it did.
        self.close_reason: str | None = None

    async def pull(self) -> None:
        """Run ``start()`` to its end, collecting what it yields for ``batches()``.

        What start_requests yielded before it raised is kept, as a callback's results are.
        """
        try:
            async for request in results(self._start()):
                if self._stopped:
                    break
                if not isinstance(request, Request):
                    await self._misfit(f"{type(request).__name__}; expected a Request")
                elif (
                    mistake := unknown_callback(self._spider, request, self._plugins)
                ) is not None:
                    await self._misfit(mistake)
                else:
                    self._collected.append(request)
                    if len(self._collected) in (1, _BATCH):  # a batch's first, or a whole one
                        await self._hand_over()
        except CloseSpider as exc:
            self.close_reason = exc.reason
        except BaseException as exc:
            if not reportable(exc):
                raise
            await self._failures.spider_error(exc, None, "start_requests")
        finally:
            self._pulled = True
            self._ready.set()

    async def batches(self) -> AsyncGenerator[list[Request]]:
        """Yield what ``pull()`` collects, a batch at a time, until it has ended; wait
        for room in the frontier between batches."""
        while True:
            if not self._collected and not self._pulled:
                await self._next_ready()  # a first request
            if len(self._collected) < _BATCH and not self._pulled:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_LINGER):
                        await self._next_ready()  # a whole batch
            if not self._collected:
                return  # pull() has ended
            batch, self._collected = self._collected, []
            self._taken.set()
            yield batch
            await self._wait_for_room()

    def stop(self) -> None:
        """Take no more start requests."""
        self._stopped = True
        self._room.set()

    def claimed(self) -> None:
        """Note that a request was claimed: the queue may have room for more seeds now."""
        if not self._room.is_set() and self._counts().pending < _LOW:
            self._room.set()

    async def _hand_over(self) -> None:
        """Tell ``batches()`` of a first request; with a whole batch, wait until it took it."""
        self._ready.set()
        while len(self._collected) >= _BATCH:  # a start() that never waits, batched
            self._taken.clear()
            await self._taken.wait()

    async def _next_ready(self) -> None:
        self._ready.clear()
        await self._ready.wait()

    async def _misfit(self, what: str) -> None:
        message = f"spider {self._spider.name}: start_requests yielded {what}"
        await self._failures.report(TypeError(message), "spider_error", None, message)

    async def _wait_for_room(self) -> None:
        """Wait while the frontier is full of unclaimed requests."""
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
