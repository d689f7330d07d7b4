"""A JSON array: one document, for tools that cannot read JSON lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, BinaryIO, ClassVar

from framework import Exporter
from plugins.exporters.values import dumps, encode, write_all

__all__ = ["JsonArrayExporter"]


class JsonArrayExporter(Exporter):
    """Write ``[`` first, each item on its own line as it arrives, and ``]`` at the end.

    A crawl killed half-way leaves whole items and no closing bracket; appending ``]``
    makes the file valid again.
    """

    format: ClassVar[str] = "json"
    extensions: ClassVar[tuple[str, ...]] = (".json",)

    def open(self) -> None:
        """Create the file and open the array."""
        self._file: BinaryIO = self.open_binary()
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
