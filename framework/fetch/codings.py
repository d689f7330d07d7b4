"""Content codings (``gzip``, ``deflate``, ``br``, ``zstd``), undone as a body streams in.

fw undoes them itself, not aiohttp, for three things aiohttp does not do:

- a stream cut short is a failure: aiohttp checks that only of ``deflate``, so a gzip or
  Brotli body cut in half (by a length that matched what was sent, or a close) was taken
  for a whole page;
- every coding of a list is undone (``Content-Encoding: gzip, gzip``), last applied
  first, as browsers do; past one fw does not know (``x-custom``) the body stays as it is,
  as browsers leave it;
- no step makes more than the body may hold: a small bomb is stopped as it inflates.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli  # type: ignore[import-untyped]

__all__ = ["CutShort", "Decoding", "TooLarge", "Undecodable"]

#: What a coding applied under another may add to the length of what it codes.
_SLACK = 65_536

try:  # zstd, where the standard library (3.14) or its backport has it
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the Python and what is installed
    try:
        from backports import zstd  # type: ignore[import-not-found]
    except ImportError:
        zstd = None


class Undecodable(Exception):
    """A body's coding cannot be undone: corrupt, cut short, or one fw cannot read."""


class CutShort(Undecodable):
    """A coding's stream ended before its end: the body was cut short on the way."""


class TooLarge(Exception):
    """The body would be larger than it may be; ``read`` is what was decoded of it."""

    def __init__(self, read: bytes = b"") -> None:
        super().__init__(f"more than fits, past {len(read)} bytes")
        self.read = read


class _Step(Protocol):
    def undo(self, data: bytes, room: int) -> bytes:
        """Return what ``data`` decodes to, at most ``room`` + 1 bytes of it."""

    def finished(self) -> bool:
        """Whether the stream reached its end."""


class Decoding:
    """Undo the codings ``header`` (a ``Content-Encoding``) names, chunk by chunk."""

    def __init__(self, header: str) -> None:
        names = [name.strip().lower() for name in header.split(",")]
        self._steps: list[_Step] = []
        for name in reversed([name for name in names if name and name != "identity"]):
            step = _step(name)
            if step is None:  # a coding no browser undoes either: leave the rest as it is
                break
            self._steps.append(step)
        self._fed = False

    @property
    def active(self) -> bool:
        """Whether there is anything to undo."""
        return bool(self._steps)

    def feed(self, chunk: bytes, room: int) -> bytes:
        """Return what ``chunk`` decodes to, at most ``room`` + 1 bytes of it: past
        ``room``, the body is too large. Raise ``TooLarge`` where a coding applied under
        another already makes far more than ``room``."""
        self._fed = self._fed or bool(chunk)
        last = len(self._steps) - 1
        for n, step in enumerate(self._steps):
            # A coded stream is about as long as what it codes, seldom much longer.
            cap = room if n == last else 2 * room + _SLACK
            try:
                chunk = step.undo(chunk, cap)
            except (zlib.error, brotli.error, _ZstdError) as exc:
                raise Undecodable(f"not valid {_name(step)}: {exc}") from None
            if n != last and len(chunk) > cap:
                raise TooLarge
        return chunk

    def end(self) -> None:
        """Raise ``CutShort`` unless every coding's stream came to its end."""
        if not self._fed:  # no body at all (a HEAD, a 204): nothing was cut
            return
        for step in self._steps:
            if not step.finished():
                raise CutShort(f"its {_name(step)} stream ends before its end")


class _Zlib:
    """gzip, or deflate: zlib's wrapping as the standard says, or raw as some servers send.

    A gzip body may be several members one after the other (files concatenated, a log
    appended to), each undone in turn. What follows the last stream's end and is no
    member (zero padding, stray bytes) is left, as gzip and browsers leave it: the stream
    before it was whole, its CRC checked.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._inflate: zlib._Decompress | None = None
        self._carry = b""  # a gzip member's first byte, its second yet to come
        self._past_end = False  # what is left after the end is no member: all the rest too

    def undo(self, data: bytes, room: int) -> bytes:
        view, self._carry = memoryview(self._carry + data), b""
        pieces: list[bytes] = []
        made = at = 0
        while at < len(view) and made <= room and self._goes_on(view[at:]):
            if self._inflate is None:
                self._inflate = zlib.decompressobj(self._bits(view[at]))
            # A window at a time: zlib copies what it leaves after a member's end, and a
            # hostile body of many tiny members would be copied whole at each one.
            window = view[at : at + _WINDOW]
            piece = self._inflate.decompress(window, room + 1 - made)
            pieces.append(piece)
            made += len(piece)
            at += len(window) - len(self._inflate.unused_data or self._inflate.unconsumed_tail)
        return b"".join(pieces)

    def finished(self) -> bool:
        return self._inflate is not None and self._inflate.eof and not self._carry

    def _goes_on(self, rest: memoryview) -> bool:
        """Whether ``rest`` is more of the body: the stream under way, or after its end
        another gzip member, made ready to start. A member's first byte alone waits for
        the next chunk."""
        if self._past_end or self._inflate is None or not self._inflate.eof:
            return not self._past_end
        gzip = self.name != "deflate"
        if gzip and len(rest) < len(_GZIP_MAGIC) and _GZIP_MAGIC.startswith(rest):
            self._carry = bytes(rest)
            return False
        if not gzip or rest[: len(_GZIP_MAGIC)] != _GZIP_MAGIC:
            self._past_end = True
            return False
        self._inflate = None
        return True

    def _bits(self, first: int) -> int:
        if self.name in ("gzip", "x-gzip"):
            return 16 + zlib.MAX_WBITS
        # RFC 1950's header: its low four bits say "deflate" (8); else a raw stream.
        return zlib.MAX_WBITS if first & 0x0F == 8 else -zlib.MAX_WBITS


#: How much of a chunk is handed to zlib at a time.
_WINDOW = 16_384
#: How every gzip member begins.
_GZIP_MAGIC = b"\x1f\x8b"


class _Brotli:
    name = "br"

    def __init__(self) -> None:
        self._decompressor = brotli.Decompressor()

    def undo(self, data: bytes, room: int) -> bytes:
        return bytes(self._decompressor.process(data, output_buffer_limit=room + 1))

    def finished(self) -> bool:
        return bool(self._decompressor.is_finished())


class _Zstd:
    name = "zstd"

    def __init__(self) -> None:
        self._decompressor = zstd.ZstdDecompressor()

    def undo(self, data: bytes, room: int) -> bytes:
        return bytes(self._decompressor.decompress(data, max_length=room + 1))

    def finished(self) -> bool:
        return bool(self._decompressor.eof)


_ZstdError: type[Exception] = zstd.ZstdError if zstd is not None else zlib.error


def _step(name: str) -> _Step | None:
    """The step that undoes the coding ``name``; None for one no browser knows."""
    if name in ("gzip", "x-gzip", "deflate"):
        return _Zlib(name)
    if name == "br":
        return _Brotli()
    if name == "zstd":
        if zstd is None:
            raise Undecodable("zstd: install backports.zstd to read it")
        return _Zstd()
    return None


def _name(step: _Step) -> str:
    return str(getattr(step, "name", "?"))
