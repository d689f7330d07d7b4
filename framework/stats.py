"""Count what a crawl did, and summarise it at the end."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stats"]

#: Statuses with which sites refuse a client they take for a bot.
_REFUSALS = (403, 418, 429)


@dataclass
class Stats:
    """The running counts of one crawl; ``to_dict()`` is what ``--stats`` writes."""

    name: str
    pages: int = 0
    items: int = 0
    requests: int = 0
    retries: int = 0
    dropped: int = 0
    bytes: int = 0
    reason: str = "finished"
    errors: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    hosts: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    started: float = field(default_factory=time.time)
    _clock_start: float = field(default_factory=time.monotonic, repr=False)
    elapsed: float = 0.0

    def response(self, host: str, status: int, size: int) -> None:
        """Count one response."""
        self.pages += 1
        self.bytes += size
        self.statuses[status] += 1
        self.hosts[host][status] += 1

    def finish(self, reason: str | None = None) -> None:
        """Stop the clock; ``reason`` says why the crawl ended if not by running out."""
        self.elapsed = time.monotonic() - self._clock_start
        if reason:
            self.reason = reason

    @property
    def pages_per_second(self) -> float:
        """Responses per second of elapsed time."""
        return self.pages / self.elapsed if self.elapsed > 0 else 0.0

    def blocked(self) -> list[tuple[str, int, int]]:
        """Return ``(host, status, count)`` for hosts that refused every request."""
        found = []
        for host, statuses in self.hosts.items():
            refusals = {s: n for s, n in statuses.items() if s in _REFUSALS}
            if refusals and not any(200 <= s < 300 for s in statuses):
                status = max(refusals, key=refusals.__getitem__)
                found.append((host, status, sum(statuses.values())))
        return found

    def summary(self) -> list[str]:
        """Return the lines printed at the end of a crawl."""
        errors = sum(self.errors.values())
        detail = ", ".join(f"{kind} {n}" for kind, n in self.errors.most_common())
        lines = [f"{self.name}: {self.reason} in {self.elapsed:.1f}s: {self.pages} pages "
                 f"({self.pages_per_second:.1f}/s), {self.items} items, "
                 f"{errors} error{'s' if errors != 1 else ''}"
                 + (f" ({detail})" if detail else "")
                 + (f", {self.retries} retries" if self.retries else "")]
        lines += [f"blocked: {host} answered HTTP {status} to all {n} requests: the site "
                  "refuses this client; send a browser User-Agent (headers:) and slow down "
                  "(delay:)" for host, status, n in self.blocked()]
        return lines

    def to_dict(self) -> dict[str, Any]:
        """Return the stats as JSON-ready data."""
        return {
            "name": self.name, "reason": self.reason, "started": self.started,
            "elapsed": round(self.elapsed, 3),
            "pages_per_second": round(self.pages_per_second, 2), "pages": self.pages,
            "items": self.items, "requests": self.requests, "retries": self.retries,
            "dropped_items": self.dropped, "bytes": self.bytes,
            "errors": dict(self.errors), "filtered": dict(self.filtered),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "blocked": [{"host": h, "status": s, "requests": n} for h, s, n in self.blocked()],
        }
