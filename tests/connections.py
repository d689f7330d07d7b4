"""The connections of the tests' own asyncio servers, each closed whatever ends it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["Connections"]


class Connections:
    """The tasks serving a server's connections, each known from the moment it is made.

    Python 3.11's ``Server.close()`` leaves accepted connections open, so the server's
    owner closes them here. Every task is cancelled, including any started while the
    others are. A connection made after ``close()`` is closed at once; one can be, as a
    client reconnects while its server goes away.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def serve(self, writer: asyncio.StreamWriter, handler: Coroutine[Any, Any, None]) -> None:
        """Run ``handler`` for the connection of ``writer``, whose socket closes when it ends.

        Call it as the connection is made (from ``start_server``'s callback): a handler
        cancelled before it starts never runs its ``finally``.
        """
        if self._closed:
            handler.close()
            writer.close()
            return
        task = asyncio.get_running_loop().create_task(handler)
        task.add_done_callback(lambda _: writer.close())
        self.track(task)

    def track(self, task: asyncio.Task[None]) -> None:
        """Cancel ``task`` too on ``close()``, unless it has ended by then."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel every task and wait for each, those started meanwhile included."""
        self._closed = True
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)
