"""A JSON array: one document, for tools that cannot read JSON lines."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from framework import Exporter

from .records import RecordFile, chunks, last_line_break
from .values import dumps, encode, named

__all__ = ["JsonArrayExporter"]

log = logging.getLogger("fw.exporters.json")


class JsonArrayExporter(Exporter):
    """Write ``[`` first, each item on its own line as it arrives, and ``]`` at the end.

    A crawl killed half-way (``kill -9``, a crash) leaves whole items and no closing
    bracket; appending ``]`` makes the file valid again. A second Ctrl-C closes it.
    """

    format: ClassVar[str] = "json"
    extensions: ClassVar[tuple[str, ...]] = (".json",)

    def open(self) -> None:
        """Create the file and open the array, or reopen an earlier run's array."""
        if self.append and Path(self.path).is_file() and Path(self.path).stat().st_size:
            file = self.open_binary("r+b")
            self._separator = _reopen(file)
            self._file = RecordFile(file, self.path, _count_elements, _end_of_elements)
            return
        self._file = RecordFile(
            self.open_binary("wb"), self.path, _count_elements, _end_of_elements
        )
        self._separator = b"\n"
        self._file.append(b"[", records=0)

    def write(self, item: Mapping[str, Any]) -> None:
        """Append one element."""
        self._file.append(self._separator + encode(dumps(named(item))))
        self._separator = b",\n"

    def close(self) -> None:
        """Close the array and the file; if ``]`` cannot be written, the array is left open,
        every element whole, as after a kill."""
        failed = self._file.failed
        try:
            self._file.append(b"\n]\n" if self._separator == b",\n" else b"]\n", records=0)
        except OSError as exc:
            log.warning("%s: cannot write the closing ]: %s", self.path, exc.strerror or exc)
            if failed is None:  # else the failed write is what fw reports
                raise
        finally:
            self._file.close()

    def close_now(self) -> None:
        """Close the array: quitting at once must not leave a document no tool can read."""
        self.close()

    def count(self) -> int | None:
        """Return how many elements the array holds."""
        return self._file.count()

    def checkpoint(self) -> int | None:
        """Return the array's length so far: every element up to it is whole."""
        return self._file.offset()

    def rewind(self, checkpoint: int | None) -> None:
        """Cut off the elements written after ``checkpoint``."""
        self._file.rewind(checkpoint)
        end = self._file.offset()  # short of ``checkpoint`` if the file was cut or moved since
        if end == 0:  # cut before its [ even: begun again
            self._file.append(b"[", records=0)
            self._separator = b"\n"
        elif checkpoint is not None and end is not None:
            self._separator = _separator_after(self.path, end)


def _reopen(file: BinaryIO) -> bytes:
    """Cut an earlier run's closing bracket off; return the separator for the next element.

    A run that was killed never wrote the bracket, but its last element is whole: the
    array is continued as it is.
    """
    end = file.seek(0, 2)
    start = max(end - 64, 0)  # the bracket and the blanks around it are at the very end
    file.seek(start)
    body = file.read().rstrip()
    if body.endswith(b"]"):
        body = body[:-1].rstrip()
    file.seek(start + len(body))
    file.truncate()
    return b"\n" if body.endswith(b"[") else b",\n"


def _end_of_elements(path: str) -> int:
    """Return where the array's last whole element ends: before the line break (and the
    ``,``) that begins the next one, or past the ``[`` (0 without even that)."""
    at = last_line_break(path)
    if at < 0:
        with Path(path).open("rb") as file:
            return 1 if file.read(1) == b"[" else 0
    with Path(path).open("rb") as file:
        file.seek(max(at - 1, 0))
        return at - 1 if file.read(1) == b"," else at


def _separator_after(path: str, end: int) -> bytes:
    """Return what goes before the element that starts at ``end``: none is before ``[``."""
    with Path(path).open("rb") as file:
        file.seek(max(end - 1, 0))
        return b"\n" if file.read(1) == b"[" else b",\n"


def _count_elements(path: str, start: int) -> int:
    """Count the elements from ``start``: each starts a line with ``{``."""
    count, last = 0, b""
    for chunk in chunks(path, start):
        count += (last + chunk).count(b"\n{")
        last = chunk[-1:]
    return count
