"""JSON lines: one item per line, the format that streams and survives crashes best."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, BinaryIO, ClassVar

from framework import Exporter
from plugins.exporters.values import dumps, encode, file_offset, truncate, write_all

__all__ = ["JsonLinesExporter"]


class JsonLinesExporter(Exporter):
    """Write each item as one line of JSON, with one write, so no line is ever torn."""

    format: ClassVar[str] = "jsonl"
    extensions: ClassVar[tuple[str, ...]] = (".jsonl", ".jl", ".ndjson")

    def open(self) -> None:
        """Create (or truncate, or append to) the file."""
        self._file: BinaryIO = self.open_binary()

    def write(self, item: Mapping[str, Any]) -> None:
        """Append one line."""
        write_all(self._file, encode(dumps(item) + "\n"))

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def checkpoint(self) -> int | None:
        """Return the file's length: every line up to it is whole."""
        return file_offset(self._file, self.path)

    def rewind(self, checkpoint: int | None) -> None:
        """Cut off the lines written after ``checkpoint``."""
        truncate(self._file, self.path, checkpoint)
