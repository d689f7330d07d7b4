"""CSV: one row per item, for spreadsheets."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from framework import Exporter, option
from plugins.exporters.values import dumps, write_all

__all__ = ["CsvExporter"]

log = logging.getLogger("fw.exporters.csv")


@dataclass(frozen=True)
class CsvOptions:
    """Options of the csv exporter."""

    fields: tuple[str, ...] | None = option(None, doc="The columns, in order; other keys "
                                            "are left out. Default: every key, in the order "
                                            "first seen.")
    delimiter: str = option(",", doc="The character between cells.")


class CsvExporter(Exporter):
    """Write a header and then each item as one row, in one write.

    Columns are the first item's keys; a key that appears later gets a new column at the
    end, and the header is rewritten when the export closes. Lists and mappings are
    written as JSON, None as an empty cell.
    """

    format: ClassVar[str] = "csv"
    extensions: ClassVar[tuple[str, ...]] = (".csv",)
    Options: ClassVar[type[Any] | None] = CsvOptions

    def open(self) -> None:
        """Create the file; the header waits for the first item (or is ``fields``)."""
        self._opts: CsvOptions = self.options or CsvOptions()
        self._file: BinaryIO = self.open_binary()
        self._columns: list[str] = list(self._opts.fields or ())
        self._header: list[str] = []
        if self._columns:
            self._write_row(self._columns)
            self._header = list(self._columns)

    def write(self, item: Mapping[str, Any]) -> None:
        """Append one row."""
        if not self._opts.fields:
            self._columns += [key for key in item if key not in self._columns]
        if not self._header:
            self._write_row(self._columns)
            self._header = list(self._columns)
        self._write_row([_cell(item.get(column)) for column in self._columns])

    def close(self) -> None:
        """Close the file, rewriting the header if columns were added on the way."""
        self._file.close()
        if self._columns != self._header:
            self._rewrite_header()

    def _write_row(self, cells: list[str]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=self._opts.delimiter, lineterminator="\n").writerow(cells)
        write_all(self._file, buffer.getvalue().encode())

    def _rewrite_header(self) -> None:
        if self.path == "-":
            log.warning("csv on stdout: columns %s appeared after the header was written",
                        ", ".join(self._columns[len(self._header):]))
            return
        path = Path(self.path)
        partial = path.with_name(path.name + ".partial")
        with path.open(newline="", encoding="utf-8") as old, \
                partial.open("w", newline="", encoding="utf-8") as new:
            rows = csv.reader(old, delimiter=self._opts.delimiter)
            writer = csv.writer(new, delimiter=self._opts.delimiter, lineterminator="\n")
            next(rows, None)
            writer.writerow(self._columns)
            writer.writerows(rows)
        partial.replace(path)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | list | tuple | dict | set):
        return dumps(value)
    return str(value)
