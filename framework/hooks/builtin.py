"""fw's built-in plugin, ``fw``: its HTML, XML and JSON parsers.

Registered first and ``trylast``, so that any plugin's parser for the same media type
replaces fw's own.
"""

from __future__ import annotations

from collections.abc import Callable

from framework.fetch.parsers import BUILT_IN
from framework.hookspecs import hookimpl
from framework.http import Parser

__all__ = ["register_parsers"]


@hookimpl(trylast=True)
def register_parsers(register: Callable[[str, Parser], None]) -> None:
    """Provide fw's parsers, last, so that plugins can replace any of them."""
    for media_type, parser in BUILT_IN.items():
        register(media_type, parser)
