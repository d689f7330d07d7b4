"""The failures file: each request that finally failed, as a JSON line with its reason.

``fw run --retry-failed`` reads it back to fetch just those requests again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any, BinaryIO

from framework.errors import UsageError
from framework.http import Request
from framework.urls import fingerprint

__all__ = ["FailureLog", "failures_path", "load_failures"]

log = logging.getLogger("fw")


def failures_path(project_file: Path, name: str, exports: list[str]) -> Path:
    """Return where a crawl's failures go: beside its first file export, else its project."""
    folder = next((Path(e).parent for e in exports if e != "-"), project_file.parent)
    return folder / f"{name}.failures.jsonl"


class FailureLog:
    """Write one line per failed request, whole, as failures happen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._file: BinaryIO | None = None
        # One line per request, however many problems it had; by fingerprint, the identity
        # the frontier dedups by (an id() is reused once its request is freed).
        self._logged: set[int] = set()
        self._broken = False

    def start(self, *, keep: bool = False) -> None:
        """Forget an earlier run's failures, so that the file lists this crawl's only.

        ``keep`` them when this run continues the earlier one (a resumed crawl).
        """
        if keep:
            return
        with contextlib.suppress(OSError):  # unwritable: record() will say so
            self.path.unlink(missing_ok=True)

    def record(self, request: Request, kind: str, reason: str) -> None:
        """Append ``request`` with why it failed; a request is recorded once."""
        key = fingerprint(request)
        if key in self._logged or self._broken:
            return
        self._logged.add(key)
        line = {"kind": kind, "reason": reason, "time": round(time.time(), 3),
                "request": request.to_dict()}
        try:
            if self._file is None:  # a crawl without failures leaves no file behind
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("ab", buffering=0)
            self._file.write((json.dumps(line, ensure_ascii=False) + "\n").encode())
        except OSError as exc:  # the list of failures must not become one more failure
            self._broken = True
            log.warning("cannot write the failures file %s: %s", self.path, exc.strerror or exc)
            return
        self.count += 1

    def close(self) -> None:
        """Close the file, if any failure opened it."""
        if self._file is not None:
            self._file.close()


def load_failures(path: Path) -> list[Request]:
    """Read the failed requests back, ready to be tried again from their first attempt."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"--retry-failed: no failures file {path}: the last crawl had no "
                         "failures, or exported elsewhere") from None
    return [_request(line, path, number) for number, line in enumerate(lines, 1) if line]


def _request(line: str, path: Path, number: int) -> Request:
    try:
        data: dict[str, Any] = json.loads(line)["request"]
        return Request.from_dict(data).replace(retries=0, redirects=0)
    except (ValueError, KeyError, TypeError) as exc:  # a torn last line or an edited file
        raise UsageError(f"{path}:{number}: not a failure record: {exc}") from exc
