"""When to retry: backoff with jitter and a cap, Retry-After, and which statuses qualify."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from framework.fetch.retry import RetryPolicy, parse_retry_after, retryable_status

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def policy(
    retries: int = 10, base: float = 0.5, cap: float = 100.0, jitter: float = 0.5
) -> RetryPolicy:
    return RetryPolicy(retries, base, cap, jitter=lambda: jitter)


# ---------------------------------------------------------------------------------------------
# Backoff
# ---------------------------------------------------------------------------------------------


def test_the_wait_doubles_with_each_attempt() -> None:
    backoff = policy(base=0.5)  # jitter 0.5 scales by exactly 1
    assert [backoff.delay(attempt) for attempt in range(5)] == [0.5, 1.0, 2.0, 4.0, 8.0]


@pytest.mark.parametrize(("jitter", "expected"), [(0.0, 0.5), (0.25, 0.75), (1.0, 1.5)])
def test_jitter_scales_the_wait_between_half_and_one_and_a_half(
    jitter: float, expected: float
) -> None:
    assert policy(base=2.0, jitter=jitter).delay(1) == pytest.approx(4.0 * expected)


def test_the_jitter_is_drawn_for_every_delay() -> None:
    draws = iter([0.0, 1.0, 0.5])
    backoff = RetryPolicy(5, 1.0, 100.0, jitter=lambda: next(draws))
    assert [backoff.delay(2) for _ in range(3)] == [2.0, 6.0, 4.0]


def test_the_cap_bounds_the_wait() -> None:
    backoff = policy(base=1.0, cap=5.0, jitter=1.0)
    assert [backoff.delay(attempt) for attempt in range(5)] == [1.5, 3.0, 5.0, 5.0, 5.0]
    many = policy(retries=5_000, base=1.0, cap=5.0)  # 2.0**1024 overflows a float
    assert many.delay(1_024) == many.delay(4_999) == 5.0
    assert policy(retries=5_000, base=0.0, cap=0.0).delay(2_000) == 0.0


def test_no_retry_after_the_last_attempt() -> None:
    backoff = policy(retries=3)
    assert [backoff.delay(attempt) is None for attempt in range(5)] == [
        False,
        False,
        False,
        True,
        True,
    ]
    assert policy(retries=0).delay(0) is None


# ---------------------------------------------------------------------------------------------
# Retry-After
# ---------------------------------------------------------------------------------------------


def test_retry_after_is_a_minimum() -> None:
    backoff = policy(base=1.0, cap=60.0)
    assert backoff.delay(0, retry_after=30.0) == 30.0  # longer than the backoff: it wins
    assert backoff.delay(3, retry_after=2.0) == 8.0  # shorter: the backoff wins
    assert backoff.delay(0, retry_after=0.0) == 1.0


def test_retry_after_up_to_the_cap_is_honoured_and_beyond_it_gives_up() -> None:
    backoff = policy(base=1.0, cap=60.0)
    assert backoff.delay(0, retry_after=60.0) == 60.0
    assert backoff.delay(0, retry_after=60.5) is None
    assert backoff.delay(0, retry_after=3600.0) is None


def test_the_host_rests_as_long_as_retry_after_asks_but_never_beyond_the_cap() -> None:
    backoff = policy(cap=60.0)
    assert backoff.rest(30.0) == 30.0
    assert backoff.rest(3600.0) == 60.0  # the request gives up; the crawl must not stall


def test_retry_after_does_not_extend_the_attempts() -> None:
    assert policy(retries=2).delay(2, retry_after=1.0) is None


def test_without_waits_every_decision_stays_and_no_wait_is_longer_than_zero() -> None:
    replay = RetryPolicy(2, 1.0, 60.0, jitter=lambda: 0.5, waits=False)
    assert [replay.delay(n, retry_after=59.9) for n in range(3)] == [0.0, 0.0, None]
    assert replay.delay(0, retry_after=60.5) is None  # given up on, as the crawl did
    assert replay.rest(59.9) == 0.0


@pytest.mark.parametrize(("value", "expected"), [("120", 120.0), ("0", 0.0), (" 7 ", 7.0)])
def test_retry_after_in_seconds(value: str, expected: float) -> None:
    assert parse_retry_after({"Retry-After": value}, now=NOW) == expected


def test_retry_after_as_a_future_http_date() -> None:
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert later == "Wed, 01 May 2024 12:01:30 GMT"
    assert parse_retry_after({"Retry-After": later}, now=NOW) == 90.0


def test_retry_after_as_a_past_http_date_is_zero() -> None:
    earlier = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after({"Retry-After": earlier}, now=NOW) == 0.0


@pytest.mark.parametrize(
    "value", ["soon", "-5", "1.5", "12 seconds", "Wed, 99 Foo 2024", "²", "٣"]
)  # digits to isdigit(), not to float()
def test_unreadable_retry_after_is_none(value: str) -> None:
    assert parse_retry_after({"Retry-After": value}, now=NOW) is None


@pytest.mark.parametrize(
    "headers", [{}, {"Retry-After": ""}, {"Retry-After": "   "}, {"Content-Type": "text/html"}]
)
def test_missing_retry_after_is_none(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers, now=NOW) is None


# ---------------------------------------------------------------------------------------------
# Which statuses are worth retrying
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599, 429])
def test_server_errors_and_too_many_requests_are_retried(status: int) -> None:
    assert retryable_status(status)


@pytest.mark.parametrize("status", [200, 301, 400, 401, 403, 404, 410, 418, 499, 600, 999])
def test_other_statuses_are_not_retried(status: int) -> None:
    assert not retryable_status(status)
