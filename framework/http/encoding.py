"""Decode response bodies the way browsers do.

Order: byte-order mark, then the HTTP ``charset``, then a ``<meta>`` or XML declaration,
then detection. w3lib implements the first three and the browser aliases (``gb2312`` is
decoded as ``gb18030``, ``latin-1`` as ``cp1252``); detection is ours, and so is keeping
to the Encoding Standard's encodings: a label only Python knows (``idna``, ``base64``)
counts as no label.
"""

from __future__ import annotations

import codecs
import functools
import re

from charset_normalizer import from_bytes
from w3lib.encoding import (
    html_body_declared_encoding,
    http_content_type_encoding,
    read_bom,
    resolve_encoding,
)

__all__ = ["charset_name", "decode", "is_utf8", "sniff", "web_codec"]

# Detection on a whole 16 MiB page costs seconds; a prefix decides just as well.
_SNIFF_BYTES = 64 * 1024
#: Python codec names as the Encoding Standard spells them, for ``_charset_`` fields.
_WEB_NAMES = {
    "utf-8": "UTF-8",
    "gb18030": "gb18030",
    "gbk": "GBK",
    "big5": "Big5",
    "big5hkscs": "Big5",
    "cp950": "Big5",
    "shift_jis": "Shift_JIS",
    "cp932": "Shift_JIS",
    "euc_jp": "EUC-JP",
    "iso2022_jp": "ISO-2022-JP",
    "euc_kr": "EUC-KR",
    "cp949": "EUC-KR",
    "koi8-r": "KOI8-R",
    "koi8-u": "KOI8-U",
    "cp866": "IBM866",
    "mac-roman": "macintosh",
    "mac-cyrillic": "x-mac-cyrillic",
}
#: The Encoding Standard's other encodings, as Python names them.
_WEB_FAMILIES = re.compile(r"cp(?:125\d|874)|iso8859-\d+|utf-(?:16|32)(?:-[bl]e)?")


def sniff(body: bytes, content_type: str | None) -> tuple[str, int]:
    """Return the encoding a browser would read ``body`` with, and its BOM's length.

    Knowing the encoding does not need decoding: a UTF-8 page goes to the parser as bytes.
    """
    encoding, bom = read_bom(body)
    if encoding is not None and bom is not None:
        return encoding, len(bom)
    # A label no browser knows (``idna``, ``undefined``) is passed over, as browsers do.
    declared = web_codec(http_content_type_encoding(content_type)) or web_codec(
        html_body_declared_encoding(body)
    )
    if declared in ("utf-16", "utf-32"):  # declared without a BOM: big-endian, as w3lib has it
        declared += "-be"
    return declared or _detect(body) or "utf-8", 0


def decode(body: bytes, encoding: str, bom: int = 0) -> str:
    """Decode ``body`` (after its BOM); undecodable bytes become U+FFFD."""
    try:
        return body[bom:].decode(encoding, "replace")
    except (LookupError, UnicodeError):  # unknown, or no text codec: UTF-8 is likeliest
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


@functools.lru_cache(maxsize=256)  # asked for every page, of a handful of labels
def web_codec(label: str | None) -> str | None:
    """Return the Python codec of an encoding the web knows by ``label``; None for a label
    no browser knows, though Python may (``base64``, ``rot13``, ``cp037``)."""
    name = resolve_encoding(label) if label else None
    try:
        name = codecs.lookup(name).name if name else None
    except LookupError:
        return None
    if name == "gbk":  # w3lib 2.6 on; the Encoding Standard decodes GBK as gb18030
        name = "gb18030"
    return name if name is not None and _of_the_web(name) else None


def _of_the_web(name: str) -> bool:
    """Whether the Python codec ``name`` is one of the Encoding Standard's encodings."""
    return name in _WEB_NAMES or bool(_WEB_FAMILIES.fullmatch(name))


def charset_name(encoding: str) -> str:
    """Return the name a browser gives ``encoding`` (a Python codec) in a ``_charset_`` field."""
    name = codecs.lookup(encoding).name
    if name in _WEB_NAMES:
        return _WEB_NAMES[name]
    if re.fullmatch(r"cp(125\d|874)", name):
        return "windows-" + name[2:]
    if name.startswith("iso8859-"):
        return "ISO-8859-" + name[8:]
    return name
