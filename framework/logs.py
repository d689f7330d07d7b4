"""Where fw's log goes and how it looks: ``--log-level``, ``--log-format``, ``--log-file``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Literal, TextIO

from framework.http.urls import redact_all

__all__ = ["MASK", "JsonFormatter", "LogFile", "configure_logging", "ensure_stderr"]

_TEXT = "%(levelname)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line of JSON."""
        line = {
            "time": round(record.created, 3),
            "at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _masked(record, record.getMessage()),
        }
        if record.exc_info:
            line["traceback"] = _masked(record, self.formatException(record.exc_info))
        return redact_all(json.dumps(line, ensure_ascii=False))


class _TextFormatter(logging.Formatter):
    """``LEVEL: message``, with any credentials in a URL redacted."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as text, no password in it."""
        return redact_all(_masked(record, super().format(record)))


#: A record's attribute (``extra={MASK: …}``): a function that hides the secrets its text
#: may hold beyond URLs' credentials, a sign-in form's password say, traceback included.
MASK = "fw_mask"


def _masked(record: logging.LogRecord, text: str) -> str:
    mask = getattr(record, MASK, None)
    return text if mask is None else str(mask(text))


class LogFile(logging.StreamHandler[TextIO]):
    """The ``--log-file`` handler. A write that fails (a full disk, ``/dev/full``) is
    said once on stderr, and the file is written no more; ``failure`` keeps why.

    A log is no output of the crawl: its items and state are whole, so it goes on (an
    export or the state cannot be written: it stops), and fw exits 1 for the lost lines.
    """

    def __init__(self, file: Path) -> None:
        super().__init__(_appended(file))
        self.file = file
        self.failure: OSError | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record``, unless a write failed before."""
        if self.failure is None:
            super().emit(record)

    def flush(self) -> None:
        """Flush the file, unless a write failed before (it is closed)."""
        if self.failure is None:
            super().flush()

    def handleError(self, record: logging.LogRecord) -> None:
        """Say once that the file cannot be written, instead of a traceback per record."""
        failure = sys.exc_info()[1]
        if not isinstance(failure, OSError):  # a bug, not the file: logging's own report
            super().handleError(record)
            return
        if self.failure is None:
            self.failure = failure
            with contextlib.suppress(OSError):  # what is buffered is lost: no retry at exit
                self.stream.close()
            why = failure.strerror or str(failure)
            with contextlib.suppress(OSError, ValueError):  # stderr may be full too
                print(
                    f"Error: --log-file {self.file}: {why}; logging to stderr only", file=sys.stderr
                )


def configure_logging(
    level: str,
    fmt: Literal["text", "json"] | str = "text",
    file: Path | None = None,
    *,
    quiet: bool = False,
) -> LogFile | None:
    """Log to stderr (and ``file``) at ``level``; ``quiet`` raises it to warnings. Return
    the handler of ``file``, if any, which tells whether writing to it failed.

    Credentials in URLs (``user:password@``) are redacted from every line.
    """
    formatter = JsonFormatter() if fmt == "json" else _TextFormatter(_TEXT)
    log_file = LogFile(file) if file is not None else None
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers += [log_file] if log_file is not None else []
    for handler in handlers:
        handler.setFormatter(formatter)
    chosen = logging.WARNING if quiet and level in ("debug", "info") else level.upper()
    logging.basicConfig(level=chosen, handlers=handlers, force=True)
    return log_file


def ensure_stderr() -> None:
    """Give fw a standard error if it was started without one (``2>&-``), pointed at
    /dev/null: Python's is None then, ``print(file=None)`` writes to stdout, where items
    may go, and the next file fw opened would take descriptor 2."""
    if sys.stderr is not None:
        return
    fd = os.open(os.devnull, os.O_WRONLY)
    if fd != 2:
        os.dup2(fd, 2)
        os.close(fd)
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - for the process


def _appended(file: Path) -> TextIO:
    """Open the log file to append to it; a symbolic link planted there is refused (ELOOP),
    never followed to truncate or fill its target, and a FIFO that nothing reads (ENXIO)
    rather than waited on for ever."""
    file.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    fd = os.open(file, flags, 0o666)
    os.set_blocking(fd, True)  # only the open must not wait: a reader may be slow
    return os.fdopen(fd, "a", encoding="utf-8")
