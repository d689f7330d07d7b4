"""Telling this process's own files by name (``framework/paths.py``)."""

from __future__ import annotations

import pytest

from framework.paths import descriptor


@pytest.mark.parametrize(
    ("name", "fd"),
    [
        ("/dev/stdout", 1),
        ("//dev/stdout", 1),  # POSIX keeps a leading "//"; Linux opens the same file
        ("/dev/./stdout", 1),
        ("/proc/thread-self/fd/1", 1),
        ("/proc/self/fd/2", 2),
        ("/dev/fd/7", 7),
        ("/dev/stdout.json", None),
        ("dev/stdout", None),  # relative: a file of that name here
    ],
)
def test_a_name_of_an_open_descriptor_is_told_however_it_is_written(
    name: str, fd: int | None
) -> None:
    """Written in place, never replaced: renaming a file over ``//dev/stdout`` as root
    replaced the system's link."""
    assert descriptor(name) == fd
