"""STYLE.md: modules stay under ~400 lines, so each holds one concept a newcomer can find."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
LIMIT = 400


@pytest.mark.parametrize("module", sorted([*(ROOT / "framework").rglob("*.py"),
                                           *(ROOT / "plugins").rglob("*.py")]),
                         ids=lambda path: str(path.relative_to(ROOT)))
def test_modules_stay_under_400_lines(module: Path) -> None:
    lines = len(module.read_text(encoding="utf-8").splitlines())
    assert lines <= LIMIT, f"{module.relative_to(ROOT)} has {lines} lines; split it"
