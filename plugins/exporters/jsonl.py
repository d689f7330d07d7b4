"""JSON lines: one item per line, the format that streams and survives crashes best."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from framework import Exporter

from .records import RecordFile, chunks, last_line_break
from .values import dumps, encode, named

__all__ = ["JsonLinesExporter"]


class JsonLinesExporter(Exporter):
    """Write each item as one line of JSON, with one write, so no line is ever torn."""

    format: ClassVar[str] = "jsonl"
    extensions: ClassVar[tuple[str, ...]] = (".jsonl", ".jl", ".ndjson")

    def open(self) -> None:
        """Create (or truncate, or append to) the file."""
        self._file = RecordFile(self.open_binary(), self.path, _count_lines, _end_of_lines)

    def write(self, item: Mapping[str, Any]) -> None:
        """Append one line."""
        self._file.append(encode(dumps(named(item)) + "\n"))

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def count(self) -> int | None:
        """Return how many lines the file holds."""
        return self._file.count()

    def checkpoint(self) -> int | None:
        """Return the file's length: every line up to it is whole."""
        return self._file.offset()

    def rewind(self, checkpoint: int | None) -> None:
        """Cut off the lines written after ``checkpoint``."""
        self._file.rewind(checkpoint)


def _count_lines(path: str, start: int) -> int:
    return sum(chunk.count(b"\n") for chunk in chunks(path, start))


def _end_of_lines(path: str) -> int:
    return last_line_break(path) + 1
