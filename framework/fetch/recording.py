"""Record a crawl's responses to a folder, and replay a crawl from them with no network.

``fw run --record DIR`` wraps the downloader: every answer (and every failure to get one)
is saved under DIR as it arrives. ``fw run --replay DIR`` swaps the downloader for the
recording: each request is answered from DIR, the network is never touched, and a
request that was not recorded fails as ``not_recorded``, naming the URL. Middlewares,
spider and exporters run as usual, so a recorded crawl replays to identical items.

A recording is one pair of files per request, named by the request's fingerprint
(method, canonical URL, body): ``<fp>.json`` (URL, status, headers, or the failure) and
``<fp>.body`` (the body, as received after decompression). A request fetched more than
once (a retry) keeps its last answer.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
from pathlib import Path
from types import TracebackType
from typing import Any

from multidict import CIMultiDict

from framework.config.project import MiB
from framework.errors import FetchError, UsageError
from framework.fetch.downloader import Fetcher
from framework.fetch.parsers import Parsers
from framework.http import Request, Response, media_type
from framework.http.urls import fingerprint

__all__ = ["Recorder", "Replayer"]

# A record holds a URL, headers or a failure: a megabyte is far more than any needs.
_RECORD_LIMIT = MiB
# O_NONBLOCK: opening a FIFO does not wait for a writer; O_NOCTTY: nor does a terminal
# become fw's. Either is then refused for not being a regular file.
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY


def _key(request: Request) -> str:
    return f"{fingerprint(request):016x}"


class Recorder:
    """A fetcher that fetches with ``inner`` and saves every outcome under ``folder``."""

    def __init__(self, inner: Fetcher, folder: Path) -> None:
        self._inner, self.folder = inner, folder

    async def __aenter__(self) -> Recorder:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--record {self.folder}: {exc.strerror or exc}") from exc
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._inner.__aexit__(kind, error, traceback)

    async def fetch(self, request: Request) -> Response:
        """Fetch ``request`` and record the response or the failure."""
        try:
            response = await self._inner.fetch(request)
        except FetchError as exc:
            self._save(
                request,
                {
                    "error": {
                        "kind": exc.kind,
                        "message": str(exc),
                        "retryable": exc.retryable,
                        "retry_after": exc.retry_after,
                    }
                },
                b"",
            )
            raise
        self._save(
            request,
            {"status": response.status, "headers": list(response.headers.items())},
            response.body,
        )
        return response

    def _save(self, request: Request, outcome: dict[str, Any], body: bytes) -> None:
        key = _key(request)
        (self.folder / f"{key}.body").write_bytes(body)
        record = {"method": request.method, "url": request.url, **outcome}
        # The .json last: a crash between the two leaves no record that lacks its body.
        (self.folder / f"{key}.json").write_text(
            json.dumps(record, ensure_ascii=False), encoding="utf-8"
        )


class Replayer:
    """A fetcher that answers every request from a recording and never opens a socket.

    The folder is trusted no more than a server. Only regular files directly in it are
    read, never through a symbolic link, and a body is capped at ``max_response_size``.
    A bad entry fails its request as ``bad_recording``, naming the file. Files are read in
    a worker thread, so a slow disk never stalls the crawl.
    """

    def __init__(self, folder: Path, parsers: Parsers, max_response_size: int) -> None:
        self.folder, self._parsers, self._limit = folder, parsers, max_response_size
        self._fd: int | None = None

    async def __aenter__(self) -> Replayer:
        # Entries are opened relative to the folder's descriptor: they stay in that folder.
        try:
            self._fd = await asyncio.to_thread(os.open, self.folder, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            raise UsageError(
                f"--replay {self.folder}: no such folder (record one with fw run --record)"
            ) from None
        except OSError as exc:
            raise UsageError(f"--replay {self.folder}: {exc.strerror or exc}") from None
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def fetch(self, request: Request) -> Response:
        """Return the recorded answer, or raise the recorded failure."""
        status, headers, body = await asyncio.to_thread(self._answer, request)
        return Response(
            request.url,
            status,
            headers,
            body,
            request,
            self._parsers.for_type(media_type(headers)),
        )

    def _answer(self, request: Request) -> tuple[int, CIMultiDict[str], bytes]:
        """Read and check ``request``'s entry (in a worker thread)."""
        key = _key(request)
        status, headers = self._record(key, request)
        return status, CIMultiDict(headers), self._body(key)

    def _record(self, key: str, request: Request) -> tuple[int, list[tuple[str, str]]]:
        """Return the status and headers recorded for ``request``; raise its failure."""
        data = self._read(f"{key}.json", _RECORD_LIMIT)
        if data is None:
            raise FetchError(
                "not_recorded",
                f"{request.method} {request.url} is not in the recording {self.folder}",
            )
        if len(data) > _RECORD_LIMIT:
            raise self._bad(f"{key}.json", f"larger than {_RECORD_LIMIT // MiB} MiB")
        return _parse(data)

    def _body(self, key: str) -> bytes:
        """Return the recorded body; over ``max_response_size`` it fails as downloaded."""
        body = self._read(f"{key}.body", self._limit)
        if body is None:
            raise self._bad(f"{key}.body", "missing, though its .json is there")
        if len(body) > self._limit:
            raise FetchError(
                "too_large",
                f"{self.folder / key}.body: body larger than max_response_size "
                f"({self._limit} bytes)",
            )
        return body

    def _read(self, name: str, limit: int) -> bytes | None:
        """Return at most ``limit + 1`` bytes of the regular file ``name``; None if absent.

        Nothing else is read: a symbolic link may lead out of the folder, a FIFO waits
        for a writer forever, a device may never end.
        """
        assert self._fd is not None, "use the replayer as an async context manager"
        try:
            fd = os.open(name, _OPEN, dir_fd=self._fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._bad(name, _unopenable(exc)) from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise self._bad(name, f"not a regular file ({_file_type(mode)})")
            with open(fd, "rb", closefd=False) as file:
                return file.read(limit + 1)
        except OSError as exc:
            raise self._bad(name, exc.strerror or str(exc)) from None
        finally:
            os.close(fd)

    def _bad(self, name: str, what: str) -> FetchError:
        """Return the failure of a bad entry, naming its file."""
        return FetchError("bad_recording", f"{self.folder / name}: {what}")


def _parse(data: bytes) -> tuple[int, list[tuple[str, str]]]:
    """Return the status and headers a record holds, or raise the failure it holds."""
    record = json.loads(data)
    if "error" in record:
        error = record["error"]
        raise FetchError(
            error["kind"],
            error["message"],
            retryable=error["retryable"],
            retry_after=error["retry_after"],
        )
    return record["status"], record["headers"]


def _unopenable(error: OSError) -> str:
    """Say why an entry could not be opened; ELOOP is what O_NOFOLLOW gives a link."""
    return "a symbolic link" if error.errno == errno.ELOOP else error.strerror or str(error)


def _file_type(mode: int) -> str:
    """Name the kind of file that is not a regular one."""
    kinds = {"d": "a folder", "p": "a FIFO", "c": "a device", "b": "a device", "s": "a socket"}
    return kinds.get(stat.filemode(mode)[0], "an unusual file")
