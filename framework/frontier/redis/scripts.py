"""fw's Lua scripts on a Redis server: loading them, running them, waiting out outages.

Every state change of a Redis frontier is one script of ``lua/`` (each behind the shared
``lib.lua``), run on one crawl's keys: ``ARGV[1]`` is always the crawl's key prefix. If
Redis is unreachable, a call waits for it (one warning, then retries backing off from
0.1 s to 5 s, or an eighth of ``patience``) and then carries on; whether a repeated call
is safe is the scripts' own business (they remember their answers). Once Redis has
answered no call for ``patience`` seconds, a waiting call raises ``Unreachable``, and so
does every call after it: a Redis that never comes back must end the crawl, not hang it.
A script that finds the crawl gone (its epoch, ``ARGV[2]``, is not the one in Redis)
changes nothing and raises ``Gone``: a Redis restarted without its data answers
"unreachable", then this. One that Redis refuses for lack of memory raises
``OutOfMemory``, having changed nothing either: Redis refuses a script's writes only until
its first write has run, and its first write is then the one refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from framework.errors import UsageError
from framework.http.urls import redact

__all__ = ["Gone", "OutOfMemory", "Scripts", "Unreachable", "shown", "url_problem"]

log = logging.getLogger("fw")

T = TypeVar("T")

_NAMES = (
    "push",
    "claim",
    "settle",
    "retry",
    "extend",
    "tune",
    "open",
    "close",
    "status",
    "wipe",
    "memory_get",
    "memory_put",
)
#: Backoff while Redis is unreachable: the first pause and the longest.
_PAUSE_FIRST, _PAUSE_MAX = 0.1, 5.0
#: Answers that say fw may not use this Redis as configured: a wrong or missing password,
#: an ACL that forbids a command. redis-py makes some of them ConnectionErrors.
_REFUSALS = (
    redis_errors.AuthenticationError,
    redis_errors.AuthorizationError,
    redis_errors.AuthenticationWrongNumberOfArgsError,
    redis_errors.NoPermissionError,
)
#: The longest a stopping worker waits for Redis to take its leases back: past it they
#: go back when they expire, and a SIGTERM must end the worker within its stop_timeout.
_CLOSING_S = 3.0
#: How lib.lua's GONE reply starts.
_GONE = "FWGONE "
#: How Redis 6 words a script's write refused for lack of memory, inside its own message;
#: Redis 7 keeps the OOM code, which redis-py raises as OutOfMemoryError.
_OOM = "OOM command not allowed"


class Owned(Exception):
    """The crawl under the prefix is another project's: ``args`` are its name and spider."""


class Disagrees(Exception):
    """The crawl's running workers allow other domains: ``args`` holds theirs."""


class Gone(Exception):
    """The crawl's keys are gone, or are another crawl's: Redis was flushed, restarted
    without its data, or the crawl wiped by ``--fresh``."""


class OutOfMemory(Exception):
    """Redis is at its ``maxmemory`` and refused a script, which changed nothing."""


class Busy(Exception):
    """Redis is running another client's script, and runs no other command until it ends:
    an outage, however well it answers (``BUSY``)."""


#: What a call meets while Redis is away: waited out for up to ``patience`` seconds.
_UNREACHABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, Busy)
#: How Redis begins its answer while it runs another client's script.
_BUSY = "BUSY "


class Unreachable(Exception):
    """Redis has not answered a call for the whole of the frontier's ``patience``."""


class Scripts:
    """Run the frontier's scripts on the keys under ``prefix`` in the Redis at ``url``,
    each call waiting at most ``patience`` seconds for an unreachable Redis."""

    def __init__(self, url: str, prefix: str, patience: float = float("inf")) -> None:
        self.url, self.prefix, self.patience = url, prefix, patience
        self._given_up = False  # a call ran out of patience: every later one does at once
        self._answered = -math.inf  # when Redis last answered a call (time.monotonic)
        self._client: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._up = asyncio.Event()  # cleared while Redis is unreachable
        #: Outages ended so far, and restarts seen on connecting: Redis may have come back
        #: from an older snapshot (see ``_on_connect``).
        self.outages = 0
        self._run_id: str | None = None  # of the Redis server last connected to
        self._up.set()
        self._running: set[asyncio.Future[Any]] = set()  # commands under way, see _shielded

    @property
    def address(self) -> str:
        """Say where Redis is, for messages: host:port, or a Unix socket's path."""
        parts = urlsplit(self.url)
        if parts.scheme == "unix":
            return parts.path
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"

    async def open(self) -> None:
        """Connect, refuse a Redis that would evict the crawl's keys, and load every script
        (a mistake in one shows now, not mid-crawl)."""
        self._client = self._connect()
        self._scripts = {name: self._client.register_script(_source(name)) for name in _NAMES}
        await self._retrying(self._check_eviction)
        await self._retrying(self._load)

    async def wipe(
        self,
        token: str,
        owner: tuple[str, str, str, str, str],
        *,
        renews: str = "",
        keep: bool = False,
    ) -> None:
        """Delete every key of this crawl (``--fresh``) under a mark that keeps other
        workers from creating a crawl meanwhile: see ``lua/wipe.lua``. ``open.lua``, run
        with the same ``token``, lifts the mark; a wipe another worker took over is its.
        ``owner`` is the project's name, spider and allowed domains, how long a running
        worker may be silent, and the wiping worker: another project's crawl is left alone
        and ``Owned`` raised, and one whose running workers allow other domains
        ``Disagrees``.

        A new round keeps the memory: ``renews`` is the epoch of the finished crawl it
        renews, if it is still there; ``keep`` takes over a new round's wipe that stopped.
        """
        keeping = "1" if keep or renews else "0"
        await self._retrying(lambda: self._wipe(token, owner, renews, keeping))

    async def disconnect(self) -> None:
        """Close the connection, if open."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run(self, script: str, *args: Any) -> Any:
        """Run a script, waiting out an outage; a cancelled caller leaves it running."""
        return await self._retrying(lambda: self._call(script, args))

    async def close(self, script: str, *args: Any) -> str | None:
        """Run a last script once, then disconnect; return why it could not run, or None.

        Once: a crawl that stops must not wait for Redis to come back.
        """
        if self._client is None:
            return None
        try:
            async with asyncio.timeout(_CLOSING_S):
                if self._running:  # commands of cancelled calls: let them finish on this client
                    await asyncio.wait(self._running)
                await _busy_as_outage(lambda: self._call(script, args))
        except TimeoutError:
            return f"redis at {self.address} did not answer within {_CLOSING_S:g}s"
        except _UNREACHABLE as exc:
            return f"redis at {self.address} is unreachable ({exc})"
        finally:
            await self.disconnect()
        return None

    async def read(self, script: str, *args: Any) -> Any:
        """Run a script that changes nothing once, on a connection of its own."""
        client = self._connect()
        try:
            return await _busy_as_outage(
                lambda: client.register_script(_source(script))(args=[self.prefix, *args])
            )
        except _REFUSALS as exc:
            raise self._refused(exc) from None
        except _UNREACHABLE as exc:
            if _untrusted(exc):
                raise self._refused(exc) from None
            raise UsageError(f"frontier: redis at {self.address} is unreachable: {exc}") from exc
        finally:
            await client.aclose()

    async def _call(self, script: str, args: Sequence[Any]) -> Any:
        """Run a script once; raise ``Gone`` if it found the crawl gone, ``OutOfMemory``
        if Redis refused it for lack of memory."""
        try:
            return await self._scripts[script](args=[self.prefix, *args])
        except redis_errors.ResponseError as exc:
            if str(exc).startswith(_GONE):
                raise Gone(str(exc)) from None
            if isinstance(exc, redis_errors.OutOfMemoryError) or _OOM in str(exc):
                raise OutOfMemory(str(exc)) from None
            raise

    def _refused(self, exc: Exception) -> UsageError:
        """Say that Redis refused fw (its password, its ACL, its certificate): no outage,
        which waiting would end, but a setting to fix."""
        return UsageError(f"frontier: redis at {self.address} refused the connection: {exc}")

    def _connect(self) -> Redis:
        """Make a client that fails fast: ``_retrying`` does the waiting, and logs it."""
        try:
            return Redis.from_url(
                self.url,
                retry=Retry(NoBackoff(), 0),
                socket_connect_timeout=5,
                socket_timeout=30,
                redis_connect_func=self._on_connect,
            )
        except ValueError as exc:
            raise UsageError(f"frontier: {shown(self.url)}: {url_problem(exc)}") from exc

    async def _on_connect(self, connection: Any) -> None:
        """Set up a new connection; count a Redis that restarted since the last one.

        redis-py reconnects on its own when a restart falls between two commands, and no
        call fails: without this the restart, from an older snapshot maybe, went unseen.
        """
        await connection.on_connect()
        try:
            await connection.send_command("INFO", "server")
            info = await connection.read_response()
        except redis_errors.ResponseError:  # an ACL without INFO: outages alone are counted
            return
        text = info.decode() if isinstance(info, bytes) else str(info)
        found = re.search(r"run_id:(\w+)", text)
        run_id = found[1] if found else None
        if self._run_id is not None and run_id != self._run_id:
            self.outages += 1
        self._run_id = run_id

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Await ``attempt()`` until Redis answers; say once that it is away, and when back.

        Raise ``Unreachable`` once Redis has answered neither this call nor any other for
        ``patience`` seconds (an outage, or a Redis frozen with SIGSTOP, whose socket
        timeout is far off), and at once after any call did.
        """
        since = time.monotonic()
        pause = _PAUSE_FIRST
        while True:
            self._check_patience(since)
            task = self._shielded(lambda: _busy_as_outage(attempt))
            try:
                result = await self._within_patience(task, since)
            except _REFUSALS as exc:
                raise self._refused(exc) from None
            except _UNREACHABLE as exc:
                if _untrusted(exc):
                    raise self._refused(exc) from None
                self._down(exc)
                with contextlib.suppress(TimeoutError):  # or until another call got through
                    await asyncio.wait_for(self._up.wait(), min(pause, self._left(since)))
                pause = min(pause * 2, _PAUSE_MAX, max(self.patience / 8, _PAUSE_FIRST))
                continue
            except (redis_errors.RedisError, Gone, OutOfMemory):  # an answer: Redis is back
                self._back()
                raise
            self._back()
            return result

    async def _within_patience(self, task: asyncio.Future[T], since: float) -> T:
        """Return ``task``'s result, unless Redis answers nothing for ``patience``."""
        while True:
            left = self._check_patience(since)
            # asyncio.wait leaves the task running: another call's answer may come first.
            await asyncio.wait({task}, timeout=None if left == math.inf else left)
            if task.done():
                return task.result()

    def _check_patience(self, since: float) -> float:
        """Return the seconds of patience left to a call made at ``since``; raise
        ``Unreachable`` if none are, for this call and every later one."""
        left = self._left(since)
        if left <= 0 or self._given_up:
            self._given_up = True
            raise self._unreachable()
        return left

    def _left(self, since: float) -> float:
        """Seconds of patience left to a call made at ``since``: counted from then, or
        from the last answer to any call, whichever came later."""
        return max(since, self._answered) + self.patience - time.monotonic()

    def _down(self, exc: Exception) -> None:
        """Say once, when an outage begins, that Redis is unreachable."""
        if self._up.is_set():
            self._up.clear()
            log.warning(
                "redis at %s is unreachable (%s); pausing until it is back, for up to %s",
                self.address,
                exc,
                _duration(self.patience),
            )

    def _unreachable(self) -> Unreachable:
        return Unreachable(
            f"redis at {self.address} did not answer for {_duration(self.patience)} "
            "(the frontier URL's ?patience=)"
        )

    def _heard(self) -> None:
        """Note that Redis answered: a call of many commands (loading the scripts, a
        wipe's SCAN pages) answered all along is no outage, however long it takes."""
        self._answered = time.monotonic()

    def _back(self) -> None:
        """Note that Redis answered; wake the calls waiting out an outage."""
        self._heard()
        if not self._up.is_set():
            self._up.set()
            self.outages += 1
            log.warning("redis is back; resuming")

    def _shielded(self, attempt: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Run ``attempt()`` in a task of its own, which cancelling the caller does not reach.

        redis-py can lose a cancellation that lands mid-command, or turn it into a
        ConnectionError (redis/redis-py#2028, #2551): the caller would go on, or wait for
        an outage that is not there. Shielded, the caller is cancelled at once, while the
        command runs to its end and leaves its connection in order for the next one.
        """
        task = asyncio.ensure_future(attempt())
        self._running.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # seen: a cancelled caller never looks at it

    async def _load(self) -> None:
        assert self._client is not None
        for script in self._scripts.values():
            await self._client.script_load(script.script)
            self._heard()

    async def _check_eviction(self) -> None:
        """Refuse a Redis that evicts any key when full: it would drop the seen-set or the
        queue without a word. fw's keys never expire, so ``volatile-*`` policies spare them."""
        assert self._client is not None
        try:
            policy = (await self._client.config_get("maxmemory-policy")).get("maxmemory-policy")
        except redis_errors.ResponseError as exc:  # CONFIG disabled, as managed Redis may do
            if _busy(exc):
                raise
            log.debug("redis at %s: cannot read maxmemory-policy (%s)", self.address, exc)
            return
        if str(policy).startswith("allkeys-"):
            raise UsageError(
                f"frontier: redis at {self.address} has maxmemory-policy {policy}, which "
                "evicts the crawl's keys (its seen-set, its queue) when memory is full; set "
                "it to noeviction"
            )

    async def _wipe(
        self, token: str, owner: tuple[str, str, str, str, str], renews: str, keep: str
    ) -> None:
        """Delete this crawl's keys, other crawls' stay, one SCAN page a call."""
        cursor, pattern = "", _glob_escape(self.prefix) + "*"
        while cursor != "0":
            args = (token, cursor, pattern, *owner[:4], renews, keep, owner[4])
            cursor = (await self._call("wipe", args)).decode()
            self._heard()
            if cursor == "taken":
                return
            if cursor.startswith("owner\n"):
                _, project, spider = cursor.split("\n")
                raise Owned(project, spider)
            if cursor.startswith("scope\n"):
                raise Disagrees(cursor.removeprefix("scope\n"))


def _duration(seconds: float) -> str:
    """Say a ``patience`` for people: ``600s``, or ``ever`` for no limit."""
    return "ever" if seconds == math.inf else f"{seconds:g}s"


async def _busy_as_outage(attempt: Callable[[], Awaitable[T]]) -> T:
    """Await ``attempt()``; raise ``Busy`` for a Redis busy with another client's script."""
    try:
        return await attempt()
    except redis_errors.ResponseError as exc:
        if _busy(exc):
            raise Busy(str(exc)) from None
        raise


def _busy(exc: redis_errors.ResponseError) -> bool:
    return str(exc).startswith(_BUSY)


def _untrusted(exc: BaseException) -> bool:
    """Whether a connection failed because TLS found the server's certificate untrusted
    (which redis-py reports as a ConnectionError, like an outage)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            seen
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _glob_escape(text: str) -> str:
    """Quote the characters SCAN's MATCH pattern would read as wildcards."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


@functools.cache
def _source(name: str) -> str:
    """Return a script's text, behind the helpers every script shares."""
    folder = resources.files("framework.frontier.redis") / "lua"
    return (folder / "lib.lua").read_text("utf-8") + (folder / f"{name}.lua").read_text("utf-8")


def shown(url: str) -> str:
    """Return a ``redis://`` URL for people to read: its credentials, in the userinfo or
    in the query (``?password=``), masked."""
    try:
        parts = urlsplit(redact(url))
    except ValueError:  # an unclosed [: no query to mask, and no userinfo left to show
        return redact(url).partition("?")[0]
    query = [
        (key, "***" if key.lower() in _SECRET_OPTIONS else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    # No fragment: a Redis URL has none, so one is the rest of a password written with "#".
    return urlunsplit(parts._replace(query=urlencode(query, safe="*:/"), fragment=""))


#: Query options of a redis-py URL that hold credentials.
_SECRET_OPTIONS = frozenset({"password", "username"})


def url_problem(exc: ValueError) -> str:
    """Say what is wrong with a URL redis-py refused, without urllib's quote of a "port"
    that may be the start of a password written with a raw / ? or #."""
    if "could not be cast to integer" in str(exc):
        return "its port is not a number; a password with / ? or # in it must be percent-encoded"
    return str(exc)
