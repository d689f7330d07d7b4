"""Record a crawl's responses to a folder, and replay a crawl from them with no network.

``fw run --record DIR`` wraps the downloader: every answer (and every failure to get one)
is saved under DIR as it arrives. ``fw run --replay DIR`` swaps the downloader for the
recording: each request is answered from DIR, the network is never touched, and a
request that was not recorded fails as ``not_recorded``, naming the URL. Middlewares,
spider and exporters run as usual, so a recorded crawl replays to identical items.

A recording is one pair of files per request, named by the request's fingerprint
(method, canonical URL, body): ``<fp>.json`` (URL, status, headers, or the failure) and
``<fp>.body`` (the body, as received after decompression). A request fetched more than
once (a retry) keeps its last answer. Each pair is written whole or not at all, under
hidden names first (a recorder killed meanwhile leaves those, and the next one on that
machine removes them); a pair that cannot be written (a full disk) aborts the crawl, as an
export that cannot be written does.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import math
import os
import re
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from multidict import CIMultiDict

from framework.config.project import MiB
from framework.errors import CrawlAborted, FetchError, UsageError
from framework.fetch.downloader import MAX_SIZE, Fetcher
from framework.fetch.parsers import Parsers
from framework.http import Request, Response, media_type
from framework.http.urls import canonical_url, fingerprint

__all__ = ["Recorder", "Replayer"]

# A record holds a URL, headers or a failure: a megabyte is far more than any needs.
_RECORD_LIMIT = MiB
# O_NONBLOCK: opening a FIFO does not wait for a writer; O_NOCTTY: nor does a terminal
# become fw's. Either is then refused for not being a regular file.
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
# A failure's kind is a key in the stats and opens its log line: a short name, on one line.
_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")
# A record is saved under hidden names first, one per process: workers on several machines
# may record into one shared folder, and a killed one's files are known by host and pid.
_HOST = socket.gethostname()
_PART = re.compile(r"\.[0-9a-f]{16}\.(?:body|json)\.(?P<host>.*)-(?P<pid>[0-9]{1,9})\.part")


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
        await asyncio.to_thread(_sweep, self.folder)
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
            self._keep(
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
        self._keep(
            request,
            {"status": response.status, "headers": list(response.headers.items())},
            response.body,
        )
        return response

    def _keep(self, request: Request, outcome: dict[str, Any], body: bytes) -> None:
        """Record an outcome, or abort the crawl: its page would be missing from a replay.

        Aborting also leaves the request unsettled, so that a resumed crawl fetches it again.
        """
        try:
            self._save(request, outcome, body)
        except OSError as exc:
            held = _records(self.folder)
            count = "" if held is None else f" ({held} response{'' if held == 1 else 's'} recorded)"
            raise CrawlAborted(f"record {self.folder}: {exc.strerror or exc}{count}") from exc

    def _save(self, request: Request, outcome: dict[str, Any], body: bytes) -> None:
        """Write both files under temporary names, then rename them: whole or not at all."""
        key = _key(request)
        # ASCII: a header aiohttp decoded with surrogates (bytes not UTF-8) is escaped, not lost.
        record = json.dumps({"method": request.method, "url": request.url, **outcome})
        final = {suffix: self.folder / f"{key}.{suffix}" for suffix in ("body", "json")}
        owner = f"{_HOST}-{os.getpid()}"
        part = {suffix: self.folder / f".{key}.{suffix}.{owner}.part" for suffix in final}
        try:
            part["body"].write_bytes(body)
            part["json"].write_text(record, encoding="ascii")
            # The old record first: a rename failing after this leaves no record, never an
            # old one with a new body; the .json last, so that a record never lacks its body.
            final["json"].unlink(missing_ok=True)
            part["body"].replace(final["body"])
            part["json"].replace(final["json"])
        except BaseException:
            _clean_up(part, final)
            raise


def _clean_up(part: dict[str, Path], final: dict[str, Path]) -> None:
    """Remove what a save that failed part-way left: its temporary files, a lone body."""
    lone = [] if os.path.lexists(final["json"]) else [final["body"]]
    for path in [*part.values(), *lone]:
        with contextlib.suppress(OSError):  # the error that stopped the save is the one told
            path.unlink(missing_ok=True)


def _sweep(folder: Path) -> None:
    """Remove the temporary files of recorders on this machine killed while saving."""
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            owner = _PART.fullmatch(entry.name)
            if owner and owner["host"] == _HOST and not _alive(int(owner["pid"])):
                with contextlib.suppress(OSError):
                    Path(entry.path).unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _records(folder: Path) -> int | None:
    """Return how many records ``folder`` holds, or None if it cannot be listed."""
    try:
        with os.scandir(folder) as entries:
            return sum(1 for e in entries if e.name.endswith(".json") and e.name[0] != ".")
    except OSError:
        return None


class Replayer:
    """A fetcher that answers every request from a recording and never opens a socket.

    The folder is trusted no more than a server. Only regular files directly in it are
    read, never through a symbolic link; a body is capped at ``max_response_size``; each
    record must be the Recorder's, for this request. A bad entry fails its request as
    ``bad_recording``, naming the file. Files are read in a worker thread, so a slow disk
    never stalls the crawl.
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
        return status, CIMultiDict(headers), self._body(key, request.meta.get(MAX_SIZE))

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
        try:
            return _parse(data, request)
        except _Malformed as exc:
            raise self._bad(f"{key}.json", str(exc)) from None

    def _body(self, key: str, max_size: int | None = None) -> bytes:
        """Return the recorded body; over ``max_response_size`` (or the request's
        ``MAX_SIZE``) it fails as downloaded."""
        limit = self._limit if max_size is None else max_size
        body = self._read(f"{key}.body", limit)
        if body is None:
            raise self._bad(f"{key}.body", "missing, though its .json is there")
        if len(body) > limit:
            name = "max_response_size" if max_size is None else "its max_size"
            raise FetchError(
                "too_large",
                f"{self.folder / key}.body: body larger than {name} ({limit} bytes)",
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


class _Malformed(Exception):
    """A record is not what the Recorder writes; the message says what is wrong."""


def _parse(data: bytes, request: Request) -> tuple[int, list[tuple[str, str]]]:
    """Return the status and headers a record holds, or raise the failure it holds."""
    record = _json_object(data)
    method: str = _get(record, "method", _is_string, "a string")
    url: str = _get(record, "url", _is_string, "a string")
    # A tampered record, or two requests sharing a fingerprint: never another URL's page.
    if method != request.method or canonical_url(url) != canonical_url(request.url):
        raise _Malformed(f"records another request, not {request.method} {request.url}")
    if "error" in record:
        raise _failure(record["error"])
    status: int = _get(record, "status", _is_status, "an integer from 100 to 999")
    headers = _get(record, "headers", _is_pairs, "a list of [name, value] pairs of strings")
    return status, [(name, value) for name, value in headers]


def _json_object(data: bytes) -> dict[str, Any]:
    """Decode a record: a JSON object in UTF-8."""
    try:
        record = json.loads(data.decode("utf-8"), parse_constant=_not_json)
    except RecursionError:
        raise _Malformed("nested too deeply to be a record") from None
    except ValueError as exc:  # undecodable UTF-8 too
        raise _Malformed(f"not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise _Malformed("not a JSON object")
    return record


def _not_json(constant: str) -> NoReturn:
    """Refuse NaN and Infinity: Python's json reads them, but JSON has neither."""
    raise ValueError(f"{constant} is not a JSON number")


def _failure(error: object) -> FetchError:
    """Return the recorded failure ``error`` stands for."""
    if not isinstance(error, dict):
        raise _Malformed("error: not an object")
    try:
        kind: str = _get(error, "kind", _is_kind, "a name like http_503")
        message: str = _get(error, "message", _is_string, "a string")
        retryable: bool = _get(error, "retryable", _is_bool, "true or false")
        retry_after = _get(error, "retry_after", _is_delay, "null or a number of seconds")
    except _Malformed as exc:
        raise _Malformed(f"error.{exc}") from None
    # One line, as the downloader writes it: a line break would forge lines in the log.
    return FetchError(kind, " ".join(message.split()), retryable=retryable, retry_after=retry_after)


def _get(record: dict[str, Any], key: str, valid: Callable[[Any], bool], what: str) -> Any:
    """Return ``record[key]`` if ``valid`` says it is ``what``; else say what is wrong."""
    if key not in record:
        raise _Malformed(f"{key}: missing")
    if not valid(record[key]):
        raise _Malformed(f"{key}: not {what}")
    return record[key]


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_kind(value: Any) -> bool:
    return isinstance(value, str) and _KIND.fullmatch(value) is not None


def _is_status(value: Any) -> bool:
    return type(value) is int and 100 <= value <= 999  # three digits, as HTTP parses them


def _is_pairs(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) for s in pair)
        for pair in value
    )


def _is_delay(value: Any) -> bool:
    return value is None or (type(value) in (int, float) and math.isfinite(value) and value >= 0)


def _unopenable(error: OSError) -> str:
    """Say why an entry could not be opened; ELOOP is what O_NOFOLLOW gives a link."""
    return "a symbolic link" if error.errno == errno.ELOOP else error.strerror or str(error)


def _file_type(mode: int) -> str:
    """Name the kind of file that is not a regular one."""
    kinds = {"d": "a folder", "p": "a FIFO", "c": "a device", "b": "a device", "s": "a socket"}
    return kinds.get(stat.filemode(mode)[0], "an unusual file")
