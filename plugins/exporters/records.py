"""Export files that grow by whole records: a write that fails part-way is cut back off."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from framework import write_fully

__all__ = ["RecordCounter", "RecordFile", "WholeEnd", "chunks", "last_line_break"]

log = logging.getLogger("fw.exporters")

#: Count the records of the file at a path, from a byte offset where one starts to its end.
RecordCounter = Callable[[str, int], int]
#: Return where the last whole record of the file at a path ends (0: none is whole).
WholeEnd = Callable[[str], int]

_CHUNK = 1 << 20


class RecordFile:
    """Append records to an export file, each whole or not at all, and count them.

    A write that fails part-way (a full disk, a file size limit, an I/O error) is cut back
    off before its error goes on, so the file always ends with a whole record. Standard
    output and other streams cannot be cut back or rewound.
    """

    def __init__(
        self, file: BinaryIO, path: str, counter: RecordCounter, whole_end: WholeEnd
    ) -> None:
        self.file, self.path, self._counter, self._whole_end = file, path, counter, whole_end
        regular = stat.S_ISREG(os.fstat(file.fileno()).st_mode)
        #: Whether the file can be rewound: a regular file of its own, not stdout or a device.
        self.seekable = path != "-" and regular
        # A torn record can be cut off stdout too when it is a file (`-o - > FILE`); what a
        # pipe or a terminal was given has reached its reader already.
        self._cuttable = regular
        self._end = file.tell() if self.seekable else 0
        #: Records held; None until counted, for a file that held some when opened.
        self._count: int | None = 0 if self._end == 0 else None
        #: The error of the first write that failed, if one did.
        self.failed: OSError | None = None

    def append(self, data: bytes, records: int = 1) -> None:
        """Write ``data``, holding ``records`` whole records, at the end of the file."""
        try:
            self._write_all(data)
        except OSError as exc:
            self.failed = self.failed or exc
            raise
        self._end += len(data)
        if self._count is not None:
            self._count += records

    def offset(self) -> int | None:
        """Return the file's length, where the next record starts (None for a stream)."""
        return self._end if self.seekable else None

    def count(self) -> int | None:
        """Return how many records the file holds, or None if it cannot be read to count."""
        if self._count is None:
            try:
                self._count = self._counter(self.path, 0)
            except OSError:
                return None
        return self._count

    def rewind(self, offset: int | None, count: int | None = None) -> None:
        """Cut the file back to ``offset``; ``count`` is how many records that leaves, if known."""
        if offset is None or not self.seekable:
            return
        size = self.file.seek(0, os.SEEK_END)
        if size < offset:  # never pad with zeros: someone cut the file, say so
            log.warning(
                "%s is shorter than when its last items were acknowledged (%d < %d "
                "bytes): items may be missing from it",
                self.path,
                size,
                offset,
            )
            self.cut_torn()
            return
        if count is None and self._count is not None:
            count = self._count - self._counter(self.path, offset)
        self._truncate(offset)
        self._count = count

    def cut_torn(self) -> None:
        """Cut the file back to the end of its last whole record: it was cut short behind
        the export's back (a lost tail, a truncated copy), maybe inside a record, and what
        comes next must not be glued onto a piece of one."""
        end = self._whole_end(self.path)
        if end < self.file.seek(0, os.SEEK_END):
            log.warning("%s: its torn last record is cut off (%d bytes kept)", self.path, end)
        self._truncate(end)
        self._count = None

    def close(self) -> None:
        """Close the file."""
        self.file.close()

    def _write_all(self, data: bytes) -> None:
        """Write all of ``data`` (``write_fully``); cut off what a write that failed part-way
        left, its own error being the one reported.

        The record starts where the file stands before it: stdout's offset may have moved
        with other writers of the same file (``2>&1``), so ``_end`` may not say where."""
        start = self.file.tell() if self._cuttable else 0
        try:
            write_fully(self.file.fileno(), data)
        except OSError:
            if self._cuttable:
                self._cut_to(start)
            raise

    def _cut_to(self, start: int) -> None:
        try:
            self._truncate(start)
        except OSError as exc:
            log.error("%s: cannot cut a torn record off: %s", self.path, exc.strerror or exc)

    def _truncate(self, offset: int) -> None:
        self.file.truncate(offset)
        self.file.seek(offset)
        self._end = offset


def last_line_break(path: str) -> int:
    """Return the offset of the file's last line break, or -1 if it has none."""
    found, offset = -1, 0
    for chunk in chunks(path):
        if (at := chunk.rfind(b"\n")) >= 0:
            found = offset + at
        offset += len(chunk)
    return found


def chunks(path: str, start: int = 0) -> Iterator[bytes]:
    """Yield a file's bytes from ``start`` to its end, a megabyte at a time.

    A chunk never ends inside a UTF-8 character, nor between the CR and LF of a line break,
    so that what a reader looks for (a delimiter, a line break) is never cut in two.
    """
    with Path(path).open("rb") as file:
        file.seek(start)
        while chunk := file.read(_CHUNK):
            chunk += file.read(_missing(chunk))
            yield chunk + file.read(1) if chunk.endswith(b"\r") else chunk


def _missing(chunk: bytes) -> int:
    """Return how many bytes the UTF-8 character at the end of ``chunk`` lacks."""
    for back in range(1, min(len(chunk), 4) + 1):
        byte = chunk[-back]
        if byte & 0xC0 != 0x80:  # not a continuation: the character's first byte
            length = 1 if byte < 0xC0 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return max(length - back, 0)
    return 0
