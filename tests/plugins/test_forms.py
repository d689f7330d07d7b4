"""The forms plugin: a project's ``login:`` signs in on a real loopback site before the crawl."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web

from tests.conftest import Completed, Serve, read_jsonl, run_fw, write_project
from tests.login_site import LOGIN_PAGE, MEMBERS, LoginSite
from tests.proxies import TestCA

DOCS = Path(__file__).parents[2] / "docs" / "forms.md"

SPIDER = """
from framework import Spider, hookimpl


class Members(Spider):
    name = "members"

    async def parse(self, response):
        for name in response.css("li.member::text").getall():
            yield {"name": name}


@hookimpl
def register_spiders(register):
    register(Members)
"""


class ShowsTheFormAgain(LoginSite):
    """A site that answers a wrong password 200, with the sign-in form again."""

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("password") == "s3cret":
            return await super().login(request)
        self._seen(request).verdict = "form again"
        page = LOGIN_PAGE.format(token=request.cookies.get("csrftoken", ""))
        return web.Response(text=page, content_type="text/html")


def project(tmp_path: Path, base: str, login: str) -> Path:
    (tmp_path / "members.py").write_text(SPIDER, encoding="utf-8")
    return write_project(
        tmp_path,
        f"""
        spider: members
        start_urls: [{base}/members]
        plugins: [./members.py]
        exporters: [{{format: jsonl, path: members.jsonl}}]
        login:
          url: {base}/accounts/login
          {login}
        """,
    )


async def test_a_project_signs_in_before_the_crawl_and_reads_the_members_page(
    tmp_path: Path, serve: Serve
) -> None:
    site = LoginSite()
    base = await serve(site.app())
    login = """form: '#login'
          data: {username: ada, password: {$env: SITE_PASSWORD}}
          check: li.member"""
    path = project(tmp_path, base, login)
    done = await run_fw("run", str(path), cwd=tmp_path, env={"SITE_PASSWORD": "s3cret"})
    assert done.returncode == 0, done.stderr
    assert [item["name"] for item in read_jsonl(tmp_path / "members.jsonl")] == list(MEMBERS)
    posts = [seen for seen in site.log if seen.method == "POST"]
    assert [seen.verdict for seen in posts] == ["logged in"]  # once, before the crawl
    assert site.logins[0]["csrfmiddlewaretoken"]  # the hidden CSRF field went along
    assert "s3cret" not in done.stderr


@pytest.mark.parametrize(
    ("site", "login", "said"),
    [
        (
            LoginSite,
            "data: {username: ada, password: wrong}\n          check: li.member",
            "HTTP 403",
        ),
        (ShowsTheFormAgain, "data: {username: ada, password: wrong}", "shows the sign-in form"),
        (
            ShowsTheFormAgain,
            "data: {password: wrong}\n          check: li.member",
            "does not match check",
        ),
        (LoginSite, "form: '#signin'", "no form matches css '#signin'"),
    ],
)
async def test_a_failed_sign_in_stops_the_crawl_with_exit_1_saying_why(
    tmp_path: Path, serve: Serve, site: type[LoginSite], login: str, said: str
) -> None:
    server = site()
    base = await serve(server.app())
    done = await run_fw("run", str(project(tmp_path, base, login)), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert f"login: signing in at {base}/accounts/login failed" in done.stderr
    assert said in done.stderr
    assert not [seen for seen in server.log if seen.path == "/members"]  # never signed out


class Thief:
    """Another site: a sign-in page of its own, and every form posted to it recorded."""

    def __init__(self) -> None:
        self.posted: list[dict[str, str]] = []

    def app(self) -> web.Application:
        async def page(request: web.Request) -> web.Response:
            return web.Response(text=LOGIN_PAGE.format(token="t"), content_type="text/html")

        async def take(request: web.Request) -> web.Response:
            self.posted.append({k: str(v) for k, v in (await request.post()).items()})
            return web.Response(text="<p>thanks</p>", content_type="text/html")

        app = web.Application()
        app.router.add_get("/{tail:.*}", page)
        app.router.add_post("/{tail:.*}", take)
        return app


@pytest.mark.parametrize("how", ["action", "307", "redirected", "downgrade"])
async def test_the_password_never_goes_to_another_site_outside_allowed_domains(
    tmp_path: Path, serve: Serve, how: str
) -> None:
    thief, ca = Thief(), TestCA()
    downgrade = how == "downgrade"  # an https sign-in page posting over http, on its host
    elsewhere = await serve(thief.app(), host="127.0.0.1" if downgrade else "127.0.0.2")

    class Leaky(LoginSite):
        async def login_page(self, request: web.Request) -> web.Response:
            if how == "redirected":  # the sign-in page is another site's
                raise web.HTTPFound(f"{elsewhere}/accounts/login")
            answer = await super().login_page(request)
            if how in ("action", "downgrade"):  # its form posts to another site
                assert isinstance(answer.text, str)
                answer.text = answer.text.replace('action="login"', f'action="{elsewhere}/x"')
            return answer

        async def login(self, request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(f"{elsewhere}/x")  # the POST, body and all

    base = await serve(Leaky().app(), tls=ca.server() if downgrade else None)
    login = "form: '#login'\n          data: {username: ada, password: {$env: SITE_PASSWORD}}"
    path = project(tmp_path, base, login)
    if downgrade:  # a host of allowed_domains on any port: the scheme alone says no
        path.write_text(path.read_text() + "allowed_domains: [127.0.0.1]\n")
    env = {"SITE_PASSWORD": "s3cret", "SSL_CERT_FILE": str(ca.pem(tmp_path))}
    done = await run_fw("run", str(path), cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stderr
    assert thief.posted == []
    outside = "another site outside allowed_domains (add its host there if it is the site's own)"
    said = {
        "action": f"the sign-in form at {base}/accounts/login posts to {elsewhere}/x, {outside}",
        "307": f"signing in at {base}/accounts/login failed: a 307 redirect would send the form "
        f"to {elsewhere}/x, another origin; fw does not send it there",
        "redirected": f"the sign-in page {base}/accounts/login redirected to "
        f"{elsewhere}/accounts/login, {outside}",
        "downgrade": f"the sign-in form at {base}/accounts/login posts to {elsewhere}/x, over "
        "http from an https sign-in page",
    }
    assert f"Error: login: {said[how]}" in done.stderr
    if how == "action":  # the site's own other host, named in allowed_domains: it goes there
        path.write_text(path.read_text() + "allowed_domains: [127.0.0.1, 127.0.0.2]\n")
        again = await run_fw("run", str(path), cwd=tmp_path, env=env)
        assert thief.posted and thief.posted[0]["password"] == "s3cret", again.stderr


async def test_a_sign_in_redirected_to_another_origin_goes_there_without_the_credentials(
    tmp_path: Path, serve: Serve
) -> None:
    # As the crawl's own redirects: another origin gets the project's Authorization only
    # when the project sends a request there, never because a server redirected there.
    there = LoginSite()
    elsewhere = await serve(there.app(), host="127.0.0.2")

    class Moved(LoginSite):
        async def login_page(self, request: web.Request) -> web.Response:
            self._seen(request)
            raise web.HTTPFound(f"{elsewhere}/accounts/login")

    here = Moved()
    base = await serve(here.app())
    (tmp_path / "members.py").write_text(SPIDER, encoding="utf-8")
    path = write_project(
        tmp_path,
        f"""
        spider: members
        start_urls: [{elsewhere}/members]
        plugins: [./members.py]
        allowed_domains: [127.0.0.1, 127.0.0.2]
        headers: {{Authorization: Bearer T0KEN}}
        login:
          url: {base}/accounts/login
          data: {{username: ada, password: s3cret}}
        """,
    )
    done = await run_fw("run", str(path), "-o", str(tmp_path / "members.jsonl"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [item["name"] for item in read_jsonl(tmp_path / "members.jsonl")] == list(MEMBERS)
    assert [seen.headers.get("Authorization") for seen in here.log] == ["Bearer T0KEN"]
    redirected = [seen for seen in there.log if seen.path == "/accounts/login"]
    assert [seen.method for seen in redirected] == ["GET", "POST"]
    assert redirected[0].headers.get("Authorization") is None  # where the redirect led
    # The crawl's own requests to that host, the form's too, are the project's to send.
    assert {seen.headers.get("Authorization") for seen in there.log[1:]} == {"Bearer T0KEN"}


async def test_a_get_forms_password_is_never_shown_in_the_error(
    tmp_path: Path, serve: Serve
) -> None:
    form = '<form method="get" action="/do"><input name="u"><input type="password" name="p">'

    async def page(request: web.Request) -> web.Response:
        if request.path == "/do":  # its query: u=ada&p=s3cret
            return web.Response(status=401)
        return web.Response(text=form, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    base = await serve(app)
    path = project(tmp_path, base, "data: {u: ada, p: {$env: SITE_PASSWORD}}")
    done = await run_fw("run", str(path), cwd=tmp_path, env={"SITE_PASSWORD": "s3cret"})
    assert done.returncode == 1
    assert f"login: signing in at {base}/accounts/login failed: HTTP 401 ({base}/do)" in done.stderr
    assert "s3cret" not in done.stderr


def get_sign_in_site() -> web.Application:
    """A site whose GET sign-in form redirects, query and all, as a trailing slash does."""
    form = '<form method="get" action="/do"><input name="u"><input type="password" name="p">'

    async def page(request: web.Request) -> web.Response:
        if request.path == "/do":  # quoted its own way, and kept in a cookie too
            password = quote(request.query["p"], safe="")
            answer = web.HTTPMovedPermanently(f"/do/?p={password}&u=ada")
            answer.headers["Set-Cookie"] = f"pw={password}; Path=/"
            raise answer
        if request.path == "/do/":
            signed_in = request.query.get("p") == "s3cret word@x"
            return web.Response(text="<p>hello</p>" if signed_in else "no", status=200)
        if request.path == "/members":
            return web.Response(text='<li class="member">Ada</li>', content_type="text/html")
        return web.Response(text=form, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    return app


async def test_a_get_forms_password_is_kept_out_of_a_recording_which_still_replays(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(get_sign_in_site())
    path = project(tmp_path, base, "data: {u: ada, p: {$env: SITE_PASSWORD}}")
    env = {"SITE_PASSWORD": "s3cret word@x"}
    recorded = await run_fw("run", str(path), "--record", "rec", cwd=tmp_path, env=env)
    assert recorded.returncode == 0, recorded.stderr
    records = {p: p.read_text() for p in (tmp_path / "rec").glob("*.json")}
    assert len(records) == 5 and not [text for text in records.values() if "s3cret" in text]
    [redirect] = [p for p, text in records.items() if f'"url": "{base}/do",' in text]
    assert '"Location", "/do/?p={fw:sign-in 0:' in records[redirect]  # not its password
    assert '"Set-Cookie", "pw={fw:sign-in 0:' in records[redirect]
    replayed = await run_fw("run", str(path), "--replay", "rec", cwd=tmp_path, env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert "1 items exported, 0 errors" in replayed.stderr
    # Made by an older fw, the records keep the query: they still replay.
    for record, made in records.items():
        text = made.replace(f'{base}/do",', f'{base}/do?u=ada&p=s3cret+word%40x",')
        text = text.replace(f'{base}/do/",', f'{base}/do/?p=s3cret%20word%40x&u=ada",')
        text = re.sub(r"p=\{fw:sign-in 0:[lxX+]+\}", "p=s3cret%20word@x", text)
        record.write_text(re.sub(r"pw=\{fw:sign-in 0:[lxX+]+\}", "pw=s3cret%20word%40x", text))
    older = await run_fw("run", str(path), "--replay", "rec", cwd=tmp_path, env=env)
    assert older.returncode == 0, older.stderr
    # A record of another request is refused without the sign-in's password in the error.
    redirect.write_text(records[redirect].replace(f"{base}/do", f"{base}/elsewhere"))
    refused = await run_fw("run", str(path), "--replay", "rec", cwd=tmp_path, env=env)
    assert refused.returncode == 1
    assert f"records another request, not GET {base}/do" in refused.stderr
    assert "s3cret" not in refused.stderr
    redirect.unlink()
    missing = await run_fw("run", str(path), "--replay", "rec", cwd=tmp_path, env=env)
    assert f"GET {base}/do is not in the recording" in missing.stderr
    assert "s3cret" not in missing.stderr


#: A spider that signs in with a GET form itself, with response.form().
SIGNS_IN_ITSELF = """
from framework import Spider, hookimpl

class SignsIn(Spider):
    name = "signs_in"

    def parse(self, response):
        yield response.form(data={"u": "ada", "p": "s3cret"}, callback=self.signed_in)

    def signed_in(self, response):
        yield {"url": response.url}

@hookimpl
def register_spiders(register):
    register(SignsIn)
"""


async def signing_in(
    tmp_path: Path, serve: Serve, sign_in: Callable[[], web.Response], extra: str = ""
) -> tuple[str, Path]:
    """Serve a GET sign-in form whose ``/do`` answers with ``sign_in()``; write a project
    whose spider submits it with the password ``s3cret``. Return the site and project."""
    form = '<form method="get" action="/do"><input name="u"><input type="password" name="p">'

    async def page(request: web.Request) -> web.Response:
        if request.path == "/do":
            return sign_in()
        return web.Response(text=form, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    base = await serve(app)
    (tmp_path / "signs_in.py").write_text(SIGNS_IN_ITSELF, encoding="utf-8")
    path = write_project(
        tmp_path, f"spider: signs_in\nstart_urls: [{base}/]\nplugins: [./signs_in.py]\n{extra}"
    )
    return base, path


async def test_a_get_sign_in_that_fails_is_logged_without_its_password(
    tmp_path: Path, serve: Serve
) -> None:
    base, path = await signing_in(
        tmp_path,
        serve,
        lambda: web.Response(status=500, text="down"),
        "retries: 1\nbackoff: {base: 0.01, max: 0.01}\n",
    )
    done = await run_fw("--log-level", "debug", "run", str(path), "-o", "items.jsonl", cwd=tmp_path)
    assert f"retrying in 0.01s (http_500): {base}/do\n" in done.stderr
    assert f"http_500: HTTP 500 ({base}/do)" in done.stderr
    assert "s3cret" not in done.stderr
    # The failures file keeps it whole (0600, as the crawl's state does): a retry sends it.
    [line] = (tmp_path / "project.failures.jsonl").read_text().splitlines()
    assert "p=s3cret" in line


@pytest.mark.parametrize(
    ("where", "kind"),
    [
        ("/do?u=ada&p=s3cret", "redirects"),  # a loop: its message gives the chain
        ("/do?u=ada&p=s3cret&again=1", "redirects"),  # another spelling, then a loop
        ("http://elsewhere.test/in?return=%2Fdo%3Fp%3Ds3cret", "offsite_redirect"),
    ],
)
async def test_a_get_sign_in_redirected_astray_is_said_without_its_password(
    tmp_path: Path, serve: Serve, where: str, kind: str
) -> None:
    _, path = await signing_in(
        tmp_path, serve, lambda: web.Response(status=302, headers={"Location": where})
    )
    stats = tmp_path / "stats.json"
    done = await run_fw("run", str(path), "-o", "items.jsonl", "--stats", str(stats), cwd=tmp_path)
    assert f"{kind}: " in done.stderr, done.stderr
    assert "s3cret" not in done.stderr + stats.read_text()
    # Not a query at all: one may repeat the password encoded any number of times.
    assert "return=" not in done.stderr and "again=" not in done.stderr
    [line] = (tmp_path / "project.failures.jsonl").read_text().splitlines()
    assert "s3cret" not in json.loads(line)["reason"]


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_the_traceback_of_an_error_naming_a_get_sign_in_hides_its_password(
    tmp_path: Path, serve: Serve, log_format: str
) -> None:
    _, path = await signing_in(
        tmp_path, serve, lambda: web.Response(text="<p>hi</p>", content_type="text/html")
    )
    spider = SIGNS_IN_ITSELF.replace(
        'yield {"url": response.url}', 'response.form(css="#none")  # names the page, query too'
    )
    (tmp_path / "signs_in.py").write_text(spider, encoding="utf-8")
    debug = ("--log-level", "debug", "--log-format", log_format)
    done = await run_fw(*debug, "run", str(path), "-o", "items.jsonl", cwd=tmp_path)
    assert "spider_error: " in done.stderr and "FormError" in done.stderr, done.stderr
    assert "Traceback" in done.stderr and "s3cret" not in done.stderr


REPORTER = """
from framework import hookimpl

@hookimpl
def crawl_error(error, kind, request, spider):
    raise RuntimeError(f"could not report {request.url}")
"""


async def test_a_crawl_error_hook_that_fails_naming_a_get_sign_in_hides_its_password(
    tmp_path: Path, serve: Serve
) -> None:
    _, path = await signing_in(tmp_path, serve, lambda: web.Response(status=500, text="down"))
    (tmp_path / "reporter.py").write_text(REPORTER, encoding="utf-8")
    path.write_text(path.read_text().replace("./signs_in.py]", "./signs_in.py, ./reporter.py]"))
    stats = tmp_path / "stats.json"
    done = await run_fw("run", str(path), "-o", "items.jsonl", "--stats", str(stats), cwd=tmp_path)
    assert "plugin_error: plugin 'reporter.py': crawl_error raised RuntimeError" in done.stderr
    assert "s3cret" not in done.stderr, done.stderr
    assert json.loads(stats.read_text())["errors"]["plugin_error"] == 1


class OddCharset(LoginSite):
    """A sign-in form whose ``accept-charset`` names a Python codec no browser has."""

    charset = ""

    async def login_page(self, request: web.Request) -> web.Response:
        answer = await super().login_page(request)
        assert isinstance(answer.text, str)
        answer.text = answer.text.replace(
            'id="login"', f'id="login" accept-charset="{self.charset}"'
        )
        return answer


@pytest.mark.parametrize("charset", ["base64", "rot13", "undefined", "cp037"])
async def test_a_form_whose_charset_no_browser_knows_is_sent_in_utf8_and_signs_in(
    tmp_path: Path, serve: Serve, charset: str
) -> None:
    # base64 raised out of form(), and the sign-in was tried again for every request.
    site = OddCharset()
    site.charset = charset
    base = await serve(site.app())
    path = project(tmp_path, base, "data: {username: ada, password: s3cret}")
    two = f"start_urls: [{base}/members, '{base}/members?page=2']"
    path.write_text(path.read_text().replace(f"start_urls: [{base}/members]", two))
    done = await run_fw("run", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "plugin_error" not in done.stderr
    assert len(site.logins) == 1  # signed in once, not for each request


async def test_without_check_an_answer_without_the_form_again_is_signed_in(
    tmp_path: Path, serve: Serve
) -> None:
    site = ShowsTheFormAgain()
    base = await serve(site.app())
    login = "form: '#login'\n          data: {username: ada, password: s3cret}"
    done = await run_fw("run", str(project(tmp_path, base, login)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # the right password: the form does not come back
    assert len(read_jsonl(tmp_path / "members.jsonl")) == len(MEMBERS)


@pytest.mark.parametrize(
    ("section", "said"),
    [
        ("login: {data: {username: ada}}", "login: url: the sign-in page is required"),
        ("login: {url: 'ftp://x/'}", "login.url: 'ftp://x/' is not an http(s) URL"),
        ("login: {url: 'http://[::1'}", "login.url: 'http://[::1' is not a valid URL: Invalid"),
        ("login: {url: 'http://ada:pw/'}", "login.url: 'http://ada:***/' is not a valid URL: its "),
        ("login: {url: 'http:///in'}", "login.url: 'http:///in' names no host"),
        ("login: {url: 'http://x/', check: 'a['}", "login.check: not a valid CSS query"),
        ("login: {url: 'http://x/', dat: {}}", "login.dat: unknown key (did you mean 'data'?)"),
    ],
)
async def test_a_mistake_in_the_section_is_an_error_at_its_line(
    tmp_path: Path, section: str, said: str
) -> None:
    path = write_project(tmp_path, f"spider: douban\n{section}\n")
    done = await run_fw("check", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert said in done.stderr


async def test_the_forms_page_signs_in_from_the_project_file_as_written(
    tmp_path: Path, serve: Serve
) -> None:
    site = LoginSite()
    base = await serve(site.app())
    text = DOCS.read_text(encoding="utf-8")
    blocks = dict(re.findall(r"<!-- test-login: (\S+) -->\n```\w+\n(.*?)```", text, re.DOTALL))
    assert set(blocks) == {"members.yaml", "command"}
    project = blocks["members.yaml"].replace("http://127.0.0.1:8000", base)
    (tmp_path / "members.yaml").write_text(project, encoding="utf-8")
    variable, command = blocks["command"].strip().split(" ", 1)
    name, value = variable.split("=")
    assert command.startswith("fw ")
    done = await run_fw(*command.split()[1:], cwd=tmp_path, env={name: value})
    assert done.returncode == 0, done.stderr
    assert [item["name"] for item in read_jsonl(tmp_path / "members.jsonl")] == list(MEMBERS)
    assert [seen.verdict for seen in site.log if seen.method == "POST"] == ["logged in"]


class SessionsEnd(LoginSite):
    """Member pages ``/members/<n>``, each linking to the next; a session ends after two
    of them, and a page asked for without one redirects to the sign-in page."""

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/members/{n}", self.member)
        return app

    async def member(self, request: web.Request) -> web.Response:
        seen = self._seen(request)
        session = request.cookies.get("session")
        if session not in self.sessions:
            seen.verdict = "signed out"
            raise web.HTTPFound(f"/accounts/login?next={quote(request.path)}")
        seen.verdict = "member"
        if sum(s.verdict == "member" and s.path.startswith("/members/") for s in self.log) % 2 == 0:
            self.sessions.discard(session)  # the next page finds the session ended
        n = int(request.match_info["n"])
        link = f'<a href="/members/{n + 1}">next</a>' if n < 5 else ""
        return web.Response(
            text=f'<li class="member">member {n}</li>{link}', content_type="text/html"
        )


FOLLOWS = SPIDER.replace(
    '            yield {"name": name}',
    '            yield {"name": name}\n        for link in response.follow_all(css="a"):\n'
    "            yield link",
)


async def crawl_members(
    tmp_path: Path,
    serve: Serve,
    site: LoginSite,
    more: str = "",
    sign_in: str = "accounts/login",
    starts: int = 1,
    login: str = "",
) -> tuple[str, Completed]:
    """Crawl the member pages from ``/members/0`` (to ``starts`` - 1), following links,
    signed in at ``sign_in``; ``more`` are project lines. Return the site's URL and how
    fw ran."""
    base = await serve(site.app())
    path = project(tmp_path, base, "data: {username: ada, password: s3cret}" + login)
    (tmp_path / "members.py").write_text(FOLLOWS, encoding="utf-8")
    first = ", ".join(f"{base}/members/{n}" for n in range(starts))
    path.write_text(
        path.read_text()
        .replace(f"{base}/members]", f"{first}]")
        .replace(f"url: {base}/accounts/login", f"url: {base}/{sign_in}")
        + more
    )
    return base, await run_fw("run", str(path), cwd=tmp_path)


async def test_a_session_that_ends_mid_crawl_is_opened_again_and_no_page_lost(
    tmp_path: Path, serve: Serve
) -> None:
    site = SessionsEnd()
    _, done = await crawl_members(tmp_path, serve, site, "concurrency: {total: 1}\n")
    assert done.returncode == 0, done.stderr
    names = [item["name"] for item in read_jsonl(tmp_path / "members.jsonl")]
    assert names == [f"member {n}" for n in range(6)]  # none dropped as the sign-in page
    assert [s.verdict for s in site.log if s.method == "POST"] == ["logged in"] * 3
    assert done.stderr.count("the session ended") == 2 and "s3cret" not in done.stderr


class NeverLetsIn(SessionsEnd):
    """Sends every member page to the sign-in page, signed in or not."""

    async def member(self, request: web.Request) -> web.Response:
        self._seen(request).verdict = "signed out"
        raise web.HTTPFound(f"/accounts/login?next={quote(request.path)}")


async def test_a_page_sent_to_sign_in_even_after_signing_in_again_fails_listed(
    tmp_path: Path, serve: Serve
) -> None:
    base, done = await crawl_members(tmp_path, serve, NeverLetsIn())
    assert done.returncode == 1  # not a crawl of nothing reported as success
    assert "signed_out 1" in done.stderr
    (listed,) = read_jsonl(tmp_path / "project.failures.jsonl")
    assert listed["kind"] == "signed_out" and listed["request"]["url"] == f"{base}/members/0"


class SignInMoved(SessionsEnd):
    """``/login`` redirects to the sign-in page, where ended sessions are sent."""

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/login", self.moved)
        return app

    async def moved(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/accounts/login")


async def test_a_session_sent_where_the_sign_in_page_redirects_is_opened_again(
    tmp_path: Path, serve: Serve
) -> None:
    _, done = await crawl_members(tmp_path, serve, SignInMoved(), sign_in="login")
    assert done.returncode == 0, done.stderr
    names = [item["name"] for item in read_jsonl(tmp_path / "members.jsonl")]
    assert sorted(names) == [f"member {n}" for n in range(6)]
    assert done.stderr.count("the session ended") == 2


class LogsOut(SessionsEnd):
    """No session ends by itself; ``/logout``, linked from the first page, ends them all."""

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/logout", self.logout)
        return app

    async def logout(self, request: web.Request) -> web.Response:
        self._seen(request).verdict = "logged out"
        self.sessions.clear()
        raise web.HTTPFound("/accounts/login")

    async def member(self, request: web.Request) -> web.Response:
        seen = self._seen(request)
        if request.cookies.get("session") not in self.sessions:
            seen.verdict = "signed out"
            raise web.HTTPFound(f"/accounts/login?next={quote(request.path)}")
        seen.verdict = "member"
        n = int(request.match_info["n"])
        links = "".join(f'<a href="/members/{k}">m</a>' for k in range(1, 9)) if n == 0 else ""
        return web.Response(
            text=f'<li class="member">member {n}</li><a href="/logout">out</a>{links}',
            content_type="text/html",
        )


@pytest.mark.parametrize("avoid", ["", "\n          avoid: null"])
async def test_a_logout_link_costs_no_page_but_its_own(
    tmp_path: Path, serve: Serve, avoid: str
) -> None:
    more = "concurrency: {total: 8, per_domain: 8}\n"
    base, done = await crawl_members(tmp_path, serve, LogsOut(), more, login=avoid)
    names = [item["name"] for item in read_jsonl(tmp_path / "members.jsonl")]
    assert sorted(names) == [f"member {n}" for n in range(9)], done.stderr
    if not avoid:  # left out: it would end the session
        assert "login: leaving out links that look like logging out" in done.stderr
        assert done.returncode == 0, done.stderr
        assert not (tmp_path / "project.failures.jsonl").exists()
        return
    (listed,) = read_jsonl(tmp_path / "project.failures.jsonl")
    assert listed["kind"] == "signed_out" and listed["request"]["url"] == f"{base}/logout"


async def test_a_site_that_keeps_no_session_stops_the_crawl_not_signing_in_for_ever(
    tmp_path: Path, serve: Serve
) -> None:
    site = NeverLetsIn()
    _, done = await crawl_members(tmp_path, serve, site, "concurrency: {total: 1}\n", starts=40)
    assert done.returncode == 1
    assert done.stderr.strip().endswith(
        "Error: login: signed in again 10 times in a row and every page was still sent to "
        "the sign-in page: the site does not keep the session"
    )
    assert len([seen for seen in site.log if seen.method == "POST"]) == 11  # not 80
