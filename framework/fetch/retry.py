"""When to retry a failed request, and how long to wait first."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["RetryPolicy", "parse_retry_after", "retryable_status"]


def retryable_status(status: int) -> bool:
    """Tell whether a status is worth retrying: server errors and 429 Too Many Requests."""
    return 500 <= status <= 599 or status == 429


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Read ``Retry-After`` (seconds or an HTTP date) as seconds from now, or None."""
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():  # isdigit() alone admits "²"
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(float((when - (now or datetime.now(UTC))).total_seconds()), 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, honouring the server's ``Retry-After``.

    With ``waits`` off (a replay, which has no server to spare) every decision stays the
    same, retry or give up, but no wait is longer than zero.
    """

    retries: int
    base: float
    cap: float
    jitter: Callable[[], float] = random.random
    waits: bool = True

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Return the wait before retry number ``attempt + 1``, or None to give up.

        The wait is ``base * 2**attempt`` scaled by a random 0.5-1.5 so that many
        failures do not come back in step, capped at ``cap``. A ``Retry-After`` is
        honoured as a minimum; one longer than ``cap`` means giving up now rather than
        stalling the crawl.
        """
        if attempt >= self.retries:
            return None
        if retry_after is not None and retry_after > self.cap:
            return None
        # 2**64 s outlasts any cap; 2.0**1024 would overflow (retries: 5000 is allowed).
        wait = min(self.base * 2.0 ** min(attempt, 64) * (0.5 + self.jitter()), self.cap)
        return max(wait, retry_after or 0.0) if self.waits else 0.0

    def rest(self, retry_after: float) -> float:
        """Return how long a host rests after its ``Retry-After``: as asked, at most ``cap``.

        A server asking for longer gets its request failed (``delay`` gives up) rather than
        the crawl stalled for it; the host still rests ``cap``, since it did ask for air.
        """
        return min(retry_after, self.cap) if self.waits else 0.0
