"""What item steps download (``context.fetch``): real requests, paced per host like pages.

A step's ``fetch(request)`` queues the request in a frontier of its own, in memory, and
waits. ``run()``, one task of the crawl, leases each request when its host may be visited
— per-host concurrency, delay and rate, robots.txt ``Crawl-delay`` and throttling, from
the same settings and the same ``Pace`` as pages — and hands the lease to the step that
waits for it, which then fetches it in its own task: robots.txt, the middlewares, the
downloader; redirects followed to any host, failures retried with backoff through the
queue, a final failure counted and raised as ``FetchError``.

Why not the crawl's frontier: the item waits in this process, and its page is
acknowledged only once the item is exported; a persistent frontier would keep a download
no one waits for any more after a crash (the page is fetched again, and asks again), and
another worker of a shared frontier could lease a download this process waits for.

Downloads do not count against ``max_pages``, nor are they checked against
``allowed_domains``: images and files often live on another host.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections.abc import Awaitable, Callable

from framework.crawl.failures import Failures
from framework.crawl.stats import Stats
from framework.errors import FetchError, IgnoreRequest
from framework.fetch.downloader import MAX_SIZE
from framework.fetch.politeness import Pace
from framework.fetch.retry import RetryPolicy
from framework.fetch.robots import Robots
from framework.fetch.stalls import Stalls
from framework.fetch.statuses import check_status, redirect_of
from framework.frontier import Frontier, Lease, Settlement
from framework.http import Request, Response
from framework.http.urls import Offsite, shown_url, unfetchable
from framework.middleware import Handler

__all__ = ["Downloads", "sharing_slots"]

log = logging.getLogger("fw")

#: The meta key that ties a queued download, its retries and redirects to its waiter.
_WAITER = "fw_download"
#: Redirects of a download may go to any host: a CDN is seldom in ``allowed_domains``.
_ANYWHERE = Offsite(())


class Downloads:
    """Queue, pace and fetch the requests item steps ask for; ``run()`` hands out leases."""

    def __init__(
        self,
        queue: Frontier,
        fetch: Handler,
        robots: Robots | None,
        pace: Pace,
        stalls: Stalls,
        retry: RetryPolicy,
        stats: Stats,
        failures: Failures,
        *,
        max_redirects: int,
        received: Callable[[Response], Awaitable[None]] | None = None,
    ) -> None:
        self._queue, self._fetch, self._robots = queue, fetch, robots
        self._pace, self._stalls, self._retry = pace, stalls, retry
        self._stats, self._failures, self._max_redirects = stats, failures, max_redirects
        self._received = received  # the response_received hooks, if any plugin has one
        self._waiters: dict[int, asyncio.Future[Lease]] = {}
        self._tokens = itertools.count(1)
        self._changed = asyncio.Event()  # a request was queued, or a host slot freed
        self._closing = False

    # ---------------------------------------------------------------------------------------
    # The dispatcher
    # ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Lease each queued download when its host allows it, until ``close()``."""
        while not self._closing:
            self._changed.clear()  # before claiming: a change meanwhile wakes the wait below
            got = await self._queue.claim()
            if isinstance(got, Lease):
                await self._hand(got)
                continue
            wait = None if got is None or math.isinf(got) else got
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._changed.wait()

    def close(self) -> None:
        """Let ``run()`` end: no step waits for a download any more."""
        self._closing = True
        self._changed.set()

    async def _hand(self, lease: Lease) -> None:
        """Give a lease to the step waiting for it; settle it at once if none waits."""
        waiter = self._waiters.get(lease.request.meta[_WAITER])
        if waiter is not None and not waiter.done():
            waiter.set_result(lease)
        else:  # its step was cancelled (the crawl was cut short): nothing to fetch
            await self._done(lease)

    # ---------------------------------------------------------------------------------------
    # A step's download
    # ---------------------------------------------------------------------------------------

    async def fetch(self, request: Request, *, max_size: int | None = None) -> Response:
        """Fetch ``request`` for an item step; see ``framework.items.Fetch``."""
        problem = unfetchable(request.url)
        if problem is not None:
            why = "not an http(s) URL" if problem == "scheme" else "not a valid URL"
            await self._failed(FetchError(problem, f"{request.url[:200]!r} is {why}"), request)
        token = next(self._tokens)
        meta = {**request.meta, _WAITER: token}
        if max_size is not None:
            meta[MAX_SIZE] = max_size
        # Never deduplicated: two steps may want one file, and the queue forgets nothing.
        queued: Request | None = request.replace(meta=meta, dont_filter=True)
        try:
            while True:
                lease = await self._lease(queued, token)
                outcome = await self._attempt(lease)
                if isinstance(outcome, Response):
                    return outcome
                queued = outcome  # a redirect to queue, or None: queued again to retry
        finally:
            self._waiters.pop(token, None)

    async def _lease(self, request: Request | None, token: int) -> Lease:
        """Queue ``request`` (None: a retry, queued already) and wait for its lease."""
        waiter: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        self._waiters[token] = waiter
        if request is not None:
            await self._queue.add([request])
        self._changed.set()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # leased just as it was cancelled
                await self._done(waiter.result())
            raise

    async def _attempt(self, lease: Lease) -> Response | Request | None:
        """Fetch a leased download once: its response, a redirect to follow, or None
        when it was queued again to retry. Raises ``FetchError`` when it failed for good."""
        request = lease.request
        try:
            if self._robots is not None and not await self._robots.allows(request):
                raise FetchError("robots", "forbidden by robots.txt")
            response = await self._fetched(lease)
            redirect = redirect_of(response, max_redirects=self._max_redirects, offsite=_ANYWHERE)
            if redirect is None:
                check_status(response, ())
        except IgnoreRequest:
            error = FetchError("ignored", "a middleware ignored the download")
            await self._done(lease, error.kind)
            await self._failed(error, request)
        except FetchError as error:
            if await self._again(lease, error):
                return None
            await self._done(lease, error.kind)
            await self._failed(error, request)
        except BaseException:  # cancelled, or a bug: the host's slot must not stay taken
            await self._done(lease)
            raise
        await self._done(lease)
        return response if redirect is None else redirect

    async def _fetched(self, lease: Lease) -> Response:
        """Fetch through the middlewares; tell the pace how the host answered."""
        clock = asyncio.get_running_loop().time
        started, held = clock(), self._stalls.held
        try:
            response = await self._fetch(lease.request)
        except FetchError as exc:
            if exc.kind == "timeout":
                await self._pace.timed_out(lease.host)
            raise
        latency = clock() - started - self._stalls.held_since(started, held)
        await self._pace.replied(lease.host, response.status, latency)
        self._stats.downloaded(lease.host, response.status, len(response.body))
        if self._received is not None:
            await self._received(response)
        return response

    async def _again(self, lease: Lease, error: FetchError) -> bool:
        """Queue a failed download again after a backoff, if it may be retried."""
        request = lease.request
        if error.retry_after:  # the server said when to come back: the whole host waits
            await self._pace.rest(lease.host, self._retry.rest(error.retry_after))
        delay = self._retry.delay(request.retries, error.retry_after) if error.retryable else None
        if delay is None:
            return False
        self._stats.retried[error.kind] += 1
        log.debug("retrying the download in %.2fs (%s): %s", delay, error.kind, shown_url(request))
        await self._queue.retry(lease, request.replace(retries=request.retries + 1), delay)
        self._changed.set()
        return True

    async def _done(self, lease: Lease, failure: str | None = None) -> None:
        """Settle a lease, freeing its host's slot."""
        await self._queue.settle([Settlement(lease, (), failure)])
        self._changed.set()

    async def _failed(self, error: FetchError, request: Request) -> None:
        """Count and log a download that failed for good, and raise it to the step."""
        message = f"download failed: {error}"
        # Not listed in the failures file: a download alone is nothing to retry.
        await self._failures.report(error, error.kind, request, message)
        raise error


def sharing_slots(fetch: Handler, slots: int) -> Handler:
    """Let pages and downloads share ``concurrency.total``: one slot per request fetched."""
    semaphore = asyncio.Semaphore(slots)

    async def fetch_in_a_slot(request: Request) -> Response:
        async with semaphore:
            return await fetch(request)

    return fetch_in_a_slot
