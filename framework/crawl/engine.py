"""The engine: wires frontier, fetcher, spider and exporters together and runs a crawl.

The data flows one way:

1. The spider's start requests are filtered (scheme, offsite, depth) and added to the
   frontier, which drops duplicates.
2. ``concurrency.total`` workers each claim a request whose host may be visited now.
3. The request goes through the middlewares to the fetcher, which returns a response.
4. Redirects go back to step 1 as new requests; failures are retried later with backoff
   or counted; a good response goes to the spider's callback.
5. The callback's items pass ``item_scraped`` and go to every exporter; its requests go
   back to step 1, settled together with the request that found them. With a durable
   frontier, writing a page's items and acknowledging it (with the exporters' new
   positions) happen in one uninterrupted step, so that a crash can be resumed exactly;
   the committer (``commits.py``) takes the pages that finish meanwhile in the same step.
6. The crawl ends when the frontier is empty and no request is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import pluggy

from framework.config.project import Project
from framework.crawl.admission import Admission
from framework.crawl.failures import FailureLog
from framework.crawl.idle import Idle
from framework.crawl.opening import (
    downloader,
    open_exports,
    open_fetcher,
    open_frontier,
    user_agent,
)
from framework.crawl.pipeline import ItemPipeline
from framework.crawl.progress import Snapshot
from framework.crawl.reports import Reporter, spider_origin
from framework.crawl.seeding import Seeder
from framework.crawl.settle import Committer
from framework.crawl.stats import Stats
from framework.errors import CrawlAborted, FetchError, IgnoreRequest
from framework.fetch.downloader import Fetcher
from framework.fetch.parsers import parse_big
from framework.fetch.politeness import Politeness, Throttler
from framework.fetch.retry import RetryPolicy
from framework.fetch.robots import Robots
from framework.fetch.statuses import check_status, redirect_of
from framework.fetch.urls import host_of
from framework.frontier import Frontier, Lease, LeaseLost, Settlement
from framework.frontier.backends import make_frontier
from framework.hooks.components import Components
from framework.hooks.events import Events
from framework.http import Request, Response
from framework.middleware import Handler
from framework.spider import CallbackResult, run_callback

__all__ = ["Engine"]

log = logging.getLogger("fw")

#: How a handled request's lease is settled, decided before it is carried out.
Settle = Callable[[], Awaitable[object]]


class Engine:
    """Run one crawl of one project; ``stop()`` ends it early but cleanly."""

    def __init__(
        self,
        project: Project,
        components: Components,
        pm: pluggy.PluginManager,
        *,
        frontier: Frontier | None = None,
        fetcher: Fetcher | None = None,
        seeds: Sequence[Request] | None = None,
        failures: FailureLog | None = None,
        fresh: bool = False,
        record: Path | None = None,
        replay: Path | None = None,
    ) -> None:
        self.project, self.spider = project, components.spider
        self.stats = Stats(project.name)
        self._components = components
        politeness = Politeness.of(project)
        self._frontier = frontier or make_frontier(project, politeness, fresh=fresh)
        self._throttle = Throttler(
            politeness, enabled=project.throttle.enabled, max_delay=project.throttle.max_delay
        )
        self._robots: Robots | None = None
        self._fetcher = fetcher
        self._record, self._replay = record, replay
        self._seeds, self._failures = seeds, failures
        self._reporter = Reporter(self.stats, self.spider, spider_origin(pm, self.spider))
        self._events = Events(pm, self._reporter.plugin_failed)
        self._reporter.crawl_error = self._events.crawl_error
        self._items = ItemPipeline(
            components.exporters,
            self._events.item_scraped,
            self.stats,
            self.spider,
            max_items=project.max_items,
            report=self._reporter.report,
            stop=self.stop,
        )
        self._commits = Committer(self._frontier, self._items, self.stats)
        self._admission = Admission(
            project, self.stats, self.spider.name, durable=self._frontier.durable
        )
        self._admit = self._admission.admit
        self._retry = RetryPolicy(project.retries, project.backoff.base, project.backoff.max)
        self._idle = Idle()
        self._fetch: Handler | None = None
        self._active = 0  # leases being handled, plus the seeder while it runs
        self._claimed = 0
        self._stopping: str | None = None
        self._seeder = Seeder(
            self._start_requests,
            self._schedule,
            self._frontier,
            self._reporter,
            spider=self.spider.name,
            close=self.stop,
        )
        self._seeding: asyncio.Task[None] | None = None

    def stop(self, reason: str) -> None:
        """Stop claiming requests; those in flight finish and the crawl ends."""
        if self._stopping is None:
            self._stopping = reason
            self._idle.wake_all()
            self._seeder.stop()
            if self._seeding is not None:
                self._seeding.cancel()

    @property
    def in_flight(self) -> int:
        """Requests being fetched or parsed right now."""
        return self._active - (self._seeding is not None and not self._seeding.done())

    def snapshot(self) -> Snapshot:
        """Return the crawl's counters now, for progress reports."""
        stats, counts = self.stats, self._frontier.counts()
        return Snapshot(
            time.monotonic() - stats.clock_start,
            stats.pages,
            stats.items,
            counts.pending,
            counts.delayed,
            self.in_flight,
            dict(stats.errors),
            self._throttle.slowed(),
        )

    async def run(self) -> Stats:
        """Crawl until the frontier is exhausted or ``stop()``; return the stats."""
        try:
            await self._run()
        except CrawlAborted as exc:
            if not self.stats.elapsed:  # it failed before the crawl began
                self.stats.finish("aborted")
            exc.stats = self.stats
            raise
        return self.stats

    async def _run(self) -> None:
        try:
            async with AsyncExitStack() as stack:
                saved = await open_frontier(self._frontier, stack, self.project.name)
                if saved.finished and self._seeds is None:
                    log.warning(
                        "%s: this crawl is already finished (%d requests settled); "
                        "`fw run --fresh` starts it over",
                        self.project.name,
                        saved.settled,
                    )
                    self.stats.finish("already finished")
                    return
                open_exports(stack, self._components.exporters, self._items, self._commits, saved)
                if self._failures is not None:
                    # Kept when continuing after a crash, or retrying: until each of its
                    # requests is settled, lest a stop or a crash lose the others.
                    self._failures.start(keep=saved.resumed or self._seeds is not None)
                    stack.callback(self._failures.close)
                await self._open_fetcher(stack)
                await self._crawl()
        except BaseExceptionGroup as group:
            # The task group wraps what a worker raised: report the first cause plainly.
            raise _first(group) from group

    async def _open_fetcher(self, stack: AsyncExitStack) -> None:
        fetcher = self._fetcher or downloader(self.project, self._components, self.stats)
        self._fetch = await open_fetcher(
            stack, fetcher, self._components, record=self._record, replay=self._replay
        )
        if self.project.robots == "obey":
            self._robots = Robots(self._fetch, user_agent(self.project), self._crawl_delay)

    async def _crawl(self) -> None:
        await self._events.crawl_started(project=self.project, spider=self.spider)
        try:
            async with asyncio.TaskGroup() as tasks:
                self._active += 1  # the seeder counts as work until it is done
                self._seeding = tasks.create_task(self._seed())
                tasks.create_task(self._commits.run())
                workers = [
                    tasks.create_task(self._worker()) for _ in range(self.project.concurrency.total)
                ]
                await asyncio.wait(workers)
                self._commits.close()  # the last pages are settled, then the crawl ends
        except BaseException:
            self._stopping = self._stopping or "aborted"
            raise
        finally:
            self.stats.finish(self._stopping)
            self.stats.left = self._frontier.counts()
            self.stats.throttled = self._throttle.throttled()
            self.stats.robots_fetched = self._robots.fetched if self._robots else 0
            if self._failures is not None:
                self._failures.close()  # now, so that the count is what the file lists
                if self._failures.count:
                    self.stats.failures = (self._failures.count, str(self._failures.path))
            await self._events.crawl_finished(
                project=self.project, spider=self.spider, stats=self.stats
            )

    # ---------------------------------------------------------------------------------------
    # Scheduling
    # ---------------------------------------------------------------------------------------

    async def _seed(self) -> None:
        try:
            await self._seeder.run()
        finally:
            self._active -= 1
            self._idle.wake_all()  # if nothing was seeded, workers must see the crawl end

    def _start_requests(self) -> CallbackResult:
        """The spider's start requests, or those --retry-failed tries again.

        A durable frontier has seen every retried request: they must pass its dedup.
        """
        if self._seeds is None:
            return self.spider.start_requests()
        durable = self._frontier.durable
        return [r.replace(dont_filter=True) if durable else r for r in self._seeds]

    async def _schedule(self, requests: Sequence[Request]) -> None:
        """Add requests straight to the frontier (start requests, errback requests)."""
        admitted = self._admit(requests)
        if admitted:
            await self._scheduled(await self._frontier.add(admitted), len(admitted))

    async def _scheduled(self, new: list[Request], admitted: int) -> None:
        """Account for requests the frontier accepted, and wake a worker for them."""
        self.stats.requests += len(new)
        self.stats.filtered["duplicate"] += admitted - len(new)
        if new:
            self._idle.wake_one()
        if self._events.request_scheduled:
            for request in new:
                await self._events.request_scheduled(request=request, spider=self.spider)

    # ---------------------------------------------------------------------------------------
    # Workers
    # ---------------------------------------------------------------------------------------

    async def _worker(self) -> None:
        try:
            while (lease := await self._next_lease()) is not None:
                try:
                    await self._handle(lease)
                finally:
                    self._active -= 1
        finally:
            self._idle.wake_all()  # whoever sleeps must see that the crawl may be over

    async def _next_lease(self) -> Lease | None:
        """Claim the next request, sleeping while none is ready; None when the crawl is over."""
        while self._stopping is None:
            got = await self._frontier.claim()
            if self._stopping is not None:  # stopped while claiming: hand it back unfetched
                if isinstance(got, Lease):
                    with contextlib.suppress(LeaseLost):  # then it is back already
                        await self._frontier.retry(got, got.request, 0.0)
                return None
            if isinstance(got, Lease):
                return self._took(got)
            if got is None and self._active == 0:
                return None
            await self._idle.wait(None if got is None or math.isinf(got) else got)
        return None

    def _took(self, lease: Lease) -> Lease:
        self._active += 1
        self._claimed += 1
        if self.project.max_pages and self._claimed >= self.project.max_pages:
            self.stop("max_pages reached")
        self._seeder.claimed()
        self._admission.queued(lease.request)
        self._idle.wake_one()  # more may be ready; the woken worker checks
        return lease

    async def _handle(self, lease: Lease) -> None:
        """Handle one leased request and settle its lease exactly once."""
        try:
            settle = await self._process(lease)
        except CrawlAborted:
            raise
        except Exception as exc:  # a bug, in fw or in a plugin that broke its contract
            log.error(
                "internal_error: %s: %s (%s)",
                type(exc).__name__,
                exc,
                lease.request.url,
                exc_info=exc,
            )
            self.stats.errors["internal_error"] += 1
            settle = partial(self._settle, lease, [], [], "internal_error")
        try:
            await settle()
        except LeaseLost:  # it expired while we worked: another worker has the request now
            log.warning(
                "lease of %s expired before it was settled; another worker took it over",
                lease.request.url,
            )
            self.stats.errors["lease_lost"] += 1

    async def _process(self, lease: Lease) -> Settle:
        """Fetch and parse one request; return how its lease is to be settled."""
        request = lease.request
        assert self._fetch is not None
        if self._robots is not None and not await self._robots.allows(request):
            self.stats.filtered["robots"] += 1
            return partial(self._settle, lease, [], [])
        clock = asyncio.get_running_loop().time
        started = clock()
        try:
            try:
                response = await self._fetch(request)
            except FetchError as exc:
                if exc.kind == "timeout":  # a host too slow to answer: give it air
                    await self._pace(lease.host, self._throttle.timed_out(lease.host))
                raise
            delay = self._throttle.observe(lease.host, response.status, clock() - started)
            if delay is not None:
                await self._pace(lease.host, delay)
            self.stats.response(lease.host, response.status, len(response.body))
            if self._events.response_received:
                await self._events.response_received(response=response, spider=self.spider)
            redirect = redirect_of(
                response, max_redirects=self.project.max_redirects, offsite=self._admission.offsite
            )
            if redirect is not None:
                return partial(self._settle, lease, [], self._admit([redirect]))
            check_status(response, self.spider.allowed_status)
        except IgnoreRequest:
            self.stats.filtered["ignored"] += 1
            return partial(self._settle, lease, [], [])
        except FetchError as exc:
            return await self._failed(lease, exc)
        await parse_big(response)
        items, requests = await self._callback(request, request.callback, response)
        items = await self._items.accept(items, response)
        return partial(self._settle, lease, items, self._admit(_deeper(requests, request)))

    async def _pace(self, host: str, delay: float | None) -> None:
        """Tell the frontier the delay adaptive throttling chose for ``host``."""
        if delay is not None:
            await self._frontier.tune(host, delay=delay)

    async def _crawl_delay(self, host: str, seconds: float) -> None:
        """Make a robots.txt Crawl-delay the host's least delay."""
        delay = self._throttle.raise_floor(host, seconds)
        if delay is not None:
            self.stats.crawl_delays[host] = seconds
            log.info("%s asks for %gs between requests (robots.txt Crawl-delay)", host, seconds)
            await self._frontier.tune(host, delay=delay)

    async def _settle(
        self,
        lease: Lease,
        items: list[dict[str, Any]],
        admitted: list[Request],
        failure: str | None = None,
    ) -> None:
        """Export the page's (or errback's) items, then settle the lease as done (or failed
        for ``failure``) with the requests it discovered."""
        with self._admission.unless_lost(admitted):
            new = await self._commits.commit(Settlement(lease, admitted, failure), items)
        if self._failures is not None:
            self._failures.settled(lease.request)
        await self._scheduled(new, len(admitted))

    async def _failed(self, lease: Lease, error: FetchError) -> Settle:
        """Retry a failed request after a backoff, or count it failed and run its errback."""
        request = lease.request
        if error.retry_after:  # the server said when to come back: the whole host waits
            await self._frontier.tune(lease.host, pause=self._retry.rest(error.retry_after))
        delay = self._retry.delay(request.retries, error.retry_after) if error.retryable else None
        if delay is not None:
            self.stats.retries += 1
            log.debug("retrying in %.2fs (%s): %s", delay, error.kind, request.url)
            return partial(
                self._frontier.retry, lease, request.replace(retries=request.retries + 1), delay
            )
        if error.redirect_to:
            self.stats.redirected(lease.host, host_of(error.redirect_to))
        await self._reporter.report(error, error.kind, request, str(error))
        if self._failures is not None:
            self._failures.record(request, error.kind, str(error))
        items: list[dict[str, Any]] = []
        requests: list[Request] = []
        if request.errback:
            items, requests = await self._callback(request, request.errback, request, error)
            items = await self._items.accept(items, None)
        return partial(
            self._settle, lease, items, self._admit(_deeper(requests, request)), error.kind
        )

    async def _callback(
        self, request: Request, name: str | None, *args: Any
    ) -> tuple[list[dict[str, Any]], list[Request]]:
        """Run a spider callback, report what went wrong in it, and return what it found."""
        outcome = await run_callback(self.spider, name, *args)
        for kind, error, message in outcome.problems:
            await self._reporter.report(error, kind, request, message)
            if self._failures is not None and isinstance(args[0], Response):
                self._failures.record(request, kind, message)  # the page's output is lost
        if outcome.close is not None:
            self.stop(f"closed by spider: {outcome.close}")
        return outcome.items, outcome.requests


def _deeper(requests: list[Request], parent: Request) -> list[Request]:
    """Mark requests found while handling ``parent`` as one level deeper."""
    for request in requests:
        request.depth = parent.depth + 1
    return requests


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    """Return the first leaf exception of a (possibly nested) exception group."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
