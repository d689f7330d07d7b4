"""SQLite: items in a table, one column per field, queryable with SQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from framework import Exporter, option
from plugins.exporters.values import dumps

__all__ = ["SqliteExporter"]


@dataclass(frozen=True)
class SqliteOptions:
    """Options of the sqlite exporter."""

    table: str = option("items", doc="The table items go to.")
    if_exists: Literal["replace", "append"] = option(
        "replace", doc="What to do with a table of that name from an earlier run.")


class SqliteExporter(Exporter):
    """Insert each item as one row, committed at once, so a crash loses no written row.

    A column is added for each new key. Text and numbers are stored as such, booleans as
    0/1, lists and mappings as JSON text.
    """

    format: ClassVar[str] = "sqlite"
    extensions: ClassVar[tuple[str, ...]] = (".db", ".sqlite", ".sqlite3")
    Options: ClassVar[type[Any] | None] = SqliteOptions

    def open(self) -> None:
        """Open the database and (re)create the table."""
        self._opts: SqliteOptions = self.options or SqliteOptions()
        if self.path == "-":
            raise ValueError("sqlite cannot write to standard output")
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        # WAL with synchronous=NORMAL makes each commit cheap while keeping it atomic.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        table = _quote(self._opts.table)
        if self._opts.if_exists == "replace":
            self._db.execute(f"DROP TABLE IF EXISTS {table}")
        self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} (_rowid INTEGER PRIMARY KEY)")
        self._columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}

    def write(self, item: Mapping[str, Any]) -> None:
        """Insert one row."""
        table = _quote(self._opts.table)
        for key in item:
            if key not in self._columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {_quote(key)}")
                self._columns.add(key)
        names = ", ".join(_quote(key) for key in item)
        marks = ", ".join("?" * len(item))
        self._db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})",
                         [_value(v) for v in item.values()])

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _value(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bytes):
        return int(value) if isinstance(value, bool) else value
    return dumps(value)
