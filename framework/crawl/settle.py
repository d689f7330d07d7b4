"""Settle handled pages: items through the item pipeline and ``max_items`` into every
exporter, then leases acknowledged with the requests their pages discovered — many pages
per step.

Read top to bottom, a page goes:

1. **Accept** (in the worker that handled it): each item passes the item pipeline
   (``crawl/pipeline.py``: the item steps, which may wait for downloads, then the
   ``item_scraped`` hooks; a rejected item stays out) and the ``max_items`` limit, counted
   before any await, so that concurrent pages never pass the limit. The page's lease is
   held meanwhile: a crawl killed while an item waits gives the page back, item and all.
2. **Commit** (in the worker): the page joins the committer's queue and waits. The
   committer is one task that takes every page finished while its previous step was under
   way: a settle costs about as much for thirty pages as for one (a transaction, a Redis
   round trip), so a quiet crawl waits for nothing and a busy one makes one call a batch.
3. **Write**: the batch's items go to every exporter, in order; nothing else writes
   meanwhile, so the positions taken next are exactly the batch's end.
4. **Checkpoint**: with a persistent frontier, the exporters' positions after the batch.
5. **Acknowledge**: the frontier settles the batch's leases, queues what the pages
   discovered and (SQLite) stores the positions, in one atomic step.
6. **Cut back**: a lease lost meanwhile (it expired, and the worker now holding the
   request will export its page) has its page's items cut back out: the exports are
   rewound to where the batch began and the other pages' items written again.

Opening the exports belongs here too: a resumed crawl opens them appending and rewinds
them to the positions its frontier stored with the last acknowledged page.

A memory frontier stores no positions, but its pages go the same way: writing and
settling a batch at once costs 10-20% less CPU per page than doing it in each worker
(benchmarks/README.md).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from framework.crawl import openmarks
from framework.crawl.failures import Failures
from framework.crawl.pipeline import Pipeline, Refused
from framework.crawl.stats import Stats
from framework.errors import CrawlAborted, reportable
from framework.exporters import Exporter
from framework.frontier import Frontier, LeaseLost, Saved, Settlement
from framework.hooks.events import Waiting
from framework.http import Request, Response
from framework.spider import Spider

__all__ = ["Accepted", "Settler"]

log = logging.getLogger("fw")

Item = dict[str, Any]


class Accepted(NamedTuple):
    """The items of a page (or an errback) to export, and whether one was invalid: a
    failure of the page, which is then not parsed whole."""

    items: list[Item]
    invalid: bool = False


@dataclass
class _Written:
    """What writing a batch came to: items written, and by export path those it missed."""

    items: int = 0
    missed: Counter[str] = field(default_factory=Counter)


@dataclass
class _Page:
    settlement: Settlement
    items: list[Item]
    #: Its new requests once settled; None if its lease was lost.
    settled: asyncio.Future[list[Request] | None]
    #: Handed back unsettled: its items could not be written (stdout's reader left).
    back: bool = False


class Settler:
    """Take handled pages from the workers to the exporters and the frontier.

    ``run()`` is the committer task; ``stop_reason`` says when the crawl should stop taking
    pages (``max_items`` reached, stdout closed), which the engine reads after each step.
    """

    def __init__(
        self,
        frontier: Frontier,
        exporters: Sequence[Exporter],
        items: Pipeline,
        failures: Failures,
        stats: Stats,
        spider: Spider,
        *,
        max_items: int | None = None,
        retrying: bool = False,
        crawl: str = "",
    ) -> None:
        self._frontier, self._exporters = frontier, tuple(exporters)
        self._crawl = crawl  # the project's name: what marks an export this crawl left open
        self._exporting = bool(exporters)  # items of a crawl without exporters go nowhere
        self._items, self._failures = items, failures
        self._stats, self._spider, self._limit = stats, spider, max_items
        #: Whether a next run takes what this one hands back: a persistent frontier's, or
        #: the failures file's for a ``--retry-failed`` run.
        self._resumable = frontier.persistent or retrying
        #: Whether the exports that are open are marked beside their files: a persistent
        #: frontier that stores no positions does not say which a killed run left open.
        self._marking = frontier.persistent and not frontier.keeps_checkpoints
        #: Why the crawl should stop taking pages, once it should.
        self.stop_reason: str | None = None
        self._taken = 0  # items past the limit check, counted before any await
        self._queue: list[_Page] = []
        self._arrived = asyncio.Event()
        self._closing = False
        self._mark: dict[str, Any] = {}  # the exporters' positions after the last settle
        self._stored = False  # whether the frontier holds ``_mark``
        self._open: list[Exporter] = []  # opened and not closed yet
        self._unclosed = False  # an export failed to close: its file is not whole
        self._began = False  # the positions stored are this run's (began())
        self._unsure: set[int] = set()  # ids of the exporters whose checkpoint() failed
        self._stdout_left = False  # stdout's reader left while other exports go on
        #: The running loop, from ``open()``: looking it up for each page costs a system
        #: call (``getpid``) on Python 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Names an exporter's async write() that keeps the crawl waiting, or is cancelled.
        self._waiting = Waiting()

    # ---------------------------------------------------------------------------------------
    # Opening the exports
    # ---------------------------------------------------------------------------------------

    def open(self, stack: AsyncExitStack, saved: Saved) -> None:
        """Open the exporters (closed by ``stack``); a resumed crawl adds to its exports,
        cut back to the positions stored with its last acknowledged page."""
        self._loop = asyncio.get_running_loop()
        stack.push_async_callback(self._note_closed)  # last: once every export is closed
        for exporter in self._exporters:
            exporter.append = exporter.append or saved.resumed
            self._opened(exporter, stack)
        stack.callback(self._items.close)  # first: its steps are done before the exports close
        try:
            self._rewind(saved.checkpoints)
            self._mark = self._checkpoint() if self._frontier.persistent else {}
        except BaseException as exc:
            if not reportable(exc):
                raise
            raise CrawlAborted(f"cannot resume the exports: {_reason(exc)}") from exc
        if saved.resumed and saved.checkpoints:
            self._warn_of_changed_exports(saved.checkpoints)
        unsure = [key for key, value in self._mark.items() if value is None]
        if unsure and saved.resumed:
            log.warning(
                "%s cannot be rewound: after a crash it may repeat the items of pages "
                "that were not acknowledged",
                ", ".join(unsure),
            )

    async def began(self) -> None:
        """Store where the exports begin, before any write, and that they are open: a crawl
        killed before its first acknowledged page resumes cut back to it, not appending to
        what it wrote, and one killed before they close has them closed by the next run."""
        if self._frontier.keeps_checkpoints:
            await self._frontier.settle([], self._mark)
            self._stored = True
        self._began = True

    def finish_leftovers(self, stack: AsyncExitStack, checkpoints: Mapping[str, Any]) -> None:
        """Open, appending, and close (with ``stack``) only the exports an earlier run left
        to finish: those it opened and was killed before closing (its state says they are
        open), each cut back to its position first, which also says what it holds (a
        CSV's columns), and those whose exporter says so (``Exporter.unfinished``: a CSV
        header a full disk cut short). A crawl found finished writes nothing else."""
        stack.push_async_callback(self._note_closed)  # last: once every export is closed
        left, closed = _left_open(checkpoints), []
        for exporter in self._exporters:
            key = _key(exporter)
            reopened = key in left and Path(exporter.path).exists()  # moved away: not made
            marked = self._marking and openmarks.marked(exporter.path, self._crawl)
            if reopened or marked or exporter.unfinished():
                exporter.append = True
                self._opened(exporter, stack)
            if reopened:
                closed.append(key)
                try:
                    exporter.rewind(checkpoints[key])
                except OSError as exc:
                    raise CrawlAborted(f"cannot finish the exports: {_reason(exc)}") from exc
        if missed := [key for key in left if key not in closed]:
            log.warning(
                "export %s: left unfinished by the run that was killed, and not written by "
                "this one: it stays as it is (a JSON array without its ], a CSV header "
                "without its late columns)",
                ", ".join(key.partition(":")[2] for key in missed),
            )
        # Noted closed all the same: cutting files back on every run would damage any
        # changed since; the warning says what is left.
        self._mark = {**checkpoints, _CLOSED: False}
        self._began = bool(left)

    async def _note_closed(self) -> None:
        """Store, with the exports' positions, that every export was closed: a run killed
        before that leaves them to the next run to close, even if its crawl is finished.
        Not stored, the next run closes them again, which a rewind makes harmless."""
        if not self._frontier.keeps_checkpoints or self._open or self._unclosed:
            return
        if not self._began:  # aborted before it began: what is stored is the last run's
            return
        try:
            await self._frontier.settle([], {**self._mark, _CLOSED: True})
        except Exception as exc:  # the crawl's own error, if any, is the one to report
            log.debug("cannot note that the exports were closed: %s", _reason(exc))

    def _opened(self, exporter: Exporter, stack: AsyncExitStack) -> None:
        """Open ``exporter``, to be closed by ``stack``; one that cannot stops the crawl."""
        try:
            exporter.open()
        except BaseException as exc:
            if not reportable(exc):
                raise
            raise CrawlAborted(
                f"exporter {exporter.format} cannot open {exporter.path}: {_reason(exc)}"
            ) from exc
        self._open.append(exporter)
        stack.callback(self._close, exporter)
        if self._marking:
            openmarks.mark(exporter.path, self._crawl)

    def _warn_of_changed_exports(self, checkpoints: Mapping[str, Any]) -> None:
        """Name the exports this run writes that the run it resumes did not, and those it
        wrote that this run does not: either lacks the items of one of the two runs."""
        now = [_key(exporter) for exporter in self._exporters]
        checkpoints = {key: value for key, value in checkpoints.items() if key != _CLOSED}
        if joined := [key for key in now if key not in checkpoints]:
            log.warning(
                "export %s: not written by the run this crawl resumes, so without the "
                "items exported before now",
                ", ".join(joined),
            )
        if left := [key for key in checkpoints if key not in now]:
            log.warning(
                "export %s: written by the run this crawl resumes but not by this one, so "
                "without the items exported from now on",
                ", ".join(left),
            )

    def close_now(self) -> None:
        """Finish the exports still open at once: the user quits now (a second Ctrl-C).

        Runs between two steps of the loop: no synchronous write is half done.
        """
        for exporter in self._open:
            try:
                exporter.close_now()
            except Exception as exc:  # quitting anyway: say what is left unfinished
                log.error("export %s: cannot finish it: %s", exporter.path, _reason(exc))
            else:
                self._unmark(exporter)
        self._open.clear()

    def _close(self, exporter: Exporter) -> None:
        self._open.remove(exporter)
        try:
            _close(exporter)
        except BaseException:
            self._unclosed = True
            raise
        self._unmark(exporter)

    def _unmark(self, exporter: Exporter) -> None:
        if self._marking:
            openmarks.unmark(exporter.path)

    # ---------------------------------------------------------------------------------------
    # 1. Accept
    # ---------------------------------------------------------------------------------------

    async def accept(
        self, items: list[Item], response: Response | None, *, request: Request | None = None
    ) -> Accepted | None:
        """Return the items that pass the item pipeline and the ``max_items`` limit; None
        for a page to hand back unsettled, whose items the limit would cut.

        ``response`` is None for items of an errback, which gives its ``request``.
        """
        if not self._items and self._limit is None:  # the usual case: nothing to ask
            return Accepted(items)
        limit = self._limit_for(items)
        if limit == -1:
            self.stop_reason = self.stop_reason or "max_items reached"
            return None
        request = request or (response.request if response is not None else None)
        assert request is not None, "an errback's items come with its request"
        accepted, invalid = Accepted([]), False
        while items:
            room = len(items) if limit is None else limit - self._taken
            if room <= 0:
                break
            batch, items = items[:room], items[room:]
            self._taken += len(batch)  # before the await: concurrent pages must not pass it
            outcomes = await self._items.each(batch, request, response)
            kept = [item for item in outcomes if not isinstance(item, Refused)]
            invalid = invalid or Refused.INVALID in outcomes
            self._taken -= len(batch) - len(kept)  # the rejected leave room for the next
            accepted.items.extend(kept)
        if self._limit is not None and self._taken >= self._limit:
            self.stop_reason = self.stop_reason or "max_items reached"
        return accepted._replace(invalid=invalid)

    def _limit_for(self, items: list[Item]) -> int | None:
        """The ``max_items`` limit for this page's items; -1: leave the page for the next run.

        A memory frontier has no next run: it exports exactly ``max_items``. A resumable
        crawl (a persistent frontier, or a retry of listed failures) must not settle a page
        with part of its items exported (the next run would not fetch it again, and the rest
        would be lost): it leaves the page whole for the next run, or, if the page alone has
        more items than the limit, exports them all.
        """
        if self._limit is None or not self._resumable or not items:
            return self._limit
        if len(items) <= self._limit - self._taken:
            return self._limit
        return -1 if self._taken else len(items)

    # ---------------------------------------------------------------------------------------
    # 2. Commit, and the committer
    # ---------------------------------------------------------------------------------------

    async def commit(self, settlement: Settlement, items: list[Item]) -> list[Request] | None:
        """Write a page's items and settle its lease; return the new requests it found, or
        None for a page to hand back to the frontier (its items could not be written).

        Raises ``LeaseLost`` if the lease expired meanwhile: its items are not exported.
        """
        assert self._loop is not None, "open() the settler first"
        page = _Page(settlement, items, self._loop.create_future())
        self._queue.append(page)
        self._arrived.set()
        new = await page.settled
        if page.back:
            return None
        if new is None:
            raise LeaseLost(
                f"the lease of {settlement.lease.request.url} expired before it was settled"
            )
        self._failures.settled(settlement.lease.request)
        return new

    async def run(self) -> None:
        """Settle batches as pages arrive, until ``close()`` and every page is settled."""
        while self._queue or not self._closing:
            await self._arrived.wait()
            self._arrived.clear()
            if self._queue:
                batch, self._queue = self._queue, []
                await self._commit(batch)

    def close(self) -> None:
        """Let ``run()`` end once the pages queued now are settled; no more will come."""
        self._closing = True
        self._arrived.set()

    async def _commit(self, batch: list[_Page]) -> None:
        try:
            found = await self._settle(batch)
        except BaseException:
            for page in batch:  # the crawl is aborting: its workers stop waiting
                page.settled.cancel()
            raise
        for page, new in zip(batch, found, strict=True):
            if not page.settled.done():
                page.settled.set_result(new)

    async def _settle(self, batch: list[_Page]) -> list[list[Request] | None]:
        """Steps 3-6 for one batch: write, checkpoint, acknowledge, cut back."""
        written = await self._write(batch)
        wrote = any(page.items for page in batch)
        if wrote:  # before the pages are acknowledged: their items must be somewhere
            for exporter in self._open:
                _in_place(exporter)
        # A persistent frontier may lose a lease (Redis) or store the positions (SQLite).
        mark = self._checkpoint() if wrote and self._frontier.persistent else self._mark
        keeps = self._frontier.keeps_checkpoints
        stored = mark if keeps and (wrote or not self._stored) else None  # unchanged: not again
        found = await self._acknowledge(batch, stored)
        self._stored = self._stored or stored is not None
        if None in found:
            mark = await self._cut_back(batch, found, written)
        self._mark = mark
        return found

    async def _acknowledge(
        self, batch: list[_Page], stored: dict[str, Any] | None
    ) -> list[list[Request] | None]:
        """Settle the batch's pages but those handed back; return what each page found."""
        kept = [page for page in batch if not page.back]
        found = iter(await self._frontier.settle([page.settlement for page in kept], stored))
        return [[] if page.back else next(found) for page in batch]

    # ---------------------------------------------------------------------------------------
    # 3. Write
    # ---------------------------------------------------------------------------------------

    async def _write(self, batch: Sequence[_Page]) -> _Written:
        """Write the pages' items to every exporter; count and return what was written.

        Once stdout's reader has left and no other export remains, a resumable crawl hands
        the pages whose items went nowhere back, for the next run; a memory frontier has no
        next run, and counts them as not in ``-``.
        """
        done = _Written()
        try:
            for page in batch:
                for item in page.items:
                    if await self._write_each(item, page.settlement.lease.request, done):
                        continue
                    if self._resumable:
                        page.back = True
                    else:
                        done.missed["-"] += 1
        finally:  # an export that fails aborts the crawl: what went before still counts
            self._stats.items += done.items
            self._stats.missed.update(done.missed)
        return done

    async def _write_each(self, item: Item, request: Request, done: _Written) -> bool:
        """Write one item to every exporter, and count it in ``done``; False if no export is
        left to take it (stdout, the only one, was closed by its reader)."""
        exporters = self._exporters  # stdout drops out of it when its reader leaves
        written = [await self._write_item(e, item, request) for e in exporters]
        if any(written) or not self._exporting:
            done.items += 1
            if not all(written):  # reported as item_error: that file lacks it
                done.missed.update(
                    e.path for e, ok in zip(exporters, written, strict=True) if not ok
                )
            elif self._stdout_left:  # the others take every item; stdout no more
                done.missed["-"] += 1
        elif not self._exporters:  # no error: stdout's reader is done
            return False
        else:  # no exporter took it: reported as item_error, and no item
            self._stats.unexportable += 1
        return True

    async def _write_item(self, exporter: Exporter, item: Item, request: Request) -> bool:
        """Write one item and say whether it was written; a failing disk aborts the crawl,
        an unwritable item does not."""
        try:
            written: Awaitable[None] | None = exporter.write(item)
            if inspect.isawaitable(written):
                await self._waiting(written, f"export {exporter.path}: write()")
            return True
        except OSError as exc:
            # A TCP reader that leaves with data unread resets rather than closes.
            if isinstance(exc, BrokenPipeError | ConnectionResetError) and exporter.path == "-":
                self._stdout_closed(exporter)
                return False
            raise CrawlAborted(
                f"export {exporter.path}: {exc.strerror or exc}{_held(exporter)}"
            ) from exc
        except BaseException as exc:  # the item itself: a value no exporter can write
            if not reportable(exc):
                raise
            await self._failures.report(
                exc,
                "item_error",
                request,
                f"spider {self._spider.name}: exporter {exporter.format} ({exporter.path}) "
                f"cannot write this item: {type(exc).__name__}: {exc}",
            )
            return False

    def _stdout_closed(self, stdout: Exporter) -> None:
        """`fw run -o - | head` is done reading: stop quietly, as Unix tools do, unless
        other exports still want every item."""
        self._exporters = tuple(e for e in self._exporters if e is not stdout)
        if self._exporters:
            self._stdout_left = True
            log.warning("stdout closed: the crawl goes on for %s", _paths(self._exporters))
        else:
            self.stop_reason = self.stop_reason or "stdout closed"

    # ---------------------------------------------------------------------------------------
    # 4. Checkpoint, and 6. cut back
    # ---------------------------------------------------------------------------------------

    def _checkpoint(self) -> dict[str, Any]:
        """Return every exporter's position, by ``format:path``, and that they are open."""
        return {**{_key(e): self._position(e) for e in self._exporters}, _CLOSED: False}

    def _position(self, exporter: Exporter) -> Any:
        """Return an exporter's checkpoint; None, said once, for one that raises or is not
        JSON (the frontier stores it as JSON): that export may repeat items after a crash."""
        try:
            position = exporter.checkpoint()
            json.dumps(position)
        except Exception as exc:
            if id(exporter) not in self._unsure:
                self._unsure.add(id(exporter))
                self._stats.errors["plugin_error"] += 1
                log.error(
                    "plugin_error: exporter %s (%s): checkpoint() failed, so after a crash "
                    "the export may repeat items: %s: %s",
                    exporter.format,
                    exporter.path,
                    type(exc).__name__,
                    exc,
                )
            return None
        return position

    def _rewind(self, checkpoints: Mapping[str, Any]) -> None:
        """Cut every exporter back to its position in ``checkpoints``."""
        for exporter in self._exporters:
            if _key(exporter) in checkpoints:
                exporter.rewind(checkpoints[_key(exporter)])

    async def _cut_back(
        self, batch: list[_Page], found: list[list[Request] | None], written: _Written
    ) -> dict[str, Any]:
        """Cut the items of lost leases' pages back out; return the exporters' positions."""
        self._rewind(self._mark)
        self._stats.items -= written.items
        self._stats.missed.subtract(written.missed)
        await self._write([page for page, new in zip(batch, found, strict=True) if new is not None])
        self._stored = False  # what the frontier stored counted the lost items: store anew
        return self._checkpoint()


def _key(exporter: Exporter) -> str:
    return f"{exporter.format}:{exporter.path}"


#: Stored among the exports' positions: False while they are open, True once every one
#: was closed (a state from before it has neither). No ``_key``, which always holds a
#: format and a colon, is empty.
_CLOSED = ""


def _left_open(checkpoints: Mapping[str, Any]) -> list[str]:
    """Return the exports a run left open, by key: those it stored a position for (one
    without cannot be cut back, and closing it again might add a second footer)."""
    if checkpoints.get(_CLOSED) is not False:
        return []
    return [
        key
        for key, position in checkpoints.items()
        if key != _CLOSED and position is not None and not key.endswith(":-")
    ]


def _in_place(exporter: Exporter) -> None:
    """Stop the crawl if ``exporter``'s file was removed or replaced under it."""
    try:
        exporter.in_place()
    except OSError as exc:
        raise CrawlAborted(f"export {exporter.path}: {_reason(exc)}") from exc


def _close(exporter: Exporter) -> None:
    try:
        _in_place(exporter)
    finally:  # closed all the same: its lock and file are let go
        _closed(exporter)


def _closed(exporter: Exporter) -> None:
    try:
        exporter.close()
    except BaseException as exc:
        if not reportable(exc):
            raise
        raise CrawlAborted(
            f"export {exporter.path}: cannot close it: {_reason(exc)}{_held(exporter)}"
        ) from exc


def _paths(exporters: Iterable[Exporter]) -> str:
    return ", ".join(str(exporter.path) for exporter in exporters)


def _held(exporter: Exporter) -> str:
    """Say how many items the export holds whole, once a failed write is cut back off."""
    try:
        count = exporter.count()
    except Exception:  # a plugin's exporter that breaks the contract: the error matters more
        count = None
    return "" if count is None else f" ({count} item{'' if count == 1 else 's'} written)"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"
