"""The bundled ``incremental`` plugin: re-crawl a finished crawl, fetching only what changed.

Turn it on in a project with a persistent frontier, or for one run with
``fw run --incremental``::

    frontier: sqlite:///state/crawl.db     # or redis://…: the memory lives there
    incremental: true                       # or {enabled: true, ignore: [...]}

The first run crawls everything. For each page it parses, the plugin notes in the
crawl's memory (``crawl_started``'s ``memory``, kept by the frontier) a **visit**: the
page's validators (``ETag``, ``Last-Modified``), a hash of its body, a hash of what its
request asked (callback, errback, meta, headers), and every request its callback
yielded. Once that crawl is finished, the next run starts a new round from the start
URLs (``renew_finished_crawl``) and revisits each page it meets:

- with ``If-None-Match`` / ``If-Modified-Since`` when the visit has validators and the
  request asks what it asked then;
- a 304, or a page whose body hashes as before, is **unchanged**: no callback runs, nothing
  is exported, and the requests the page yielded last time are queued again
  (``Unchanged``) — so the pages under an unchanged listing are still revisited, and
  new ones found under a changed one;
- any other page the callback gets is **changed** (a visit was noted) or **new** (none
  was), and is parsed and exported as usual.

A request whose meta changed is fetched in full: a Douban film whose listing entry
changed (its want count) is exported again even if its subject page did not. A page
whose fetch, callback or export failed loses its visit, so the next round fetches it in
full. Only GET requests are revisited; others, robots.txt and the downloads of item steps
(``files``) pass through. The summary and ``--stats`` (``plugins.incremental``) count the
pages: ``incremental: 3 new, 1 changed, 40 unchanged``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from framework import (
    Handler,
    Middleware,
    Request,
    Response,
    Spider,
    Unchanged,
    hookimpl,
    option,
)
from framework.config import KeyPath, Source, convert

__all__ = ["IncrementalOptions", "Options", "Revisits", "Visit"]

#: Beyond this much JSON, a page's requests are not kept: it is fetched and parsed in full
#: every round, as a changed page (a sitemap-like page of 100,000 links, say).
MAX_LINKS = 4 * 1024 * 1024
#: The conditional headers this plugin adds; left out of what a request asks.
_CONDITIONS = ("If-None-Match", "If-Modified-Since")
#: What aiohttp refuses in a header it sends, as a guard against header injection.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class Memory(Protocol):
    """What fw hands ``crawl_started`` as ``memory``: text kept by request, per round."""

    async def get(self, request: Request) -> str | None: ...

    async def put(self, request: Request, value: str | None) -> None: ...


def _patterns(raw: Any, source: Source, path: KeyPath) -> tuple[re.Pattern[str], ...]:
    texts = convert(tuple[str, ...], raw, source, path)
    patterns = []
    for index, text in enumerate(texts):
        try:
            patterns.append(re.compile(text))
        except re.error as exc:
            raise source.error((*path, index), f"not a valid regular expression: {exc}") from None
    return tuple(patterns)


@dataclass(frozen=True)
class IncrementalOptions:
    """The ``incremental:`` section; ``incremental: true`` is short for ``{enabled: true}``."""

    enabled: bool = option(
        False,
        doc="Re-crawl a finished crawl in rounds, fetching only what changed since the last "
        "round; needs a persistent frontier. `fw run --incremental` turns it on for one run.",
    )
    ignore: tuple[re.Pattern[str], ...] = option(
        (),
        doc="Regular expressions whose matches are cut from a page's text before it is "
        "hashed: parts that change on every fetch (a CSRF token, a clock) and would make "
        "every page look changed.",
        parse=_patterns,
    )


#: The section of the project file this module owns.
Options = IncrementalOptions


@dataclass(frozen=True)
class Visit:
    """What a round noted about a page; a visit without ``digest`` was spoilt (its fetch,
    callback or export failed) and matches nothing: the page is fetched in full."""

    etag: str | None = None
    modified: str | None = None
    digest: str | None = None
    #: The hash of what the request asked: callback, errback, meta, headers.
    asked: str | None = None
    #: The requests the page's callback yielded (``Request.to_dict`` less defaults), or
    #: None when there were too many to keep.
    links: tuple[Any, ...] | None = None

    @classmethod
    def read(cls, text: str | None) -> Visit | None:
        """Read a noted visit; one that cannot be read counts as spoilt."""
        if text is None:
            return None
        try:
            data = json.loads(text)
            links = data.get("links")
            return cls(
                data.get("etag"),
                data.get("modified"),
                data.get("digest"),
                data.get("asked"),
                None if links is None else tuple(links),
            )
        except (ValueError, AttributeError, TypeError):
            return SPOILT

    def write(self) -> str:
        """Return the visit as the text the memory keeps."""
        fields = {
            "etag": self.etag,
            "modified": self.modified,
            "digest": self.digest,
            "asked": self.asked,
            "links": None if self.links is None else list(self.links),
        }
        return json.dumps({k: v for k, v in fields.items() if v is not None}, ensure_ascii=False)

    def answers(self, asked: str) -> bool:
        """Tell whether this visit can stand for a request asking ``asked`` now."""
        return self.digest is not None and self.asked == asked and self.links is not None

    def conditions(self) -> dict[str, str]:
        """Return the headers that ask the server whether the page changed since."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.modified:
            headers["If-Modified-Since"] = self.modified
        return headers

    def requests(self) -> list[Request]:
        """Rebuild the requests the page yielded; an unreadable one spoils them all."""
        return [_request(link) for link in self.links or ()]

    def validated_by(self, response: Response) -> Visit:
        """Return this visit with the validators ``response`` gives, where it gives any."""
        return replace(
            self,
            etag=_validator(response, "ETag", self.etag),
            modified=_validator(response, "Last-Modified", self.modified),
        )


SPOILT = Visit()


class Revisits(Middleware):
    """Ask each page whether it changed since the last round; skip the unchanged ones.

    Its methods marked ``@hookimpl`` are event hooks for its own crawl (see
    ``register_middlewares``): the memory and the counts live here, one per crawl.
    """

    name = "incremental"
    Options = IncrementalOptions
    options: IncrementalOptions

    def __init__(self, options: IncrementalOptions | None = None) -> None:
        super().__init__(options or IncrementalOptions())
        self._memory: Memory | None = None  # set when a crawl with the plugin on starts
        self._parsed: Callable[[int], bool] = _ok

    # ---------------------------------------------------------------------------------------
    # The crawl's events
    # ---------------------------------------------------------------------------------------

    @hookimpl
    def crawl_started(self, spider: Spider, memory: Memory) -> None:
        """Start revisiting, if the project turned the plugin on."""
        if not self.options.enabled:
            return
        self._memory = memory
        allowed = frozenset(spider.allowed_status)
        self._parsed = lambda status: _ok(status) or status in allowed
        self.counts.update({"new": 0, "changed": 0, "unchanged": 0})  # in this order

    @hookimpl
    async def page_parsed(
        self, request: Request, response: Response, requests: Sequence[Request]
    ) -> None:
        """Note the visit of a page parsed whole, for the next round."""
        if self._memory is None or not _revisited(request):
            return
        links = [_link(found) for found in requests]
        kept = len(json.dumps(links, ensure_ascii=False)) <= MAX_LINKS
        visit = Visit(
            digest=self._digest(response),
            asked=_asked(request),
            links=tuple(links) if kept else None,
        ).validated_by(response)
        await self._memory.put(request, visit.write())

    @hookimpl
    async def crawl_error(self, request: Request | None) -> None:
        """Spoil the visit of a page whose fetch, callback or export failed."""
        if self._memory is not None and request is not None and _revisited(request):
            await self._memory.put(request, SPOILT.write())

    # ---------------------------------------------------------------------------------------
    # Each request
    # ---------------------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Only a crawl that sets the section needs it."""
        return self.options.enabled

    async def __call__(self, request: Request, handler: Handler) -> Response:
        """Fetch ``request``, conditionally when its last visit allows; raise ``Unchanged``
        for a page as it was, and count each page new, changed or unchanged."""
        memory = self._memory
        if memory is None or not _revisited(request):
            return await handler(request)
        seen = Visit.read(await memory.get(request))
        known, links = _usable(seen, _asked(request))
        conditions = known.conditions() if known is not None else {}
        sent = request.replace(headers={**(request.headers or {}), **conditions})
        response = await handler(sent if conditions else request)
        if known is not None and response.status == 304 and conditions:
            await self._unchanged(request, response, known, links)
        if not self._parsed(response.status):
            return response  # a redirect or an error: the engine deals with it
        if known is not None and known.digest == self._digest(response):
            await self._unchanged(request, response, known, links)
        if seen is None:
            self.counts["new"] += 1
            return response
        self.counts["changed"] += 1
        if seen.digest is not None:  # spoilt until parsed whole: a callback may fail
            await memory.put(request, SPOILT.write())
        return response

    async def _unchanged(
        self, request: Request, response: Response, known: Visit, links: list[Request]
    ) -> None:
        """Raise ``Unchanged`` with the page's earlier requests, noting new validators."""
        self.counts["unchanged"] += 1
        validated = known.validated_by(response)
        if validated != known and self._memory is not None:
            await self._memory.put(request, validated.write())
        raise Unchanged(response, links)

    def _digest(self, response: Response) -> str:
        """Hash the body, or its text less what ``ignore`` matches."""
        data = response.body
        if self.options.ignore:
            text = response.text
            for pattern in self.options.ignore:
                text = pattern.sub("", text)
            data = text.encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, digest_size=16).hexdigest()


def _validator(response: Response, name: str, known: str | None) -> str | None:
    """Return the validator ``response`` gives in header ``name`` (else ``known``), or None
    if it cannot go back as it came: bytes that were not UTF-8 (aiohttp hands them over as
    lone surrogates) or a control character, which aiohttp refuses to send."""
    value = response.headers.get(name)
    if value is None:
        return known
    if _CONTROL.search(value):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _ok(status: int) -> bool:
    return 200 <= status < 300


def _usable(seen: Visit | None, asked: str) -> tuple[Visit | None, list[Request]]:
    """Return the visit that can stand for a request asking ``asked`` now, and the
    requests its page yielded; (None, []) if there is none, or its requests are unreadable
    (not what this plugin wrote): the page is then fetched as changed."""
    if seen is None or not seen.answers(asked):
        return None, []
    try:
        return seen, seen.requests()
    except (TypeError, ValueError, KeyError):
        return None, []


def _revisited(request: Request) -> bool:
    """Only GET pages are revisited; robots.txt and an item step's downloads (a file the
    ``files`` step fetches: meta ``fw_download``) are fw's, not the spider's pages."""
    meta = request.meta
    return request.method == "GET" and not meta.get("robots.txt") and "fw_download" not in meta


def _asked(request: Request) -> str:
    """Hash what a request asks beside its URL: a page asked differently is fetched anew."""
    headers = {k: v for k, v in (request.headers or {}).items() if k not in _CONDITIONS}
    asked = [request.callback, request.errback, request.meta, headers]
    text = json.dumps(asked, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


#: What a request's fields are when left out; depth, retries and redirects are the engine's.
_DEFAULTS = Request("http://example.com/").to_dict()
_ENGINES = ("depth", "retries", "redirects")


def _link(request: Request) -> Any:
    """Return a request as little JSON: its URL alone when every other field is default."""
    data = request.to_dict()
    changed = {
        name: value
        for name, value in data.items()
        if name != "url" and name not in _ENGINES and value != _DEFAULTS[name]
    }
    return {"url": request.url, **changed} if changed else request.url


def _request(link: Any) -> Request:
    if isinstance(link, str):
        return Request(link)
    if not isinstance(link, Mapping):
        raise TypeError(f"not a request: {link!r}")
    return Request.from_dict(link)


# tryfirst: the outermost middleware, it sees each request as the spider made it, before
# others add headers or meta that vary from round to round (a proxy, a User-Agent).
@hookimpl(tryfirst=True)
def register_middlewares(register: Callable[[type[Middleware]], None]) -> None:
    """Provide the ``incremental`` middleware (inactive unless the project turns it on)."""
    register(Revisits)


@hookimpl(trylast=True)
def register_flags(register: Callable[[str, str, str], None]) -> None:
    """Provide ``fw run --incremental``."""
    register(
        "--incremental",
        "incremental.enabled=true",
        "re-crawl a finished crawl, fetching only what changed since its last round",
    )


@hookimpl
def renew_finished_crawl(project: Any) -> bool:
    """Renew a finished crawl when the plugin is on; refuse it without a persistent frontier."""
    options = project.section("incremental")
    if not isinstance(options, IncrementalOptions) or not options.enabled:
        return False
    if project.frontier == "memory":
        raise ValueError(
            "needs a persistent frontier, which remembers each page from one run to the "
            "next: set frontier: sqlite:///state/crawl.db (or redis://…)"
        )
    return True
