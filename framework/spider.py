"""The base class plugin authors subclass to say what to fetch and what to extract."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Collection, Iterable, Mapping
from typing import Any, ClassVar

from framework.http import Request, Response

__all__ = ["CallbackResult", "Spider", "as_item", "results"]

#: What a callback may return: an (async) generator or iterable of items and requests,
#: a coroutine returning one, or None.
CallbackResult = AsyncIterable[Any] | Iterable[Any] | Awaitable[Any] | None


class Spider:
    """Subclass this, set ``name`` and write ``parse(response)``.

    ``parse`` (and any other callback) yields items (dicts or dataclass instances) and
    requests (``response.follow(href)``). ``options`` holds the spider's own section of the
    project file, validated against ``Options`` when the spider declares that dataclass
    (see ``framework.schema``).
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


async def results(outcome: CallbackResult) -> AsyncIterator[Any]:
    """Iterate whatever a callback returned, as one async stream of items and requests."""
    if inspect.isawaitable(outcome):
        outcome = await outcome
    if outcome is None:
        return
    if isinstance(outcome, AsyncIterable):
        async for result in outcome:
            yield result
    elif isinstance(outcome, Request | dict) or dataclasses.is_dataclass(outcome):
        yield outcome
    elif isinstance(outcome, Iterable) and not isinstance(outcome, str | bytes):
        for result in outcome:
            yield result
    else:
        yield outcome  # the engine reports what it cannot use


def as_item(result: object) -> dict[str, Any] | None:
    """Return ``result`` as an item dict if it is one: a dict, a mapping or a dataclass."""
    if isinstance(result, dict):
        return result
    if isinstance(result, Mapping):
        return dict(result)
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return None
