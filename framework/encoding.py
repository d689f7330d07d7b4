"""Decode response bodies the way browsers do.

Order: byte-order mark, then the HTTP ``charset``, then a ``<meta>`` or XML declaration,
then detection. w3lib implements the first three and the browser aliases (``gb2312`` is
decoded as ``gb18030``, ``latin-1`` as ``cp1252``); detection is ours.
"""

from __future__ import annotations

from charset_normalizer import from_bytes
from w3lib.encoding import html_to_unicode

__all__ = ["decode"]

# Detection on a whole 16 MiB page costs seconds; a prefix decides just as well.
_SNIFF_BYTES = 64 * 1024


def decode(body: bytes, content_type: str | None) -> tuple[str, str]:
    """Return ``(encoding, text)`` for ``body``; undecodable bytes become U+FFFD."""
    return html_to_unicode(content_type, body, auto_detect_fun=_detect)


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
