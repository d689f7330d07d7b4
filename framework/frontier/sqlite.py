"""A SQLite frontier: the queue, the seen-set and the exporters' checkpoint in one file.

One table holds every request the crawl has seen, by state; the process keeps only
per-host counts in memory, so a million pending requests cost disk, not RAM, and a claim
is one indexed look-up whatever the queue's size. Each settle is one transaction: the
requests are marked done or failed, the requests they discovered are inserted unless their
fingerprint is already there, and the exporters' positions are recorded — so after a SIGKILL the
next run resets unacknowledged leases to pending, cuts the exports back to the last
acknowledged position, and carries on.

Durability: WAL with ``synchronous=NORMAL`` survives the process being killed at any
moment (the OS still holds every committed write); a power cut may lose the last
transactions, and then the exports may hold items of pages fetched again.

One process at a time: an OS lock on the database file itself is held for the crawl (a
lock on a file beside it would be lost with that file); a second ``fw run`` on the same
state stops with a clear error. ``crawl.db.lock`` only names the process, for
``fw status``.

The state records whose crawl it is (project and spider): another project pointed at
the same file is refused instead of continuing a crawl that is not its own.

The ``memory`` table is the crawl's memory (``frontier.Memory``): a value per request
fingerprint, with the round that last put one and what the rounds before it left. A new
round (``renew``) empties ``requests`` and keeps it, in one transaction.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import logging
import math
import os
import random
import re
import socket
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

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
from framework.frontier.hosts import Host, Hosts
from framework.http import Request
from framework.http.urls import fingerprint, host_of, older_fingerprint
from framework.paths import no_room, opened, replaced

__all__ = ["SqliteFrontier", "read_status"]

log = logging.getLogger("fw")

_PENDING, _LEASED, _DONE, _FAILED, _DELAYED = range(5)
#: The reason of a failed entry a ``--retry-failed`` entry took over: counted no more (see
#: ``_take_over``). A reason, not a state of its own, so that an older fw reads the state.
_TAKEN_OVER = "(retried)"
#: Lease tokens, unique in the process: a lease from an earlier opening never matches.
_TOKENS = itertools.count(1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    fp INTEGER UNIQUE,          -- signed 64-bit dedup key (dedup_key); NULL: none
    host TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state INTEGER NOT NULL,     -- 0 pending, 1 leased, 2 done, 3 failed, 4 delayed
    due REAL,                   -- when a delayed request may go (Unix time)
    reason TEXT,                -- why it failed; '(retried)': a retry's entry took it over
    data TEXT                   -- the request as JSON; dropped once it is done
);
CREATE INDEX IF NOT EXISTS queue ON requests (host, priority DESC, id) WHERE state = 0;
CREATE INDEX IF NOT EXISTS delayed ON requests (due) WHERE state = 4;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- The failed entries of requests without a dedup key (dont_filter), by fingerprint: for
-- a --retry-failed entry to take over.
CREATE TABLE IF NOT EXISTS failed_fp (id INTEGER PRIMARY KEY, fp INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS failed_by_fp ON failed_fp (fp);
"""

#: Made by the first ``memory.put``: a crawl whose plugins keep nothing has no such table.
_MEMORY = """
CREATE TABLE IF NOT EXISTS memory (
    fp INTEGER PRIMARY KEY,     -- the request's signed 64-bit fingerprint
    round INTEGER NOT NULL,     -- the round that last put a value
    value TEXT,                 -- what it put, for the rounds after it
    earlier TEXT                -- what the rounds before it left: get() answers this during it
)
"""

#: Keep a value; in a round that has put one already, keep what the rounds before left.
_PUT = """
INSERT INTO memory VALUES (?, ?, ?, NULL) ON CONFLICT (fp) DO UPDATE SET
    earlier = CASE WHEN memory.round = excluded.round THEN memory.earlier ELSE memory.value END,
    value = excluded.value,
    round = excluded.round
"""


class SqliteFrontier:
    """Keep the crawl in a SQLite file so that it survives the process."""

    persistent = True
    keeps_checkpoints = True
    forgets = 0  # it forgets nothing it was told

    def __init__(
        self,
        path: Path,
        politeness: Politeness,
        *,
        fresh: bool = False,
        renew: bool = False,
        owner: Owner | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.path, self._fresh, self._renew = path, fresh, renew
        self._clock, self._wall = clock, wall
        self._hosts = Hosts(politeness, Host, clock=clock, jitter=jitter)
        self._owner = owner
        self._db: sqlite3.Connection | None = None
        self._lock: IO[bytes] | None = None
        self._pending = self._leased = self._delayed = self._seen = 0
        self._done = self._failed = 0
        self._reopened = 0  # failed entries queued again in this step, not new: not seen
        self._next_due = math.inf  # the soonest delayed request's due time
        self._leases: dict[int | str, int] = {}  # lease token -> row id
        self._file = (0, 0)  # the state file's device and inode, once open
        self._round = 1
        self._has_memory = False
        self.memory = _Memory(self)

    # -------------------------------------------------------------------------------------
    # Opening and closing
    # -------------------------------------------------------------------------------------

    async def open(self) -> Saved:
        """Lock the state, create or load it, and put unfinished leases back in the queue;
        start a new round of a finished crawl if built to ``renew``."""
        self._lock = _lock(self.path)
        try:
            if self._fresh:
                _discard(self.path, self._lock)
            existed = self.path.stat().st_size > 0
            if existed and _anothers(self.path):  # another program's database: untouched
                raise UsageError(
                    f"frontier: {self.path} is not fw crawl state; give the frontier a path "
                    "of its own"
                )
            self._db = _connect(self.path)
            assert self._lock is not None
            self._file = opened(self._lock)  # the state file, as the crawl locked it
            try:
                settled = self._load()  # first: a message that stops the crawl counts them
                self._claim_ownership()
                self._round = int(self._meta("round") or 1)
            except sqlite3.Error as exc:
                raise _unreadable(self.path, exc) from exc
            finished = existed and not (self._pending or self._delayed) and settled > 0
            if finished and self._renew:
                return Saved(renewed=self._start_round())
        except BaseException:
            await self.close()
            raise
        checkpoints = json.loads(self._meta("checkpoints") or "{}")
        busy = self._pending or self._delayed
        return Saved(
            resumed=existed and bool(busy or settled),
            settled=settled,
            finished=finished,
            checkpoints=checkpoints,
        )

    def _start_round(self) -> int:
        """Forget the finished round's requests and checkpoints, keep the memory; return
        the new round's number."""
        with self._transaction() as db:
            db.execute("DELETE FROM requests")
            db.execute("DELETE FROM failed_fp")
            db.execute("DELETE FROM meta WHERE key = 'checkpoints'")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('round', ?)", (str(self._round + 1),))
        self._round += 1
        self._seen = self._done = self._failed = 0
        return self._round

    async def close(self) -> None:
        """Close the database and let another process have the state."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _claim_ownership(self) -> None:
        """Record whose crawl this state is, or refuse it if it is another project's.

        The owner is the project's name and spider, not its file: a project moved or
        copied elsewhere keeps its crawl. So two projects of one name and spider share a
        state unchecked. A state without an owner (new, or written before fw recorded
        one) becomes the crawl of the first project that opens it: nothing tells whose
        it was, and refusing it would strand every crawl saved by an older fw.
        """
        if self._owner is None:
            return
        found = (self._meta("project"), self._meta("spider"))
        if found == (None, None):
            with self._transaction() as db:
                db.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("project", self._owner.project), ("spider", self._owner.spider)],
                )
        elif found != (self._owner.project, self._owner.spider):
            project, spider = found
            raise ProjectError(
                self._owner.where,
                "frontier",
                f"{self.path} holds the crawl of project '{project}' (spider {spider}); use "
                "another path, or --fresh to discard it",
            )

    def _load(self) -> int:
        """Rebuild the per-host counts from the table; return how many requests settled."""
        db = self._conn
        for host, count, best in db.execute(
            "SELECT host, count(*), -max(priority) FROM requests WHERE state = 0 GROUP BY host"
        ):
            self._hosts.restore(self._hosts.get(host), count, best)
            self._pending += count
        self._delayed, due = db.execute(
            "SELECT count(*), min(due) FROM requests WHERE state = 4"
        ).fetchone()
        self._next_due = self._to_clock(due)
        self._seen, self._done, self._failed = db.execute(
            "SELECT count(*) - coalesce(sum(reason IS ?1), 0), coalesce(sum(state = 2), 0), "
            "coalesce(sum(state = 3 AND reason IS NOT ?1), 0) FROM requests",
            (_TAKEN_OVER,),
        ).fetchone()
        return self._done + self._failed

    # -------------------------------------------------------------------------------------
    # The queue
    # -------------------------------------------------------------------------------------

    async def add(self, requests: Sequence[Request]) -> list[Request]:
        """Queue the requests whose fingerprint is new and return them."""
        self._reopened = 0
        with self._transaction() as db:
            new = self._insert(db, requests)
        self._queued(new)
        self._count_reopened()
        return new

    async def claim(self) -> Lease | float | None:
        """Lease the best request of the best ready host, or say how long to wait."""
        now = self._clock()
        if self._next_due <= now:
            self._promote()
        host = self._hosts.next_ready(now)
        if host is not None:
            with self._writing():
                rows = self._conn.execute(
                    "SELECT id, data, priority FROM requests WHERE host = ? AND state = 0 "
                    "ORDER BY priority DESC, id LIMIT 2",
                    (host.name,),
                ).fetchall()
                (key, data, _), rest = rows[0], rows[1:]
                self._conn.execute("UPDATE requests SET state = 1 WHERE id = ?", (key,))
            self._pending -= 1
            self._leased += 1
            token = next(_TOKENS)
            self._hosts.started(host, now, -rest[0][2] if rest else math.inf, token)
            self._leases[token] = key
            return Lease(self._decoded(key, data), host.name, token)
        if not self._pending and not self._delayed:
            return None
        return self._hosts.wait(now, self._next_due)

    def _decoded(self, key: int, data: str | bytes | None) -> Request:
        """Rebuild a queued request, or stop the crawl saying the state is damaged."""
        try:
            if data is None:
                raise ValueError("it is empty")
            return decode_request(data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CrawlAborted(
                f"frontier {self.path}: the state is damaged: queued request {key} cannot be "
                f"read ({exc}); fw run --fresh starts the crawl over"
            ) from None

    async def settle(
        self, settlements: Sequence[Settlement], checkpoint: Mapping[str, Any] | None = None
    ) -> list[list[Request] | None]:
        """Mark the requests done or failed (with the reason), queue what they found and
        record the checkpoint, in one transaction."""
        keys = [self._leases.pop(s.lease.token, None) for s in settlements]
        self._reopened = 0
        with self._transaction() as db:
            found = [
                None if key is None else self._settled(db, key, settlement)
                for key, settlement in zip(keys, settlements, strict=True)
            ]
            if checkpoint is not None:
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('checkpoints', ?)",
                    (json.dumps(checkpoint),),
                )
        for new, settlement in zip(found, settlements, strict=True):
            if new is not None:
                self._queued(new)
                self._released(settlement.lease)
                if settlement.failure is None:
                    self._done += 1
                else:
                    self._failed += 1
        self._count_reopened()
        return found

    async def retry(self, lease: Lease, request: Request, delay: float) -> None:
        """Hold the request back for ``delay`` seconds, as ``request`` (its retry count)."""
        key = self._leases.pop(lease.token, None)
        if key is None:
            raise LeaseLost(f"lease {lease.token} of {lease.request.url} is not held")
        with self._transaction() as db:
            db.execute(
                "UPDATE requests SET state = 4, due = ?, data = ? WHERE id = ?",
                (self._wall() + delay, encode_request(request), key),
            )
        self._released(lease)
        self._delayed += 1
        self._next_due = min(self._next_due, self._clock() + delay)

    async def tune(self, host: str, *, delay: float | None = None, pause: float = 0.0) -> None:
        """Set the host's delay from now on, and/or keep it idle for ``pause`` seconds."""
        self._hosts.tune(host, delay, pause)

    async def refund(self, lease: Lease) -> None:
        """Give back the turn ``lease`` took of its host's pace."""
        self._hosts.refund(lease.host, lease.token)

    def left_behind(self) -> list[Request]:
        """None: the next run finds what is queued in the file."""
        return []

    def counts(self) -> Counts:
        """Return the queue sizes, kept in memory as the table changes."""
        return Counts(
            self._pending, self._delayed, self._leased, self._seen, self._done, self._failed
        )

    # -------------------------------------------------------------------------------------
    # Inside
    # -------------------------------------------------------------------------------------

    @property
    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "the frontier is not open"
        return self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._conn
        self._check_in_place()
        with self._writing():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                # A full disk may have rolled it back already: the error to report is that
                # one, not "cannot rollback - no transaction is active".
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    def _check_in_place(self) -> None:
        """Stop the crawl if its state file was removed or replaced under it: it would
        write to a file nobody reads again, and the lock would not keep out the next
        ``fw run`` of the same project."""
        if replaced(self.path, self._file):
            raise CrawlAborted(
                f"frontier {self.path}: the state file was removed or replaced while the "
                f"crawl ran; it stops here, with {self._done + self._failed} requests "
                "settled in the exports but in no state a rerun can continue from"
            )

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a failing state file (a full disk, an I/O error) into the crawl's end."""
        try:
            yield
        except sqlite3.Error as exc:
            raise _unwritable(self.path, exc, self._done + self._failed) from exc

    def _settled(self, db: sqlite3.Connection, key: int, settlement: Settlement) -> list[Request]:
        """Mark one request done or failed; return its new discoveries, not yet counted."""
        if settlement.failure is None:
            db.execute("UPDATE requests SET state = 2, data = NULL WHERE id = ?", (key,))
        else:
            db.execute(
                "UPDATE requests SET state = 3, reason = ? WHERE id = ?", (settlement.failure, key)
            )
            if (request := settlement.lease.request).dont_filter:  # no key to find it by
                db.execute(
                    "INSERT OR REPLACE INTO failed_fp VALUES (?, ?)",
                    (key, signed_fingerprint(fingerprint(request))),
                )
        return self._insert(db, settlement.discovered) if settlement.discovered else []

    def _released(self, lease: Lease) -> None:
        """Count a settled lease out, and free its host slot."""
        self._leased -= 1
        self._hosts.released(self._hosts.get(lease.host))

    def _insert(self, db: sqlite3.Connection, requests: Sequence[Request]) -> list[Request]:
        """Insert the requests not seen before, and reopen the failed entry of a request
        with a ``ONCE`` key; return them for ``_queued`` after commit."""
        new = []
        for request in requests:
            key = dedup_key(request)
            row = (
                None if key is None else signed_fingerprint(key),
                host_of(request.url),
                request.priority,
                encode_request(without_once(request)),
            )
            cursor = db.execute(
                "INSERT OR IGNORE INTO requests (fp, host, priority, state, data) "
                "VALUES (?, ?, ?, 0, ?)",
                row,
            )
            if cursor.rowcount:
                new.append(request)
                if request.dont_filter and key is not None:  # a retry's first entry
                    self._reopened += _take_over(db, request)
            elif request.dont_filter and key is not None and _reopen(db, row):
                new.append(request)
                self._reopened += 1 + _take_over(db, request)  # a state an older fw left
        return new

    def _queued(self, new: list[Request]) -> None:
        """Count committed new requests in: a rolled-back insert must not be counted."""
        for request in new:
            self._hosts.queued(self._hosts.get(host_of(request.url)), -request.priority)
        self._pending += len(new)
        self._seen += len(new)

    def _count_reopened(self) -> None:
        """Count the committed step's reopened entries, and the failed ones retries took
        over: failed no more, and seen before."""
        self._seen -= self._reopened
        self._failed -= self._reopened
        self._reopened = 0

    def _promote(self) -> None:
        """Queue the delayed requests that are due."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id, host, priority FROM requests WHERE state = 4 AND due <= ?",
                (self._wall(),),
            ).fetchall()
            db.executemany(
                "UPDATE requests SET state = 0 WHERE id = ?", [(row[0],) for row in rows]
            )
            due = db.execute("SELECT min(due) FROM requests WHERE state = 4").fetchone()[0]
        for _, host, priority in rows:
            self._hosts.queued(self._hosts.get(host), -priority)
        self._pending += len(rows)
        self._delayed -= len(rows)
        self._next_due = self._to_clock(due)

    def _to_clock(self, due: float | None) -> float:
        """Turn a stored due time (Unix time, which outlives the process) into clock time."""
        return math.inf if due is None else self._clock() + (due - self._wall())

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _recall(self, request: Request) -> str | None:
        if not self._remembers():
            return None
        with self._writing():  # a read may fail as a write does (an I/O error)
            row = self._conn.execute(
                "SELECT round, value, earlier FROM memory WHERE fp = ?", (_memory_key(request),)
            ).fetchone()
        if row is None:
            return None
        found, value, earlier = row
        chosen = earlier if found == self._round else value
        return None if chosen is None else str(chosen)

    def _note(self, request: Request, value: str | None) -> None:
        with self._writing():
            if not self._remembers():
                self._conn.execute(_MEMORY)
                self._has_memory = True
            self._conn.execute(_PUT, (_memory_key(request), self._round, value))

    def _remembers(self) -> bool:
        """Tell whether the memory table exists (it is made by the first put)."""
        if not self._has_memory:
            with self._writing():
                found = self._conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'memory'"
                ).fetchone()
            self._has_memory = found is not None
        return self._has_memory


class _Memory:
    """The crawl's memory (``frontier.Memory``), in the frontier's database."""

    def __init__(self, frontier: SqliteFrontier) -> None:
        self._frontier = frontier

    async def get(self, request: Request) -> str | None:
        """Return what earlier rounds left for ``request``, or None."""
        return self._frontier._recall(request)

    async def put(self, request: Request, value: str | None) -> None:
        """Keep ``value`` for ``request`` for the next rounds."""
        self._frontier._note(request, value)


def _memory_key(request: Request) -> int:
    return signed_fingerprint(fingerprint(request))


def read_status(path: Path, owner: Owner | None = None) -> Status:
    """Read a crawl's state without taking its lock, so it works while the crawl runs;
    refuse, as ``fw run`` does, a file that is no crawl state or is another project's."""
    if not path.is_file():
        raise UsageError(f"{path}: no crawl state here yet")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        _check_owner(db, path, owner)
        return _status(db, _holder(path))
    except sqlite3.Error as exc:
        raise _unreadable(path, exc) from None
    finally:
        db.close()


def _check_owner(db: sqlite3.Connection, path: Path, owner: Owner | None) -> None:
    """Refuse the state of another project (``SqliteFrontier._claim_ownership``)."""
    found = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('project', 'spider')"))
    if (
        owner is None
        or not found
        or (found.get("project"), found.get("spider"))
        == (
            owner.project,
            owner.spider,
        )
    ):
        return
    raise ProjectError(
        owner.where,
        "frontier",
        f"{path} holds the crawl of project '{found.get('project')}' (spider "
        f"{found.get('spider')}), not this one's",
    )


def _take_over(db: sqlite3.Connection, retry: Request) -> int:
    """Retire the failed entries of the request a ``--retry-failed`` request retries: the
    retry's own entry takes the failure over, so the crawl counts it once, as whatever the
    retry makes of it. A retired entry stays, for its fingerprint. Return how many there
    were (0: none failed, or a killed retry took them over already): its own, and those
    of it sent again with ``dont_filter``, which the failures file lists once."""
    count = 0
    for key in (fingerprint(retry), older_fingerprint(retry)):  # what an older fw stored
        if key is not None:
            count += _take_over_key(db, signed_fingerprint(key))
    return count


def _take_over_key(db: sqlite3.Connection, key: int) -> int:
    taken = "UPDATE requests SET reason = ?, data = NULL WHERE {} AND state = ? AND reason IS NOT ?"
    count = db.execute(taken.format("fp = ?"), (_TAKEN_OVER, key, _FAILED, _TAKEN_OVER)).rowcount
    ids = [row[0] for row in db.execute("SELECT id FROM failed_fp WHERE fp = ?", (key,))]
    db.execute("DELETE FROM failed_fp WHERE fp = ?", (key,))
    for found in ids:
        count += db.execute(
            taken.format("id = ?"), (_TAKEN_OVER, found, _FAILED, _TAKEN_OVER)
        ).rowcount
    return count


def _reopen(db: sqlite3.Connection, row: tuple[int | None, str, int, str]) -> bool:
    """Queue again the entry of a ``ONCE`` key that failed: a retry of it (an entry still
    queued, leased or done stays as it is: a killed retry's rerun resumes it)."""
    key, host, priority, data = row
    cursor = db.execute(
        "UPDATE requests SET state = 0, host = ?, priority = ?, data = ?, reason = NULL "
        "WHERE fp = ? AND state = ?",
        (host, priority, data, key, _FAILED),
    )
    return bool(cursor.rowcount)


def _connect(path: Path) -> sqlite3.Connection:
    """Open (or create) the state, and put the leases of a run that was killed back."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise UsageError(f"frontier: cannot open {path}: {exc}") from exc
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(f"BEGIN;{_SCHEMA}COMMIT;")  # whole or not at all: a kill may come
        db.execute("UPDATE requests SET state = ? WHERE state = ?", (_PENDING, _LEASED))
    except sqlite3.Error as exc:
        db.close()
        if _foreign(exc):
            raise _unreadable(path, exc) from exc
        raise _unwritable(path, exc, _settled_in(path)) from exc  # intact: say so
    return db


def _unreadable(path: Path, exc: sqlite3.Error) -> UsageError | CrawlAborted:
    """Say why a state that opened cannot be read: damaged, or the disk failing."""
    if _foreign(exc):
        return UsageError(
            f"frontier: {path} is not fw crawl state ({exc}); give the frontier a path "
            "of its own, or remove the file if it is a crawl's state damaged"
        )
    return _unwritable(path, exc, None)


def _lock(path: Path) -> IO[bytes]:
    """Hold an OS lock on the database file for the crawl; name this process beside it.

    The lock is on the database itself (SQLite's own locks are fcntl ones, which flock's
    do not touch): a lock file could be deleted under a running crawl, letting a second
    process in. The ``.lock`` file only says who holds the state, for ``fw status``.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Only this user reads it (it holds requests, their headers too); a symbolic link
        # planted in its place is refused, never followed.
        # O_NONBLOCK: a FIFO in its place fails at once (ENXIO) instead of waiting.
        state = os.fdopen(os.open(path, _STATE | os.O_NONBLOCK, 0o600), "ab")
    except OSError as exc:
        raise UsageError(f"frontier: cannot open {path}: {_why(exc, path)}") from exc
    if not stat.S_ISREG(os.fstat(state.fileno()).st_mode):  # /dev/null: SQLite's I/O error
        state.close()
        raise UsageError(f"frontier: {path}: not a regular file; the crawl's state needs one")
    try:
        fcntl.flock(state, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        state.close()
        raise UsageError(
            f"frontier: another fw process is running this crawl "
            f"({path}); a SQLite frontier serves one process — use a redis:// "
            "frontier to run several workers"
        ) from None
    try:
        _name_holder(_holder_file(path))
    except OSError as exc:  # only informative: the crawl goes on
        log.warning("frontier: cannot write %s: %s", _holder_file(path), _why(exc))
    return state


#: How fw opens its own state files: created for this user alone, never through a link.
#: How a SQLite database begins.
_SQLITE = b"SQLite format 3\x00"
_STATE = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def _name_holder(lock: Path) -> None:
    """Write who holds the crawl to ``lock``; a symbolic link there is refused (ELOOP)."""
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as file:
        file.truncate(0)  # only after the open: a link is never followed to truncate
        file.write(f"{socket.gethostname()}:{os.getpid()}\n")


def _why(exc: OSError, path: Path | None = None) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link; fw does not write through one (remove it)"
    if exc.errno in (errno.EEXIST, errno.ENOTDIR) and path is not None:  # a file on its way
        return f"{_file_in_the_way(path)} is not a folder"
    if exc.errno == errno.ENXIO:  # a FIFO nobody reads, or a device without its driver
        return "not a regular file; the crawl's state needs one"
    return exc.strerror or str(exc)


def _file_in_the_way(path: Path) -> Path:
    """Return the first of ``path``'s folders that is something else (a file)."""
    return next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), path.parent)


def _holder(path: Path) -> WorkerStatus | None:
    """Return the process holding the crawl's lock, if one is running it."""
    with path.open("rb") as state:
        try:
            fcntl.flock(state, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                name = _holder_file(path).read_text().strip()
            except OSError:
                name = ""
            return WorkerStatus(name or "?", 0.0, True)
    return None


def _holder_file(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _discard(path: Path, state: IO[bytes]) -> None:
    """Discard saved state (``--fresh``) while holding its lock: empty the database and
    remove its WAL files, which would otherwise be replayed into the empty file.

    Only fw's own state: a frontier path naming any other file (the project file, a
    plugin, a database of the user's) is refused, never emptied.
    """
    if not _is_state(path):
        raise UsageError(
            f"frontier: {path} is not fw crawl state, so --fresh leaves it alone; give the "
            "frontier a path of its own"
        )
    state.truncate(0)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _is_state(path: Path) -> bool:
    """Tell whether ``path`` holds fw's crawl state: nothing yet, or a SQLite database
    with the frontier's tables."""
    with path.open("rb") as file:
        head = file.read(len(_SQLITE))
    if not head:
        return True
    if head != _SQLITE:
        return False
    tables = _tables(path)  # None: damaged beyond reading, whose it was cannot be told
    return bool(tables and tables & _OURS)


def _anothers(path: Path) -> bool:
    """Tell whether ``path`` is another program's SQLite database: one that reads, with
    tables, none of them the frontier's. One that does not read is for opening it to say
    why (a full disk, damage)."""
    tables = _tables(path)
    return tables is not None and bool(tables) and not tables & _OURS


#: The frontier's tables, any of which makes a database fw's state (one made by an older
#: fw, or whose making was cut short, may lack some).
_OURS = frozenset(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", _SCHEMA + _MEMORY))


def _tables(path: Path) -> set[str] | None:
    """Return the tables of the SQLite database at ``path``, or None if it does not read."""
    try:
        uri = f"{path.resolve().as_uri()}?mode=ro"  # a %, ? or # in the path, as written
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            return {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error:
        return None


def _unwritable(path: Path, exc: sqlite3.Error, settled: int | None) -> CrawlAborted:
    """Say that the state file cannot be written (or read), and that a rerun continues."""
    limited = no_room(path) if _full(exc) or _io(exc) else None
    if limited is not None:
        reason = limited.strerror or ""
    else:
        reason = "No space left on device" if _full(exc) else str(exc)
    if settled is None:
        return CrawlAborted(f"frontier {path}: {reason} (a rerun continues from it)")
    return CrawlAborted(
        f"frontier {path}: {reason} ({settled} requests settled; a rerun continues from them)"
    )


def _io(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "").startswith("SQLITE_IOERR")


def _full(exc: sqlite3.Error) -> bool:
    # Extending the -shm file, which a state closed cleanly needs first, fails this way.
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_FULL", "SQLITE_IOERR_SHMSIZE")


def _foreign(exc: sqlite3.Error) -> bool:
    """Say whether an error means the file is not fw's state, rather than that the disk or
    the file system failed: only then may a message suggest removing it."""
    name = getattr(exc, "sqlite_errorname", "")
    return name in ("SQLITE_NOTADB", "SQLITE_ERROR") or name.startswith("SQLITE_CORRUPT")


def _settled_in(path: Path) -> int | None:
    """Count the requests a state has settled, reading only; None if it cannot be read.

    Read as immutable if need be, which needs no -shm file: a state whose -shm cannot be
    made was closed cleanly, its WAL emptied into the main file.
    """
    if path.stat().st_size == 0:  # a new state
        return 0
    query = "SELECT count(*) FROM requests WHERE state IN (2, 3)"
    for options in ("mode=ro", "mode=ro&immutable=1"):
        uri = f"{path.resolve().as_uri()}?{options}"
        with (
            contextlib.suppress(sqlite3.Error),
            contextlib.closing(sqlite3.connect(uri, uri=True)) as db,
        ):
            return int(db.execute(query).fetchone()[0])
    return None


def _status(db: sqlite3.Connection, holder: WorkerStatus | None) -> Status:
    totals = [0] * 5
    hosts: dict[str, list[int]] = {}
    for host, state, count in db.execute(
        "SELECT host, state, count(*) FROM requests WHERE reason IS NOT ? GROUP BY host, state",
        (_TAKEN_OVER,),
    ):
        totals[state] += count
        slot = {_PENDING: 0, _DELAYED: 0, _LEASED: 1, _DONE: 2, _FAILED: 3}[state]
        hosts.setdefault(host, [0, 0, 0, 0])[slot] += count
    return Status(
        "sqlite",
        totals[_PENDING],
        totals[_DELAYED],
        totals[_LEASED],
        totals[_DONE],
        totals[_FAILED],
        {host: HostStatus(*counts) for host, counts in sorted(hosts.items())},
        (holder,) if holder else (),
    )
