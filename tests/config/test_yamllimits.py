"""A project file that would exhaust memory or the stack is one located error and exit 2."""

from __future__ import annotations

import pytest

from framework.config.yamllimits import MAX_DEPTH, MAX_REPEATED, Overrun, parse


def test_values_may_nest_up_to_the_limit() -> None:
    assert parse("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(Overrun, match="nested 101 levels deep"):
        parse("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))


def test_aliases_may_repeat_up_to_the_limit() -> None:
    # &a names 1,000 values (the list and its 999 items); each *a repeats them all.
    named = f"&a [{', '.join(['x'] * 999)}], &s x"
    at_the_limit = f"[{named}{', *a' * (MAX_REPEATED // 1000)}]"
    assert len(parse(at_the_limit)) == 2 + MAX_REPEATED // 1000
    with pytest.raises(Overrun, match="repeat 100,001 values"):
        parse(f"[{named}{', *a' * (MAX_REPEATED // 1000)}, *s]")
