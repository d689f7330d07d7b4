"""Run one crawler as a child process and measure it: wall time, CPU, peak memory, items.

CPU and peak RSS come from ``os.wait4`` (in ``launch.py``), i.e. from the kernel's
accounting of the child and of any process it waited for, so nothing has to run inside
the crawler to measure it.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence, Set
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Run", "count_items", "median_of", "run_measured"]

_LOG_TAIL_LINES = 15
_LAUNCHER = Path(__file__).resolve().with_name("launch.py")
_LAUNCHER_GRACE = 60.0  # seconds past the crawl's timeout before the launcher is killed


@dataclass(frozen=True)
class Run:
    """One crawl by one crawler, as measured from outside."""

    crawler: str
    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    items: int
    unique_items: int  # pages (SKUs, or reference URLs) exported exactly ``copies`` times
    expected: int  # distinct items: the site's pages
    returncode: int
    timed_out: bool = False
    log_tail: str = ""
    copies: int = 1  # how many times the crawler crawls the whole site
    mismatch: str = ""  # how the pages exported differ from the reference set, if one is given

    @property
    def valid(self) -> bool:
        """Tell whether the crawl finished and exported every page exactly ``copies`` times."""
        return (
            self.returncode == 0
            and not self.timed_out
            and self.items == self.expected * self.copies
            and self.unique_items == self.expected
        )

    @property
    def pages_per_s(self) -> float:
        """Items exported per wall-clock second, start-up included."""
        return self.items / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_ms_per_page(self) -> float:
        """User plus system CPU milliseconds per exported item."""
        return 1000 * (self.user_s + self.sys_s) / self.items if self.items else 0.0

    def to_json(self) -> dict[str, Any]:
        """Return every field and derived figure, for the results file."""
        derived = {
            "valid": self.valid,
            "pages_per_s": self.pages_per_s,
            "cpu_ms_per_page": self.cpu_ms_per_page,
        }
        return asdict(self) | derived


def run_measured(
    name: str,
    command: Sequence[str],
    *,
    cwd: Path,
    output: Path,
    expected: int,
    timeout: float,
    env: dict[str, str] | None = None,
    copies: int = 1,
    reference: Set[str] | None = None,
) -> Run:
    """Run ``command`` in ``cwd`` to its end (killed after ``timeout`` s) and measure it.

    The command is started by ``launch.py``, which measures it with ``os.wait4`` from a
    process small enough not to inflate its peak RSS (see there why that matters).
    Without a ``reference`` the items are told apart by SKU (the shop); with one, by URL,
    and only the URLs in ``reference`` count.
    """
    report, log = cwd / f"{name}.measured.json", cwd / f"{name}.log"
    launcher = subprocess.Popen(
        [sys.executable, str(_LAUNCHER), str(report), str(timeout), str(log), "--", *command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        launcher.wait(timeout + _LAUNCHER_GRACE)
    except subprocess.TimeoutExpired:  # the launcher itself hung: end it and its child
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
    if not report.exists():
        raise RuntimeError(f"{name}: launch.py wrote no measurement:\n{_tail(log)}")
    measured = json.loads(report.read_text(encoding="utf-8"))
    items, unique, mismatch = count_items(output, copies, reference)
    return Run(
        name,
        measured["wall_s"],
        measured["user_s"],
        measured["sys_s"],
        measured["peak_rss_kb"] / 1024,
        items,
        unique,
        expected,
        measured["returncode"],
        timed_out=measured["timed_out"],
        log_tail=_tail(log),
        copies=copies,
        mismatch=mismatch,
    )


def count_items(
    path: Path, copies: int = 1, reference: Set[str] | None = None
) -> tuple[int, int, str]:
    """Return how many items an export holds, how many pages it holds ``copies`` times,
    and how its URLs differ from ``reference`` (``""`` when they do not, or without one).

    The export is JSON lines, or a JSON array (``.json``). A page is a SKU (the shop) or,
    given a ``reference`` set of URLs, a URL of that set. Counting pages as well as items
    catches a crawler that exported a page twice and missed another; with ``reference``,
    ``items == len(reference) * copies`` and every URL there ``copies`` times means the
    crawler found exactly the reference set.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0, 0, ""
    items = _parse_items(text, json_array=path.suffix == ".json")
    if reference is None:
        skus = Counter(item.get("sku") for item in items)
        return len(items), sum(1 for times in skus.values() if times == copies), ""
    urls = Counter(item.get("url") for item in items)
    unique = sum(1 for url, times in urls.items() if times == copies and url in reference)
    return len(items), unique, _difference(set(urls), reference)


def _difference(found: Set[object], reference: Set[str]) -> str:
    """Say which reference URLs are missing and which found ones are not in it."""
    missing, extra = sorted(reference - found), sorted(map(str, found - reference))
    parts = [
        f"{len(urls)} {what} (e.g. {', '.join(urls[:3])})"
        for urls, what in ((missing, "missing"), (extra, "not in the reference"))
        if urls
    ]
    return "; ".join(parts)


def _parse_items(text: str, *, json_array: bool) -> list[dict[str, Any]]:
    try:
        if json_array:
            loaded = json.loads(text) if text.strip() else []
            return loaded if isinstance(loaded, list) else []
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError:  # a torn export counts as nothing rather than crashing the report
        return []


def _tail(path: Path) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def median_of(runs: Sequence[Run]) -> dict[str, float] | None:
    """Return the median of each figure over the valid runs, or None if none was valid."""
    good = [run for run in runs if run.valid]
    if not good:
        return None
    figures = {
        "pages_per_s": [r.pages_per_s for r in good],
        "cpu_ms_per_page": [r.cpu_ms_per_page for r in good],
        "peak_rss_mb": [r.peak_rss_mb for r in good],
        "wall_s": [r.wall_s for r in good],
        "items": [float(r.items) for r in good],
    }
    return {name: statistics.median(values) for name, values in figures.items()}
