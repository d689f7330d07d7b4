"""Workers with nothing to do wait here until there may be work again."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque

__all__ = ["Idle"]


class Idle:
    """A queue of sleeping workers: wake one, wake all, or wake one at a deadline.

    Workers are alike, so a deadline wakes one of them, not each that asked: in a broad
    crawl hundreds of workers wait for the same host to be ready, and waking them all
    would have all but one claim again for nothing. The one woken claims, and a worker
    that gets a request wakes the next (the engine does), so a deadline at which several
    hosts are ready still puts as many workers to work.
    """

    def __init__(self) -> None:
        self._sleepers: deque[asyncio.Future[None]] = deque()
        self._alarm: asyncio.TimerHandle | None = None
        self._deadline = math.inf
        #: The loop of the first wait (an Idle serves one crawl): looking it up for each
        #: wait costs a system call (``getpid``) on Python 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def wait(self, timeout: float | None) -> None:
        """Sleep until woken; with a ``timeout``, one sleeper is woken when it is over."""
        loop = self._loop = self._loop or asyncio.get_running_loop()
        sleeper: asyncio.Future[None] = loop.create_future()
        self._sleepers.append(sleeper)
        if timeout is not None:
            self._wake_one_at(loop, loop.time() + timeout)
        try:
            await sleeper
        except BaseException:
            # Cancelled while queued: leave no dead sleeper. A woken one is off the queue
            # already; looking for it there would cost a search of the queue and, for the
            # ValueError, the repr of a future (thousands a second in a broad crawl).
            if sleeper.cancelled():
                with contextlib.suppress(ValueError):
                    self._sleepers.remove(sleeper)
            raise

    def wake_one(self) -> None:
        """Wake the longest-sleeping worker, if any."""
        while self._sleepers:
            if _wake(self._sleepers.popleft()):
                return

    def wake_all(self) -> None:
        """Wake every sleeping worker."""
        while self._sleepers:
            _wake(self._sleepers.popleft())

    def _wake_one_at(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        """Keep one alarm, at the earliest deadline asked for."""
        if when >= self._deadline:
            return
        if self._alarm is not None:
            self._alarm.cancel()
        self._deadline, self._alarm = when, loop.call_at(when, self._ring)

    def _ring(self) -> None:
        self._deadline, self._alarm = math.inf, None
        if self._sleepers:
            self.wake_one()


def _wake(sleeper: asyncio.Future[None]) -> bool:
    if sleeper.done():
        return False
    sleeper.set_result(None)
    return True
