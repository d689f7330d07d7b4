"""The engine: drive one crawl, request by request, until nothing is left to do.

Workers claim leases from the frontier; each request goes through robots.txt and the
middlewares to the fetcher; a redirect, a retry or a final failure is decided from the
response; a good response goes to the spider's callback; and every lease is settled
exactly once. docs/architecture.md walks these steps module by module.

The engine builds none of its collaborators: the runner (``crawl/runner.py``) builds them
into a ``Crew`` and hands it over. Nothing calls back into the engine: each collaborator
returns a value, and the engine reads two after a step — ``Settler.stop_reason``
(``max_items`` reached, stdout closed) and ``Seeder.close_reason`` (the spider's
``CloseSpider`` while starting). ``stop()`` and ``cut_short()`` are for whoever runs the
engine (the runner, on a signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from framework.config.project import Project
from framework.crawl.admission import WHY, Admission
from framework.crawl.downloads import Downloads
from framework.crawl.failures import Failures
from framework.crawl.idle import Idle
from framework.crawl.progress import Sample
from framework.crawl.seeding import Seeder
from framework.crawl.settle import Accepted, Item, Settler
from framework.crawl.stats import Stats
from framework.errors import CrawlAborted, FetchError, IgnoreRequest, Unchanged
from framework.fetch.downloader import Fetcher
from framework.fetch.parsers import parse_big
from framework.fetch.politeness import Pace
from framework.fetch.retry import RetryPolicy
from framework.fetch.robots import Robots
from framework.fetch.stalls import Stalls
from framework.fetch.statuses import check_status, redirect_of
from framework.frontier import Frontier, Lease, LeaseLost, Settlement, without_once
from framework.hooks.events import Events
from framework.http import Request, Response, is_plugin_callback
from framework.http.urls import shown_url
from framework.middleware import Handler, Middleware, opened
from framework.spider import (
    CallbackOutput,
    PluginCallbacks,
    Spider,
    allowed_status,
    run_callback,
)

__all__ = ["Crew", "Engine", "Handled"]

log = logging.getLogger("fw")


@dataclass(frozen=True)
class Crew:
    """Everything one crawl works with, built by the runner.

    The engine opens and closes what needs it — the frontier, the exports (through the
    settler), the failures file, the fetcher — and drives the rest.
    """

    project: Project
    spider: Spider
    stats: Stats
    frontier: Frontier
    #: Opened by the engine; ``fetch`` is it behind the middlewares.
    fetcher: Fetcher
    fetch: Handler
    #: None when the project ignores robots.txt.
    robots: Robots | None
    pace: Pace
    #: Watches the event loop, so that time a callback held it is charged to no host.
    stalls: Stalls
    retry: RetryPolicy
    admission: Admission
    seeder: Seeder
    settler: Settler
    failures: Failures
    events: Events
    #: The crawl tries an earlier run's failures again (``--retry-failed``).
    retrying: bool = False
    #: The callbacks plugins registered for their own requests.
    callbacks: PluginCallbacks = field(default_factory=PluginCallbacks)
    #: What item steps download, with its task; None when the crawl has no item steps.
    downloads: Downloads | None = None
    #: What ``fetch`` passes through; each is opened after the fetcher, closed before it.
    middlewares: Sequence[Middleware] = ()


class _Kept(NamedTuple):
    """What a callback's output came to once admitted and accepted (``Engine._kept``)."""

    accepted: Accepted
    discovered: list[Request]
    #: What the errbacks of requests the crawl dropped gave, and for which request.
    errbacks: list[tuple[CallbackOutput, Request]]

    async def report_errbacks(self, report: Callable[..., Awaitable[None]]) -> None:
        """Report what went wrong in those errbacks, none of which is listed."""
        for output, request in self.errbacks:
            await report(output, request, listed=False)


class Handled(NamedTuple):
    """What handling one leased request came to, and so how its lease is settled."""

    #: The items to export (accepted already).
    items: Sequence[Item] = ()
    #: The requests found, admitted already.
    discovered: Sequence[Request] = ()
    #: Why the request failed for good; None if it was done.
    failure: str | None = None
    #: The request to try again after ``delay`` seconds, instead of settling the lease.
    retry: Request | None = None
    delay: float = 0.0


_NOTHING = Handled()


class Engine:
    """Run one crawl of one project; ``stop()`` ends it early but cleanly."""

    def __init__(self, crew: Crew) -> None:
        self._crew = crew
        self.project, self.spider, self.stats = crew.project, crew.spider, crew.stats
        self._frontier, self._fetch, self._events = crew.frontier, crew.fetch, crew.events
        self._admission, self._settler, self._failures = crew.admission, crew.settler, crew.failures
        self._idle = Idle()
        self._active = 0  # leases being handled, plus the seeder while it runs
        self._sent = 0  # requests that went to the fetcher, for max_pages
        self._narrowing_said = False  # warned of saved requests allowed_domains leaves out
        self._stopping: str | None = None
        #: Set once what is left is closing the exports and the frontier: work of fw's own,
        #: which may hold the loop a while (a CSV's header completed), never a plugin's.
        self.closing = False
        self._seeding: asyncio.Task[None] | None = None  # hands start requests over
        self._pulling: asyncio.Task[None] | None = None  # runs start_requests
        self._processing: set[asyncio.Task[Any]] = set()  # workers fetching or parsing
        self._cut: set[asyncio.Task[Any]] = set()  # those cut_short() cancelled
        #: The running loop, once ``run()`` has started: looking it up costs a system call
        #: (``getpid``) on Python 3.11, and the hot path would do it several times a page.
        self._loop: asyncio.AbstractEventLoop | None = None

    def stop(self, reason: str) -> None:
        """Stop claiming requests; those in flight finish and the crawl ends."""
        if self._stopping is None:
            self._stopping = reason
            self._idle.wake_all()
            self._crew.seeder.stop()
            for task in (self._pulling, self._seeding):
                if task is not None and task is not asyncio.current_task():
                    task.cancel()

    def cut_short(self) -> int:
        """Cancel the requests in flight; their leases go back to the frontier unsettled.

        Call it after ``stop()``, once the requests in flight have had their time. Return
        how many were cut short.
        """
        for task in self._processing - self._cut:
            self._cut.add(task)
            task.cancel()
        return len(self._cut)

    def quit_now(self) -> None:
        """Finish the exports at once, before the process exits without cleaning up."""
        self._settler.close_now()

    @property
    def in_flight(self) -> int:
        """Requests being fetched or parsed right now."""
        return self._active - (self._seeding is not None and not self._seeding.done())

    def sample(self) -> Sample:
        """Return the crawl's counters now, for progress reports."""
        stats, counts = self.stats, self._frontier.counts()
        return Sample(
            time.monotonic() - stats.clock_start,
            stats.pages,
            stats.items,
            counts.pending,
            counts.delayed,
            self.in_flight,
            dict(stats.errors),
            self._crew.pace.slowed(),
        )

    async def run(self) -> Stats:
        """Crawl until the frontier is exhausted or ``stop()``; return the stats.

        Raises ``CrawlAborted`` when the crawl cannot go on; ``stats.aborted`` says why.
        """
        self._loop = asyncio.get_running_loop()
        try:
            await self._run()
        except CrawlAborted as exc:
            self.stats.abort(str(exc))
            raise
        finally:
            if not self.stats.elapsed:  # it ended before it began: cancelled while opening
                self.stats.finish(self._stopping or "aborted")
        return self.stats

    async def _run(self) -> None:
        try:
            async with AsyncExitStack() as stack:
                try:
                    if await self._open(stack):
                        await self._crawl()
                finally:
                    self.closing = True
        except BaseExceptionGroup as group:
            # The task group wraps what a worker raised: report the first cause plainly.
            raise _first(group) from group

    # ---------------------------------------------------------------------------------------
    # Opening and the crawl's tasks
    # ---------------------------------------------------------------------------------------

    async def _open(self, stack: AsyncExitStack) -> bool:
        """Open the frontier, the exports, the failures file and the fetcher, in that
        order, each closed by ``stack``; return False if there is nothing to crawl."""
        crew = self._crew
        saved = await self._frontier.open()
        stack.push_async_callback(self._frontier.close)
        if saved.finished and not crew.retrying:
            log.warning(
                "%s: this crawl is already finished (%d requests settled); "
                "`fw run --fresh` starts it over",
                self.project.name,
                saved.settled,
            )
            self.stats.finish("already finished")
            # An export the last run left unfinished (a CSV header a full disk cut short) is
            # finished now, or the run says it cannot be; the others are left as they are.
            self._settler.finish_leftovers(stack, saved.checkpoints)
            return False
        if saved.renewed:
            log.info(
                "%s: the saved crawl was finished: round %d starts from the start requests",
                self.project.name,
                saved.renewed,
            )
        if saved.resumed and not saved.finished:
            self.stats.resumed = True
            counts = self._frontier.counts()
            log.info(
                "%s: continuing the saved crawl: %d requests settled, %d queued, %d to retry",
                self.project.name,
                saved.settled,
                counts.pending,
                counts.delayed,
            )
        if crew.retrying and not self._frontier.persistent:
            log.warning(
                "%s: --retry-failed with a memory frontier knows nothing of what the run it "
                "retries fetched: the links the retried pages lead to are fetched, and their "
                "items exported, again; a sqlite:// frontier retries exactly",
                self.project.name,
            )
        self._settler.open(stack, saved)
        await self._settler.began()
        # Kept when continuing after a crash, or retrying: until each of its requests is
        # settled, lest a stop or a crash lose the others.
        self._failures.start_listing(keep=saved.resumed or crew.retrying)
        stack.callback(self._failures.close_listing)
        await stack.enter_async_context(crew.fetcher)
        await stack.enter_async_context(opened(crew.middlewares, self.project))
        return True

    async def _crawl(self) -> None:
        await self._events.crawl_started(
            project=self.project, spider=self.spider, memory=self._frontier.memory
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                # First: a start_requests that blocks in its first batch must be watched too.
                watching = tasks.create_task(self._crew.stalls.run())
                self._active += 1  # the seeder counts as work until it is done
                # Before the workers: what start_requests yields before it first waits (a
                # list, say) is queued before they claim anything.
                self._pulling = tasks.create_task(self._crew.seeder.pull())
                self._seeding = tasks.create_task(self._seed())
                tasks.create_task(self._settler.run())
                downloads = self._crew.downloads
                if downloads is not None:  # the items of the workers' pages may wait for them
                    tasks.create_task(downloads.run())
                workers = [
                    tasks.create_task(self._worker()) for _ in range(self.project.concurrency.total)
                ]
                await asyncio.wait(workers)
                self._settler.close()  # the last pages are settled, then the crawl ends
                if downloads is not None:
                    downloads.close()
                watching.cancel()
        except BaseException:
            self._stopping = self._stopping or "aborted"
            raise
        finally:
            try:
                if self._crew.retrying:
                    await self._failures.left_behind(self._frontier.left_behind())
            finally:
                self._finish()
                await self._events.crawl_finished(
                    project=self.project, spider=self.spider, stats=self.stats
                )

    def _finish(self) -> None:
        """Stop the clock and note what the crawl left and who slowed it down."""
        stats, crew = self.stats, self._crew
        stats.finish(self._stopping)
        stats.left = self._frontier.counts()
        stats.throttled, stats.crawl_delays = crew.pace.throttled(), dict(crew.pace.crawl_delays)
        stats.robots_fetched = crew.robots.fetched if crew.robots else 0
        stats.stalls = dict(crew.stalls.culprits)
        left = stats.left
        drained = not (left.pending or left.delayed or left.leased)
        stats.failures = self._failures.close_listing(drained=drained)  # the count it lists

    # ---------------------------------------------------------------------------------------
    # Scheduling
    # ---------------------------------------------------------------------------------------

    async def _seed(self) -> None:
        seeder = self._crew.seeder
        try:
            async with contextlib.aclosing(seeder.batches()) as batches:
                async for batch in batches:
                    if seeder.close_reason is not None:  # stop first: no start request runs
                        self.stop(f"closed by spider: {seeder.close_reason}")
                    await self._schedule(batch)
            if seeder.close_reason is not None:
                self.stop(f"closed by spider: {seeder.close_reason}")
        finally:
            self._active -= 1
            self._idle.wake_all()  # if nothing was seeded, workers must see the crawl end

    async def _schedule(self, requests: Sequence[Request]) -> None:
        """Add start requests straight to the frontier."""
        self.stats.starts += len(requests)
        admitted = self._admission.admit(requests, starting=True)
        if admitted:
            new = await self._frontier.add(admitted)
            if self._crew.retrying:  # the frontier stores them without their ONCE key
                if len(new) < len(admitted):
                    self._retried_before(admitted, new)
                new = [without_once(request) for request in new]
            await self._scheduled(new, len(admitted))

    def _retried_before(self, admitted: Sequence[Request], new: list[Request]) -> None:
        """Note the retried requests a persistent frontier already had: a retry killed
        part-way queued them, and they are settled or resumed like the rest of its queue."""
        queued = {id(request) for request in new}
        before = [request for request in admitted if id(request) not in queued]
        for request in before:
            self._failures.queued_before(request)
        log.info(
            "%s: %d of the listed failures were queued already (by a retry killed part-way, "
            "or by another worker's): they are not queued again",
            self.project.name,
            len(before),
        )

    async def _scheduled(self, new: list[Request], admitted: int) -> None:
        """Account for requests the frontier accepted, and wake a worker for them."""
        self.stats.requests += len(new)
        if admitted > len(new):  # no zero count in the stats
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
        self._crew.seeder.claimed()
        self._admission.queued(lease.request)
        self._idle.wake_one()  # more may be ready; the woken worker checks
        return lease

    async def _handle(self, lease: Lease) -> None:
        """Handle one leased request and settle its lease exactly once."""
        try:
            handled = await self._cancellable(lease)
        except CrawlAborted:
            raise
        except Exception as exc:  # a bug, in fw or in a plugin that broke its contract
            log.error(
                "internal_error: %s: %s (%s)",
                type(exc).__name__,
                exc,
                shown_url(lease.request),
                exc_info=exc,
            )
            self.stats.errors["internal_error"] += 1
            handled = Handled(failure="internal_error")
        self._halt_if_asked()
        try:
            await self._settle(lease, handled)
        except LeaseLost:  # it expired while we worked: another worker has the request now
            log.warning(
                "lease of %s expired before it was settled; another worker took it over",
                shown_url(lease.request),
            )
            self.stats.errors["lease_lost"] += 1
            self._admission.forget(handled.discovered)  # nothing queued them
        self._halt_if_asked()

    async def _cancellable(self, lease: Lease) -> Handled:
        """Process a request; one ``cut_short()`` cancels is handed back, to be fetched again."""
        task = asyncio.current_task(self._loop)
        assert task is not None
        self._processing.add(task)
        try:
            return await self._process(lease)
        except asyncio.CancelledError:
            if task not in self._cut or task.uncancel() > 0:  # cancelled from outside too
                raise
            self.stats.cut_short += 1
            return Handled(retry=lease.request)
        finally:
            self._processing.discard(task)
            self._cut.discard(task)

    async def _settle(self, lease: Lease, handled: Handled) -> None:
        """Queue the request again, or settle its lease with what its page found."""
        if handled.retry is not None:
            await self._frontier.retry(lease, handled.retry, handled.delay)
            return
        settlement = Settlement(lease, handled.discovered, handled.failure)
        new = await self._settler.commit(settlement, list(handled.items))
        if new is None:  # its items could not be written: the next run fetches it again
            await self._frontier.retry(lease, lease.request, 0.0)
            return
        await self._scheduled(new, len(handled.discovered))

    def _halt_if_asked(self) -> None:
        if self._settler.stop_reason is not None:
            self.stop(self._settler.stop_reason)

    async def _narrowed(self, request: Request) -> Handled:
        """Drop a request queued before allowed_domains left out its host, running its
        errback as for one a page yielded offsite; say so once: changing start_urls
        changes allowed_domains too, unless the project sets it."""
        if request.errback:
            self.stats.filtered["offsite"] += 1
            return await self._errback(request, _unfetched_as("offsite"), failed=False)
        if not self._narrowing_said:
            self._narrowing_said = True
            log.warning(
                "dropping requests the saved crawl queued whose hosts allowed_domains now "
                "leaves out, starting with %s (unless set, allowed_domains follows the hosts "
                "of start_urls)",
                shown_url(request),
            )
        self.stats.filtered["offsite"] += 1
        return _NOTHING

    # ---------------------------------------------------------------------------------------
    # Handling one request: fetch, decide, parse
    # ---------------------------------------------------------------------------------------

    async def _unless_robots_allow(self, lease: Lease, robots: Robots) -> Handled | None:
        """Ask robots.txt: None if it allows the request, else what the request came to. A
        plugin failing on the way to robots.txt fails the request as any fetch's failure."""
        request = lease.request
        try:
            if await robots.allows(request):
                return None
        except FetchError as exc:
            return await self._failed(lease, exc)
        if not request.depth:  # a crawl whose every start request is refused did nothing
            self._admission.forbidden_start(request)
        return await self._filtered(request, FetchError("robots", "robots.txt forbids it"))

    async def _process(self, lease: Lease) -> Handled:
        """Fetch and parse one request; return what it came to."""
        request, robots = lease.request, self._crew.robots
        if not self._admission.offsite.allows(request.url):  # queued before it was narrowed
            await self._frontier.refund(lease)  # nothing is fetched: the host's turn is not
            return await self._narrowed(request)
        if robots is not None:
            refused = await self._unless_robots_allow(lease, robots)
            if refused is not None:
                return refused
        if not self._spend():  # max_pages went to requests claimed with this one
            return Handled(retry=request)  # handed back unfetched, as when stopping
        try:
            response = await self._fetched(lease)
            redirect = redirect_of(
                response,
                max_redirects=self.project.max_redirects,
                offsite=self._admission.offsite,
            )
            if redirect is not None:
                return await self._redirected(request, redirect)
            check_status(response, allowed_status(self.spider, request, self._crew.callbacks))
        except IgnoreRequest as exc:
            return await self._filtered(request, FetchError("ignored", str(exc) or "ignored"))
        except Unchanged as exc:  # no callback: the links the page had last time
            self.stats.handled += 1
            noted = self._capped(
                CallbackOutput(requests=list(exc.requests)), request.url, request.callback
            )
            found = _deeper(noted.requests, request, request.callback)
            return Handled(discovered=self._admission.admit(found))
        except FetchError as exc:
            return await self._failed(lease, exc)
        await parse_big(response)
        return await self._parsed(request, response)

    async def _parsed(self, request: Request, response: Response) -> Handled:
        """Run the request's callback on its page; return what the page came to."""
        output = await self._callback(request.callback, response)
        kept = await self._kept(output, request, request.callback, response)
        if kept is None:  # max_items: the next run fetches the page again, whole, and
            return Handled(retry=request)  # reports what went wrong in it then
        failure = None
        if output.problems:  # a page's output is lost: listed, to be retried
            await self._report(output, request, listed=True)
            failure = output.problems[0][0]  # failed, as listed: a retry takes it over
        else:
            self.stats.handled += 1
        await kept.report_errbacks(self._report)
        # Not whole: a page cut short (max_requests_per_page) is parsed again next round.
        whole = (
            not (output.problems or output.dropped or kept.accepted.invalid)
            and output.close is None
        )
        if whole and self._events.page_parsed and self._settler.stop_reason is None:
            await self._events.page_parsed(
                request=request, response=response, requests=output.requests, spider=self.spider
            )
        return Handled(kept.accepted.items, kept.discovered, failure)

    async def _kept(
        self,
        output: CallbackOutput,
        request: Request,
        callback: str | None,
        response: Response | None,
    ) -> _Kept | None:
        """Admit what a callback on ``request`` found, running the errbacks of those the
        crawl drops, and accept its items with theirs; None for a request ``max_items``
        hands back, whose discoveries are forgotten."""
        found = _deeper(output.requests, request, callback)
        discovered, errbacks = await self._admitted(found, request, callback)
        items = output.items
        if errbacks:  # rare: no copy of the page's items otherwise
            items = [*items, *(item for ran, _ in errbacks for item in ran.items)]
        asked = request if response is None else None  # a page's items go with its response
        accepted = await self._settler.accept(items, response, request=asked)
        if accepted is None:
            self._admission.forget(discovered)
            return None
        return _Kept(accepted, discovered, errbacks)

    async def _admitted(
        self, found: list[Request], parent: Request, callback: str | None
    ) -> tuple[list[Request], list[tuple[CallbackOutput, Request]]]:
        """Admit what ``callback`` found handling ``parent``; run the errbacks of those the
        crawl will not fetch (offsite, too deep), as for one robots.txt forbids: the spider
        keeps what it knew (the Douban spider, a film from its listing). Return the requests
        admitted, those errbacks' too, and what each errback gave, its items to go with
        ``parent``'s. A request an errback yields that the crawl drops runs no errback again."""
        unfetched: list[tuple[Request, str]] = []
        discovered = self._admission.admit(
            found, found_on=parent.url, callback=callback, unfetched=unfetched
        )
        errbacks = []
        for request, kind in unfetched:
            output = await self._callback(request.errback, request, _unfetched_as(kind))
            more = _deeper(output.requests, request, request.errback)
            discovered += self._admission.admit(
                more, found_on=request.url, callback=request.errback
            )
            errbacks.append((output, request))
        return discovered, errbacks

    def _spend(self) -> bool:
        """Count one request going to the fetcher, or to its errback unfetched, against
        ``max_pages``; False if none is left. Counting here, not at claim time, leaves out
        what offsite and robots.txt drop without an errback.
        """
        limit = self.project.max_pages
        if limit is None:
            return True
        if self._sent >= limit:
            return False
        self._sent += 1
        if self._sent == limit:
            self.stop("max_pages reached")
        return True

    async def _fetched(self, lease: Lease) -> Response:
        """Fetch a request through the middlewares; tell the pace how the host answered."""
        assert self._loop is not None, "requests are fetched while the engine runs"
        clock, stalls = self._loop.time, self._crew.stalls
        started, held = clock(), stalls.held
        try:
            response = await self._fetch(lease.request)
        except FetchError as exc:
            if exc.kind == "timeout":
                await self._crew.pace.timed_out(lease.host)
            raise
        except Unchanged as exc:  # still an answer: counted as one
            await self._answered(lease, exc.response, started, held)
            raise
        await self._answered(lease, response, started, held)
        return response

    async def _answered(
        self, lease: Lease, response: Response, started: float, held: float
    ) -> None:
        """Count a response, and tell the pace how fast the host gave it. An answer that
        did not use the network (a cache hit) gives the host's turn back instead, and says
        nothing of the host's speed."""
        assert self._loop is not None, "requests are fetched while the engine runs"
        if response.cached:
            await self._frontier.refund(lease)
        else:
            took = self._loop.time() - started
            latency = took - self._crew.stalls.held_since(started, held)  # not a callback's
            if response.latency is not None:  # a layer's own work (rendering) is not the host's
                latency = min(latency, response.latency)
            await self._crew.pace.replied(lease.host, response.status, latency)
        self.stats.response(lease.host, response.status, len(response.body))
        if self._events.response_received:
            await self._events.response_received(response=response, spider=self.spider)

    async def _failed(self, lease: Lease, error: FetchError) -> Handled:
        """Retry a failed request after a backoff, or count it failed and run its errback."""
        try:
            return await self._retried_or_failed(lease, error)
        finally:
            _let_go(error)  # retried or reported: nothing needs its tracebacks now

    async def _retried_or_failed(self, lease: Lease, error: FetchError) -> Handled:
        request, retry = lease.request, self._crew.retry
        if error.retry_after:  # the server said when to come back: the whole host waits
            await self._crew.pace.rest(lease.host, retry.rest(error.retry_after))
        delay = retry.delay(request.retries, error.retry_after) if error.retryable else None
        if delay is not None:
            self.stats.retried[error.kind] += 1
            log.debug("retrying in %.2fs (%s): %s", delay, error.kind, shown_url(request))
            return Handled(retry=request.replace(retries=request.retries + 1), delay=delay)
        if error.redirect_to:
            self.stats.redirected(request.url, error.redirect_to)
        if not request.errback:
            await self._failures.report(error, error.kind, request, str(error), listed=True)
            return Handled(failure=error.kind)
        return await self._errback(request, error, failed=True)

    async def _redirected(self, request: Request, redirect: Request) -> Handled:
        """Follow a redirect. One to a page the crawl drops (queued or fetched already, too
        deep) runs the request's errback, as for a page robots.txt forbids: the spider
        hears of its request either way (Douban answers a merged film's page with a
        redirect to the other film's)."""
        if not request.errback:  # the usual case: nothing to tell, nothing to count twice
            return Handled(discovered=self._admission.admit([redirect]))
        admitted, dropped = self._admission.admit_one(redirect)
        if dropped is None:
            return Handled(discovered=admitted)
        why = f"redirected to {shown_url(redirect)}, which the crawl does not fetch ({dropped})"
        return await self._errback(request, FetchError(dropped, why), failed=False)

    async def _filtered(self, request: Request, why: FetchError) -> Handled:
        """Count a request fw chose not to fetch (robots.txt forbids it, a middleware
        ignored it): no failure, yet its errback runs, as Scrapy's does, so that a spider
        keeps what it knew (the Douban spider, a film from its listing)."""
        self.stats.filtered[why.kind] += 1
        if not request.errback:
            return _NOTHING
        if not self._spend():  # an errback that yields its request again: max_pages ends it
            return Handled(retry=request)
        return await self._errback(request, why, failed=False)

    async def _errback(self, request: Request, error: FetchError, *, failed: bool) -> Handled:
        """Run the request's errback and take what it found; a ``failed`` request is also
        reported, and listed in the failures file."""
        output = await self._callback(request.errback, request, error)
        kept = await self._kept(output, request, request.errback, None)
        if kept is None:  # max_items: the next run fetches it again, errback and all, so
            return Handled(retry=request)  # it is not a failure of this run
        if failed:
            await self._failures.report(error, error.kind, request, str(error), listed=True)
        await self._report(output, request, listed=False)
        await kept.report_errbacks(self._report)
        return Handled(kept.accepted.items, kept.discovered, error.kind if failed else None)

    async def _callback(self, name: str | None, *args: Any) -> CallbackOutput:
        """Run a spider callback and return what it found and what went wrong in it, to be
        reported once its items are accepted (a page handed back is reported by the run
        that settles it). A ``CloseSpider`` from it stops the crawl at once."""
        output = await run_callback(self.spider, name, *args, plugins=self._crew.callbacks)
        if output.close is not None:
            self.stop(f"closed by spider: {output.close}")
        return self._capped(output, args[0].url, name)

    def _capped(self, output: CallbackOutput, url: str, callback: str | None) -> CallbackOutput:
        """Keep the first ``max_requests_per_page`` requests ``callback`` added on the page
        at ``url`` (or an earlier round noted there); count and name the rest."""
        if dropped := output.cut_to(self.project.max_requests_per_page):
            self._admission.overflowed(url, dropped, callback)
        return output

    async def _report(self, output: CallbackOutput, request: Request, *, listed: bool) -> None:
        """Report what went wrong in a callback; ``listed`` puts the request in the failures
        file, to be retried."""
        for kind, error, message in output.problems:
            await self._failures.report(error, kind, request, message, listed=listed)
            _let_go(error)


def _unfetched_as(kind: str) -> FetchError:
    """The error an errback is given for a request the crawl does not fetch (``WHY``)."""
    return FetchError(kind, f"not fetched: {WHY[kind]}")


def _let_go(error: BaseException) -> None:
    """Drop a reported error's tracebacks, its causes' too: their frames hold the page (its
    body, its tree) in cycles that only a rare full collection would free (``runner.py``
    tunes the collector to run seldom)."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__


def _deeper(requests: list[Request], parent: Request, callback: str | None) -> list[Request]:
    """Mark requests a spider's ``callback`` found while handling ``parent`` as one level
    deeper; those of a plugin's callback keep the depth the plugin gave them."""
    if is_plugin_callback(callback):
        return requests
    for request in requests:
        request.depth = parent.depth + 1
    return requests


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    """Return the first leaf exception of a (possibly nested) exception group."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
