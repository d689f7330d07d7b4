"""Report what went wrong in a crawl: count it, log it on one line, tell ``crawl_error``."""

from __future__ import annotations

import logging
from typing import Any

import pluggy

from framework.crawl.stats import Stats
from framework.hooks.events import EventHook
from framework.hooks.manager import PluginManager
from framework.http import Request
from framework.spider import Spider

__all__ = ["Reporter", "spider_origin"]

log = logging.getLogger("fw")

#: Failures of code rather than of the network: logged as errors, with a traceback at debug.
_CODE_FAILURES = frozenset(
    {"spider_error", "plugin_error", "item_error", "internal_error", "blocked"}
)


class Reporter:
    """The one place a crawl's failures go, whoever noticed them.

    ``origin`` names the plugin the spider's code comes from, for ``spider_error``
    messages (see ``spider_origin``).
    """

    def __init__(self, stats: Stats, spider: Spider, origin: str | None = None) -> None:
        self._stats, self._spider, self._origin = stats, spider, origin
        #: The ``crawl_error`` hook, once the crawl's events exist (they report here too).
        self.crawl_error: EventHook | None = None

    async def report(
        self, error: BaseException, kind: str, request: Request | None, message: str
    ) -> None:
        """Count a failure, log it on one line, and tell the ``crawl_error`` hook.

        Failures of code (spiders, plugins) are errors with a traceback at debug level;
        failures of the network or the server are warnings.
        """
        self._stats.errors[kind] += 1
        if kind == "blocked":
            self._stats.blocked_pages.append(request.url if request else "")
        where = at(request)
        if kind == "spider_error" and self._origin:  # where the code to fix is
            where += f"; in {self._origin}"
        if kind in _CODE_FAILURES:
            debug = log.isEnabledFor(logging.DEBUG)
            log.error("%s: %s%s", kind, message, where, exc_info=error if debug else None)
        else:
            log.warning("%s: %s%s", kind, message, where)
        if self.crawl_error:
            await self.crawl_error(error=error, kind=kind, request=request, spider=self._spider)

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


def at(request: Request | None) -> str:
    """Return `` (URL)`` to end a message about ``request`` with, if there is one."""
    return f" ({request.url})" if request else ""
