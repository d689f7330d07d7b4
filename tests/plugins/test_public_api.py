"""Bundled plugins are ordinary plugins: they import only what any plugin may import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import framework
import framework.config

PLUGINS = Path(__file__).parents[2] / "plugins"
#: The modules of fw a plugin may import, with what each makes public.
PUBLIC = {"framework": set(framework.__all__), "framework.config": set(framework.config.__all__)}


def framework_imports(path: Path) -> list[tuple[str, str]]:
    """Return (module, name) for every name ``path`` imports from fw."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("framework"):
            found += [(node.module or "", alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names if a.name.startswith("framework")]
    return found


@pytest.mark.parametrize(
    "plugin", sorted(PLUGINS.rglob("*.py")), ids=lambda path: str(path.relative_to(PLUGINS))
)
def test_a_bundled_plugin_imports_only_public_names(plugin: Path) -> None:
    for module, name in framework_imports(plugin):
        assert module in PUBLIC, f"{plugin.name} imports {module}, which is not public"
        assert name in PUBLIC[module], f"{plugin.name} imports {name}, not public in {module}"
