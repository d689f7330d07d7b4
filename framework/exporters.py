"""The base class for exporters: where items go as they are scraped."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
import typing
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO, ClassVar

from framework.output import data_fileno
from framework.paths import descriptor, is_socket, opened, replaced

__all__ = ["Exporter"]

#: Seconds an export to a FIFO waits for a reader before it fails.
_FIFO_PATIENCE = 3.0


class Exporter:
    """Subclass this, set ``format`` and ``extensions``, and write ``write(item)``.

    fw calls ``open()`` before the first item, ``write(item)`` for each item (it may
    return an awaitable, which fw awaits, naming the export in a warning every minute it
    keeps the crawl waiting), and ``close()`` once at the end, also after
    an interrupted crawl. Exporters should write each item completely before
    returning, so that a crash leaves whole records behind and never a torn one.

    An ``OSError`` from ``write`` (a full disk) aborts the crawl, naming the path and
    ``count()``; the exporter should first cut off what the failed write left. So does an
    export whose file was removed or replaced while the crawl wrote it (``in_place``).
    """

    #: The name a project file selects the exporter by (``format: jsonl``).
    format: ClassVar[str] = ""
    #: File extensions ``-o PATH`` chooses this exporter for (``(".jsonl",)``).
    extensions: ClassVar[tuple[str, ...]] = ()
    #: A frozen dataclass describing the exporter's options, or None.
    Options: ClassVar[type[Any] | None] = None
    #: Whether ``path`` may be ``-``, standard output.
    stdout: ClassVar[bool] = True

    def __init__(self, path: str, options: Any = None, *, append: bool = False) -> None:
        #: The absolute path to write, or ``-`` for standard output.
        self.path = path
        self.options = options
        #: Add to what an earlier run wrote instead of starting over (``--retry-failed``).
        self.append = append
        #: The fields items will have, in order, when the crawl knows them before the first
        #: item (the spider declares ``Item``); None otherwise. Set before ``open()``: an
        #: exporter with a header or a table writes every column from the start.
        self.columns: tuple[str, ...] | None = None
        #: The device and inode of the file ``open_binary`` or ``lock`` opened at ``path``.
        self._opened_as: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.format} {self.path}>"

    def open(self) -> None:
        """Prepare to receive items (create the file, write a header)."""

    def write(self, item: Mapping[str, Any]) -> Awaitable[None] | None:
        """Write one item durably enough that a crash right after keeps it whole."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the output (write a footer, flush, close the file)."""

    def close_now(self) -> None:
        """Finish the output at once, instead of ``close()``: the user quits now (a second
        Ctrl-C) and the process exits right after.

        Called from the event loop, never inside a synchronous ``write()`` (an awaitable
        one may be pending); it must not wait on anything (a network, a lock).
        Exports of whole records need nothing, the default; one with a footer writes it.
        """

    def unfinished(self) -> bool:
        """Tell whether an earlier run left this export to finish (a header to complete):
        a crawl found already finished opens and closes such an export, and no other."""
        return False

    def count(self) -> int | None:
        """Return how many items the export holds whole, or None if it cannot say.

        fw reports it when a write fails, so it must not raise.
        """
        return None

    def checkpoint(self) -> Any:
        """Return where the output stands now, as JSON-ready data, or None if it cannot say.

        A persistent frontier stores it with each acknowledged page. After a crash, fw
        opens the exporter with ``append`` set and calls ``rewind`` with the last stored
        checkpoint, so that items of pages not acknowledged are not exported twice. An
        exporter returning None may repeat those items after a crash.
        """
        return None

    def rewind(self, checkpoint: Any) -> None:
        """Drop everything written after ``checkpoint`` (called just after ``open``)."""

    def in_place(self) -> None:
        """Raise ``OSError`` if the file at ``path`` is no longer the one the export opened
        (removed, moved away, replaced): whatever is written goes where nobody looks.

        fw asks after each batch of items and before closing. The default knows the file
        that ``open_binary`` or ``lock`` opened; an exporter opening its own by other means
        checks nothing unless it overrides this.
        """
        file = getattr(self, "_opened_as", None)  # a subclass may skip our __init__
        if file is not None and replaced(self.path, file):
            raise OSError(
                errno.ENOENT,
                "the file was removed or replaced while the crawl wrote it: the items "
                "written to it are not at this path",
                self.path,
            )

    def open_binary(self, mode: str | None = None) -> BinaryIO:
        """Open ``path`` unbuffered, creating its folder; ``-`` gives standard output.

        Unbuffered, so that each ``write`` of one whole record reaches the file at once. The
        mode is ``ab`` when appending, else ``wb``, unless given.
        """
        mode = mode or ("ab" if self.append else "wb")
        if self.path == "-":
            if (fd := data_fileno()) is None:  # started with stdout closed (fw run -o - >&-)
                raise OSError(errno.EBADF, "standard output is closed", "-")
            stdout = open(fd, mode, buffering=0, closefd=False)  # noqa: SIM115
            return typing.cast(BinaryIO, stdout)
        if (fd := _socket_named(self.path)) is not None:  # no open() by name takes a socket
            return typing.cast(BinaryIO, open(fd, mode, buffering=0, closefd=False))
        path = Path(self.path)
        # Truncating waits until the lock is held: never cut another process's export.
        opening = "ab" if mode == "wb" else mode
        try:
            file = _open(path, opening)
        except FileNotFoundError:  # only then create the folder: a file in the way says so
            path.parent.mkdir(parents=True, exist_ok=True)
            file = _open(path, opening)
        _exclusive(file, path)
        self._opened_as = opened(file)
        regular = stat.S_ISREG(os.fstat(file.fileno()).st_mode)
        # Not /dev/null; nor /dev/stdout, opened by the shell as asked: `>>` appends.
        if mode == "wb" and regular and descriptor(path) is None:
            file.truncate(0)
            file.seek(0)  # else ``tell()`` gives the old length until the first write
        return typing.cast(BinaryIO, file)

    def lock(self) -> IO[bytes]:
        """Hold ``path`` for this export alone, as ``open_binary`` does, for an exporter
        that opens it by other means (a database); close the file returned to let go.

        Raises ``OSError`` (``EBUSY``) if another fw process is writing it.
        """
        path = Path(self.path)
        file = _open(path, "ab")  # "a": neither cut nor created past what exists
        _exclusive(file, path)
        self._opened_as = opened(file)
        return file


def _socket_named(path: str) -> int | None:
    """Return the descriptor ``path`` names (``/dev/stdout`` of ``fw run ... | nc``) if it
    is stdout or stderr and a socket, which Linux opens by no name; None for any other
    path. Past those two, a descriptor may be fw's own (its event loop's socket)."""
    if (fd := descriptor(path)) not in (1, 2):
        return None
    if fd == 1 and data_fileno() is None:  # fw's data: its stream flushed first
        return None
    try:
        return fd if stat.S_ISSOCK(os.fstat(fd).st_mode) else None
    except OSError:  # not open: opening the path by name says so
        return None


def _open(path: Path, mode: str) -> IO[bytes]:
    """Open ``path`` unbuffered. A FIFO gets a few seconds for its reader to come (``mkfifo
    p; fw run -o p & cat p`` starts fw first), then fails: a blocking open would hold the
    event loop, and with it every signal handler, until a reader came, if ever."""
    deadline = time.monotonic() + _FIFO_PATIENCE
    while True:
        try:
            return open(path, mode, buffering=0, opener=_without_waiting)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            if is_socket(path):  # no reader will come: it is no FIFO
                raise OSError(
                    errno.ENXIO, "a socket, which no file is opened as", str(path)
                ) from None
            if time.monotonic() >= deadline:
                raise OSError(errno.ENXIO, "a FIFO that nothing reads", str(path)) from None
        time.sleep(0.05)  # opened before the crawl: nothing else waits on the loop yet


def _without_waiting(path: str, flags: int) -> int:
    # 0o666 as open() gives, less the umask: os.open's default 0o777 made exports executable.
    fd = os.open(path, flags | os.O_NONBLOCK, 0o666)
    os.set_blocking(fd, True)  # only the open must not wait: a reader may be slow
    return fd


def _exclusive(file: IO[bytes], path: Path) -> None:
    """Hold a lock on an export while it is written: two workers of a shared crawl on one
    machine must not write (and truncate) the same file."""
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        raise OSError(
            errno.EBUSY,
            "another fw process is writing it; give each worker its own export (-o)",
            str(path),
        ) from None
