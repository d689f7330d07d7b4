"""Recordings: a crawl's answers in a folder, and the fetchers that write and read them.

``Recording`` is the folder and its format (public as ``framework.Recording``): what
``fw run --record DIR`` writes, what ``fw run --replay DIR`` reads, and what the bundled
``cache`` plugin reads and writes — so a recording is a cache and a cache can be replayed.
``Recorder`` wraps the downloader and saves every answer (and every failure to get one) as
it arrives; ``Replayer`` takes the downloader's place and answers each request from the
folder, never opening a socket: a request that was not recorded fails as ``not_recorded``,
naming the URL. Middlewares, spider and exporters run as usual, so a recorded crawl replays
to identical items.

The format: one pair of files per request, named by the request's fingerprint (method,
canonical URL, body): ``<fp>.json`` (method, URL, status, headers and the body's size and
CRC-32, or the failure) and ``<fp>.body`` (the body, as received after decompression). A
body that does not match its record (cut short by a crash or a partial copy) is a bad
entry; records written before they held a size are read unchecked. A request saved again
(a retry) keeps its last answer; the ``.json``'s modification time is when it was saved.
Each pair is written whole or not at all, under hidden names first (a writer killed
meanwhile leaves those, and the next one on that machine removes them); a pair that cannot
be written (a full disk) aborts a recording crawl, as an export that cannot be written does.
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
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from multidict import CIMultiDict

from framework.config.project import MiB
from framework.errors import CrawlAborted, FetchError, UsageError
from framework.fetch.parsers import Parsers
from framework.http import Request, Response, media_type
from framework.http.urls import (
    SignInPassword,
    canonical_url,
    fingerprint,
    older_fingerprint,
    redact_all,
    shown_url,
    sign_in_passwords,
)
from framework.paths import open_new

if TYPE_CHECKING:  # the downloader imports aiohttp, which a plugin importing fw need not
    from framework.fetch.downloader import Fetcher

__all__ = ["Entry", "Recorded", "Recorder", "Recording", "Replayer"]

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
_ENTRY = re.compile(r"[0-9a-f]{16}\.json")
#: What a record holds in place of a sign-in password (see ``_hidden``), and in place of
#: the text's own "{fw:" (``lit``).
_MARK_START = "{fw:"
_MARK = re.compile(r"\{fw:(?:lit\}|sign-in ([0-9]+):([lxXbBr+]+|R)\})")
#: The headers that may repeat a request's query: URLs and cookies.
_CARRIERS = frozenset({"location", "content-location", "set-cookie", "refresh", "link"})


@dataclass(frozen=True)
class Recorded:
    """One request's recorded answer: a response, or the failure to get one."""

    status: int
    headers: CIMultiDict[str]
    body: bytes
    #: When it was saved, in seconds since the epoch.
    saved: float
    #: The failure recorded instead of a response (then status is 0 and the body empty).
    error: FetchError | None = None

    def response(self, request: Request) -> Response:
        """Return the recorded response to ``request``, marked as not from the network."""
        return Response(request.url, self.status, self.headers, self.body, request, cached=True)


class Entry(NamedTuple):
    """A record in a recording's folder, as ``Recording.entries`` lists it."""

    #: The request's fingerprint, which names the pair of files.
    key: str
    #: The bytes both files take.
    size: int
    #: When it was saved, in seconds since the epoch.
    saved: float


@dataclass
class Recording:
    """A folder of recorded answers, one pair of files per request.

    Use it as an async context manager (or ``open``/``close``). The folder is trusted no
    more than a server: only regular files directly in it are read, never through a
    symbolic link; a body is read up to ``max_body`` bytes and a record up to 1 MiB; a record
    must be what ``save`` writes, for this request, with its body. A bad entry raises
    ``FetchError("bad_recording", "FILE: what is wrong")``. Files are read and written in
    a worker thread, so a slow disk never stalls the crawl.
    """

    folder: Path
    #: The largest body read; a larger one raises ``FetchError("too_large", ...)``.
    max_body: int = 16 * MiB
    #: Make the folder if it is missing, and remove what this machine's killed writers left.
    create: bool = False
    _fd: int | None = field(default=None, init=False, repr=False)

    async def __aenter__(self) -> Recording:
        await self.open()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the folder (making it with ``create``); raise ``OSError`` if it cannot be."""
        self._fd = await asyncio.to_thread(self._open)

    def _open(self) -> int:
        if os.path.lexists(self.folder) and not self.folder.is_dir():  # mkdir says "exists"
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(self.folder))
        if self.create:
            self.folder.mkdir(parents=True, exist_ok=True)
            _sweep(self.folder)
        # Entries are opened relative to the folder's descriptor: they stay in that folder.
        return os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)

    async def close(self) -> None:
        """Let go of the folder."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def key(request: Request) -> str:
        """Return the name of ``request``'s pair of files, less the suffix: its fingerprint."""
        return f"{fingerprint(request):016x}"

    async def load(self, request: Request) -> Recorded | None:
        """Return what was recorded for ``request``, or None if nothing was."""
        return await asyncio.to_thread(self._load, request)

    async def save(self, request: Request, response: Response) -> int:
        """Record ``response`` as the answer to ``request``; return the bytes written.

        Raises ``OSError`` if it cannot be written whole (nothing of it is left then).
        """
        body = response.body
        outcome = {
            "status": response.status,
            "headers": _hidden(list(response.headers.items()), request),
            "body": {"size": len(body), "crc32": zlib.crc32(body)},
        }
        return await asyncio.to_thread(self._save, request, outcome, body)

    async def save_failure(self, request: Request, error: FetchError) -> int:
        """Record that ``request`` failed with ``error``; return the bytes written.

        Raises ``OSError`` if it cannot be written whole (nothing of it is left then).
        """
        failure = {
            "kind": error.kind,
            "message": str(error),
            "retryable": error.retryable,
            "retry_after": error.retry_after,
        }
        return await asyncio.to_thread(self._save, request, {"error": failure}, b"")

    async def entries(self) -> list[Entry]:
        """List the records the folder holds, with their size and when each was saved."""
        return await asyncio.to_thread(self._entries)

    async def remove(self, key: str) -> None:
        """Remove the record ``key`` (its ``.json`` first: a record never lacks its body)."""
        await asyncio.to_thread(self._remove, key)

    def count(self) -> int | None:
        """Return how many records the folder holds, or None if it cannot be listed."""
        try:
            with os.scandir(self.folder) as entries:
                return sum(1 for e in entries if e.name.endswith(".json") and e.name[0] != ".")
        except OSError:
            return None

    # -------------------------------------------------------------------------------------
    # Writing (in a worker thread)
    # -------------------------------------------------------------------------------------

    def _save(self, request: Request, outcome: dict[str, Any], body: bytes) -> int:
        """Write both files under temporary names, then rename them: whole or not at all."""
        key = self.key(request)
        # ASCII: a header aiohttp decoded with surrogates (bytes not UTF-8) is escaped, not lost.
        # The URL is for people to read (the key finds the record): no password in it.
        record = json.dumps({"method": request.method, "url": shown_url(request), **outcome})
        final = {suffix: self.folder / f"{key}.{suffix}" for suffix in ("body", "json")}
        owner = f"{_HOST}-{os.getpid()}"
        part = {suffix: self.folder / f".{key}.{suffix}.{owner}.part" for suffix in final}
        try:
            for suffix, data in (("body", body), ("json", record.encode("ascii"))):
                with open_new(part[suffix], 0o600) as file:  # Set-Cookie: a session's token
                    file.write(data)
            # The old record first: a rename failing after this leaves no record, never an
            # old one with a new body; the .json last, so that a record never lacks its body.
            final["json"].unlink(missing_ok=True)
            part["body"].replace(final["body"])
            part["json"].replace(final["json"])
        except BaseException:
            _clean_up(part, final)
            raise
        return len(body) + len(record)

    def _entries(self) -> list[Entry]:
        found = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if not _ENTRY.fullmatch(entry.name):
                    continue
                key = entry.name.removesuffix(".json")
                with contextlib.suppress(OSError):  # removed meanwhile, or not a file
                    record = entry.stat(follow_symlinks=False)
                    body = (self.folder / f"{key}.body").lstat()
                    found.append(Entry(key, record.st_size + body.st_size, record.st_mtime))
        return found

    def _remove(self, key: str) -> None:
        for suffix in ("json", "body"):
            (self.folder / f"{key}.{suffix}").unlink(missing_ok=True)

    # -------------------------------------------------------------------------------------
    # Reading (in a worker thread)
    # -------------------------------------------------------------------------------------

    def _load(self, request: Request) -> Recorded | None:
        """Read and check ``request``'s entry (under the key an older fw gave it, if not
        under its own: see ``older_fingerprint``)."""
        key = self.key(request)
        read = self._read(f"{key}.json", _RECORD_LIMIT)
        if read is None and (older := older_fingerprint(request)) is not None:
            key = f"{older:016x}"
            read = self._read(f"{key}.json", _RECORD_LIMIT)
        if read is None:
            return None
        data, saved = read
        if len(data) > _RECORD_LIMIT:
            raise self._bad(f"{key}.json", f"larger than {_RECORD_LIMIT // MiB} MiB")
        try:
            status, headers, error, made = _parse(data, request)
        except _Malformed as exc:
            raise self._bad(f"{key}.json", str(exc)) from None
        if error is not None:
            return Recorded(0, CIMultiDict(), b"", saved, error)
        body = self._body(key, request.meta.get("max_size"))  # the downloader's MAX_SIZE
        if made is not None and (len(body), zlib.crc32(body)) != made:
            raise self._bad(f"{key}.body", _unlike(body, made))
        return Recorded(status, CIMultiDict(headers), body, saved)

    def _body(self, key: str, max_size: int | None = None) -> bytes:
        """Return the recorded body; over ``max_body`` (or the request's own ``max_size``)
        it fails as a download would."""
        limit = self.max_body if max_size is None else max_size
        read = self._read(f"{key}.body", limit)
        if read is None:
            raise self._bad(f"{key}.body", "missing, though its .json is there")
        body = read[0]
        if len(body) > limit:
            name = "max_response_size" if max_size is None else "its max_size"
            raise FetchError(
                "too_large",
                f"{self.folder / key}.body: body larger than {name} ({limit} bytes)",
            )
        return body

    def _read(self, name: str, limit: int) -> tuple[bytes, float] | None:
        """Return at most ``limit + 1`` bytes of the regular file ``name`` and when it was
        last written; None if it is absent.

        Nothing else is read: a symbolic link may lead out of the folder, a FIFO waits
        for a writer forever, a device may never end.
        """
        assert self._fd is not None, "open the recording first"
        try:
            fd = os.open(name, _OPEN, dir_fd=self._fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._bad(name, _unopenable(exc)) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise self._bad(name, f"not a regular file ({_file_type(info.st_mode)})")
            with open(fd, "rb", closefd=False) as file:
                return file.read(limit + 1), info.st_mtime
        except OSError as exc:
            raise self._bad(name, exc.strerror or str(exc)) from None
        finally:
            os.close(fd)

    def _bad(self, name: str, what: str) -> FetchError:
        """Return the failure of a bad entry, naming its file."""
        return FetchError("bad_recording", f"{self.folder / name}: {what}")


def _clean_up(part: dict[str, Path], final: dict[str, Path]) -> None:
    """Remove what a save that failed part-way left: its temporary files, a lone body."""
    lone = [] if os.path.lexists(final["json"]) else [final["body"]]
    for path in [*part.values(), *lone]:
        with contextlib.suppress(OSError):  # the error that stopped the save is the one told
            path.unlink(missing_ok=True)


def _sweep(folder: Path) -> None:
    """Remove the temporary files of writers on this machine killed while saving."""
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


# -------------------------------------------------------------------------------------------
# The fetchers of --record and --replay
# -------------------------------------------------------------------------------------------


class Recorder:
    """A fetcher that fetches with ``inner`` and saves every outcome under ``folder``."""

    def __init__(self, inner: Fetcher, folder: Path) -> None:
        self._inner, self.folder = inner, folder
        self._recording = Recording(folder, create=True)
        # One save at a time, as they were when written on the loop: a full disk's error
        # counts the records that are there, none half-way.
        self._saving = asyncio.Lock()

    async def __aenter__(self) -> Recorder:
        try:
            await self._recording.open()
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
        try:
            await self._inner.__aexit__(kind, error, traceback)
        finally:
            await self._recording.close()

    async def fetch(self, request: Request) -> Response:
        """Fetch ``request`` and record the response or the failure."""
        try:
            response = await self._inner.fetch(request)
        except FetchError as exc:
            await self._keep(self._recording.save_failure(request, exc))
            raise
        await self._keep(self._recording.save(request, response))
        return response

    async def _keep(self, saving: Awaitable[int]) -> None:
        """Record an outcome, or abort the crawl: its page would be missing from a replay.

        Aborting also leaves the request unsettled, so that a resumed crawl fetches it again.
        """
        async with self._saving:
            try:
                await saving
            except OSError as exc:
                held = self._recording.count()
                plural = "" if held == 1 else "s"
                count = "" if held is None else f" ({held} response{plural} recorded)"
                raise CrawlAborted(f"record {self.folder}: {exc.strerror or exc}{count}") from exc


class Replayer:
    """A fetcher that answers every request from a recording and never opens a socket.

    A bad entry fails its request as ``bad_recording``, naming the file; a body over
    ``max_response_size`` fails as ``too_large``.
    """

    def __init__(self, folder: Path, parsers: Parsers, max_response_size: int) -> None:
        self.folder, self._parsers = folder, parsers
        self._recording = Recording(folder, max_body=max_response_size)

    async def __aenter__(self) -> Replayer:
        try:
            await self._recording.open()
        except FileNotFoundError:
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
        await self._recording.close()

    async def fetch(self, request: Request) -> Response:
        """Return the recorded answer, or raise the recorded failure."""
        recorded = await self._recording.load(request)
        if recorded is None:
            raise FetchError(
                "not_recorded",
                f"{request.method} {shown_url(request)} is not in the recording {self.folder}",
            )
        if recorded.error is not None:
            raise recorded.error
        response = recorded.response(request)
        response.parse_with(self._parsers.for_type(media_type(recorded.headers)))
        return response


# -------------------------------------------------------------------------------------------
# Checking a record
# -------------------------------------------------------------------------------------------


class _Malformed(Exception):
    """A record is not what ``Recording.save`` writes; the message says what is wrong."""


class _Parsed(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    error: FetchError | None
    #: The body's size and CRC-32 as saved; None in a record from before they were kept.
    body: tuple[int, int] | None = None


def _same(url: str) -> str:
    return redact_all(canonical_url(url))


def _echo(secret: SignInPassword) -> str | None:
    """How a header repeating the password's bytes raw reads once aiohttp decoded it
    (UTF-8, any other byte kept as a surrogate escape), if matching it character by
    character would miss it: bytes not UTF-8 as a whole may hold UTF-8 sequences."""
    echo = secret.raw.decode("utf-8", "surrogateescape")
    return None if echo == secret.text else echo


def _hidden(headers: list[tuple[str, str]], request: Request) -> list[tuple[str, str]]:
    """Return ``headers`` as a record keeps them: a sign-in's password repeated in those
    that carry a URL or a cookie (a redirect's ``Location``, a ``Set-Cookie``), however
    percent-encoded, replaced by a mark that says how it was spelled, not what it was."""
    secrets = sign_in_passwords(request)
    if not secrets:
        return headers
    masker = _Masker(secrets)
    return [(name, masker.hide(value) if _carries(name) else value) for name, value in headers]


def _restored(headers: list[tuple[str, str]], request: Request) -> list[tuple[str, str]]:
    """Put the sign-in's passwords back where ``_hidden`` marked them, spelled as they
    were: the replaying run sends the same form, so a redirect leads where it led."""
    secrets = sign_in_passwords(request)
    if not secrets:
        return headers
    masker = _Masker(secrets)
    return [(name, masker.show(value) if _carries(name) else value) for name, value in headers]


def _carries(header: str) -> bool:
    """Whether a header may repeat a request's query: one holding a URL, or a cookie."""
    return header.lower() in _CARRIERS


class _Masker:
    """Mark the passwords ``secrets`` in a header's text, in one pass over it (a mark never
    holds a password), and put them back; a ``{fw:`` already in the text is escaped."""

    def __init__(self, secrets: list[SignInPassword]) -> None:
        self._secrets = secrets
        self._groups: list[tuple[int, int]] = []  # (secret, its group), longest first
        parts, group = [re.escape(_MARK_START)], 1
        for n in sorted(range(len(secrets)), key=lambda n: -len(secrets[n].text)):
            text, echo = secrets[n].text, _echo(secrets[n])
            each = "".join(f"({_either(c)})" for c in text)
            # The raw echo last, in a group of its own (``R``): the characters' group first.
            parts.append(f"({each}|({re.escape(echo)}))" if echo else f"({each}|(?!)())")
            self._groups.append((n, group))
            group += 2 + len(text)
        self._pattern = re.compile("|".join(parts))

    def hide(self, text: str) -> str:
        return self._pattern.sub(self._mark, text)

    def show(self, text: str) -> str:
        return _MARK.sub(self._unmark, text)

    def _mark(self, found: re.Match[str]) -> str:
        for n, group in self._groups:
            if found[group] is not None:
                text = self._secrets[n].text
                if found[group + 1 + len(text)] is not None:
                    return f"{_MARK_START}sign-in {n}:R}}"
                spelled = [found[group + 1 + i] for i in range(len(text))]
                shape = "".join(map(_shape, text, spelled))
                return f"{_MARK_START}sign-in {n}:{shape}}}"
        return f"{_MARK_START}lit}}"  # the text's own "{fw:"

    def _unmark(self, found: re.Match[str]) -> str:
        if found[1] is None:
            return _MARK_START
        n, shape = int(found[1]), found[2]
        if n >= len(self._secrets):
            return found[0]
        secret = self._secrets[n]
        return _echo(secret) or secret.text if shape == "R" else _spelled(secret.text, shape)


def _either(char: str) -> str:
    """Match ``char`` as itself or percent-encoded (``+`` for a space); a character that
    is one byte in Latin-1 also as that byte, percent-encoded or raw (a header that is not
    UTF-8 keeps it as a surrogate escape): a form's charset need not be UTF-8."""
    encoded = "".join(f"%{byte:02x}" for byte in char.encode())
    ways = [re.escape(char), "(?i:" + re.escape(encoded) + ")"]
    if 0x80 <= ord(char) <= 0xFF:
        ways += [f"(?i:%{ord(char):02x})", re.escape(_raw_byte(char))]
    return "|".join([*ways, r"\+"] if char == " " else ways)


def _shape(char: str, spelled: str) -> str:
    """Say how ``char`` was spelled: ``l`` as itself, ``+``, ``x``/``X`` percent-encoded
    in UTF-8, ``b``/``B`` percent-encoded as one byte, ``r`` as a raw byte."""
    if spelled == char:
        return "l"
    if spelled == "+":
        return "+"
    if spelled == _raw_byte(char):
        return "r"
    lower = spelled == spelled.lower()
    if len(spelled) == 3 and len(char.encode()) > 1:  # one byte where UTF-8 has more
        return "b" if lower else "B"
    return "x" if lower else "X"


def _spelled(secret: str, shape: str) -> str:
    """Spell ``secret`` as ``shape`` says (see ``_shape``)."""
    return "".join(map(_spelling, secret, shape))


def _spelling(char: str, how: str) -> str:
    """Spell one character of a secret the way ``how`` (a letter of ``_shape``) says."""
    if how in "l+r":
        return {"l": char, "+": "+", "r": _raw_byte(char)}[how]
    if how in "bB" and ord(char) <= 0xFF:
        encoded = f"%{ord(char):02X}"
    else:
        encoded = "".join(f"%{byte:02X}" for byte in char.encode())
    return encoded.lower() if how in "xb" else encoded


def _raw_byte(char: str) -> str:
    """Return how aiohttp keeps the byte ``char`` (Latin-1) raw in a header: escaped."""
    return chr(0xDC00 + ord(char)) if 0x80 <= ord(char) <= 0xFF else char


def _parse(data: bytes, request: Request) -> _Parsed:
    """Return what a record holds: a status and headers, or a failure."""
    record = _json_object(data)
    method: str = _get(record, "method", _is_string, "a string")
    url: str = _get(record, "url", _is_string, "a string")
    # A tampered record, or two requests sharing a fingerprint: never another URL's page.
    # A record made before sign-in queries were left out keeps the query: still this one's.
    if method != request.method or _same(url) not in {
        _same(shown_url(request)),
        _same(request.url),
    }:
        raise _Malformed(f"records another request, not {request.method} {shown_url(request)}")
    if "error" in record:
        return _Parsed(0, [], _failure(record["error"]))
    status: int = _get(record, "status", _is_status, "an integer from 100 to 999")
    headers = _get(record, "headers", _is_pairs, "a list of [name, value] pairs of strings")
    body = _made(record["body"]) if "body" in record else None
    return _Parsed(
        status, _restored([(name, value) for name, value in headers], request), None, body
    )


def _made(body: object) -> tuple[int, int]:
    """Return the size and CRC-32 a record says its body has."""
    if not isinstance(body, dict):
        raise _Malformed("body: not an object")
    try:
        size: int = _get(body, "size", _is_count, "a number of bytes")
        crc: int = _get(body, "crc32", _is_crc, "a CRC-32")
    except _Malformed as exc:
        raise _Malformed(f"body.{exc}") from None
    return size, crc


def _unlike(body: bytes, made: tuple[int, int]) -> str:
    """Say how a body differs from what its record says was saved."""
    if len(body) != made[0]:
        return f"cut short or damaged: {len(body):,} bytes where {made[0]:,} were saved"
    return "damaged: its bytes are not those saved (their CRC-32 differs)"


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


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _is_crc(value: Any) -> bool:
    return type(value) is int and 0 <= value < 1 << 32


def _is_delay(value: Any) -> bool:
    return value is None or (type(value) in (int, float) and math.isfinite(value) and value >= 0)


def _unopenable(error: OSError) -> str:
    """Say why an entry could not be opened; ELOOP is what O_NOFOLLOW gives a link."""
    return "a symbolic link" if error.errno == errno.ELOOP else error.strerror or str(error)


def _file_type(mode: int) -> str:
    """Name the kind of file that is not a regular one."""
    kinds = {"d": "a folder", "p": "a FIFO", "c": "a device", "b": "a device", "s": "a socket"}
    return kinds.get(stat.filemode(mode)[0], "an unusual file")
