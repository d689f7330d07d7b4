"""Links resolved fast, exactly as urljoin resolves them (less the fragment)."""

from __future__ import annotations

from urllib.parse import urldefrag, urljoin

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framework.fetch.parsers import html_root
from framework.http import links
from framework.http.links import Joiner, hrefs

BASES = [
    "http://a.test/b/c/d.html",
    "https://a.test/b/c/",
    "http://a.test",
    "http://a.test/",
    "http://a.test:8080/x?y=1",
    "https://a.test/b/c/d.html?q=1#frag",
    "http://a.test/b;p/c",
    "mailto:x@y.z",
    "http://[::1]:81/a/b",
]
PIECES = [
    "a",
    "b.html",
    ".",
    "..",
    "/",
    "?",
    "#",
    "q=1",
    "//",
    ":",
    "%20",
    ";",
    "\\",
    " ",
    "http:",
    "https://h.test",
    "é",
    "~",
    "&",
]


@settings(max_examples=3000, deadline=None)
@given(base=st.sampled_from(BASES), pieces=st.lists(st.sampled_from(PIECES), max_size=7))
def test_a_link_joins_as_urljoin_joins_it_less_the_fragment(base: str, pieces: list[str]) -> None:
    href = "".join(pieces)
    link = href.partition("#")[0].strip()
    try:
        expected = urldefrag(urljoin(base, link))[0]
    except ValueError:
        expected = link
    joiner = Joiner(base)
    assert joiner.join(href) == expected
    assert joiner.join(href) == expected  # from the cache too


def test_the_usual_links_of_a_docs_page() -> None:
    joiner = Joiner("http://docs.test/3/library/functions.html")
    assert joiner.join("os.html#os.getcwd") == "http://docs.test/3/library/os.html"
    assert joiner.join("../reference/index.html") == "http://docs.test/3/reference/index.html"
    assert joiner.join("#abs") == "http://docs.test/3/library/functions.html"
    assert joiner.join("/3/x.html?a=1") == "http://docs.test/3/x.html?a=1"
    assert joiner.join("https://other.test/p") == "https://other.test/p"


def test_absolute_links_met_on_any_page_are_remembered_within_a_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(links, "_absolute", {})
    monkeypatch.setattr(links, "_ABSOLUTE_KEPT", 3)
    first, other = Joiner("http://a.test/x/"), Joiner("mailto:x@y.z")
    assert first.join("https://h.test/p#f") == "https://h.test/p"
    assert links._absolute == {"https://h.test/p": "https://h.test/p"}
    assert other.join("https://h.test/p") == "https://h.test/p"  # from any page
    for number in range(10):
        assert first.join(f"http://h.test/{number}") == f"http://h.test/{number}"
        assert len(links._absolute) <= 3
    dotted = "http://h.test/a/./b"
    assert first.join(dotted) == urljoin("http://a.test/x/", dotted)
    assert dotted not in links._absolute  # joined the careful way


def test_hrefs_come_as_strings_from_elements_attributes_and_text() -> None:
    root = html_root(
        b'<a href="a.html">a</a><a name="n">no link</a><img src="i.png"><a href="#top">t</a>',
        "http://x.test/",
    )
    assert hrefs(root) == ["a.html", "#top"]
    assert hrefs(root, css="img") == ["i.png"]
    assert hrefs(root, css="a::attr(href)") == ["a.html", "#top"]
    assert hrefs(root, xpath="//a/@href") == ["a.html", "#top"]
