"""The bundled ``schema`` plugin: validate every item against the spider's ``Item`` type.

A spider declares what it yields::

    @dataclass                       # or a TypedDict, or a pydantic model
    class Book:
        title: str
        price: float
        stock: int | None = None

    class ShopSpider(Spider):
        name = "shop"
        Item = Book

Each item is then checked by pydantic (``TypeAdapter``): the types of its fields, nested
ones included, the fields it must have, and no field the type does not declare (a typo
would otherwise be exported as a column of its own). An item that fails is not exported:
it is counted as ``item_invalid`` and logged with the field and the reason, and its page
is listed in the failures file (``fw run --retry-failed`` fetches it again once the
spider is fixed). An item that passes goes on as JSON data in the type's field order:
dates as ISO 8601 text, decimals as text, enums as their values. The exporters know the
fields before the first item: a CSV file's header lists them all from the first row.

Values are converted only where nothing is lost, that is where the value reads back as
what the spider yielded:

- text to ``int`` when it is a plain integer: ``"3"``, ``"-12"``; not ``"03"``, ``"+3"``,
  ``" 3"``, ``"3.0"``, ``"3_000"`` or ``"1e3"`` (``"03"`` is often an identifier);
- text to ``float`` when it is a plain decimal number that a float holds: ``"8.7"``,
  ``"3"``, ``"8.70"``; not ``".5"``, ``"1e3"``, ``"nan"``, nor more digits than a float keeps;
- ``int`` to ``float`` when the float holds it exactly, and a ``float`` without a fraction
  to ``int`` (``3.0`` → ``3``);
- text to a date, time or datetime when it is written as ``isoformat()`` writes it (a
  final ``Z`` for UTC too); text to a ``Decimal``, a UUID or another type when the value
  reads back as the same text; a value to an ``Enum`` member holding it;
- a tuple to a list, element by element.

Nothing else: no number from a bool or a bool from ``1`` or ``"yes"``, no list from a
set, no text from a number.

On Python 3.11 a ``TypedDict`` must come from ``typing_extensions`` (pydantic's rule).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from typing_extensions import is_typeddict

from framework import InvalidItem, ItemContext, ItemStep, Spider, hookimpl

if TYPE_CHECKING:
    from pydantic import TypeAdapter, ValidationError

__all__ = ["SchemaStep", "item_step"]

_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
#: How many of pydantic's errors about one item are named in its log line.
_NAMED = 3


@hookimpl(tryfirst=True)  # first: it checks what the spider yielded, before any other step
def item_step(spider: Spider) -> ItemStep | None:
    """Validate the items of a spider that declares ``Item``."""
    kind = type(spider).Item
    return None if kind is None else SchemaStep(kind, spider.name)


class SchemaStep(ItemStep):
    """Validate items against one type; convert values only where nothing is lost."""

    def __init__(self, kind: type[Any], spider: str) -> None:
        from pydantic import PydanticSchemaGenerationError, PydanticUserError, TypeAdapter

        self.name = getattr(kind, "__name__", repr(kind))
        self._fields = _fields_of(kind, spider)
        try:
            self._adapter: TypeAdapter[Any] = TypeAdapter(kind)
        except (PydanticUserError, PydanticSchemaGenerationError) as exc:
            detail = " ".join(str(exc).split("\n\n")[0].split())
            raise TypeError(
                f"spider {spider}: Item = {self.name} cannot be validated: {detail}"
            ) from None

    def columns(self, columns: list[str] | None) -> list[str] | None:
        """The type's fields, in order, whatever came before (this step comes first)."""
        return list(self._fields)

    def process(self, item: dict[str, Any], context: ItemContext) -> dict[str, Any]:
        """Return the item validated, in the type's field order; raise ``InvalidItem``."""
        from pydantic import ValidationError

        try:
            value = self._adapter.validate_python(item)
        except ValidationError as exc:
            raise _invalid(exc, self.name) from None
        lost = _loss(item, self._adapter.dump_python(value), "", self.name)
        if lost is not None:
            field, reason = lost
            raise InvalidItem(reason, field=field)
        converted: dict[str, Any] = self._adapter.dump_python(value, mode="json")
        return converted


def _fields_of(kind: type[Any], spider: str) -> list[str]:
    """Return the fields of a dataclass, TypedDict or pydantic model, in order."""
    if dataclasses.is_dataclass(kind):
        return [f.name for f in dataclasses.fields(kind)]
    if is_typeddict(kind):
        return list(kind.__annotations__)
    fields = getattr(kind, "model_fields", None)
    if isinstance(fields, Mapping):
        return list(fields)
    raise TypeError(
        f"spider {spider}: Item = {kind!r}: expected a dataclass, a TypedDict or a "
        "pydantic model, whose fields name the columns"
    )


def _invalid(error: ValidationError, name: str) -> InvalidItem:
    """Turn pydantic's errors about an item into one ``InvalidItem``: the first one's field
    and reason, and the fields of the next few."""
    problems = error.errors(include_url=False)
    first = problems[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    if first["type"] == "missing":
        reason = f"required by {name}, but missing"
    elif not first["loc"]:
        reason = f"{first['msg']} ({name}), got {type(first['input']).__name__}"
    else:
        reason = f"{first['msg']}, got {_short(first['input'])} ({name})"
    others = [".".join(str(part) for part in p["loc"]) for p in problems[1 : 1 + _NAMED]]
    if others:
        more = len(problems) - 1
        reason += f"; and {more} more: {', '.join(others)}{', ...' if more > _NAMED else ''}"
    return InvalidItem(reason, field=field)


def _loss(before: Any, after: Any, path: str, name: str) -> tuple[str, str] | None:
    """Return (field, why) where validating ``before`` into ``after`` lost something."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key, value in before.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in after:
                return where, f"not a field of {name}" if not path else "not a field there"
            if (lost := _loss(value, after[key], where, name)) is not None:
                return lost
        return None
    if isinstance(before, list | tuple) and isinstance(after, list | tuple):
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            if (lost := _loss(old, new, f"{path}.{index}", name)) is not None:
                return lost
        return None
    if type(before) is type(after) or _lossless(before, after):
        return None  # the same type: whatever the type's own validators did, it asked for
    return path, (
        f"{_short(before)} would become {_short(after)}, which does not read back the same; "
        f"{name} needs the value itself (only lossless conversions are made)"
    )


def _lossless(before: Any, after: Any) -> bool:
    """Tell whether ``after`` (another type) holds exactly what ``before`` said."""
    if isinstance(before, bool) or isinstance(after, bool):
        return False
    if isinstance(after, enum.Enum):
        return bool(after.value == before) and type(after.value) is type(before)
    if isinstance(before, str):
        return _from_text(before, after)
    if isinstance(before, int) and isinstance(after, float):
        return int(after) == before
    if isinstance(before, float) and isinstance(after, int):
        return float(after) == before
    return False


def _from_text(text: str, value: Any) -> bool:
    if isinstance(value, int):
        return _INT.fullmatch(text) is not None
    if isinstance(value, float):
        try:
            return _FLOAT.fullmatch(text) is not None and Decimal(text) == Decimal(repr(value))
        except InvalidOperation:
            return False
    if isinstance(value, datetime.date | datetime.time):
        written = value.isoformat()
        return text == written or (written.endswith("+00:00") and text == written[:-6] + "Z")
    return str(value) == text


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
