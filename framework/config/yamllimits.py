"""Bound what a YAML document may cost: its size, its nesting and what its aliases repeat.

A few hundred bytes of nested aliases (a "billion laughs") stand for gigabytes once
something walks or copies the value, and deep nesting overflows every recursive walk.
``BoundedLoader`` checks each event as the composer takes it, before the composer
recurses or anything is built, so a refused document costs no more than its text.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_REPEATED", "BoundedLoader", "Overrun", "parse"]

#: Project files are a few KB; PyYAML reads about 1 MB a second, and a file much larger
#: than this is a mistake (a data file named by accident) that would stall fw for seconds.
MAX_BYTES = 1024 * 1024

#: Composing, and every walk over the loaded value, recurse once per level: 100 levels
#: stay far below Python's 1000 frames and far above any real project.
MAX_DEPTH = 100

#: Each alias repeats its anchor's value, and the rules spider copies a ``const`` into
#: every item; 100,000 repeated values cost megabytes per copy, an alias bomb gigabytes.
MAX_REPEATED = 100_000


class Overrun(yaml.YAMLError):
    """A document went past a limit; ``problem`` says which, the caller says in what."""

    def __init__(self, problem: str, event: yaml.Event) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = event.start_mark.line + 1 if event.start_mark else 1


class BoundedLoader(yaml.SafeLoader):
    """A ``SafeLoader`` that raises ``Overrun`` at the first event past a limit."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._open: list[tuple[str | None, int]] = []  # each open collection's anchor, start
        self._sizes: dict[str, int | None] = {}  # each anchor's values; None while it is open
        self._written = self._expanded = 0  # values written; values with aliases expanded

    def get_event(self) -> Any:
        """Return the next event, counting it first."""
        event = super().get_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
        if isinstance(event, yaml.AliasEvent):
            self._repeat(event)
        elif isinstance(event, yaml.CollectionStartEvent):
            self._begin(event)
        elif isinstance(event, yaml.ScalarEvent):
            self._count(event, 1)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, start = self._open.pop()
            if anchor is not None:
                self._sizes[anchor] = self._expanded - start
        return event

    def _begin(self, event: yaml.CollectionStartEvent) -> None:
        self._open.append((event.anchor, self._expanded))
        self._count(event, None)
        if len(self._open) > MAX_DEPTH:
            raise Overrun(
                f"the value here is nested {len(self._open)} levels deep; "
                f"fw reads values nested up to {MAX_DEPTH} levels",
                event,
            )

    def _count(self, event: yaml.NodeEvent, size: int | None) -> None:
        self._written += 1
        self._expanded += 1
        if event.anchor is not None:
            self._sizes[event.anchor] = size

    def _repeat(self, event: yaml.AliasEvent) -> None:
        size = self._sizes.get(event.anchor or "", 0)  # an unknown anchor: the composer says so
        if size is None:
            raise Overrun(
                f"the alias *{event.anchor} is inside the value &{event.anchor} it repeats, "
                "which would never end",
                event,
            )
        self._expanded += size
        if self._expanded - self._written > MAX_REPEATED:
            raise Overrun(
                f"the aliases up to here repeat {self._expanded - self._written:,} values; "
                f"fw expands aliases to at most {MAX_REPEATED:,} values",
                event,
            )


def parse(text: str) -> Any:
    """Return the value of a YAML document; raise ``Overrun`` past a limit."""
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
