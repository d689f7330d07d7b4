"""Build the spider, exporters, middlewares and fetch layers a project asks for, checking
every reference.

It also binds the callbacks plugins registered to the project they run for.

This is the second half of validating a project: it needs the plugins loaded, to know
which spider and exporter names exist and which top-level keys are plugin sections.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from framework.config.project import ExporterSpec, Project
from framework.config.schema import build, did_you_mean, has_default, keys_of, show
from framework.config.yamlfile import KeyPath, Source, format_key, shorten
from framework.errors import (
    ErrorList,
    FwError,
    PluginError,
    ProjectError,
    check_all,
    raised_at,
    reportable,
)
from framework.exporters import Exporter
from framework.fetch.layers import FetchLayer
from framework.fetch.parsers import Parsers
from framework.hooks.manager import (
    PluginManager,
    exited,
    hook_calls,
    plugin_files,
    project_plugin_name,
)
from framework.hooks.registry import Registry, section_schema
from framework.items import ItemStep
from framework.middleware import Middleware
from framework.paths import identity
from framework.spider import PluginCallbacks, Spider

__all__ = [
    "Components",
    "ItemSteps",
    "assemble",
    "check_names",
    "configure_plugins",
    "fetch_layers",
    "item_steps",
    "middlewares",
    "read_files",
    "spider_alone",
]

T = TypeVar("T")


@dataclass(frozen=True)
class ItemSteps:
    """The crawl's item pipeline: each step with the plugin that gave it, in order."""

    steps: tuple[tuple[str, ItemStep], ...] = ()
    #: The fields items have once through the steps, when known up front (``columns()``).
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Components:
    """The plugin-provided parts of one crawl, ready to run."""

    spider: Spider
    exporters: tuple[Exporter, ...]
    middlewares: tuple[Middleware, ...]
    parsers: Parsers
    #: The callbacks plugins registered for their own requests (``register_callbacks``).
    callbacks: PluginCallbacks = dataclasses.field(default_factory=PluginCallbacks)
    items: ItemSteps = ItemSteps()
    #: Below the middlewares, above the downloader: the first is the outermost.
    fetch_layers: tuple[FetchLayer, ...] = ()


def assemble(
    project: Project,
    registry: Registry,
    plugin_names: Iterable[str],
    outputs: Sequence[ExporterSpec] = (),
    *,
    append: bool = False,
    reserved: Mapping[object, str] = MappingProxyType({}),
) -> Components:
    """Check the project against the installed plugins and build its components.

    ``outputs`` are the exporters added with ``-o`` on the command line; ``append`` makes
    every exporter add to what an earlier run wrote; ``reserved`` are the files the crawl
    writes itself (by ``paths.identity``, saying what each is), where no export may go.
    Each check runs whether or not another failed, and their errors are raised together; a
    plugin that fails to start stops it.
    """
    errors = ErrorList()
    with errors.collect():
        _check_sections(project, registry, set(plugin_names))
    for name, spider_class in registry.spiders.items():  # the spider in use: _spider below
        if name != project.spider and name in project.sections:
            with errors.collect():  # written, so checked, used or not: a typo shows now
                _options(spider_class, project, "spiders", registry.owners[("spiders", name)])
    for spec in project.plugins:  # listing a plugin is using it
        with errors.collect():
            _require_section(project, registry, project_plugin_name(spec))
    specs = enumerate((*project.exporters, *outputs))
    reserved = {**read_files(project), **reserved}
    for error in _misplaced((*project.exporters, *outputs), project, reserved):
        with errors.collect():
            raise error
    # Each value below is made, or its error collected and raised by raise_any().
    with errors.collect():
        spider = _spider(project, registry)
    with errors.collect():
        exporters = check_all(lambda _, spec: _exporter(spec, project, registry, append), specs)
    with errors.collect():
        wrappers = middlewares(project, registry)
    with errors.collect():
        layers = fetch_layers(project, registry)
    errors.raise_any()
    callbacks = PluginCallbacks(registry.callbacks, project)
    return Components(
        spider,
        tuple(exporters),
        wrappers,
        registry.parsers,
        callbacks=callbacks,
        fetch_layers=layers,
    )


def check_names(project: Project, registry: Registry, plugin_names: Iterable[str]) -> None:
    """Check what needs no plugin's options built: the top-level keys, and the formats the
    exporters name. Run with the options' own errors too, so that one run says them all."""
    errors = ErrorList()
    with errors.collect():
        _check_sections(project, registry, set(plugin_names))
    for spec in project.exporters:
        if spec.format is not None:
            with errors.collect():
                at = (*spec.at, "format")
                _lookup(registry.exporters, spec.format, "exporter", project.error_source, at)
    errors.raise_any()


def read_files(project: Project) -> dict[object, str]:
    """The project's own plugin files (by ``paths.identity``), saying so: the crawl reads
    them, so nothing it writes may replace one. A link to one too: it is read through."""
    files: dict[object, str] = {}
    for spec, path in plugin_files(project.plugins, project.file.parent):
        for follow in (True, False):
            files[identity(str(path), follow=follow)] = f"reads its plugin file {spec}"
    return files


def middlewares(project: Project, registry: Registry) -> tuple[Middleware, ...]:
    """Build every registered middleware, and keep those this crawl needs (``active``):
    each of them wraps every fetch."""
    classes = registry.middlewares.items()
    built = check_all(lambda _, cls: _component(project, registry, "middlewares", cls), classes)
    return tuple(middleware for middleware in built if middleware.active)


def item_steps(pm: PluginManager, project: Project, spider: Spider) -> ItemSteps:
    """Ask each plugin for its step of this crawl's item pipeline, in pluggy's call order,
    and the steps for the items' columns; a plugin that fails at it stops the crawl."""
    steps = []
    for call in hook_calls(pm, "item_step"):
        step = _call_step_hook(pm, call.plugin, "item_step", call, project=project, spider=spider)
        if step is None:
            continue
        if not isinstance(step, ItemStep):
            raise pm.error(
                call.plugin,
                f"{pm.named(call.plugin)}: item_step returned {type(step).__name__}, "
                "not an ItemStep (or None)",
            )
        steps.append((call.plugin, step))
    columns: list[str] | None = None
    for plugin, step in steps:
        columns = _call_step_hook(pm, plugin, "its step's columns", step.columns, columns)
        if columns is not None and not all(isinstance(c, str) for c in columns):
            raise pm.error(plugin, f"{pm.named(plugin)}: columns returned {columns!r}")
    return ItemSteps(tuple(steps), None if columns is None else tuple(columns))


def _call_step_hook(
    pm: PluginManager, plugin: str, what: str, call: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Call a plugin's ``item_step`` or its step's ``columns``; a failure is a PluginError."""
    try:
        return call(*args, **kwargs)
    except SystemExit as exc:
        raise pm.error(plugin, f"{pm.named(plugin)}: {what} {exited(exc)}") from exc
    except Exception as exc:
        raise pm.error(
            plugin,
            f"{pm.named(plugin)}: {what} raised{_at(raised_at(exc))}: {type(exc).__name__}: {exc}",
        ) from exc


def fetch_layers(project: Project, registry: Registry) -> tuple[FetchLayer, ...]:
    """Build every registered fetch layer: each sees every fetch, in every crawl."""
    classes = registry.fetch_layers.items()
    return tuple(
        check_all(lambda _, cls: _component(project, registry, "fetch_layers", cls), classes)
    )


def spider_alone(project: Project, registry: Registry) -> tuple[Spider, PluginCallbacks] | None:
    """Start the project's spider alone, with the plugins' callbacks, for the checks that
    need it when another part of the crawl was refused; None if the spider was too."""
    try:
        return _spider(project, registry), PluginCallbacks(registry.callbacks, project)
    except ProjectError:  # said already, by assemble()
        return None


def _spider(project: Project, registry: Registry) -> Spider:
    """Find the project's spider and start it with the options of its section."""
    source = project.error_source
    spider_class = _lookup(registry.spiders, project.spider, "spider", source, ("spider",))
    spider: Spider = _component(
        project, registry, "spiders", spider_class, start_urls=project.start_urls
    )
    return spider


def _component(
    project: Project,
    registry: Registry,
    kind: str,
    component: type[Spider] | type[Middleware] | type[FetchLayer],
    **kwargs: Any,
) -> Any:
    """Start a spider, middleware or fetch layer with the options of the section named after it."""
    owner = registry.owners.get((kind, component.name), "?")
    _require_section(project, registry, owner)
    options = _options(component, project, kind, owner)
    return _start(registry, kind, component.name, component, options, **kwargs)


def _start(
    registry: Registry, kind: str, name: str, component: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Instantiate a plugin's class; a constructor that raises is the plugin's to fix."""
    try:
        return component(*args, **kwargs)
    except BaseException as exc:
        if not reportable(exc):
            raise
        plugin = registry.owners.get((kind, name), "?")
        raise PluginError(
            f"plugin '{plugin}': {_singular(kind)} '{name}' failed to start"
            f"{_at(raised_at(exc))}: {type(exc).__name__}: {exc}"
        ) from exc


def _singular(kind: str) -> str:
    return kind[:-1].replace("_", " ")  # "fetch_layers" -> "fetch layer"


def _at(where: str | None) -> str:
    return f" at {where}" if where else ""


def configure_plugins(project: Project, plugins: Iterable[tuple[str, object]]) -> Project:
    """Validate the section of each plugin module that declares an ``Options`` schema.

    A plugin module with ``Options = <a frozen dataclass>`` gets its section of the project
    file checked like fw's own keys (``FILE:LINE: key: ...``); afterwards
    ``project.section(name)`` returns the built options object instead of the raw data.

    A section that is written is always checked in full. A section that is left out is
    built from the defaults; if some key has no default, the section stays out (None)
    here, and ``assemble`` requires it only when the crawl uses the plugin — its
    spider, an exporter or middleware of it, or its entry in ``plugins:`` — so an
    installed plugin that needs configuring does not break every other project.
    """
    sections, errors = dict(project.sections), ErrorList()
    for name, plugin in plugins:
        schema = section_schema(plugin)
        if schema is None:
            continue
        with errors.collect():
            if name in sections:
                sections[name] = _build(project, name, schema, sections[name], (name,))
            elif all(has_default(f) for f in keys_of(schema)):
                sections[name] = _build(project, name, schema, None, (name,))
    errors.raise_any()
    return dataclasses.replace(project, sections=MappingProxyType(sections))


def _require_section(project: Project, registry: Registry, plugin: str) -> None:
    """Insist on the section of a plugin the crawl uses, if its schema has required keys."""
    schema = registry.schemas.get(plugin)
    if schema is not None and project.section(plugin) is None:
        _build(project, plugin, schema, None, (plugin,))  # raises: which key is missing


def _check_sections(project: Project, registry: Registry, plugin_names: set[str]) -> None:
    """Every top-level key that is not a core key must be a section something reads: a
    plugin's (see ``Registry.readers``), or a spider's, middleware's or fetch layer's."""
    owners = registry.readers | set(registry.spiders) | set(registry.middlewares)
    owners |= set(registry.fetch_layers)
    known = [f.name for f in keys_of(Project)] + sorted(owners)
    errors, source = ErrorList(), project.error_source
    for key, section in project.sections.items():
        if key in registry.disabled:
            for path in source.set_under((key,)):
                if _sets_anything(_value_at(section, path[1:])):
                    errors.add(source.error(path, _disabled(key, source.where(path))))
        if key in owners:
            continue
        why = (
            _no_section(key, registry)
            if key in plugin_names
            else f"unknown key{did_you_mean(key, known)}; "
            "top-level keys are fw's own or a plugin's name"
        )
        errors.add(source.error((key,), why))
    errors.raise_any()


def _disabled(plugin: str, given: str) -> str:
    """Say that what ``given`` sets would do nothing: the plugin reading it is disabled.
    A section the file keeps for a disabled plugin is fine; one the command line adds is
    a user expecting it to act (``--cache``)."""
    return (
        f"plugin '{plugin}' is disabled (disable_plugins): what {given} sets here would do "
        f"nothing; enable the plugin, or leave {given} out"
    )


def _value_at(value: Any, path: KeyPath) -> Any:
    """Return what ``path`` leads to in ``value`` (None if nothing)."""
    for step in path:
        if isinstance(value, Mapping):
            value = value.get(step)
        elif isinstance(value, list) and isinstance(step, int) and -len(value) <= step < len(value):
            value = value[step]
        else:
            return None
    return value


def _sets_anything(value: Any) -> bool:
    """Tell whether ``value`` sets anything: null, or a mapping of nulls, turns off what a
    disabled plugin never does anyway (``-s cache.dir=null``)."""
    if isinstance(value, Mapping):
        return any(_sets_anything(v) for v in value.values())
    return value is not None


def _no_section(plugin: str, registry: Registry) -> str:
    """Say that ``plugin`` reads no section of its name, and which of its parts do."""
    kinds = ("spiders", "middlewares", "fetch_layers")
    parts = [(k, n) for (k, n), p in registry.owners.items() if p == plugin and k in kinds]
    if not parts:
        return f"plugin '{plugin}' takes no options; remove this section"
    kind, name = parts[0]
    return (
        f"plugin '{plugin}' takes no options of its own; its {_singular(kind)} '{name}' "
        f"does: write them under {name}:"
    )


def _options(
    component: type[Spider] | type[Middleware] | type[FetchLayer],
    project: Project,
    kind: str,
    owner: str,
) -> Any:
    """Return the options of the section named after ``component``, validated.

    One section per name, with one schema. When the plugin module that owns the name
    declares ``Options``, ``configure_plugins`` has built the section already, and the
    component is handed that same object (the scaffold's plugin and its spider share
    their name this way); a component may also declare that same class, but not
    another one, since one section cannot follow two schemas. Otherwise the
    component's own ``Options``, if any, validates the section.
    """
    name = component.name
    section = project.section(name)
    if _is_built(section):
        if component.Options not in (None, type(section)):
            raise PluginError(
                f"plugin '{owner}': {_singular(kind)} '{name}' declares Options, and so does the "
                f"plugin module that owns the section '{name}:'; one section has one "
                f"schema: drop one, or write Options = <the module's> in the {_singular(kind)}"
            )
        return section
    if component.Options is not None:
        return _build(project, owner, component.Options, section, (name,))
    if section is not None and not isinstance(section, dict):
        raise project.error_source.error((name,), "expected a mapping of options")
    return section or {}


def _build(project: Project, plugin: str, schema: type[T], raw: Any, path: KeyPath) -> T:
    """Build ``plugin``'s options; a schema that fails otherwise than by refusing a value
    (its check raising TypeError, its ``__post_init__`` KeyError) is the plugin's to fix."""
    try:
        return build(schema, raw, project.error_source, path)
    except BaseException as exc:
        if isinstance(exc, FwError) or not reportable(exc):
            raise
        raise _plugin_fault(
            project,
            plugin,
            f"its Options for {format_key(path)} raised{_at(raised_at(exc))}: "
            f"{type(exc).__name__}: {shorten(str(exc), 200)} (a schema refuses a value by "
            "raising ValueError)",
        ) from exc


def _plugin_fault(project: Project, plugin: str, message: str) -> FwError:
    """An error in ``plugin``: at its ``plugins:`` entry if the project lists it (as
    ``PluginManager.error`` locates one), else naming it."""
    for index, spec in enumerate(project.plugins):
        if project_plugin_name(spec) == plugin:
            return project.error_source.error(("plugins", index), f"plugin '{plugin}': {message}")
    return PluginError(f"plugin '{plugin}': {message}")


def _is_built(section: Any) -> bool:
    """Tell a section built by ``configure_plugins`` from raw YAML (never a dataclass)."""
    return dataclasses.is_dataclass(section) and not isinstance(section, type)


def _exporter(spec: ExporterSpec, project: Project, registry: Registry, append: bool) -> Exporter:
    source = project.error_source
    if spec.format is not None:
        exporter = _lookup(
            registry.exporters, spec.format, "exporter", source, (*spec.at, "format")
        )
    else:
        found = registry.exporters_for_extension(spec.path)
        if not found:
            raise _no_exporter_for(spec, registry, source)
        if len(found) > 1:  # another team's exporter must not take -o x.jsonl unnoticed
            raise _export_error(spec, _claimed_twice(found, registry), project)
        (exporter,) = found
    _require_section(project, registry, registry.owners.get(("exporters", exporter.format), "?"))
    if spec.path == "-" and not exporter.stdout:
        raise source.error(
            (*spec.at, "path"),
            f"exporter '{exporter.format}' cannot write to standard output; give a file",
        )
    options: Any = dict(spec.options)
    owner = registry.owners.get(("exporters", exporter.format), "?")
    if exporter.Options is not None:
        options = _build(project, owner, exporter.Options, options, spec.at)
    elif options:
        unknown = next(iter(options))
        raise source.error(
            (*spec.at, unknown), f"unknown key; exporter '{exporter.format}' takes no options"
        )
    built: Exporter = _start(
        registry, "exporters", exporter.format, exporter, spec.path, options, append=append
    )
    return built


def _misplaced(
    specs: Sequence[ExporterSpec], project: Project, reserved: Mapping[object, str]
) -> Iterator[ProjectError]:
    """An error for each exporter whose path is a folder, that writes where an earlier one
    does (two writers of one file tear each other's records; stdout, ``-``, too) or where
    the crawl writes a file of its own (which would replace the export, or break)."""
    seen: dict[object, ExporterSpec] = {}
    for spec in specs:
        file = identity(spec.path)
        if spec.path != "-" and Path(spec.path).is_dir():  # else fw check passes, fw run fails
            yield _export_error(spec, "is a folder; give the export a file in it", project)
        elif (first := seen.get(file)) is not None:
            earlier = format_key(first.at) if first.at else f"-o {first.path}"
            yield _export_error(
                spec, f"already written by {earlier}; give each exporter its own file", project
            )
        elif file in reserved:
            yield _export_error(
                spec,
                f"the crawl {reserved[file]} there; give the export its own file",
                project,
            )
        seen.setdefault(file, spec)


def _export_error(spec: ExporterSpec, message: str, project: Project) -> ProjectError:
    """An error about where an exporter writes: at its ``path`` key, or at ``-o``."""
    if not spec.at:  # from -o on the command line
        return ProjectError("-o", spec.path, message)
    return project.error_source.error((*spec.at, "path"), message)


def _claimed_twice(exporters: Sequence[type[Exporter]], registry: Registry) -> str:
    def who(exporter: type[Exporter]) -> str:
        owner = registry.owners.get(("exporters", exporter.format), "?")
        return f"'{exporter.format}' of {registry.named.get(owner, f'plugin {owner!r}')}"

    return (
        f"exporters {' and '.join(who(e) for e in exporters)} both write this extension; "
        "list the export under exporters: with the format: to use"
    )


def _no_exporter_for(spec: ExporterSpec, registry: Registry, source: Source) -> ProjectError:
    known = " ".join(registry.extensions())
    if not spec.at:  # from -o on the command line
        return ProjectError(
            "-o", spec.path, f"no exporter for this file extension (known: {known})"
        )
    return source.error(
        (*spec.at, "format"),
        f"missing, and the path's extension names no exporter (known: {known})",
    )


def _lookup(table: dict[str, Any], name: str, what: str, source: Source, at: KeyPath) -> Any:
    if name in table:
        return table[name]
    installed = ", ".join(sorted(table)) or "none"
    raise source.error(
        at,
        f"unknown {what} {show(name)}{did_you_mean(name, table)}; installed: "
        f"{installed} (see fw plugins)",
    )
