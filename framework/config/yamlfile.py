"""Load a YAML file, within limits, and remember the line of every key.

A few hundred bytes of nested aliases (a "billion laughs") stand for gigabytes once
something walks or copies the value, and deep nesting overflows every recursive walk.
The loader checks each event as the composer takes it, before the composer recurses or
anything is built, so a refused document costs no more than its text.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from framework.errors import ProjectError, check_all

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_REPEATED",
    "EnvText",
    "KeyPath",
    "Overrun",
    "Source",
    "format_key",
    "load",
    "parse",
    "quoted",
    "resolve_env",
    "shorten",
]

#: Project files are a few KB; PyYAML reads about 1 MB a second, and a file much larger
#: than this is a mistake (a data file named by accident) that would stall fw for seconds.
MAX_BYTES = 1024 * 1024

#: Composing, and every walk over the loaded value, recurse once per level: 100 levels
#: stay far below Python's 1000 frames and far above any real project.
MAX_DEPTH = 100

#: Each alias repeats its anchor's value, and the rules spider copies a ``const`` into
#: every item; 100,000 repeated values cost megabytes per copy, an alias bomb gigabytes.
MAX_REPEATED = 100_000

#: Where a value sits in the document: ``("exporters", 0, "path")``.
KeyPath = tuple[str | int, ...]


def format_key(path: KeyPath) -> str:
    """Render ``("exporters", 0, "path")`` as ``exporters[0].path``, each key cut short."""
    out = ""
    for part in path:
        key = f"[{part}]" if isinstance(part, int) else shorten(str(part))
        out += f".{key}" if out and not isinstance(part, int) else key
    return out


def shorten(text: str, limit: int = 60) -> str:
    """Cut ``text`` to ``limit`` characters for an error message: a value may be 1 MB long."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Source:
    """The file a document came from, and where each of its keys was written."""

    def __init__(
        self,
        file: Path,
        lines: Mapping[KeyPath, int],
        overrides: Mapping[KeyPath, str] = MappingProxyType({}),
        secrets: list[EnvText] | None = None,
    ) -> None:
        self.file, self._lines, self._overrides = file, lines, overrides
        #: The ``$env`` values read through this source (and its copies): never shown.
        self._secrets = [] if secrets is None else secrets

    def with_overrides(self, paths: Mapping[KeyPath, str]) -> Source:
        """Return a copy that attributes each of ``paths``, in order, to what gave it on
        the command line: ``-s``, or a flag that stands for one (``--cache``). A path
        replaces what was overridden under it: its value is the later override's."""
        overrides = dict(self._overrides)
        for path, given in paths.items():
            for older in [o for o in overrides if o[: len(path)] == path]:
                del overrides[older]
            overrides[path] = given
        return Source(self.file, self._lines, overrides, self._secrets)

    def where(self, path: KeyPath) -> str:
        """Return what gave a value from the command line (``-s``), else ``FILE:LINE``.

        The line is that of the nearest enclosing key the file has.
        """
        if (given := self._overridden(path)) is not None:
            return given
        for n in range(len(path), -1, -1):
            if path[:n] in self._lines:
                return f"{self.file}:{self._lines[path[:n]]}"
        return f"{self.file}:1"

    def set_under(self, path: KeyPath) -> list[KeyPath]:
        """Return the keys at or under ``path`` that the command line set (``-s``, or a
        flag standing for one)."""
        return [o for o in self._overrides if o[: len(path)] == path]

    def _overridden(self, path: KeyPath) -> str | None:
        """Return what gave the override ``path`` lies in, or is a key created by; None if
        none did.

        An override replaces the whole value at its key, so the file's lines for what it
        replaced must not be blamed: any overridden prefix wins over a longer line.
        """
        for n in range(len(path), 0, -1):  # the override nearest the value gave it
            if (given := self._overrides.get(path[:n])) is not None:
                return given
        if path in self._lines:
            return None
        return next((g for o, g in self._overrides.items() if o[: len(path)] == path), None)

    def error(self, path: KeyPath, message: str) -> ProjectError:
        """Build the error for a problem with the value at ``path``; an ``$env`` value it
        quotes (a plugin's check may) is named instead, as ``quoted`` does."""
        return ProjectError(self.where(path), format_key(path), self._masked(message))

    def secret(self, value: EnvText) -> EnvText:
        """Remember ``value``, read from ``$env``, so that no error of this file shows it:
        one long enough to be a secret and not a number or true/false, which an error's
        own words may hold (``must be true or false``)."""
        if len(value) >= _SHORTEST_SECRET and isinstance(value.scalar(), str):
            self._secrets.append(value)
        return value

    def _masked(self, message: str) -> str:
        for value in sorted(self._secrets, key=len, reverse=True):
            message = message.replace(repr(str(value)), quoted(value))
            for spelling in {str(value), value.lower()}:  # a host name comes lower-cased
                message = re.sub(rf"(?<!\w){re.escape(spelling)}(?!\w)", "***", message)
        return message


#: A shorter ``$env`` value is not masked in errors: it would mask their words (``obey``).
_SHORTEST_SECRET = 8


#: What YAML counts as a line break (YAML 1.1, as PyYAML reads it).
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def load(file: Path) -> tuple[Any, Source]:
    """Parse ``file``; raise ``ProjectError`` at the line of a syntax error or an overrun."""
    text = _read(file)
    try:
        data, lines = _parse(text, file)
    except Overrun as exc:
        raise ProjectError(f"{file}:{exc.line}", "", exc.problem) from exc
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(file, text, exc) from exc
    except yaml.reader.ReaderError as exc:  # a character YAML forbids: at its own line
        line = len(_LINE_BREAK.findall(text, 0, exc.position)) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        name = " (NUL)" if code == 0 else ""
        raise ProjectError(
            f"{file}:{line}", "", f"invalid YAML: character U+{code:04X}{name} is not allowed"
        ) from exc
    except yaml.YAMLError as exc:
        raise ProjectError(f"{file}:1", "", f"invalid YAML: {exc}") from exc
    source = Source(file, lines)
    return resolve_env(data, source, ()), source


#: O_NONBLOCK: opening a FIFO does not wait for a writer; O_NOCTTY: nor does a terminal
#: become fw's. Either is then refused for not being a regular file.
_OPEN = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY


def _read(file: Path) -> str:
    """Return the text of ``file``, refusing a file over ``MAX_BYTES`` before reading it all,
    and anything but a regular file (a FIFO or a device may never end)."""
    try:
        fd = os.open(file, _OPEN)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ProjectError(str(file), "", f"not a regular file ({_kind(info.st_mode)})")
            with open(fd, "rb", closefd=False) as stream:
                raw = stream.read(MAX_BYTES + 1)
        finally:
            os.close(fd)
        if len(raw) > MAX_BYTES:
            raise _too_big(file, info.st_size)
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(str(file), "", f"cannot read the project file: {_reason(exc)}") from exc


def _kind(mode: int) -> str:
    kinds = {"d": "a folder", "p": "a FIFO", "c": "a device", "b": "a device", "s": "a socket"}
    return kinds.get(stat.filemode(mode)[0], "an unusual file")


def _too_big(file: Path, size: int) -> ProjectError:
    known = f"{max(size, MAX_BYTES + 1):,} bytes"  # it grew while read: at least this
    limit = f"fw reads project files up to {MAX_BYTES:,} bytes"
    return ProjectError(f"{file}:1", "", f"the project file is {known}; {limit}")


def _parse(text: str, file: Path) -> tuple[Any, dict[KeyPath, int]]:
    """Compose ``text`` once; note the line of each key, then build the value from the nodes."""
    loader = _BoundedLoader(text)
    try:
        root = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        if root is None:
            return None, lines
        # First: building merges ``<<`` into nodes.
        _record_lines(root, (), lines, set(), (file, loader))
        return loader.construct_document(root), lines
    finally:
        loader.dispose()


class Overrun(yaml.YAMLError):
    """A document went past a limit; ``problem`` says which, the caller says in what."""

    def __init__(self, problem: str, event: yaml.Event) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = event.start_mark.line + 1 if event.start_mark else 1


class _BoundedLoader(yaml.SafeLoader):
    """A ``SafeLoader`` that raises ``Overrun`` at the first event past a limit.

    Depth counts what the value will be, aliases expanded: an alias is as deep as the
    value it repeats, so a chain of anchors each nesting the previous one is caught.
    ``depth`` is how deep the document's value will sit (an ``-s`` key path).
    """

    def __init__(self, text: str, depth: int = 0) -> None:
        super().__init__(text)
        self._depth = depth
        # Each open collection: its anchor, the values expanded before it, and the height
        # of its tallest child so far.
        self._open: list[list[Any]] = []
        self._sizes: dict[str, int | None] = {}  # each anchor's values; None while it is open
        self._heights: dict[str, int] = {}  # each anchor's levels of nesting
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
            self._end()
        return event

    def _begin(self, event: yaml.CollectionStartEvent) -> None:
        self._open.append([event.anchor, self._expanded, 0])
        self._count(event, None)
        self._check_depth(self._depth + len(self._open), event)

    def _end(self) -> None:
        anchor, start, tallest = self._open.pop()
        if anchor is not None:
            self._sizes[anchor] = self._expanded - start
            self._heights[anchor] = tallest + 1
        self._nested(tallest + 1)

    def _nested(self, height: int) -> None:
        """Note a child ``height`` levels tall in the innermost open collection."""
        if self._open and height > self._open[-1][2]:
            self._open[-1][2] = height

    def _check_depth(self, depth: int, event: yaml.Event, alias: str | None = None) -> None:
        if depth <= MAX_DEPTH:
            return
        what = f"with the alias *{alias} here, the value is" if alias else "the value here is"
        raise Overrun(
            f"{what} nested {depth} levels deep; fw reads values nested up to {MAX_DEPTH} levels",
            event,
        )

    def _count(self, event: yaml.NodeEvent, size: int | None) -> None:
        self._written += 1
        self._expanded += 1
        if event.anchor is not None:
            self._sizes[event.anchor] = size

    def _repeat(self, event: yaml.AliasEvent) -> None:
        anchor = event.anchor or ""
        size = self._sizes.get(anchor, 0)  # an unknown anchor: the composer says so
        if size is None:
            raise Overrun(
                f"the alias *{anchor} is inside the value &{anchor} it repeats, "
                "which would never end",
                event,
            )
        height = self._heights.get(anchor, 0)
        depth = self._depth + len(self._open) + height
        self._check_depth(depth, event, anchor)
        self._nested(height)
        self._expanded += size
        if self._expanded - self._written > MAX_REPEATED:
            raise Overrun(
                f"the aliases up to here repeat {self._expanded - self._written:,} values; "
                f"fw expands aliases to at most {MAX_REPEATED:,} values",
                event,
            )


def parse(text: str, depth: int = 0) -> Any:
    """Return the value of a YAML document; raise ``Overrun`` past a limit.

    ``depth`` is how many levels deep the value will sit, which count against the limit.
    """
    loader = _BoundedLoader(text, depth)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


#: Where PyYAML notices that one of these is unfinished is where it gave up (the next key,
#: or past the end of the file); the mistake is on the line where it began.
_BEGUN = {
    "while parsing a flow sequence": "in the [ opened on this line",
    "while parsing a flow mapping": "in the { opened on this line",
    "while scanning a quoted scalar": "in the string quoted on this line",
    "while scanning a simple key": "after the key on this line",
}


def _syntax_error(file: Path, text: str, exc: yaml.MarkedYAMLError) -> ProjectError:
    """Blame the line to fix: where an unclosed bracket or quote began, else the problem's."""
    last = max(len(text.splitlines()), 1)
    problem = exc.problem or str(exc)
    line = exc.problem_mark.line + 1 if exc.problem_mark else 1
    begun = _BEGUN.get(exc.context or "") if exc.context_mark else None
    if exc.context_mark is None or begun is None:
        return ProjectError(f"{file}:{min(line, last)}", "", f"invalid YAML: {problem}")
    opened = exc.context_mark.line + 1
    at = "" if line == opened else f" on line {line}" if line <= last else " at the end of the file"
    return ProjectError(f"{file}:{opened}", "", f"invalid YAML {begun}: {problem}{at}")


def resolve_env(
    value: Any, source: Source, path: KeyPath, memo: dict[int, Any] | None = None
) -> Any:
    """Replace each ``{"$env": "NAME"}`` by the environment variable NAME (secrets).

    A mapping or list shared through YAML aliases is resolved once (``memo``), so a
    "billion laughs" document costs no more than its size here either. Every variable
    that is not set is reported, not just the first.
    """
    memo = {} if memo is None else memo
    if not isinstance(value, dict | list):
        return value
    if id(value) in memo:
        return memo[id(value)]
    if isinstance(value, dict) and set(value) == {"$env"}:
        resolved: Any = source.secret(_env(value["$env"], source, path))
    elif isinstance(value, dict):
        values = check_all(lambda k, v: resolve_env(v, source, (*path, k), memo), value.items())
        resolved = dict(zip(value, values, strict=True))
    else:
        resolved = check_all(
            lambda i, v: resolve_env(v, source, (*path, i), memo), enumerate(value)
        )
    memo[id(value)] = resolved
    return resolved


class EnvText(str):
    """The value of an environment variable named with ``$env``, as text.

    It stays text, so that a secret such as ``0123`` reaches a string key unchanged (YAML
    would read it as the number 83); a key that takes a number or true/false reads it as a
    YAML scalar instead (``scalar()``), so ``D=0.5`` works for ``delay: {$env: D}``.
    """

    name: str

    def __new__(cls, text: str, name: str = "") -> EnvText:
        self = super().__new__(cls, text)
        self.name = name
        return self

    def __getnewargs__(self) -> tuple[str, str]:  # type: ignore[override]  # copy and pickle
        return str(self), self.name

    def scalar(self) -> Any:
        """Return the text read as a YAML number or boolean, or the text if it is neither."""
        try:
            value = parse(self)
        except yaml.YAMLError:
            return str(self)
        return value if isinstance(value, bool | int | float) else str(self)


def quoted(value: str) -> str:
    """Quote ``value`` for an error message; one from ``$env`` may be a secret: name it."""
    if isinstance(value, EnvText):
        return f"the value of $env {value.name} (not shown)"
    return repr(value)


def _env(name: Any, source: Source, path: KeyPath) -> EnvText:
    if not isinstance(name, str) or not name:
        raise source.error(path, "$env takes the name of an environment variable")
    found = os.environ.get(name)
    if found is None:
        raise source.error(path, f"the environment variable {name} is not set")
    return EnvText(found, name)


def _record_lines(
    node: yaml.Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    seen: set[int],
    reading: tuple[Path, yaml.SafeLoader],
) -> None:
    """Walk the composed node tree beside the loaded data and note each key's line.

    Each node is walked once, so a small file of nested aliases (a "billion laughs") costs
    no more than its size; a key written twice in one mapping is an error.
    """
    lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                line = key.start_mark.line + 1
                if key.value in keys and key.tag != "tag:yaml.org,2002:merge":
                    raise ProjectError(
                        f"{reading[0]}:{line}",
                        format_key((*path, key.value)),
                        f"written twice (first on line {keys[key.value]})",
                    )
                keys[key.value] = lines[(*path, key.value)] = line
                if key.tag in _TYPED:  # `on:` is the key True: its errors point here too
                    lines.setdefault((*path, reading[1].construct_object(key)), line)
                _record_lines(value, (*path, key.value), lines, seen, reading)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*path, index), lines, seen, reading)


#: The tags of keys YAML reads as something else than text.
_TYPED = frozenset(
    f"tag:yaml.org,2002:{kind}" for kind in ("bool", "int", "float", "null", "timestamp")
)


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
