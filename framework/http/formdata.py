"""Encode a form's entries the way browsers send them: urlencoded, multipart or plain text.

The three encodings of the HTML Living Standard's form submission. Text goes out in the
form's charset, and a character the charset lacks as an HTML character reference
(``&#9731;``), as browsers send it. Line breaks in names and values become CRLF.

A multipart boundary is made from the body it separates rather than drawn at random, so
the same form always gives the same request: fw's dedup and ``--replay`` compare bodies.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote_plus

from framework.http.encoding import web_codec

__all__ = [
    "Entry",
    "File",
    "multipart",
    "output_encoding",
    "text_plain",
    "urlencoded",
]


@dataclass(frozen=True)
class File:
    """A file input's value; with no file chosen a browser sends this empty one."""

    filename: str = ""
    content_type: str = "application/octet-stream"
    content: bytes = b""


#: One (name, value) of a form's entry list.
Entry = tuple[str, "str | File"]

_NEWLINE = re.compile(r"\r\n|\r|\n")
#: What urlencoding leaves as it is.
_KEPT = re.compile(r"[A-Za-z0-9*\-._]*")
#: What a name or file name cannot hold inside a quoted multipart header parameter.
_QUOTED_ESCAPES = str.maketrans({"\n": "%0A", "\r": "%0D", '"': "%22"})


def output_encoding(label: str | None) -> str:
    """Return the Python codec a form is sent in, given an encoding label (UTF-8 if unknown).

    Browsers never send a form in UTF-16 or UTF-32: such a page's forms go in UTF-8.
    """
    name = web_codec(label) or "utf-8"
    return "utf-8" if name.startswith(("utf-16", "utf-32")) else name


def urlencoded(entries: Sequence[Entry], encoding: str) -> str:
    """Serialise entries as ``application/x-www-form-urlencoded`` (also a GET form's query)."""
    return "&".join(
        f"{_quote(name, encoding)}={_quote(value, encoding)}" for name, value in _pairs(entries)
    )


def text_plain(entries: Sequence[Entry], encoding: str) -> bytes:
    """Serialise entries as ``text/plain``: one ``name=value`` line each."""
    text = "".join(f"{name}={value}\r\n" for name, value in _pairs(entries))
    return text.encode(encoding, "xmlcharrefreplace")


def multipart(entries: Sequence[Entry], encoding: str) -> tuple[bytes, str]:
    """Serialise entries as ``multipart/form-data``; return the body and its boundary."""
    parts = [_part(name, value, encoding) for name, value in entries]
    boundary = _boundary(parts)
    delimiter = b"--" + boundary.encode("ascii")
    body = b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts)
    return body + delimiter + b"--\r\n", boundary


def _pairs(entries: Sequence[Entry]) -> list[tuple[str, str]]:
    """Turn entries into name-value pairs: a file becomes its name, line breaks CRLF."""
    return [
        (
            _crlf(name),
            value.filename if isinstance(value, File) else _crlf(value),
        )
        for name, value in entries
    ]


def _crlf(text: str) -> str:
    return _NEWLINE.sub("\r\n", text) if "\r" in text or "\n" in text else text


def _quote(text: str, encoding: str) -> str:
    """Percent-encode as browsers do for forms: only ``*-._`` and alphanumerics kept."""
    if _KEPT.fullmatch(text):
        return text
    return quote_plus(text, safe="*", encoding=encoding, errors="xmlcharrefreplace").replace(
        "~", "%7E"
    )


def _part(name: str, value: str | File, encoding: str) -> bytes:
    """Return one part of a multipart body: its headers, a blank line, its content."""
    header = f'Content-Disposition: form-data; name="{_crlf(name).translate(_QUOTED_ESCAPES)}"'
    if isinstance(value, File):
        header += f'; filename="{value.filename.translate(_QUOTED_ESCAPES)}"'
        header += f"\r\nContent-Type: {value.content_type}"
        content = value.content
    else:
        content = _crlf(value).encode(encoding, "xmlcharrefreplace")
    return header.encode(encoding, "xmlcharrefreplace") + b"\r\n\r\n" + content


def _boundary(parts: Sequence[bytes]) -> str:
    """Make a boundary from the parts' digest, which none of them can contain."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    while True:
        boundary = "----fwFormBoundary" + digest.hexdigest()[:32]
        if not any(boundary.encode("ascii") in part for part in parts):
            return boundary
        digest.update(b"again")  # only a body built to contain its own digest gets here
