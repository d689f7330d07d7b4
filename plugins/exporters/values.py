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

__all__ = ["dumps", "encode", "keys_as_written", "named", "simplify", "without_surrogates"]

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
    if _plain(item):  # the usual case: nothing to name
        return item
    named: Mapping[str, Any] = _named(item, frozenset(), {})
    return named


def _plain(item: Mapping[Any, Any]) -> bool:
    """Whether every key in ``item``, at every depth, is text already. Each container is
    looked at once: one met again (a cycle, a list shared twice) is not walked again."""
    stack: list[Any] = [item]
    seen: set[int] = set()
    while stack:
        value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, Mapping):
            for key, each in value.items():
                if type(key) is not str:
                    return False
                if type(each) not in _LEAVES:
                    stack.append(each)
        elif isinstance(value, list | tuple):
            stack.extend(each for each in value if type(each) not in _LEAVES)
    return True


def _named(value: Any, path: frozenset[int], done: dict[int, Any]) -> Any:
    """Name the keys of ``value`` at every depth; ``done`` holds each container named
    already (one shared twice is named once), ``path`` those it is inside."""
    if not isinstance(value, Mapping | list | tuple) or id(value) in path:
        return value  # a cycle is left for json to report
    if id(value) not in done:
        inside = path | {id(value)}
        if not isinstance(value, Mapping):
            done[id(value)] = [_named(each, inside, done) for each in value]
        else:
            done[id(value)] = {
                name: _named(value[key], inside, done) for name, key in _names(value).items()
            }
    return done[id(value)]


def _names(mapping: Mapping[Any, Any]) -> dict[str, Any]:
    """Map each key's name to the key; two keys of one name are a ``ValueError``."""
    names: dict[str, Any] = {}
    for key in mapping:
        first = names.setdefault(_name(key), key)
        if first is not key:
            raise ValueError(f"keys {first!r} and {key!r} are both {_name(key)!r} once written")
    return names


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


def keys_as_written(item: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return ``item`` with its keys as a header or a table writes them (a lone surrogate
    as ``\\udXXX``), so that a later run finds their columns again; raise ``ValueError``
    for two keys written alike (``k\\udc80`` and ``k\\\\udc80``): one value would be lost."""
    if all(key.isascii() for key in item):
        return item
    written = {without_surrogates(key): value for key, value in item.items()}
    if len(written) < len(item):
        keys = [without_surrogates(key) for key in item]
        twice = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"two keys of this item are both the column {twice!r}")
    return written


def without_surrogates(text: str) -> str:
    r"""Return ``text`` with each lone surrogate written ``\udXXX``, as ``encode`` writes it:
    before a format decides how to quote the text (a CSV cell), not after."""
    return text if text.isascii() else encode(text).decode("utf-8")


def encode(text: str) -> bytes:
    r"""Encode as UTF-8; a lone surrogate (from broken JSON input) becomes ``\udXXX``.

    Inside a JSON string that escape is exactly what the surrogate means, so the item is
    kept instead of failing the crawl with a ``UnicodeEncodeError``.
    """
    return text.encode("utf-8", "backslashreplace")
