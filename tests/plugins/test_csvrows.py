"""Finding CSV rows without the csv module: checked against what the csv module writes."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pytest
from fwcrawl_plugins.exporters import records
from fwcrawl_plugins.exporters.csvrows import count_rows, end_of_row, header, pad_rows
from hypothesis import given, settings
from hypothesis import strategies as st

#: Cells made of what is hard for a reader: quotes, line breaks, delimiters, wide characters.
CELLS = st.lists(
    st.text(st.sampled_from(['"', "\r", "\n", ",", ";", "；", "€", "中", "a", " "]), max_size=6),
    max_size=5,
)


def written(rows: list[list[str]], delimiter: str) -> list[bytes]:
    """Return each row as the csv exporter writes it."""
    lines = []
    for row in rows:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerow(row)
        lines.append(buffer.getvalue().encode())
    return lines


@pytest.fixture
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read files a few bytes at a time, so that rows, characters and CRLFs straddle chunks."""
    monkeypatch.setattr(records, "_CHUNK", 3)


@pytest.mark.usefixtures("tiny_chunks")
@settings(max_examples=500, deadline=None)
@given(
    rows=st.lists(CELLS, min_size=1, max_size=6),
    delimiter=st.sampled_from([",", ";", "\t", "；", "€"]),
    more=st.integers(0, 2),
)
def test_rows_are_found_and_padded_as_the_csv_module_reads_them(
    rows: list[list[str]], delimiter: str, more: int
) -> None:
    lines = written(rows, delimiter)
    width = max(len(row) for row in rows) + more
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "items.csv"
        path.write_bytes(b"".join(lines))
        ends = [sum(len(line) for line in lines[: n + 1]) for n in range(len(lines))]
        assert [end_of_row(str(path), n, delimiter.encode()) for n in range(len(rows) + 1)] == [
            *ends,
            None,
        ]
        assert count_rows(str(path), ends[0], delimiter.encode()) == len(rows) - 1
        padded = io.BytesIO()
        pad_rows(str(path), padded, width, delimiter.encode())
    cells = csv.reader(io.StringIO(padded.getvalue().decode(), newline=""), delimiter=delimiter)
    assert list(cells) == [row + [""] * (width - len(row)) for row in rows[1:]]


@pytest.mark.usefixtures("tiny_chunks")
@settings(max_examples=500, deadline=None)
@given(
    rows=st.lists(CELLS, min_size=1, max_size=3),
    delimiter=st.sampled_from([",", ";", "\t", "；", "€"]),
)
def test_the_header_is_read_as_the_csv_module_reads_it(
    rows: list[list[str]], delimiter: str
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "items.csv"
        path.write_bytes(b"".join(written(rows, delimiter)))
        found = header(str(path), delimiter)
    text = b"".join(written(rows, delimiter)).decode()
    assert found == next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def test_a_header_cell_of_any_size_is_read_and_an_empty_file_has_none(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes(b"".join(written([["k" * 300_000, 'a "b",\r\nc'], ["1", "2"]], ",")))
    assert header(str(path), ",") == ["k" * 300_000, 'a "b",\r\nc']
    path.write_bytes(b"")
    assert header(str(path), ",") is None
