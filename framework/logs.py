"""Where fw's log goes and how it looks: ``--log-level``, ``--log-format``, ``--log-file``."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Literal

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
        return json.dumps(line, ensure_ascii=False)


def configure_logging(
    level: str,
    fmt: Literal["text", "json"] | str = "text",
    file: Path | None = None,
    *,
    quiet: bool = False,
) -> None:
    """Log to stderr (and ``file``) at ``level``; ``quiet`` raises it to warnings."""
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
    chosen = logging.WARNING if quiet and level in ("debug", "info") else level.upper()
    logging.basicConfig(level=chosen, handlers=handlers, force=True)
