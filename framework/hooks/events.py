"""Call event hooks one plugin at a time, so that one plugin's failure spares the rest."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pluggy

from framework.errors import CrawlAborted, DropItem, reportable
from framework.hooks.manager import HookCall, hook_calls
from framework.items import snapshot

__all__ = ["EventHook", "Events", "PluginFailed", "Waiting"]

#: Told which plugin's hook raised what, with the hook's arguments.
PluginFailed = Callable[[str, str, BaseException, dict[str, Any]], Awaitable[None]]
#: Seconds an async hook may run before fw says which plugin it waits for, and again after
#: as long each time: a hook that never returns would otherwise hold the crawl silently.
PATIENCE = 60.0

log = logging.getLogger("fw")


class EventHook:
    """One event hook's implementations; falsy when no plugin implements it."""

    def __init__(
        self,
        name: str,
        calls: list[HookCall],
        on_error: PluginFailed,
        waiting: Waiting | None = None,
    ) -> None:
        self.name, self._calls, self._on_error = name, calls, on_error
        self._waiting = waiting or Waiting()  # shared by the crawl's hooks: see Events
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
        still runs, with the item as it was before the plugin that failed.
        """
        item = kwargs.get("item") if self.name == "item_scraped" else None
        for call in self._calls:
            before = snapshot(item) if item is not None else None
            try:
                outcome = call(**kwargs)
                if inspect.isawaitable(outcome):
                    await self._waiting(outcome, f"plugin {call.plugin!r}: {self.name}")
            except self._passed:
                raise
            except BaseException as exc:
                if not reportable(exc):
                    raise
                if item is not None and before is not None:  # as it was before this plugin
                    item.clear()
                    item.update(before)
                await self._on_error(call.plugin, self.name, exc, kwargs)


class Waiting:
    """The plugin code awaited now (async hooks, exporters' writes), looked at every
    ``PATIENCE`` seconds while there is any: one timer for all, not one a call (a few
    microseconds, on every page). Code still awaited when a stopping crawl cancels it is
    named too, once: a crawl that ends held by it would not say why otherwise."""

    def __init__(self) -> None:
        self._since: dict[object, tuple[str, float]] = {}
        self._looking = False
        self._cancelled: set[str] = set()  # named already: 256 workers may wait on one hook

    async def __call__(self, outcome: Awaitable[Any], what: str) -> None:
        """Await ``outcome``, which ``what`` (``plugin 'x': crawl_started``) returned."""
        key = object()  # not the awaitable: a plugin may hand one task to several calls
        self._since[key] = (what, time.monotonic())
        if not self._looking:
            self._looking = True
            asyncio.get_running_loop().call_later(PATIENCE, self._look)
        try:
            await outcome
        except asyncio.CancelledError:
            if what not in self._cancelled:  # a stopping crawl cut it short: say whose work
                self._cancelled.add(what)
                log.warning("%s had not returned when it was cancelled", what)
            raise
        finally:
            del self._since[key]

    def _look(self) -> None:
        now = time.monotonic()
        for what, since in list(self._since.values()):
            if now - since >= PATIENCE:
                log.warning(
                    "%s has not returned for %.0fs; the crawl waits for it (Ctrl-C stops it)",
                    what,
                    now - since,
                )
        self._looking = bool(self._since)
        if self._looking:
            asyncio.get_running_loop().call_later(PATIENCE, self._look)


class Events:
    """The event hooks the engine calls, resolved once so that unused hooks cost nothing.

    ``crawl_error`` is called where failures are reported (``crawl.failures``), and
    ``item_scraped`` where items are accepted (``crawl.settle``).
    """

    def __init__(self, pm: pluggy.PluginManager, on_error: PluginFailed) -> None:
        waiting = Waiting()

        def hook(name: str) -> EventHook:
            return EventHook(name, hook_calls(pm, name), on_error, waiting)

        self.crawl_started = hook("crawl_started")
        self.request_scheduled = hook("request_scheduled")
        self.response_received = hook("response_received")
        self.page_parsed = hook("page_parsed")
        self.item_scraped = hook("item_scraped")
        self.crawl_finished = hook("crawl_finished")
