"""The public API: what ``framework`` exports is exactly what it documents."""

from __future__ import annotations
import __future__

import types

import framework


def test_all_matches_the_public_names() -> None:
    public = {
        name
        for name, value in vars(framework).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType | __future__._Feature)
    }
    assert set(framework.__all__) == public | {"__version__"}


def test_all_is_sorted() -> None:
    # As ruff sorts it: constants first, then classes and functions.
    assert framework.__all__ == sorted(
        framework.__all__, key=lambda name: (not name.isupper(), name)
    )


def test_the_config_api_for_plugins_exports_what_it_lists() -> None:
    import framework.config

    assert framework.config.__all__ == sorted(framework.config.__all__)
    assert all(hasattr(framework.config, name) for name in framework.config.__all__)
