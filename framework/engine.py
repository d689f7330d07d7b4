"""The engine: wires frontier, downloader, spider and exporters together and runs a crawl.

The data flows one way:

1. The spider's start requests are filtered (scheme, offsite, depth) and added to the
   frontier, which drops duplicates.
2. ``concurrency.total`` workers each claim a request whose host may be visited now.
3. The request goes through the middlewares to the downloader, which returns a response.
4. Redirects go back to step 1 as new requests; failures are retried later with backoff
   or counted; a good response goes to the spider's callback.
5. The callback's items pass ``item_scraped`` and go to every exporter; its requests go
   back to step 1, settled together with the request that found them.
6. The crawl ends when the frontier is empty and no request is in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import math
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urljoin

import pluggy

from framework.components import Components
from framework.downloader import Downloader, DownloadSettings
from framework.errors import (
    Blocked,
    CloseSpider,
    CrawlAborted,
    DropItem,
    FetchError,
    HttpError,
    IgnoreRequest,
)
from framework.events import Events
from framework.exporters import Exporter
from framework.frontier import Frontier, HostPolicy, Lease
from framework.frontier.memory import MemoryFrontier
from framework.http import Request, Response
from framework.idle import Idle
from framework.middleware import Handler, chain
from framework.project import Project
from framework.retry import RetryPolicy, parse_retry_after, retryable_status
from framework.spider import results
from framework.stats import Stats
from framework.urls import Offsite, is_fetchable

__all__ = ["Engine"]

log = logging.getLogger("fw")

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CODE_FAILURES = frozenset({"spider_error", "plugin_error", "blocked"})
_SEED_BATCH = 100


class Engine:
    """Run one crawl of one project; ``stop()`` ends it early but cleanly."""

    def __init__(self, project: Project, components: Components, pm: pluggy.PluginManager,
                 *, frontier: Frontier | None = None) -> None:
        self.project, self.spider = project, components.spider
        self.stats = Stats(project.name)
        self._components = components
        self._exporters = components.exporters  # less any whose reader went away
        self._frontier = frontier or MemoryFrontier(
            HostPolicy(project.concurrency.per_domain, project.delay))
        self._events = Events(pm, self._plugin_failed)
        self._offsite = Offsite(project.allowed_domains or ())
        self._retry = RetryPolicy(project.retries, project.backoff.base, project.backoff.max)
        self._idle = Idle()
        self._fetch: Handler | None = None
        self._active = 0  # leases being handled, plus the seeder while it runs
        self._claimed = 0
        self._stopping: str | None = None

    def stop(self, reason: str) -> None:
        """Stop claiming requests; those in flight finish and the crawl ends."""
        if self._stopping is None:
            self._stopping = reason
            self._idle.wake_all()

    @property
    def in_flight(self) -> int:
        """Requests being fetched or parsed right now."""
        return self._active

    async def run(self) -> Stats:
        """Crawl until the frontier is exhausted or ``stop()``; return the stats."""
        project = self.project
        try:
            async with AsyncExitStack() as stack:
                self._open_exporters(stack)
                await self._frontier.open()
                stack.push_async_callback(self._frontier.close)
                downloader = await stack.enter_async_context(Downloader(DownloadSettings(
                    project.concurrency.total, project.timeout, project.max_response_size,
                    project.headers, project.cookies), self._components.parsers))
                self._fetch = chain(self._components.middlewares, downloader.fetch)
                await self._crawl()
        except BaseExceptionGroup as group:
            # The task group wraps what a worker raised; an abort is reported on its own.
            aborted = group.subgroup(CrawlAborted)
            if aborted is None:
                raise
            raise _first(aborted) from group
        return self.stats

    async def _crawl(self) -> None:
        await self._events.crawl_started(project=self.project, spider=self.spider)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._seed())
                for _ in range(self.project.concurrency.total):
                    tasks.create_task(self._worker())
        except BaseException:
            self._stopping = self._stopping or "aborted"
            raise
        finally:
            self.stats.finish(self._stopping)
            await self._events.crawl_finished(project=self.project, spider=self.spider,
                                              stats=self.stats)

    def _open_exporters(self, stack: AsyncExitStack) -> None:
        for exporter in self._components.exporters:
            try:
                exporter.open()
            except Exception as exc:
                raise CrawlAborted(f"exporter {exporter.format} cannot open {exporter.path}: "
                                   f"{_reason(exc)}") from exc
            stack.callback(_close_exporter, exporter)

    # ---------------------------------------------------------------------------------------
    # Scheduling
    # ---------------------------------------------------------------------------------------

    async def _seed(self) -> None:
        """Feed the spider's start requests to the frontier in batches."""
        self._active += 1
        batch: list[Request] = []
        try:
            async for request in results(self.spider.start_requests()):
                if not isinstance(request, Request):
                    await self._report(TypeError(), "spider_error", None,
                                       f"spider {self.spider.name}: start_requests yielded "
                                       f"{type(request).__name__}; expected a Request")
                    continue
                batch.append(request)
                if len(batch) >= _SEED_BATCH:
                    await self._schedule(batch)
                    batch = []
            await self._schedule(batch)
        except Exception as exc:
            await self._spider_error(exc, None, "start_requests")
        finally:
            self._active -= 1
            self._idle.wake_all()  # if nothing was seeded, workers must see the crawl end

    async def _schedule(self, requests: Sequence[Request]) -> None:
        """Add requests straight to the frontier (start requests, errback requests)."""
        admitted = self._admit(requests)
        if admitted:
            await self._scheduled(await self._frontier.add(admitted), len(admitted))

    def _admit(self, requests: Iterable[Request]) -> list[Request]:
        """Keep the requests the crawl may fetch: http(s), on an allowed host, not too deep."""
        admitted, filtered, max_depth = [], self.stats.filtered, self.project.max_depth
        for request in requests:
            if not is_fetchable(request.url):
                filtered["scheme"] += 1
            elif not self._offsite.allows(request.url):
                filtered["offsite"] += 1
            elif max_depth is not None and request.depth > max_depth:
                filtered["depth"] += 1
            else:
                admitted.append(request)
        return admitted

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
        while (lease := await self._next_lease()) is not None:
            try:
                await self._handle(lease)
            finally:
                self._active -= 1

    async def _next_lease(self) -> Lease | None:
        """Claim the next request, sleeping while none is ready; None when the crawl is over."""
        while self._stopping is None:
            got = await self._frontier.claim()
            if isinstance(got, Lease):
                self._active += 1
                self._claimed += 1
                if self.project.max_pages and self._claimed >= self.project.max_pages:
                    self.stop("max_pages reached")
                self._idle.wake_one()  # more may be ready; the woken worker checks
                return got
            if got is None and self._active == 0:
                self._idle.wake_all()
                return None
            await self._idle.wait(None if got is None or math.isinf(got) else got)
        return None

    async def _handle(self, lease: Lease) -> None:
        """Fetch one leased request and settle the lease exactly once."""
        request = lease.request
        assert self._fetch is not None
        try:
            response = await self._fetch(request)
            await self._received(lease, response)
            if (redirect := self._redirect(response)) is not None:
                await self._settle(lease, self._admit(redirect))
                return
            self._check_status(response)
        except IgnoreRequest:
            self.stats.filtered["ignored"] += 1
            await self._frontier.ack(lease, ())
            return
        except FetchError as exc:
            await self._failed(lease, exc)
            return
        items, requests = await self._callback(request, request.callback, response)
        await self._export(items, response)
        for found in requests:
            found.depth = request.depth + 1
        await self._settle(lease, self._admit(requests))

    async def _received(self, lease: Lease, response: Response) -> None:
        self.stats.response(lease.host, response.status, len(response.body))
        if self._events.response_received:
            await self._events.response_received(response=response, spider=self.spider)

    async def _settle(self, lease: Lease, admitted: list[Request]) -> None:
        await self._scheduled(await self._frontier.ack(lease, admitted), len(admitted))

    def _redirect(self, response: Response) -> list[Request] | None:
        """Turn a redirect into a new request, which goes through dedup and offsite again."""
        location = response.headers.get("Location")
        if response.status not in _REDIRECTS or not location:
            return None
        request = response.request
        if request.redirects >= self.project.max_redirects:
            raise FetchError("redirects", f"more than {self.project.max_redirects} redirects")
        target = urljoin(response.url, location.strip())
        if is_fetchable(target) and not self._offsite.allows(target):
            # A failure, not a filter: sites redirect to login walls and challenge hosts,
            # and the spider's errback must get the chance to keep what it knew.
            raise FetchError("offsite_redirect", f"redirected to {target}, outside "
                             f"allowed_domains ({', '.join(self.project.allowed_domains or ())})")
        becomes_get = response.status == 303 or (response.status in (301, 302)
                                                 and request.method == "POST")
        return [request.replace(
            url=target, redirects=request.redirects + 1,
            method="GET" if becomes_get else request.method,
            body=None if becomes_get else request.body)]

    def _check_status(self, response: Response) -> None:
        status = response.status
        if 200 <= status < 300 or status in self.spider.allowed_status:
            return
        retryable = retryable_status(status)
        retry_after = parse_retry_after(response.headers) if retryable else None
        raise HttpError(response, retryable=retryable, retry_after=retry_after)

    async def _failed(self, lease: Lease, error: FetchError) -> None:
        """Retry a failed request after a backoff, or count it failed and run its errback."""
        request = lease.request
        delay = self._retry.delay(request.retries, error.retry_after) if error.retryable \
            else None
        if delay is not None:
            self.stats.retries += 1
            log.debug("retrying in %.2fs (%s): %s", delay, error.kind, request.url)
            await self._frontier.retry(lease, request.replace(retries=request.retries + 1),
                                       delay)
            return
        await self._report(error, error.kind, request, str(error))
        items: list[dict[str, Any]] = []
        requests: list[Request] = []
        if request.errback:
            items, requests = await self._callback(request, request.errback, request, error)
        await self._export(items, None)
        await self._frontier.fail(lease, error.kind)
        for found in requests:
            found.depth = request.depth + 1
        await self._schedule(requests)

    # ---------------------------------------------------------------------------------------
    # Spider and exporters
    # ---------------------------------------------------------------------------------------

    async def _callback(self, request: Request, name: str | None, *args: Any
                        ) -> tuple[list[dict[str, Any]], list[Request]]:
        """Run one spider callback; keep what it yielded even if it raises half-way."""
        method = getattr(self.spider, name or "parse", None)
        items: list[dict[str, Any]] = []
        requests: list[Request] = []
        if not callable(method):
            await self._report(AttributeError(name), "spider_error", request,
                               f"spider {self.spider.name} has no callback {name!r}")
            return items, requests
        try:
            async for result in results(method(*args)):
                if isinstance(result, Request):
                    requests.append(result)
                elif (item := _as_item(result)) is not None:
                    items.append(item)
                elif result is not None:
                    await self._report(TypeError(), "spider_error", request,
                                       f"spider {self.spider.name}: {method.__name__} yielded "
                                       f"{type(result).__name__}; expected a dict item or a "
                                       "Request")
        except CloseSpider as exc:
            self.stop(f"closed by spider: {exc.reason}")
        except Blocked as exc:
            await self._report(exc, "blocked", request, str(exc))
        except Exception as exc:
            await self._spider_error(exc, request, getattr(method, "__name__", str(name)))
        return items, requests

    async def _export(self, items: list[dict[str, Any]], response: Response | None) -> None:
        """Hand each item to ``item_scraped`` and then to every exporter."""
        limit = self.project.max_items
        for item in items:
            if limit is not None and self.stats.items >= limit:
                self.stop("max_items reached")
                return
            if self._events.item_scraped:
                try:
                    await self._events.item_scraped(item=item, response=response,
                                                    spider=self.spider)
                except DropItem as exc:
                    self.stats.dropped += 1
                    log.debug("item dropped (%s): %s", exc, item)
                    continue
            for exporter in self._exporters:
                await self._write(exporter, item)
            self.stats.items += 1
        if limit is not None and self.stats.items >= limit:
            self.stop("max_items reached")

    async def _write(self, exporter: Exporter, item: dict[str, Any]) -> None:
        """Write one item; an exporter that cannot write aborts the crawl."""
        try:
            outcome: Awaitable[None] | None = exporter.write(item)
            if inspect.isawaitable(outcome):
                await outcome
        except BrokenPipeError:
            if exporter.path != "-":
                raise CrawlAborted(f"exporter {exporter.format} ({exporter.path}) failed: "
                                   "Broken pipe") from None
            # `fw run -o - | head` is done reading: stop quietly, as Unix tools do.
            self._exporters = tuple(e for e in self._exporters if e is not exporter)
            self.stop("stdout closed")
        except Exception as exc:
            raise CrawlAborted(f"exporter {exporter.format} ({exporter.path}) failed: "
                               f"{_reason(exc)}") from exc

    # ---------------------------------------------------------------------------------------
    # Failures
    # ---------------------------------------------------------------------------------------

    async def _spider_error(self, error: Exception, request: Request | None,
                            callback: str) -> None:
        message = f"spider {self.spider.name}: {callback} raised {type(error).__name__}: {error}"
        await self._report(error, "spider_error", request, message)

    async def _plugin_failed(self, plugin: str, hook: str, error: Exception,
                             kwargs: dict[str, Any]) -> None:
        request = kwargs.get("request") or getattr(kwargs.get("response"), "request", None)
        message = f"plugin '{plugin}': {hook} raised {type(error).__name__}: {error}"
        if hook == "crawl_error":  # reporting it through crawl_error again could loop
            log.error("plugin_error: %s%s", message, _at(request))
            return
        await self._report(error, "plugin_error", request, message)

    async def _report(self, error: BaseException, kind: str, request: Request | None,
                      message: str) -> None:
        """Count a failure, log it on one line, and tell the ``crawl_error`` hook.

        Failures of code (spiders, plugins) are errors with a traceback at debug level;
        failures of the network or the server are warnings.
        """
        self.stats.errors[kind] += 1
        if kind in _CODE_FAILURES:
            debug = log.isEnabledFor(logging.DEBUG)
            log.error("%s: %s%s", kind, message, _at(request), exc_info=error if debug else None)
        else:
            log.warning("%s: %s%s", kind, message, _at(request))
        if self._events.crawl_error:
            await self._events.crawl_error(error=error, kind=kind, request=request,
                                           spider=self.spider)


def _at(request: Request | None) -> str:
    return f" ({request.url})" if request else ""


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    """Return the first leaf exception of a (possibly nested) exception group."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def _as_item(result: object) -> dict[str, Any] | None:
    """Return ``result`` as an item dict if it is one: a dict, a mapping or a dataclass."""
    if isinstance(result, dict):
        return result
    if isinstance(result, Mapping):
        return dict(result)
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return None


def _close_exporter(exporter: Any) -> None:
    try:
        exporter.close()
    except Exception as exc:
        raise CrawlAborted(f"exporter {exporter.format} ({exporter.path}) failed to close: "
                           f"{_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"
