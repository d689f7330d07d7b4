"""``fw new``: write a new project folder or a pip-installable plugin package.

The files come from ``framework/tools/templates/``: ``project/`` or ``plugin/``, plus
``common/`` (saved pages for the generated tests). Each ``*.tmpl`` file is filled in with
``string.Template`` (``$name``, ``$Name``, ``$dist``, ``$fw_version``, ``$fw_dist``,
``$api_version``), and ``NAME`` in a path becomes the name.
"""

from __future__ import annotations

import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template
from typing import Literal

from framework.__about__ import DISTRIBUTION, __version__
from framework.errors import UsageError
from framework.hookspecs import API_VERSION

__all__ = ["new"]

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


def new(kind: Literal["project", "plugin"], name: str, where: Path) -> Path:
    """Write a new ``kind`` called ``name`` into a new folder under ``where``; return it."""
    if not _NAME.match(name):
        raise UsageError(
            f"fw new {kind} {name}: a name is lower-case letters, digits and _, "
            "starting with a letter (it becomes a Python name)"
        )
    dist = f"fw-{name.replace('_', '-')}"  # the distribution's name, as pip spells it
    target = where / (name if kind == "project" else dist)
    if target.exists():
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
    for part in (kind, "common"):
        _copy(templates / part, target, values)
    return target


def _copy(folder: Traversable, target: Path, values: dict[str, str]) -> None:
    for entry in folder.iterdir():
        name = entry.name.replace("NAME", values["name"]).removesuffix(".tmpl")
        if entry.is_dir():
            _copy(entry, target / name, values)
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        text = Template(entry.read_text(encoding="utf-8")).substitute(values)
        (target / name).write_text(text, encoding="utf-8")
