"""The project file: loaded once, validated into frozen objects, every error at its line.

- ``yamlfile``: YAML with the line of every key, ``$env`` values, and limits on its size,
  nesting and aliases.
- ``schema``: frozen dataclasses as schemas (``option()``), and the validator.
- ``project``: the ``Project`` schema, ``-s`` overrides, and ``load_project``.

What this package exports is public: what a plugin needs to declare the options of its
section and to validate them itself where a type hint is not enough (docs/options.md).
``fw``'s own ``rules`` plugin uses exactly this.
"""

from __future__ import annotations

from framework.config.schema import Check, Parse, build, convert, option
from framework.config.yamlfile import KeyPath, Source
from framework.errors import check_all

__all__ = ["Check", "KeyPath", "Parse", "Source", "build", "check_all", "convert", "option"]
