"""Validate parsed YAML into frozen dataclasses, with errors that point at a line.

A schema is an ordinary frozen dataclass whose fields are declared with ``option()``;
the type hints say what each key accepts. The project file is one such schema, and a
plugin declares the schema of its own section the same way (``Spider.Options``)::

    @dataclass(frozen=True)
    class Options:
        city: str = option("beijing", doc="Which city's listing to start from.")
        pages: int = option(1, doc="How many listing pages to follow.", minimum=1)

Supported types: ``str``, ``int``, ``float``, ``bool``, ``Any``, ``X | None``,
``Literal[...]``, ``tuple[X, ...]`` (a YAML list), ``Mapping[str, X]`` and nested
schema dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from framework.config.yamlfile import EnvText, KeyPath, Source, format_key, quoted, shorten
from framework.errors import ErrorList, ProjectError, check_all

__all__ = [
    "build",
    "check_key_names",
    "convert",
    "did_you_mean",
    "has_default",
    "keys_of",
    "option",
    "show",
    "strings",
]

T = TypeVar("T")
#: Turns a raw value into the field's value, or raises ``ValueError`` with the reason.
Check = Callable[[Any], Any]
#: Turns a raw value into the field's value, raising the error at its key itself.
Parse = Callable[[Any, Source, KeyPath], Any]


def option(
    default: Any = dataclasses.MISSING,
    *,
    doc: str,
    minimum: float | None = None,
    maximum: float | None = None,
    check: Check | None = None,
    each: Check | None = None,
    parse: Parse | None = None,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """Declare one key of a schema: its default, its documentation and its limits.

    ``check`` runs after type conversion and may return a normalised value; ``each`` does
    the same for every element of a list, so that an error points at the element;
    ``parse`` replaces type conversion altogether for values that need the source.
    """
    metadata = {
        "doc": doc,
        "minimum": minimum,
        "maximum": maximum,
        "check": check,
        "each": each,
        "parse": parse,
    }
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def strings(check: Check, what: str, *, optional: bool = False) -> Parse:
    """Make a ``parse=`` hook for a list of strings that are never numbers, such as URLs.

    A ``tuple[str, ...]`` key takes ``[2024]`` as ``("2024",)``; this one refuses it, saying
    that ``what`` was expected (a host written ``5`` is a mistake, not a host). ``check``
    normalises each string; with ``optional`` a null is kept as None.
    """

    def parse(raw: Any, source: Source, path: KeyPath) -> tuple[Any, ...] | None:
        if raw is None and optional:
            return None
        items = enumerate(_sequence(Any, raw, source, path))
        return tuple(check_all(lambda index, item: one(item, source, (*path, index)), items))

    def one(item: Any, source: Source, at: KeyPath) -> Any:
        if not isinstance(item, str):
            raise source.error(at, f"expected {what}, got {show(item)}")
        return _checked(lambda text: check(str(text)), item, source, at)

    return parse


def has_default(f: dataclasses.Field[Any]) -> bool:
    """Tell whether a schema key may be left out."""
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def keys_of(schema: type[Any]) -> list[dataclasses.Field[Any]]:
    """Return the fields of ``schema`` that users write (those declared with ``option``)."""
    return [f for f in dataclasses.fields(schema) if "doc" in f.metadata]


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest choice, or ``""``."""
    close = _closest(word, choices)
    return f" (did you mean '{close}'?)" if close else ""


def _closest(word: str, choices: typing.Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def check_key_names(data: Mapping[Any, Any], source: Source, path: KeyPath) -> None:
    """Reject keys YAML did not read as strings, which no schema can name."""
    errors = ErrorList()
    for key in data:
        if not isinstance(key, str):
            errors.add(
                ProjectError(
                    source.where((*path, key)),  # the key's own line, not its mapping's
                    format_key(path),
                    f"{shorten(repr(key))} is not a key name: YAML reads on/off/yes/no "
                    "as true/false and digits as numbers; quote it ('on')",
                )
            )
    errors.raise_any()


def build(
    schema: type[T],
    data: Any,
    source: Source,
    path: KeyPath = (),
    internal: Mapping[str, Any] | None = None,
) -> T:
    """Validate ``data`` against ``schema`` and return the frozen instance.

    ``internal`` fills fields that are not user keys (e.g. the project's file path). Each
    key is checked on its own, and the errors of all are raised together. A ``ValueError``
    from the schema's ``__post_init__`` (a rule that spans several keys) becomes an error at
    ``path``, once every key is valid. A schema with an ``enabled`` key may be given as
    true or false alone, short for ``{enabled: true}``.
    """
    fields = {f.name: f for f in keys_of(schema)}
    if data is None:
        data = {}
    if "enabled" in fields and isinstance(_plain(data), bool):
        data = {"enabled": data}
    if not isinstance(data, Mapping):
        raise source.error(path, f"expected a mapping of keys, got {show(data)}")
    hints = get_type_hints(schema)
    errors = ErrorList()
    with errors.collect():
        _check_keys(data, fields, source, path)
    # A misspelt required key is one mistake, and the unknown key's error names the key.
    meant = {_closest(key, fields) for key in data if isinstance(key, str) and key not in fields}
    values = dict(internal or {})
    for name, f in fields.items():
        with errors.collect():
            if name in data:
                values[name] = _field_value(f, hints[name], data[name], source, (*path, name))
            elif not has_default(f) and name not in meant:
                raise source.error((*path, name), "required key is missing")
    errors.raise_any()
    try:
        return schema(**values)
    except ValueError as exc:
        raise source.error(path, str(exc)) from None


def _plain(raw: Any) -> Any:
    """Return a value as YAML reads it, an environment variable's text included."""
    return raw.scalar() if isinstance(raw, EnvText) else raw


def _check_keys(
    data: Mapping[Any, Any], fields: Mapping[str, Any], source: Source, path: KeyPath
) -> None:
    """Reject every key that is not a name, and every name that is not one of ``fields``."""
    errors = ErrorList()
    with errors.collect():
        check_key_names(data, source, path)
    for key in data:
        if isinstance(key, str) and key not in fields:
            errors.add(source.error((*path, key), f"unknown key{did_you_mean(key, fields)}"))
    errors.raise_any()


def _field_value(
    f: dataclasses.Field[Any], hint: Any, raw: Any, source: Source, path: KeyPath
) -> Any:
    meta = f.metadata
    if meta["parse"] is not None:
        return meta["parse"](raw, source, path)
    value = convert(hint, raw, source, path)
    if value is None:
        return None
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise source.error(path, f"must be at least {meta['minimum']}, got {show(raw)}")
    if meta["maximum"] is not None and value > meta["maximum"]:
        raise source.error(path, f"must be at most {meta['maximum']}, got {show(raw)}")
    if meta["each"] is not None:
        each = meta["each"]
        value = tuple(
            check_all(lambda i, v: _checked(each, v, source, (*path, i)), enumerate(value))
        )
    if meta["check"] is not None:
        value = _checked(meta["check"], value, source, path)
    return value


def _checked(check: Check, value: Any, source: Source, path: KeyPath) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise source.error(path, _masked(str(exc), value)) from None


def _masked(message: str, value: Any) -> str:
    """Say ``message`` without the value of an ``$env``, which may be a secret, whole or
    cut short by ``show``."""
    if not isinstance(value, EnvText) or not value:
        return message
    for shown in (show(str(value)), repr(str(value))):
        message = message.replace(shown, quoted(value))
    return message.replace(str(value), "***")


def convert(hint: Any, raw: Any, source: Source, path: KeyPath) -> Any:
    """Convert ``raw`` to the type ``hint`` or raise an error at ``path``."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return raw
    if origin in (typing.Union, types.UnionType):
        return _union(args, raw, source, path)
    if origin is Literal:
        if raw not in args:
            choices = ", ".join(repr(a) for a in args)
            raise source.error(path, f"must be one of {choices}, got {show(raw)}")
        return args[args.index(raw)]
    if origin is tuple:
        return _sequence(args[0], raw, source, path)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return _mapping(args[1] if args else Any, raw, source, path)
    if dataclasses.is_dataclass(hint):
        return build(typing.cast(type[Any], hint), raw, source, path)
    return _scalar(hint, raw, source, path)


def _union(args: tuple[Any, ...], raw: Any, source: Source, path: KeyPath) -> Any:
    if raw is None and type(None) in args:
        return None
    others = [a for a in args if a is not type(None)]
    if len(others) != 1:
        raise TypeError(f"schema unions other than 'X | None' are not supported: {args}")
    return convert(others[0], raw, source, path)


def _sequence(item: Any, raw: Any, source: Source, path: KeyPath) -> tuple[Any, ...]:
    if not isinstance(raw, list):
        raise source.error(path, f"expected a list, got {show(raw)}")
    return tuple(
        check_all(lambda i, value: convert(item, value, source, (*path, i)), enumerate(raw))
    )


def _mapping(value_type: Any, raw: Any, source: Source, path: KeyPath) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise source.error(path, f"expected a mapping, got {show(raw)}")
    check_key_names(raw, source, path)  # else headers: {on: x} sent a header named True
    values = check_all(lambda k, v: convert(value_type, v, source, (*path, k)), raw.items())
    return types.MappingProxyType(dict(zip(map(str, raw), values, strict=True)))


def _scalar(hint: Any, raw: Any, source: Source, path: KeyPath) -> Any:
    # An environment variable is text; a key that takes a number reads it as YAML would.
    value = raw.scalar() if isinstance(raw, EnvText) and hint is not str else raw
    if hint is float and isinstance(value, str) and _EXPONENT.fullmatch(value):
        value = float(value)  # YAML 1.1 reads 1e3 and 2.5e1 (no dot, no sign) as text
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise source.error(path, f"expected a finite number, got {show(raw)}")
        return float(value)
    # YAML reads `name: 2024` as a number; a string field takes it as written.
    if hint is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        # An $env value stays EnvText: it is a secret, which credentials.py keeps scoped.
        return value if isinstance(value, str) else str(value)
    raise source.error(path, f"expected {_describe(hint)}, got {show(raw)}")


#: A number with an exponent, as YAML 1.2 reads one (``1e3``, ``2.5e1``, ``.5E-2``).
_EXPONENT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+")


def _describe(hint: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if hint in names:
        return names[hint]
    return "a mapping" if dataclasses.is_dataclass(hint) else f"a {getattr(hint, '__name__', hint)}"


def show(value: Any) -> str:
    """Render a YAML value for an error message, short enough for one line."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, EnvText):
        return quoted(value)
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    text = (
        repr(value)
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )
    return shorten(text)
