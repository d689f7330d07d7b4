"""Show a running crawl: a live panel on a terminal, periodic log lines elsewhere.

The engine hands out a ``Sample`` of its counters on request; this module only reads
samples, so that showing progress can never change what the crawl does.

``FW_PROGRESS_INTERVAL`` sets the seconds between two log lines (default 10): more for
quieter logs of a long crawl, less to watch a short one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from framework.errors import UsageError

if TYPE_CHECKING:  # rich takes ~50 ms to import: only a live panel imports it
    from rich.console import Group
    from rich.live import Live

__all__ = ["Mode", "Progress", "Sample"]

log = logging.getLogger("fw")

#: ``live``: a rich panel on the terminal; ``log``: a line every ``interval``; ``off``.
Mode = Literal["live", "log", "off"]

#: Seconds between two log lines when stderr is not a terminal.
LOG_INTERVAL = 10.0
#: Seconds between two redraws of the live panel.
_REDRAW = 0.25
#: Hosts shown as slowed down, at most.
_SLOW_SHOWN = 5


@dataclass(frozen=True)
class Sample:
    """A crawl's counters at one moment."""

    elapsed: float
    pages: int
    items: int
    queued: int
    delayed: int
    in_flight: int
    errors: Mapping[str, int]
    #: Hosts throttling has slowed down, with their delay in seconds.
    slowed: Mapping[str, float]

    @property
    def rate(self) -> float:
        """Pages per second since the crawl began."""
        return self.pages / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        """Return the sample as one log line."""
        errors = sum(self.errors.values())
        text = (
            f"{self.pages} pages ({self.rate:.1f}/s), {self.items} items, "
            f"{self.queued} queued, {self.delayed} to retry, {self.in_flight} in flight, "
            f"{errors} errors"
        )
        if self.errors:
            text += " (" + ", ".join(f"{k} {n}" for k, n in _top(self.errors)) + ")"
        if self.slowed:
            text += "; slowed: " + ", ".join(f"{h} {d:.2f}s" for h, d in _top(self.slowed))
        return text


class Progress:
    """Report ``sample()`` every so often, in the chosen ``mode``, until cancelled."""

    def __init__(
        self, sample: Callable[[], Sample], mode: Mode, name: str, interval: float | None = None
    ) -> None:
        """``interval`` defaults to ``FW_PROGRESS_INTERVAL``, else ``LOG_INTERVAL``."""
        self._sample, self.mode, self._name = sample, mode, name
        self._interval = log_interval() if interval is None else interval

    async def run(self) -> None:
        """Report until cancelled (the runner cancels it when the crawl ends)."""
        if self.mode == "log":
            while True:
                await asyncio.sleep(self._interval)
                log.info("%s: %s", self._name, self._sample().line())
        elif self.mode == "live":
            with self._live() as live:
                while True:
                    # Live's own refresh thread is off: the panel is redrawn here, on a
                    # new sample, so every update must ask for the redraw.
                    live.update(panel(self._name, self._sample()), refresh=True)
                    await asyncio.sleep(_REDRAW)

    @contextmanager
    def _live(self) -> Iterator[Live]:
        """Show the panel at the bottom; log records print above it meanwhile."""
        from rich.console import Console
        from rich.live import Live
        from rich.logging import RichHandler

        console = Console(stderr=True)
        handler = RichHandler(console=console, show_path=False, show_time=False)
        root = logging.getLogger()
        saved = root.handlers[:]
        handler.setLevel(min((h.level for h in saved), default=logging.INFO))
        root.handlers = [handler, *(h for h in saved if _writes_a_file(h))]
        try:
            with Live(console=console, transient=True, auto_refresh=False) as live:
                yield live
        finally:
            root.handlers = saved


def log_interval() -> float:
    """Return the seconds between log lines: ``FW_PROGRESS_INTERVAL``, else the default."""
    text = os.environ.get("FW_PROGRESS_INTERVAL", "").strip()
    if not text:
        return LOG_INTERVAL
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"FW_PROGRESS_INTERVAL={text}: expected a number of seconds above 0")
    return seconds


def panel(name: str, sample: Sample) -> Group:
    """Render a sample for the terminal."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text.assemble(
        (f"{name} ", "bold"),
        f"{sample.elapsed:.0f}s  ",
        (f"{sample.pages}", "bold green"),
        f" pages ({sample.rate:.1f}/s)  ",
        (f"{sample.items}", "bold"),
        " items  ",
        f"{sample.queued} queued  {sample.delayed} to retry  {sample.in_flight} in flight",
    )
    parts: list[Table | Text] = [head]
    if sample.errors:
        parts.append(
            Text("errors: " + ", ".join(f"{k} {n}" for k, n in _top(sample.errors)), style="red")
        )
    if sample.slowed:
        table = Table("slowed host", "delay", box=None, padding=(0, 2))
        for host, delay in _top(sample.slowed, _SLOW_SHOWN):
            table.add_row(host, f"{delay:.2f}s")
        parts.append(table)
    return Group(*parts)


def _top(counts: Mapping[str, float], n: int = 6) -> list[tuple[str, float]]:
    return sorted(counts.items(), key=lambda kv: -kv[1])[:n]


def _writes_a_file(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.FileHandler)
