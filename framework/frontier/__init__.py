"""The frontier: the crawl's queue of requests, its dedup, and per-host politeness.

``Frontier`` is all the engine calls; backends implement it (``memory`` here; persistent
ones plug in the same way). The model is lease/ack: ``claim`` leases a request whose host
may be visited now, and the engine later settles that lease exactly once with ``ack``
(done, plus the requests it discovered), ``retry`` (try again later) or ``fail``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from framework.http import Request

__all__ = ["Counts", "Frontier", "Lease"]


class Lease(NamedTuple):  # a tuple: cheaper to make than a dataclass, once per page
    """A request handed to the engine until it settles it; ``token`` tells leases apart."""

    request: Request
    host: str
    token: int = 0


@dataclass(frozen=True)
class Counts:
    """How much work the frontier holds, for progress reports and the final stats."""

    pending: int
    delayed: int
    leased: int
    seen: int


class Frontier(Protocol):
    """The queue + dedup seam. This is all the engine calls."""

    async def open(self) -> None:
        """Connect to the backend or load saved state."""

    async def close(self) -> None:
        """Release the backend; the frontier is not used afterwards."""

    async def add(self, requests: Sequence[Request]) -> list[Request]:
        """Queue the requests not seen before (by fingerprint) and return them."""

    async def claim(self) -> Lease | float | None:
        """Lease the most urgent request whose host may be visited now.

        Otherwise return how many seconds to wait before asking again (``math.inf``: until
        a lease is settled or requests are added), or None when nothing is queued or
        delayed at all.
        """

    async def ack(self, lease: Lease, discovered: Sequence[Request]) -> list[Request]:
        """Settle a handled request and queue what it discovered, in one step.

        Returns the discovered requests that were new.
        """

    async def retry(self, lease: Lease, request: Request, delay: float) -> None:
        """Settle a lease by queueing ``request`` again after ``delay`` seconds."""

    async def fail(self, lease: Lease, reason: str) -> None:
        """Settle a lease of a request that failed for good."""

    async def tune(self, host: str, *, delay: float | None = None, pause: float = 0.0) -> None:
        """Change a host's pace: its delay between requests from now on (throttling, a
        robots.txt Crawl-delay), and/or no request to it for ``pause`` seconds (Retry-After).
        """

    def counts(self) -> Counts:
        """Return the current sizes (may be slightly stale for shared backends)."""
