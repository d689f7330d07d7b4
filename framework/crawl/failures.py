"""What goes wrong in a crawl: each failure counted, logged and told to ``crawl_error``;
each request that failed for good listed in the failures file.

``fw run --retry-failed`` reads that file back to fetch just those requests again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import inspect
import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from hashlib import blake2b
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, NamedTuple

import pluggy

from framework.crawl.stats import Stats
from framework.errors import CrawlAborted, UsageError, raised_at
from framework.hooks.events import EventHook
from framework.hooks.manager import HookCall, PluginManager
from framework.http import Request
from framework.http.urls import (
    fingerprint,
    redact,
    redact_all,
    redacted_request,
    shown_url,
    without_sign_in,
)
from framework.logs import MASK
from framework.paths import open_new
from framework.spider import Spider

__all__ = ["FailureLog", "Failures", "Listed", "failures_path", "load_failures", "spider_origin"]

log = logging.getLogger("fw")

#: Failures of code rather than of the network: logged as errors, with a traceback at debug.
_CODE_FAILURES = frozenset(
    {"spider_error", "plugin_error", "item_error", "item_invalid", "internal_error", "blocked"}
)
#: How much of the failures file is read at a time, looking back for its last line break.
_CHUNK = 1 << 16
#: Only this user reads it: a spider's own request headers may be credentials. A symbolic
#: link planted in its place is refused (ELOOP), never followed.
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


class Failures:
    """The one place a crawl's failures go, whoever noticed them: counted by kind, logged
    on one line, told to the ``crawl_error`` hook, and — a request that failed for good,
    or a page whose output was lost — listed in the failures file.

    ``crawl_error`` are that hook's implementations; ``origin`` names the plugin the
    spider's code comes from, for ``spider_error`` messages (see ``spider_origin``).
    """

    def __init__(
        self,
        stats: Stats,
        spider: Spider,
        crawl_error: Sequence[HookCall] = (),
        file: FailureLog | None = None,
        origin: str | None = None,
    ) -> None:
        self._stats, self._spider, self._origin = stats, spider, origin
        self._spider_file = _file_of(type(spider))
        self._crawl_error = EventHook("crawl_error", list(crawl_error), self.plugin_failed)
        self._file = file

    async def report(
        self,
        error: BaseException,
        kind: str,
        request: Request | None,
        message: str,
        *,
        listed: bool = False,
    ) -> None:
        """Count a failure, log it on one line, and tell the ``crawl_error`` hook;
        ``listed`` also writes ``request`` to the failures file, to be tried again.

        Failures of code (spiders, plugins) are errors with a traceback at debug level;
        failures of the network or the server are warnings.
        """
        self._stats.errors[kind] += 1
        message = without_sign_in(message, request)
        if kind == "blocked":
            self._stats.blocked_pages.append(shown_url(request) if request else "")
        where = at(request)
        if kind == "spider_error":
            where += self._blame(error)
        if kind in _CODE_FAILURES:
            debug = log.isEnabledFor(logging.DEBUG)
            log.error(
                "%s: %s%s",
                kind,
                message,
                where,
                exc_info=error if debug else None,
                extra={MASK: lambda text: without_sign_in(text, request)},
            )
        else:
            log.warning("%s: %s%s", kind, message, where)
        if listed and request is not None and self._file is not None:
            await self._file.record(request, kind, message)
        if self._crawl_error:
            await self._crawl_error(error=error, kind=kind, request=request, spider=self._spider)

    def _blame(self, error: BaseException) -> str:
        """Say where the spider's code raised ``error``, and how to see the traceback."""
        parts = []
        if (line := raised_at(error, prefer=self._spider_file)) is not None:
            parts.append(f"at {line}")
        if self._origin:
            parts.append(f"in {self._origin}")
        if error.__traceback__ is not None and not log.isEnabledFor(logging.DEBUG):
            parts.append("--log-level debug shows the traceback")
        return "".join(f"; {part}" for part in parts)

    def start_listing(self, *, keep: bool) -> None:
        """Start the failures file; ``keep`` the earlier run's lines (see ``FailureLog``)."""
        if self._file is not None:
            self._file.start(keep=keep)

    def settled(self, request: Request) -> None:
        """Note that this run settled ``request``: an earlier run's line for it is out of date."""
        if self._file is not None:
            self._file.settled(request)

    def queued_before(self, request: Request) -> None:
        """Note that an earlier retry, killed part-way, queued ``request`` already: the
        crawl settles it in the end, if not this run then the one it continues."""
        if self._file is not None:
            self._file.queued_before(request)

    async def left_behind(self, requests: list[Request]) -> None:
        """List the requests a retry with a memory frontier leaves queued as it stops: the
        links its retried pages led to are remembered nowhere else."""
        if self._file is None:
            return
        for request in requests:
            await self._file.unfetched(request)

    def close_listing(self, *, drained: bool = False) -> tuple[int, str] | None:
        """Close the failures file; return how many requests it lists and where, if any.

        ``drained``: the crawl's queue is empty, so every request is settled by now.
        """
        if self._file is None:
            return None
        self._file.close(drained=drained)
        return (self._file.count, str(self._file.path)) if self._file.count else None

    async def spider_error(
        self, error: BaseException, request: Request | None, callback: str
    ) -> None:
        """Report that the spider's ``callback`` raised ``error``."""
        message = f"spider {self._spider.name}: {callback} raised {type(error).__name__}: {error}"
        await self.report(error, "spider_error", request, message)

    async def plugin_failed(
        self, plugin: str, hook: str, error: BaseException, kwargs: dict[str, Any]
    ) -> None:
        """Report that ``plugin``'s implementation of ``hook`` raised ``error``."""
        request = kwargs.get("request") or getattr(kwargs.get("response"), "request", None)
        message = f"plugin '{plugin}': {hook} raised {type(error).__name__}: {error}"
        if hook == "crawl_error":  # reporting it through crawl_error again could loop
            self._stats.errors["plugin_error"] += 1
            log.error("plugin_error: %s%s", without_sign_in(message, request), at(request))
            return
        await self.report(error, "plugin_error", request, message)


def spider_origin(pm: pluggy.PluginManager, spider: Spider) -> str | None:
    """Name the plugin whose module, or package, defines the spider's class, if one does.

    That is where the code that raised lives, whichever plugin registered the spider.
    """
    modules = {
        getattr(plugin, "__name__", None): name
        for name, plugin in pm.list_name_plugin()
        if name and plugin is not None
    }
    module = type(spider).__module__
    while module and module not in modules:
        module = module.rpartition(".")[0]
    if not module:
        return None
    name = modules[module]
    return pm.named(name) if isinstance(pm, PluginManager) else f"plugin '{name}'"


def _file_of(cls: type) -> str | None:
    try:
        return str(Path(inspect.getfile(cls)).resolve())
    except (TypeError, OSError):  # defined in a REPL, or built dynamically
        return None


def at(request: Request | None) -> str:
    """Return `` (URL)`` to end a message about ``request`` with, if there is one."""
    return f" ({shown_url(request)})" if request else ""


# -------------------------------------------------------------------------------------------
# The failures file
# -------------------------------------------------------------------------------------------


def failures_path(project_file: Path, name: str, exports: list[str]) -> Path:
    """Return where a crawl's failures go: beside its first file export, else its project."""
    folder = next((Path(e).parent for e in exports if e != "-"), project_file.parent)
    return folder / f"{name}.failures.jsonl"


class FailureLog:
    """Keep the failures file: one line per failed request, written whole as it fails.

    A line that cannot be written (a full disk) is cut back off, and the crawl aborts: a
    request not listed could never be retried. The file then ends with its last whole line.

    A run that continues an earlier one (a resumed crawl, ``fw run --retry-failed``)
    keeps the earlier lines and appends its own, so that a crash or a second Ctrl-C
    loses none. When the run ends, however it ends, the file is rewritten without the
    earlier lines of the requests this run settled (fetched, or failed again and listed
    anew), by an atomic rename: a retry stopped half-way leaves the requests it never
    reached listed for the next one. A run killed before that leaves the file listing
    the requests it retried as well: with a persistent frontier, a next retry finds
    them queued already (``frontier.ONCE``; a line for a retry that failed again names
    the one it retried, ``retry_of``), and drops their lines once the crawl's queue is
    drained; with the memory frontier it fetches them again, but none is lost. Workers
    sharing the file write it under a lock, and drop lines by their content.
    """

    def __init__(self, path: Path, retried: Mapping[int, int] = MappingProxyType({})) -> None:
        self.path = path
        #: The ``Listed.once`` of each request this run retries, by its fingerprint.
        self._retried = retried
        #: How many requests the file lists.
        self.count = 0
        self._file: BinaryIO | None = None
        # One line per request, however many problems it had; by fingerprint, the identity
        # the frontier dedups by (an id() is reused once its request is freed).
        self._logged: set[int] = set()
        self._earlier: set[int] = set()  # the lines an earlier run left, by their digest
        self._unsettled: set[int] = set()  # their requests, until this run settles them
        self._queued_before: set[int] = set()  # their requests a killed retry had queued
        self._broken: CrawlAborted | None = None  # why the file can no longer be written

    def start(self, *, keep: bool = False) -> None:
        """Forget an earlier run's failures, so that the file lists this crawl's only.

        ``keep`` them when this run continues the earlier one; each stays listed until
        this run settles its request.

        Raises ``UsageError`` if a symbolic link stands in its place: fw writes through none.
        """
        if self.path.is_symlink():
            raise UsageError(
                f"failures file {self.path}: a symbolic link; fw does not write through one "
                "(remove it)"
            )
        if self.path.is_dir() or (keep and _special(self.path)):  # a folder would abort the
            raise UsageError(f"failures file {self.path}: not a regular file")  # first failure
        if not keep:
            with contextlib.suppress(OSError):  # unwritable: record() will say so
                self.path.unlink(missing_ok=True)
            return
        try:
            with _exclusive(self.path):  # another worker may be appending to it
                _mend_last_line(self.path)  # else the first line appended would be glued on
                lines = _lines(self.path)
        except OSError as exc:  # its lock: the other two report their own errors
            raise CrawlAborted(f"failures file {self.path}: {exc.strerror or exc}") from exc
        self._earlier = {_digest(line) for line, _ in lines}
        self.count = len(lines)
        self._unsettled = {key for _, key in lines if key is not None}

    async def record(
        self, request: Request, kind: str, reason: str, *, again: bool = False
    ) -> None:
        """Append ``request`` with why it failed; a request is recorded once, unless
        ``again`` (a ``dont_filter`` request, which may differ in its callback).

        Raises ``CrawlAborted`` if the line cannot be written.
        """
        key = fingerprint(request)
        if key in self._logged and not again:
            return
        if self._broken is not None:  # another worker's request: it must not go unlisted
            raise self._broken
        self._logged.add(key)  # now: another failure of it while this one waits is the same
        # Credentials in a URL (user:password@) are not kept: it is retried without them.
        # The rest of the request (its headers, its body) is kept as it is, to be resent.
        line = {
            "kind": kind,
            "reason": redact_all(reason),
            "time": round(time.time(), 3),
            # A proxy's credentials stay out: proxies: gives them back (docs/proxies.md).
            "request": redacted_request(request),
        }
        if (once := self._retried.get(key)) is not None:  # failed again: the same entry
            line["retry_of"] = once
        text = json.dumps(line, ensure_ascii=False)
        # backslashreplace: a lone surrogate (a header not in UTF-8) stays a JSON escape.
        data = (text + "\n").encode("utf-8", "backslashreplace")
        try:
            await self._append(data)
        except OSError as exc:
            listed = f"{self.count} request{'' if self.count == 1 else 's'} listed"
            self._broken = CrawlAborted(
                f"failures file {self.path}: {exc.strerror or exc} ({listed})"
            )
            raise self._broken from exc
        except BaseException:  # cancelled while it waited: not written, so not listed
            self._logged.discard(key)
            raise
        self.count += 1

    async def _append(self, data: bytes) -> None:
        """Write one line at the end of the file, whole: one torn part-way is cut back off."""
        file = await self._locked_file()
        try:  # nothing awaited while the lock is held: the crawl's other failures wait
            self._write(file, data)
        finally:
            _unlock(file)

    async def _locked_file(self) -> BinaryIO:
        """Return the file open to append to, locked against its other writers: Redis
        workers in one folder share it. One that closes may rewrite it and rename the copy
        into its place, so a file no longer at ``path`` is opened anew, lest a line go
        to a copy nobody reads. The crawl goes on while another process holds the lock."""
        patience = _Patience()
        while True:
            if self._file is None:  # a crawl without failures leaves no file behind
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = os.fdopen(os.open(self.path, _APPEND, 0o600), "ab", buffering=0)
            locked = _try_lock(self._file.fileno())
            if locked is None:
                patience.spend()
                await asyncio.sleep(_RETRY_S)
            elif not locked or _is_at(self._file.fileno(), self.path):
                return self._file
            else:
                self._file.close()  # and its lock with it
                self._file = None

    def _write(self, file: BinaryIO, data: bytes) -> None:
        now = os.fstat(file.fileno())
        try:
            view = memoryview(data)
            while view:  # an unbuffered write may take only part of it, as a full disk does
                written = file.write(view)
                if not written:  # a FIFO no one reads: never spin, never drop the line
                    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
                view = view[written:]
        except OSError:
            if stat.S_ISREG(now.st_mode):  # not /dev/null, nor a FIFO
                self._cut(now.st_size)
            raise

    def _cut(self, end: int) -> None:
        assert self._file is not None
        try:
            self._file.truncate(end)
        except OSError as exc:  # the write's own error is the one reported
            log.error("%s: cannot cut a torn line off: %s", self.path, exc.strerror or exc)

    async def unfetched(self, request: Request) -> None:
        """List ``request``, which the run stopped before fetching, unless it is listed."""
        if fingerprint(request) not in self._unsettled:
            await self.record(request, "not_fetched", _UNFETCHED, again=request.dont_filter)

    def settled(self, request: Request) -> None:
        """Note that this run settled ``request``: an earlier line for it is out of date."""
        if self._unsettled:  # empty, and free, unless this run continues an earlier one
            self._unsettled.discard(fingerprint(request))

    def queued_before(self, request: Request) -> None:
        """Note that a killed retry queued ``request`` already: its earlier line goes once
        the crawl's queue is drained (see ``close``)."""
        self._queued_before.add(fingerprint(request))

    def close(self, *, drained: bool = False) -> None:
        """Close the file; drop the earlier lines of the requests this run settled, and
        if the queue is ``drained``, of those a killed retry had queued: the crawl settled
        them, in this run or in that one. A run stopped before leaves their lines."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if drained:
            self._unsettled -= self._queued_before
        if self._earlier and self._broken is None:
            self._drop_settled()
            self._earlier = set()

    def _drop_settled(self) -> None:
        """Rewrite the file without the earlier lines of settled requests. By content, not
        by place: another worker sharing the file may have rewritten it, or added lines."""
        try:
            with _exclusive(self.path):
                self._rewrite()
        except OSError as exc:  # the old list stays: some requests may be retried again
            log.warning("cannot update the failures file %s: %s", self.path, exc.strerror or exc)

    def _rewrite(self) -> None:
        lines = _lines(self.path)
        kept = [
            line
            for line, key in lines
            if key is None or key in self._unsettled or _digest(line) not in self._earlier
        ]
        if len(kept) == len(lines):
            return
        part = self.path.with_name(self.path.name + ".part")
        try:
            if not kept:
                self.path.unlink()
            else:
                with open_new(part, 0o600) as file:  # it holds requests' headers
                    file.write(b"".join(line + b"\n" for line in kept))
                part.replace(self.path)  # atomic: a crash leaves the old list or the new one
        except OSError as exc:  # the old list stays: some requests may be retried again
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
            why = exc.strerror or str(exc)
            if exc.filename and str(exc.filename) != str(self.path):  # its new copy, beside it
                why = f"{exc.filename}: {why}"
            log.warning("cannot update the failures file %s: %s", self.path, why)
            return
        self.count = len(kept)


#: Why a request a retry did not reach is listed.
_UNFETCHED = "the retry stopped before fetching it, and nothing else remembers it"
#: How long a writer waits for another to let go of the failures file, which it holds for
#: one line or one rewrite: longer means that one is stuck (stopped with Ctrl-Z?).
_PATIENCE = 10.0
#: How soon a lock another process holds is tried again: it writes one line, or rewrites.
_RETRY_S = 0.005
#: What ``flock`` says on a file system without locks (NFS without lockd, some FUSE).
_NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS})


def _lock(fd: int) -> bool:
    """Lock a regular file for its writers to take turns, waiting as ``_Patience`` says;
    for the start and the close of a crawl, when nothing else runs meanwhile."""
    patience = _Patience()
    while (locked := _try_lock(fd)) is None:
        patience.spend()
        time.sleep(_RETRY_S)
    return locked


class _Patience:
    """How long a writer waits for another to let go of the lock.

    It gives up (``OSError``) past ``_PATIENCE`` seconds, and only once it has tried all
    along: a crawl whose loop stalled meanwhile saw the lock held once, not for that long.
    The line must not go unwritten, and waiting on would stop the crawl for good.
    """

    def __init__(self) -> None:
        self._deadline = time.monotonic() + _PATIENCE
        self._tries = 0

    def spend(self) -> None:
        """Count one more try that found the lock held; raise if patience ran out."""
        self._tries += 1
        if time.monotonic() > self._deadline and self._tries * _RETRY_S * 2 >= _PATIENCE:
            raise OSError(
                errno.EWOULDBLOCK, f"another process has held its lock for {_PATIENCE:g}s"
            )


def _try_lock(fd: int) -> bool | None:
    """Try to lock a regular file for its writers to take turns: say whether it is locked
    (not /dev/null, nor a FIFO, which nobody rewrites; nor a file where there are no
    locks), or None if another process holds it: try again shortly."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno not in _NO_LOCKS:
            raise
        _unlockable()
        return False


@functools.cache  # once
def _unlockable() -> None:
    log.warning(
        "the failures file's file system has no locks: two processes writing it at once "
        "(Redis workers exporting to one folder) may lose lines"
    )


def _unlock(file: BinaryIO) -> None:
    with contextlib.suppress(OSError, ValueError):  # closed: its lock went with it
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)


def _is_at(fd: int, path: Path) -> bool:
    """Whether the file open as ``fd`` is still the one at ``path``."""
    try:
        there = path.lstat()
    except FileNotFoundError:  # another worker's rewrite left no line: it removed it
        return False
    here = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold the lock of the file at ``path`` (if one is there), the one there once locked."""
    fd = _locked(path)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _locked(path: Path) -> int | None:
    while True:
        try:
            # O_NONBLOCK: a FIFO in its place must not wait for a writer (it is not locked).
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        try:
            locked = _lock(fd)
        except OSError:
            os.close(fd)
            raise
        if not locked:
            os.close(fd)
            return None
        if _is_at(fd, path):
            return fd
        os.close(fd)  # renamed over while this waited: lock the new one


def _special(path: Path) -> bool:
    """Whether something that is not a regular file stands at ``path`` (a FIFO, a device)."""
    try:
        return not stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _digest(line: bytes) -> int:
    """A line's identity: how ``--retry-failed`` keys its request, and how a rewrite
    knows the lines an earlier run left, wherever they are now."""
    return int.from_bytes(blake2b(line, digest_size=8).digest(), "big")


def _mend_last_line(path: Path) -> None:
    """End the file with a whole line: a last line a crash (or an older fw) tore is cut
    off; one that lacks only its line break gets it.

    Raises ``CrawlAborted`` if the file cannot be mended: a line appended to it would be
    glued to the torn one, and lost.
    """
    try:
        with os.fdopen(os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC), "r+b") as file:
            size = file.seek(0, os.SEEK_END)
            end = _end_of_last_line(file, size)
            if end == size:
                return
            file.seek(end)
            if _fingerprint(file.read()) is not None:
                file.write(b"\n")
                return
            file.truncate(end)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CrawlAborted(
            f"failures file {path}: cannot mend its torn last line: {exc.strerror or exc}"
        ) from exc
    log.warning("%s: cut off its last line, torn when a crawl stopped part-way through it", path)


def _end_of_last_line(file: BinaryIO, size: int) -> int:
    """Return where the file's last whole line ends (past its line break), reading backwards."""
    end = size
    while end > 0:
        start = max(end - _CHUNK, 0)
        file.seek(start)
        found = file.read(end - start).rfind(b"\n")
        if found != -1:
            return start + found + 1
        end = start
    return 0


def _lines(path: Path) -> list[tuple[bytes, int | None]]:
    """Read the failures file's lines, each with its request's fingerprint (None: unreadable)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("cannot read the failures file %s: %s", path, exc.strerror or exc)
        return []
    return [(line, _fingerprint(line)) for line in data.split(b"\n") if line]


def _fingerprint(line: bytes) -> int | None:
    try:
        return fingerprint(_unlisted(json.loads(line)["request"])[0])
    except (ValueError, KeyError, TypeError):  # UnicodeDecodeError is a ValueError
        return None


class Listed(NamedTuple):
    """A request the failures file lists, and the key a persistent frontier queues its
    retries under (``frontier.ONCE``): a digest of the line that first listed it, which
    each later line for it names (``retry_of``), so that all its retries share one entry
    that a frontier reopens while it is failed, and only then."""

    request: Request
    once: int


def load_failures(path: Path) -> list[Listed]:
    """Read the failed requests back, ready to be tried again from their first attempt.

    A last line without its line break was torn by a crawl that stopped while writing it:
    it is skipped, with a warning. Any other line that is not a record is an error.
    """
    data = _read_list(path)
    # Split at line breaks alone: a reason may hold U+2028, which splitlines() breaks at.
    lines = data.split(b"\n")
    if lines[-1] and _fingerprint(lines[-1]) is None:
        log.warning(
            "%s:%d: skipped its last line, torn when a crawl stopped part-way through it",
            path,
            len(lines),
        )
        lines[-1] = b""
    found = [_listed(line, path, number) for number, line in enumerate(lines, 1) if line]
    bare = {fingerprint(listed.request) for listed, bared, _ in found if bared}
    if bare:
        log.warning(
            "%s: %d request%s had credentials in the URL (user:password@), which the file "
            "does not keep: retried without them",
            path,
            len(bare),
            "" if len(bare) == 1 else "s",
        )
    # A run killed after retrying a request lists it twice: the last line is its latest.
    latest = {fingerprint(listed.request): (listed, own) for listed, _, own in found}
    return _unshared(list(latest.values()), path)


def _read_list(path: Path) -> bytes:
    """Read the failures file; a FIFO or a device in its place is refused, never waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UsageError(
            f"--retry-failed: no failures file {path}: the last crawl had no "
            "failures, or exported elsewhere"
        ) from None
    except OSError as exc:
        raise UsageError(f"--retry-failed: {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a folder, a FIFO, a device
        os.close(fd)
        raise UsageError(f"--retry-failed: {path}: not a regular file")
    with os.fdopen(fd, "rb") as file:
        try:
            return file.read()
        except OSError as exc:
            raise UsageError(f"--retry-failed: {path}: {exc.strerror or exc}") from exc


def _unshared(found: list[tuple[Listed, int]], path: Path) -> list[Listed]:
    """Give each request an entry of its own: a ``retry_of`` names one request's, and a
    line copied by hand for another URL must not take it (that one would never be
    fetched)."""
    owners: dict[int, int] = {}
    kept = []
    for listed, own in found:
        key = fingerprint(listed.request)
        if owners.setdefault(listed.once, key) == key:
            kept.append(listed)
            continue
        log.warning(
            "%s: the line of %s names the retry_of of another request's: retried anew",
            path,
            redact(listed.request.url),
        )
        owners[own] = key
        kept.append(listed._replace(once=own))
    return kept


#: A URL whose credentials the file did not keep (see ``FailureLog.record``).
_REDACTED = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)\*\*\*@")


def _unlisted(data: dict[str, Any]) -> tuple[Request, bool]:
    """Make the request a record lists, without the ``***@`` that stands for credentials;
    say whether it had them."""
    request = Request.from_dict(data)
    bare = _REDACTED.sub(r"\1", request.url)
    return (request, False) if bare == request.url else (request.replace(url=bare), True)


def _listed(line: bytes, path: Path, number: int) -> tuple[Listed, bool, int]:
    """Read one line: its request, whether it lost credentials, and the line's digest."""
    try:
        record = json.loads(line)
        request, bared = _unlisted(record["request"])
    except (ValueError, KeyError, TypeError) as exc:  # an edited or damaged file
        raise UsageError(f"{path}:{number}: not a failure record: {exc}") from exc
    own = _digest(line)
    once = record.get("retry_of")
    if not (type(once) is int and 0 <= once < 1 << 64):  # the first line, or hand-edited
        once = own
    return Listed(request.replace(retries=0, redirects=0), once), bared, own
