"""An in-memory frontier: per-host priority heaps, dedup by fingerprint, nothing persisted."""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from framework.fetch.politeness import HostPolicy, Politeness
from framework.frontier import (
    Counts,
    Lease,
    LeaseLost,
    Saved,
    Settlement,
    dedup_key,
    without_once,
)
from framework.frontier.hosts import Host, Hosts
from framework.http import Request
from framework.http.urls import host_of

__all__ = ["Forgetful", "MemoryFrontier"]


class Forgetful:
    """The memory of a crawl that has no next round: it remembers nothing."""

    async def get(self, request: Request) -> str | None:
        """Answer None: no earlier round left anything."""
        return None

    async def put(self, request: Request, value: str | None) -> None:
        """Forget ``value``: no later round will ask."""


class _Host(Host):
    """A host's scheduling state, and its queue: a heap of ``(-priority, seq, request)``."""

    __slots__ = ("queue",)

    def __init__(self, name: str, policy: HostPolicy) -> None:
        super().__init__(name, policy)
        self.queue: list[tuple[int, int, Request]] = []


class MemoryFrontier:
    """Keep the crawl's queue and seen-set in this process; a crash forgets them."""

    persistent = False
    keeps_checkpoints = False
    forgets = 0  # it forgets nothing it was told
    memory = Forgetful()

    def __init__(
        self,
        politeness: Politeness,
        *,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._clock = clock
        self._hosts = Hosts(politeness, _Host, clock=clock, jitter=jitter)
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
        return self._add(requests)

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
        return self._hosts.wait(now, delayed[0][0] if delayed else math.inf)

    async def settle(
        self, settlements: Sequence[Settlement], checkpoint: Mapping[str, Any] | None = None
    ) -> list[list[Request] | None]:
        """Free the leases' host slots and queue the new requests they found.

        A memory frontier keeps no record of why a request failed, nor checkpoints.
        """
        return [self._settle(settlement) for settlement in settlements]

    async def retry(self, lease: Lease, request: Request, delay: float) -> None:
        """Free the slot and hold ``request`` back for ``delay`` seconds."""
        if not self._release(lease):
            raise LeaseLost(f"lease {lease.token} of {lease.request.url} is already settled")
        heapq.heappush(self._delayed, (self._clock() + delay, next(self._seq), request))

    async def tune(self, host: str, *, delay: float | None = None, pause: float = 0.0) -> None:
        """Set the host's delay from now on, and/or keep it idle for ``pause`` seconds."""
        self._hosts.tune(host, delay, pause)

    async def refund(self, lease: Lease) -> None:
        """Give back the turn ``lease`` took of its host's pace."""
        self._hosts.refund(lease.host, lease.token)

    def left_behind(self) -> list[Request]:
        """Return every request still queued or held back: all is forgotten with the run."""
        queued = [entry[2] for host in self._hosts.all() for entry in host.queue]
        return queued + [entry[2] for entry in self._delayed]

    def counts(self) -> Counts:
        """Return the queue sizes."""
        return Counts(
            self._pending,
            len(self._delayed),
            len(self._leases),
            len(self._seen),
            self._done,
            self._failed,
        )

    def _add(self, requests: Sequence[Request]) -> list[Request]:
        new = []
        seen = self._seen
        for request in requests:
            # ONCE's key is kept for the run: nothing outlives it to be reopened.
            if (key := dedup_key(request)) is not None:
                if key in seen:
                    continue
                seen.add(key)
            self._enqueue(without_once(request))
            new.append(request)
        return new

    def _settle(self, settlement: Settlement) -> list[Request] | None:
        if not self._release(settlement.lease):
            return None
        if settlement.failure is None:
            self._done += 1
        else:
            self._failed += 1
        return self._add(settlement.discovered) if settlement.discovered else []

    def _enqueue(self, request: Request) -> None:
        host = self._hosts.get(host_of(request.url))
        heapq.heappush(host.queue, (-request.priority, next(self._seq), request))
        self._pending += 1
        self._hosts.queued(host, -request.priority)

    def _lease(self, host: _Host, now: float) -> Lease:
        heap = host.queue
        _, _, request = heapq.heappop(heap)
        self._pending -= 1
        token = next(self._seq)
        self._hosts.started(host, now, heap[0][0] if heap else math.inf, token)
        self._leases.add(token)
        return Lease(request, host.name, token)

    def _release(self, lease: Lease) -> bool:
        """Settle ``lease``, or return False if it was settled already."""
        if lease.token not in self._leases:
            return False
        self._leases.remove(lease.token)
        self._hosts.released(self._hosts.get(lease.host))
        return True
