"""CSV: one row per item, for spreadsheets."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Literal

from framework import Exporter, beside, open_new, option

from .csvrows import count_rows, end_of_row, end_of_rows, header, pad_rows, widths
from .records import RecordFile
from .values import dumps, keys_as_written, named, simplify, without_surrogates

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
    formulas: Literal["keep", "escape"] = option(
        "keep",
        doc="``escape``: a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a "
        "carriage return gets a leading ``'``, so that a spreadsheet shows it instead of "
        "running it as a formula (OWASP's CSV injection advice), and so does one starting "
        "with ``'`` and one of those, so that none is read back changed; numbers are left "
        "alone. "
        "``keep``: cells are written as scraped.",
    )


class CsvExporter(Exporter):
    """Write a header and then each item as one row, in one write.

    Columns are ``fields``, else the item type's fields (``columns``, when the spider
    declares ``Item``), else the first item's keys; a key that appears later gets a new
    column at the end, and when the export closes the header is completed: a copy with
    the whole header, every earlier row given empty cells for the new columns, replaces
    the file at once.
    Lists and mappings are written as JSON, None as an empty cell, dates and other values
    as in the JSON exporters. Lines end in CRLF (RFC 4180), so that a line break inside a
    value is always quoted.
    """

    format: ClassVar[str] = "csv"
    extensions: ClassVar[tuple[str, ...]] = (".csv",)
    Options: ClassVar[type[Any] | None] = CsvOptions

    def open(self) -> None:
        """Create the file; the header waits for the first item, unless the columns are
        known up front (``fields``, or the item type's).

        Appending, the rows go on with the columns of the rows written, which may be more
        than the header has: an earlier run's copy with the whole header (see ``close``)
        names them, and the header is completed when this run closes.
        """
        self._opts: CsvOptions = self.options or CsvOptions()
        self._delimiter = self._opts.delimiter.encode()
        self._escape = self._opts.formulas == "escape"
        #: ``fields`` as the header writes them: items' keys are matched so (``write``).
        self._fields = [without_surrogates(name) for name in self._opts.fields or ()]
        self._columns: list[str] = self._known_columns()
        self._header: list[str] | None = self._earlier_header(self.path) if self.append else None
        if self._header is not None:
            self._refuse_another_delimiter(self._header)
        self._file = RecordFile(self.open_binary(), self.path, self._count_rows, self._end_of_rows)
        #: Whether a copy or notes an earlier run left are kept until the header is completed.
        self._leftover = False
        #: Where the header starts: past 0 in a file that held more (``>> file`` through
        #: /dev/stdout), whose header is never completed by rewriting the whole file.
        self._header_at: int | None = 0
        #: The late columns noted beside the file (``_note_columns``), and where: found
        #: now, as completing the header replaces the file (/dev/stdout names the old one).
        self._notes_at = self._notes_path()
        self._noted: set[str] = set()
        self._notes: BinaryIO | None = None
        self._notes_failed = False
        whole = self._leftover_header() if self._file.seekable else None
        if self._header is not None:  # appending: keep the earlier run's columns
            self._columns = self._continued(whole or self._header)
            self._warn_of_changed_fields()
        elif self._columns:
            self._write_header()

    def _known_columns(self) -> list[str]:
        """Return the columns known before the first item: ``fields``, or the item type's."""
        return list(self._fields) or [without_surrogates(name) for name in self.columns or ()]

    def _continued(self, columns: list[str]) -> list[str]:
        """Return the columns of the rows written, then any of ``fields`` they lack."""
        return columns + [name for name in self._fields if name not in columns]

    def _warn_of_changed_fields(self) -> None:
        """Say so when ``fields`` are not the columns this run goes on with."""
        fields = self._fields
        if fields and self._columns != fields:  # the rows written keep their cells' order
            log.warning(
                "export %s: its rows have the columns %s, not fields (%s): it goes on with %s",
                self.path,
                _names(self._header or []),
                _names(fields),
                _names(self._columns),
            )

    def _refuse_another_delimiter(self, names: list[str]) -> None:
        """Refuse to append to a file written with another delimiter: its header reads as
        one cell with ours, and its header and first row read as the same number of cells,
        more than one, with one of the usual others (a one-column file's key may hold a
        comma; its first row seldom holds as many)."""
        if len(names) != 1:
            return
        for other in _USUAL_DELIMITERS:
            if other == self._opts.delimiter:
                continue
            head, *row = widths(self.path, other.encode(), 2) or [1]
            if head > 1 and row in ([], [head]):  # a header alone: `fields`, nothing exported
                raise ValueError(
                    f"its rows are delimited by {other!r}, not {self._opts.delimiter!r}: "
                    f"set delimiter: {other!r} to append to it, or export to another file"
                )

    def _earlier_header(self, path: str | Path) -> list[str] | None:
        """Return the header of the file an earlier run wrote, if there is one. A stream
        (stdout to a pipe or a socket, a FIFO) has none to read back: reading it would
        wait, or take what is meant for its reader."""
        try:
            if str(path) == "-" or not stat.S_ISREG(Path(path).stat().st_mode):
                return None
            names = header(str(path), self._opts.delimiter)
        except FileNotFoundError:
            return None
        if names is None or self._opts.formulas != "escape":
            return names
        return [_undone(name) for name in names]

    def _leftover_header(self) -> list[str] | None:
        """Return the whole header an earlier run left the names for, if it completes the
        file's header: its copy (killed while copying, or out of room for it) or the late
        columns it noted as they came (killed before it closed). Remove those that do not
        (cut short, or a fresh start: of no use)."""
        copied, noted = self._copied_header(), self._noted_header()
        if not _extends(copied, self._header):
            _remove(self._copy_path())
            copied = None
        if not _extends(noted, self._header):
            _remove(self._notes_at)
            noted = None
        elif noted is not None:  # appended to from here on
            self._noted = set(noted[len(self._header or ()) :])
        found = [names for names in (copied, noted) if names is not None]
        if not found:
            return None
        self._leftover = True
        return max(found, key=len)

    def _copied_header(self) -> list[str] | None:
        """Return the header of the copy an earlier run left, if it is whole."""
        copy = self._copy_path()
        if not _regular(copy) or end_of_row(str(copy), 0, self._delimiter) is None:
            return None
        return self._earlier_header(copy)

    def _noted_header(self) -> list[str] | None:
        """Return the file's header with the late columns an earlier run noted, or None if
        it left no notes of this file's."""
        names = _notes(self._notes_at, _identity(os.fstat(self._file.file.fileno())))
        if names is None:
            return None
        header = list(self._header or ())
        return header + [name for name in names if name not in header]

    def write(self, item: Mapping[str, Any]) -> None:
        """Append one row; an item with a value that cannot be written adds no column."""
        item = keys_as_written(named(item))
        columns = self._columns
        if not self._fields and (new := [key for key in item if key not in columns]):
            columns = columns + new
        cells = [_cell(item.get(column), self._escape) for column in columns]
        grew, self._columns = columns is not self._columns, columns
        if self._header is None:
            self._write_header()
        elif grew:
            self._note_columns(new)
        self._file.append(self._row(cells))

    def _note_columns(self, names: list[str]) -> None:
        """Note the late columns not noted yet, each on a line, in a file beside the
        export: a run killed before it closes the file (even after its crawl's last page)
        leaves the next run the names of the columns its rows have and its header lacks.
        Appended to, never rewritten: a crawl of many late columns pays for each once."""
        if self._notes is None and not self._open_notes():
            return
        assert self._notes is not None
        new = [name for name in names if name not in self._noted]
        try:
            self._notes.write(b"".join(_line(name) for name in new))
        except OSError as exc:
            self._stop_noting(exc)
            return
        self._noted.update(new)

    def _renote(self) -> None:
        """Note the late columns anew, once a rewind cut some back: the notes must name
        the columns of the rows in their order, or a rerun heads cells wrongly."""
        if not self._file.seekable:
            return
        if self._notes is not None:
            self._notes.close()
            self._notes = None
        _remove(self._notes_at)
        self._noted = set()
        if late := self._columns[len(self._header or ()) :]:
            self._note_columns(late)

    def _open_notes(self) -> bool:
        """Open the notes of late columns to append to them; say why not, once."""
        if not self._file.seekable or self._header_at != 0 or self._notes_failed:
            return False
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self._notes = os.fdopen(os.open(self._notes_at, flags, 0o666), "ab", buffering=0)
            if self._notes.seek(0, os.SEEK_END) == 0:  # made now: first, the file it is of
                self._notes.write(_line(_identity(os.fstat(self._file.file.fileno()))))
        except OSError as exc:
            self._stop_noting(exc)
            return False
        self._leftover = True
        return True

    def _stop_noting(self, exc: OSError) -> None:
        self._notes_failed = True
        log.warning(
            "%s: cannot note its late columns beside it (%s): if the crawl is killed "
            "before the export closes, its header will lack those that come from now on",
            self.path,
            exc.strerror or exc,
        )

    def close(self) -> None:
        """Close the file, first completing the header if columns were added on the way.

        If the header cannot be completed, the file keeps its old header and every row
        whole; rows written after a column was added have more cells than the header. The
        copy is cut down to its header: the next run appending to the file completes the
        file's header from it.
        """
        failed = self._file.failed
        try:
            if self._header is not None and self._columns != self._header:
                self._complete_header()
            elif self._leftover:  # its columns were cut back off: nothing left to complete
                self._copy_path().unlink(missing_ok=True)
            self._drop_notes()  # the header names every column now
        except OSError as exc:
            log.warning(
                "%s: cannot add columns %s to the header: %s",
                self.path,
                _names(self._columns[len(self._header or ()) :]),
                exc.strerror or exc,
            )
            if failed is None:  # else the failed write is what fw reports
                raise
        finally:
            if self._notes is not None:
                self._notes.close()
            self._file.close()

    def _drop_notes(self) -> None:
        """Remove the notes of late columns: the header names them now. Notes that cannot
        be removed name no column past the header: the next run drops them too."""
        if self._file.seekable:
            _remove(self._notes_at)

    def count(self) -> int | None:
        """Return how many rows the file holds, not counting the header."""
        return self._file.count()

    def checkpoint(self) -> dict[str, Any] | int | None:
        """Return where the rows end, how many there are, and the columns they have.

        The header's width tells a later ``rewind`` whether the header was completed
        since, which moved every row.
        """
        offset, rows = self._file.offset(), self._file.count()
        if offset is None or rows is None:
            return offset
        header = None if self._header is None else len(self._header)
        return {"offset": offset, "rows": rows, "header": header, "columns": list(self._columns)}

    def rewind(self, checkpoint: dict[str, Any] | int | None) -> None:
        """Cut off the rows written after ``checkpoint`` (the header too, if before it)."""
        if not isinstance(checkpoint, dict):  # a length alone, from fw 0.1
            self._file.rewind(checkpoint)
        elif self._header is not None and checkpoint["header"] not in (None, len(self._header)):
            self._rewind_moved(checkpoint["rows"])
        else:
            self._file.rewind(checkpoint["offset"], checkpoint["rows"])
            self._columns = self._continued(list(checkpoint["columns"]))
        if self._file.offset() == 0:
            self._header = None
            self._columns = self._known_columns()
            if self._columns:
                self._write_header()
        self._renote()

    def _rewind_moved(self, rows: int) -> None:
        """Cut the file back after row ``rows``, found anew: completing the header moved it."""
        end = end_of_row(self.path, rows, self._delimiter)
        if end is None:
            log.warning(
                "%s has fewer rows than when its last items were acknowledged (%d): "
                "items may be missing from it",
                self.path,
                rows,
            )
            self._file.cut_torn()
            return
        self._file.rewind(end, rows)
        self._columns = self._continued(list(self._header or ()))

    def _write_header(self) -> None:
        self._header_at = self._file.offset()
        self._file.append(self._row(self._head()), records=0)
        self._header = list(self._columns)

    def _head(self) -> list[str]:
        """The header's cells: a key scraped from a page may be a formula too."""
        return [_defused(name) if self._escape else name for name in self._columns]

    def _row(self, cells: list[str]) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=self._opts.delimiter, lineterminator="\r\n")
        writer.writerow([without_surrogates(cell) for cell in cells])  # quoted as written
        return buffer.getvalue().encode()

    def _end_of_rows(self, path: str) -> int:
        return end_of_rows(path, self._delimiter)

    def _count_rows(self, path: str, start: int) -> int:
        rows = count_rows(path, start, self._delimiter)
        return rows - 1 if start == 0 and rows else rows  # the header is no item

    def unfinished(self) -> bool:
        """Whether a run left the header to complete: its copy beside the file (it could
        not complete it), or notes of this file's late columns (it was killed first). A file
        moved away since is not made anew for it."""
        try:
            found = Path(self.path).stat()
        except OSError:
            return False
        if self.path == "-" or not stat.S_ISREG(found.st_mode):
            return False
        return _regular(self._copy_path()) or bool(_notes(self._notes_path(), _identity(found)))

    def _notes_path(self) -> Path:
        """Return where the late columns are noted as they come, beside the file."""
        return beside(self.path, "columns")

    def _copy_path(self) -> Path:
        """Return where the copy with the completed header is written, beside the file
        (through a symlink: it replaces the target, not the link)."""
        return beside(self.path, "header")

    def _complete_header(self) -> None:
        """Replace the file at once by a copy with every column in its header."""
        if not self._file.seekable or self._header_at != 0:
            log.warning(
                "csv on %s: columns %s appeared after the header was written",
                self.path,
                _names(self._columns[len(self._header or ()) :]),
            )
            return
        copy, head = self._copy_path(), self._row(self._head())
        try:
            with open_new(copy) as new:
                new.write(head)
                new.flush()  # first on its own: if the rows do not fit, it names the columns
                pad_rows(self.path, new, len(self._columns), self._delimiter)
                new.flush()
                os.fsync(new.fileno())  # whole on disk before it replaces the file
            shutil.copymode(self.path, copy)
            copy.replace(Path(self.path).resolve())
        except BaseException:
            _cut_to_header(copy, len(head))
            raise
        self._header = list(self._columns)
        self._leftover = False


def _notes(path: Path, file: dict[str, int]) -> list[str] | None:
    """Return the late columns noted at ``path`` for ``file`` (``_identity``), each on a
    whole line (a kill may tear the last); None for notes of another file, or none."""
    if not _regular(path):
        return None
    with path.open("rb") as notes:
        whole = notes.read().split(b"\n")[:-1]  # past the last line break: torn
    if not whole:
        return None
    first, *lines = whole
    if _parsed(first) != file:  # another file there now (moved, replaced): not its notes
        return None
    names = (_parsed(line) for line in lines)
    return list(dict.fromkeys(name for name in names if isinstance(name, str)))


def _parsed(line: bytes) -> object:
    try:
        return json.loads(line)
    except ValueError:  # not written whole
        return None


def _line(value: object) -> bytes:
    return json.dumps(value).encode() + b"\n"


def _identity(found: os.stat_result) -> dict[str, int]:
    """What tells a file from another at its path: its device and inode."""
    return {"device": found.st_dev, "inode": found.st_ino}


def _remove(path: Path) -> None:
    """Remove what an earlier run left beside the file, if it can: what is left names no
    column past the header, and the next run drops it too."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _regular(path: Path) -> bool:
    """Whether ``path`` is a regular file: never a link or a FIFO planted there."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _cut_to_header(copy: Path, size: int) -> None:
    """Keep only the header of a copy that failed, to name the columns the next run adds
    to the file's header; remove the copy if even its header did not fit."""
    try:
        if copy.stat().st_size >= size:  # what was written reached the disk in order
            os.truncate(copy, size)
            return
    except OSError:
        pass
    copy.unlink(missing_ok=True)


def _extends(whole: list[str] | None, header: list[str] | None) -> bool:
    """Whether ``whole`` is ``header`` with more columns after it."""
    if whole is None or header is None:
        return False
    return len(whole) > len(header) and whole[: len(header)] == header


def _names(columns: list[str]) -> str:
    """List column names for a log line, each cut short: a key may be megabytes long."""
    return ", ".join(name if len(name) <= 40 else name[:40] + "..." for name in columns)


def _cell(value: Any, escape: bool = False) -> str:
    value = simplify(value)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if not isinstance(value, str):
        return dumps(value)  # a number, or JSON: never a formula
    return _defused(value) if escape else value


#: Delimiters a file appended to with another one was most likely written with.
_USUAL_DELIMITERS = (",", ";", "\t", "|")
#: What a spreadsheet may read as the start of a formula (OWASP: CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _defused(text: str) -> str:
    """Put a ``'`` before a formula, and before a text that looks defused already
    (``'=x``), so that ``_undone`` gives back every text as it was."""
    return "'" + text if text.lstrip("'").startswith(_FORMULA_STARTS) else text


def _undone(text: str) -> str:
    return text[1:] if text[:1] == "'" and text.lstrip("'").startswith(_FORMULA_STARTS) else text
