"""Turn item values into JSON the same way in every exporter."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import json
from collections.abc import Mapping
from typing import Any, BinaryIO

__all__ = ["dumps", "write_all"]


def _default(value: Any) -> Any:
    """Encode what ``json`` cannot: dates, decimals, sets, bytes, dataclasses."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot export a value of type {type(value).__name__}: {value!r}")


def dumps(value: Mapping[str, Any] | Any) -> str:
    """Return compact JSON, keeping non-ASCII text readable."""
    return json.dumps(value, ensure_ascii=False, default=_default, separators=(",", ":"))


def write_all(file: BinaryIO, data: bytes) -> None:
    """Write all of ``data``; unbuffered files may accept a write only in part."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        view = view[written if written is not None else len(view):]
