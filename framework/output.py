"""Standard output is fw's data: the items of ``-o -``, ``--json``, the listings it prints.

A plugin that prints (at import, in a hook) would put its lines among them, and a script
reading ``fw run -o - | jq`` or ``fw plugins --json`` would break. The ``fw`` command
keeps standard output for fw's data and points ``sys.stdout``, where ``print()`` writes,
at standard error, where the logs go. Called in process (by tests), nothing is moved.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import select
import sys
from collections.abc import Iterator
from typing import NamedTuple, TextIO

from framework.errors import PluginError

__all__ = [
    "data",
    "data_fileno",
    "descriptor_1_to_stderr",
    "drop",
    "drop_data",
    "keep_stdout_for_data",
    "printing_to_data",
    "write_data",
    "write_fully",
]


class _Kept:
    """Standard output, once kept for fw's data: one a process."""

    stream: TextIO | None = None


def keep_stdout_for_data() -> None:
    """Keep standard output for fw's data; let ``print()`` write to stderr, through a
    stream of its own (one that is not ``sys.stderr``: fw tells the two apart)."""
    if _Kept.stream is not None or sys.stdout is None or sys.stderr is None:
        return
    try:
        fd = os.dup(sys.stderr.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):  # no descriptor: leave it be
        return
    printed = os.fdopen(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    _Kept.stream, sys.stdout = sys.stdout, printed


@contextlib.contextmanager
def descriptor_1_to_stderr() -> Iterator[None]:
    """While plugins load, point fw's data descriptor at stderr: what an import writes
    there itself (``os.write(1, ...)``, C's ``printf``, a program it starts) is no data of
    fw's. Nothing of fw's is written meanwhile. In process, nothing was kept: nothing moves.

    A thread the import starts that writes later writes to stdout again, as does a program
    a plugin starts during the crawl."""
    saved = _pointed_at_stderr()
    try:
        yield
    finally:
        if saved is not None:
            _restore(saved)


class _Saved(NamedTuple):
    """The data descriptor, the copy of it kept while plugins load, and what it was."""

    fd: int
    copy: int
    was: tuple[int, int]


def _pointed_at_stderr() -> _Saved | None:
    """Point the kept data's descriptor at stderr (descriptor 2: a plugin may have put
    anything in ``sys.stderr``); return what it was."""
    stream = _Kept.stream
    if stream is None:
        return None
    try:
        stream.flush()
        fd = stream.fileno()
        copy = os.dup(fd)
    except (OSError, ValueError):  # its reader left already: nothing to keep apart
        return None
    try:
        found = os.fstat(copy)
        os.dup2(2, fd)
    except OSError:  # no stderr: the import's writes go where they would have
        os.close(copy)
        return None
    return _Saved(fd, copy, (found.st_dev, found.st_ino))


def _restore(saved: _Saved) -> None:
    """Give the data descriptor back what the copy holds, once what the imports left in
    buffers (Python's own standard output, C's) has gone to stderr."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.__stdout__.flush()  # type: ignore[union-attr]
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)
    try:
        found = os.fstat(saved.copy)
    except OSError:
        found = None
    # An import closed descriptors it did not own (os.closerange), and may have opened a
    # file of its own in the copy's place: fw's data would go into that file.
    if found is None or (found.st_dev, found.st_ino) != saved.was:
        raise PluginError(
            "standard output was lost while the plugins loaded: an import closed the "
            f"descriptor ({saved.copy}) fw kept it in"
        )
    os.dup2(saved.copy, saved.fd)
    os.close(saved.copy)


def write_fully(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, waiting for room while it is full: one whoever
    opened it left non-blocking (a shell's socket, a parent's pipe) takes a write in part,
    or none (EAGAIN), where a blocking one waits."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


def write_data(text: str) -> None:
    """Write ``text`` as fw's data (a listing, ``--json``, help), all of it, as
    ``write_fully`` does; through ``print`` where the stream has no descriptor (in process).
    None kept (stdout closed): to ``sys.stdout``, where ``print()`` writes."""
    stream = data()
    try:
        if stream is None:
            raise io.UnsupportedOperation
        stream.flush()
        fd = stream.fileno()
    except (io.UnsupportedOperation, AttributeError, ValueError):
        print(text, end="", file=stream, flush=True)
        return
    write_fully(fd, text.encode(stream.encoding or "utf-8", stream.errors or "strict"))


def data() -> TextIO | None:
    """Return where fw writes its data: the kept standard output, else ``sys.stdout``
    (None if fw was started without one)."""
    return _Kept.stream if _Kept.stream is not None else sys.stdout


def data_fileno() -> int | None:
    """Return the descriptor of fw's data (``-o -`` writes to it), or None if closed."""
    stream = data()
    if stream is None:  # started with stdout closed (fw run -o - >&-)
        return None
    stream.flush()
    return stream.fileno()


@contextlib.contextmanager
def printing_to_data() -> Iterator[None]:
    """Let ``print()`` write to standard output again, for a session the user reads
    there (``fw shell``)."""
    before, sys.stdout = sys.stdout, data()
    try:
        yield
    finally:
        sys.stdout = before


def drop_data() -> None:
    """Point fw's data at /dev/null: its reader left (``fw plugins | head -1``), and the
    last flush at exit must not find a broken pipe."""
    drop(data())


def drop(stream: TextIO | None) -> None:
    """Point ``stream``'s descriptor at /dev/null: its reader left, and later writes (a
    flush at exit) must not find a broken pipe."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())  # type: ignore[union-attr]
        finally:
            os.close(null)
