"""Collect what plugins register: spiders, exporters, parsers, middlewares, fetch layers
and callbacks."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from framework.__about__ import DISTRIBUTION
from framework.config.yamlfile import shorten
from framework.exporters import Exporter
from framework.fetch.layers import FetchLayer
from framework.fetch.parsers import Parsers
from framework.hooks.manager import HookCall, PluginManager, exited, hook_calls
from framework.middleware import Middleware
from framework.spider import CALLBACK_ARGUMENTS, PluginCallback, Spider

__all__ = ["Flag", "Registry", "flags", "section_schema"]

log = logging.getLogger("fw")


class Registry:
    """Everything the installed plugins provide, by name; the first registration wins."""

    def __init__(self) -> None:
        self.spiders: dict[str, type[Spider]] = {}
        self.exporters: dict[str, type[Exporter]] = {}
        self.middlewares: dict[str, type[Middleware]] = {}
        self.fetch_layers: dict[str, type[FetchLayer]] = {}
        self.parsers = Parsers()
        #: The callbacks plugins provide for their own requests, by name (``sitemaps:sitemap``).
        self.callbacks: dict[str, PluginCallback] = {}
        #: Which plugin provided each thing: ``("spiders", "douban") -> "douban"``.
        self.owners: dict[tuple[str, str], str] = {}
        #: The schema each plugin module declares for its own section (``Options``).
        self.schemas: dict[str, type[Any]] = {}
        #: The plugins that may read a section named after them: those declaring
        #: ``Options``, those with a hook handed the project, and disabled ones (unknown).
        self.readers: set[str] = set()
        #: The plugins the project disables (``disable_plugins``): installed, not loaded.
        self.disabled: set[str] = set()
        #: Each plugin as errors name it: ``plugin 'x' (from fw-x 1.0)``.
        self.named: dict[str, str] = {}
        #: The distribution each installed plugin came from (fw's own share one).
        self._installed: dict[str, str] = {}

    @classmethod
    def collect(cls, pm: PluginManager) -> Registry:
        """Call every registry hook once and keep what each plugin registers.

        A plugin that breaks the contract gets an error located at its ``plugins:``
        entry when the project listed it (see ``PluginManager.error``).
        """
        registry = cls()
        registry.named = {name: pm.named(name) for name, _ in pm.list_name_plugin() if name}
        registry._installed = {name: dist for name, (dist, _) in pm.distributions.items()}
        for hook, adder in (
            ("register_spiders", registry._add_spider),
            ("register_exporters", registry._add_exporter),
            ("register_parsers", registry._add_parser),
            ("register_middlewares", registry._add_middleware),
            ("register_callbacks", registry._add_callback),
            ("register_fetch_layers", registry._add_fetch_layer),
        ):
            for call in hook_calls(pm, hook):
                try:
                    _run(call, hook, adder)
                except _Refused as exc:
                    raise pm.error(call.plugin, f"{pm.named(call.plugin)}: {exc}") from exc
        for name, plugin in pm.list_name_plugin():
            if name is not None and plugin is None:
                registry.disabled.add(name)
            schema = section_schema(plugin)
            if name is not None and schema is not None:
                registry.schemas[name] = schema
            if name is not None and (
                plugin is None or schema is not None or _sees_project(pm, plugin)
            ):
                registry.readers.add(name)
        return registry

    def describe(self, pm: PluginManager) -> list[dict[str, Any]]:
        """Describe every plugin: its distribution, version, hooks and what it provides."""
        provides: dict[str, dict[str, list[str]]] = {}
        for (kind, name), plugin in self.owners.items():
            provides.setdefault(plugin, {}).setdefault(kind, []).append(name)
        return [
            {
                "name": i.name,
                "distribution": i.distribution,
                "version": i.version,
                "module": i.module,
                "hooks": list(i.hooks),
                "provides": provides.get(i.name, {}),
            }
            for i in pm.infos()
        ]

    def exporters_for_extension(self, path: str) -> list[type[Exporter]]:
        """Return the exporters whose longest extension matches the end of ``path``: one,
        unless plugins of two formats claim the same extension.

        The longest match wins, so ``.ndjson`` is not taken for ``.json``.
        """
        lowered = path.lower()
        matches = {
            exporter: max(len(e) for e in exporter.extensions if lowered.endswith(e.lower()))
            for exporter in self.exporters.values()
            if any(lowered.endswith(e.lower()) for e in exporter.extensions)
        }
        longest = max(matches.values(), default=0)
        return [exporter for exporter, length in matches.items() if length == longest]

    def extensions(self) -> list[str]:
        """Return every extension ``-o`` understands."""
        return [ext for exporter in self.exporters.values() for ext in exporter.extensions]

    def _add_spider(self, plugin: str, spider: Any) -> None:
        _require(spider, Spider, "name")
        self._keep("spiders", spider.name, spider, plugin)

    def _add_exporter(self, plugin: str, exporter: Any) -> None:
        _require(exporter, Exporter, "format")
        extensions = exporter.extensions
        if not isinstance(extensions, tuple | list) or not all(
            isinstance(e, str) and e.startswith(".") and len(e) > 1 for e in extensions
        ):  # a string would be taken letter by letter: -o data.txz going to it
            raise _Refused(
                f"registered {exporter!r}, whose extensions are {shorten(repr(extensions))}, "
                "not a tuple of extensions such as ('.jsonl',)"
            )
        self._keep("exporters", exporter.format, exporter, plugin)

    def _add_middleware(self, plugin: str, middleware: Any) -> None:
        _require(middleware, Middleware, "name")
        self._keep("middlewares", middleware.name, middleware, plugin)

    def _add_fetch_layer(self, plugin: str, layer: Any) -> None:
        _require(layer, FetchLayer, "name")
        self._keep("fetch_layers", layer.name, layer, plugin)

    def _add_parser(self, plugin: str, media_type: Any, parser: Any = None) -> None:
        if not isinstance(media_type, str) or not callable(parser):
            raise _Refused(
                f"register_parsers expects register(media_type: str, parser), got {media_type!r}"
            )
        self.parsers.add(media_type, parser)

    def _add_callback(
        self, plugin: str, name: Any, function: Any = None, *, allowed_status: Any = ()
    ) -> None:
        if not isinstance(name, str) or ":" not in name or not callable(function):
            raise _Refused(
                "register_callbacks expects register('plugin:name', function), the name with "
                f"a colon so that it is no spider method's; got {name!r}"
            )
        argnames = _argnames(function, f"callback {name!r}")
        statuses = frozenset(allowed_status)
        if not all(isinstance(s, int) and 100 <= s <= 999 for s in statuses):
            raise _Refused(f"callback {name!r}: allowed_status must be HTTP statuses")
        self._keep("callbacks", name, PluginCallback(plugin, function, argnames, statuses), plugin)

    def _keep(self, kind: str, name: str, value: Any, plugin: str) -> None:
        table: dict[str, Any] = getattr(self, kind)
        if name not in table:
            table[name] = value
            self.owners[kind, name] = plugin
        elif table[name] is not value:
            self._overridden(kind, name, plugin)

    def _overridden(self, kind: str, name: str, plugin: str) -> None:
        """Say that ``plugin``'s thing ``name`` is left out: in passing if the project's own
        plugin or an installed package overrides it where it is fw's (bundled plugins load
        first, so that is meant), as a warning if two other packages' plugins clash, since
        which one wins depends on the order the packages were found in."""
        winner = self.owners[kind, name]
        dists = {self._installed.get(winner), self._installed.get(plugin)}
        if None in dists or len(dists) == 1 or DISTRIBUTION in dists:  # meant: fw's come first
            log.info(
                "%s '%s' of plugin '%s' is overridden by plugin '%s'",
                kind[:-1],
                name,
                plugin,
                winner,
            )
            return
        log.warning(
            "%s '%s': installed packages register it twice, %s and %s; %s's is used, which "
            "depends on the order the packages were found in: disable_plugins: [%s] in the "
            "project (or uninstalling one) leaves no doubt",
            kind[:-1],
            name,
            self.named.get(winner, f"plugin '{winner}'"),
            self.named.get(plugin, f"plugin '{plugin}'"),
            winner,
            plugin,
        )


class Flag(NamedTuple):
    """A ``fw run`` flag a plugin registered: it stands for the ``-s`` override."""

    flag: str
    override: str
    help: str
    plugin: str


_FLAG = re.compile(r"--[a-z][a-z0-9-]*")


def flags(pm: PluginManager) -> list[Flag]:
    """Call ``register_flags`` on every plugin; the first plugin to register a flag wins."""
    found: dict[str, Flag] = {}

    def adder(plugin: str, flag: Any = None, override: Any = None, text: Any = "") -> None:
        if not (isinstance(flag, str) and _FLAG.fullmatch(flag)):
            raise _Refused(f"register_flags: {flag!r} is not a long option like --incremental")
        if not (isinstance(override, str) and "=" in override and isinstance(text, str)):
            raise _Refused(f"register_flags: {flag} needs an override KEY=VALUE and a help text")
        taken = found.setdefault(flag, Flag(flag, override, text, plugin))
        if taken.plugin != plugin:  # two installed plugins: say which one a user gets
            log.warning(
                "plugin '%s': register_flags: %s is plugin '%s''s flag already (-s %s); "
                "this one (-s %s) is left out",
                plugin,
                flag,
                taken.plugin,
                taken.override,
                override,
            )

    for call in hook_calls(pm, "register_flags"):
        try:
            _run(call, "register_flags", adder)
        except _Refused as exc:
            raise pm.error(call.plugin, f"{pm.named(call.plugin)}: {exc}") from exc
    return list(found.values())


def section_schema(plugin: object) -> type[Any] | None:
    """Return the ``Options`` dataclass a plugin module declares for its section, if any."""
    schema = getattr(plugin, "Options", None)
    return schema if isinstance(schema, type) and dataclasses.is_dataclass(schema) else None


class _Refused(Exception):
    """A plugin broke the registry contract; the message says how, the caller says who."""


def _argnames(function: Callable[..., Any], what: str) -> tuple[str, ...]:
    """Return the arguments ``function`` takes by name, each one fw can pass a callback."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError) as exc:
        raise _Refused(f"{what}: cannot read its arguments: {exc}") from exc
    names = tuple(p.name for p in parameters)
    unknown = [n for n in names if n not in CALLBACK_ARGUMENTS]
    if unknown:
        raise _Refused(
            f"{what} takes {', '.join(unknown)}; a plugin's callback takes, by name, any of "
            f"{', '.join(CALLBACK_ARGUMENTS)}"
        )
    return names


def _sees_project(pm: PluginManager, plugin: object) -> bool:
    """Tell whether one of ``plugin``'s hooks is handed the project: only such a plugin
    can read a section of its own without declaring ``Options``."""
    callers = pm.get_hookcallers(plugin) or ()
    impls = (impl for caller in callers for impl in caller.get_hookimpls())
    return any(impl.plugin is plugin and "project" in impl.argnames for impl in impls)


def _require(value: Any, base: type, attribute: str) -> None:
    if not (isinstance(value, type) and issubclass(value, base) and getattr(value, attribute)):
        raise _Refused(
            f"registered {value!r}, which is not a {base.__name__} subclass with a {attribute}"
        )
    named = getattr(value, attribute)
    if not isinstance(named, str):  # it names a section, an export format: it is a key
        raise _Refused(
            f"registered {value!r}, whose {attribute} is {shorten(repr(named))}, not a string"
        )


def _run(call: HookCall, hook: str, adder: Callable[..., None]) -> None:
    """Call one plugin's registry hook with a ``register`` bound to that plugin's name."""

    def register(*args: Any, **kwargs: Any) -> None:
        adder(call.plugin, *args, **kwargs)

    try:
        outcome = call(register=register)
    except _Refused:
        raise
    except SystemExit as exc:
        raise _Refused(f"{hook} {exited(exc)}; a plugin should raise an exception instead") from exc
    except Exception as exc:
        raise _Refused(f"{hook} raised {type(exc).__name__}: {exc}") from exc
    if inspect.iscoroutine(outcome):  # registering happens once at start-up, synchronously
        outcome.close()
        raise _Refused(f"{hook} must be a plain def, not async def")
