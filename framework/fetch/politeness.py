"""How hard each host may be hit: its policy from the project file, adaptive throttling,
and the pace the frontier is told to keep for it."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Protocol

from framework.config.project import DomainPolicy, Project

__all__ = ["HostPolicy", "Pace", "Politeness", "Throttler", "Tuner", "in_waves", "wave_of"]

log = logging.getLogger("fw")

#: The first delay after a 429 or 503 when the host had none; doubled on each further one.
_FIRST_BACKOFF = 0.5
#: A delay change smaller than this fraction is not worth telling the frontier about.
_NOTICEABLE = 0.1
#: A host is slowing down when a reply takes this many times its best, and at least
#: ``_SLOW`` seconds: below that, latency is the crawler's own queueing, not the server's.
_SLOWER, _SLOW = 2.0, 0.25
#: An excess over the floor this small is dropped: halving would never quite reach it.
_SNAP = 0.01


@dataclass(frozen=True)
class HostPolicy:
    """One host's limits: requests in flight, seconds between starts, requests per second."""

    concurrency: int
    delay: float
    rate: float | None = None

    @property
    def interval(self) -> float:
        """The least time between two request starts that ``rate`` allows."""
        return 1.0 / self.rate if self.rate else 0.0


def in_waves(at: float, earliest: float, wave: float) -> float:
    """Move ``at``, when a host is next due, to the nearest multiple of ``wave`` (its
    delay's: ``wave_of``) not before ``earliest``, the soonest its policy allows.

    Waves are multiples of a power of two of seconds, the largest within 1/4 of the delay,
    so hosts of one delay come due together instead of one a millisecond: a broad crawl
    then fetches and parses pages in bursts with idle time between, rather than a page or
    two at every wake-up, and spends less CPU a page (benchmarks/README.md). The nearest
    wave keeps the mean delay about where it was; ``earliest`` keeps every turn within the
    policy. Only a delay makes waves: a rate's interval is kept exactly.
    """
    if not wave or math.isinf(at):  # -inf: the host never started
        return at
    # Halves round up, not to even: the Redis frontier's Lua rounds so too.
    return max(math.floor(at / wave + 0.5), math.ceil(earliest / wave)) * wave


def wave_of(delay: float) -> float:
    """Return the length of the waves of hosts with ``delay`` (0: none)."""
    if not 0 < delay < math.inf:
        return 0.0
    return math.ldexp(1.0, math.frexp(delay)[1] - 3)  # 1/8-1/4 of it; 0 if it underflows


class Politeness:
    """Resolve each host's policy: the defaults, overridden by the best matching pattern.

    An exact host name beats any pattern; among patterns (``*.douban.com``) the longest
    wins. Unset keys of an override keep the defaults.
    """

    def __init__(self, default: HostPolicy, domains: Mapping[str, DomainPolicy]) -> None:
        self.default = default
        # Most specific first: exact names, then patterns from the longest.
        self._domains = sorted(
            domains.items(), key=lambda item: ("*" in item[0] or "?" in item[0], -len(item[0]))
        )
        self._cache: dict[str, HostPolicy] = {}

    @classmethod
    def of(cls, project: Project) -> Politeness:
        """Build the politeness a project file asks for."""
        default = HostPolicy(project.concurrency.per_domain, project.delay, project.rate)
        return cls(default, project.domains)

    def for_host(self, host: str) -> HostPolicy:
        """Return the policy for ``host`` (lower-case, no port)."""
        policy = self._cache.get(host)
        if policy is None:
            policy = self._cache[host] = self._resolve(host)
        return policy

    def _resolve(self, host: str) -> HostPolicy:
        default = self.default
        for pattern, override in self._domains:
            if fnmatchcase(host, pattern):
                return HostPolicy(
                    default.concurrency if override.concurrency is None else override.concurrency,
                    default.delay if override.delay is None else override.delay,
                    default.rate if override.rate is None else override.rate,
                )
        return default


class Throttler:
    """Adapt each host's delay to how it is doing, within ``[floor, max_delay]``.

    A host's floor is its configured delay, raised by its robots.txt Crawl-delay.

    * A 429 or 503 reply, or a timeout, doubles the delay (from 0.5 s).
    * A reply slower than twice the host's best (and than 0.25 s) raises the delay to
      ``latency / concurrency``: the spacing at which the host's concurrency keeps it busy
      without queueing more at the server (AutoThrottle's rule).
    * Any other successful reply halves the delay's excess over the floor, so a healthy
      host is soon back at its configured pace. Error statuses never lower the delay.

    The host's best is its fastest 2xx reply: a timeout has no latency to learn from, and
    an error page or a redirect is served far quicker than a page, so either would make
    every later page look slow and keep the delay up for good.
    """

    def __init__(self, politeness: Politeness, *, enabled: bool, max_delay: float) -> None:
        self._politeness, self.enabled, self._max = politeness, enabled, max_delay
        self._floors: dict[str, float] = {}
        self._delays: dict[str, float] = {}  # what the rules say
        self._told: dict[str, float] = {}  # what the frontier was last told
        self._best: dict[str, float] = {}  # each host's fastest page
        self._why: dict[str, str] = {}  # what last raised each host's delay

    def floor(self, host: str) -> float:
        """Return the least delay for ``host``."""
        return self._floors.get(host, self._politeness.for_host(host).delay)

    def slowed(self) -> dict[str, float]:
        """Return the hosts throttling holds above their floor, with their delay now."""
        return {host: delay for host, delay in self._delays.items() if delay > self.floor(host)}

    def throttled(self) -> dict[str, tuple[float, str]]:
        """Return the hosts throttling still holds above their floor, each with its delay
        and what slowed it (``answered 429/503``, ``timed out``, ``slow replies``)."""
        return {host: (delay, self._why[host]) for host, delay in sorted(self.slowed().items())}

    @property
    def max_delay(self) -> float:
        """The longest delay throttling, or a robots.txt Crawl-delay, may impose."""
        return self._max

    def raise_floor(self, host: str, seconds: float) -> float | None:
        """Make ``seconds`` (a robots.txt Crawl-delay) the least delay; return the new delay."""
        if seconds <= self.floor(host):
            return None
        delay = max(self._delays.get(host, 0.0), seconds)
        self._floors[host] = self._delays[host] = self._told[host] = delay
        return delay

    def observe(self, host: str, status: int, latency: float) -> float | None:
        """Learn from one reply; return the host's new delay if it moved."""
        if not self.enabled:
            return None
        if status in (429, 503):
            return self._back_off(host, "answered 429/503")
        best = self._best.get(host, math.inf)
        if 200 <= status < 300 and latency < best:
            best = self._best[host] = latency
        floor = self.floor(host)
        current = self._delays.get(host, floor)
        if latency > _SLOWER * best and latency > _SLOW:
            wanted = max(current, latency / self._politeness.for_host(host).concurrency)
            if wanted > current:
                self._why[host] = "slow replies"
        elif status < 400:
            if current == floor:  # the usual case: a healthy host at its configured pace
                return None
            excess = (current - floor) / 2
            wanted = floor + (excess if excess > _SNAP else 0.0)
        else:  # errors may slow a host down, never speed it up
            return None
        return self._set(host, wanted)

    def timed_out(self, host: str) -> float | None:
        """Learn that a request got no reply in time; return the new delay if it moved."""
        return self._back_off(host, "timed out") if self.enabled else None

    def _back_off(self, host: str, why: str) -> float | None:
        """Double the delay of a host that says, or shows, it is overloaded."""
        self._why[host] = why
        return self._set(host, max(self._delays.get(host, self.floor(host)) * 2, _FIRST_BACKOFF))

    def _set(self, host: str, wanted: float) -> float | None:
        """Keep ``wanted``, within bounds; return it if the frontier should be told."""
        floor = self.floor(host)
        delay = self._delays[host] = min(max(wanted, floor), max(self._max, floor))
        told = self._told.get(host, floor)
        if abs(delay - told) <= _NOTICEABLE * max(told, 0.001):
            return None
        self._told[host] = delay
        return delay


class Tuner(Protocol):
    """Where a host's pace is kept: the frontier, which spaces the host's requests."""

    async def tune(self, host: str, *, delay: float | None = None, pause: float = 0.0) -> None:
        """Set the host's delay from now on, and/or rest it ``pause`` seconds."""


class Pace:
    """Keep each host's pace in the frontier: throttling's verdicts, robots.txt
    ``Crawl-delay``, ``Retry-After`` rests.

    The fetch path tells it what happened (a reply, a timeout, a Crawl-delay); it decides
    with the ``Throttler`` and tells the frontier only when a host's pace changes. With
    ``waits`` off (a replay, which has no server to spare) Crawl-delay and Retry-After
    rests are not kept.
    """

    def __init__(self, throttle: Throttler, frontier: Tuner, *, waits: bool = True) -> None:
        self.throttle, self._frontier, self._waits = throttle, frontier, waits
        #: The hosts whose robots.txt asked for a delay, with the seconds it asked for.
        self.crawl_delays: dict[str, float] = {}

    async def replied(self, host: str, status: int, latency: float) -> None:
        """Learn from one reply of ``host`` that took ``latency`` seconds."""
        await self._tell(host, self.throttle.observe(host, status, latency))

    async def timed_out(self, host: str) -> None:
        """Learn that ``host`` gave no complete answer in time: give it air."""
        await self._tell(host, self.throttle.timed_out(host))

    async def crawl_delay(self, host: str, seconds: float) -> None:
        """Make a robots.txt ``Crawl-delay`` the host's least delay, up to the longest of
        ``throttle.max_delay`` and the host's own: a site asking for a day between pages
        would hold the crawl for good."""
        if not self._waits:
            return
        used = min(seconds, max(self.throttle.max_delay, self.throttle.floor(host)))
        if used < seconds:
            log.warning(
                "%s asks for %gs between requests (robots.txt Crawl-delay); waiting %gs, "
                "the longest of throttle.max_delay and the host's delay",
                host,
                seconds,
                used,
            )
        delay = self.throttle.raise_floor(host, used)
        if delay is not None:
            self.crawl_delays[host] = used
            if used == seconds:
                log.info("%s asks for %gs between requests (robots.txt Crawl-delay)", host, used)
            await self._tell(host, delay)

    async def rest(self, host: str, seconds: float) -> None:
        """Send nothing to ``host`` for ``seconds`` (it answered with ``Retry-After``)."""
        if self._waits:
            await self._frontier.tune(host, pause=seconds)

    def slowed(self) -> dict[str, float]:
        """Return the hosts throttling holds above their floor now, with their delay."""
        return self.throttle.slowed()

    def throttled(self) -> dict[str, tuple[float, str]]:
        """Return the hosts throttling still slows down, with their delay and why."""
        return self.throttle.throttled()

    async def _tell(self, host: str, delay: float | None) -> None:
        if delay is not None:
            await self._frontier.tune(host, delay=delay)
