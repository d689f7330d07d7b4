"""The base class plugin authors subclass to say what to fetch and what to extract."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import GeneratorType
from typing import TYPE_CHECKING, Any, ClassVar

from framework.config.schema import did_you_mean
from framework.errors import Blocked, CloseSpider
from framework.http import Request, Response

if TYPE_CHECKING:
    from itemadapter import ItemAdapter

__all__ = ["CallbackOutput", "CallbackResult", "Spider", "as_item", "results", "run_callback"]

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


def unknown_callback(spider: Spider, request: Request) -> str | None:
    """Say what is wrong if ``request`` names a callback or errback ``spider`` lacks."""
    if request.callback is None and request.errback is None:  # most links: nothing to check
        return None
    for kind, name in (("callback", request.callback), ("errback", request.errback)):
        if name is not None and not callable(getattr(spider, name, None)):
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


async def run_callback(spider: Spider, name: str | None, *args: Any) -> CallbackOutput:
    """Run one spider callback; keep what it yielded even if it raises half-way."""
    output = CallbackOutput()
    method = getattr(spider, name or "parse", None)
    if not callable(method):
        message = f"spider {spider.name} has no callback {name!r}"
        output.problems.append(("spider_error", AttributeError(name), message))
        return output
    label = f"spider {spider.name}: {getattr(method, '__name__', name)}"
    try:
        produced = method(*args)
        if inspect.isawaitable(produced):
            produced = await produced
        if isinstance(produced, AsyncIterable):
            async for result in produced:
                _sort(result, output, spider, label)
        else:  # a plain generator or list: no async machinery per result
            for result in each(produced):
                _sort(result, output, spider, label)
    except CloseSpider as exc:
        output.close = exc.reason
    except Blocked as exc:
        output.problems.append(("blocked", exc, str(exc)))
    except Exception as exc:
        message = f"{label} raised {type(exc).__name__}: {exc}"
        output.problems.append(("spider_error", exc, message))
    return output


def _sort(result: object, output: CallbackOutput, spider: Spider, label: str) -> None:
    if isinstance(result, Request):
        if (mistake := unknown_callback(spider, result)) is None:
            output.requests.append(result)
        else:  # now, not once the page is fetched: the request is dropped, and said why
            message = f"{label} yielded {mistake}"
            output.problems.append(("spider_error", AttributeError(message), message))
    elif (item := as_item(result)) is not None:
        output.items.append(item)
    elif result is not None:
        message = f"{label} yielded {type(result).__name__}; expected a dict item or a Request"
        output.problems.append(("spider_error", TypeError(message), message))
