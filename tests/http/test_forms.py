"""Response.form: the request a browser sends on submit, checked against a real server.

Each test serves a page on 127.0.0.1, fetches it with fw's downloader, builds the form's
request and sends it back to the server, which reports what it received: method, path,
query, headers, and the body (a multipart one as aiohttp's own parser reads it).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import BodyPartReader, web
from hypothesis import given, settings
from hypothesis import strategies as st

from framework import FormError, Request, Response
from framework.fetch.downloader import Downloader, DownloadSettings
from framework.fetch.parsers import BUILT_IN, Parsers, parse_html
from tests.conftest import Serve, crawl, read_jsonl, run_fw, write_project
from tests.login_site import MEMBERS, LoginSite

DOCS = Path(__file__).parents[2] / "docs" / "forms.md"
PAGE = "/shop/a/form.html"


async def echo(request: web.Request) -> dict[str, Any]:
    """Report what a submission sent."""
    seen: dict[str, Any] = {
        "method": request.method,
        "path": request.path,
        "query": request.raw_path.partition("?")[2],
        "content_type": request.headers.get("Content-Type"),
        "referer": request.headers.get("Referer"),
        "origin": request.headers.get("Origin"),
    }
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        parts = []
        while (part := await reader.next()) is not None:
            assert isinstance(part, BodyPartReader)
            content = await part.read()
            parts.append(
                [part.name, part.filename, part.headers.get("Content-Type"), content.decode()]
            )
        seen["parts"] = parts
    else:
        seen["body"] = (await request.read()).decode("latin-1")
    return seen


@dataclass
class Browser:
    """Serves pages and sends what their forms submit, with fw's downloader."""

    base: str
    pages: dict[str, tuple[bytes, str]]
    downloader: Downloader

    async def open(
        self, html: str | bytes, content_type: str = "text/html; charset=utf-8"
    ) -> Response:
        body = html.encode() if isinstance(html, str) else html
        self.pages[PAGE] = (body, content_type)
        return await self.downloader.fetch(Request(self.base + PAGE))

    async def send(self, request: Request) -> dict[str, Any]:
        response = await self.downloader.fetch(request)
        assert response.status == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def submit(self, html: str, **form: Any) -> dict[str, Any]:
        """Open a page, submit its form and return what the server received."""
        return await self.send((await self.open(html)).form(**form))


@pytest.fixture
async def browser(serve: Serve) -> AsyncIterator[Browser]:
    pages: dict[str, tuple[bytes, str]] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and request.path in pages and "?" not in request.raw_path:
            body, content_type = pages[request.path]
            return web.Response(body=body, headers={"Content-Type": content_type})
        return web.json_response(await echo(request))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    base = await serve(app)
    parsers = Parsers()
    for media_type, parser in BUILT_IN.items():
        parsers.add(media_type, parser)
    settings = DownloadSettings(4, 10.0, 1 << 20, {}, cookies=True)
    async with Downloader(settings, parsers) as downloader:
        yield Browser(base, pages, downloader)


def fields(seen: dict[str, Any]) -> list[tuple[str, str]]:
    """Return the fields of a urlencoded body or query, in order."""
    text = seen["body"] if seen["method"] == "POST" else seen["query"]
    return parse_qsl(text, keep_blank_values=True)


# -- What the controls send ---------------------------------------------------------------


async def test_a_post_form_sends_its_hidden_token_and_the_data_given(browser: Browser) -> None:
    seen = await browser.submit(
        """<base href="/accounts/">
        <form method="POST" action="session/new?next=%2Fhome">
          <input type="hidden" name="csrf" value="t0k3n">
          <input name="user" value="guest"><input type="password" name="password">
          <input name="coupon" value="SPRING"><input type="submit" value="Sign in">
        </form>""",
        data={"user": "ada", "password": "s3 cret&=", "coupon": None, "lang": "en"},
    )
    assert seen["method"] == "POST"
    assert seen["path"] == "/accounts/session/new"  # against <base>, query kept
    assert parse_qsl(seen["query"]) == [("next", "/home")]
    assert seen["content_type"] == "application/x-www-form-urlencoded"
    assert seen["body"] == "csrf=t0k3n&user=ada&password=s3+cret%26%3D&lang=en"


async def test_selects_checkboxes_and_radios_send_their_defaults(browser: Browser) -> None:
    seen = await browser.submit(
        """<form method=post>
        <select name="size"><option>  Small
           one </option><option value="m">Medium</option></select>
        <select name="colour"><option value="r">Red<option value="g" selected>Green
          <option value="b" selected>Blue</select>
        <select name="first-enabled"><option disabled>x<optgroup disabled><option>y
          </optgroup><option>z</select>
        <select name="tags" multiple><option selected>a<option selected disabled>b
          <option>c<option selected value="">d</select>
        <select name="listbox" size="3"><option>p<option>q</select>
        <select name="empty"></select>
        <input type="checkbox" name="news" checked><input type="checkbox" name="ads">
        <input type="checkbox" name="terms" value="" checked>
        <input type="radio" name="plan" value="free" checked>
        <input type="radio" name="plan" value="pro" checked>
        <input type="radio" name="plan" value="team">
        <input type="radio" name="pay" value="card"><input type="radio" name="pay" value="cash">
        </form>""",
    )
    assert fields(seen) == [
        ("size", "Small one"),  # an option without a value sends its text, spaces collapsed
        ("colour", "b"),  # of two selected in a drop-down, the last wins
        ("first-enabled", "z"),  # nothing selected: the first option not disabled
        ("tags", "a"),
        ("tags", ""),
        ("news", "on"),  # a checkbox without a value sends "on"
        ("terms", ""),
        ("plan", "pro"),  # checking a radio unchecks the others of its group
    ]


async def test_disabled_controls_buttons_and_nameless_ones_send_nothing(
    browser: Browser,
) -> None:
    seen = await browser.submit(
        """<form method=post>
        <input name="a" value="1" disabled><textarea name="b" disabled>2</textarea>
        <fieldset disabled><legend><input name="in-legend" value="3"></legend>
          <input name="in-fieldset" value="4"><select name="s"><option>5</select></fieldset>
        <fieldset><legend>ok</legend><input name="open" value="6"></fieldset>
        <input value="no name"><input name="" value="empty name">
        <datalist id="d"><input name="in-datalist" value="7"></datalist>
        <input type="reset" name="reset"><input type="button" name="btn" value="b">
        <button type="button" name="toggle">x</button>
        <template><input name="in-template" value="8"></template>
        <object name="obj"></object><output name="out">9</output>
        </form>""",
        click=False,
    )
    assert fields(seen) == [("in-legend", "3"), ("open", "6")]


async def test_controls_belong_to_the_form_their_form_attribute_names(browser: Browser) -> None:
    seen = await browser.submit(
        """<input name="before" value="1" form="f">
        <form id="f" method="post"><input name="inside" value="2">
          <input name="elsewhere" value="3" form="other"><input name="nowhere" form="nope">
        </form>
        <form id="other"><input name="other-own" value="4"></form>
        <p><input name="after" value="5" form="f"><input name="loose" value="6"></p>""",
    )
    assert fields(seen) == [("before", "1"), ("inside", "2"), ("after", "5")]


async def test_textarea_drops_its_first_newline_and_sends_crlf(browser: Browser) -> None:
    response = await browser.open(
        '<form method="post"><textarea name="note">\n\nline 1\r\nline 2\rline 3\n</textarea>'
        '<textarea name="multi&#10;line">x</textarea></form>'
    )
    seen = await browser.send(response.form())
    assert seen["body"] == "note=%0D%0Aline+1%0D%0Aline+2%0D%0Aline+3%0D%0A&multi%0D%0Aline=x"


async def test_input_values_are_sanitised_as_their_type_says(browser: Browser) -> None:
    seen = await browser.submit(
        """<form>
        <input name="text" value="a&#10;b&#13;c"><input type="hidden" name="h" value=" a&#10;b ">
        <input type="url" name="url" value="  http://x.test/&#10; ">
        <input type="email" name="mails" multiple value=" a@x.test , b@x.test">
        <input type="number" name="n1" value="-1.5e3"><input type="number" name="n2" value="1.">
        <input type="range" name="r1"><input type="range" name="r2" min="0" max="10" value="99">
        <input type="range" name="r3" min="0" max="10" step="4" value="7">
        <input type="range" name="r4" min="-1e308" max="1e308" step="1e-308">
        <input type="color" name="c1" value="#FFaa00"><input type="color" name="c2" value="red">
        <input type="date" name="d1" value="2024-02-29">
        <input type="date" name="d2" value="2023-02-29">
        <input type="month" name="m" value="2024-13"><input type="week" name="w" value="2020-W53">
        <input type="time" name="t" value="23:59:59.5">
        <input type="datetime-local" name="dt" value="2024-01-02 03:04:00.000">
        <input type="bogus" name="other" value="x">
        </form>""",
    )
    assert fields(seen) == [
        ("text", "abc"),
        ("h", " a\r\nb "),
        ("url", "http://x.test/"),
        ("mails", "a@x.test,b@x.test"),
        ("n1", "-1.5e3"),
        ("n2", ""),
        ("r1", "50"),
        ("r2", "10"),
        ("r3", "8"),
        ("r4", "0"),  # the middle, though max - min overflows
        ("c1", "#ffaa00"),
        ("c2", "#000000"),
        ("d1", "2024-02-29"),
        ("d2", ""),
        ("m", ""),
        ("w", "2020-W53"),
        ("t", "23:59:59.5"),
        ("dt", "2024-01-02T03:04"),
        ("other", "x"),
    ]


async def test_dirname_sends_the_text_direction(browser: Browser) -> None:
    seen = await browser.submit(
        """<form dir="rtl"><input name="a" value="x" dirname="a.dir">
        <input name="b" dir="auto" value="123 hello" dirname="b.dir">
        <textarea name="c" dir="auto" dirname="c.dir">مرحبا</textarea>
        <input name="d" dir="ltr" value="x" dirname=""></form>""",
    )
    assert fields(seen) == [
        ("a", "x"),
        ("a.dir", "rtl"),
        ("b", "123 hello"),
        ("b.dir", "ltr"),
        ("c", "مرحبا"),
        ("c.dir", "rtl"),
        ("d", "x"),
    ]


async def test_data_replaces_in_place_adds_and_removes(browser: Browser) -> None:
    seen = await browser.submit(
        """<form method="post"><input name="a" value="1"><input type="checkbox" name="opt"
        value="x"><input name="b" value="2"><input name="b" value="3">
        <input name="c" value="4"></form>""",
        data={"b": ["two", "three", "four"], "opt": "x", "c": None, "new": "5"},
    )
    # An unchecked checkbox the data checks goes where the browser would send it.
    assert fields(seen) == [
        ("a", "1"),
        ("opt", "x"),
        ("b", "two"),
        ("b", "three"),
        ("b", "four"),
        ("new", "5"),
    ]


# -- The button, the action, the method ---------------------------------------------------


BUTTONS = """<form action="/save" method="post">
  <input name="title" value="Draft">
  <input type="submit" name="op" value="Save">
  <button name="op" value="publish" formaction="/publish?now=1">Publish</button>
  <button name="op" value="preview" formmethod="get" formaction="preview">Preview</button>
  <button name="op" value="upload" formenctype="multipart/form-data">Upload</button>
  <input type="submit" name="nameless-value">
  <button name="op" value="off" disabled>Off</button>
</form>
<form id="other"><button name="op" value="elsewhere">Other form</button></form>"""


async def test_the_default_button_is_the_first_and_click_false_sends_none(
    browser: Browser,
) -> None:
    seen = await browser.submit(BUTTONS)
    assert (seen["path"], fields(seen)) == ("/save", [("title", "Draft"), ("op", "Save")])
    seen = await browser.submit(BUTTONS, click=False)
    assert fields(seen) == [("title", "Draft")]


async def test_a_clicked_button_sends_its_value_and_may_change_the_submission(
    browser: Browser,
) -> None:
    seen = await browser.submit(BUTTONS, click="button[value=publish]")
    assert (seen["method"], seen["path"], seen["query"]) == ("POST", "/publish", "now=1")
    assert fields(seen) == [("title", "Draft"), ("op", "publish")]
    seen = await browser.submit(BUTTONS, click="button[value=preview]")
    assert (seen["method"], seen["path"]) == ("GET", "/shop/a/preview")
    assert fields(seen) == [("title", "Draft"), ("op", "preview")]
    seen = await browser.submit(BUTTONS, click="button[value=upload]")
    assert seen["parts"] == [
        ["title", None, None, "Draft"],
        ["op", None, None, "upload"],
    ]
    # An <input type=submit> without a value sends its label, as Chrome and Safari do.
    seen = await browser.submit(BUTTONS, click="input[name=nameless-value]")
    assert fields(seen)[-1] == ("nameless-value", "Submit")
    response = await browser.open(BUTTONS)
    seen = await browser.send(response.form(click=response.css("button")[0]))
    assert fields(seen)[-1] == ("op", "publish")


async def test_a_button_without_a_type_submits_and_a_command_button_does_not(
    browser: Browser,
) -> None:
    seen = await browser.submit(
        """<form method="post"><button type="button" name="b1">x</button>
        <button commandfor="dialog" name="b2">y</button>
        <button type="BOGUS" name="b3" value="3">z</button></form>"""
    )
    assert fields(seen) == [("b3", "3")]


async def test_an_image_button_sends_where_it_was_clicked(browser: Browser) -> None:
    page = """<form method="post"><input name="q" value="x">
      <input type="image" name="map" src="map.png"><input type="image" src="go.png"></form>"""
    assert fields(await browser.submit(page)) == [("q", "x"), ("map.x", "0"), ("map.y", "0")]
    seen = await browser.submit(page, click="input[src='go.png']", data={"x": "12", "y": "40"})
    assert fields(seen) == [("q", "x"), ("x", "12"), ("y", "40")]


async def test_get_replaces_the_query_of_the_action(browser: Browser) -> None:
    seen = await browser.submit(
        """<form action="/search?page=3&amp;q=old#results"><input name="q" value="new shoes">
        <input type="file" name="attachment"><input type="submit"></form>"""
    )
    assert (seen["method"], seen["path"], seen["query"]) == (
        "GET",
        "/search",
        "q=new+shoes&attachment=",
    )
    seen = await browser.submit('<form action="/search?page=3"></form>')
    assert seen["query"] == ""
    seen = await browser.submit(
        '<form method="nonsense" action=" /s "><input name="a" value="1"></form>'
    )
    assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/s", "a=1")


async def test_an_empty_action_submits_to_the_page_itself_not_its_base(
    browser: Browser,
) -> None:
    seen = await browser.submit(
        '<base href="/elsewhere/"><form method="post" action=""><input name="a"></form>'
    )
    assert seen["path"] == PAGE


async def test_multipart_is_valid_and_sends_file_inputs_empty(browser: Browser) -> None:
    response = await browser.open(
        """<form method="post" enctype="multipart/form-data" action="/upload">
        <input name="title" value='A "quoted" name'><input type="file" name="photo">
        <input type="file" name="more" multiple><textarea name="note">a
b</textarea><input name='we"ird&#10;name' value="é ☃"></form>"""
    )
    request = response.form()
    boundary = request.headers["Content-Type"].partition("boundary=")[2]  # type: ignore[index]
    assert request.headers["Content-Type"] == f"multipart/form-data; boundary={boundary}"  # type: ignore[index]
    assert request.body is not None and request.body.endswith(f"--{boundary}--\r\n".encode())
    seen = await browser.send(request)
    assert seen["parts"] == [
        ["title", None, None, 'A "quoted" name'],
        ["photo", "", "application/octet-stream", ""],
        ["more", "", "application/octet-stream", ""],
        ["note", None, None, "a\r\nb"],
        ["we%22ird%0D%0Aname", None, None, "é ☃"],
    ]
    # The same form gives the same body: dedup and --replay compare bodies.
    assert response.form().body == request.body


async def test_text_plain_sends_one_line_per_field(browser: Browser) -> None:
    seen = await browser.submit(
        """<form method="post" enctype="TEXT/PLAIN"><input name="a" value="1 2">
        <textarea name="b">x
y</textarea></form>"""
    )
    assert seen["content_type"] == "text/plain"
    assert seen["body"] == "a=1 2\r\nb=x\r\ny\r\n"


async def test_the_form_goes_in_the_page_encoding_or_its_accept_charset(
    browser: Browser,
) -> None:
    page = """<form method="post" {extra}><input name="city" value="Zürich">
      <input name="snow" value="&#9731;"><input type="hidden" name="_charset_"></form>"""
    response = await browser.open(
        page.format(extra="").encode("cp1252"), "text/html; charset=windows-1252"
    )
    seen = await browser.send(response.form())
    # What windows-1252 lacks goes as a character reference, as browsers send it.
    assert seen["body"] == "city=Z%FCrich&snow=%26%239731%3B&_charset_=windows-1252"
    response = await browser.open(
        page.format(extra='accept-charset="x-unknown utf-8"').encode("cp1252"),
        "text/html; charset=windows-1252",
    )
    seen = await browser.send(response.form())
    assert seen["body"] == "city=Z%C3%BCrich&snow=%E2%98%83&_charset_=UTF-8"
    # Labels only Python knows are skipped as browsers skip unknown ones: base64 failed.
    for python_only in ("base64", "rot13", "undefined", "cp037", "unicode_escape"):
        extra = f'accept-charset="{python_only} windows-1252"'
        response = await browser.open(page.format(extra=extra).encode(), "text/html")
        seen = await browser.send(response.form())
        assert seen["body"] == "city=Z%FCrich&snow=%26%239731%3B&_charset_=windows-1252"
    response = await browser.open(
        page.format(extra="").encode("utf-16"), "text/html; charset=utf-16"
    )
    assert b"_charset_=UTF-8" in (response.form().body or b"")


async def test_percent_encoding_keeps_only_what_browsers_keep(browser: Browser) -> None:
    response = await browser.open(
        '<form method="post"><input name="k" value="a*b-c._~ +/é"></form>'
    )
    assert response.form().body == b"k=a*b-c._%7E+%2B%2F%C3%A9"


# -- Which form ---------------------------------------------------------------------------


PICK = """<template><form action="/template"></form></template>
<form id="search" action="/search"><input name="q" value="s"></form>
<div class="box"><form class="main" action="/one"><input name="n" value="1"></form></div>
<form class="main" action="/two"><p><input name="n" value="2"></p></form>"""


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ({}, "/search"),
        ({"index": 1}, "/one"),
        ({"index": -1}, "/two"),
        ({"css": "form.main"}, "/one"),
        ({"css": "form.main", "index": 1}, "/two"),
        ({"css": "div.box"}, "/one"),  # an element holding forms means those
        ({"css": "input[value='2']"}, "/two"),  # an element inside a form means that form
        ({"xpath": "//form[@action='/two']"}, "/two"),
        ({"xpath": "//p"}, "/two"),
    ],
)
async def test_the_form_is_picked_by_query_and_index(
    browser: Browser, query: dict[str, Any], path: str
) -> None:
    response = await browser.open(PICK)
    assert (await browser.send(response.form(**query)))["path"] == path


async def test_misnested_markup_ties_controls_to_the_form_as_browsers_do(
    browser: Browser,
) -> None:
    # lxml closes the form at </div>; a browser's parser keeps it open until </form>.
    seen = await browser.submit(
        """<div class="a"><form method="post" action="/s"><input name="one" value="1"></div>
        <div><input name="two" value="2"></div><input type="submit" name="go" value="Go">
        </form><input name="after" value="3">"""
    )
    assert fields(seen) == [("one", "1"), ("two", "2"), ("go", "Go")]
    # A <form> inside an open form is ignored: its controls belong to the outer one.
    response = await browser.open(
        """<form id="outer" method="post" action="/outer"><input name="a" value="1">
        <form id="inner" action="/inner"><input name="b" value="2"></form>
        <input name="c" value="3"></form>"""
    )
    seen = await browser.send(response.form(css="#inner"))
    assert (seen["path"], fields(seen)) == ("/outer", [("a", "1"), ("b", "2")])


# -- Referer and Origin -------------------------------------------------------------------


async def test_referer_and_origin_are_sent_as_browsers_send_them(browser: Browser) -> None:
    seen = await browser.submit('<form method="post" action="/x"></form>')
    assert seen["referer"] == browser.base + PAGE
    assert seen["origin"] == browser.base
    seen = await browser.submit('<form action="/x"></form>')
    assert (seen["referer"], seen["origin"]) == (browser.base + PAGE, None)
    response = await browser.open('<form method="post" action="http://other.test:81/x"></form>')
    headers = response.form(headers={"referer": "mine"}).headers
    assert headers == {
        "Origin": browser.base,
        "Content-Type": "application/x-www-form-urlencoded",
        "referer": "mine",
    }
    assert response.form().headers["Referer"] == browser.base + "/"  # type: ignore[index]


def test_from_https_to_http_no_referer_and_a_null_origin() -> None:
    url = "https://user:pw@shop.example:443/a?b=1#c"
    page = Response(
        url,
        200,
        {},
        b'<form method="post" action="http://shop.example/x">',
        Request(url),
        parse_html,
    )
    assert page.form().headers == {
        "Origin": "null",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    page = Response(url, 200, {}, b'<form method="post" action="/x">', Request(url), parse_html)
    headers = page.form().headers or {}
    assert (headers["Referer"], headers["Origin"]) == (
        "https://shop.example/a?b=1",
        "https://shop.example",
    )


# -- Errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "kwargs", "message"),
    [
        ("<p>no forms here</p>", {}, "no form is on the page$"),
        (
            PICK,
            {"css": "form#login"},
            r"no form matches css 'form#login' \(it has 3: <form id=\"search\"",
        ),
        (PICK, {"index": 3}, "form index 3 is out of range: the page has 3 forms"),
        (PICK, {"css": "p input", "index": 1}, "index 1 is out of range: css 'p input' has 1 form"),
        (PICK, {"xpath": "//form/@action"}, "no form matches xpath '//form/@action'"),
        (
            PICK,
            {"css": "#search", "index": -2},
            "form index -2 is out of range: css '#search' has 1 form$",
        ),
        (BUTTONS, {"click": "button.nope"}, "click 'button.nope' matches nothing on the page"),
        (
            BUTTONS,
            {"click": "#other button"},
            'matches <button name="op" value="elsewhere">, which is not a submit button of '
            '<form action="/save">',
        ),
        (BUTTONS, {"click": "input[name=title]"}, "which is not a submit button"),
        (BUTTONS, {"click": "button[disabled]"}, "which is disabled: no one can click it"),
        (
            '<form method="dialog"></form>',
            {},
            "has method=dialog: it closes a dialog and sends nothing",
        ),
        (
            '<form action="javascript:go()"></form>',
            {},
            r"submits to 'javascript:go\(\)', which is not http",
        ),
        ('<form action="mailto:a@b.test"></form>', {}, "which is not http"),
        ('<form action="http://[::1"></form>', {}, "action 'http://\\[::1' is not a valid URL"),
    ],
)
async def test_errors_name_the_page(
    browser: Browser, html: str, kwargs: dict[str, Any], message: str
) -> None:
    response = await browser.open(html)
    with pytest.raises(FormError, match=f"^{re.escape(browser.base + PAGE)}: .*{message}"):
        response.form(**kwargs)


async def test_misuse_is_a_type_error_and_a_non_html_page_has_no_forms(
    browser: Browser,
) -> None:
    response = await browser.open("<form><input name=a></form>")
    with pytest.raises(TypeError, match="click must be True, False, a CSS query or an element"):
        response.form(click=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="css or xpath, not both"):
        response.form(css="form", xpath="//form")
    with pytest.raises(
        TypeError, match=r"form data\['a'\] must be a string, a list of strings or None, not 1"
    ):
        response.form(data={"a": 1})  # type: ignore[dict-item]
    response = await browser.open(b'{"form": 1}', "application/json")
    with pytest.raises(FormError, match=r"not an HTML page \(application/json\)"):
        response.form()
    response = await browser.open(b"\x89PNG", "image/png")
    with pytest.raises(FormError, match="not an HTML page"):
        response.form()


async def test_form_error_is_a_value_error_and_the_request_keeps_its_options(
    browser: Browser,
) -> None:
    response = await browser.open("<form></form>")
    with pytest.raises(ValueError):
        response.form(css="nav")
    request = response.form(callback="after", priority=5, meta={"k": 1}, dont_filter=True)
    assert (request.callback, request.priority, request.meta, request.dont_filter) == (
        "after",
        5,
        {"k": 1},
        True,
    )


# -- A real login -------------------------------------------------------------------------


SPIDER = """
from framework import Spider, hookimpl


class Members(Spider):
    name = "members"

    async def parse(self, response):
        yield response.form(
            css="#login", data={"username": "ada", "password": "s3cret"}, callback=self.listed
        )

    async def listed(self, response):
        for name in response.css("li.member::text").getall():
            yield {"name": name}


@hookimpl
def register_spiders(register):
    register(Members)
"""


@pytest.mark.parametrize("cookies", [True, False])
async def test_a_csrf_protected_login_reaches_the_members_page(
    tmp_path: Path, serve: Serve, cookies: bool
) -> None:
    site = LoginSite()
    base = await serve(site.app())
    (tmp_path / "members.py").write_text(SPIDER, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: members
        start_urls: [{base}/accounts/login]
        plugins: [./members.py]
        cookies: {str(cookies).lower()}
        exporters: [{{format: jsonl, path: members.jsonl}}]
        """,
    )
    stats = await crawl(project)
    items = read_jsonl(tmp_path / "members.jsonl")
    login = [seen for seen in site.log if seen.method == "POST"]
    assert len(login) == 1
    assert site.logins[0] == {
        "csrfmiddlewaretoken": site.logins[0]["csrfmiddlewaretoken"],
        "username": "ada",
        "password": "s3cret",
        "remember": "yes",
        "action": "login",
    }
    if not cookies:  # without the csrftoken cookie the site refuses: the test can fail
        assert login[0].verdict == "CSRF token missing or incorrect"
        assert (items, stats.errors["http_403"]) == ([], 1)
        return
    assert login[0].verdict == "logged in"
    assert login[0].headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert [item["name"] for item in items] == list(MEMBERS)
    members = [seen for seen in site.log if seen.path == "/members"]
    assert [seen.verdict for seen in members] == ["member"]
    # The redirect after the POST is a GET without the POST's body headers.
    assert "Content-Type" not in members[0].headers
    assert members[0].headers["Referer"] == f"{base}/accounts/login"


def docs_blocks() -> dict[str, str]:
    """Return the blocks of docs/forms.md the login walk-through is made of, by marker."""
    text = DOCS.read_text(encoding="utf-8")
    return dict(re.findall(r"<!-- test: (\S+) -->\n```\w+\n(.*?)```", text, re.DOTALL))


async def test_the_forms_page_logs_in_as_written(tmp_path: Path, serve: Serve) -> None:
    site = LoginSite()
    base = await serve(site.app())
    blocks = docs_blocks()
    assert set(blocks) == {"members.py", "login.yaml", "command", "members.jsonl"}
    (tmp_path / "members.py").write_text(blocks["members.py"], encoding="utf-8")
    project = blocks["login.yaml"].replace("http://127.0.0.1:8000", base)
    (tmp_path / "login.yaml").write_text(project, encoding="utf-8")
    command = blocks["command"].strip()
    assert command.startswith("fw ")
    done = await run_fw(*command.split()[1:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = (tmp_path / "members.jsonl").read_text(encoding="utf-8")
    assert written == blocks["members.jsonl"]
    assert [seen.verdict for seen in site.log if seen.method == "POST"] == ["logged in"]


# -- Hostile pages ------------------------------------------------------------------------

_TAGS = ["form", "input", "button", "select", "option", "optgroup", "textarea", "fieldset"]
_TAGS += ["legend", "datalist", "template", "div", "table", "tr", "td", "base", "p"]
_ATTRIBUTES = ["type", "name", "value", "form", "id", "method", "action", "enctype", "min"]
_ATTRIBUTES += ["accept-charset", "disabled", "checked", "selected", "multiple", "size", "max"]
_ATTRIBUTES += ["step", "dir", "dirname", "formaction", "formmethod", "formenctype", "href"]
_VALUES = ["", "a", "f", "post", "dialog", "multipart/form-data", "text/plain", "submit"]
_VALUES += ["image", "checkbox", "radio", "file", "hidden", "range", "number", "color", "week"]
_VALUES += ["datetime-local", "email", "1e308", "-1e308", "1e-308", "0", "-1", "auto", "rtl"]
_VALUES += ["_charset_", "http://[::1", "javascript:x", "/p?q=1#f", "utf-16", "2020-W53", "é☃"]
_VALUES += ["9999-12-31 23:59:59.999", "99999999999999999999", '"', "&amp;", "\r\n", "<form>"]


@st.composite
def markup(draw: st.DrawFn) -> str:
    """Draw a jumble of form tags, attributes and text, closed or not."""
    parts = []
    for _ in range(draw(st.integers(0, 30))):
        tag = draw(st.sampled_from(_TAGS))
        kind = draw(st.integers(0, 2))
        if kind == 0:
            pairs = draw(
                st.lists(
                    st.tuples(st.sampled_from(_ATTRIBUTES), st.sampled_from(_VALUES)), max_size=4
                )
            )
            attributes = " ".join(
                f'{name}="{value.replace(chr(34), "&quot;")}"' for name, value in pairs
            )
            parts.append(f"<{tag} {attributes}>")
        else:
            parts.append(f"</{tag}>" if kind == 1 else draw(st.sampled_from(_VALUES)))
    return "".join(parts)


@settings(max_examples=300, deadline=None)
@given(
    markup(),
    st.sampled_from([True, False, "button", "input", "[type=image]", "form"]),
    st.dictionaries(
        st.sampled_from(["a", "f", "new"]),
        st.none() | st.text(max_size=3) | st.lists(st.text(max_size=2), max_size=2),
        max_size=2,
    ),
)
def test_any_markup_gives_a_request_or_a_form_error(html: str, click: Any, data: Any) -> None:
    url = "http://shop.example/a/b.html"
    page = Response(
        url, 200, {"Content-Type": "text/html"}, html.encode(), Request(url), parse_html
    )
    for query in ({}, {"css": "input", "index": 1}, {"xpath": "//select"}):
        try:
            request = page.form(click=click, data=data, **query)
        except FormError as exc:
            assert str(exc).startswith(f"{url}: ")
        else:
            assert request.method in ("GET", "POST")
            assert request.url.startswith(("http://", "https://"))
