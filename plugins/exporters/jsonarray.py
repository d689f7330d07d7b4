"""A JSON array: one document, for tools that cannot read JSON lines."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from framework import Exporter
from plugins.exporters.values import dumps, encode, file_offset, truncate, write_all

__all__ = ["JsonArrayExporter"]


class JsonArrayExporter(Exporter):
    """Write ``[`` first, each item on its own line as it arrives, and ``]`` at the end.

    A crawl killed half-way leaves whole items and no closing bracket; appending ``]``
    makes the file valid again.
    """

    format: ClassVar[str] = "json"
    extensions: ClassVar[tuple[str, ...]] = (".json",)

    def open(self) -> None:
        """Create the file and open the array, or reopen an earlier run's array."""
        if self.append and Path(self.path).is_file() and Path(self.path).stat().st_size:
            self._file: BinaryIO = self.open_binary("r+b")
            self._separator = _reopen(self._file)
            return
        self._file = self.open_binary("wb")
        self._separator = b"\n"
        write_all(self._file, b"[")

    def write(self, item: Mapping[str, Any]) -> None:
        """Append one element."""
        write_all(self._file, self._separator + encode(dumps(item)))
        self._separator = b",\n"

    def close(self) -> None:
        """Close the array and the file."""
        try:
            write_all(self._file, b"\n]\n" if self._separator == b",\n" else b"]\n")
        finally:
            self._file.close()

    def checkpoint(self) -> int | None:
        """Return the array's length so far: every element up to it is whole."""
        return file_offset(self._file, self.path)

    def rewind(self, checkpoint: int | None) -> None:
        """Cut off the elements written after ``checkpoint``."""
        truncate(self._file, self.path, checkpoint)
        if checkpoint is not None and self.path != "-":
            self._file.seek(max(checkpoint - 1, 0))
            self._separator = b"\n" if self._file.read(1) == b"[" else b",\n"


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
