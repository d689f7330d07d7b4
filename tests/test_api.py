"""The public API: what ``framework`` exports is exactly what it documents."""

from __future__ import annotations

import framework


def test_all_matches_the_public_names() -> None:
    public = {name for name in vars(framework) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(framework, name)).__name__ == "module"}
    assert set(framework.__all__) == (public - modules) | {"__version__"}


def test_all_is_sorted() -> None:
    assert framework.__all__ == sorted(framework.__all__)
