"""What the engine does with a response before a spider sees it: redirects and statuses."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from urllib.parse import urljoin

from framework.errors import FetchError, HttpError
from framework.fetch.credentials import UNCREDENTIALED, crossed_origin, without_credentials
from framework.fetch.retry import parse_retry_after, retryable_status
from framework.http import Request, Response
from framework.http.forms import SECRET_QUERY
from framework.http.urls import Offsite, canonical_url, header_url, redact, unfetchable

__all__ = ["REDIRECTS", "check_status", "redirect_of"]

#: Headers about a request's body (Fetch's "request-body-header names").
_BODY_HEADERS = frozenset(
    {"content-type", "content-encoding", "content-language", "content-location"}
)
#: The statuses whose ``Location`` a crawler follows.
REDIRECTS = frozenset({301, 302, 303, 307, 308})


def redirect_of(response: Response, *, max_redirects: int, offsite: Offsite) -> Request | None:
    """Return the request a redirect leads to, or None if ``response`` is no redirect.

    The new request goes through dedup like any link. A redirect to a host outside
    ``allowed_domains`` is a failure, not a filter: sites redirect to login walls and
    challenge hosts, and the spider's errback must get the chance to keep what it knew.
    """
    location = response.headers.get("Location")
    if response.status not in REDIRECTS or not location:
        return None
    request = response.request
    if request.redirects >= max_redirects:
        raise FetchError("redirects", f"more than {max_redirects} redirects")
    location = header_url(location)
    try:
        target = urljoin(response.url, location)
    except ValueError:
        target = location
    problem = unfetchable(target)
    if problem == "invalid_url":
        raise FetchError(
            "invalid_url", f"redirected to an invalid URL: {_said(location, request)!r}"
        )
    if problem == "scheme":  # file:, data:, ftp:: never followed, but never silently
        shown = _said(target, request)[:200]
        raise FetchError("bad_redirect", f"redirected to {shown!r}, which is not http(s)")
    if not offsite.allows(target):
        raise FetchError(
            "offsite_redirect",
            f"redirected to {_said(target, request)}, outside allowed_domains",
            redirect_to=target,
        )
    # The chain travels in meta, so that a loop is a failure rather than a lost page.
    chain = [*request.meta.get("redirect_urls", ()), request.url]
    if canonical_url(target) in {canonical_url(url) for url in chain}:
        loop = " -> ".join(_said(url, request) for url in [*chain, target])
        raise FetchError("redirects", f"redirect loop: {loop}")
    becomes_get = response.status == 303 or (
        response.status in (301, 302) and request.method == "POST"
    )
    meta = {**request.meta, "redirect_urls": chain}
    headers = _without_body_headers(request.headers) if becomes_get else request.headers
    if crossed_origin(request.url, target):  # no credentials where they were not meant to go
        meta[UNCREDENTIALED], headers = True, without_credentials(headers)
        if request.body and not becomes_get:
            raise FetchError(
                "bad_redirect",
                f"a {response.status} redirect would send the {request.method} body to "
                f"{redact(target)}, another origin; fw does not send it there",
            )
    return request.replace(
        url=target,
        redirects=request.redirects + 1,
        meta=meta,
        headers=headers,
        method="GET" if becomes_get else request.method,
        body=None if becomes_get else request.body,
    )


def _said(url: str, request: Request) -> str:
    """``url`` as a message about ``request`` may show it: without its query along a GET
    sign-in's redirects (``SECRET_QUERY``), where it may repeat the password however
    encoded."""
    return url.partition("?")[0] if request.meta.get(SECRET_QUERY) else url


def _without_body_headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """Drop the headers that describe a body, as browsers do when a redirect drops it."""
    if headers is None:
        return None
    return {name: value for name, value in headers.items() if name.lower() not in _BODY_HEADERS}


def check_status(response: Response, allowed: Collection[int]) -> None:
    """Raise ``HttpError`` unless the status is 2xx or one the spider asked to handle."""
    status = response.status
    if 200 <= status < 300 or status in allowed:
        return
    retryable = retryable_status(status)
    retry_after = parse_retry_after(response.headers) if retryable else None
    raise HttpError(response, retryable=retryable, retry_after=retry_after)
