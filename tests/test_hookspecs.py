"""Every hook is documented: in its docstring, argument by argument, and in the README."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from framework import hookspecs

HOOKS = [
    name for name, f in vars(hookspecs).items() if inspect.isfunction(f) and hasattr(f, "fw_spec")
]
README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def test_there_are_registry_and_event_hooks() -> None:
    assert {
        "register_spiders",
        "register_exporters",
        "register_parsers",
        "register_middlewares",
    } <= set(HOOKS)
    assert {
        "crawl_started",
        "crawl_finished",
        "request_scheduled",
        "response_received",
        "item_scraped",
        "crawl_error",
    } <= set(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_hook_docstring_says_what_when_async_each_argument_and_the_return_value(name: str) -> None:
    hook = getattr(hookspecs, name)
    doc = inspect.getdoc(hook) or ""
    summary = doc.splitlines()[0] if doc else ""
    assert summary.endswith("."), f"{name}: no one-line summary"
    assert "Called" in doc, f"{name}: does not say when it is called"
    assert "async" in doc.lower(), f"{name}: does not say whether it may be async"
    for argument in inspect.signature(hook).parameters:
        assert f":param {argument}:" in doc, f"{name}: argument {argument} is undocumented"
    returns = [line for line in doc.splitlines() if line.startswith(":returns: ")]
    assert len(returns) == 1, f"{name}: no ':returns:' line saying what the return value means"
    assert doc.index(":returns:") > doc.rindex(":param "), f"{name}: :returns: goes last"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_in_the_readme_reference(name: str) -> None:
    assert f"`{name}(" in README, f"README's hook reference lacks {name}"
