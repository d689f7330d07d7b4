"""Call event hooks one plugin at a time, so that one plugin's failure spares the rest."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pluggy

from framework.errors import CrawlAborted, DropItem, reportable
from framework.hooks.manager import HookCall, hook_calls

__all__ = ["EventHook", "Events", "PluginFailed"]

#: Told which plugin's hook raised what, with the hook's arguments.
PluginFailed = Callable[[str, str, BaseException, dict[str, Any]], Awaitable[None]]
#: Seconds an async hook may run before fw says which plugin it waits for, and again after
#: as long each time: a hook that never returns would otherwise hold the crawl silently.
PATIENCE = 60.0

log = logging.getLogger("fw")


class EventHook:
    """One event hook's implementations; falsy when no plugin implements it."""

    def __init__(self, name: str, calls: list[HookCall], on_error: PluginFailed) -> None:
        self.name, self._calls, self._on_error = name, calls, on_error
        # Only item_scraped may drop an item; anywhere else DropItem is a plugin's mistake.
        self._passed: tuple[type[Exception], ...] = (
            (DropItem, CrawlAborted) if name == "item_scraped" else (CrawlAborted,)
        )

    def __bool__(self) -> bool:
        return bool(self._calls)

    async def __call__(self, **kwargs: Any) -> None:
        """Call each implementation in plugin order, awaiting those that are async.

        ``DropItem`` from ``item_scraped`` passes through (a verdict, not a failure), and
        so does ``CrawlAborted`` (the crawl's memory cannot be written); any other
        exception is handed to ``on_error`` with the plugin's name, and the next plugin
        still runs.
        """
        for call in self._calls:
            try:
                outcome = call(**kwargs)
                if inspect.isawaitable(outcome):
                    await _awaited(outcome, call.plugin, self.name)
            except self._passed:
                raise
            except BaseException as exc:
                if not reportable(exc):
                    raise
                await self._on_error(call.plugin, self.name, exc, kwargs)


async def _awaited(outcome: Awaitable[Any], plugin: str, hook: str) -> None:
    """Await what an async hook returned, saying so while it takes longer than ``PATIENCE``."""
    loop = asyncio.get_running_loop()
    since = loop.time()
    handle: asyncio.TimerHandle | None = None

    def still_waiting() -> None:
        nonlocal handle
        log.warning(
            "plugin %r: %s has not returned for %.0fs; the crawl waits for it (Ctrl-C stops it)",
            plugin,
            hook,
            loop.time() - since,
        )
        handle = loop.call_later(PATIENCE, still_waiting)

    handle = loop.call_later(PATIENCE, still_waiting)
    try:
        await outcome
    finally:
        handle.cancel()  # the last one set: still_waiting replaces it


class Events:
    """The event hooks the engine calls, resolved once so that unused hooks cost nothing.

    ``crawl_error`` is called where failures are reported (``crawl.failures``), and
    ``item_scraped`` where items are accepted (``crawl.settle``).
    """

    def __init__(self, pm: pluggy.PluginManager, on_error: PluginFailed) -> None:
        def hook(name: str) -> EventHook:
            return EventHook(name, hook_calls(pm, name), on_error)

        self.crawl_started = hook("crawl_started")
        self.request_scheduled = hook("request_scheduled")
        self.response_received = hook("response_received")
        self.page_parsed = hook("page_parsed")
        self.item_scraped = hook("item_scraped")
        self.crawl_finished = hook("crawl_finished")
