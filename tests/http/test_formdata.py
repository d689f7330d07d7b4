"""The three form encodings, byte for byte, and the names of charsets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from framework.http.encoding import charset_name
from framework.http.formdata import (
    File,
    multipart,
    output_encoding,
    text_plain,
    urlencoded,
)


def test_multipart_is_written_as_browsers_write_it() -> None:
    body, boundary = multipart(
        [("a", "1\n2"), ('x"y\rz', "é"), ("f", File()), ("g", File("r.txt", "text/plain", b"hi"))],
        "utf-8",
    )
    assert boundary.startswith("----fwFormBoundary")
    assert (
        body
        == (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="a"\r\n\r\n'
            "1\r\n2\r\n"
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="x%22y%0D%0Az"\r\n\r\n'
            "é\r\n"
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="f"; filename=""\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
            "\r\n"
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="g"; filename="r.txt"\r\n'
            "Content-Type: text/plain\r\n\r\n"
            "hi\r\n"
            f"--{boundary}--\r\n"
        ).encode()
    )


def test_an_empty_multipart_body_is_its_closing_delimiter() -> None:
    body, boundary = multipart([], "utf-8")
    assert body == f"--{boundary}--\r\n".encode()


@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=200)), max_size=5))
def test_the_boundary_never_occurs_in_the_parts_and_depends_only_on_them(
    entries: list[tuple[str, str]],
) -> None:
    body, boundary = multipart(list(entries), "utf-8")
    assert body.count(boundary.encode()) == len(entries) + 1
    assert multipart(list(entries), "utf-8") == (body, boundary)


def test_urlencoded_and_text_plain_use_the_charset_and_character_references() -> None:
    entries = [("név", "Zürich ☃"), ("f", File("a b.txt")), ("nl", "a\rb\nc\r\nd")]
    assert urlencoded(entries, "cp1252") == (
        "n%E9v=Z%FCrich+%26%239731%3B&f=a+b.txt&nl=a%0D%0Ab%0D%0Ac%0D%0Ad"
    )
    assert text_plain(entries, "cp1252") == (
        b"n\xe9v=Z\xfcrich &#9731;\r\nf=a b.txt\r\nnl=a\r\nb\r\nc\r\nd\r\n"
    )


@pytest.mark.parametrize(
    ("label", "codec", "name"),
    [
        ("UTF-8", "utf-8", "UTF-8"),
        ("latin1", "cp1252", "windows-1252"),
        ("ISO-8859-2", "iso8859-2", "ISO-8859-2"),
        ("gb2312", "gb18030", "gb18030"),
        ("GBK", "gb18030", "gb18030"),  # whichever w3lib: 2.6 says gbk
        ("shift_jis", "cp932", "Shift_JIS"),
        ("euc-kr", "cp949", "EUC-KR"),
        ("koi8-r", "koi8-r", "KOI8-R"),
        ("utf-16le", "utf-8", "UTF-8"),
        ("no-such-charset", "utf-8", "UTF-8"),
        (None, "utf-8", "UTF-8"),
    ],
)
def test_output_encodings_and_their_names(label: str | None, codec: str, name: str) -> None:
    assert output_encoding(label) == codec
    assert charset_name(codec) == name
