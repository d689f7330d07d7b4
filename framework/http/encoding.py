"""Decode response bodies the way browsers do.

Order: byte-order mark, then the HTTP ``charset``, then a ``<meta>`` or XML declaration,
then detection. w3lib implements the first three and the browser aliases (``gb2312`` is
decoded as ``gb18030``, ``latin-1`` as ``cp1252``); detection is ours.
"""

from __future__ import annotations

import codecs

from charset_normalizer import from_bytes
from w3lib.encoding import html_body_declared_encoding, http_content_type_encoding, read_bom

__all__ = ["decode", "is_utf8", "sniff"]

# Detection on a whole 16 MiB page costs seconds; a prefix decides just as well.
_SNIFF_BYTES = 64 * 1024


def sniff(body: bytes, content_type: str | None) -> tuple[str, int]:
    """Return the encoding a browser would read ``body`` with, and its BOM's length.

    Knowing the encoding does not need decoding: a UTF-8 page goes to the parser as bytes.
    """
    encoding, bom = read_bom(body)
    if encoding is not None and bom is not None:
        return encoding, len(bom)
    declared = http_content_type_encoding(content_type) or html_body_declared_encoding(body)
    if declared in ("utf-16", "utf-32"):  # declared without a BOM: big-endian, as w3lib has it
        declared += "-be"
    return declared or _detect(body) or "utf-8", 0


def decode(body: bytes, encoding: str, bom: int = 0) -> str:
    """Decode ``body`` (after its BOM); undecodable bytes become U+FFFD."""
    try:
        return body[bom:].decode(encoding, "replace")
    except LookupError:  # a charset Python does not know: UTF-8 is the likeliest truth
        return body[bom:].decode("utf-8", "replace")


def is_utf8(encoding: str) -> bool:
    """Tell whether ``encoding`` names UTF-8."""
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


def _detect(body: bytes) -> str | None:
    """Guess the encoding of a page that declares none: UTF-8 if it is valid UTF-8."""
    sample = body[:_SNIFF_BYTES]
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the prefix is still UTF-8.
        if exc.start < len(sample) - 3:
            best = from_bytes(sample).best()
            return best.encoding if best else None
    return "utf-8"
