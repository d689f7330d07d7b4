"""Find the rows of a CSV file by its quotes and line breaks, never reading a cell whole.

The csv module holds each cell in memory and refuses one over its field size limit (128 KB
by default, a setting global to the process); this looks only for quotes, delimiters and
line breaks, so a cell of any size streams through. It reads CSV as the csv module writes
it: a quote in a cell is doubled, and a cell with a quote, a delimiter or a line break is
quoted. Only ``header`` reads cells whole: an export keeps its header's cells as columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .records import chunks

__all__ = [
    "Rows",
    "cells",
    "count_rows",
    "end_of_row",
    "end_of_rows",
    "header",
    "pad_rows",
    "widths",
]


class Rows:
    """Split CSV bytes, fed a chunk at a time, into rows, and count each row's cells."""

    def __init__(self, delimiter: bytes) -> None:
        self._delimiter = delimiter
        self._quoted = False
        self._cells = 1  # in the row so far: its delimiters outside quotes, plus one
        self._size = 0  # the row's bytes so far, to tell an empty row (no cell at all)

    def ends(self, chunk: bytes) -> Iterator[tuple[int, int]]:
        """Yield, for each row ending in ``chunk``, where it ends (past its LF) and its cells.

        A CRLF must not be split between two chunks.
        """
        end = -1
        for line in chunk.split(b"\n"):
            self._take(line)
            end += len(line) + 1
            if end == len(chunk):  # the chunk ends, the row goes on
                return
            if self._quoted:  # the line break is a cell's own
                self._size += 1
                continue
            empty = self._size == 0 or (self._size == 1 and line == b"\r")
            yield end + 1, 0 if empty else self._cells
            self._cells, self._size = 1, 0

    def _take(self, text: bytes) -> None:
        """Go through bytes with no line break: count delimiters outside quotes."""
        quotes = text.count(b'"')
        if quotes:  # every other stretch between quotes is outside them
            outside = text.split(b'"')[1 if self._quoted else 0 :: 2]
            self._cells += b"".join(outside).count(self._delimiter)
            self._quoted ^= quotes % 2 == 1
        elif not self._quoted:
            self._cells += text.count(self._delimiter)
        self._size += len(text)


def count_rows(path: str, start: int, delimiter: bytes) -> int:
    """Return how many rows the file at ``path`` holds from ``start``, where one starts."""
    rows = Rows(delimiter)
    return sum(1 for chunk in chunks(path, start) for _ in rows.ends(chunk))


def end_of_row(path: str, index: int, delimiter: bytes) -> int | None:
    """Return where row ``index`` (0 is the header) ends, or None if the file is shorter."""
    rows, offset, seen = Rows(delimiter), 0, 0
    for chunk in chunks(path):
        for end, _ in rows.ends(chunk):
            if seen == index:
                return offset + end
            seen += 1
        offset += len(chunk)
    return None


def widths(path: str, delimiter: bytes, rows: int) -> list[int]:
    """Return how many cells each of the file's first ``rows`` whole rows has."""
    found: list[int] = []
    parser = Rows(delimiter)
    for chunk in chunks(path):
        for _, cells in parser.ends(chunk):
            found.append(cells)
            if len(found) == rows:
                return found
    return found


def end_of_rows(path: str, delimiter: bytes) -> int:
    """Return where the file's last whole row ends (0 if none is)."""
    rows, offset, last = Rows(delimiter), 0, 0
    for chunk in chunks(path):
        for end, _ in rows.ends(chunk):
            last = offset + end
        offset += len(chunk)
    return last


def header(path: str, delimiter: str) -> list[str] | None:
    """Return the cells of the file's first row, each of any size; None for an empty file."""
    end = end_of_row(path, 0, delimiter.encode())
    with Path(path).open("rb") as file:
        row = file.read(-1 if end is None else end)  # no line break: a header cut short
    if not row:
        return None
    return cells(row.decode("utf-8").removesuffix("\n").removesuffix("\r"), delimiter)


def cells(row: str, delimiter: str) -> list[str]:
    """Split one row, without its line break, into its cells, as ``csv.reader`` does."""
    if not row:
        return []
    found, cell = [], []
    pieces = row.split('"')  # every other piece is inside quotes
    for n, piece in enumerate(pieces):
        if n % 2:
            cell.append(piece)
        elif not piece:  # between two quoted pieces, a doubled quote
            cell.append('"' if 0 < n < len(pieces) - 1 else "")
        else:
            first, *others = piece.split(delimiter)
            cell.append(first)
            for text in others:
                found.append("".join(cell))
                cell = [text]
    found.append("".join(cell))
    return found


def pad_rows(path: str, target: BinaryIO, width: int, delimiter: bytes) -> None:
    """Copy the rows after the header of ``path`` to ``target``, each given ``width`` cells.

    A row that has fewer gets empty cells at its end; a row that has more is copied as is.
    """
    rows, body = Rows(delimiter), False  # body: past the header, which is left out
    for chunk in chunks(path):
        pos = 0
        for end, cells in rows.ends(chunk):
            if not body:
                body, pos = True, end
                continue
            line_break = end - 2 if chunk[end - 2 : end] == b"\r\n" else end - 1
            target.write(chunk[pos:line_break])
            target.write(_empty_cells(width - cells, cells == 0, delimiter))
            pos = line_break
        if body:
            target.write(chunk[pos:])


def _empty_cells(count: int, alone: bool, delimiter: bytes) -> bytes:
    """Return ``count`` more empty cells; ``alone``: the row has none yet."""
    if count <= 0:
        return b""
    if alone:  # a row of one empty cell is written "" to tell it from an empty row
        return b'""' if count == 1 else delimiter * (count - 1)
    return delimiter * count
