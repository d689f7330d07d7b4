"""The frontier: the crawl's queue of requests, its dedup, and per-host politeness.

``Frontier`` is the seam: all the engine calls. One module per backend implements it
(``memory``, ``sqlite``, ``redis``); ``backends.make_frontier`` picks one from the
project's ``frontier:`` URL, and ``backends.read_status`` reads a crawl's state for
``fw status`` without opening it. Scheduling shared by the local backends lives in
``hosts``.

The model is lease/ack: ``claim`` leases a request whose host may be visited now, and the
engine later settles that lease exactly once: with ``settle`` (done or failed, plus the
requests it discovered; many leases in one step) or ``retry`` (try again later). A
persistent backend keeps a lease until it is settled or expires, never pops a request
destructively, and (SQLite) stores the exporters' checkpoint in the same atomic step as
the settle, so that a crawl killed at any moment resumes with every page fetched and
every item exported once.

A persistent crawl runs in **rounds**: built with ``renew``, a backend that finds its crawl
finished starts a new round instead — it forgets every request it has seen and settled
(dedup starts over) and keeps its ``memory``, what plugins noted about each page for the
next round (``Memory``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from framework.errors import CrawlAborted
from framework.http import Request
from framework.http.urls import fingerprint, split_host

__all__ = [
    "ONCE",
    "Counts",
    "Frontier",
    "HostStatus",
    "Lease",
    "LeaseLost",
    "Memory",
    "Owner",
    "Saved",
    "Settlement",
    "Status",
    "WorkerStatus",
    "decode_request",
    "dedup_key",
    "encode_request",
    "signed_fingerprint",
    "without_once",
]


class Lease(NamedTuple):  # a tuple: cheaper to make than a dataclass, once per page
    """A request handed to the engine until it settles it; ``token`` tells leases apart."""

    request: Request
    host: str
    token: int | str = 0


class Settlement(NamedTuple):
    """How a handled lease ends: done, or failed for good; with the requests its page found."""

    lease: Lease
    discovered: Sequence[Request] = ()
    #: Why the request failed for good (``http_404``, ``timeout``); None if it was done.
    failure: str | None = None


class LeaseLost(Exception):  # control flow, like DropItem
    """A lease expired and went to another worker before this one settled it.

    ``retry`` raises it; ``settle`` answers None for that lease instead, and the engine
    raises it for the page. The engine undoes what it wrote for that page: the worker now
    holding the request will export its items.
    """


@dataclass(frozen=True)
class Counts:
    """How much work the frontier holds, for progress reports and the final stats."""

    pending: int
    delayed: int
    leased: int
    seen: int
    #: Requests settled as done, and as failed for good: not work the frontier holds, so
    #: left out of comparisons.
    done: int = field(default=0, compare=False)
    failed: int = field(default=0, compare=False)


def _nothing() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Saved:
    """What a frontier found when it opened: a new crawl, or one to continue."""

    #: An earlier run's state was found and this run continues it.
    resumed: bool = False
    #: That crawl is over: nothing pending, delayed or leased, and some request settled.
    finished: bool = False
    #: Requests settled so far (done or failed), for the resume message.
    settled: int = 0
    #: The exporters' positions at the last ack, by ``exporter_key``; empty if none.
    checkpoints: Mapping[str, Any] = field(default_factory=_nothing)
    #: The round this run starts, when it found the crawl finished and renewed it; else 0.
    renewed: int = 0


@dataclass(frozen=True)
class Owner:
    """Whose crawl a persistent frontier holds; ``where`` locates the project's
    ``frontier:`` key (``FILE:LINE``) for the error when the state is another's.

    ``domains`` are the project's ``allowed_domains`` (empty: every host), ``None`` when
    unknown. Workers of one crawl running at once must agree on them: each drops as
    offsite the pages only the others may visit.
    """

    project: str
    spider: str
    where: str = "frontier"
    domains: tuple[str, ...] | None = None

    @property
    def scope(self) -> str:
        """The allowed domains as one string, the same for the same set ('' unknown, '*'
        every host)."""
        if self.domains is None:
            return ""
        return " ".join(sorted({_domain(entry) for entry in self.domains})) or "*"


def _domain(entry: str) -> str:
    """Write an ``allowed_domains`` entry one way: ``::1`` and ``[::1]`` are one host, and
    ports 80 and 443 one port (``Offsite``)."""
    host, port = split_host(entry)
    host = f"[{host}]" if ":" in host else host
    if port is None:
        return host
    return f"{host}:{'web' if port in (80, 443) else port}"


class Memory(Protocol):
    """What a crawl remembers about each page from one round to the next.

    Plugins get it with ``crawl_started``; this is all they call. A value is text, kept
    by the request's fingerprint (method, canonical URL, body). ``get`` answers what
    earlier rounds left: a value put during this round is for the next one. So a page
    fetched again after a crash, before its settle was acknowledged, is compared with
    what the last finished round saw, whatever its first fetch noted.
    """

    async def get(self, request: Request) -> str | None:
        """Return what earlier rounds left for ``request``, or None."""

    async def put(self, request: Request, value: str | None) -> None:
        """Keep ``value`` (None: nothing) for ``request`` for the next rounds."""


class Frontier(Protocol):
    """The queue + dedup seam. This is all the engine calls.

    ``open`` and ``close`` bracket a crawl; ``add`` queues start requests; ``claim``
    leases the next request; ``settle`` and ``retry`` end a lease; ``tune`` paces a host
    and ``refund`` gives back a turn a lease did not use; ``counts`` sizes the work left;
    ``persistent`` and ``keeps_checkpoints`` say what the backend keeps; ``memory`` is
    handed to plugins.
    """

    #: Requests outlive this process: they are stored as JSON, and a later run (or
    #: another worker) may continue the crawl.
    persistent: bool
    #: ``settle`` stores the exporters' checkpoint, which a resumed crawl rewinds to.
    keeps_checkpoints: bool

    @property
    def forgets(self) -> int:
        """How many times the backend may have forgotten requests queued before (a Redis
        back from an outage, restored from a snapshot): what a worker remembers is void."""

    @property
    def memory(self) -> Memory:
        """What plugins note about each page for the next rounds; usable once open."""

    async def open(self) -> Saved:
        """Connect to the backend, load saved state, and say what was found."""

    async def close(self) -> None:
        """Release the backend; the frontier is not used afterwards."""

    async def add(self, requests: Sequence[Request]) -> list[Request]:
        """Queue the requests not seen before (by fingerprint) and return them."""

    async def claim(self) -> Lease | float | None:
        """Lease the most urgent request whose host may be visited now.

        Otherwise return how many seconds to wait before asking again (``math.inf``: until
        a lease is settled or requests are added), or None when nothing is queued, delayed
        or (for a shared backend) leased by any worker: the crawl is over.
        """

    async def settle(
        self, settlements: Sequence[Settlement], checkpoint: Mapping[str, Any] | None = None
    ) -> list[list[Request] | None]:
        """Settle handled leases and queue what they discovered, all in one atomic step.

        ``checkpoint`` (backends that keep checkpoints) records where the exporters stand
        now that these pages' items are written. Returns, for each settlement in order,
        its discovered requests that were new, or None if the lease is no longer this
        worker's. A backend that keeps checkpoints never loses a lease while its worker
        lives: the checkpoint of a batch with a lost lease would count that page's items.
        """

    async def retry(self, lease: Lease, request: Request, delay: float) -> None:
        """Settle a lease by queueing ``request`` again after ``delay`` seconds.

        Raises ``LeaseLost`` if the lease is no longer this worker's.
        """

    async def tune(self, host: str, *, delay: float | None = None, pause: float = 0.0) -> None:
        """Change a host's pace: its delay between requests from now on (throttling, a
        robots.txt Crawl-delay), and/or no request to it for ``pause`` seconds (Retry-After).
        """

    async def refund(self, lease: Lease) -> None:
        """Give back the turn ``lease`` took of its host's pace: its request was answered
        without reaching the host (a cache hit), so the host's next request need not wait
        the delay this one started. Nothing changes if another request of the host started
        since, or its pace changed; call it before the lease is settled.
        """

    def counts(self) -> Counts:
        """Return the current sizes (may be slightly stale for shared backends)."""

    def left_behind(self) -> list[Request]:
        """Return the requests queued now that no later run will find: a memory frontier's,
        as its run ends; none for a persistent one."""


# -------------------------------------------------------------------------------------------
# A crawl's state as ``fw status`` reads it (``backends.read_status``)
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostStatus:
    """One host's share of a crawl."""

    pending: int = 0
    leased: int = 0
    done: int = 0
    failed: int = 0


@dataclass(frozen=True)
class WorkerStatus:
    """A worker process a shared crawl has seen."""

    id: str
    #: Seconds since it last showed a sign of life.
    idle: float
    #: Whether it is still heartbeating (a worker that exited or died is not).
    alive: bool


@dataclass(frozen=True)
class Status:
    """A crawl's state as ``fw status`` shows it."""

    backend: str
    pending: int
    delayed: int
    leased: int
    done: int
    failed: int
    hosts: Mapping[str, HostStatus] = field(default_factory=_nothing)
    workers: tuple[WorkerStatus, ...] = ()

    @property
    def finished(self) -> bool:
        """Nothing is left to do and something was done."""
        return not (self.pending or self.delayed or self.leased) and bool(self.done + self.failed)


# -------------------------------------------------------------------------------------------
# Dedup, and how persistent backends store requests
# -------------------------------------------------------------------------------------------

#: A ``meta`` entry that makes a ``dont_filter`` request a duplicate of any earlier one
#: with the same value (an unsigned 64-bit int) while that one is queued, leased or done;
#: a persistent backend queues the entry of a value again only once it failed. ``fw run
#: --retry-failed`` sets it per request (``failures.Listed``), so that a retry killed
#: part-way and run again resumes instead of queueing every listed request anew, while a
#: retry that failed is retried. Backends take it out before they store a request.
ONCE = "fw.once"


def dedup_key(request: Request) -> int | None:
    """Return the unsigned 64-bit key ``request`` is deduplicated by: its fingerprint; for
    a ``dont_filter`` request its ``ONCE`` value, or None (never a duplicate)."""
    if not request.dont_filter:
        return fingerprint(request)
    once: int | None = request.meta.get(ONCE)
    return once


def without_once(request: Request) -> Request:
    """Return ``request`` as a backend stores it: without its ``ONCE`` entry."""
    if not request.dont_filter or ONCE not in request.meta:
        return request
    meta = dict(request.meta)
    del meta[ONCE]
    return request.replace(meta=meta)


def encode_request(request: Request) -> str:
    """Serialise a request for a persistent backend, as small as it can be stored: its URL
    alone if every other field has its default (most discovered links), else JSON of the
    fields that differ from their defaults. Its meta must be JSON."""
    data = request.to_dict()
    url = data.pop("url")
    changed = {name: value for name, value in data.items() if value != _DEFAULTS[name]}
    if not changed and url.startswith(("http://", "https://")):
        return str(url)
    try:
        return json.dumps(
            {"url": url} | changed,
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise CrawlAborted(
            f"{request.url}: a persistent frontier stores requests as JSON, "
            f"and this one's meta is not: {exc}"
        ) from exc


def decode_request(text: str | bytes) -> Request:
    """Rebuild a request that ``encode_request`` stored (or an older fw's full JSON)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if text.startswith("{"):
        return Request.from_dict(json.loads(text))
    return Request(text)


#: Every field's default (the URL has none): what a stored request leaves out.
_DEFAULTS = Request("http://example.com/").to_dict()


def signed_fingerprint(fingerprint: int) -> int:
    """Fold a 64-bit fingerprint into a signed 64-bit integer, which SQLite and Redis
    store as a plain integer (Redis: an intset entry of 8 bytes)."""
    return fingerprint - (1 << 64) if fingerprint >= 1 << 63 else fingerprint
