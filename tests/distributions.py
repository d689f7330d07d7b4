"""Fake installed distributions, the way pytest's own tests fake them.

A folder on ``PYTHONPATH`` holding a module and a ``*.dist-info`` folder with an
``entry_points.txt`` is, to ``importlib.metadata``, an installed distribution: fw finds
its ``fw`` entry point exactly as it finds a pip-installed plugin's, with no build step.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

__all__ = ["fake_distribution", "on_path"]


def fake_distribution(
    site: Path, name: str, version: str, entry_point: str, module: str, source: str
) -> Path:
    """Install ``module`` (its ``source``) into ``site`` as distribution ``name``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(f"[fw]\n{entry_point} = {module}\n", encoding="utf-8")
    return site


def on_path(site: Path) -> dict[str, str]:
    """Return the environment that puts ``site`` on a subprocess's ``sys.path``."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
