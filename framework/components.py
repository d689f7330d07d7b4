"""Build the spider, exporters and middlewares a project asks for, checking every reference.

This is the second half of validating a project: it needs the plugins loaded, to know
which spider and exporter names exist and which top-level keys are plugin sections.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from framework.errors import PluginError, ProjectError
from framework.exporters import Exporter
from framework.middleware import Middleware
from framework.parsers import Parsers
from framework.project import ExporterSpec, Project
from framework.registry import Registry
from framework.schema import build, did_you_mean, keys_of
from framework.spider import Spider
from framework.yamlfile import KeyPath, Source

__all__ = ["Components", "assemble", "configure_plugins"]

T = TypeVar("T")


@dataclass(frozen=True)
class Components:
    """The plugin-provided parts of one crawl, ready to run."""

    spider: Spider
    exporters: tuple[Exporter, ...]
    middlewares: tuple[Middleware, ...]
    parsers: Parsers


def assemble(project: Project, registry: Registry, plugin_names: Iterable[str],
             outputs: Sequence[ExporterSpec] = (), *, append: bool = False) -> Components:
    """Check the project against the installed plugins and build its components.

    ``outputs`` are the exporters added with ``-o`` on the command line; ``append`` makes
    every exporter add to what an earlier run wrote.
    """
    source = project.error_source
    _check_sections(project, registry, set(plugin_names))
    spider_class = _lookup(registry.spiders, project.spider, "spider", source, ("spider",))
    spider = _start(registry, "spiders", spider_class.name, spider_class,
                    _options(spider_class, project, spider_class.name),
                    start_urls=project.start_urls)
    exporters = tuple(_exporter(spec, registry, source, append)
                      for spec in (*project.exporters, *outputs))
    middlewares = tuple(_start(registry, "middlewares", name, cls,
                               _options(cls, project, name))
                        for name, cls in registry.middlewares.items())
    return Components(spider, exporters, middlewares, registry.parsers)


def _start(registry: Registry, kind: str, name: str, component: Callable[..., T],
           *args: Any, **kwargs: Any) -> T:
    """Instantiate a plugin's class; a constructor that raises is the plugin's to fix."""
    try:
        return component(*args, **kwargs)
    except Exception as exc:
        plugin = registry.owners.get((kind, name), "?")
        raise PluginError(f"plugin '{plugin}': {kind[:-1]} '{name}' failed to start: "
                          f"{type(exc).__name__}: {exc}") from exc


def configure_plugins(project: Project, plugins: Iterable[tuple[str, object]]) -> Project:
    """Validate the section of each plugin that declares an ``Options`` schema.

    A plugin module with ``Options = <a frozen dataclass>`` gets its section of the project
    file checked like fw's own keys (``FILE:LINE: key: ...``); afterwards
    ``project.section(name)`` returns the built options object instead of the raw data.
    """
    sections = dict(project.sections)
    for name, plugin in plugins:
        schema = getattr(plugin, "Options", None)
        if isinstance(schema, type) and dataclasses.is_dataclass(schema):
            sections[name] = build(schema, project.section(name), project.error_source,
                                   (name,))
    return dataclasses.replace(project, sections=MappingProxyType(sections))


def _check_sections(project: Project, registry: Registry, plugin_names: set[str]) -> None:
    """Every top-level key that is not a core key must name a plugin or something it provides."""
    owners = plugin_names | set(registry.spiders) | set(registry.middlewares)
    for key in project.sections:
        if key not in owners:
            known = [f.name for f in keys_of(Project)] + sorted(owners)
            raise project.error_source.error((key,), f"unknown key{did_you_mean(key, known)}; "
                                             "top-level keys are fw's own or a plugin's name")


def _options(component: type[Spider] | type[Middleware], project: Project, name: str) -> Any:
    """Validate the component's own section against its ``Options`` schema, if it has one."""
    raw = project.section(name)
    if component.Options is not None:
        return build(component.Options, raw, project.error_source, (name,))
    if raw is not None and not isinstance(raw, dict):
        raise project.error_source.error((name,), "expected a mapping of options")
    return raw or {}


def _exporter(spec: ExporterSpec, registry: Registry, source: Source,
              append: bool) -> Exporter:
    if spec.format is not None:
        exporter = _lookup(registry.exporters, spec.format, "exporter", source,
                           (*spec.at, "format"))
    else:
        found = registry.exporter_for_extension(spec.path)
        if found is None:
            raise _no_exporter_for(spec, registry, source)
        exporter = found
    if spec.path == "-" and not exporter.stdout:
        raise source.error((*spec.at, "path"), f"exporter '{exporter.format}' cannot write "
                           "to standard output; give a file")
    options: Any = dict(spec.options)
    if exporter.Options is not None:
        options = build(exporter.Options, options, source, spec.at)
    elif options:
        unknown = next(iter(options))
        raise source.error((*spec.at, unknown), f"unknown key; exporter '{exporter.format}' "
                           "takes no options")
    built: Exporter = _start(registry, "exporters", exporter.format, exporter, spec.path,
                             options, append=append)
    return built


def _no_exporter_for(spec: ExporterSpec, registry: Registry, source: Source) -> ProjectError:
    known = " ".join(registry.extensions())
    if not spec.at:  # from -o on the command line
        return ProjectError("-o", spec.path, f"no exporter for this file extension "
                            f"(known: {known})")
    return source.error((*spec.at, "format"), f"missing, and the path's extension names no "
                        f"exporter (known: {known})")


def _lookup(table: dict[str, Any], name: str, what: str, source: Source, at: KeyPath) -> Any:
    if name in table:
        return table[name]
    installed = ", ".join(sorted(table)) or "none"
    raise source.error(at, f"unknown {what} {name!r}{did_you_mean(name, table)}; installed: "
                       f"{installed} (see fw plugins)")
