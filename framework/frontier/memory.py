"""An in-memory frontier: per-host priority heaps, dedup by fingerprint, nothing persisted."""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from framework.frontier import Counts, Lease, LeaseLost, Saved, Status
from framework.frontier.hosts import Host, Hosts
from framework.http import Request
from framework.politeness import Politeness
from framework.urls import fingerprint, host_of

__all__ = ["MemoryFrontier"]


class MemoryFrontier:
    """Keep the crawl's queue and seen-set in this process; a crash forgets them."""

    durable = False

    def __init__(self, politeness: Politeness, *,
                 clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = random.random) -> None:
        self._clock = clock
        self._hosts = Hosts(politeness, list, clock=clock, jitter=jitter)
        self._seen: set[int] = set()
        self._delayed: list[tuple[float, int, Request]] = []
        self._seq = itertools.count()
        self._pending = self._done = self._failed = 0
        self._leases: set[int | str] = set()  # tokens of leases not yet settled

    async def open(self) -> Saved:
        """Nothing to load: every crawl starts afresh."""
        return Saved()

    async def close(self) -> None:
        """Nothing to release."""

    async def add(self, requests: Sequence[Request]) -> list[Request]:
        """Queue the requests whose fingerprint is new and return them."""
        new = []
        seen = self._seen
        for request in requests:
            if not request.dont_filter:
                key = fingerprint(request)
                if key in seen:
                    continue
                seen.add(key)
            self._enqueue(request)
            new.append(request)
        return new

    async def claim(self) -> Lease | float | None:
        """Lease the best request of the best ready host, or say how long to wait."""
        now = self._clock()
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            self._enqueue(heapq.heappop(delayed)[2])
        host = self._hosts.next_ready(now)
        if host is not None:
            return self._lease(host, now)
        if not self._pending and not delayed:
            return None
        soonest = min(self._hosts.next_rest_over(), delayed[0][0] if delayed else math.inf)
        return max(soonest - now, 0.0)

    async def ack(self, lease: Lease, discovered: Sequence[Request],
                  checkpoint: Mapping[str, Any] | None = None) -> list[Request]:
        """Free the lease's host slot and queue the new requests it found."""
        self._release(lease)
        self._done += 1
        return await self.add(discovered) if discovered else []

    async def retry(self, lease: Lease, request: Request, delay: float) -> None:
        """Free the slot and hold ``request`` back for ``delay`` seconds."""
        self._release(lease)
        heapq.heappush(self._delayed, (self._clock() + delay, next(self._seq), request))

    async def fail(self, lease: Lease, reason: str, discovered: Sequence[Request] = (),
                   checkpoint: Mapping[str, Any] | None = None) -> list[Request]:
        """Free the slot; a memory frontier keeps no record of why."""
        self._release(lease)
        self._failed += 1
        return await self.add(discovered) if discovered else []

    async def tune(self, host: str, *, delay: float | None = None, pause: float = 0.0) -> None:
        """Set the host's delay from now on, and/or keep it idle for ``pause`` seconds."""
        self._hosts.tune(self._hosts.get(host), delay, pause)

    def counts(self) -> Counts:
        """Return the queue sizes."""
        return Counts(self._pending, len(self._delayed), len(self._leases), len(self._seen))

    async def status(self) -> Status:
        """Return this process's view; nothing outlives it."""
        return Status("memory", self._pending, len(self._delayed), len(self._leases),
                      self._done, self._failed)

    def _enqueue(self, request: Request) -> None:
        host = self._hosts.get(host_of(request.url))
        heapq.heappush(host.queue, (-request.priority, next(self._seq), request))
        self._pending += 1
        self._hosts.queued(host, -request.priority)

    def _lease(self, host: Host, now: float) -> Lease:
        heap = host.queue
        _, _, request = heapq.heappop(heap)
        self._pending -= 1
        self._hosts.started(host, now, heap[0][0] if heap else math.inf)
        token = next(self._seq)
        self._leases.add(token)
        return Lease(request, host.name, token)

    def _release(self, lease: Lease) -> None:
        """Settle ``lease``: each lease is settled once, a second time is an error."""
        if lease.token not in self._leases:
            raise LeaseLost(f"lease {lease.token} of {lease.request.url} is already settled")
        self._leases.remove(lease.token)
        self._hosts.released(self._hosts.get(lease.host))
