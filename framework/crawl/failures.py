"""What goes wrong in a crawl: each failure counted, logged and told to ``crawl_error``;
each request that failed for good listed in the failures file.

``fw run --retry-failed`` reads that file back to fetch just those requests again.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pluggy

from framework.crawl.stats import Stats
from framework.errors import UsageError, raised_at
from framework.hooks.events import EventHook
from framework.hooks.manager import HookCall, PluginManager
from framework.http import Request
from framework.http.urls import fingerprint
from framework.spider import Spider

__all__ = ["FailureLog", "Failures", "failures_path", "load_failures", "spider_origin"]

log = logging.getLogger("fw")

#: Failures of code rather than of the network: logged as errors, with a traceback at debug.
_CODE_FAILURES = frozenset(
    {"spider_error", "plugin_error", "item_error", "internal_error", "blocked"}
)


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
        if kind == "blocked":
            self._stats.blocked_pages.append(request.url if request else "")
        where = at(request)
        if kind == "spider_error":
            where += self._blame(error)
        if kind in _CODE_FAILURES:
            debug = log.isEnabledFor(logging.DEBUG)
            log.error("%s: %s%s", kind, message, where, exc_info=error if debug else None)
        else:
            log.warning("%s: %s%s", kind, message, where)
        if listed and request is not None and self._file is not None:
            self._file.record(request, kind, message)
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

    def close_listing(self) -> tuple[int, str] | None:
        """Close the failures file; return how many requests it lists and where, if any."""
        if self._file is None:
            return None
        self._file.close()
        return (self._file.count, str(self._file.path)) if self._file.count else None

    async def spider_error(self, error: Exception, request: Request | None, callback: str) -> None:
        """Report that the spider's ``callback`` raised ``error``."""
        message = f"spider {self._spider.name}: {callback} raised {type(error).__name__}: {error}"
        await self.report(error, "spider_error", request, message)

    async def plugin_failed(
        self, plugin: str, hook: str, error: Exception, kwargs: dict[str, Any]
    ) -> None:
        """Report that ``plugin``'s implementation of ``hook`` raised ``error``."""
        request = kwargs.get("request") or getattr(kwargs.get("response"), "request", None)
        message = f"plugin '{plugin}': {hook} raised {type(error).__name__}: {error}"
        if hook == "crawl_error":  # reporting it through crawl_error again could loop
            log.error("plugin_error: %s%s", message, at(request))
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
    return f" ({request.url})" if request else ""


# -------------------------------------------------------------------------------------------
# The failures file
# -------------------------------------------------------------------------------------------


def failures_path(project_file: Path, name: str, exports: list[str]) -> Path:
    """Return where a crawl's failures go: beside its first file export, else its project."""
    folder = next((Path(e).parent for e in exports if e != "-"), project_file.parent)
    return folder / f"{name}.failures.jsonl"


class FailureLog:
    """Keep the failures file: one line per failed request, written whole as it fails.

    A run that continues an earlier one (a resumed crawl, ``fw run --retry-failed``)
    keeps the earlier lines and appends its own, so that a crash or a second Ctrl-C
    loses none. When the run ends, however it ends, the file is rewritten without the
    earlier lines of the requests this run settled (fetched, or failed again and listed
    anew), by an atomic rename: a retry stopped half-way leaves the requests it never
    reached listed for the next one. A run killed before that leaves the file listing
    the requests it retried as well; a next retry fetches them again, but none is lost.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        #: How many requests the file lists.
        self.count = 0
        self._file: BinaryIO | None = None
        # One line per request, however many problems it had; by fingerprint, the identity
        # the frontier dedups by (an id() is reused once its request is freed).
        self._logged: set[int] = set()
        self._earlier = 0  # lines the earlier run left at the head of the file
        self._unsettled: set[int] = set()  # their requests, until this run settles them
        self._broken = False

    def start(self, *, keep: bool = False) -> None:
        """Forget an earlier run's failures, so that the file lists this crawl's only.

        ``keep`` them when this run continues the earlier one; each stays listed until
        this run settles its request.
        """
        if not keep:
            with contextlib.suppress(OSError):  # unwritable: record() will say so
                self.path.unlink(missing_ok=True)
            return
        lines = _lines(self.path)
        self._earlier = self.count = len(lines)
        self._unsettled = {key for _, key in lines if key is not None}

    def record(self, request: Request, kind: str, reason: str) -> None:
        """Append ``request`` with why it failed; a request is recorded once."""
        key = fingerprint(request)
        if key in self._logged or self._broken:
            return
        self._logged.add(key)
        line = {
            "kind": kind,
            "reason": reason,
            "time": round(time.time(), 3),
            "request": request.to_dict(),
        }
        try:
            if self._file is None:  # a crawl without failures leaves no file behind
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("ab", buffering=0)
            self._file.write((json.dumps(line, ensure_ascii=False) + "\n").encode())
        except OSError as exc:  # the list of failures must not become one more failure
            self._broken = True
            log.warning("cannot write the failures file %s: %s", self.path, exc.strerror or exc)
            return
        self.count += 1

    def settled(self, request: Request) -> None:
        """Note that this run settled ``request``: an earlier line for it is out of date."""
        if self._unsettled:  # empty, and free, unless this run continues an earlier one
            self._unsettled.discard(fingerprint(request))

    def close(self) -> None:
        """Close the file; drop the earlier lines of the requests this run settled."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._earlier and not self._broken:
            self._drop_settled()
            self._earlier = 0

    def _drop_settled(self) -> None:
        lines = _lines(self.path)
        kept = [
            line
            for n, (line, key) in enumerate(lines)
            if n >= self._earlier or key is None or key in self._unsettled
        ]
        if len(kept) == len(lines):
            return
        try:
            if not kept:
                self.path.unlink()
            else:
                part = self.path.with_name(self.path.name + ".part")
                part.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
                part.replace(self.path)  # atomic: a crash leaves the old list or the new one
        except OSError as exc:  # the old list stays: some requests may be retried again
            log.warning("cannot update the failures file %s: %s", self.path, exc.strerror or exc)
            return
        self.count = len(kept)


def _lines(path: Path) -> list[tuple[str, int | None]]:
    """Read the failures file's lines, each with its request's fingerprint (None: unreadable)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("cannot read the failures file %s: %s", path, exc)
        return []
    return [(line, _fingerprint(line)) for line in text.splitlines() if line]


def _fingerprint(line: str) -> int | None:
    try:
        return fingerprint(Request.from_dict(json.loads(line)["request"]))
    except (ValueError, KeyError, TypeError):
        return None


def load_failures(path: Path) -> list[Request]:
    """Read the failed requests back, ready to be tried again from their first attempt."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(
            f"--retry-failed: no failures file {path}: the last crawl had no "
            "failures, or exported elsewhere"
        ) from None
    # A run killed after retrying a request lists it twice: the last line is its latest.
    requests = (_request(line, path, number) for number, line in enumerate(lines, 1) if line)
    return list({fingerprint(request): request for request in requests}.values())


def _request(line: str, path: Path, number: int) -> Request:
    try:
        data: dict[str, Any] = json.loads(line)["request"]
        return Request.from_dict(data).replace(retries=0, redirects=0)
    except (ValueError, KeyError, TypeError) as exc:  # a torn last line or an edited file
        raise UsageError(f"{path}:{number}: not a failure record: {exc}") from exc
