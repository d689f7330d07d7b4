"""Standard output is fw's data: the items of ``-o -``, ``--json``, the listings it prints.

A plugin that prints (at import, in a hook) would put its lines among them, and a script
reading ``fw run -o - | jq`` or ``fw plugins --json`` would break. So would a program a
plugin runs, or a C library it calls, writing to descriptor 1 itself. The ``fw`` command
keeps standard output for fw's data on a descriptor of its own, which no child process
inherits, and points descriptor 1 and ``sys.stdout``, where ``print()`` writes, at
standard error, where the logs go. Called in process (by tests), nothing is moved.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import TextIO

__all__ = [
    "data",
    "data_fileno",
    "drop_data",
    "keep_stdout_for_data",
    "own_descriptor",
    "printing_to_data",
]


class _Kept:
    """Standard output, once kept for fw's data: one a process."""

    stream: TextIO | None = None
    descriptor = 1  # what standard output was, and now writes to stderr


def keep_stdout_for_data() -> None:
    """Keep standard output for fw's data; let ``print()`` and descriptor 1 write to stderr,
    ``print()`` through a stream of its own (one that is not ``sys.stderr``: fw tells the
    two apart)."""
    if _Kept.stream is not None or sys.stderr is None:
        return
    if sys.stdout is None:  # started without one (>&-): the next file opened must not be 1
        _fill(1)
        return
    try:
        sys.stdout.flush()
        fd = sys.stdout.fileno()
        kept = _kept(sys.stdout, os.dup(fd))  # a dup is not inherited by child processes
        printed = os.fdopen(
            os.dup(sys.stderr.fileno()),
            "w",
            buffering=1,
            encoding="utf-8",
            errors="backslashreplace",
        )
        os.dup2(sys.stderr.fileno(), fd)
    except (OSError, ValueError, io.UnsupportedOperation):  # no descriptor: leave it be
        return
    _Kept.stream, _Kept.descriptor, sys.stdout = kept, fd, printed


def _kept(stdout: TextIO, fd: int) -> TextIO:
    """Return a stream on ``fd`` that writes as standard output did."""
    stream = os.fdopen(fd, "w", encoding=stdout.encoding, errors=stdout.errors)
    stream.reconfigure(line_buffering=getattr(stdout, "line_buffering", False))
    return stream


def _fill(fd: int) -> None:
    """Hold descriptor ``fd`` open on /dev/null."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)


def own_descriptor(fd: int) -> int:
    """Return the descriptor fw writes for ``fd`` (``/dev/stdout`` names 1): its data's
    own for standard output once kept, else ``fd``."""
    if _Kept.stream is not None and fd == _Kept.descriptor:
        return _Kept.stream.fileno()
    return fd


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
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), data().fileno())  # type: ignore[union-attr]
