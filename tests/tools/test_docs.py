"""The docs/ folder: generated references match the code, and every link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from framework import hookspecs
from framework.config import Source
from framework.crawl import runner
from framework.errors import ProjectError
from framework.tools import docs

DOCS = Path(__file__).parents[2] / "docs"


@pytest.mark.parametrize("name", sorted(docs.PAGES))
def test_generated_references_match_the_code(name: str) -> None:
    written = (DOCS / name).read_text(encoding="utf-8")
    assert written == docs.PAGES[name](), (
        f"docs/{name} is out of date: run python -m framework.tools.docs"
    )


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda path: path.name)
def test_generated_options_tables_match_the_plugins(page: Path) -> None:
    written = page.read_text(encoding="utf-8")
    assert written == docs.section_tables(written), (
        f"docs/{page.name}'s options are out of date: run python -m framework.tools.docs"
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


def python_blocks(page: str) -> list[str]:
    """Return the ```python code blocks of a docs page, in order."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def test_the_options_page_plugin_reports_what_the_page_says(tmp_path: Path) -> None:
    spider, regex = python_blocks("options.md")
    (tmp_path / "shop.py").write_text(spider, encoding="utf-8")
    project = tmp_path / "project.yaml"
    page = (DOCS / "options.md").read_text(encoding="utf-8")
    for section, said in [
        ("{pages: 0}", "shop.pages: must be at least 1, got 0"),
        ("{sortt: new}", "shop.sortt: unknown key (did you mean 'sort'?)"),
    ]:
        project.write_text(
            f"spider: shop\nstart_urls: [http://a.test/]\nplugins: [./shop.py]\nshop: {section}\n",
            encoding="utf-8",
        )
        assert said in page
        with pytest.raises(ProjectError, match=re.escape(f"{project}:4: {said}")):
            runner.prepare(project)
    namespace: dict[str, object] = {}
    exec(compile(regex, "options.md", "exec"), namespace)
    source = Source(tmp_path / "x.yaml", {("rules", "match"): 7})
    with pytest.raises(ProjectError, match=r"x.yaml:7: rules.match: not a valid regular"):
        namespace["regex"]("(", source, ("rules", "match"))  # type: ignore[operator]


def test_the_architecture_page_names_every_module_and_only_real_ones() -> None:
    page = (DOCS / "architecture.md").read_text(encoding="utf-8")
    framework_dir = DOCS.parent / "framework"
    for path in re.findall(r"`([a-z_]+/[a-z_/]*[a-z_]+\.py)`", page):
        assert (framework_dir / path).is_file(), f"architecture.md names missing {path}"
    named = set(re.findall(r"`(?:[a-z_]+/)*([a-z_]+\.py)`", page))
    modules = {
        path.name
        for path in framework_dir.rglob("*.py")
        if path.name not in ("__init__.py", "__about__.py", "__main__.py")
    }
    assert modules <= named, f"architecture.md does not name {sorted(modules - named)}"


def test_the_readme_fault_table_names_tests_that_exist() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("### What holds, and the faults fw is tested against", 1)[1]
    table = table.split("\n## ", 1)[0]
    named = re.findall(r"`(tests/[\w/]+(?:\.py)?/?)`", table)
    assert len(named) >= 15
    for path in named:
        assert (DOCS.parent / path).exists(), f"the README's fault table names missing {path}"


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_plugin_option_tables_match_their_schemas(page: str) -> None:
    written = (DOCS / page).read_text(encoding="utf-8")
    assert docs.section_tables(written) == written, (
        f"docs/{page} is out of date: run python -m framework.tools.docs"
    )


def test_a_marked_table_of_a_plugin_that_declares_no_options_is_an_error() -> None:
    with pytest.raises(LookupError, match="no installed plugin 'nothing' declares Options"):
        docs.section_tables("<!-- options: nothing -->\n<!-- end options -->\n")
