"""Requests and responses: the API spiders use, and decoding the way browsers do."""

from __future__ import annotations

import codecs
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from parsel import Selector

from framework import NotSupported, Request, Response, Spider
from framework.fetch.parsers import Parsers, parse_html, parse_json
from framework.http.urls import fingerprint
from tests.conftest import Serve, crawl, read_jsonl, write_project

GBK_PAGE = (
    '<html><head><meta charset="gbk"><title>即将上映</title></head><body>'
    "<h1>北京影讯</h1></body></html>"
)


def response(
    body: bytes, content_type: str | None = "text/html", url: str = "http://shop.example/a/b.html"
) -> Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return Response(url, 200, headers, body, Request(url), parse_html)


def test_gbk_page_with_only_a_meta_charset_decodes() -> None:
    page = response(GBK_PAGE.encode("gbk"))
    assert page.css("title::text").get() == "即将上映"
    assert page.encoding in {"gbk", "gb18030"}


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        # A byte-order mark beats everything, even a contradicting HTTP header.
        (codecs.BOM_UTF8 + "<p>é</p>".encode(), "text/html; charset=iso-8859-1", "utf-8"),
        # The HTTP charset beats the <meta> one.
        (
            '<meta charset="utf-8"><p>é</p>'.encode("cp1252"),
            "text/html; charset=windows-1252",
            "cp1252",
        ),
        # <meta http-equiv> is read when HTTP says nothing.
        (
            '<meta http-equiv="Content-Type" content="text/html; charset=koi8-r"><p>ж</p>'.encode(
                "koi8_r"
            ),
            "text/html",
            "koi8-r",
        ),
        # Nothing declared: valid UTF-8 is UTF-8.
        ("<p>日本語</p>".encode(), None, "utf-8"),
        # A label only Python knows is no label: it failed the page in the spider.
        ("<p>é</p>".encode(), "text/html; charset=idna", "utf-8"),
        ("<p>é</p>".encode(), "text/html; charset=undefined", "utf-8"),
        ('<meta charset="idna"><p>é</p>'.encode(), "text/html", "utf-8"),
        ('<meta charset="base64"><p>é</p>'.encode(), "text/html; charset=x", "utf-8"),
        # Past an unknown HTTP label, the <meta> one counts.
        ('<meta charset="koi8-r"><p>ж</p>'.encode("koi8_r"), "text/html; charset=idna", "koi8-r"),
    ],
)
def test_decoding_follows_the_browser_order(
    body: bytes, content_type: str | None, expected: str
) -> None:
    page = response(body, content_type)
    assert codecs.lookup(page.encoding).name == codecs.lookup(expected).name
    assert "\ufffd" not in page.text


def test_undeclared_legacy_encoding_is_detected() -> None:
    text = "<p>" + "这是一个没有声明编码的中文网页，内容足够长以便检测。" * 20 + "</p>"
    page = response(text.encode("gb18030"), None)
    assert "中文网页" in page.text


def test_an_empty_page_parses_to_nothing() -> None:
    assert response(b"", "text/html; charset=utf-8").css("a") == []


def test_undecodable_bytes_never_raise() -> None:
    page = response(b"<p>\xff\xfe\xfa broken \x80</p>", "text/html; charset=utf-8")
    assert "broken" in page.css("p::text").get("")


def test_response_api() -> None:
    page = response(
        b'<base href="http://cdn.example/x/"><a class="n" href="next.html#top">n</a>'
        b'<img src="/i.png">'
    )
    assert page.urljoin("c.html") == "http://cdn.example/x/c.html"  # <base> is honoured
    link = page.follow(page.css("a.n")[0], priority=3, meta={"k": 1})
    assert (link.url, link.priority, link.meta) == (
        "http://cdn.example/x/next.html",  # a fragment is never sent to a server
        3,
        {"k": 1},
    )
    kept = page.follow(page.css("a.n")[0], keep_fragment=True)
    assert (kept.url, kept.meta) == ("http://cdn.example/x/next.html", {"fragment": "top"})
    assert page.follow(page.css("img")[0]).url == "http://cdn.example/i.png"
    assert page.xpath("//a/text()").get() == "n"
    assert page.media_type == "text/html"
    assert page.meta is page.request.meta


def test_json_response() -> None:
    url = "http://api.example/v1"
    answer = Response(
        url, 200, {"Content-Type": "application/json"}, b'{"a": [1, 2]}', Request(url), parse_json
    )
    assert answer.json() == {"a": [1, 2]}
    assert answer.selector.jmespath("a[1]").get() == 2


def test_binary_response_is_not_parsed() -> None:
    url = "http://img.example/p.png"
    image = Response(
        url,
        200,
        {"Content-Type": "image/png"},
        b"\x89PNG...",
        Request(url),
        Parsers().for_type("image/png"),
    )
    assert image.css("a") == [] and image.xpath("//a") == []  # nothing to match in it
    with pytest.raises(NotSupported, match="no parser for image/png"):
        _ = image.selector


def test_parsers_match_exactly_then_by_suffix_then_by_type() -> None:
    parsers = Parsers()

    def html(r: Response) -> Selector:
        return Selector(text="")

    def xml(r: Response) -> Selector:
        return Selector(text="")

    def text(r: Response) -> Selector:
        return Selector(text="")

    assert parsers.add("text/html", html) and parsers.add("+xml", xml)
    assert parsers.add("text/*", text)
    assert not parsers.add("text/html", xml)  # the first registration wins
    assert parsers.for_type("text/html") is html
    assert parsers.for_type("application/atom+xml") is xml
    assert parsers.for_type("text/csv") is text
    assert parsers.for_type("image/png") is None


def test_request_callbacks_are_stored_by_name() -> None:
    class Shop(Spider):
        name = "shop"

        def parse_item(self, response: Response) -> None:
            return None

    request = Request("http://shop.example/", callback=Shop().parse_item)
    assert request.callback == "parse_item"
    with pytest.raises(TypeError, match="spider method or its name"):
        Request("http://shop.example/", callback=lambda r: None)
    assert request.replace(priority=5).priority == 5 and request.priority == 0


def test_fingerprint_ignores_fragment_and_query_order_but_not_method_or_body() -> None:
    base = fingerprint(Request("http://shop.example/p?a=1&b=2"))
    assert fingerprint(Request("http://shop.example/p?b=2&a=1#reviews")) == base
    assert fingerprint(Request("http://shop.example/p?a=1&b=2", method="POST")) != base
    assert fingerprint(
        Request("http://shop.example/p?a=1&b=2", method="POST", body=b"x")
    ) != fingerprint(Request("http://shop.example/p?a=1&b=2", method="POST", body=b"y"))


async def test_gbk_page_through_a_crawl(tmp_path: Path, serve: Serve) -> None:
    async def gbk(request: web.Request) -> web.Response:
        return web.Response(body=GBK_PAGE.encode("gbk"), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", gbk)
    base = await serve(app)
    (tmp_path / "titles.py").write_text(
        "from framework import Spider, hookimpl\n\n"
        "class Titles(Spider):\n    name = 'titles'\n\n"
        "    async def parse(self, response):\n"
        "        yield {'title': response.css('title::text').get(),\n"
        "               'h1': response.xpath('//h1/text()').get()}\n\n"
        "@hookimpl\ndef register_spiders(register):\n    register(Titles)\n",
        encoding="utf-8",
    )
    project = write_project(
        tmp_path,
        f"""
        spider: titles
        start_urls: [{base}/]
        plugins: [./titles.py]
        exporters: [{{path: out/t.jsonl}}]
        """,
    )
    await crawl(project)
    assert read_jsonl(tmp_path / "out/t.jsonl") == [{"title": "即将上映", "h1": "北京影讯"}]


LINK_CHARS = "ab/.:?#;=%@ "


@settings(max_examples=3000, deadline=None)
@given(
    base=st.sampled_from(
        [
            "http://a.test/x/y.html",
            "https://u@b.test:8443/",
            "http://c.test",
            "http://d.test/x/?q=1#f",
        ]
    ),
    prefix=st.sampled_from(["/", "//", "http://", "https://", "", "./", "../", "?", "#"]),
    rest=st.text(alphabet=LINK_CHARS, max_size=16),
)
def test_urljoin_agrees_with_the_standard_library(base: str, prefix: str, rest: str) -> None:
    page = Response(base, 200, {}, b"", Request(base), parse_html)
    link = (prefix + rest).partition("#")[0].strip()  # a fragment is never sent
    try:
        expected = urldefrag(urljoin(base, link))[0]
    except ValueError:
        expected = link  # too broken to join: returned as written
    assert page.urljoin(prefix + rest) == expected


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        # HTTP says UTF-8, so the contradicting <meta> is ignored, as browsers do.
        ('<meta charset="gbk"><title>北京</title>'.encode(), "text/html; charset=utf-8"),
        (codecs.BOM_UTF8 + "<title>北京</title>".encode(), "text/html"),
        ('<meta charset="gbk"><title>北京</title>'.encode("gbk"), "text/html"),
    ],
)
def test_the_parser_reads_the_encoding_fw_chose(body: bytes, content_type: str) -> None:
    page = response(body, content_type)
    assert page.css("title::text").get() == "北京"
    assert page.text.endswith("<title>北京</title>")


def test_follow_all_reads_links_as_strings_and_skips_the_page_itself() -> None:
    page = response(
        b'<a href="a.html#x">a</a><a href="#top">top</a><a href="/b">b</a><img src="i.png">'
        b'<a name="no-link">none</a>',
        url="http://a.test/",
    )
    assert [r.url for r in page.follow_all()] == ["http://a.test/a.html", "http://a.test/b"]
    assert [r.url for r in page.follow_all(css="img")] == ["http://a.test/i.png"]
    assert [r.url for r in page.follow_all(xpath="//a/@href")] == [
        "http://a.test/a.html",
        "http://a.test/b",
    ]
    selected = page.follow_all(page.css("a"), callback="parse_item", meta={"n": 1})
    assert [r.url for r in selected][:1] == ["http://a.test/a.html"]
    assert selected[0].meta == {"n": 1} and selected[0].meta is not selected[1].meta
    assert selected[0].callback == "parse_item"


def test_a_request_holds_its_url_without_the_fragment() -> None:
    assert Request("http://a.test/p.html#section").url == "http://a.test/p.html"


def test_render_is_read_from_the_argument_or_meta_and_kept_by_copies() -> None:
    assert Request("http://a.test/").render is None
    assert Request("http://a.test/", meta={"render": True}).render is True
    assert Request("http://a.test/", render=False, meta={"render": True}).render is False
    copied = Request.from_dict(Request("http://a.test/", render=True).to_dict())
    assert copied.render is True
    assert copied.replace(url="http://a.test/b").render is True


@pytest.mark.parametrize("render", ["false", 1, "yes"])
def test_a_render_that_is_not_a_bool_is_refused_by_name(render: object) -> None:
    with pytest.raises(ValueError, match=r"render=...\) must be True, False or None"):
        Request("http://a.test/", meta={"render": render})
