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
from typing import Generic, TypeVar

from framework.fetch.politeness import HostPolicy, Politeness, in_waves, wave_of

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
        "rank",
        "state",
        "token",
        "turn",
    )

    def __init__(self, name: str, policy: HostPolicy) -> None:
        self.name, self.policy, self.delay = name, policy, policy.delay
        self.pending = 0  # requests queued
        self.best = math.inf  # the rank of the best of them
        self.inflight = 0
        self.next_at = -math.inf  # its turn: when it may start again
        self.last_start = -math.inf
        self.state = 0  # _READY or _WAITING when the host has a live heap entry
        self.rank = 0.0  # the rank of its live entry in the ready heap
        self.token = 0  # bumped to invalidate older heap entries
        # The last lease's turn: (lease token, next_at and last_start before it, next_at
        # after it), so that a lease answered without the host can give its turn back.
        self.turn: tuple[int | str, float, float, float] | None = None


H = TypeVar("H", bound=Host)


class Hosts(Generic[H]):
    """Keep every host's slots, delay and queue size; say which may be visited next.

    ``make`` builds a host's state: a backend that keeps more per host (the memory
    frontier's queue) subclasses ``Host``.
    """

    def __init__(
        self,
        politeness: Politeness,
        make: Callable[[str, HostPolicy], H],
        *,
        clock: Callable[[], float],
        jitter: Callable[[], float],
    ) -> None:
        self._politeness, self._make = politeness, make
        self._clock, self._jitter = clock, jitter
        self._hosts: dict[str, H] = {}
        self._ready: list[tuple[float, int, int, H]] = []
        self._waiting: list[tuple[float, int, int, H]] = []
        self._seq = itertools.count()

    def get(self, name: str) -> H:
        """Return the host called ``name``, creating its state the first time."""
        host = self._hosts.get(name)
        if host is None:
            host = self._hosts[name] = self._make(name, self._politeness.for_host(name))
        return host

    def all(self) -> list[H]:
        """Return every host known."""
        return list(self._hosts.values())

    def queued(self, host: H, rank: float) -> None:
        """Count one more request queued for ``host``, of rank ``-priority``."""
        host.pending += 1
        host.best = min(host.best, rank)
        # A filed host keeps its place unless this request outranks its ready entry.
        if host.state == 0 or (host.state == _READY and rank < host.rank):
            self._file(host, self._clock())

    def restore(self, host: H, pending: int, best: float) -> None:
        """Count ``pending`` requests saved by an earlier run, the best of rank ``best``."""
        host.pending += pending
        host.best = min(host.best, best)
        self._file(host, self._clock())

    def next_ready(self, now: float) -> H | None:
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

    def started(self, host: H, now: float, best: float, lease: int | str = 0) -> None:
        """Record that a request of ``host`` was leased (as ``lease``); ``best`` ranks what
        is left."""
        host.pending -= 1
        host.best = best if host.pending else math.inf
        host.inflight += 1
        before, last = host.next_at, host.last_start
        host.last_start = now
        host.next_at = max(host.next_at, self._next_start(host, now))
        host.turn = (lease, before, last, host.next_at)
        self._file(host, now)

    def refund(self, name: str, lease: int | str) -> None:
        """Give the host back the turn ``lease`` took, unless another started or the host's
        pace changed since (a pause, a new delay)."""
        host = self._hosts.get(name)
        if host is None or host.turn is None or host.turn[0] != lease:
            return
        _, before, last, after = host.turn
        host.turn = None
        if host.next_at == after:
            host.next_at, host.last_start = before, last
            self._file(host, self._clock())

    def released(self, host: H) -> None:
        """Free the slot a settled lease held."""
        host.inflight -= 1
        self._file(host, self._clock())

    def tune(self, name: str, delay: float | None, pause: float) -> None:
        """Set the host's delay from now on, and/or keep it idle for ``pause`` seconds."""
        host, now = self.get(name), self._clock()
        host.turn = None  # a turn given back now would undo this
        if delay is not None:  # it counts from the last start, not only from the next one
            host.delay = delay
            host.next_at = max(host.next_at, self._next_start(host, host.last_start))
        if pause > 0:
            host.next_at = max(host.next_at, now + pause)
        self._file(host, now)

    def wait(self, now: float, due: float = math.inf) -> float:
        """Return the seconds until a host may be visited, or ``due`` (a delayed request)
        comes: how long a claim that found nothing ready should wait."""
        return max(min(self.next_rest_over(), due) - now, 0.0)

    def next_rest_over(self) -> float:
        """Return when the soonest resting host may be visited (``inf``: none is resting)."""
        waiting = self._waiting
        while waiting and waiting[0][2] != waiting[0][3].token:
            heapq.heappop(waiting)  # drop stale entries so the time is right
        return waiting[0][0] if waiting else math.inf

    def _next_start(self, host: H, start: float) -> float:
        """When the host may be visited after a request that started at ``start``: its
        delay jittered 0.5-1.5x, or its rate's interval if longer, moved to a wave.

        A host that started within a wave of its turn counts the delay from the turn: the
        hosts of a wave cannot all start at once, and counting from the start would add
        that wait to every delay. The policy's least gap still counts from the start.
        """
        delay, interval = host.delay, host.policy.interval
        wave, late = wave_of(delay), start - host.next_at
        since = host.next_at if 0 <= late < wave else start
        jittered = delay * (0.5 + self._jitter()) if delay else 0.0
        at, earliest = since + max(jittered, interval), start + max(delay / 2, interval)
        return in_waves(at, earliest, wave)

    def _file(self, host: H, now: float) -> None:
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
