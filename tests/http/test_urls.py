"""URLs: what is fetchable, what is the same page, which hosts are allowed."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from w3lib.url import canonicalize_url

from framework.http import Request
from framework.http.urls import (
    _CANONICAL,
    Offsite,
    canonical_url,
    fingerprint,
    header_url,
    host_of,
    redact,
    redact_all,
    site_of,
    split_host,
    unfetchable,
)

PATH_CHARS = "abcXYZ019-._~!$&'()*+,;=:@/%?#é .2"


@settings(max_examples=3000, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https", "HTTP"]),
    host=st.sampled_from(["a.test", "A.test", "127.0.0.1", "x-y.example", "b.test:8080"]),
    path=st.text(alphabet=PATH_CHARS, max_size=24),
)
def test_the_fast_path_agrees_with_w3lib(scheme: str, host: str, path: str) -> None:
    url = f"{scheme}://{host}/{path}"
    assert canonical_url(url) == canonicalize_url(url)


def test_the_fast_path_is_taken_for_ordinary_urls() -> None:
    assert _CANONICAL.match("http://127.0.0.1:8088/p/123.html")
    assert not _CANONICAL.match("http://a.test/p?b=1&a=2")  # queries are sorted by w3lib
    assert canonical_url("http://a.test/p?b=1&a=2#x") == "http://a.test/p?a=2&b=1"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://a.test/x", None),
        ("HTTP://A.TEST/", None),
        ("mailto:a@b.test", "scheme"),
        ("javascript:void(0)", "scheme"),
        ("ftp://a.test/", "scheme"),
        ("/relative", "scheme"),
        ("http://a.test:99999/", "invalid_url"),
        ("http://[::1/", "invalid_url"),
        ("http:///path", "invalid_url"),
        ("http://a.test/x\nINFO: forged", "invalid_url"),  # urllib would drop the line break
        ("http://a.test/x\ty", "invalid_url"),
        ("http://a.test/\x00", "invalid_url"),
        ("http://a.test/caf\udce9", "invalid_url"),  # a spider's undecoded byte: no URL
        ("http://a.test/café", None),
        # A blank in credentials: sent by aiohttp, yet redact() could not find them all.
        ("http://ada:pass word@a.test/", "invalid_url"),
        ("http://tok en@a.test/", "invalid_url"),
        ("http://a.test/a b?c d", None),  # in the path or query: percent-encoded when sent
    ],
)
def test_unfetchable(url: str, problem: str | None) -> None:
    assert unfetchable(url) == problem


def test_a_header_urls_bytes_that_are_not_utf8_are_percent_encoded() -> None:
    # aiohttp keeps such bytes as surrogate escapes, which no URL can be encoded with.
    raw = b" /caf\xe9/\xc3\xa9?q=\xff ".decode("utf-8", "surrogateescape")
    assert header_url(raw) == "/caf%E9/é?q=%FF"


def test_offsite_allows_subdomains_only_of_allowed_domains() -> None:
    offsite = Offsite(["douban.com", ".example.org"])
    assert offsite.allows("https://movie.douban.com/x") and offsite.allows("http://douban.com/")
    assert not offsite.allows("https://notdouban.com/") and offsite.allows("http://example.org")
    assert Offsite([]).allows("http://anything.test/")
    assert host_of("http://User@Host.Test:81/p") == "host.test" and host_of("http://[::1") == ""


def test_an_allowed_domain_with_a_port_allows_that_port_only() -> None:
    offsite = Offsite(["example.com:8080", "other.test"])
    assert offsite.allows("http://example.com:8080/x") and offsite.allows(
        "http://a.example.com:8080/"
    )
    assert not offsite.allows("http://example.com:9090/") and not offsite.allows(
        "http://example.com/"
    )
    assert offsite.allows("http://other.test:1234/")  # no port written: any port


def test_the_standard_web_ports_count_as_one() -> None:
    offsite = Offsite(["example.com:443"])
    assert offsite.allows("https://example.com/") and offsite.allows("http://example.com/a")
    assert offsite.allows("http://example.com:80/") and not offsite.allows(
        "https://example.com:8443/"
    )


def test_an_ipv6_host_is_one_host_however_written() -> None:
    assert host_of("http://[::1]:8080/p") == host_of("http://[0:0::1]/") == "::1"
    assert site_of("http://[::1]:8080/p") == "[::1]:8080" and site_of("https://[::1]/") == (
        "[::1]:443"
    )
    assert fingerprint(Request("http://[::1]:8080/p?b=1&a=2#x")) == fingerprint(
        Request("http://[::1]:8080/p?a=2&b=1")
    )


@pytest.mark.parametrize(
    ("entry", "split"),
    [
        ("Shop.Example", ("shop.example", None)),
        (".shop.example:8080", ("shop.example", 8080)),
        ("::1", ("::1", None)),
        ("[::1]", ("::1", None)),
        ("[0::1]:8080", ("::1", 8080)),
        ("[2001:DB8::1]:443", ("2001:db8::1", 443)),
        ("[fe80::1%25eth0]:80", ("fe80::1%25eth0", 80)),  # site_of a link-local URL
    ],
)
def test_split_host_reads_names_and_ipv6_addresses(entry: str, split: tuple[str, int]) -> None:
    assert split_host(entry) == split


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("https://a.test/", "not a host name"),
        ("[::1", "not a host name"),
        ("[::1]8080", "not a host name"),
        ("a.test:0", "a port is a number from 1 to 65535"),
        ("[::1]:70000", "a port is a number from 1 to 65535"),
        ("1:2:3", "not an IPv6 address"),
    ],
)
def test_split_host_says_what_is_wrong(entry: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        split_host(entry)


def test_offsite_reads_ipv6_entries_with_and_without_a_port() -> None:
    any_port, one_port = Offsite(["::1"]), Offsite(["[::1]:8080"])
    assert any_port.allows("http://[::1]:8080/") and any_port.allows("http://[0::1]:9/")
    assert one_port.allows("http://[::1]:8080/x") and not one_port.allows("http://[::1]:8081/")
    assert not any_port.allows("http://[::2]/") and not any_port.allows("http://127.0.0.1/")


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("http://ada:pw@h:1/x", "http://***@h:1/x"),
        ("https://a@b@h/", "https://***@h/"),
        ("redis://:pw@h:6379/0?prefix=fw:x:", "redis://***@h:6379/0?prefix=fw:x:"),
        # A password written with a raw # / or ? cuts the authority short: no port there.
        ("http://ada:pw#rest@h:1/x", "http://***@h:1/x"),
        ("http://ada:pw/rest?x@h/", "http://***@h/"),
        ("http://ada:pw", "http://ada:***"),  # an error that cut the URL at the "#"
        ("http://ada:x'secret@h:1/", "http://***@h:1/"),  # a quote, as userinfo may hold
        ("http://ada:2024!#secret@h/x", "http://***@h/x"),  # digits and "!", then a raw "#"
        ('http://ada:1"secret@h/x', "http://***@h/x"),
        ("http://ada:'#secret@h/x", "http://***@h/x"),
        ("http://ada:<secret>@h/x", "http://***@h/x"),
        # Nothing to hide: kept as written.
        ("http://h:8080/?mail=a@b.example", "http://h:8080/?mail=a@b.example"),
        ("http://[::1]:80/?a@b", "http://[::1]:80/?a@b"),
        ("http://h:/x", "http://h:/x"),
        ("mailto:ada@h", "mailto:ada@h"),
    ],
)
def test_redact_hides_a_password_however_it_was_written(written: str, shown: str) -> None:
    assert redact(written) == shown
    assert (
        redact_all(f"Error: '{written}' failed: {written} (x)")
        == f"Error: '{shown}' failed: {shown} (x)"
    )


def test_redact_all_finds_a_url_within_another_and_keeps_a_port_before_punctuation() -> None:
    assert redact_all("GET http://a.test/?u=http://ada:pw@b.test/,http://c:pw@d/") == (
        "GET http://a.test/?u=http://***@b.test/,http://***@d/"
    )
    assert redact_all("not fetched (http://127.0.0.1:8080), then") == (
        "not fetched (http://127.0.0.1:8080), then"
    )


def test_redact_all_reads_a_hostile_pages_words_in_one_pass() -> None:
    """A long run of scheme-like text once took minutes; the suite's timeout catches that."""
    words = "a." * 500_000 + "http://a:b/" * 50_000 + " http://ada:pw@h/"
    assert redact_all(words).endswith(" http://***@h/")
