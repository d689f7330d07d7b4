"""Which host may be visited next: per-host slots and delays, shared by the local backends.

Each host keeps how many requests it has queued and the rank (``-priority``) of its best
one; where the requests themselves live is the backend's business (a heap in memory, an
index in SQLite). Two heaps of hosts decide the next claim: ``ready`` (may be visited now,
ordered by the rank of their best request) and ``waiting`` (ordered by when their delay
is over). A host with all its slots in use is in neither heap, so a slow host never
blocks the others and picking one costs O(log hosts).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

from framework.fetch.politeness import HostPolicy, Politeness

__all__ = ["Host", "Hosts"]

_READY, _WAITING = 1, 2


class Host:
    """One host's scheduling state."""

    __slots__ = (
        "best",
        "delay",
        "inflight",
        "last_start",
        "name",
        "next_at",
        "pending",
        "policy",
        "queue",
        "rank",
        "state",
        "token",
    )

    def __init__(self, name: str, policy: HostPolicy, queue: Any) -> None:
        self.name, self.policy, self.delay = name, policy, policy.delay
        self.queue = queue  # the backend's own: where this host's requests wait
        self.pending = 0  # requests queued
        self.best = math.inf  # the rank of the best of them
        self.inflight = 0
        self.next_at = 0.0  # when the delay since the last request start is over
        self.last_start = -math.inf
        self.state = 0  # _READY or _WAITING when the host has a live heap entry
        self.rank = 0.0  # the rank of its live entry in the ready heap
        self.token = 0  # bumped to invalidate older heap entries


class Hosts:
    """Keep every host's slots, delay and queue size; say which may be visited next."""

    def __init__(
        self,
        politeness: Politeness,
        new_queue: Callable[[], Any],
        *,
        clock: Callable[[], float],
        jitter: Callable[[], float],
    ) -> None:
        self._politeness, self._new_queue = politeness, new_queue
        self._clock, self._jitter = clock, jitter
        self._hosts: dict[str, Host] = {}
        self._ready: list[tuple[float, int, int, Host]] = []
        self._waiting: list[tuple[float, int, int, Host]] = []
        self._seq = itertools.count()

    def __iter__(self) -> Any:
        return iter(self._hosts.values())

    def get(self, name: str) -> Host:
        """Return the host called ``name``, creating its state the first time."""
        host = self._hosts.get(name)
        if host is None:
            host = Host(name, self._politeness.for_host(name), self._new_queue())
            self._hosts[name] = host
        return host

    def queued(self, host: Host, rank: float) -> None:
        """Count one more request queued for ``host``, of rank ``-priority``."""
        host.pending += 1
        host.best = min(host.best, rank)
        # A filed host keeps its place unless this request outranks its ready entry.
        if host.state == 0 or (host.state == _READY and rank < host.rank):
            self._file(host, self._clock())

    def restore(self, host: Host, pending: int, best: float) -> None:
        """Count ``pending`` requests saved by an earlier run, the best of rank ``best``."""
        host.pending += pending
        host.best = min(host.best, best)
        self._file(host, self._clock())

    def next_ready(self, now: float) -> Host | None:
        """Return the host whose best request should go next, if any may be visited now."""
        waiting = self._waiting
        while waiting and waiting[0][0] <= now:
            _, _, token, host = heapq.heappop(waiting)
            if token == host.token:
                self._file(host, now)
        while self._ready:
            _, _, token, host = heapq.heappop(self._ready)
            if token == host.token:
                host.state = 0
                return host
        return None

    def started(self, host: Host, now: float, best: float) -> None:
        """Record that a request of ``host`` was leased; ``best`` ranks what is left."""
        host.pending -= 1
        host.best = best if host.pending else math.inf
        host.inflight += 1
        host.last_start = now
        host.next_at = max(host.next_at, now + self._spacing(host))
        self._file(host, now)

    def released(self, host: Host) -> None:
        """Free the slot a settled lease held."""
        host.inflight -= 1
        self._file(host, self._clock())

    def tune(self, host: Host, delay: float | None, pause: float) -> None:
        """Set the host's delay from now on, and/or keep it idle for ``pause`` seconds."""
        now = self._clock()
        if delay is not None:  # it counts from the last start, not only from the next one
            host.delay = delay
            host.next_at = max(host.next_at, host.last_start + self._spacing(host))
        if pause > 0:
            host.next_at = max(host.next_at, now + pause)
        self._file(host, now)

    def next_rest_over(self) -> float:
        """Return when the soonest resting host may be visited (``inf``: none is resting)."""
        waiting = self._waiting
        while waiting and waiting[0][2] != waiting[0][3].token:
            heapq.heappop(waiting)  # drop stale entries so the time is right
        return waiting[0][0] if waiting else math.inf

    def _spacing(self, host: Host) -> float:
        """Seconds until the host's next request may start: jittered delay, or the rate's."""
        jittered = host.delay * (0.5 + self._jitter()) if host.delay else 0.0
        return max(jittered, host.policy.interval)

    def _file(self, host: Host, now: float) -> None:
        """Put the host in the heap its next request will be found through, if any."""
        host.token += 1
        host.state = 0
        if not host.pending or host.inflight >= host.policy.concurrency:
            return
        if host.next_at <= now:
            host.state, host.rank = _READY, host.best
            heapq.heappush(self._ready, (host.rank, next(self._seq), host.token, host))
        else:
            host.state = _WAITING
            heapq.heappush(self._waiting, (host.next_at, next(self._seq), host.token, host))
