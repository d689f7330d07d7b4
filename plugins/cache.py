"""The ``cache`` plugin: a development HTTP cache, so that a re-run needs no network.

``cache: {dir: .fw-cache, expire: 1d}`` in the project file, or ``fw run --cache DIR``: a
request whose answer is in the folder is answered from disk — no network, no delay, no
throttling — and any other is fetched and its answer stored. An entry older than
``expire`` is fetched again; ``--cache-refresh`` (``refresh: true``) fetches every request
again and stores the new answers. The folder is a recording (``framework.Recording``):
``fw run --replay DIR`` replays a cache offline, and ``--cache`` reads a recording.

What is stored: every response but the ones that say "try later" or "not you" — 5xx,
408, 429, and the refusals 403 and 418 — which a re-run fetches again, as it does a
request that failed (a timeout, a refused connection). A redirect is stored like any
response, so that a hit replays each hop. A body cut short on purpose (robots.txt, read
up to 500 KiB) is not stored. The cache key is the request's fingerprint: method,
canonical URL and body. HTTP caching headers (``Cache-Control``, ``Expires``) are
ignored: this cache is for developing a crawl, not for browsing. A request with
``meta={"dont_cache": True}`` is neither answered from the cache nor stored.

The middleware is registered ``trylast``, so that it is the innermost: it stands where
the network would, and every other middleware sees a hit as it would see a fetch.
docs/cache.md is the reference.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework import (
    FetchError,
    Handler,
    Middleware,
    Recording,
    Request,
    Response,
    hookimpl,
    option,
)
from framework.config import KeyPath, Source, convert

__all__ = ["Cache", "CacheOptions", "register_middlewares"]

log = logging.getLogger("fw.cache")

#: A request's meta key (fw's own, for robots.txt): read at most this many bytes.
READ_AT_MOST = "read_at_most"
#: A request's meta key, as in Scrapy: true keeps this request out of the cache.
DONT_CACHE = "dont_cache"
#: Statuses that say "try later" or "not you": a re-run asks again rather than remember them.
TRANSIENT = frozenset({403, 408, 418, 429})
#: Statuses that answer a request's conditions (If-None-Match, If-Match, ...), not the URL.
_CONDITIONAL = frozenset({304, 412})
#: What is kept of ``max_size`` after entries are removed for room, so that not every
#: answer stored then removes one.
_KEEP = 0.9
#: An entry saved this far in the future (a clock set back, a copied folder) is not trusted.
_SKEW = 60.0
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(w|d|h|m|s))", re.IGNORECASE)
_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*((?:[kmgt]i?)?b)?", re.IGNORECASE)
_BYTES = {
    "b": 1,
    **{f"{p}b": 1000 ** (n + 1) for n, p in enumerate("kmgt")},
    **{f"{p}ib": 1024 ** (n + 1) for n, p in enumerate("kmgt")},
}
GiB = 1024**3


def _text(raw: Any, source: Source, path: KeyPath) -> str | None:
    """Read a value written as text or a number ($env included); None for null."""
    return None if raw is None else str(convert(str, raw, source, path)).strip()


def _folder(raw: Any, source: Source, path: KeyPath) -> str | None:
    """Take a folder relative to the project file; refuse a path that is a file."""
    text = _text(raw, source, path)
    if not text:
        return None
    folder = os.path.abspath(source.file.parent / text)  # noqa: PTH100 - symlinks kept
    if Path(folder).exists() and not Path(folder).is_dir():
        raise source.error(path, f"{folder} is not a folder")
    return folder


def _duration(raw: Any, source: Source, path: KeyPath) -> float | None:
    """Read ``1d``, ``12h``, ``30m``, ``45s``, ``1h30m`` or seconds; 0 and never are None."""
    text = _text(raw, source, path)
    if text is None or text.lower() == "never":
        return None
    seconds = _seconds(text)
    if seconds is None:
        raise source.error(
            path,
            f"{text!r} is not a duration; write 1d, 12h, 30m, 45s, 1h30m, seconds (3600), "
            "or never (as 0 does)",
        )
    return seconds or None


def _seconds(text: str) -> float | None:
    """Return the seconds ``text`` says, or None if it is no duration."""
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts).lower() != text.lower():
            return None
        seconds = sum(float(n) * _SECONDS[u.lower()] for n, u in parts)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _size(raw: Any, source: Source, path: KeyPath) -> int | None:
    """Read ``500MB``, ``2GiB`` or bytes; null is no limit."""
    text = _text(raw, source, path)
    if text is None or text.lower() in ("null", "none"):
        return None
    found = _SIZE.fullmatch(text)
    if found is None:
        raise source.error(
            path, f"{text!r} is not a size; write 500MB, 2GB, 1GiB or bytes, or null for none"
        )
    size = int(float(found[1]) * _BYTES[(found[2] or "b").lower()])
    if size < 1:
        raise source.error(path, f"must be at least 1 byte, got {text!r}")
    return size


@dataclass(frozen=True)
class CacheOptions:
    """The ``cache:`` section."""

    dir: str | None = option(
        None,
        doc="The folder answers are kept in, relative to the project file (`fw run --cache "
        "DIR` sets it, relative to where fw runs). Without it there is no cache.",
        parse=_folder,
    )
    expire: float | None = option(
        None,
        doc="How long an answer is used before it is fetched again: 1d, 12h, 30m, 45s, "
        "1h30m, or seconds (3600); 0 or never: for ever.",
        parse=_duration,
    )
    refresh: bool = option(
        False,
        doc="Answer nothing from the cache: fetch every request and store the new answers "
        "(`fw run --cache-refresh`).",
    )
    max_size: int | None = option(
        GiB,
        doc="The most the folder may hold (500MB, 2GB, 1GiB, or bytes); past it the oldest "
        "answers are removed. null: no limit. Default: 1 GiB.",
        parse=_size,
    )

    def __post_init__(self) -> None:
        if self.refresh and self.dir is None:
            raise ValueError(
                "refresh (--cache-refresh) needs a cache folder: give --cache DIR, or dir:"
            )


class Cache(Middleware):
    """Answer requests from the cache folder; fetch and store the others."""

    name = "cache"
    Options = CacheOptions
    options: CacheOptions

    def __init__(self, options: CacheOptions) -> None:
        super().__init__(options)
        self._recording: Recording | None = None
        self._size = 0  # what the folder holds, as far as this process knows
        self._added = 0  # what this process has stored, ever
        self._pruning = asyncio.Lock()
        self._warned: set[str] = set()  # the kinds of failure warned of (once each)

    @property
    def active(self) -> bool:
        """Only a crawl that sets the section needs it."""
        return self.options.dir is not None

    async def open(self, project: Any) -> None:
        """Open (or make) the folder, and bring it within ``max_size``."""
        if self.options.dir is None:
            return
        self.counts.update(dict.fromkeys(("hits", "misses", "expired", "stored"), 0))
        folder = Path(self.options.dir)
        recording = Recording(folder, max_body=project.max_response_size, create=True)
        try:
            await recording.open()
        except OSError as exc:
            raise OSError(f"cache {self.options.dir}: {exc.strerror or exc}") from exc
        self._recording = recording
        if self.options.max_size is not None:
            await self._prune(force=True)

    async def close(self) -> None:
        """Let go of the folder."""
        if self._recording is not None:
            await self._recording.close()
            self._recording = None

    async def __call__(self, request: Request, handler: Handler) -> Response:
        """Answer from the cache, or fetch and store."""
        recording = self._recording
        if recording is None or request.meta.get(DONT_CACHE):
            return await handler(request)
        if not self.options.refresh:
            hit = await self._lookup(recording, request)
            if hit is not None:
                self.counts["hits"] += 1
                return hit
        response = await handler(request)  # a failure is not stored: a re-run tries again
        await self._store(recording, request, response)
        return response

    async def _lookup(self, recording: Recording, request: Request) -> Response | None:
        """Return the stored answer to ``request``, or None (counted: why not)."""
        try:
            recorded = await recording.load(request)
        except FetchError as exc:
            if exc.kind == "bad_recording":  # damaged, or being rewritten by another run
                self.counts["bad"] += 1
                log.info("cache: %s; fetching it again", exc)
            else:  # over max_response_size: the network will say so
                self.counts["misses"] += 1
            return None
        if recorded is None or recorded.error is not None or not _storable(recorded.status):
            self.counts["misses"] += 1  # a recording's failures are no answer for a cache
            return None
        age = time.time() - recorded.saved
        expire = self.options.expire
        if age < -_SKEW or (expire is not None and age > expire):
            self.counts["expired"] += 1
            return None
        response = recorded.response(request)
        at_most = request.meta.get(READ_AT_MOST)
        if isinstance(at_most, int) and len(response.body) > at_most:
            response.body = response.body[:at_most]  # as a download for it would be cut
        return response

    async def _store(self, recording: Recording, request: Request, response: Response) -> None:
        """Store a response worth remembering; a disk that refuses is told once, not fatal."""
        at_most = request.meta.get(READ_AT_MOST)
        if not _storable(response.status) or (
            isinstance(at_most, int) and len(response.body) >= at_most  # maybe cut short
        ):
            self.counts["uncacheable"] += 1
            return
        try:
            size = await recording.save(request, response)
        except OSError as exc:
            self._failed(
                "unwritable",
                f"cache {recording.folder}: cannot store answers: {exc.strerror or exc}; the "
                "crawl goes on, and a re-run fetches them again",
            )
            return
        self._size, self._added = self._size + size, self._added + size
        self.counts["stored"] += 1
        if self.options.max_size is not None and self._size > self.options.max_size:
            await self._prune()

    async def _prune(self, *, force: bool = False) -> None:
        """Remove the oldest answers until the folder holds 90% of ``max_size``.

        Runs that share the folder each count what they store; listing it is the truth.
        A store while a prune runs waits for it, then prunes again if it must: skipped, it
        went uncounted, and the folder grew past ``max_size``.
        """
        recording, limit = self._recording, self.options.max_size
        if recording is None or limit is None:
            return
        async with self._pruning:
            if self._size <= limit and not force:  # the prune it waited for made room
                return
            added = self._added
            try:
                entries = sorted(await recording.entries(), key=lambda entry: entry.saved)
            except OSError as exc:
                self._cannot_prune(recording, exc)
                return
            total = sum(entry.size for entry in entries)
            if total > limit:
                for entry in entries:
                    if total <= limit * _KEEP:
                        break
                    if await self._removed(recording, entry.key):
                        total -= entry.size
                        self.counts["evicted"] += 1
            self._size = total + self._added - added  # and what was stored meanwhile

    async def _removed(self, recording: Recording, key: str) -> bool:
        """Remove an answer; one that will not go (a read-only disk, a folder in its
        stead) is told once, never a reason to lose the page being stored."""
        try:
            await recording.remove(key)
        except OSError as exc:
            self._cannot_prune(recording, exc)
            return False
        return True

    def _cannot_prune(self, recording: Recording, exc: OSError) -> None:
        why = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else exc
        self._failed(
            "unprunable",
            f"cache {recording.folder}: cannot remove old answers: {why}; the crawl goes on, "
            "and the folder may hold more than max_size",
        )

    def _failed(self, kind: str, message: str) -> None:
        """Count a failure of the disk under the cache; warn of the first of each kind."""
        self.counts[kind] += 1
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("%s", message)


def _storable(status: int) -> bool:
    """Tell whether an answer with ``status`` is one to remember: not a failure that may
    pass, nor the answer to a conditional request (an incremental re-crawl's "not
    modified"), which is no answer to the plain request the cache keys it by."""
    return status < 500 and status not in TRANSIENT and status not in _CONDITIONAL


@hookimpl(trylast=True)  # the innermost middleware: it stands where the network would
def register_middlewares(register: Callable[[type[Middleware]], None]) -> None:
    """Provide the ``cache`` middleware."""
    register(Cache)
