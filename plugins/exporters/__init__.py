"""The bundled exporters: JSON lines, a JSON array, CSV and SQLite."""

from __future__ import annotations

from collections.abc import Callable

from framework import Exporter, hookimpl

from .csvfile import CsvExporter
from .jsonarray import JsonArrayExporter
from .jsonl import JsonLinesExporter
from .sqlite import SqliteExporter

__all__ = ["CsvExporter", "JsonArrayExporter", "JsonLinesExporter", "SqliteExporter"]


@hookimpl(trylast=True)  # bundled: any installed plugin may override it
def register_exporters(register: Callable[[type[Exporter]], None]) -> None:
    """Provide jsonl, json, csv and sqlite."""
    for exporter in (JsonLinesExporter, JsonArrayExporter, CsvExporter, SqliteExporter):
        register(exporter)
