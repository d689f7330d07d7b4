"""The event loop's stalls: time that code holding the loop must not be charged to a host.

A spider callback that blocks (``time.sleep``, a CPU-bound loop) holds the whole event
loop. Every request in flight meanwhile would run out of time and every host look slow:
timeouts, retries and throttling for no fault of the server. So:

- a ticker task notes when the loop last ran; a late tick is a stall, added up in
  ``held``;
- request deadlines (``deadline()``) and latencies (``held_since()``) leave stalls out,
  including one that has just ended and that the ticker has not seen yet;
- a watchdog thread looks, during a stall, at what the loop's thread is running, and
  names the plugin code that holds it (a spider callback, a middleware, an event hook):
  the stall is logged once per culprit, and counted. Two callbacks that block one after
  the other in one turn of the loop are one late tick, so the stall is split between
  the culprits the watchdog saw, each from when it was first seen.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType

from framework.hooks.events import EventHook
from framework.http import Request, Response
from framework.middleware import Middleware, end_of_chain
from framework.spider import Spider

__all__ = ["Stalls"]

log = logging.getLogger("fw")

#: How often the ticker notes that the loop runs.
_TICK = 0.05
#: A tick this late is a stall: far beyond a busy loop's jitter, short of what users notice.
_STALL = 0.5
#: What holds the loop when no plugin code is on the stack.
_FW_ITSELF = ("code on the event loop", "")


class Stalls:
    """Measure how long the event loop was held up; see the module docstring."""

    def __init__(self, *, tick: float = _TICK, stall: float = _STALL) -> None:
        self._tick, self._stall = tick, stall
        self._clock: Callable[[], float] = time.monotonic
        self._last = self._clock()  # when the ticker last ran (loop clock)
        #: Seconds the loop was held up in all.
        self.held = 0.0
        #: Stalls by what held the loop (``spider 'x' callback parse``): how many, how long.
        self.culprits: dict[str, tuple[int, float]] = {}
        #: What the watchdog saw holding the loop in this stall: (since, who, URL).
        self._seen: list[tuple[float, str, str]] = []
        self._loop_thread = threading.get_ident()
        self._ticking = False
        #: The running loop, once ``run()`` has started: looking it up costs a system call
        #: (``getpid``) on Python 3.11, several times a page.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self) -> None:
        """Tick until cancelled; the watchdog thread runs alongside."""
        loop = self._loop = asyncio.get_running_loop()
        self._clock, self._last = loop.time, loop.time()
        self._loop_thread, self._ticking = threading.get_ident(), True
        stop = threading.Event()
        watchdog = threading.Thread(target=self._watch, args=(stop,), daemon=True)
        watchdog.start()
        try:
            while True:
                await asyncio.sleep(self._tick)
                self._ticked(loop.time())
        finally:
            self._ticking = False
            stop.set()

    def held_since(self, start: float, held_then: float) -> float:
        """Return the seconds the loop was held since ``start``, when ``held`` was
        ``held_then``: what a request that started then must not be charged."""
        return self.held - held_then + self._pending(start)

    def deadline(self, seconds: float) -> _Deadline:
        """Return an async context manager that raises ``TimeoutError`` unless its block
        ends within ``seconds`` of loop time that was not a stall."""
        loop = self._loop if self._ticking and self._loop else asyncio.get_running_loop()
        return _Deadline(self, loop, seconds)

    def _pending(self, start: float) -> float:
        """A stall that has just ended, which the ticker has not counted yet."""
        if not self._ticking:  # nobody watches the loop (fw parse): nothing to leave out
            return 0.0
        late = self._clock() - max(start, self._last + self._tick)
        return late if late > self._stall else 0.0

    def _ticked(self, now: float) -> None:
        late = now - self._last - self._tick
        self._last = now
        seen, self._seen = self._seen, []  # a tick just short of a stall may leave some
        if late > self._stall:
            self.held += late
            start = now - late  # a glimpse from before it, racing the swap, is not its own
            seen = [glimpse for glimpse in seen if glimpse[0] >= start]
            each: dict[tuple[str, str], float] = {}  # a callback resumed on one page: once
            for who, url, seconds in _shares(seen, start, now, self._stall):
                each[who, url] = each.get((who, url), 0.0) + seconds
            for (who, url), seconds in each.items():
                self._blame(who, url, seconds)

    def _blame(self, who: str, url: str, seconds: float) -> None:
        count, total = self.culprits.get(who, (0, 0.0))
        self.culprits[who] = (count + 1, total + seconds)
        if not count:  # once per culprit; the summary has the count
            at = f" ({url})" if url else ""
            log.warning(
                "%s blocked the event loop for %.1f s%s; requests in flight were not charged "
                "for it (use async I/O, or asyncio.to_thread for blocking work)",
                who,
                seconds,
                at,
            )

    def _watch(self, stop: threading.Event) -> None:
        """In a thread: during a stall, note which plugin code holds the loop.

        ``_last`` is on the loop's clock, which is ``time.monotonic``.
        """
        while not stop.wait(self._stall / 2):
            now = time.monotonic()
            if now - self._last <= self._stall:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            culprit = _culprit_in(frame) or _FW_ITSELF  # fw's own, before a plugin's: not theirs
            seen = self._seen  # the loop thread swaps in a new list when the stall ends
            if not seen or seen[-1][1:] != culprit:
                seen.append((now, *culprit))


def _shares(
    seen: list[tuple[float, str, str]], start: float, end: float, shortest: float
) -> list[tuple[str, str, float]]:
    """Split a stall from ``start`` to ``end`` among the culprits seen in it: (who, URL,
    seconds), each from when it was first seen (the first from the start) to the next.

    A share shorter than ``shortest`` would be no stall on its own (or was glimpsed as the
    loop came free), so it goes to the culprit before it.
    """
    if not seen:
        return [(*_FW_ITSELF, end - start)]
    shares: list[tuple[str, str, float]] = []
    for n, (since, who, url) in enumerate(seen):
        until = seen[n + 1][0] if n + 1 < len(seen) else end
        seconds = until - (since if n else start)
        if shares and seconds < shortest:
            shares[-1] = (*shares[-1][:2], shares[-1][2] + seconds)
        else:
            shares.append((who, url, seconds))
    return shares


class _Deadline:
    """Cancel the block's task once ``seconds`` of loop time that was no stall have passed,
    and raise ``TimeoutError`` in its place, as ``asyncio.timeout`` does.

    Not ``asyncio.timeout`` itself: on Python 3.11 it looks the running loop up twice on
    entry, a system call each time, and this runs for every request.
    """

    __slots__ = (
        "_cancelling",
        "_expired",
        "_held",
        "_loop",
        "_seconds",
        "_stalls",
        "_start",
        "_task",
        "_timer",
    )

    def __init__(self, stalls: Stalls, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self._stalls, self._loop, self._seconds = stalls, loop, seconds
        self._expired = False

    async def __aenter__(self) -> None:
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("a deadline must be used inside a task")
        if hasattr(self, "_task"):  # once expired, it would take any cancel for its own
            raise RuntimeError("a deadline is used once; make another")
        self._task, self._cancelling = task, task.cancelling()
        self._start, self._held = self._loop.time(), self._stalls.held
        self._timer = self._loop.call_at(self._start + self._seconds, self._check)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        # Ours only if nobody else cancelled the task meanwhile: theirs must go on.
        expired = self._expired and self._task.uncancel() <= self._cancelling
        if expired and kind is not None and issubclass(kind, asyncio.CancelledError):
            raise TimeoutError from error

    def _check(self) -> None:
        held = self._stalls.held_since(self._start, self._held)
        due = self._start + self._seconds + held
        if due <= self._loop.time():  # the time is up
            self._expired = True
            self._task.cancel()
        else:  # a stall just ended: the request gets the time it lost
            self._timer = self._loop.call_at(due, self._check)


def _culprit_in(frame: FrameType | None) -> tuple[str, str] | None:
    """Return (``spider 'x' callback parse``, its URL) for the innermost plugin code on the
    stack: a spider method, a middleware, an event hook; None if it is fw's own."""
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, Spider):
            return f"spider '{owner.name}' callback {frame.f_code.co_name}", _url_in(frame)
        if isinstance(owner, Middleware):
            return f"middleware '{owner.name or type(owner).__name__}'", _url_in(frame)
        if isinstance(owner, EventHook) and (call := frame.f_locals.get("call")) is not None:
            return f"plugin '{call.plugin}' hook {owner.name}", _url_in(frame)
        if frame.f_code is end_of_chain.__code__:  # below the middlewares: the fetcher
            return None
        frame = frame.f_back
    return None


def _url_in(frame: FrameType) -> str:
    """Return the URL of the request or response a frame works on, if it has one."""
    values = list(frame.f_locals.values())
    kwargs = frame.f_locals.get("kwargs")  # an event hook's arguments
    if isinstance(kwargs, dict):
        values += kwargs.values()
    return next((v.url for v in values if isinstance(v, Response | Request)), "")
