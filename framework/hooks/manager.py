"""Build the plugin manager and find plugins.

Discovery order (later plugins are called first, so each step can override the ones
before it):

1. fw's hook specifications (``framework.hookspecs``) are added.
2. The built-in plugin ``fw`` (``framework.hooks.builtin``) is registered, its hooks ``trylast``.
3. Every entry point in the ``fw`` group is loaded: the bundled plugins (``douban``,
   ``rules``, ``exporters``) and every installed third-party plugin, the same way —
   except those named in the project's ``disable_plugins:``, and none at all when the
   environment variable ``FW_DISABLE_PLUGIN_AUTOLOAD`` is set (then list the ones you
   want under ``plugins:`` by module name, e.g. ``fwcrawl_plugins.exporters``).
4. The project's own ``plugins:`` are registered in the order listed: ``.py`` files
   (relative to the project file) and importable module names.
5. Every plugin's ``FW_API_VERSION``, if it declares one, must include
   ``hookspecs.API_VERSION``, and every hook implementation is checked against its
   specification.

``FW_TRACE_PLUGINS=1`` prints every hook call, and which plugin it reaches, to stderr.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import Distribution, EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from framework import hookspecs
from framework.__about__ import DISTRIBUTION, __version__
from framework.config.schema import did_you_mean, show
from framework.config.yamlfile import KeyPath, Source, shorten
from framework.errors import ErrorList, FwError, PluginError
from framework.hooks import builtin
from framework.http import Request
from framework.http.urls import redact_all, shown_url
from framework.output import descriptor_1_to_stderr

__all__ = [
    "ENTRY_POINT_GROUP",
    "EVENT_HOOKS",
    "HookCall",
    "PluginInfo",
    "PluginManager",
    "hook_calls",
    "make_plugin_manager",
    "plugin_files",
    "project_plugin_name",
    "register_for_crawl",
]

ENTRY_POINT_GROUP = "fw"
BUILTIN = "fw"
#: The hooks called during a crawl: the only ones an object of one crawl may implement.
EVENT_HOOKS = frozenset(
    {
        "crawl_started",
        "request_scheduled",
        "response_received",
        "page_parsed",
        "item_scraped",
        "crawl_error",
        "crawl_finished",
    }
)


@dataclass(frozen=True)
class PluginInfo:
    """What ``fw plugins`` shows about one plugin."""

    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]
    module: str


@dataclass(frozen=True)
class HookCall:
    """One plugin's implementation of one hook, ready to be called by name."""

    plugin: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]
    traced: bool = False
    hook: str = ""

    def __call__(self, **kwargs: Any) -> Any:
        if self.traced:
            trace(self.hook or self.function.__name__, self.plugin, kwargs)
        return self.function(*(kwargs[name] for name in self.argnames))


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering where each plugin came from, to name it in errors."""

    def __init__(self, source: Source | None = None) -> None:
        super().__init__(ENTRY_POINT_GROUP)
        self.distributions: dict[str, tuple[str, str]] = {}
        #: The project's own plugins (its ``plugins:`` list), by name: where each is listed.
        self.listed: dict[str, KeyPath] = {}
        self.source = source or Source(Path("project.yaml"), {})

    def infos(self) -> list[PluginInfo]:
        """Describe every loaded plugin, in registration order.

        Plugins kept out by ``disable_plugins:`` are left out: pluggy holds a placeholder
        (``None``) under each blocked name, which is not a loaded plugin.
        """
        return [
            self._info(name, plugin)
            for name, plugin in self.list_name_plugin()
            if name is not None and plugin is not None
        ]

    def named(self, plugin: str) -> str:
        """Return ``plugin 'x'``, with the distribution it was installed from, if any."""
        if plugin in self.distributions:
            dist, version = self.distributions[plugin]
            return f"plugin '{plugin}' (from {dist} {version})"
        return f"plugin '{plugin}'"

    def error(self, plugin: str, message: str) -> FwError:
        """Build the error ``message`` about ``plugin``, located where the user can fix it.

        A plugin from the project's ``plugins:`` list is the project's to fix, so the
        error points at its entry (``FILE:LINE: plugins[i]: ...``); an installed plugin
        has no line to point at and is named with its distribution instead.
        """
        if plugin in self.listed:
            return self.source.error(self.listed[plugin], message)
        return PluginError(message)

    def _info(self, name: str, plugin: object) -> PluginInfo:
        dist, version = self.distributions.get(name, (None, None))
        hooks = tuple(sorted(caller.name for caller in self.get_hookcallers(plugin) or ()))
        module = getattr(plugin, "__name__", type(plugin).__name__)
        return PluginInfo(name, dist, version, hooks, module)


def make_plugin_manager(
    project_plugins: Sequence[str] = (),
    *,
    source: Source | None = None,
    autoload: bool | None = None,
    disabled: Sequence[str] = (),
) -> PluginManager:
    """Return a plugin manager with every plugin found, in the documented order.

    ``autoload`` defaults to true unless ``FW_DISABLE_PLUGIN_AUTOLOAD`` is set.
    """
    pm = PluginManager(source)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name=BUILTIN)
    pm.distributions[BUILTIN] = (DISTRIBUTION, __version__)
    _disable(pm, disabled, pm.source)
    if autoload is None:
        autoload = not os.environ.get("FW_DISABLE_PLUGIN_AUTOLOAD")
    with descriptor_1_to_stderr():  # what an import writes to fd 1 is not fw's data
        if autoload:
            read: dict[Distribution, tuple[str, str]] = {}
            for entry_point in _bundled_first(entry_points(group=ENTRY_POINT_GROUP)):
                _register_entry_point(pm, entry_point, read)
        errors = ErrorList()  # each entry is the project's to fix: say what is wrong with each
        for index, spec in enumerate(project_plugins):
            with errors.collect():
                _register_project_plugin(pm, spec, index)
    errors.raise_any()
    _check(pm)
    if os.environ.get("FW_TRACE_PLUGINS"):
        pm.add_hookcall_monitoring(_trace_registry_call, lambda *_: None)
    return pm


def _disable(pm: PluginManager, names: Sequence[str], source: Source) -> None:
    """Block the plugins named in ``disable_plugins:``; each must be an installed one."""
    installed = [e.name for e in entry_points(group=ENTRY_POINT_GROUP)]
    for index, name in enumerate(names):
        at: KeyPath = ("disable_plugins", index)
        if name == BUILTIN:
            raise source.error(at, "fw's built-in plugin cannot be disabled")
        if name not in installed:
            raise source.error(
                at,
                f"no installed plugin {show(name)}"
                f"{did_you_mean(name, installed)}; installed: "
                f"{', '.join(sorted(installed))}",
            )
        pm.set_blocked(name)


def _register_entry_point(
    pm: PluginManager, entry_point: EntryPoint, read: dict[Distribution, tuple[str, str]]
) -> None:
    name, dist = entry_point.name, entry_point.dist
    if pm.is_blocked(name):
        return
    if pm.get_plugin(name) is not None:
        _check_one_owner(pm, name, dist, read)
        return
    if dist:  # known before loading, so that every error can name the distribution
        pm.distributions[name] = _name_and_version(dist, read)
    try:
        plugin = entry_point.load()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit, CancelledError too: a plugin's, named
        raise PluginError(f"{pm.named(name)} {_load_failure(exc)}") from exc
    if pm.is_registered(plugin):  # pluggy would refuse it with a traceback
        raise PluginError(
            f"{pm.named(name)}: its module {getattr(plugin, '__name__', plugin)} is plugin "
            f"'{pm.get_name(plugin)}' already: name one module in one fw entry point"
        )
    _check_api(pm, plugin, name)
    _register(pm, plugin, name)


def _check_one_owner(
    pm: PluginManager,
    name: str,
    dist: Distribution | None,
    read: dict[Distribution, tuple[str, str]],
) -> None:
    """Refuse a plugin name two distributions register: one of them would be left out
    without a word, whichever the path lists second (fw's own exporters, say)."""
    first = pm.distributions.get(name)
    second = _name_and_version(dist, read) if dist else None
    if first is None or second is None or _normal(first[0]) == _normal(second[0]):
        return  # one distribution, found twice on the path
    raise PluginError(
        f"plugin name {name!r} is registered twice, by {first[0]} {first[1]} and by "
        f"{second[0]} {second[1]}: only one of them could load; uninstall one, or rename "
        "the entry point of yours in the [project.entry-points.fw] of its pyproject.toml"
    )


def _bundled_first(found: Iterable[EntryPoint]) -> list[EntryPoint]:
    """Order the entry points fw's own first, so that an installed package's plugin always
    overrides a bundled one's name, whatever order the packages were found in."""
    return sorted(found, key=lambda entry: not _is_bundled(entry))


def _is_bundled(entry: EntryPoint) -> bool:
    try:  # a distribution that lost its METADATA has no name: not fw's own
        name = entry.dist.metadata["Name"] if entry.dist is not None else None
    except Exception:
        return False
    return isinstance(name, str) and _normal(name) == DISTRIBUTION


def _normal(distribution: str) -> str:
    """Return a distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _name_and_version(
    dist: Distribution, read: dict[Distribution, tuple[str, str]]
) -> tuple[str, str]:
    """A distribution's name and version, read once for all its plugins: each of
    ``dist.name`` and ``dist.version`` parses its metadata file again."""
    found = read.get(dist)
    if found is None:
        metadata = dist.metadata  # empty when the install lost its METADATA file
        name, version = metadata["Name"] or _unnamed(dist), metadata["Version"] or "?"
        found = read[dist] = (name, version)
    return found


#: How a distribution whose metadata is gone is named, before its folder.
NO_METADATA = "(no metadata)"


def _unnamed(dist: Distribution) -> str:
    """Name a distribution whose metadata is gone by its folder (``fw_x-1.0.dist-info``)."""
    folder = getattr(dist, "_path", None)
    return f"{NO_METADATA} {folder.name}" if folder is not None else NO_METADATA


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def plugin_files(project_plugins: Sequence[str], folder: Path) -> list[tuple[str, Path]]:
    """Return each ``plugins:`` entry that is a file, with its path (relative to
    ``folder``, the project file's, links kept)."""
    files = [spec for spec in project_plugins if _is_file(spec)]
    return [(spec, Path(os.path.abspath(folder / spec))) for spec in files]  # noqa: PTH100


def project_plugin_name(spec: str) -> str:
    """Return the name a ``plugins:`` entry is registered under.

    A file is named by its path, which no installed plugin's name can clash with; a
    module by its dotted name.
    """
    return os.path.normpath(spec) if _is_file(spec) else spec


def _register_project_plugin(pm: PluginManager, spec: str, index: int) -> None:
    try:
        module = _import_file(spec, pm.source) if _is_file(spec) else importlib.import_module(spec)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit, CancelledError too: a plugin's, located
        raise pm.source.error(("plugins", index), _import_failure(spec, exc)) from exc
    name = project_plugin_name(spec)
    if pm.get_plugin(name) is not None or pm.is_registered(module):
        return  # listed twice
    pm.listed[name] = ("plugins", index)
    _check_api(pm, module, name)
    _register(pm, module, name)


def exited(exc: SystemExit) -> str:
    """Say what a plugin did that it should not: ``called sys.exit(3)``.

    ``SystemExit`` is no ``Exception``: let through, fw would end with the plugin's exit
    code and not a word (e.g. a plugin file that parses the command line at import).
    """
    called = "sys.exit()" if exc.code is None else f"sys.exit({exc.code!r})"
    return f"called {called}"


_RAISE_INSTEAD = "a plugin should raise an exception instead"


def _load_failure(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"{exited(exc)} while loading; {_RAISE_INSTEAD}"
    return f"failed to load: {type(exc).__name__}: {exc}"


def _import_failure(spec: str, exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"{shorten(spec)} {_load_failure(exc)}"
    if isinstance(exc, FileNotFoundError):
        return f"no such plugin file {show(spec)}"
    if (
        isinstance(exc, ModuleNotFoundError)
        and exc.name
        and (spec == exc.name or spec.startswith(exc.name + "."))
    ):
        return f"no module named {show(spec)} (install it, or give a path ending in .py)"
    return f"{shorten(spec)} failed to import: {_describe(exc)}"


def _import_file(spec: str, source: Source) -> ModuleType:
    """Import a plugin file under a private module name so it cannot shadow a package."""
    path = (source.file.parent / spec).resolve()
    if not path.is_file():
        raise FileNotFoundError(path)
    module_name, n = f"fw_project_plugins.{path.stem}", 1
    while getattr(sys.modules.get(module_name), "__file__", str(path)) != str(path):
        n += 1  # another project's file of the same name
        module_name = f"fw_project_plugins.{path.stem}_{n}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    return f"{type(exc).__name__}: {shorten(str(exc), 300)}"


def _register(pm: PluginManager, plugin: object, name: str) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise pm.error(name, f"{pm.named(name)}: {' '.join(str(exc).split())}") from exc


def register_for_crawl(pm: PluginManager, component: object, name: str) -> None:
    """Register the event hooks a crawl's own object implements (a middleware's methods
    marked ``@hookimpl``), under ``name``, for that crawl only: ``pm`` is the crawl's."""
    marked = [n for n in dir(type(component)) if hasattr(getattr(component, n, None), "fw_impl")]
    if not marked or pm.is_registered(component):
        return
    wrong = sorted(set(marked) - EVENT_HOOKS)
    if wrong:
        raise PluginError(
            f"plugin '{name}': {', '.join(wrong)} cannot be a method: an object of one crawl "
            f"implements only event hooks ({', '.join(sorted(EVENT_HOOKS))})"
        )
    _register(pm, component, name)
    try:
        _check(pm)
    except FwError:
        pm.unregister(component)
        raise


def _check_api(pm: PluginManager, plugin: object, name: str) -> None:
    """Refuse a plugin built for another version of the hook contract."""
    declared = getattr(plugin, "FW_API_VERSION", None)
    if declared is None:
        return
    versions = declared if isinstance(declared, tuple | list | range) else (declared,)
    numbers = () if isinstance(versions, range) else versions  # a range holds numbers only
    if wrong := [version for version in numbers if type(version) is not int]:
        raise pm.error(
            name,
            f"{pm.named(name)}: FW_API_VERSION is a number, or a tuple of them "
            f"(FW_API_VERSION = {hookspecs.API_VERSION}), not {wrong[0]!r}",
        )
    if hookspecs.API_VERSION not in versions:
        raise pm.error(
            name,
            f"{pm.named(name)} was built for fw plugin API {declared}, but "
            f"fw {__version__} provides API {hookspecs.API_VERSION}: install a "
            "version of the plugin made for this fw, or another fw",
        )


def _trace_registry_call(
    hook: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]
) -> None:
    for impl in impls:
        trace(hook, impl.plugin_name)


def trace(hook: str, plugin: str, kwargs: Mapping[str, Any] | None = None) -> None:
    """Print one hook call on stderr (``FW_TRACE_PLUGINS=1``)."""
    about = ""
    for name in ("item", "request", "response"):
        if kwargs and name in kwargs:
            about = f" {name}={_short(kwargs[name])}"
            break
    print(f"fw trace: {hook} -> {plugin}{about}", file=sys.stderr, flush=True)


def _short(value: object) -> str:
    """Show a hook's request, response or item as fw shows URLs: without passwords."""
    request = getattr(value, "request", value)
    if isinstance(request, Request):  # a sign-in's query is left out along its redirects
        text = shown_url(request.replace(url=getattr(value, "url", request.url)))
    else:
        text = redact_all(repr(value))
    return text if len(text) <= 120 else text[:117] + "..."


def _check(pm: PluginManager) -> None:
    """Reject hooks fw does not define (typos), wrappers and generators, naming the plugin."""
    for name in dir(pm.hook):
        caller = getattr(pm.hook, name)
        if not isinstance(caller, pluggy.HookCaller):
            continue
        for impl in caller.get_hookimpls():
            plugin = impl.plugin_name
            if caller.spec is None:
                hint = did_you_mean(name, _spec_names(pm))
                raise pm.error(plugin, f"{pm.named(plugin)}: {name} is not an fw hook{hint}")
            if impl.hookwrapper or impl.wrapper:
                raise pm.error(
                    plugin,
                    f"{pm.named(plugin)}: {name} is a wrapper; fw hooks "
                    "take plain implementations (use a middleware)",
                )
            if _generates(impl.function) and name not in _YIELDING_HOOKS:
                raise pm.error(
                    plugin,
                    f"{pm.named(plugin)}: {name} is a generator: fw would call it and its body "
                    "would never run; make it a def that returns (or an async def for an event "
                    "hook)",
                )


#: The hooks whose answer fw iterates: their implementations may yield it.
_YIELDING_HOOKS = frozenset({"extra_start_requests"})


def _generates(function: object) -> bool:
    return inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function)


def _spec_names(pm: PluginManager) -> list[str]:
    return [n for n in dir(pm.hook) if getattr(getattr(pm.hook, n), "spec", None)]


def hook_calls(pm: pluggy.PluginManager, hook: str) -> list[HookCall]:
    """Return the implementations of ``hook`` in the order pluggy would call them."""
    caller: pluggy.HookCaller = getattr(pm.hook, hook)
    traced = bool(os.environ.get("FW_TRACE_PLUGINS"))
    return [
        HookCall(impl.plugin_name, impl.function, tuple(impl.argnames), traced, hook)
        for impl in reversed(caller.get_hookimpls())
    ]
