"""``fw new``: write a new project folder or a pip-installable plugin package.

The files come from ``framework/tools/templates/``: ``project/`` or ``plugin/``, plus
``common/`` (saved pages for the generated tests). Each ``*.tmpl`` file is filled in with
``string.Template`` (``$name``, ``$Name``, ``$dist``, ``$fw_version``, ``$fw_dist``,
``$api_version``), and ``NAME`` in a path becomes the name.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from importlib.metadata import entry_points
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template
from typing import Literal

from framework.__about__ import DISTRIBUTION, __version__
from framework.config.project import Project
from framework.errors import UsageError
from framework.hooks.manager import BUILTIN, ENTRY_POINT_GROUP, make_plugin_manager
from framework.hooks.registry import Registry
from framework.hookspecs import API_VERSION

__all__ = ["new"]

#: Ends with a letter or digit: ``fw-ab-`` is no distribution name pip installs; and short
#: enough to be a file name.
_NAME = re.compile(r"[a-z](?:[a-z0-9_]{0,62}[a-z0-9])?\Z")


def new(kind: Literal["project", "plugin"], name: str, where: Path) -> Path:
    """Write a new ``kind`` called ``name`` into a new folder under ``where``; return it."""
    if not _NAME.match(name):
        raise UsageError(
            f"fw new {kind} {name}: a name is up to 64 lower-case letters, digits and _, "
            "starting with a letter and ending with a letter or digit (it becomes a Python "
            "name and a distribution's)"
        )
    if kind == "plugin" and (owner := _installed(name)):
        raise UsageError(
            f"fw new plugin {name}: an installed plugin ({owner}) is named {name!r} already; "
            "choose another name"
        )
    if kind == "plugin" and (taken := _taken(name)):
        raise UsageError(f"fw new plugin {name}: {name!r} is taken, by {taken}; choose another")
    dist = f"fw-{name.replace('_', '-')}"  # the distribution's name, as pip spells it
    target = where / (name if kind == "project" else dist)
    if os.path.lexists(target):  # False for a path too long: the writing says so
        raise UsageError(f"fw new {kind} {name}: {target} already exists")
    values = {
        "name": name,
        "Name": "".join(p.title() for p in name.split("_")),
        "dist": dist,
        "fw_version": __version__,
        "fw_dist": DISTRIBUTION,
        "api_version": str(API_VERSION),
    }
    templates = files("framework.tools") / "templates"
    try:
        for part in (kind, "common"):
            _copy(templates / part, target, values)
    except OSError as exc:  # -d names a file, a device, a folder fw may not write
        raise UsageError(
            f"fw new {kind} {name}: cannot write {target}: {exc.strerror or exc}"
        ) from exc
    return target


def _installed(name: str) -> str | None:
    """Return the distribution of the installed plugin called ``name``, if there is one:
    a second would be refused once installed (see ``hooks.manager``)."""
    if name == BUILTIN:
        return DISTRIBUTION
    for entry_point in entry_points(group=ENTRY_POINT_GROUP, name=name):
        return entry_point.dist.name if entry_point.dist else name
    return None


def _taken(name: str) -> str | None:
    """Say what of the installed plugins is called ``name`` already, if anything: the new
    plugin registers a spider, a section and an exporter (format and extension) by that
    name, and would clash with it, or quietly take the place of fw's own."""
    if name in {field.name for field in dataclasses.fields(Project)}:
        return "fw's own project key of that name, which the plugin's section would need"
    pm = make_plugin_manager()
    registry = Registry.collect(pm)
    kinds: dict[str, Mapping[str, object]] = {
        "spider": registry.spiders,
        "middleware": registry.middlewares,
        "fetch layer": registry.fetch_layers,
        "section": registry.schemas,
        "exporter": registry.exporters,
    }
    for what, found in kinds.items():
        if name in found:
            owner = registry.owners.get((f"{what.replace(' ', '_')}s", name), name)
            return f"the {what} of {pm.named(owner)}"
    for format_name, exporter in registry.exporters.items():
        if f".{name}" in exporter.extensions:  # -o items.NAME would be the new one's
            owner = registry.owners.get(("exporters", format_name), format_name)
            return f"the extension .{name} of exporter {format_name!r} of {pm.named(owner)}"
    return None


def _copy(folder: Traversable, target: Path, values: dict[str, str]) -> None:
    for entry in folder.iterdir():
        name = entry.name.replace("NAME", values["name"]).removesuffix(".tmpl")
        if entry.is_dir():
            _copy(entry, target / name, values)
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        text = Template(entry.read_text(encoding="utf-8")).substitute(values)
        (target / name).write_text(text, encoding="utf-8")
