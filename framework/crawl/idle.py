"""Workers with nothing to do wait here until there may be work again."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

__all__ = ["Idle"]


class Idle:
    """A queue of sleeping workers: wake one, wake all, or each wakes by its own timeout."""

    def __init__(self) -> None:
        self._sleepers: deque[asyncio.Future[None]] = deque()

    async def wait(self, timeout: float | None) -> None:
        """Sleep until woken, or for ``timeout`` seconds when it is not None."""
        loop = asyncio.get_running_loop()
        sleeper: asyncio.Future[None] = loop.create_future()
        self._sleepers.append(sleeper)
        timer = loop.call_later(timeout, _wake, sleeper) if timeout is not None else None
        try:
            await sleeper
        finally:
            if timer is not None:
                timer.cancel()
            # Woken by its timer or cancelled, it is still queued: leave no dead sleeper.
            with contextlib.suppress(ValueError):
                self._sleepers.remove(sleeper)

    def wake_one(self) -> None:
        """Wake the longest-sleeping worker, if any."""
        while self._sleepers:
            if _wake(self._sleepers.popleft()):
                return

    def wake_all(self) -> None:
        """Wake every sleeping worker."""
        while self._sleepers:
            _wake(self._sleepers.popleft())


def _wake(sleeper: asyncio.Future[None]) -> bool:
    if sleeper.done():
        return False
    sleeper.set_result(None)
    return True
