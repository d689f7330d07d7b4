"""SQLite: items in a table, one column per field, queryable with SQL."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from framework import Exporter, no_room, option

from .values import dumps, keys_as_written, named, simplify, without_surrogates

__all__ = ["SqliteExporter"]

log = logging.getLogger("fw.exporters.sqlite")

#: The table's key column; an item key of that name gets a column of its own.
_ROWID = "_rowid"
_INT64 = range(-(2**63), 2**63)
#: Seconds a write waits for another program's lock on the database (a reader's).
_PATIENCE = 5.0
#: The item key each renamed column holds, so that a later run appending to the table puts
#: the key's values there again; made only when a column had to be renamed.
_RENAMED = "fw_renamed_columns"


def _table_name(name: str) -> str:
    if not name:
        raise ValueError("a table needs a name")
    if name.lower().startswith("sqlite_"):
        raise ValueError(
            f"{name!r} cannot name a table: SQLite reserves names that start with sqlite_"
        )
    if name.lower() == _RENAMED:
        raise ValueError(f"{name!r} cannot name a table: fw notes its renamed columns there")
    return name


@dataclass(frozen=True)
class SqliteOptions:
    """Options of the sqlite exporter."""

    table: str = option("items", doc="The table items go to.", check=_table_name)
    if_exists: Literal["replace", "append"] = option(
        "replace", doc="What to do with a table of that name from an earlier run."
    )


class SqliteExporter(Exporter):
    """Insert each item as one row, committed at once, so a crash loses no written row.

    The table has a column for each of the item type's fields from the start (``columns``,
    when the spider declares ``Item``), and one is added for each new key; SQLite ignores
    case in column names, so a key
    differing from an earlier one only in case gets a column named ``key_2`` (noted in the
    table ``fw_renamed_columns``, for the runs that append to it later). Text and
    numbers are stored as such (integers beyond 64 bits as text), booleans as 0/1, bytes
    as blobs, lists and mappings as JSON text, dates and decimals as in the JSON exporters.
    """

    format: ClassVar[str] = "sqlite"
    extensions: ClassVar[tuple[str, ...]] = (".db", ".sqlite", ".sqlite3")
    Options: ClassVar[type[Any] | None] = SqliteOptions
    stdout: ClassVar[bool] = False

    def open(self) -> None:
        """Hold the database, open it and (re)create the table."""
        self._opts: SqliteOptions = self.options or SqliteOptions()
        _create(Path(self.path))
        # SQLite's own locks are for one statement: another fw run would drop the table.
        self._held = self.lock()
        try:
            self._connect()
        except BaseException:
            if hasattr(self, "_db"):
                self._db.close()  # what the failing step began is rolled back
            self._held.close()
            raise

    def _connect(self) -> None:
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=_PATIENCE)
        # WAL with synchronous=NORMAL makes each commit cheap while keeping it atomic.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._table = _quote(self._opts.table)
        self._db.execute("BEGIN")
        if self._opts.if_exists == "replace" and not self.append:
            self._db.execute(f"DROP TABLE IF EXISTS {self._table}")
            self._forget_renamed()
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {self._table} ({_quote(_ROWID)} INTEGER PRIMARY KEY)"
        )
        existing = [row[1] for row in self._db.execute(f"PRAGMA table_info({self._table})")]
        renamed = self._renamed()
        #: Item key -> its column, and every column name in lower case (as SQLite compares).
        self._columns = {renamed.get(name, name): name for name in existing if name != _ROWID}
        self._taken = {name.lower() for name in existing}
        for key in self.columns or ():  # the item type's fields: every column from the start
            self._column(without_surrogates(key))
        self._db.execute("COMMIT")

    def _renamed(self) -> dict[str, str]:
        """Return the table's renamed columns, each with the item key it holds."""
        if not self._has_renamed():
            return {}
        rows = self._db.execute(
            f'SELECT "column", key FROM {_RENAMED} WHERE "table" = ?', (self._opts.table,)
        )
        return {column: key for column, key in rows}

    def _forget_renamed(self) -> None:
        if self._has_renamed():
            self._db.execute(f'DELETE FROM {_RENAMED} WHERE "table" = ?', (self._opts.table,))

    def _has_renamed(self) -> bool:
        found = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self._db.execute(found, (_RENAMED,)).fetchone() is not None

    def write(self, item: Mapping[str, Any]) -> None:
        """Insert one row; a full disk is an ``OSError``, as in the other exporters."""
        try:
            self._insert(item)
        except sqlite3.OperationalError as exc:
            failed = _disk_error(exc, self.path)
            if failed is None:
                raise
            raise failed from exc

    def _insert(self, item: Mapping[str, Any]) -> None:
        if not item:
            self._db.execute(f"INSERT INTO {self._table} DEFAULT VALUES")
            return
        item = keys_as_written(named(item))
        keys = list(item)
        if all(key in self._columns for key in keys):
            self._insert_row(keys, item.values())
            return
        # New columns and the row together or not at all: columns left by an item that
        # failed (2,000 keys, past SQLite's limit) would make every later new key fail too.
        columns, taken = dict(self._columns), set(self._taken)
        self._db.execute("BEGIN")
        try:
            self._insert_row(keys, item.values())
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back already (a full disk)
                self._db.execute("ROLLBACK")
            self._columns, self._taken = columns, taken
            raise

    def _insert_row(self, keys: list[str], values: Iterable[Any]) -> None:
        names = ", ".join(_quote(self._column(key)) for key in keys)
        marks = ", ".join("?" * len(keys))
        self._db.execute(
            f"INSERT INTO {self._table} ({names}) VALUES ({marks})", [_value(v) for v in values]
        )

    def close(self) -> None:
        """Close the database, then let go of it."""
        try:
            self._db.close()
        finally:
            self._held.close()

    def count(self) -> int | None:
        """Return how many rows the table holds."""
        try:
            return int(self._db.execute(f"SELECT count(*) FROM {self._table}").fetchone()[0])
        except sqlite3.Error:
            return None

    def checkpoint(self) -> int:
        """Return the last row's key: every row up to it is committed."""
        row = self._db.execute(f"SELECT max({_quote(_ROWID)}) FROM {self._table}").fetchone()
        return int(row[0] or 0)

    def rewind(self, checkpoint: int | None) -> None:
        """Delete the rows inserted after ``checkpoint``."""
        if checkpoint is None:
            return
        last = self.checkpoint()
        if last > checkpoint:
            self._db.execute(f"DELETE FROM {self._table} WHERE {_quote(_ROWID)} > ?", (checkpoint,))
        elif last < checkpoint:  # never silent: the table was emptied, or the file moved away
            log.warning(
                "%s is shorter than when its last items were acknowledged (table %s ends at "
                "row %d, not %d): items may be missing from it",
                self.path,
                self._opts.table,
                last,
                checkpoint,
            )

    def _column(self, key: str) -> str:
        """Return the column for ``key``, adding one the first time the key is seen."""
        column = self._columns.get(key)
        if column is None:
            column, n = key, 1
            while column.lower() in self._taken:
                n += 1
                column = f"{key}_{n}"
            self._db.execute(f"ALTER TABLE {self._table} ADD COLUMN {_quote(column)}")
            if column != key:
                self._note_renamed(column, key)
            self._columns[key] = column
            self._taken.add(column.lower())
        return column

    def _note_renamed(self, column: str, key: str) -> None:
        """Note which key ``column`` holds, in the transaction that adds it."""
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {_RENAMED} ("  # names as SQLite compares them
            '"table" TEXT COLLATE NOCASE, "column" TEXT COLLATE NOCASE, key TEXT, '
            'PRIMARY KEY ("table", "column"))'
        )
        self._db.execute(
            f"INSERT OR REPLACE INTO {_RENAMED} VALUES (?, ?, ?)", (self._opts.table, column, key)
        )


def _create(path: Path) -> None:
    """Create the file and its folder, so that a failure has the system's reason.

    sqlite3 says only "unable to open database file" for a folder, a missing permission
    or a file in the way. Appending nothing leaves an existing database as it is. A FIFO
    or a device is refused: opening one may wait forever, and SQLite needs a file.
    """
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(path.stat().st_mode) and not path.is_dir():
            raise OSError(errno.EINVAL, "not a regular file; an SQLite export needs one", str(path))
    try:
        path.open("ab").close()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.open("ab").close()


def _disk_error(exc: sqlite3.OperationalError, path: str) -> OSError | None:
    """Return the ``OSError`` a failed write is (a full disk, the database locked by
    another program), or None for another error (a bad item).

    A statement that fails is rolled back whole, so the table holds whole rows.
    """
    code = exc.sqlite_errorcode & 0xFF  # the primary code, without the extended part
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):  # not the item: try again later
        return OSError(errno.EBUSY, "another program holds the database locked", path)
    limited = no_room(Path(path)) if code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR) else None
    if limited is not None:  # SQLite says a full disk, or an I/O error, for ulimit -f
        return limited
    if code == sqlite3.SQLITE_FULL:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    if code == sqlite3.SQLITE_IOERR:  # SQLite keeps the system's own reason to itself
        return OSError(errno.EIO, str(exc), path)
    return None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if value in _INT64 else str(value)
    if value is None or isinstance(value, float | bytes):
        return value
    value = simplify(value)
    return without_surrogates(value if isinstance(value, str) else dumps(value))
