"""The docs/ folder: generated references match the code, and every link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from framework import hookspecs
from framework.tools import docs

DOCS = Path(__file__).parents[2] / "docs"


@pytest.mark.parametrize("name", sorted(docs.PAGES))
def test_generated_references_match_the_code(name: str) -> None:
    written = (DOCS / name).read_text(encoding="utf-8")
    assert written == docs.PAGES[name](), (
        f"docs/{name} is out of date: run python -m framework.tools.docs"
    )


def test_every_hook_is_in_the_hook_reference() -> None:
    page = (DOCS / "hooks.md").read_text(encoding="utf-8")
    hooks = [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "fw_spec")]
    assert hooks
    for hook in hooks:
        assert f"### `{hook}(" in page, hook


def test_links_between_pages_resolve() -> None:
    for page in [*DOCS.glob("*.md"), DOCS.parent / "README.md"]:
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"
