"""The base class plugin authors subclass to say what to fetch and what to extract."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
)
from dataclasses import dataclass, field
from types import GeneratorType
from typing import TYPE_CHECKING, Any, ClassVar

from framework.config.schema import did_you_mean
from framework.errors import Blocked, CloseSpider, FetchError, reportable
from framework.http import Request, Response, is_plugin_callback
from framework.items import snapshot

if TYPE_CHECKING:
    from itemadapter import ItemAdapter

    from framework.config.project import Project

__all__ = [
    "CALLBACK_ARGUMENTS",
    "CallbackOutput",
    "CallbackResult",
    "PluginCallback",
    "PluginCallbacks",
    "Spider",
    "as_item",
    "results",
    "run_callback",
]

#: What a callback may return: an (async) generator or iterable of items and requests,
#: a coroutine returning one, or None.
CallbackResult = AsyncIterable[Any] | Iterable[Any] | Awaitable[Any] | None


class Spider:
    """Subclass this, set ``name`` and write ``parse(response)``.

    ``parse`` (and any other callback) yields items (dicts or dataclass instances) and
    requests (``response.follow(href)``). ``options`` holds the spider's own section of the
    project file, validated against ``Options`` when the spider declares that dataclass
    (see ``framework.config.schema``).
    """

    #: The name a project file selects the spider by (``spider: shop``).
    name: ClassVar[str] = ""
    #: A frozen dataclass describing the spider's section of the project file, or None.
    Options: ClassVar[type[Any] | None] = None
    #: HTTP statuses handed to the callback instead of counted as failures.
    allowed_status: ClassVar[Collection[int]] = ()
    #: The type of the items the spider yields (a dataclass or a ``TypedDict``), or None.
    #: The bundled ``schema`` plugin validates each item against it, and the exporters
    #: take their columns from it.
    Item: ClassVar[type[Any] | None] = None

    def __init__(self, options: Any = None, *, start_urls: Iterable[str] = ()) -> None:
        self.options = options
        self.start_urls = tuple(start_urls)
        self.logger = logging.getLogger(f"fw.spider.{self.name or type(self).__name__}")

    def start_requests(self) -> Iterable[Request] | AsyncIterable[Request]:
        """Yield the first requests; by default one per URL in ``start_urls``."""
        return (Request(url) for url in self.start_urls)

    def parse(self, response: Response) -> CallbackResult:
        """Handle a response of a request that named no callback."""
        raise NotImplementedError(f"{type(self).__name__} must define parse(response)")


def results(outcome: CallbackResult) -> AsyncIterator[Any]:
    """Iterate whatever a callback returned, as one async stream of items and requests."""
    if inspect.isasyncgen(outcome):  # the usual case: no wrapper around each result
        return outcome
    return _results(outcome)


async def _results(outcome: CallbackResult) -> AsyncIterator[Any]:
    if inspect.isawaitable(outcome):
        outcome = await outcome
    if isinstance(outcome, AsyncIterable):
        async for result in outcome:
            yield result
    else:
        for result in each(outcome):
            yield result


def each(outcome: object) -> Iterable[Any]:
    """Return what a callback returned, other than an async stream, as an iterable."""
    if outcome is None:
        return ()
    if isinstance(outcome, Request | dict | str | bytes):
        return (outcome,)  # one item, request or mistake (the engine reports mistakes)
    if isinstance(outcome, GeneratorType | list | tuple):  # the usual case
        return outcome
    if _adapter().is_item(outcome):  # an attrs or pydantic object: one item
        return (outcome,)
    return outcome if isinstance(outcome, Iterable) else (outcome,)


def as_item(result: object) -> dict[str, Any] | None:
    """Return ``result`` as an item dict if it is one: a dict, a mapping, or an object
    itemadapter knows (a dataclass, an attrs or pydantic object, a Scrapy item)."""
    if isinstance(result, dict):
        return result
    if isinstance(result, Mapping):
        return dict(result)
    adapter = _adapter()
    if adapter.is_item(result) and not isinstance(result, type):
        return adapter(result).asdict()
    return None


@functools.cache
def _adapter() -> type[ItemAdapter]:
    """itemadapter, imported when an item is first neither a dict nor a mapping: it imports
    attrs and pydantic, a tenth of a second at start-up."""
    from itemadapter import ItemAdapter

    return ItemAdapter


#: What fw passes a plugin's callback, by name: it takes any of these.
CALLBACK_ARGUMENTS = ("response", "request", "error", "spider", "project")


@dataclass(frozen=True)
class PluginCallback:
    """A callback a plugin registered (``register_callbacks``) for the requests it makes."""

    plugin: str
    function: Callable[..., CallbackResult]
    #: The arguments it takes, by name: some of ``CALLBACK_ARGUMENTS``.
    argnames: tuple[str, ...]
    #: HTTP statuses handed to it instead of counted as failures.
    allowed_status: frozenset[int] = frozenset()


class PluginCallbacks:
    """The callbacks plugins registered, for one crawl, whose project each is given.

    A request names one by its registered name, which has a colon (``sitemaps:sitemap``)
    and so can never be a spider method's.
    """

    def __init__(
        self, callbacks: Mapping[str, PluginCallback] | None = None, project: Project | None = None
    ) -> None:
        self._callbacks, self._project = dict(callbacks or {}), project

    def get(self, name: str | None) -> PluginCallback | None:
        """Return the plugin callback ``name`` names, if it names one."""
        return self._callbacks.get(name) if name is not None and ":" in name else None

    def names(self) -> list[str]:
        """Return the registered names."""
        return list(self._callbacks)

    def bound(self, name: str, spider: Spider) -> Callable[..., CallbackResult] | None:
        """Return the callback ``name``, called as a spider's is: ``(response)`` as a callback,
        ``(request, error)`` as an errback; None if no plugin registered it."""
        callback = self._callbacks.get(name)
        if callback is None:
            return None
        project, function, argnames = self._project, callback.function, callback.argnames

        def call(*args: Any) -> CallbackResult:
            named = {**_given(args), "spider": spider, "project": project}
            return function(**{arg: named[arg] for arg in argnames})

        call.__name__ = name
        return call


def _given(args: tuple[Any, ...]) -> dict[str, Any]:
    """Name what a callback is given (``response``), or an errback (``request, error``)."""
    if len(args) == 1:
        return {"response": args[0], "request": args[0].request, "error": None}
    request, error = args
    return {"response": None, "request": request, "error": error}


#: A crawl whose plugins registered no callback.
NO_PLUGIN_CALLBACKS = PluginCallbacks()


def allowed_status(spider: Spider, request: Request, plugins: PluginCallbacks) -> Collection[int]:
    """Return the statuses the callback of ``request`` handles instead of counting as failures."""
    plugin = plugins.get(request.callback)
    return spider.allowed_status if plugin is None else plugin.allowed_status


def unknown_callback(
    spider: Spider, request: Request, plugins: PluginCallbacks = NO_PLUGIN_CALLBACKS
) -> str | None:
    """Say what is wrong if ``request`` names a callback or errback no one has: ``spider``
    for a plain name, a plugin for a name with a colon."""
    if request.callback is None and request.errback is None:  # most links: nothing to check
        return None
    for kind, name in (("callback", request.callback), ("errback", request.errback)):
        if name is None:
            continue
        if is_plugin_callback(name):
            if plugins.get(name) is None:
                return (
                    f"a request for {request.url} with {kind} {name!r}, which no plugin "
                    f"registered{did_you_mean(name, plugins.names())}"
                )
        elif not callable(getattr(spider, name, None)):
            methods = [m for m in dir(spider) if not m.startswith("_")]
            return (
                f"a request for {request.url} with {kind} {name!r}, which spider "
                f"{spider.name} does not have{did_you_mean(name, methods)}"
            )
    return None


@dataclass
class CallbackOutput:
    """What one callback produced, and what went wrong on the way."""

    items: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    #: ``(kind, error, message)`` for each failure, in the order they happened.
    problems: list[tuple[str, BaseException, str]] = field(default_factory=list)
    #: Set when the callback raised ``CloseSpider``: why the crawl should stop.
    close: str | None = None
    #: Requests past ``max_requests_per_page``, dropped (``cut_to``).
    dropped: int = 0

    def cut_to(self, most: int) -> int:
        """Keep the first ``most`` requests (``max_requests_per_page``), as a crawl does;
        return how many were dropped."""
        if len(self.requests) > most:
            self.dropped, self.requests = len(self.requests) - most, self.requests[:most]
        return self.dropped


async def run_callback(
    spider: Spider, name: str | None, *args: Any, plugins: PluginCallbacks = NO_PLUGIN_CALLBACKS
) -> CallbackOutput:
    """Run one callback, the spider's or a plugin's; keep what it yielded even if it raises
    half-way.

    A callback that raises ``FetchError`` says the page is no good: the failure is counted
    by the error's ``kind``, as a failed fetch is.
    """
    output = CallbackOutput()
    code = _code(spider, name, plugins)
    if code is None:
        kind = "plugin_error" if is_plugin_callback(name) else "spider_error"
        output.problems.append((kind, AttributeError(name), _missing(spider, name)))
        return output
    try:
        produced = code.call(*args)
        if inspect.isawaitable(produced):
            produced = await produced
        if isinstance(produced, AsyncIterable):
            async for result in produced:
                _sort(result, output, code, spider, plugins)
        else:  # a plain generator or list: no async machinery per result
            for result in each(produced):
                _sort(result, output, code, spider, plugins)
    except CloseSpider as exc:
        output.close = exc.reason
    except Blocked as exc:
        output.problems.append(("blocked", exc, str(exc)))
    except FetchError as exc:
        output.problems.append((exc.kind, exc, str(exc)))
    except BaseException as exc:
        if not reportable(exc):
            raise
        message = f"{code.label} raised {type(exc).__name__}: {exc}"
        output.problems.append((code.kind, exc, message))
    return output


@dataclass(frozen=True)
class _Code:
    """A callback found by name, how errors name it, and the kind its mistakes count as."""

    call: Callable[..., CallbackResult]
    label: str
    kind: str


def _code(spider: Spider, name: str | None, plugins: PluginCallbacks) -> _Code | None:
    if is_plugin_callback(name):
        plugin, bound = plugins.get(name), plugins.bound(name or "", spider)
        if plugin is None or bound is None:
            return None
        return _Code(bound, f"plugin '{plugin.plugin}': callback {name}", "plugin_error")
    name = name or "parse"
    if name.startswith("__") and name.endswith("__"):  # __init__ is no callback: never run it
        return None
    method = getattr(spider, name, None)
    if not callable(method):
        return None
    label = f"spider {spider.name}: {getattr(method, '__name__', name)}"
    return _Code(method, label, "spider_error")


def _missing(spider: Spider, name: str | None) -> str:
    if is_plugin_callback(name):
        # A request stored by an earlier run whose plugin is now uninstalled or disabled.
        return f"no plugin registered callback {name!r}: is its plugin installed and enabled?"
    return f"spider {spider.name} has no callback {name!r}"


def _sort(
    result: object, output: CallbackOutput, code: _Code, spider: Spider, plugins: PluginCallbacks
) -> None:
    if isinstance(result, Request):
        if (mistake := unknown_callback(spider, result, plugins)) is None:
            output.requests.append(result)
        else:  # now, not once the page is fetched: the request is dropped, and said why
            message = f"{code.label} yielded {mistake}"
            output.problems.append((code.kind, AttributeError(message), message))
    elif (item := as_item(result)) is not None:
        output.items.append(snapshot(item))  # as it is now, whatever the callback does next
    elif result is not None:
        message = f"{code.label} yielded {type(result).__name__}; expected a dict item or a Request"
        output.problems.append((code.kind, TypeError(message), message))
