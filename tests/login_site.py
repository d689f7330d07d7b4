"""A site with a CSRF-protected login, a session cookie and a page only members see.

It checks what Django checks: the CSRF token of the form matches the ``csrftoken``
cookie set with the login page, and ``Origin`` names the site itself. A login sets a
``session`` cookie and redirects (302) to ``/members``, which answers 403 without it.
``log`` keeps every request, with its headers, for tests to look at.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from aiohttp import web

USERNAME, PASSWORD = "ada", "s3cret"
MEMBERS = ("Ada Lovelace", "Charles Babbage", "Mary Somerville")

LOGIN_PAGE = """<!doctype html>
<html><head><title>Sign in</title><base href="/accounts/"></head><body>
<form id="search" action="/search"><input name="q"><button>Search</button></form>
<div class="card"><form id="login" method="post" action="login">
  <input type="hidden" name="csrfmiddlewaretoken" value="{token}">
</div>
<div class="fields">
  <label>User <input name="username" autocomplete="username"></label>
  <label>Password <input type="password" name="password"></label>
  <label><input type="checkbox" name="remember" value="yes" checked> Remember me</label>
  <button type="button" name="show">Show password</button>
  <button name="action" value="login">Sign in</button>
</div></form>
</body></html>
"""
MEMBERS_PAGE = """<!doctype html>
<html><body><h1>Members</h1><ul>{rows}</ul></body></html>
"""


@dataclass
class Seen:
    """One request the site answered: method, path, headers, and what it decided."""

    method: str
    path: str
    headers: dict[str, str]
    verdict: str = ""


@dataclass
class LoginSite:
    """The site's state: tokens handed out, sessions opened, requests seen."""

    sessions: set[str] = field(default_factory=set)
    log: list[Seen] = field(default_factory=list)
    logins: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/accounts/login", self.login_page)
        app.router.add_post("/accounts/login", self.login)
        app.router.add_get("/members", self.members)
        return app

    def _seen(self, request: web.Request) -> Seen:
        seen = Seen(request.method, request.path_qs, dict(request.headers))
        self.log.append(seen)
        return seen

    async def login_page(self, request: web.Request) -> web.Response:
        self._seen(request)
        token = request.cookies.get("csrftoken") or secrets.token_hex(16)
        answer = web.Response(text=LOGIN_PAGE.format(token=token), content_type="text/html")
        answer.set_cookie("csrftoken", token, path="/", samesite="Lax")
        return answer

    async def login(self, request: web.Request) -> web.Response:
        seen = self._seen(request)
        form = {name: str(value) for name, value in (await request.post()).items()}
        self.logins.append(form)
        origin = f"{request.scheme}://{request.host}"
        cookie = request.cookies.get("csrftoken")
        if not cookie or form.get("csrfmiddlewaretoken") != cookie:
            seen.verdict = "CSRF token missing or incorrect"
        elif request.headers.get("Origin") != origin:
            seen.verdict = f"Origin checking failed: {request.headers.get('Origin')}"
        elif (form.get("username"), form.get("password")) != (USERNAME, PASSWORD):
            seen.verdict = "wrong username or password"
        if seen.verdict:
            raise web.HTTPForbidden(text=seen.verdict)
        session = secrets.token_hex(16)
        self.sessions.add(session)
        seen.verdict = "logged in"
        answer = web.HTTPFound("/members")
        answer.set_cookie("session", session, path="/", httponly=True)
        raise answer

    async def members(self, request: web.Request) -> web.Response:
        seen = self._seen(request)
        if request.cookies.get("session") not in self.sessions:
            seen.verdict = "no session"
            raise web.HTTPForbidden(text="members only")
        seen.verdict = "member"
        rows = "".join(f'<li class="member">{name}</li>' for name in MEMBERS)
        return web.Response(text=MEMBERS_PAGE.format(rows=rows), content_type="text/html")
