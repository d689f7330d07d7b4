"""Marks beside the exports that are open, where no crawl state says so.

A crawl killed after its last page was settled, before its exports closed (in a
``crawl_finished`` hook, by a second signal), leaves a JSON array without its ``]`` and a
CSV header without its late columns. Its rerun finds the crawl finished and fetches
nothing; it must still close those exports, and touch no other file. A SQLite frontier's
state says which exports were left open. A Redis frontier keeps no state of them: each
worker writes its own files, on its own machine. So with Redis the state of a file lives
beside it: a hidden empty file ``.NAME.fw-open``, made once the export opens and removed
once it closes (as the CSV exporter keeps its ``.NAME.fw-header`` copy there).
"""

from __future__ import annotations

import contextlib
import logging
import stat
from pathlib import Path

from framework.paths import descriptor, open_new

__all__ = ["mark", "marked", "unmark"]

log = logging.getLogger("fw")


def mark(path: str) -> None:
    """Note beside the export at ``path`` that it is open; say so if it cannot be noted."""
    if not _regular(path) or (beside := _mark_of(path)) is None:
        return
    try:
        open_new(beside).close()
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


def marked(path: str) -> bool:
    """Tell whether a run left the export at ``path`` open (and it is still there)."""
    beside = _mark_of(path)
    return beside is not None and _regular(path) and beside.is_file()


def _mark_of(path: str) -> Path | None:
    """Return where the mark of the export at ``path`` goes; None for standard output or
    a descriptor, which no rerun reopens."""
    if path == "-" or descriptor(path) is not None:
        return None
    real = Path(path).resolve()  # through a symlink: beside the file written
    return real.with_name(f".{real.name}.fw-open")


def _regular(path: str) -> bool:
    """Tell whether ``path`` is a file (not moved away, nor a FIFO or a device)."""
    try:
        return stat.S_ISREG(Path(path).stat().st_mode)
    except OSError:
        return False
