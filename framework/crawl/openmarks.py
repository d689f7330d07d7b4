"""Marks beside the exports that are open, where no crawl state says so.

A crawl killed after its last page was settled, before its exports closed (in a
``crawl_finished`` hook, by a second signal), leaves a JSON array without its ``]``. Its
rerun finds the crawl finished and fetches nothing; it must still close those exports,
and touch no other file. A SQLite frontier's state says which exports were left open. A
Redis frontier keeps no state of them: each worker writes its own files, on its own
machine. So with Redis the state of a file lives beside it: a hidden file
``.NAME.fw-open``, made once the export opens and removed once it closes. It names the
crawl and the file it was made for, so that a mark the file outlived (moved away,
replaced) or another crawl's never has a file closed that is not the one left open.
"""

from __future__ import annotations

import contextlib
import json
import logging
import stat
from pathlib import Path

from framework.paths import beside, descriptor, open_new

__all__ = ["mark", "marked", "unmark"]

log = logging.getLogger("fw")

#: More than any mark fw writes holds: a file planted there is not read whole.
_MOST = 4096


def mark(path: str, crawl: str) -> None:
    """Note beside the export at ``path`` that ``crawl`` has it open; say so if it cannot."""
    if (beside := _mark_of(path)) is None or (file := _identity(path)) is None:
        return
    try:
        with open_new(beside) as note:
            note.write(json.dumps({"crawl": crawl, "file": file}).encode())
    except OSError as exc:
        log.warning(
            "export %s: cannot note beside it that it is open (%s): if this worker is "
            "killed after the crawl's last page, its rerun will not finish the export",
            path,
            exc.strerror or exc,
        )


def unmark(path: str) -> None:
    """Remove the note that the export at ``path`` is open: it was closed whole."""
    if (beside := _mark_of(path)) is not None:
        with contextlib.suppress(OSError):
            beside.unlink(missing_ok=True)


def marked(path: str, crawl: str) -> bool:
    """Tell whether a run of ``crawl`` left the export at ``path`` open: the file there is
    the one its mark names."""
    if (beside := _mark_of(path)) is None or (file := _identity(path)) is None:
        return False
    try:
        if not stat.S_ISREG(beside.lstat().st_mode):  # a FIFO planted there would hold fw
            return False
        with beside.open("rb") as note:
            found = json.loads(note.read(_MOST))
    except (OSError, ValueError):  # none, or not one fw wrote whole
        return False
    return isinstance(found, dict) and found == {"crawl": crawl, "file": file}


def _mark_of(path: str) -> Path | None:
    """Return where the mark of the export at ``path`` goes; None for standard output or
    a descriptor, which no rerun reopens."""
    if path == "-" or descriptor(path) is not None:
        return None
    return beside(path, "open")


def _identity(path: str) -> list[int] | None:
    """Return what tells the file at ``path`` from another there (its device and inode);
    None unless it is a regular file."""
    try:
        found = Path(path).stat()
    except OSError:
        return None
    if not stat.S_ISREG(found.st_mode):  # a FIFO or a device: never reopened
        return None
    return [found.st_dev, found.st_ino]
