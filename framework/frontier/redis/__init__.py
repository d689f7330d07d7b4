"""A Redis frontier: one crawl's queue, seen-set and host pacing shared by many workers.

Every state change is one Lua script (``lua/*.lua``, run by ``scripts.py``) run on the
server's clock, so any number of ``fw run`` processes on any machines share a
crawl: a request is leased, never popped, and a lease that is not settled in time goes
back to the queue. All keys start with the crawl's prefix (``fw:<name>:`` by default)::

    meta             hash   counters (pending, seen, done, failed), id and filing sequences,
                            when the crawl was created, its epoch, and its owner (the
                            project's name and spider: another project is refused it);
                            while ``--fresh`` wipes the crawl, only the wipe's mark
    seen:<shard>     set    64-bit fingerprints, sharded by their top 18 bits
    req              hash   id -> host, priority and JSON of every live request
    q:<host>         zset   the host's queued ids by -priority (then by id: oldest first)
    h:<host>         hash   the host's policy, tuned delay, next start, in flight, totals
    hosts            set    every host seen, for ``fw status``
    ready            zset   hosts that may be visited now, by their best request's rank
    waiting          zset   hosts resting between requests, by when they may go again
    leases, tokens   zset, hash   leased ids by expiry; id -> the lease's token
    delayed          zset   retries by due time
    failures         hash   id -> reason and request, for failed requests
    once             hash   ``ONCE`` key -> id of the entry a ``--retry-failed`` request
                            was queued as: a retry of it, failed, is queued again
    failed_fp        hash   fingerprint -> ids (comma-separated) of a request's failed
                            entries: a retry's first entry takes the failures over (it
                            is counted once, as the retry ends)
    workers          hash   worker id -> last heartbeat (server time), "… stopped" after close
    calls:<worker>   hash   the worker's last 4096 answers, to make repeated calls safe
    memory           hash   the crawl's memory: a page's entry by fingerprint, and the
                            current round (see ``lua/memory_put.lua``)

Keys that vanish under a running crawl (``FLUSHALL``, a restart without persistence,
``--fresh``) must not read as an empty crawl, which is a finished one. So a crawl is
created with a random epoch, which its workers pass to every script and ``lib.lua``
compares with the one in ``meta`` (one ``HGET``) before changing anything: a worker that
finds another epoch, or none, raises ``CrawlAborted``. One that opens then starts a new
crawl. A Redis restarted with its data keeps the epoch, and the crawl goes on.

``--fresh`` deletes the crawl's keys with SCAN, which takes a while for a big crawl, so a
worker opening meanwhile must not create a crawl the scan would then half delete. The wipe
first replaces ``meta`` with a mark (its token and the time of its last progress), which
has no epoch: the old crawl's workers stop, and ``open.lua`` answers "wiping" instead of
creating a crawl. Such a worker waits (saying so) for the new crawl, which the wiping
worker's ``open.lua`` creates when it lifts the mark, in one step. A wipe that makes no
progress for a lease (its worker was killed) is never taken for a crawl, finished or not:
workers refuse to start until a ``--fresh`` run wipes it again.

A new round of a finished crawl (``renew``) is such a wipe that spares ``memory``, made
only if the crawl is still the finished one its worker saw: of several workers renewing
at once, one wipes and the others wait for its round. ``open.lua`` counts the round as it
lifts the mark. A new round's wipe whose worker was killed is taken over by the next
worker that renews; any other waits for that.

A claim touches a bounded number of entries of sorted sets: its cost grows as
O(log n) with the queue, never by scanning it.

Dedup memory, measured with ``INFO memory`` on Redis 6.2 (libc malloc) and 7.0
(jemalloc): one set of 8-byte strings costs 56 bytes per fingerprint, 5.6 GB for 100M
URLs. Sharded into 2^18 sets of integers, each stays a compact intset (8 bytes an entry
while it holds at most ``set-max-intset-entries``, 512 by default): 34-36 bytes per
fingerprint at 1M URLs, where the per-key overhead dominates, and 8.2-8.9 bytes at the
density of 100M URLs (381 per set, measured with 1.56M in 2^12 sets), about 0.9 GB.
Past about 130M URLs the fullest sets turn into hash tables of 56 bytes an entry.

If Redis is unreachable, every call waits for it (``scripts.py``) and then carries on, or,
past the URL's ``patience``, stops the worker: its leases go back when they expire.
A call may have run before the connection dropped, so each mutating call carries a number
and the worker's answers are kept (``calls:<worker>``): a repeated push, claim, settle or
retry gets its first answer instead of running twice. A lease that expired during the
outage is answered as lost.

Round trips, not Redis, are what a worker spends most on: a claim or a settle costs the
worker ~0.3 ms of CPU (packing, a send and a receive on the socket, parsing) whatever it
carries. So claims made while a claim call is under way go together in the next one, and
the engine settles all the pages that finished while one settle was under way at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import random
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis import exceptions as redis_errors

from framework.errors import CrawlAborted, ProjectError, UsageError
from framework.fetch.politeness import Politeness
from framework.frontier import (
    Counts,
    HostStatus,
    Lease,
    LeaseLost,
    Owner,
    Saved,
    Settlement,
    Status,
    WorkerStatus,
    decode_request,
    dedup_key,
    encode_request,
    signed_fingerprint,
    without_once,
)
from framework.frontier.redis.scripts import (
    Disagrees,
    Gone,
    OutOfMemory,
    Owned,
    Scripts,
    Unreachable,
    shown,
    url_problem,
)
from framework.http import Request
from framework.http.urls import fingerprint, host_of

__all__ = ["RedisFrontier", "read_status", "shown", "where"]

log = logging.getLogger("fw")

#: Fingerprints are sharded by their top bits: 2^18 sets stay compact up to ~130M URLs.
#: Fixed for a crawl's life (a fingerprint is looked for in one shard only).
SHARD_BITS = 18
#: Expired leases, due retries and rested hosts a claim moves at most, to bound its cost.
_SWEEP = 100
#: How often a worker opening during another's ``--fresh`` wipe asks again: first, at most.
_WIPE_POLL_FIRST, _WIPE_POLL_MAX = 0.05, 1.0


class _Joined(NamedTuple):
    """What opening the crawl found, for this worker."""

    existed: int
    epoch: bytes
    counts: list[int]
    #: This worker waited for another's wipe: the crawl is new to it.
    waited: bool
    round: int
    #: This worker took over a new round's wipe that another left half done.
    renewed: bool = False

    @property
    def finished(self) -> bool:
        pending, delayed, leased, _, done, failed = self.counts[:6]
        return bool(self.existed) and not (pending or delayed or leased) and done + failed > 0


class RedisFrontier:
    """Keep the crawl in Redis, so that several workers share it and it outlives them."""

    persistent = True
    #: Each worker writes its own exports, whose positions mean nothing to the others.
    keeps_checkpoints = False

    @property
    def forgets(self) -> int:
        """Outages ended: a Redis restored from a snapshot lost what was queued since."""
        return self._scripts.outages

    def __init__(
        self,
        url: str,
        politeness: Politeness,
        *,
        name: str,
        fresh: bool = False,
        owner: Owner | None = None,
        renew: bool = False,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        try:
            self.url, self.prefix, self.lease, patience = where(url, name)
        except UsageError as exc:  # at the frontier: key's line
            raise exc if owner is None else UsageError(f"{owner.where}: {exc}") from None
        self._owner = owner
        self._scripts = Scripts(self.url, self.prefix, patience)
        self._politeness, self._fresh, self._renew = politeness, fresh, renew
        self._jitter = jitter
        self.memory = _Memory(self)
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._epoch = secrets.token_hex(8)  # the crawl's, if open creates it; else replaced
        self._joined = False  # open registered this worker in a crawl: close deregisters it
        self._gone = False  # the crawl's state vanished from Redis: every call stops the crawl
        self._settled_here = 0  # pages this worker settled: its exports hold their items
        self._unsettled = 0  # pages whose settle call had no answer: their items too
        self._settling = 0  # pages of the settle call under way
        self._calls = itertools.count(1)  # numbers this worker's mutating calls
        self._held: dict[str, str] = {}  # lease token -> request id, for the heartbeat
        self._policies: dict[str, tuple[int, str, str]] = {}  # by host, see _policy
        self._counts = Counts(0, 0, 0, 0)
        self._heartbeat: asyncio.Task[None] | None = None
        self._claimers: list[asyncio.Future[Lease | float | None]] = []  # for the next call
        self._claiming: asyncio.Task[None] | None = None  # makes the claim calls, one by one
        self._spare: list[Lease] = []  # leased for a claim that was cancelled meanwhile

    # -------------------------------------------------------------------------------------
    # Opening and closing
    # -------------------------------------------------------------------------------------

    async def open(self) -> Saved:
        """Connect, register this worker, start its heartbeat, and say what was found;
        start a new round of a finished crawl if built to ``renew``."""
        try:
            await self._scripts.open()
            wipe = secrets.token_hex(8) if self._fresh else ""
            if wipe:
                await self._scripts.wipe(wipe, self._owner_args)
            joined = await self._join(wipe)
            if self._renew and joined.finished:
                joined = await self._new_round(joined.epoch)
        except Owned as exc:
            await self._scripts.disconnect()
            raise self._not_ours(*exc.args) from None
        except Disagrees as exc:
            await self._scripts.disconnect()
            raise self._disagrees(*exc.args) from None
        except Unreachable as exc:
            await self._scripts.disconnect()
            raise self._abandoned(exc) from None
        except BaseException:
            await self._scripts.disconnect()
            raise
        self._epoch, self._joined = joined.epoch.decode(), True
        counts = joined.counts
        self._note(counts)
        self._heartbeat = asyncio.create_task(self._beat(), name=f"fw heartbeat {self.worker}")
        if joined.renewed:
            return Saved(renewed=joined.round)
        return Saved(
            # A crawl created since this worker began (its --fresh, or one it waited for)
            # is new to it: its exports start over.
            resumed=bool(joined.existed) and not (self._fresh or joined.waited),
            finished=joined.finished,
            settled=counts[4] + counts[5],
        )

    async def _new_round(self, epoch: bytes) -> _Joined:
        """Renew the finished crawl of ``epoch``, or join the round another worker starts."""
        token = secrets.token_hex(8)
        await self._scripts.wipe(token, self._owner_args, renews=epoch.decode())
        return (await self._join(token))._replace(renewed=True)

    async def close(self) -> None:
        """Stop the heartbeat, hand back the leases still held, and disconnect."""
        for task in (self._heartbeat, self._claiming):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._heartbeat = self._claiming = None
        if not self._joined:  # open failed: there is no crawl to leave
            await self._scripts.disconnect()
            return
        try:
            problem = await self._scripts.close("close", self._epoch, self.worker, *self._pairs())
        except Gone:  # nothing to hand back, and the crawl ends anyway
            if not self._gone:
                log.warning("%s", self._lost())
            problem = None
        if problem is not None:
            log.warning(
                "%s: %d leases go back to the queue when they expire in %gs",
                problem,
                len(self._held),
                self.lease,
            )
        self._held.clear()
        self._spare.clear()

    # -------------------------------------------------------------------------------------
    # The queue
    # -------------------------------------------------------------------------------------

    async def add(self, requests: Sequence[Request]) -> list[Request]:
        """Queue the requests no worker has queued before (by fingerprint); return them."""
        if not requests:
            return []
        args = self._requests(requests)
        new, counts = await self._run("push", self.worker, next(self._calls), *args)
        self._note(counts)
        return _picked(requests, new)

    async def claim(self) -> Lease | float | None:
        """Lease the best request of the best ready host, or say how long to wait.

        None means the crawl is over for every worker: nothing pending, delayed or leased.
        Claims made while a claim call is under way are made together by the next call.
        """
        if self._spare:
            return self._spare.pop()
        waiter: asyncio.Future[Lease | float | None] = asyncio.get_running_loop().create_future()
        self._claimers.append(waiter)
        if self._claiming is None or self._claiming.done():
            self._claiming = asyncio.create_task(
                self._claim_batches(), name=f"fw claims {self.worker}"
            )
        try:
            return await waiter
        except asyncio.CancelledError:
            # Cancelled after its lease came but before it was taken: keep it for the next.
            got = waiter.result() if waiter.done() and not waiter.cancelled() else None
            if isinstance(got, Lease):
                self._spare.append(got)
            raise

    async def settle(
        self, settlements: Sequence[Settlement], checkpoint: Mapping[str, Any] | None = None
    ) -> list[list[Request] | None]:
        """Mark the requests done or failed and queue what they discovered, in one step.

        ``checkpoint`` is not stored: each worker writes its own exports.
        """
        keys = [self._held.get(str(s.lease.token)) for s in settlements]
        args: list[Any] = []
        for key, settlement in zip(keys, settlements, strict=True):
            if key is not None:
                discovered, failure = settlement.discovered, settlement.failure
                outcome = "done" if failure is None else "failed"
                args.append(
                    f"{key}\t{settlement.lease.token}\t{outcome}\t{len(discovered)}"
                    f"\t{_failed_as(settlement)}\t{failure or ''}"
                )
                args += self._requests(discovered)
        answers: list[str] = []
        if args:
            self._settling = sum(key is not None for key in keys)  # said if Redis is given up
            try:
                answer, counts = await self._run("settle", self.worker, next(self._calls), *args)
            except BaseException as exc:  # no answer: given up on Redis, or stopped
                if isinstance(exc, asyncio.CancelledError):  # else the error says so
                    self._unanswered()
                self._unsettled += self._settling
                raise
            finally:
                self._settling = 0
            self._note(counts)
            answers = answer.decode().split("|")
            self._settled_here += len(answers) - answers.count("!")
        for settlement in settlements:
            self._held.pop(str(settlement.lease.token), None)
        found = iter(answers)
        return [
            None if key is None else _new(settlement.discovered, next(found))
            for key, settlement in zip(keys, settlements, strict=True)
        ]

    async def retry(self, lease: Lease, request: Request, delay: float) -> None:
        """Hold ``request`` back for ``delay`` seconds (server time) in the lease's stead."""
        key = self._key(lease)
        host = host_of(request.url)
        args = (
            self.worker,
            next(self._calls),
            key,
            lease.token,
            delay,
            host,
            request.priority,
            encode_request(request),
            *self._policy(host),
        )
        self._settled(lease, await self._run("retry", *args))

    async def tune(self, host: str, *, delay: float | None = None, pause: float = 0.0) -> None:
        """Set the host's delay from now on, and/or rest it ``pause`` s, for every worker."""
        await self._run(
            "tune",
            host,
            "" if delay is None else repr(float(delay)),
            pause,
            self._jitter(),
            *self._policy(host),
        )

    async def refund(self, lease: Lease) -> None:
        """Do nothing: the host's pace is shared by every worker, and a turn is not given
        back (a cache hit on a Redis frontier waits its host's delay)."""

    def left_behind(self) -> list[Request]:
        """None: the next run, or another worker, finds what is queued in Redis."""
        return []

    def counts(self) -> Counts:
        """Return the sizes the last call saw; other workers change them meanwhile."""
        return self._counts

    # -------------------------------------------------------------------------------------
    # Inside
    # -------------------------------------------------------------------------------------

    async def _join(self, wipe: str) -> _Joined:
        """Open the crawl. While another worker's ``--fresh`` (or new round) wipes it,
        wait for the crawl that wipe creates, as long as the wipe makes progress; take
        over a new round's wipe that stopped, if this worker renews."""
        pause, waiting, took_over = _WIPE_POLL_FIRST, False, False
        while True:
            kind, *answer = await self._run("open", self.worker, wipe, *self._owner_args[:4])
            if kind == b"open":
                existed, epoch, counts, round_, was = answer
                self._domains_changed(was.decode())
                return _Joined(existed, epoch, counts, waiting, int(round_), took_over)
            if kind == b"owner":
                raise self._not_ours(*(name.decode() for name in answer))
            if kind == b"scope":
                raise self._disagrees(answer[0].decode())
            idle, renewing = float(answer[0]), answer[1] == b"1"
            if idle > self.lease and renewing and self._renew:
                wipe, took_over = secrets.token_hex(8), True
                log.warning("taking over a new round that another worker left half started")
                await self._scripts.wipe(wipe, self._owner_args, keep=True)
                continue
            if idle > self.lease:  # its worker died (or lost Redis for a lease)
                raise _half_wiped(self.url, idle, renewing)
            if not waiting:
                waiting = True
                log.warning(
                    "a `fw run --fresh` (or a new round) is wiping this crawl in redis at %s; "
                    "waiting for it to finish",
                    self._scripts.address,
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, _WIPE_POLL_MAX)

    async def _run(self, script: str, *args: Any) -> Any:
        """Run a script on this worker's crawl; raise ``CrawlAborted`` once it is gone, or
        if Redis is out of memory."""
        if self._gone:
            raise self._lost()
        try:
            return await self._scripts.run(script, self._epoch, *args)
        except Gone as exc:
            self._gone = True
            raise self._lost() from exc
        except Unreachable as exc:
            raise self._abandoned(exc) from exc
        except OutOfMemory as exc:
            raise CrawlAborted(
                f"the Redis at {shown(self.url)} is out of memory (used memory > maxmemory) "
                f"and refuses to store more of the crawl; {self._whole()}; a rerun continues "
                "once Redis has room"
            ) from exc

    @property
    def _owner_args(self) -> tuple[str, str, str, str, str]:
        """The project's name, spider and allowed domains, how long a running worker may
        be silent, and this worker: what open.lua and wipe.lua check the crawl against."""
        owner, window = self._owner, f"{self.lease:g}"
        if owner is None:
            return ("", "", "", window, self.worker)
        return (owner.project, owner.spider, owner.scope, window, self.worker)

    def _not_ours(self, project: str, spider: str) -> ProjectError:
        """Say that the crawl under this prefix is another project's."""
        assert self._owner is not None  # no owner, no check: open.lua compares ''
        return ProjectError(
            self._owner.where,
            "frontier",
            f"the Redis at {shown(self.url)} holds, under {self.prefix!r}, the crawl of "
            f"project '{project}' (spider {spider}); give this project a name of its own "
            "(name:), or its crawl another ?prefix=",
        )

    def _disagrees(self, running: str) -> ProjectError:
        """Say that the crawl's running workers allow other domains than this project."""
        assert self._owner is not None  # no owner, no domains to compare: scripts pass ''
        return ProjectError(
            self._owner.where,
            "frontier",
            f"the Redis at {shown(self.url)} holds, under {self.prefix!r}, a crawl whose "
            f"running workers have allowed_domains {_shown_scope(running)}, and this project "
            f"{_shown_scope(self._owner.scope)}: each would drop the other's pages as "
            "offsite. If it is another project's crawl, give this project a name of its own "
            "(name:) or its crawl another ?prefix=; to change allowed_domains for the rest "
            f"of this crawl, stop its workers first (one killed counts as running for a "
            f"lease, {self.lease:g}s)",
        )

    def _domains_changed(self, was: str) -> None:
        """Say that this run changed the allowed domains the crawl ran with."""
        if was and self._owner is not None:
            log.warning(
                "allowed_domains changed since the crawl under %r last ran: %s before, %s "
                "now; queued requests now offsite are not fetched",
                self.prefix,
                _shown_scope(was),
                _shown_scope(self._owner.scope),
            )

    def _lost(self) -> CrawlAborted:
        """Say that the crawl's state is gone, and how far this worker's exports are whole."""
        return CrawlAborted(
            f"the crawl's state in Redis at {shown(self.url)} is gone (flushed or restarted "
            f"without persistence); {self._whole()}"
        )

    def _abandoned(self, exc: Unreachable) -> CrawlAborted:
        """Say that this worker stopped waiting for Redis, and how far its exports are whole."""
        return CrawlAborted(f"{exc}; {self._whole()}; a rerun continues once Redis is back")

    def _whole(self) -> str:
        """Say how far this worker's exports are whole, for a message that stops it."""
        said = (
            f"{self._settled_here} pages settled by this worker, its exports are complete "
            "up to them"
        )
        if unsettled := self._unsettled + self._settling:
            said += (
                f", and hold the items of {unsettled} more whose settling did not go through: "
                "another worker may export them again"
            )
        return said

    def _unanswered(self) -> None:
        """Say that the settling of the pages being settled, whose items the exports hold,
        had no answer: Redis may have taken it or not."""
        log.warning(
            "Redis did not answer the settling of %d pages: their items are in this "
            "worker's exports, and if it did not take it, another worker exports them again",
            self._settling,
        )

    async def _claim_batches(self) -> None:
        """Make claim calls while claims wait, each for all the claims waiting."""
        while self._claimers:
            waiters = [waiter for waiter in self._claimers if not waiter.done()]
            self._claimers = []
            while waiters and self._spare:  # leased for claims cancelled during the last call
                waiters.pop().set_result(self._spare.pop())
            if not waiters:
                continue
            try:
                answers = await self._claim(len(waiters))
            except Exception as exc:  # not an outage (that is waited out): a refusal
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            for waiter, answer in zip(waiters, answers, strict=True):
                if not waiter.done():
                    waiter.set_result(answer)
                elif isinstance(answer, Lease):  # its claimer was cancelled: the next one's
                    self._spare.append(answer)

    async def _claim(self, count: int) -> list[Lease | float | None]:
        """Lease up to ``count`` requests; the claims left over are told how long to wait."""
        kind, wait, counts, *leases = await self._run(
            "claim", self.worker, next(self._calls), self.lease, self._jitter(), _SWEEP, count
        )
        self._note(counts)
        if kind == b"over":
            return [None] * count
        got: list[Lease | float | None] = [
            self._leased(*leases[i : i + 4]) for i in range(0, len(leases), 4)
        ]
        return got + [float(wait or 0)] * (count - len(got))

    def _leased(self, key: bytes, host: bytes, data: bytes, token: bytes) -> Lease:
        self._held[token.decode()] = key.decode()
        return Lease(decode_request(data), host.decode(), token.decode())

    def _settled(self, lease: Lease, reply: Any) -> None:
        """Forget a settled lease; raise ``LeaseLost`` if it was not ours any more."""
        self._held.pop(str(lease.token), None)
        self._note(reply[-1])
        if reply[0] == b"lost":
            raise LeaseLost(f"the lease of {lease.request.url} expired and went back to the queue")

    def _key(self, lease: Lease) -> str:
        """Return the id of the request a lease of this worker holds."""
        key = self._held.get(str(lease.token))
        if key is None:
            raise LeaseLost(f"lease {lease.token} of {lease.request.url} is not held")
        return key

    def _requests(self, requests: Sequence[Request]) -> list[str]:
        """Pack each request into the one script argument ``push`` in lib.lua reads."""
        packed = []
        for request in requests:
            host = host_of(request.url)
            key = dedup_key(request)
            shard, member = ("", "") if key is None else _seen(key, request.dont_filter)
            if shard.startswith("o"):  # a retry: it takes over the failure of what it retries
                shard += f":{signed_fingerprint(fingerprint(request))}"
            concurrency, delay, interval = self._policy(host)
            packed.append(
                f"{shard}\t{member}\t{host}\t{request.priority}\t{concurrency}\t"
                f"{delay}\t{interval}\t{encode_request(without_once(request))}"
            )
        return packed

    def _policy(self, host: str) -> tuple[int, str, str]:
        """Return the host's concurrency, delay and interval, as the scripts store them."""
        policy = self._policies.get(host)
        if policy is None:
            configured = self._politeness.for_host(host)
            policy = self._policies[host] = (
                configured.concurrency,
                repr(float(configured.delay)),
                repr(configured.interval),
            )
        return policy

    def _note(self, counts: Sequence[int]) -> None:
        """Keep the sizes a script reported, for ``counts()``."""
        self._counts = Counts(*map(int, counts[:6]))

    def _pairs(self) -> list[str]:
        """Return (request id, token) of every lease held, flat, for a script's arguments."""
        return [value for token, key in self._held.items() for value in (key, token)]

    async def _beat(self) -> None:
        """Every third of a lease, extend this worker's leases and show it is alive; stop
        if the crawl is gone (the worker's next call says so)."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self._run("extend", self.worker, self.lease, *self._pairs())
            except CrawlAborted as exc:
                if self._gone or isinstance(exc.__cause__, Unreachable):
                    return
                log.error("redis heartbeat failed: %s", exc.__cause__)  # out of memory
            except redis_errors.RedisError as exc:  # a refusal, not an outage: try again
                log.error("redis heartbeat failed: %s", exc)


class Place(NamedTuple):
    """Where a crawl lives in Redis, and how fw treats it, from a ``redis://`` URL."""

    url: str  # the server's, as redis-py reads it
    prefix: str  # of the crawl's keys
    lease: float  # seconds a claimed request stays a worker's without a heartbeat
    patience: float  # seconds a call waits for an unreachable Redis; inf: for ever


def where(url: str, name: str) -> Place:
    """Read a ``redis://`` frontier URL: the server's URL and fw's options in its query
    (``?lease=30&prefix=fw:shop:&patience=600``); the rest of the URL is redis-py's."""
    server, options = _split_url(url)
    prefix = _prefix(options.get("prefix", f"fw:{name}:"), "prefix" in options)
    lease = _seconds("lease", options.get("lease", "30"), url)
    return Place(server, prefix, lease, _patience(options.get("patience", "600"), url))


#: The names of keys a crawl has many of, each followed by ``:`` and a host, a shard or a
#: worker (lib.lua's ``KINDS_OF``).
_MANY = ("seen", "q", "h", "calls")


def _prefix(prefix: str, chosen: bool) -> str:
    """Check that no crawl's keys can nest among another's: ``fw run --fresh`` of a crawl
    under ``fw:a:`` deletes every ``fw:a:q:…`` key, which would hold all of a crawl under
    ``fw:a:q:``. So a prefix ends with ``:`` and none of its parts is one of ``_MANY``."""
    how = "choose another ?prefix=" if chosen else "rename the project (name:) or set ?prefix="
    if not prefix.endswith(":"):
        raise UsageError(f"frontier: the key prefix {prefix!r} must end with ':'")
    clash = next((part for part in prefix.split(":") if part in _MANY), None)
    if clash is not None:
        raise UsageError(
            f"frontier: the key prefix {prefix!r} has the part {clash!r}, a name fw gives "
            f"keys of its own ({', '.join(_MANY)}), so another crawl's `fw run --fresh` "
            f"could delete this one's keys; {how}"
        )
    return prefix


async def read_status(url: str, prefix: str, *, lease: float = 30.0) -> Status:
    """Read a crawl's state on a connection of its own, without joining the crawl."""
    scripts = Scripts(url, prefix)
    now, exists, counts, hosts, workers, wiping = await scripts.read("status")
    place = f"under {prefix!r} in the redis at {scripts.address}"
    if not exists:
        raise UsageError(f"frontier: no crawl state {place} yet")
    if wiping and float(wiping) > lease:
        raise _half_wiped(url, float(wiping), renewing=False)
    if wiping:
        raise UsageError(
            f"frontier: the crawl {place} is being wiped by `fw run --fresh`, or for a new round"
        )
    found = {
        hosts[i].decode(): HostStatus(*map(int, hosts[i + 1 : i + 5]))
        for i in range(0, len(hosts), 5)
    }
    return Status(
        "redis",
        counts[0],
        counts[1],
        counts[2],
        counts[4],
        counts[5],
        dict(sorted(found.items())),
        tuple(
            _worker(workers[i], workers[i + 1], float(now), lease)
            for i in range(0, len(workers), 2)
        ),
    )


#: fw's own options in a ``redis://`` URL's query.
_OURS = ("lease", "prefix", "patience")


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """Take fw's own options (``lease``, ``prefix``, ``patience``) out of a ``redis://``
    URL's query."""
    try:
        parts = urlsplit(url)  # "redis://[::1/0": an unclosed bracket
        parts.port  # noqa: B018 - a "port" that is the start of a password: refused now
    except ValueError as exc:  # before the URL is written again, mangling what masks it
        raise UsageError(f"frontier: {shown(url)}: {url_problem(exc)}") from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours: dict[str, str] = {}
    for key, value in query:
        if key in _OURS and key in ours:
            raise UsageError(f"frontier: {shown(url)}: {key}= is given twice; give it once")
        if key in _OURS:
            ours[key] = value
    rest = urlencode([(key, value) for key, value in query if key not in ours])
    return urlunsplit(parts._replace(query=rest)), ours


def _half_wiped(url: str, idle: float, renewing: bool) -> UsageError:
    """Say that a ``--fresh`` wipe stopped midway, and what to do about it."""
    if renewing:
        return UsageError(
            f"frontier: a new round of the finished crawl in Redis at {shown(url)} began "
            f"{idle:.0f}s ago and stopped before its start was done; run `fw run` with the "
            "plugin that renews it (e.g. --incremental) to finish starting it, or `fw run "
            "--fresh` to start the crawl over"
        )
    return UsageError(
        f"frontier: a `fw run --fresh` began wiping the crawl in Redis at {shown(url)} and "
        f"stopped {idle:.0f}s ago before it finished; run `fw run --fresh` to start the "
        "crawl over"
    )


def _seconds(option: str, text: str, url: str) -> float:
    """Read a URL option that is a positive, finite number of seconds."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == math.inf:
        raise UsageError(
            f"frontier: {shown(url)}: {option}={text}: expected a number of seconds > 0"
        )
    return seconds


def _patience(text: str, url: str) -> float:
    """Read the ``patience`` option: seconds, at least one, or ``inf`` for ever."""
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        seconds = _seconds("patience", text, url)
    except UsageError as exc:
        raise UsageError(f"{exc}, or inf") from None
    if seconds < 1:  # shorter than a busy Redis may take to answer: no outage at all
        raise UsageError(
            f"frontier: {shown(url)}: patience={text}: expected at least 1 second, or inf"
        )
    return seconds


class _Memory:
    """The crawl's memory (``frontier.Memory``), in the ``memory`` hash."""

    def __init__(self, frontier: RedisFrontier) -> None:
        self._frontier = frontier

    async def get(self, request: Request) -> str | None:
        """Return what earlier rounds left for ``request``, or None."""
        key = signed_fingerprint(fingerprint(request))
        found = await self._frontier._run("memory_get", key)
        return None if found is None else bytes(found).decode("utf-8")

    async def put(self, request: Request, value: str | None) -> None:
        """Keep ``value`` for ``request`` for the next rounds."""
        key = signed_fingerprint(fingerprint(request))
        await self._frontier._run("memory_put", key, "-" if value is None else "=" + value)


def _failed_as(settlement: Settlement) -> str:
    """The fingerprint a failed request is kept under, for a retry to take its failure
    over (``failed_fp``); empty for one that was done."""
    if settlement.failure is None:
        return ""
    return str(signed_fingerprint(fingerprint(settlement.lease.request)))


def _seen(key: int, once: bool) -> tuple[str, int]:
    """Return a dedup key's seen-set shard, marked ``o`` for a ``ONCE`` key (whose failed
    entry ``push`` in lib.lua reopens), and the key signed (``signed_fingerprint``)."""
    shard = key >> (64 - SHARD_BITS)
    return f"o{shard}" if once else str(shard), signed_fingerprint(key)


def _picked(requests: Sequence[Request], positions: bytes | str) -> list[Request]:
    """Return the requests at the 1-based comma-separated ``positions`` a script gave."""
    text = positions.decode() if isinstance(positions, bytes) else positions
    return [requests[int(n) - 1] for n in text.split(",") if n]


def _new(requests: Sequence[Request], answer: str) -> list[Request] | None:
    """Read settle.lua's answer for one lease: its new requests, or None if it was lost."""
    return None if answer == "!" else _picked(requests, answer)


def _worker(name: bytes, value: bytes, now: float, lease: float) -> WorkerStatus:
    """A worker is alive while it heartbeats: one beat in three may be missed."""
    beat, _, stopped = value.decode().partition(" ")
    idle = max(now - float(beat), 0.0)
    return WorkerStatus(name.decode(), idle, not stopped and idle <= lease)


def _shown_scope(scope: str) -> str:
    """Say an ``Owner.scope`` for people: ``[a.test, b.test]``, or every host."""
    return "[] (every host)" if scope == "*" else f"[{scope.replace(' ', ', ')}]"
