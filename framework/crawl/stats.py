"""Count what a crawl did, and summarise it at the end."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framework.frontier import Counts
from framework.http.urls import host_of, redact_all, site_of
from framework.middleware import Middleware
from framework.output import write_fully
from framework.paths import descriptor, is_socket, is_stream, open_new

__all__ = ["Stats"]

log = logging.getLogger("fw")

#: Statuses with which sites refuse a client they take for a bot.
_REFUSALS = (403, 418, 429)


@dataclass
class Stats:
    """The running counts of one crawl; ``to_dict()`` is what ``--stats`` writes."""

    name: str
    pages: int = 0
    #: Responses to what item steps downloaded (``files``): counted apart from pages.
    downloads: int = 0
    #: Pages handled whole: their callback ran without a failure, or they had not changed
    #: since the last crawl (incremental), which needs no callback.
    handled: int = 0
    items: int = 0
    requests: int = 0
    #: Retries made, by the kind of failure retried (``http_503``, ``connection``).
    retried: Counter[str] = field(default_factory=Counter)
    #: Items no exporter could write (each is also an ``item_error``).
    unexportable: int = 0
    #: By export path, items that export could not write though another did (each is also
    #: an ``item_error``): "N items exported" is not N in every file.
    missed: Counter[str] = field(default_factory=Counter)
    #: How many exporters the crawl writes to; with none, its items go nowhere.
    exporters: int = 0
    #: Requests in flight when the crawl was stopped, cancelled after ``stop_timeout``.
    cut_short: int = 0
    #: What blocked the event loop (``spider 'x' callback parse``): how often, seconds in all.
    stalls: dict[str, tuple[int, float]] = field(default_factory=dict)
    dropped: int = 0
    bytes: int = 0
    connections: int = 0
    dns_lookups: int = 0
    reason: str = "finished"
    #: Why the crawl was aborted (an export that cannot be written), if it was.
    aborted: str | None = None
    errors: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)
    #: Start requests offered (the spider's, the plugins', those retried); those refused
    #: (also in ``filtered``), by why: ``scheme``, ``invalid_url``, ``offsite``, ``robots``.
    starts: int = 0
    refused_starts: Counter[str] = field(default_factory=Counter)
    #: The crawl went on from a saved one: what it had queued may all be forbidden or done.
    resumed: bool = False
    statuses: Counter[int] = field(default_factory=Counter)
    hosts: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    #: Per host, the offsite hosts it redirected to (login walls, challenge hosts).
    away: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    #: Redirects to another port of the same host, outside allowed_domains: by (from, to).
    ported: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Pages a spider reported as challenge or login pages.
    blocked_pages: list[str] = field(default_factory=list)
    #: What the frontier still held when the crawl ended (stopped early, or interrupted).
    left: Counts | None = None
    #: How many requests the failures file lists, and where it is.
    failures: tuple[int, str] | None = None
    #: The hosts adaptive throttling still slowed down when the crawl ended: their delay,
    #: and what slowed them (``answered 429/503``, ``timed out``, ``slow replies``).
    throttled: dict[str, tuple[float, str]] = field(default_factory=dict)
    #: The robots.txt files fetched, and each Crawl-delay (seconds) that slowed a host.
    robots_fetched: int = 0
    crawl_delays: dict[str, float] = field(default_factory=dict)
    #: The middlewares whose own counts (``stats()``, ``summary()``) join these.
    reporters: tuple[Middleware, ...] = field(default=(), repr=False)
    started: float = field(default_factory=time.time)
    clock_start: float = field(default_factory=time.monotonic, repr=False)
    elapsed: float = 0.0

    @property
    def retries(self) -> int:
        """Retries made, of every kind."""
        return self.retried.total()

    def response(self, host: str, status: int, size: int) -> None:
        """Count one response."""
        self.pages += 1
        self.bytes += size
        self.statuses[status] += 1
        self.hosts[host][status] += 1

    def downloaded(self, host: str, status: int, size: int) -> None:
        """Count one response to an item step's download."""
        self.downloads += 1
        self.bytes += size
        self.statuses[status] += 1
        self.hosts[host][status] += 1

    def redirected(self, url: str, target: str) -> None:
        """Count a redirect from ``url`` to ``target``, outside allowed_domains."""
        host, away = host_of(url), host_of(target)
        if away == host:  # only the port differs: allowed_domains pins another one
            self.ported[site_of(url), site_of(target)] += 1
        else:
            self.away[host][away] += 1

    def abort(self, why: str) -> None:
        """Note that the crawl was aborted, and why; its clock stops if it still runs."""
        self.aborted = why
        if not self.elapsed:
            self.elapsed = time.monotonic() - self.clock_start
        self.reason = "aborted"

    def finish(self, reason: str | None = None) -> None:
        """Stop the clock; ``reason`` says why the crawl ended if not by running out."""
        self.elapsed = time.monotonic() - self.clock_start
        if reason:
            self.reason = reason

    @property
    def pages_per_second(self) -> float:
        """Responses per second of elapsed time."""
        return self.pages / self.elapsed if self.elapsed > 0 else 0.0

    def blocked(self) -> list[str]:
        """Describe each way the crawl was refused, one line per host or kind."""
        lines = []
        for host, statuses in self.hosts.items():
            if not statuses or any(200 <= s < 300 for s in statuses):
                continue
            # Only where every answer was a refusal, or a redirect: a 404 or a 500 is not.
            if all(s in _REFUSALS for s in statuses):
                refused = " or ".join(f"HTTP {s}" for s, _ in statuses.most_common())
                lines.append(f"{host} answered {refused} to all {statuses.total()} requests")
            elif self.away[host].total() == statuses.total():  # each one, to another host
                target = self.away[host].most_common(1)[0][0]
                lines.append(f"{host} redirected all {statuses.total()} requests to {target}")
        if self.blocked_pages:
            lines.append(
                f"{len(self.blocked_pages)} pages were challenge or login pages "
                f"(first: {self.blocked_pages[0]})"
            )
        return lines

    def summary(self) -> list[str]:
        """Return the lines printed at the end of a crawl."""
        errors = sum(self.errors.values())
        detail = ", ".join(f"{kind} {n}" for kind, n in self.errors.most_common())
        lines = [
            f"{self.name}: {self.reason} in {self.elapsed:.1f}s: {self.pages} pages "
            f"({self.pages_per_second:.1f}/s), "
            + (f"{self.downloads} downloads, " if self.downloads else "")
            + f"{self._items()}, "
            f"{errors} error{'s' if errors != 1 else ''}"
            + (f" ({detail})" if detail else "")
            + (f", {self.retries} retries" if self.retries else "")
        ]
        lines += [
            f"blocked: {what}: the site refuses this client; send a browser User-Agent "
            "(headers:) and slow down (delay:)"
            for what in self.blocked()
        ]
        lines += [
            f"offsite: {a} redirected {n} request{'s' if n != 1 else ''} to {b}, another port "
            f"of the same host, outside allowed_domains; add {b} to allowed_domains (or "
            f"{host_of('http://' + b)}, for every port)"
            for (a, b), n in self.ported.items()
        ]
        lines += self._politeness()
        if self.failures:
            count, path = self.failures
            lines.append(
                f"failures: {count} request{'s' if count != 1 else ''} listed in {path}; "
                "fw run --retry-failed "
                "tries them again"
            )
        lines += [
            f"blocked the event loop: {who} {n} time{'s' if n != 1 else ''}, {seconds:.1f} s in "
            "all; requests in flight were not charged for it"
            for who, (n, seconds) in self.stalls.items()
        ]
        if self.cut_short:
            lines.append(
                f"cut short: {self.cut_short} requests in flight when the crawl stopped, "
                "handed back to be fetched again"
            )
        if self.left and (self.left.pending or self.left.delayed):
            lines.append(
                f"not fetched: {self.left.pending} queued and {self.left.delayed} "
                "waiting to retry when the crawl stopped"
            )
        for reporter in self.reporters:
            lines += _reported(reporter, reporter.summary, (), _lines)
        return lines

    def plugins(self) -> dict[str, Any]:
        """Return what each middleware counted itself, by its name (``plugins`` in --stats)."""
        found = {m.name: _reported(m, m.stats, None, _counts) for m in self.reporters}
        return {name: counts for name, counts in found.items() if counts is not None}

    def _items(self) -> str:
        """Say how many items went where: exported, dropped, or not writable at all."""
        if not self.exporters:
            return f"{self.items} items scraped, none exported (no exporter: add -o items.jsonl)"
        lost = [
            f"{n} {what}"
            for n, what in ((self.dropped, "dropped"), (self.unexportable, "unexportable"))
            if n
        ]
        lost += [f"{n} not in {path}" for path, n in self.missed.items() if n]
        return f"{self.items} items exported" + (f" ({', '.join(lost)})" if lost else "")

    def _politeness(self) -> list[str]:
        """Say which hosts were slowed down, by throttling or by their robots.txt."""
        lines = []
        if self.throttled:
            ranked = sorted(self.throttled.items(), key=lambda item: -item[1][0])
            shown = ", ".join(f"{host} {delay:g}s ({why})" for host, (delay, why) in ranked[:3])
            more = f" and {len(ranked) - 3} more" if len(ranked) > 3 else ""
            lines.append(f"throttled: {shown}{more}, still slowed when the crawl ended")
        if self.crawl_delays:
            lines.append(f"robots.txt Crawl-delay: {_hosts(self.crawl_delays)}")
        return lines

    def save(self, path: Path) -> None:
        """Write the stats as JSON to ``path``, creating its folder.

        A file is replaced atomically (a temporary file renamed over it), so a reader never
        sees half of it, and a symbolic link planted there is replaced, never written
        through. ``/dev/stdout`` and the like are written through fw's own descriptor,
        whatever it is (a file the shell opened, too), and a FIFO or a device in place;
        a FIFO that nothing reads fails (ENXIO) instead of holding fw forever.
        """
        text = redact_all(json.dumps(self.to_dict(), indent=2, ensure_ascii=False)) + "\n"
        if (fd := descriptor(path)) is not None:  # /dev/stdout: fw's own, whatever it is
            write_fully(fd, text.encode("utf-8"))
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if is_socket(path):  # bound there since fw started: replacing it takes a service's address
            raise OSError(errno.ENXIO, "a socket", str(path))
        if is_stream(path):
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            os.set_blocking(fd, True)  # only the open must not wait: a reader may be slow
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
            return
        # Not mkstemp: its files are 0600 whatever the umask; a report is made as open() would.
        part = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
        try:
            with open_new(part) as file:
                file.write(text.encode("utf-8"))
            part.replace(path)
        except BaseException:
            with contextlib.suppress(OSError):
                part.unlink()
            raise

    def to_dict(self) -> dict[str, Any]:
        """Return the stats as JSON-ready data."""
        return {
            "name": self.name,
            "reason": self.reason,
            "started": self.started,
            "elapsed": round(self.elapsed, 3),
            "pages_per_second": round(self.pages_per_second, 2),
            "pages": self.pages,
            "downloads": self.downloads,
            "pages_handled": self.handled,
            "items": self.items,
            "requests": self.requests,
            "retries": self.retries,
            "retried": dict(self.retried),
            "dropped_items": self.dropped,
            "unexportable_items": self.unexportable,
            "missed_items": {path: n for path, n in self.missed.items() if n},
            "bytes": self.bytes,
            "connections": self.connections,
            "dns_lookups": self.dns_lookups,
            "errors": dict(self.errors),
            "filtered": dict(self.filtered),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "blocked": self.blocked(),
            "redirected_to_port": {f"{a} -> {b}": n for (a, b), n in self.ported.items()},
            "left": {"pending": self.left.pending, "delayed": self.left.delayed}
            if self.left
            else None,
            "failures_file": self.failures[1] if self.failures else None,
            "throttled": {host: round(delay, 3) for host, (delay, _) in self.throttled.items()},
            "throttled_why": {host: why for host, (_, why) in self.throttled.items()},
            "robots": {"fetched": self.robots_fetched, "crawl_delay": dict(self.crawl_delays)},
            "loop_stalls": {
                who: {"count": n, "seconds": round(s, 3)} for who, (n, s) in self.stalls.items()
            },
            "plugins": self.plugins(),
        }


def _reported(
    middleware: Middleware, report: Callable[[], Any], instead: Any, check: Callable[[Any], Any]
) -> Any:
    """Ask a middleware for its counts, ``check``-ed; one that raises, or gives what
    ``check`` refuses, is named, and the stats go on."""
    try:
        return check(report())
    except Exception as exc:
        log.error(
            "plugin_error: middleware '%s' failed to report its stats: %s: %s",
            middleware.name,
            type(exc).__name__,
            exc,
        )
        return instead


def _lines(lines: Any) -> list[str]:
    """Check what ``summary()`` gave: lines of text."""
    if isinstance(lines, str) or not isinstance(lines, Iterable):
        raise TypeError(f"summary() gave {type(lines).__name__}, not a list of lines")
    found = list(lines)
    if wrong := [line for line in found if not isinstance(line, str)]:
        raise TypeError(f"summary() gave a line that is {type(wrong[0]).__name__}, not text")
    return found


def _counts(counts: Any) -> Any:
    """Check what ``stats()`` gave: None, or a mapping that JSON can write."""
    if counts is None:
        return None
    if not isinstance(counts, Mapping):
        raise TypeError(f"stats() gave {type(counts).__name__}, not a mapping")
    json.dumps(counts, allow_nan=False)  # TypeError or ValueError: said, left out
    return counts


def _hosts(delays: dict[str, float], shown: int = 3) -> str:
    """List the hosts with the longest delays first, and how many more there are."""
    ranked = sorted(delays.items(), key=lambda item: -item[1])
    text = ", ".join(f"{host} {delay:g}s" for host, delay in ranked[:shown])
    return text + (f" and {len(ranked) - shown} more" if len(ranked) > shown else "")
