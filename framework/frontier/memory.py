"""An in-memory frontier: per-host priority queues, dedup by fingerprint, nothing persisted.

Scheduling keeps one queue per host and two heaps of hosts: ``ready`` (may be visited
now, ordered by the priority of their best request) and ``waiting`` (ordered by when
their delay is over). A host with all its slots in use is in neither heap, so a slow host
never blocks the others and claiming costs O(log hosts).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from collections.abc import Callable, Sequence

from framework.frontier import Counts, Lease
from framework.http import Request
from framework.politeness import HostPolicy, Politeness
from framework.urls import fingerprint, host_of

__all__ = ["MemoryFrontier"]

_READY, _WAITING = 1, 2


class _Host:
    __slots__ = ("delay", "heap", "inflight", "last_start", "name", "next_at", "policy", "rank",
                 "state", "token")

    def __init__(self, name: str, policy: HostPolicy) -> None:
        self.name, self.policy, self.delay = name, policy, policy.delay
        self.heap: list[tuple[int, int, Request]] = []  # (-priority, seq, request)
        self.inflight = 0
        self.next_at = 0.0  # when the delay since the last request start is over
        self.last_start = -math.inf
        self.state = 0  # _READY or _WAITING when the host has a live heap entry
        self.rank = 0  # the priority key of its live entry in the ready heap
        self.token = 0  # bumped to invalidate older heap entries


class MemoryFrontier:
    """Keep the crawl's queue and seen-set in this process."""

    def __init__(self, politeness: Politeness, *,
                 clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = random.random) -> None:
        self._politeness, self._clock, self._jitter = politeness, clock, jitter
        self._seen: set[int] = set()
        self._hosts: dict[str, _Host] = {}
        self._ready: list[tuple[int, int, int, _Host]] = []
        self._waiting: list[tuple[float, int, int, _Host]] = []
        self._delayed: list[tuple[float, int, Request]] = []
        self._seq = itertools.count()
        self._pending = 0
        self._leases: set[int] = set()  # tokens of leases not yet settled

    async def open(self) -> None:
        """Nothing to open: the state lives in this object."""

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
        self._promote(now)
        while self._ready:
            _, _, token, host = heapq.heappop(self._ready)
            if token == host.token:
                return self._lease(host, now)
        return self._wait_time(now)

    async def ack(self, lease: Lease, discovered: Sequence[Request]) -> list[Request]:
        """Free the lease's host slot and queue the new requests it found."""
        self._release(lease)
        return await self.add(discovered) if discovered else []

    async def retry(self, lease: Lease, request: Request, delay: float) -> None:
        """Free the slot and hold ``request`` back for ``delay`` seconds."""
        self._release(lease)
        heapq.heappush(self._delayed, (self._clock() + delay, next(self._seq), request))

    async def fail(self, lease: Lease, reason: str) -> None:
        """Free the slot; a memory frontier keeps no record of failures."""
        self._release(lease)

    async def tune(self, host: str, *, delay: float | None = None, pause: float = 0.0) -> None:
        """Set the host's delay from now on, and/or keep it idle for ``pause`` seconds."""
        state, now = self._host(host), self._clock()
        if delay is not None:  # it counts from the last start, not only from the next one
            state.delay = delay
            state.next_at = max(state.next_at, state.last_start + self._spacing(state))
        if pause > 0:
            state.next_at = max(state.next_at, now + pause)
        self._file(state, now)

    def counts(self) -> Counts:
        """Return the queue sizes."""
        return Counts(self._pending, len(self._delayed), len(self._leases), len(self._seen))

    def _host(self, name: str) -> _Host:
        host = self._hosts.get(name)
        if host is None:
            host = self._hosts[name] = _Host(name, self._politeness.for_host(name))
        return host

    def _enqueue(self, request: Request) -> None:
        host = self._host(host_of(request.url))
        heapq.heappush(host.heap, (-request.priority, next(self._seq), request))
        self._pending += 1
        # A filed host keeps its place unless this request outranks its ready entry.
        if host.state == 0 or (host.state == _READY and -request.priority < host.rank):
            self._file(host, self._clock())

    def _lease(self, host: _Host, now: float) -> Lease:
        _, _, request = heapq.heappop(host.heap)
        self._pending -= 1
        token = next(self._seq)
        self._leases.add(token)
        host.inflight += 1
        host.last_start = now
        host.next_at = max(host.next_at, now + self._spacing(host))
        host.state = 0
        self._file(host, now)
        return Lease(request, host.name, token)

    def _spacing(self, host: _Host) -> float:
        """Seconds until the host's next request may start: jittered delay, or the rate's."""
        jittered = host.delay * (0.5 + self._jitter()) if host.delay else 0.0
        return max(jittered, host.policy.interval)

    def _release(self, lease: Lease) -> None:
        """Settle ``lease``: each lease is settled once, a second time is an error."""
        if lease.token not in self._leases:
            raise ValueError(f"lease {lease.token} of {lease.request.url} is already settled")
        self._leases.remove(lease.token)
        host = self._hosts[lease.host]
        host.inflight -= 1
        self._file(host, self._clock())

    def _file(self, host: _Host, now: float) -> None:
        """Put the host in the heap its next request will be found through, if any."""
        host.token += 1
        host.state = 0
        if not host.heap or host.inflight >= host.policy.concurrency:
            return
        if host.next_at <= now:
            host.state, host.rank = _READY, host.heap[0][0]
            heapq.heappush(self._ready, (host.rank, next(self._seq), host.token, host))
        else:
            host.state = _WAITING
            heapq.heappush(self._waiting, (host.next_at, next(self._seq), host.token, host))

    def _promote(self, now: float) -> None:
        """Queue delayed requests that are due, and make rested hosts ready."""
        delayed, waiting = self._delayed, self._waiting
        while delayed and delayed[0][0] <= now:
            self._enqueue(heapq.heappop(delayed)[2])
        while waiting and waiting[0][0] <= now:
            _, _, token, host = heapq.heappop(waiting)
            if token == host.token:
                self._file(host, now)

    def _wait_time(self, now: float) -> float | None:
        if not self._pending and not self._delayed:
            return None
        while self._waiting and self._waiting[0][2] != self._waiting[0][3].token:
            heapq.heappop(self._waiting)  # drop stale entries so the next time is right
        soonest = min(self._waiting[0][0] if self._waiting else math.inf,
                      self._delayed[0][0] if self._delayed else math.inf)
        return max(soonest - now, 0.0)
