"""Where fw's log goes and how it looks: ``--log-level``, ``--log-format``, ``--log-file``."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Literal, TextIO

from framework.http.urls import redact_all

__all__ = ["JsonFormatter", "configure_logging"]

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
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return redact_all(json.dumps(line, ensure_ascii=False))


class _TextFormatter(logging.Formatter):
    """``LEVEL: message``, with any credentials in a URL redacted."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as text, no password in it."""
        return redact_all(super().format(record))


def configure_logging(
    level: str,
    fmt: Literal["text", "json"] | str = "text",
    file: Path | None = None,
    *,
    quiet: bool = False,
) -> None:
    """Log to stderr (and ``file``) at ``level``; ``quiet`` raises it to warnings.

    Credentials in URLs (``user:password@``) are redacted from every line.
    """
    formatter = JsonFormatter() if fmt == "json" else _TextFormatter(_TEXT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if file is not None:
        handlers.append(logging.StreamHandler(_appended(file)))
    for handler in handlers:
        handler.setFormatter(formatter)
    chosen = logging.WARNING if quiet and level in ("debug", "info") else level.upper()
    logging.basicConfig(level=chosen, handlers=handlers, force=True)


def _appended(file: Path) -> TextIO:
    """Open the log file to append to it; a symbolic link planted there is refused (ELOOP),
    never followed to truncate or fill its target."""
    file.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.fdopen(os.open(file, flags, 0o666), "a", encoding="utf-8")
