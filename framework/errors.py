"""Every exception fw raises or lets plugins raise, in one place.

The hierarchy::

    FwError
    ├── UsageError                 bad command line; fw exits 2
    │   └── ProjectError           invalid project file: FILE:LINE: key: what is wrong
    │       └── ProjectErrors      invalid at several places: ``errors`` holds each
    ├── PluginError                a plugin failed to load or broke the hook contract; exit 2
    ├── CrawlAborted               the crawl could not go on (an export failed, no proxy
    │                              left; plugins may raise it too); exit 1
    ├── FetchError                 one request failed; counted by ``kind``, never fatal
    │   └── HttpError              the server answered with a non-2xx status
    ├── Blocked                    a page says the site refuses this client (raised by spiders)
    └── FormError                  a page has no such form, or cannot submit it as asked
                                   (``Response.form``); also a ValueError

    Control flow for plugin authors (not errors, never counted as failures):
    DropItem                       raised from ``item_scraped`` or an item step: not exported
    └── InvalidItem                the item breaks its schema: counted ``item_invalid``
    IgnoreRequest                  raised from a middleware: the request is dropped quietly
    Unchanged                      raised from a middleware: the page is as it was; its
                                   callback is skipped and its earlier links are followed
    CloseSpider                    raised from a callback: stop scheduling, finish cleanly

    ``sys.exit()``, ``GeneratorExit`` or a ``CancelledError`` nobody asked for, raised by a
    spider's or a plugin's code while the crawl runs, is that code's failure like any other
    exception (``reportable``), not an order for fw to stop or to drop the page quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sysconfig
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from framework.http import Request, Response

__all__ = [
    "Blocked",
    "CloseSpider",
    "CrawlAborted",
    "DropItem",
    "ErrorList",
    "FetchError",
    "FormError",
    "FwError",
    "HttpError",
    "IgnoreRequest",
    "InvalidItem",
    "PluginError",
    "ProjectError",
    "ProjectErrors",
    "Unchanged",
    "UsageError",
    "check_all",
    "raised_at",
    "reportable",
]


class FwError(Exception):
    """Base of every error fw raises itself."""


class UsageError(FwError):
    """The command line is wrong; the message is shown as ``Error: <message>``."""


class ProjectError(UsageError):
    """A project file is invalid at one place.

    ``where`` is ``FILE:LINE`` (or ``-s`` for a command-line override) and ``key`` the
    dotted path of the offending key, so the message points at what to fix.
    """

    def __init__(self, where: str, key: str, message: str) -> None:
        self.where, self.key, self.message = where, key, message
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


class ProjectErrors(ProjectError):
    """A project is invalid at several places; ``errors`` holds each, by line (``-s`` first).

    ``where``, ``key`` and ``message`` are the first error's; the message is one line per
    error.
    """

    def __init__(self, errors: Sequence[ProjectError]) -> None:
        first = errors[0]
        super().__init__(first.where, first.key, first.message)
        self.errors = tuple(errors)
        self.args = ("\n".join(str(error) for error in errors),)


K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class ErrorList:
    """The errors of checks that do not depend on each other, raised together at the end.

    Each check still raises ``ProjectError`` where it finds a problem: run it inside
    ``collect()``, and call ``raise_any()`` once all have run, so that one run of
    ``fw check`` lists every mistake. A check that needs a value an earlier one failed to
    make is not run.
    """

    def __init__(self) -> None:
        self._found: dict[str, ProjectError] = {}  # by text: two checks may find one mistake

    @contextlib.contextmanager
    def collect(self) -> Iterator[None]:
        """Run the block as one check: keep the ``ProjectError`` it raises, and go on."""
        try:
            yield
        except ProjectErrors as exc:
            for error in exc.errors:
                self.add(error)
        except ProjectError as exc:
            self.add(exc)

    def add(self, error: ProjectError) -> None:
        """Keep ``error``, without the frames that raised it (a list may hold thousands)."""
        self._found.setdefault(str(error), error.with_traceback(None))

    def raise_any(self) -> None:
        """Raise the one error kept, or ``ProjectErrors`` for several, sorted by line."""
        found = sorted(self._found.values(), key=_position)
        if len(found) == 1:
            raise found[0]
        if found:
            raise ProjectErrors(found)


def _position(error: ProjectError) -> int:
    """Return the line ``error`` points at; 0 for the command line (``-s``, ``-o``)."""
    line = error.where.rpartition(":")[2]
    return int(line) if line.isdecimal() else 0


def check_all(check: Callable[[K, V], T], items: Iterable[tuple[K, V]]) -> list[T]:
    """Return ``check(key, value)`` for every item, or raise the errors of all that fail."""
    errors = ErrorList()
    checked = []
    for key, value in items:
        with errors.collect():
            checked.append(check(key, value))
    errors.raise_any()
    return checked


class PluginError(FwError):
    """A plugin could not be loaded, or it broke the hook contract."""


class CrawlAborted(FwError):
    """The crawl cannot continue, e.g. an exporter can no longer write."""


class FetchError(FwError):
    """One request failed; ``kind`` names the failure in the stats (``timeout``, ``http_503``)."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        redirect_to: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind, self.retryable, self.retry_after = kind, retryable, retry_after
        #: Where the server redirected, for ``offsite_redirect``.
        self.redirect_to = redirect_to


class HttpError(FetchError):
    """The server answered with a status the spider does not handle."""

    def __init__(
        self, response: Response, *, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(
            f"http_{response.status}",
            f"HTTP {response.status}",
            retryable=retryable,
            retry_after=retry_after,
        )
        self.response = response


class Blocked(FwError):
    """The site served a challenge or login wall instead of the page."""


class FormError(FwError, ValueError):
    """``Response.form`` cannot do what it was asked: the message names the page's URL."""


class DropItem(Exception):
    """Raise from ``item_scraped`` or an item step to keep an item out of the exports."""


class InvalidItem(DropItem):
    """Raise from an item step: the item breaks its schema and is not exported.

    Unlike a plain ``DropItem`` it is a failure: counted as ``item_invalid``, logged with
    ``field`` and ``reason``, and its page listed in the failures file.
    """

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        #: The offending field, dotted for a nested one (``genres.2``); None for the whole item.
        self.field = field
        self.reason = reason


class IgnoreRequest(Exception):
    """Raise from a middleware to drop a request without counting it as failed."""


class Unchanged(Exception):  # control flow, like IgnoreRequest
    """Raise from a middleware: the page is as it was when last crawled.

    fw counts ``response`` as the answer (stats, throttling, ``response_received``), runs
    no callback, exports nothing, and queues ``requests`` as if the callback had yielded
    them (the links the page led to last time; each passes the usual checks, one level
    deeper). The request is settled as done.
    """

    def __init__(self, response: Response, requests: Sequence[Request] = ()) -> None:
        super().__init__(f"{response.url} is unchanged")
        self.response, self.requests = response, tuple(requests)


class CloseSpider(Exception):
    """Raise from a callback to stop the crawl cleanly; ``reason`` shows in the summary."""

    def __init__(self, reason: str = "closed by spider") -> None:
        super().__init__(reason)
        self.reason = reason


_FW = Path(__file__).resolve().parent
_STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def reportable(exc: BaseException) -> bool:
    """Whether ``exc``, caught around a spider's or a plugin's code, is that code's failure
    to report: any ``Exception``, and what would otherwise stop fw's own machinery without
    a word (``sys.exit()``, ``GeneratorExit``, a cancellation of a task nobody cancelled, a
    ``KeyboardInterrupt`` while the crawl handles Ctrl-C itself, which no key raised).
    A real cancellation, or Ctrl-C outside the crawl's signal handlers, is not."""
    if isinstance(exc, asyncio.CancelledError):
        return not _being_cancelled()
    if isinstance(exc, KeyboardInterrupt):
        return signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    return isinstance(exc, (Exception, SystemExit, GeneratorExit))


def _being_cancelled() -> bool:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no loop running: nothing can have been cancelled
        return False
    return task is not None and task.cancelling() > 0


def raised_at(exc: BaseException, *, prefer: str | None = None) -> str | None:
    """Return ``FILE:LINE`` of the user's code that raised ``exc``, or None.

    That is the last frame in ``prefer`` (a spider's own file) if any, else the last that
    is neither fw's nor Python's own: ``os.environ["KEY"]`` fails inside the standard
    library, but the line to fix is the one that asked. A file under the working folder
    is named relative to it.
    """
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _ours(f.filename)]
    preferred = [f for f in frames if prefer and Path(f.filename).resolve() == Path(prefer)]
    chosen = preferred or frames
    if not chosen:
        return None
    return f"{_shown(chosen[-1].filename)}:{chosen[-1].lineno}"


def _ours(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen os>, <string>
        return True
    path = Path(filename).resolve()
    return path.is_relative_to(_FW) or path.is_relative_to(_STDLIB)


def _shown(filename: str) -> str:
    relative = os.path.relpath(filename)
    return filename if relative.startswith("..") else relative
