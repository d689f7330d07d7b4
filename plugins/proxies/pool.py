"""The pool: which proxy a request takes, and how each proxy is doing.

A proxy that fails rests, for ``backoff.base`` seconds doubled for each further failure in
a row (``backoff.max`` at most), and is then tried again; one success ends its streak.
Each rest starts a new epoch: what requests sent before it went on to do is still
counted, but cannot rest the proxy a second time — a proxy that drops 16 requests in
flight has failed once, not 16 times.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .options import ProxiesOptions, ProxyURL

__all__ = ["Pool", "Proxy", "Verdict"]


class Verdict(Enum):
    """What one answer through a proxy says about the proxy."""

    #: It works (whatever the site answered).
    OK = "ok"
    #: Nothing either way: a body too large, an invalid URL, a middleware's doing.
    NEUTRAL = "neutral"
    #: Suspect: a ban status, a timeout, a dropped connection; ``fail_after`` in a row rest it.
    SUSPECT = "suspect"
    #: It failed: it could not be reached, or refused its credentials; it rests at once.
    FAILED = "failed"


@dataclass(eq=False)
class Proxy:
    """One proxy and what it did: the counts ``--stats`` shows, and its health."""

    url: str = field(repr=False)  # with the credentials: only ever given to aiohttp
    name: str
    requests: int = 0
    answered: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    rests: int = 0
    #: Suspect answers in a row; rests in a row with no success between.
    streak: int = 0
    strikes: int = 0
    #: Resting until this time (``time.monotonic``), and the epoch its rest began.
    until: float = 0.0
    epoch: int = 0
    #: Why it last failed, for the message when every proxy is dead.
    last: str = ""

    def report(self, dead_after: int, now: float) -> dict[str, Any]:
        """Return its counts and state, JSON-ready."""
        return {
            "requests": self.requests,
            "answered": self.answered,
            "failures": dict(self.failures),
            "rests": self.rests,
            "state": self.state(dead_after, now),
        }

    def state(self, dead_after: int, now: float) -> str:
        """``up``, ``resting``, or ``dead`` (rested ``dead_after`` times in a row)."""
        if self.strikes >= dead_after:
            return "dead"
        return "resting" if self.until > now else "up"


class Pool:
    """The proxies of ``proxies.urls``: pick one for a request, judge what it answered."""

    def __init__(
        self,
        options: ProxiesOptions,
        clock: Callable[[], float] = time.monotonic,
        choose: Callable[[Sequence[Proxy]], Proxy] = random.choice,
    ) -> None:
        self.options, self._clock, self._choose = options, clock, choose
        self.proxies = [Proxy(a.url, _name(a, options.urls)) for a in options.urls]
        self._by_origin: dict[str, Proxy] = {}
        for address, proxy in zip(options.urls, self.proxies, strict=True):
            self._by_origin.setdefault(address.origin, proxy)  # twins: the first lends
        self._turn = 0  # round_robin: where the next search starts
        self._sticky: dict[str, Proxy] = {}

    def __bool__(self) -> bool:
        return bool(self.proxies)

    def listed(self, origin: str) -> Proxy | None:
        """Return the pool's proxy at ``origin`` (``scheme://host:port``), if listed."""
        return self._by_origin.get(origin)

    def pick(self, host: str, tried: Sequence[Proxy] = ()) -> Proxy | float | None:
        """Return a proxy for a request to ``host`` that has not ``tried`` it yet.

        If every such proxy rests, return the seconds until the first is back; None if
        every proxy was tried. Cheap with thousands of proxies: ``tried`` is short.
        """
        now, rotate = self._clock(), self.options.rotate
        if rotate == "sticky_per_host":
            given = self._sticky.get(host)
            if given is not None and given.until <= now and given not in tried:
                return given
        if rotate == "random":
            ready = [p for p in self.proxies if p.until <= now and p not in tried]
            proxy = self._choose(ready) if ready else None
        else:
            proxy = self._next(now, tried)
        if proxy is not None:
            if rotate == "sticky_per_host":
                self._sticky[host] = proxy
            return proxy
        resting = [p.until for p in self.proxies if p not in tried]
        return min(resting) - now if resting else None

    def _next(self, now: float, tried: Sequence[Proxy]) -> Proxy | None:
        """Round robin over the whole pool, skipping those resting or tried."""
        count = len(self.proxies)
        for step in range(count):
            proxy = self.proxies[(self._turn + step) % count]
            if proxy.until <= now and proxy not in tried:
                self._turn = (self._turn + step + 1) % count
                return proxy
        return None

    def judge(
        self,
        proxy: Proxy,
        epoch: int,
        verdict: Verdict,
        why: str,
        detail: str = "",
        *,
        counted: bool = False,
    ) -> float | None:
        """Learn from one answer through ``proxy``, sent in ``epoch``: ``why`` is its kind
        (``proxy``, ``http_403``), ``detail`` says more; ``counted`` if ``count`` counted
        it already. Return how long the proxy now rests, or None."""
        if verdict is Verdict.OK:
            proxy.answered += 1
            proxy.streak = proxy.strikes = 0
            return None
        if verdict is Verdict.NEUTRAL:
            return None
        if not counted:
            self.count(proxy, why, detail)
        if epoch != proxy.epoch:  # sent before its last rest began: counted, not held against it
            return None
        proxy.streak += 1
        if verdict is Verdict.SUSPECT and proxy.streak < self.options.fail_after:
            return None
        return self._rest(proxy)

    def count(self, proxy: Proxy, why: str, detail: str = "") -> None:
        """Count a failed answer through ``proxy``, whether or not it is held against it."""
        proxy.failures[why] += 1
        proxy.last = detail or why

    def _rest(self, proxy: Proxy) -> float:
        backoff = self.options.backoff
        proxy.strikes += 1
        proxy.rests += 1
        proxy.epoch += 1
        proxy.streak = 0
        seconds = min(backoff.base * 2.0 ** (proxy.strikes - 1), backoff.max)
        proxy.until = self._clock() + seconds
        return seconds

    def dead(self, proxy: Proxy) -> bool:
        """Tell whether ``proxy`` rested ``dead_after`` times in a row."""
        return proxy.strikes >= self.options.dead_after

    def all_dead(self) -> bool:
        """Tell whether every proxy is dead: the crawl cannot go on."""
        return bool(self.proxies) and all(self.dead(p) for p in self.proxies)

    def report(self) -> dict[str, dict[str, Any]]:
        """Return each proxy's counts and state, by its name."""
        now = self._clock()
        return {p.name: p.report(self.options.dead_after, now) for p in self.proxies}


def _name(address: ProxyURL, pool: Sequence[ProxyURL]) -> str:
    """Name a proxy by its masked URL; proxies told apart by their user alone get ``#n``."""
    twins = [a for a in pool if a.shown == address.shown]
    return address.shown if len(twins) == 1 else f"{address.shown} #{twins.index(address) + 1}"
