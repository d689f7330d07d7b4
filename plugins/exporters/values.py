"""Turn items' keys and values into JSON (and text) the same way in every exporter."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps", "encode", "named", "simplify"]

#: How deep ``named`` looks for keys that are not text (a cycle ends there too).
_DEEPEST = 100
#: Values that hold no keys: most of an item's, passed over without a call.
_LEAVES = frozenset({str, int, float, bool, type(None)})

#: Characters json leaves raw that ``str.splitlines`` (and older JavaScript) take as a line
#: break: one would split a JSON line in two for many readers.
_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")


def simplify(value: Any) -> Any:
    """Return what JSON shows for a value ``json`` cannot encode itself; others unchanged.

    Dates and times become ISO 8601 text, decimals text, sets lists, bytes base64 text,
    dataclasses dicts.
    """
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
    return value


def named(item: Mapping[Any, Any]) -> Mapping[str, Any]:
    """Return ``item`` with every key as text, at every depth, the same in every format:
    None, booleans and numbers as JSON writes them (``null``, ``true``, ``1.5``), other
    keys with ``str``.

    Raises ``ValueError`` for two keys of one mapping with one name (``1`` and ``"1"``): a
    file holds one value per name, so the other would be lost.
    """
    if _plain(item, 0):  # the usual case: nothing to name
        return item
    named: Mapping[str, Any] = _named(item, frozenset())
    return named


def _plain(value: Any, depth: int) -> bool:
    """Whether every key in ``value``, down to ``_DEEPEST``, is text already."""
    if depth > _DEEPEST:  # a cycle, or deeper than items go: json says what it makes of it
        return True
    if isinstance(value, Mapping):
        for key, each in value.items():
            if type(key) is not str or (type(each) not in _LEAVES and not _plain(each, depth + 1)):
                return False
    elif isinstance(value, list | tuple):
        for each in value:
            if type(each) not in _LEAVES and not _plain(each, depth + 1):
                return False
    return True


def _named(value: Any, path: frozenset[int]) -> Any:
    if not isinstance(value, Mapping | list | tuple) or id(value) in path:
        return value  # a cycle is left for json to report
    path = path | {id(value)}
    if not isinstance(value, Mapping):
        return [_named(each, path) for each in value]
    names: dict[str, Any] = {}
    for key in value:
        first = names.setdefault(_name(key), key)
        if first is not key:
            raise ValueError(f"keys {first!r} and {key!r} are both {_name(key)!r} once written")
    return {name: _named(value[key], path) for name, key in names.items()}


def _name(key: Any) -> str:
    if isinstance(key, str):
        return str.__str__(key)  # the text itself, as JSON takes it: not a StrEnum's str()
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    return str(key)


def _default(value: Any) -> Any:
    simple = simplify(value)
    if simple is value:
        raise TypeError(f"cannot export a value of type {type(value).__name__}: {value!r}")
    return _finite(simple)


def _finite(value: Any, path: frozenset[int] = frozenset()) -> Any:
    """Replace NaN and infinities by None: JSON has no such numbers, strict readers reject them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if not isinstance(value, dict | list | tuple) or id(value) in path:
        return value  # a cycle is left for json to report
    path = path | {id(value)}
    if isinstance(value, dict):
        return {key: _finite(v, path) for key, v in value.items()}
    return [_finite(v, path) for v in value]


#: One encoder for all items: json.dumps with any option builds a new one per call.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, default=_default, allow_nan=False, separators=(",", ":")
)


def dumps(value: Mapping[str, Any] | Any) -> str:
    """Return compact, strictly valid JSON on one line, keeping non-ASCII text readable."""
    try:
        text = _ENCODER.encode(value)
    except ValueError:  # NaN or infinity somewhere: rare, so only then walk the value
        text = _ENCODER.encode(_finite(value))
    if _LINE_BREAKS.search(text) is None:  # the usual case: nothing to escape
        return text
    return _LINE_BREAKS.sub(lambda match: f"\\u{ord(match[0]):04x}", text)


def encode(text: str) -> bytes:
    r"""Encode as UTF-8; a lone surrogate (from broken JSON input) becomes ``\udXXX``.

    Inside a JSON string that escape is exactly what the surrogate means, so the item is
    kept instead of failing the crawl with a ``UnicodeEncodeError``.
    """
    return text.encode("utf-8", "backslashreplace")
