"""The ``forms`` plugin: sign in to a site before a crawl, from the project file.

``response.form(...)`` (fw's ``Response``) builds the request a browser sends when a form
is submitted; a spider uses it for any form. This plugin uses it for the commonest one,
the sign-in form, so that a project signs in with no Python::

    login:
      url: https://example.com/accounts/login    # the sign-in page
      form: '#login'                             # its form (default: the first with a password)
      data: {username: ada, password: {$env: SITE_PASSWORD}}
      check: a[href="/logout"]                   # CSS query only a signed-in page matches

Before the crawl's first request, the ``login`` middleware fetches the page, submits the
form with ``data`` (hidden fields such as CSRF tokens go along) and checks the answer;
the site's session cookie then goes with every request (keep ``cookies: true``). A sign-in
that fails — the page or the form is missing, the site refuses, the answer does not
match ``check`` or shows the form again — stops the crawl with exit 1, naming why:
crawling a members-only site signed out would export nothing and look like success.

A session that ends mid-crawl shows as a page redirected to the sign-in page (``url``, or
where it redirected): the middleware signs in again, once for all the requests that met
the end together, and fetches the page anew; a page sent there even with a session opened
for it (a logout link) fails as ``signed_out``, listed for ``--retry-failed``, rather than
being dropped as the sign-in page seen before.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from parsel import Selector

from framework import (
    SECRET_QUERY,
    UNCREDENTIALED,
    CrawlAborted,
    FetchError,
    FormError,
    Handler,
    IgnoreRequest,
    Middleware,
    Request,
    Response,
    crossed_origin,
    hookimpl,
    option,
    without_credentials,
)

__all__ = ["LoginMiddleware", "LoginOptions", "register_middlewares"]

log = logging.getLogger("fw.login")

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Times a request may be sent to the sign-in page, fw signing in again after each: one
#: whose session another request ended meanwhile (a logout link) gets another chance.
_SIGN_INS = 5
#: Sign-ins again in a row, with no page coming back signed in between, that stop the crawl.
_FUTILE = 10
_MAX_REDIRECTS = 10


def _css(query: str) -> str:
    """Check that ``query`` is a CSS query parsel can run."""
    try:
        Selector(text="<p></p>").css(query)
    except Exception as exc:  # cssselect's errors share no useful base
        raise ValueError(f"not a valid CSS query: {exc}") from None
    return query


#: URLs that look like a logout link: ``/logout``, ``?action=sign_out``, ``/log-off``.
_LOGOUT = r"(?i)(?<![a-z])(log|sign)[-_]?(out|off)(?![a-z])"


def _regex(pattern: str) -> str:
    """Check that ``pattern`` is a regular expression Python can compile."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return pattern


def _page(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{url!r} is not an http(s) URL")
    try:  # checked now, not when the crawl starts: an unclosed [, a port that is none
        parts = urlsplit(url)
        parts.port  # noqa: B018 - it raises for a bad port
    except ValueError as exc:  # urllib quotes a bad "port", maybe a password's start
        why = "its port is not a number" if "Port" in str(exc) else str(exc)
        raise ValueError(f"{url!r} is not a valid URL: {why}") from None
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    return url


@dataclass(frozen=True)
class LoginOptions:
    """The ``login:`` section: which form to submit, with what, and how to tell it worked."""

    url: str | None = option(
        None, check=_page, doc="The sign-in page. Without it, fw signs in nowhere."
    )
    form: str | None = option(
        None,
        check=_css,
        doc="CSS query of the sign-in form (or an element in it); by default the first "
        "form with a password field, else the first form.",
    )
    data: Mapping[str, str] = option(
        default_factory=dict,
        doc="Fields to fill in, such as the user name and password (`$env` for secrets); "
        "the form's own fields, CSRF tokens included, are sent as the page set them.",
    )
    check: str | None = option(
        None,
        check=_css,
        doc="CSS query that matches only a signed-in page, checked on the answer; without "
        "it, an answer that shows the sign-in form again is a failure.",
    )

    avoid: str | None = option(
        _LOGOUT,
        check=_regex,
        doc="Regex of URLs the signed-in crawl does not fetch, counted as `ignored`: by "
        "default logout links, which would end the session; `null` fetches every link.",
    )

    def __post_init__(self) -> None:
        if self.url is None and (self.data or self.form or self.check):
            raise ValueError("url: the sign-in page is required to sign in")


class LoginMiddleware(Middleware):
    """Sign in once, before the crawl's first request goes out."""

    name = "login"
    Options = LoginOptions
    options: LoginOptions

    def __init__(self, options: LoginOptions) -> None:
        super().__init__(options)
        self._lock = asyncio.Lock()
        self._signed_in = options.url is None
        self._session = 0  # how many times the crawl signed in anew: a session ended
        self._futile = 0  # sign-ins again since a page last came back signed in
        self._avoid = re.compile(options.avoid) if options.avoid else None
        self._avoided = False  # said once that links were left out
        #: The sign-in page, as ``_where`` gives it: ``login.url`` and where it redirected.
        self._sign_in_pages: set[Any] = set()
        self._failure: str | None = None
        self._allows: Callable[[str], bool] = lambda url: False

    async def open(self, project: Any) -> None:
        """Learn the hosts ``allowed_domains`` names: a form may post there. ``[]``, which
        lets the crawl go anywhere, names none: the password goes to the sign-in site alone."""
        if project.allowed_domains:
            self._allows = project.allows

    @property
    def active(self) -> bool:
        """Only a crawl that sets the section needs it."""
        return self.options.url is not None

    async def __call__(self, request: Request, handler: Handler) -> Response:
        if not self._signed_in:
            async with self._lock:  # the crawl's other first requests wait for it
                if self._failure is None and not self._signed_in:
                    self._failure = await self._sign_in(handler)
                    self._signed_in = self._failure is None
            if self._failure is not None:
                raise CrawlAborted(self._failure)
        if self._avoid is not None and self._avoid.search(request.url):
            self._say_avoided(request)
            raise IgnoreRequest(f"login.avoid: {_shown(request.url)} would end the session")
        opened, strikes = -1, 0  # the session this request had fw open; its ends met
        for _ in range(_SIGN_INS):
            session = self._session
            response = await handler(request)
            if not self._sent_to_sign_in(response):
                self._futile = 0
                return response
            if session == opened == self._session:  # the end of a session opened for it
                strikes += 1
                if strikes == 2:  # twice: it ends the session itself (a logout link)
                    break
            opened = await self._sign_in_again(session, handler, request)
        raise FetchError(
            "signed_out",
            f"sent to the sign-in page {_shown(self.options.url or '')} even with a session "
            "opened for it, twice (a logout link?)",
        )

    def _say_avoided(self, request: Request) -> None:
        if not self._avoided:
            self._avoided = True
            log.warning(
                "login: leaving out links that look like logging out, such as %s "
                "(login.avoid; null fetches them)",
                _shown(request.url),
            )

    def _sent_to_sign_in(self, response: Response) -> bool:
        """Whether ``response`` redirects to the sign-in page: the session ended."""
        location = response.headers.get("Location")
        if self.options.url is None or response.status not in _REDIRECTS or not location:
            return False
        try:  # often with ?next=: the page, whatever its query
            return _where(urljoin(response.url, location)) in self._sign_in_pages
        except ValueError:  # no URL at all: the engine says so, as for any redirect
            return False

    async def _sign_in_again(self, session: int, handler: Handler, request: Request) -> int:
        """Sign in anew, unless another request already did since ``session``; return the
        session this call opened, or -1."""
        async with self._lock:
            if self._failure is not None:  # one that could not sign in again: all stop
                raise CrawlAborted(self._failure)
            if self._session != session:
                return -1
            if self._futile >= _FUTILE:  # a sign-in per page, for ever: the password too
                self._failure = (
                    f"login: signed in again {_FUTILE} times in a row and every page was "
                    "still sent to the sign-in page: the site does not keep the session"
                )
                raise CrawlAborted(self._failure)
            log.warning(
                "login: the session ended (%s was sent to the sign-in page); signing in again",
                _shown(request.url),
            )
            self._failure = await self._sign_in(handler)
            if self._failure is not None:
                raise CrawlAborted(self._failure)
            self._session += 1
            self._futile += 1
            return self._session

    async def _sign_in(self, handler: Handler) -> str | None:
        """Sign in; return why it failed, or None."""
        url, query = self.options.url, self.options.form
        assert url is not None
        try:
            page = await _followed(handler, Request(url))
            # Where the site sends an ended session: login.url, or where it redirects.
            self._sign_in_pages = {_where(url), _where(page.url)}
            submit = _form(page, query, dict(self.options.data))
            if problem := self._elsewhere(page.url, submit.url):
                return f"login: {problem}; fw does not send login.data there"
            answer = await _followed(handler, submit)
        except (FetchError, FormError) as exc:
            return f"login: signing in at {url} failed: {exc}"
        refused = _refusal(answer, query, submit, self.options.check)
        where = answer.url.partition("?")[0]  # a GET form's query holds the password
        if refused:
            return f"login: signing in at {url} failed: {where} {refused}; check login.data"
        log.info("signed in at %s: %s answered %d", url, where, answer.status)
        return None

    def _elsewhere(self, page: str, action: str) -> str | None:
        """Say where ``login.data`` would go that it must not, if anywhere: the sign-in page
        may have redirected, and its form may post, to another site."""
        if not self._trusts(page):
            return f"the sign-in page {self.options.url} redirected to {self._why(page)}"
        if not self._trusts(action):
            return f"the sign-in form at {_shown(page)} posts to {self._why(action)}"
        return None

    def _trusts(self, url: str) -> bool:
        """Whether ``login.data`` may go to ``url``: the site of ``login.url`` (or that site
        over https) and hosts of ``allowed_domains``; never from https to http."""
        assert self.options.url is not None
        if self._downgrades(url):
            return False
        return _same_site(self.options.url, url) or self._allows(url)

    def _downgrades(self, url: str) -> bool:
        """Whether ``url`` is http where the sign-in page is https."""
        assert self.options.url is not None
        return _origin(self.options.url)[0] == "https" and _origin(url)[0] != "https"

    def _why(self, url: str) -> str:
        """Name ``url`` and say why ``login.data`` does not go there."""
        if self._downgrades(url):
            return f"{_shown(url)}, over http from an https sign-in page"
        return (
            f"{_shown(url)}, another site outside allowed_domains (add its host there if it "
            "is the site's own)"
        )


async def _followed(handler: Handler, request: Request) -> Response:
    """Fetch ``request``, following redirects as a browser does after a form's POST."""
    for _ in range(_MAX_REDIRECTS + 1):
        response = await handler(request)
        location = response.headers.get("Location")
        if response.status not in _REDIRECTS or not location:
            if response.status >= 400:
                raise FetchError(
                    f"http_{response.status}", f"HTTP {response.status} ({_shown(response.url)})"
                )
            return response
        target = urljoin(response.url, location)
        if not target.startswith(("http://", "https://")):
            raise FetchError("bad_redirect", f"redirected to {_shown(target)[:200]!r}")
        request = _redirected(request, target, response.status)
    raise FetchError("redirects", f"more than {_MAX_REDIRECTS} redirects ({_shown(request.url)})")


def _redirected(request: Request, target: str, status: int) -> Request:
    """The request a redirect to ``target`` makes of ``request``: past another origin, and
    from then on, without the project's credentials, as the engine's redirects go."""
    meta: dict[str, Any] = {}
    if request.meta.get(UNCREDENTIALED) or crossed_origin(request.url, target):
        meta[UNCREDENTIALED] = True
    if status in (307, 308):  # the method and body go along
        if request.body and not _same_site(request.url, target):
            raise FetchError(
                "bad_redirect",
                f"a {status} redirect would send the form to {_shown(target)}, "
                "another origin; fw does not send it there",
            )
        headers = without_credentials(request.headers) if meta else request.headers
        return request.replace(url=target, headers=headers, meta={**request.meta, **meta})
    # GET, without the body or what described it
    referer = (request.headers or {}).get("Referer")
    # Where a GET sign-in redirects, its query (the password) may go along.
    if fields := request.meta.get(SECRET_QUERY):
        meta[SECRET_QUERY] = fields
    return Request(target, headers={"Referer": referer} if referer else None, meta=meta or None)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    """Return the scheme, host and port of ``url``: what a form's data is kept within."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (
        parts.scheme.lower(),
        parts.hostname,
        port or {"http": 80, "https": 443}.get(parts.scheme),
    )


def _where(url: str) -> tuple[tuple[str, str | None, int | None], str]:
    """Return the origin and path of ``url``: a page, whatever its query."""
    return _origin(url), urlsplit(url).path or "/"


def _same_site(source: str, target: str) -> bool:
    """Whether ``target`` is ``source``'s origin, or its upgrade: http on 80 to https on 443."""
    (scheme, host, port), to = _origin(source), _origin(target)
    return to == (scheme, host, port) or (
        (scheme, port) == ("http", 80) and to == ("https", host, 443)
    )


def _shown(url: str) -> str:
    """Return ``url`` without its query, which a GET form fills with the password."""
    return url.partition("?")[0]


def _form(page: Response, query: str | None, data: dict[str, str]) -> Request:
    """Submit the form ``query`` picks; by default the first with a password, or the first."""
    if query is not None:
        return page.form(css=query, data=data)
    try:
        return page.form(xpath="//input[@type='password']", data=data)
    except FormError:
        return page.form(data=data)


def _refusal(answer: Response, query: str | None, sent: Request, check: str | None) -> str:
    """Say why the answer to a sign-in shows the site refused it; empty if it did not."""
    if check is not None:
        return "" if answer.css(check) else f"does not match check {check!r}"
    try:
        again = _form(answer, query, {})
    except FormError:
        return ""
    if again.url == sent.url and again.method == sent.method:
        return "shows the sign-in form again"
    return ""


@hookimpl(trylast=True)  # bundled: any installed plugin may override it
def register_middlewares(register: Callable[[type[Middleware]], None]) -> None:
    """Provide the ``login`` middleware."""
    register(LoginMiddleware)
