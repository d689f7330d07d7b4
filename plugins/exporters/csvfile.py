"""CSV: one row per item, for spreadsheets."""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from framework import Exporter, option
from plugins.exporters.records import RecordFile, chunks
from plugins.exporters.values import dumps, encode, simplify

__all__ = ["CsvExporter"]

log = logging.getLogger("fw.exporters.csv")


def _one_character(delimiter: str) -> str:
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise ValueError(
            f"must be one character other than a quote or a line break, got {delimiter!r}"
        )
    return delimiter


def _some_fields(fields: tuple[str, ...]) -> tuple[str, ...]:
    if not fields:
        raise ValueError("must name at least one column; leave it out for every key")
    return fields


@dataclass(frozen=True)
class CsvOptions:
    """Options of the csv exporter."""

    fields: tuple[str, ...] | None = option(
        None,
        doc="The columns, in order; other keys "
        "are left out. Default: every key, in the order "
        "first seen.",
        check=_some_fields,
    )
    delimiter: str = option(",", doc="The character between cells.", check=_one_character)


class CsvExporter(Exporter):
    """Write a header and then each item as one row, in one write.

    Columns are the first item's keys; a key that appears later gets a new column at the
    end, and when the export closes the header is rewritten and earlier rows get empty
    cells for it. Lists and mappings are written as JSON, None as an empty cell, dates
    and other values as in the JSON exporters. Lines end in CRLF (RFC 4180), so that a
    line break inside a value is always quoted.
    """

    format: ClassVar[str] = "csv"
    extensions: ClassVar[tuple[str, ...]] = (".csv",)
    Options: ClassVar[type[Any] | None] = CsvOptions

    def open(self) -> None:
        """Create the file; the header waits for the first item (or is ``fields``)."""
        self._opts: CsvOptions = self.options or CsvOptions()
        self._columns: list[str] = list(self._opts.fields or ())
        self._header: list[str] | None = self._earlier_header() if self.append else None
        if self._header is not None:  # appending: keep the earlier run's columns
            self._columns = list(self._header)
        self._file = RecordFile(self.open_binary(), self.path, _count_rows)
        if self._header is None and self._opts.fields:
            self._write_header()

    def _earlier_header(self) -> list[str] | None:
        """Return the header of the file an earlier run wrote, if there is one."""
        try:
            with Path(self.path).open(newline="", encoding="utf-8") as earlier:
                return next(csv.reader(earlier, delimiter=self._opts.delimiter), None)
        except FileNotFoundError:
            return None

    def write(self, item: Mapping[str, Any]) -> None:
        """Append one row."""
        if not self._opts.fields:
            self._columns += [key for key in item if key not in self._columns]
        if self._header is None:
            self._write_header()
        self._write_row([_cell(item.get(column)) for column in self._columns])

    def close(self) -> None:
        """Close the file, rewriting the header if columns were added on the way."""
        self._file.close()
        if self._header is not None and self._columns != self._header:
            self._rewrite_header()

    def count(self) -> int | None:
        """Return how many rows the file holds, not counting the header."""
        return self._file.count()

    def checkpoint(self) -> int | None:
        """Return the file's length: every row up to it is whole."""
        return self._file.offset()

    def rewind(self, checkpoint: int | None) -> None:
        """Cut off the rows written after ``checkpoint`` (the header too, at 0)."""
        self._file.rewind(checkpoint)
        if checkpoint == 0:
            self._header = None
            self._columns = list(self._opts.fields or ())
            if self._opts.fields:
                self._write_header()

    def _write_header(self) -> None:
        self._write_row(self._columns, records=0)
        self._header = list(self._columns)

    def _writer(self, file: Any) -> Any:
        return csv.writer(file, delimiter=self._opts.delimiter, lineterminator="\r\n")

    def _write_row(self, cells: list[str], records: int = 1) -> None:
        buffer = io.StringIO()
        self._writer(buffer).writerow(cells)
        self._file.append(encode(buffer.getvalue()), records)

    def _rewrite_header(self) -> None:
        if self.path == "-":
            log.warning(
                "csv on stdout: columns %s appeared after the header was written",
                ", ".join(self._columns[len(self._header or ()) :]),
            )
            return
        path = Path(self.path)
        partial = path.with_name(path.name + ".partial")
        width = len(self._columns)
        with (
            path.open(newline="", encoding="utf-8") as old,
            partial.open("w", newline="", encoding="utf-8") as new,
        ):
            rows = csv.reader(old, delimiter=self._opts.delimiter)
            writer = self._writer(new)
            next(rows, None)
            writer.writerow(self._columns)
            writer.writerows(row + [""] * (width - len(row)) for row in rows)
        partial.replace(path)


def _cell(value: Any) -> str:
    value = simplify(value)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value if isinstance(value, str) else dumps(value)


def _count_rows(path: str, start: int) -> int:
    """Count the rows from ``start``, not the header: each ends with a CRLF outside quotes."""
    rows, quoted = 0, False
    for chunk in chunks(path, start):
        parts = chunk.split(b'"')
        rows += sum(part.count(b"\r\n") for part in parts[1 if quoted else 0 :: 2])
        quoted ^= len(parts) % 2 == 0
    return rows - 1 if start == 0 and rows else rows
