"""The bundled ``files`` plugin: download the files and images items link to, and store them.

Its section of the project file names the item fields that hold URLs::

    files:
      fields: [poster]       # each holds a URL, or a list of URLs
      dir: files/            # relative to the project file's folder (default: files/)
      max_size: 20MB         # the largest file; larger ones fail as too_large

Each URL is fetched as the crawl fetches pages (``context.fetch``: paced per host,
robots.txt, the middlewares, redirects, retries), but does not count against
``max_pages`` nor need be in ``allowed_domains``. The file is stored once, by content:
``<dir>/<sha256[:2]>/<sha256><ext>``, the extension from the URL or else the content
type. The item gets a ``files`` field listing, in the order its URLs appear, one entry
per distinct URL::

    files: [{"url": "https://img3.doubanio.com/…/p2577347230.jpg",
             "path": "5e/5e1b…c0.jpg",   # relative to dir
             "sha256": "5e1b…c0", "size": 31234, "error": null}]

A download that fails for good is counted by its kind and logged, and its entry says why
(``"error": "http_404: HTTP 404"``, with ``path``, ``sha256`` and ``size`` null): the
item is exported all the same. A URL several items share is fetched once in a run.

The item is exported, and its page acknowledged, only once its files are stored: a
crawl killed meanwhile fetches the page again when resumed (``sqlite:`` or ``redis:``
frontier), so no item is lost and none is exported twice.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import itertools
import logging
import mimetypes
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

from framework import (
    FetchError,
    ItemContext,
    ItemStep,
    Request,
    Response,
    hookimpl,
    open_new,
    option,
)
from framework.config import KeyPath, Source, convert

__all__ = ["FilesOptions", "FilesStep", "Options", "item_step"]

log = logging.getLogger("fw.files")

_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3}
_UNITS |= {"kib": 1024, "mib": 1024**2, "gib": 1024**3}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)", re.IGNORECASE)
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,8}")
#: The largest max_size: a download is held in memory whole before it is stored.
_LARGEST = 1024**3
#: Temporary names of files being written, unique in the process.
_PARTS = itertools.count()

Entry = dict[str, Any]


def _some(fields: tuple[str, ...]) -> tuple[str, ...]:
    if not fields or not all(fields):
        raise ValueError("must name at least one item field, and no empty one")
    return fields


def _folder(raw: Any, source: Source, path: KeyPath) -> str:
    """Read ``dir``: relative to the project file's folder; not a file already there."""
    text = convert(str, raw, source, path)
    folder = (source.file.parent / text).resolve()
    if folder.exists() and not folder.is_dir():
        raise source.error(path, f"{folder} exists and is not a folder")
    return str(folder)


def _size(raw: Any, source: Source, path: KeyPath) -> int:
    """Read a size: bytes, or a number with a unit (``20MB``, ``512KiB``)."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        size = raw
    else:
        match = _SIZE.fullmatch(str(raw).strip()) if isinstance(raw, str) else None
        if match is None or match[2].lower() not in _UNITS:
            raise source.error(path, f"expected a size such as 20MB or 512KiB, got {raw!r}")
        size = int(float(match[1]) * _UNITS[match[2].lower()])
    if size < 1:
        raise source.error(path, f"must be at least 1 byte, got {raw!r}")
    if size > _LARGEST:
        raise source.error(path, f"must be at most 1GiB (a file is held in memory), got {raw!r}")
    return size


@dataclass(frozen=True)
class FilesOptions:
    """The ``files:`` section of a project file."""

    fields: tuple[str, ...] = option(
        doc="The item fields holding the URLs to download: each a URL or a list of URLs.",
        check=_some,
    )
    dir: str = option(
        "files/",
        doc="Where the files are stored, relative to the project file's folder: "
        "<dir>/<sha256[:2]>/<sha256><ext>, each once.",
        parse=_folder,
    )
    max_size: int = option(
        20 * 1000**2,
        doc="The largest file, in bytes or with a unit: 20MB, 512KiB (KB, MB, GB are "
        "powers of 1000, KiB, MiB, GiB of 1024), at most 1GiB. A larger one fails as too_large.",
        parse=_size,
    )


#: The section this plugin reads (``files:``), validated like fw's own keys.
Options = FilesOptions


@hookimpl(trylast=True)  # last: the item's URLs are final once other steps are done
def item_step(project: Any) -> ItemStep | None:
    """Download the files of this crawl's items, if the project has a ``files:`` section."""
    options = project.section("files")
    if not isinstance(options, FilesOptions):
        return None
    # The default (files/) is not parsed: it too is relative to the project file's folder.
    return FilesStep(options, (Path(project.file).parent / options.dir).resolve())


class FilesStep(ItemStep):
    """Download each item's files, store them by content, and list them in ``files``."""

    def __init__(self, options: FilesOptions, folder: Path) -> None:
        self._options = options
        #: Where the files are stored.
        self.dir = folder
        self._known: dict[str, asyncio.Future[Entry]] = {}  # by URL: fetched once a run
        self._warned = False
        self.downloaded = self.shared = self.failed = self.bytes = 0

    def columns(self, columns: list[str] | None) -> list[str] | None:
        """Add ``files`` to the columns, if they are known."""
        if columns is None or "files" in columns:
            return columns
        return [*columns, "files"]

    async def process(self, item: dict[str, Any], context: ItemContext) -> dict[str, Any]:
        """Download the item's files, each URL once, and list them in ``files``."""
        self._warn_replacing(item)
        base = context.response.url if context.response is not None else context.request.url
        urls = list(dict.fromkeys(_urls(item, self._options.fields, base)))
        async with asyncio.TaskGroup() as group:
            files = [group.create_task(self._file(url, context)) for url in urls]
        item["files"] = [dict(file.result()) for file in files]  # a copy each: items differ
        return item

    def close(self) -> None:
        """Say what was downloaded, shared and failed."""
        if not (self.downloaded or self.shared or self.failed):
            return
        log.info(
            "files: %d downloaded (%s) into %s, %d shared by several items, %d failed%s",
            self.downloaded,
            _human(self.bytes),
            self.dir,
            self.shared,
            self.failed,
            " (their items' files[].error says why)" if self.failed else "",
        )

    def _warn_replacing(self, item: Mapping[str, Any]) -> None:
        if "files" in item and "files" not in self._options.fields and not self._warned:
            self._warned = True
            log.warning(
                "files: the spider's own 'files' field is replaced by the downloads of "
                "fields %s; rename it, or list it in files.fields",
                ", ".join(self._options.fields),
            )

    async def _file(self, url: str, context: ItemContext) -> Entry:
        """Return the entry of ``url``: downloaded now, or by another item of this run."""
        while (pending := self._known.get(url)) is not None:
            try:
                entry = await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
                continue  # the item downloading it was cancelled: try again
            self.shared += 1
            return entry
        future = self._known[url] = asyncio.get_running_loop().create_future()
        try:
            entry = await self._download(url, context)
        except BaseException:
            del self._known[url]
            future.cancel()
            raise
        future.set_result(entry)
        return entry

    async def _download(self, url: str, context: ItemContext) -> Entry:
        try:
            response = await context.fetch(Request(url), max_size=self._options.max_size)
        except FetchError as exc:  # counted and logged by fw already (a mailto: link too)
            self.failed += 1
            return _failed(url, f"{exc.kind}: {exc}")
        try:
            sha, path = await asyncio.to_thread(self._store, response.body, _extension(response))
        except OSError as exc:
            self.failed += 1
            reason = f"cannot store it in {self.dir}: {exc.strerror or exc}"
            await context.report("file_error", f"files: {url}: {reason}", exc)
            return _failed(url, reason)
        self.downloaded += 1
        self.bytes += len(response.body)
        return {"url": url, "path": path, "sha256": sha, "size": len(response.body), "error": None}

    def _store(self, body: bytes, extension: str) -> tuple[str, str]:
        """Write ``body`` under its SHA-256 unless it is there; return the hash and path.

        Written beside its place and renamed into it: a crash never leaves half a file
        under a hash.
        """
        sha = hashlib.sha256(body).hexdigest()
        relative = f"{sha[:2]}/{sha}{extension}"
        target = self.dir / relative
        if _holds(target, body):
            return sha, relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.parent.is_symlink():  # planted for a folder: it would take files elsewhere
            raise OSError(errno.ELOOP, f"{target.parent} is a symbolic link")
        part = target.with_name(f".{target.name}.{os.getpid()}-{next(_PARTS)}.part")
        try:
            with open_new(part) as file:
                file.write(body)
            part.replace(target)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return sha, relative


def _holds(target: Path, body: bytes) -> bool:
    """Whether ``target`` holds ``body`` already: the same bytes, not only as many (a file
    damaged on disk, or put there by hand, is written again)."""
    try:
        return (
            target.is_file()
            and target.stat().st_size == len(body)
            and (target.read_bytes() == body)
        )
    except OSError:  # unreadable: written again, or the write says what is wrong
        return False


def _urls(item: Mapping[str, Any], fields: tuple[str, ...], base: str) -> Iterator[str]:
    """Yield the URLs in ``fields`` of ``item``, made absolute against the page."""
    for field in fields:
        value = item.get(field)
        for one in value if isinstance(value, list | tuple) else (value,):
            if one is None or one == "":
                continue
            yield _absolute(base, one.strip()) if isinstance(one, str) else repr(one)


def _absolute(base: str, url: str) -> str:
    """Read ``url`` against the page, without its fragment (never sent: ``a.png#x`` is
    ``a.png``, downloaded once); leave it as written if it is too broken to read."""
    try:
        return urldefrag(urljoin(base, url))[0]
    except ValueError:  # e.g. a bad [IPv6] host: its fetch fails as invalid_url, on its own
        return url


def _extension(response: Response) -> str:
    """Name a file's kind: the extension of its URL, else one for its content type."""
    for url in (response.request.meta.get("redirect_urls", [None])[0], response.url):
        if url:
            suffix = PurePosixPath(urlsplit(url).path).suffix
            if _EXTENSION.fullmatch(suffix):
                return suffix.lower()
    guessed = mimetypes.guess_extension(response.media_type) if response.media_type else None
    return guessed or ""


def _failed(url: str, error: str) -> Entry:
    return {"url": url, "path": None, "sha256": None, "size": None, "error": error}


def _human(size: float) -> str:
    """Write a size for people: 1.2 MB."""
    for unit in ("bytes", "KB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
