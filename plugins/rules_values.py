"""What the ``rules`` spider reads from a matched node, and how a field's ``type`` converts it.

See ``plugins.rules`` for the ``rules:`` section these serve.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal

from lxml import etree
from parsel import Selector

from framework import Response

__all__ = ["TYPES", "FieldType", "fresh", "hrefs", "is_element", "is_missing", "text_of"]

FieldType = Literal["str", "int", "float", "bool", "url"]


# ---------------------------------------------------------------------------------------
# Reading matched nodes
# ---------------------------------------------------------------------------------------


def text_of(match: Selector, attr: str | None, *, link: bool) -> str | None:
    """Return what a match says: a string as is, an element's attribute or text content."""
    root = match.root
    if not hasattr(root, "itertext"):  # a text node, an attribute, an XPath number
        return (root if isinstance(root, str) else match.get()) if attr is None else None
    if attr is not None:
        value: str | None = root.get(attr)
        return value
    return _own_link(root) if link else "".join(root.itertext())


def is_element(match: Selector) -> bool:
    """Tell whether a match is an element, not text, an attribute or an XPath value."""
    return isinstance(match.root, etree._Element)


def hrefs(match: Selector) -> list[str]:
    """Return a match's link: its own href or src, else those of the links inside it."""
    if isinstance(match.root, str):
        return [match.root]
    own = _own_link(match.root)
    return [own] if own else match.xpath(".//a/@href").getall()


def _own_link(element: Any) -> str | None:
    link: str | None = element.get("href") or element.get("src")
    return link


def is_missing(value: Any) -> bool:
    """Tell whether a field's value counts as missing: nothing, or an empty list."""
    return value is None or value == []


def fresh(value: Any) -> Any:
    """Copy a YAML list or mapping, so that changing one item cannot change the next."""
    return copy.deepcopy(value) if isinstance(value, list | dict) else value


# ---------------------------------------------------------------------------------------
# Types: from matched text to a field's value
# ---------------------------------------------------------------------------------------

_NUMBER = re.compile(
    r"""
    (?:(?<!\w)(?P<sign>[-\u2212]))?       # a minus, unless it joins words (COVID-19)
    (?P<digits>\d{1,3}(?:,\d{3})+(?!\d)   # 1,234,567: commas between thousands
              |\d+)
    (?P<fraction>\.\d+)?
    (?P<suffix>[kKMB](?![a-zA-Z]))?        # 1.5k, 3M, 2B; not the K of "5 Kids"
    """,
    re.VERBOSE,
)
_EXPONENT: dict[str | None, int] = {None: 0, "k": 3, "K": 3, "M": 6, "B": 9}
_FALSE = frozenset({"false", "no", "off", "0"})


def _number(text: str, kind: Callable[[Decimal], Any]) -> Any:
    """Read the first number in ``text`` as ``kind`` (int or float), or return None."""
    found = _NUMBER.search(text)
    if found is None:
        return None
    sign, digits, fraction, suffix = found.group("sign", "digits", "fraction", "suffix")
    # Building a Decimal from text is exact (arithmetic would round to 28 digits), so a
    # 40-digit integer stays exact; int() of it drops a fraction toward zero.
    number = Decimal(
        f"{'-' if sign else ''}{digits.replace(',', '')}{fraction or ''}E{_EXPONENT[suffix]}"
    )
    return kind(number)


#: How each ``type:`` of a field turns matched text into its value (None: missing).
TYPES: dict[str, Callable[[str, Response], Any]] = {
    "str": lambda text, response: text or None,
    "int": lambda text, response: _number(text, int),
    "float": lambda text, response: _number(text, float),
    "bool": lambda text, response: text.lower() not in _FALSE,
    "url": lambda text, response: response.urljoin(text) if text else None,
}
