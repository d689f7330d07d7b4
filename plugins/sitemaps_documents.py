"""Read one sitemap document, bounded and safe against a hostile server.

A document is an XML ``<urlset>`` (pages) or ``<sitemapindex>`` (more sitemaps), or text
with one URL a line; any of them may be gzip-compressed. What the server sends is
trusted no more than a page:

- gzip is decompressed up to the crawl's ``max_response_size``, as a page's body is; past
  it the sitemap fails as ``too_large``;
- XML is parsed by lxml with no DTD: a document with a ``<!DOCTYPE>`` is refused (a
  sitemap has none), so no entity is ever declared or expanded (billion laughs, XXE);
  nothing is fetched from the network and lxml's huge-tree mode stays off. Tags are
  matched by their local name, whatever their namespace;
- a document gives at most 50,000 entries, the protocol's limit (a text one is read up
  to 50,000 lines); the rest is left out, and said so;
- a bare ``&``, which sitemaps often leave in a query, is read as ``&amp;``, chunk by chunk
  so that a document of them costs no more memory than any other.

What could be read before a document broke off (a cut gzip stream, broken XML, too many
entries) is kept, and ``Document.problem`` says what went wrong.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from lxml import etree

from framework import FetchError

__all__ = ["MAX_ENTRIES", "Document", "Entry", "period", "read"]

#: The most entries one document gives (the sitemaps protocol's limit).
MAX_ENTRIES = 50_000
#: A longer ``<loc>`` is left out: the protocol allows 2,048 characters, servers about 8 KiB.
_MAX_URL = 8192
_GZIP = b"\x1f\x8b"
#: Byte order marks, and the codec each says the body is in (UTF-32's first: it starts as
#: UTF-16's does).
_UTF8_MARK = b"\xef\xbb\xbf"
_MARKS = (
    (_UTF8_MARK, "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
#: The encoding an XML declaration names.
_DECLARED = re.compile(r"""(\A\s*<\?xml[^>]*?\bencoding\s*=\s*["'])[^"']*(["'])""")
_DECLARED_BYTES = re.compile(_DECLARED.pattern.encode())
_CHUNK = 1 << 16
#: Read this far, or this many tags, with no entry of the root ending, and the document is
#: cut there: what lxml holds of an entry grows with its tags (a <url> of 4 million empty
#: elements is 16 MiB, and 1.1 GB in lxml). An image sitemap's entry of 1,000 images, each
#: a 2 KiB URL with a caption, is ~3 MiB and ~10,000 tags.
_MAX_ENTRY = 64 * _CHUNK
_MAX_ENTRY_TAGS = 50_000
#: A ``&`` that starts no entity or character reference: sitemaps often leave the ``&`` of
#: a query unescaped, which strict XML refuses and lxml's recover mode silently drops.
_BARE_AMPERSAND = re.compile(rb"&(?!(?:[A-Za-z_][\w.-]*|#[0-9]+|#x[0-9A-Fa-f]+);)")
#: How far back from a chunk's end an entity or a CDATA marker may begin: held for the next.
_HOLD = 40
#: What text is left as written in, by the markers that open and end it.
_SECTIONS = ((b"<![CDATA[", b"]]>"), (b"<!--", b"-->"), (b"<?", b"?>"))
#: A reference may be longer (``&#`` and leading zeros); one past this is left unended.
_MAX_REFERENCE = 4096
_UNENDED = re.compile(rb"#?[\w.-]*")
#: What may come before the root element: an XML declaration, comments, instructions.
_PROLOG = re.compile(rb"(?:\s|<\?.*?\?>|<!--.*?-->)*", re.DOTALL)
#: The root element's start tag, and its local name (no namespace prefix).
_ROOT_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)")
_DOCTYPE = b"<!DOCTYPE"
_REFUSED = "refused: it has a <!DOCTYPE>, which no sitemap has"
_TEXT_URL = re.compile(r"https?://\S+\Z", re.IGNORECASE)
_LINE = re.compile(rb"[^\r\n]+")


@dataclass(frozen=True)
class Entry:
    """One ``<url>`` or ``<sitemap>`` of a document (or one line of a text sitemap)."""

    loc: str
    #: The ``<lastmod>`` as written, if any.
    lastmod: str | None = None


@dataclass
class Document:
    """What a sitemap lists, and what could not be read of it."""

    kind: Literal["urlset", "sitemapindex", "text"]
    entries: list[Entry] = field(default_factory=list)
    #: Entries left out as unusable: no ``<loc>``, a line that is no URL, a URL too long.
    unusable: int = 0
    #: Why part of the document could not be read (the entries before it were); or None.
    problem: str | None = None


def read(body: bytes, limit: int) -> Document:
    """Read a sitemap from its body, gzip-compressed or not, decompressed to ``limit`` bytes.

    Raise ``FetchError`` (``too_large``, or ``bad_sitemap`` when nothing at all can be read
    from it); a document read in part says why in ``problem``.
    """
    broken = None
    if body.startswith(_GZIP):
        body, broken = _gunzip(body, limit)
    start = _utf8(body).lstrip()
    if not start:
        raise FetchError("bad_sitemap", f"not a sitemap: {broken or 'the body is empty'}")
    if start.startswith(b"<"):
        document = _xml(start)
    else:  # the last line of a stream that broke off may be a URL cut short
        document = _text(start.rpartition(b"\n")[0] if broken else start)
    if broken:
        document.problem = broken
    return document


def _utf8(body: bytes) -> bytes:
    """Return ``body`` in UTF-8 without a byte order mark. The protocol asks for UTF-8;
    a server that wrote UTF-16 or UTF-32 says so with its mark, and is read all the same.
    The mark wins over the XML declaration, which then names UTF-8, as the text now is."""
    codec = next((codec for mark, codec in _MARKS if body.startswith(mark)), None)
    if codec is None:
        return body
    if codec == "utf-8":  # already UTF-8: a bad byte later is the XML reader's to find
        return _DECLARED_BYTES.sub(rb"\g<1>UTF-8\g<2>", body[len(_UTF8_MARK) :], count=1)
    # A bad unit (a body cut short) becomes U+FFFD: the entries before it are read.
    text = body.decode(codec, errors="replace").lstrip("\ufeff")
    return _DECLARED.sub(r"\g<1>UTF-8\g<2>", text, count=1).encode()


def _gunzip(body: bytes, limit: int) -> tuple[bytes, str | None]:
    """Decompress ``body``, never past ``limit`` bytes; say where the stream broke, if it did.

    Member after member, as gzip(1) reads them; bytes after the last that start no member
    (a newline a server added) are ignored, as gzip(1) ignores them. The input goes in
    pieces: what a member leaves unread is copied, and a body of many small members must
    not copy all of the rest for each one.
    """
    data, view, at, left = bytearray(), memoryview(body), 0, b""
    while True:
        inflater = zlib.decompressobj(wbits=31)  # a gzip member: header, deflate, trailer
        try:
            while not inflater.eof:
                feed: bytes | memoryview
                if inflater.unconsumed_tail:
                    feed = inflater.unconsumed_tail
                elif left:
                    feed, left = left, b""
                else:
                    feed, at = view[at : at + _CHUNK], at + _CHUNK
                chunk = inflater.decompress(feed, _CHUNK)
                data += chunk
                if len(data) > limit:
                    raise FetchError(
                        "too_large",
                        f"larger than max_response_size ({limit:,} bytes) once decompressed",
                    )
                if not feed and not chunk and not inflater.eof:  # nothing more to give it
                    return bytes(data), _broken(data, "it ends before its end")
        except zlib.error as exc:
            return bytes(data), _broken(data, str(exc))
        left = inflater.unused_data
        if not (left + view[at : at + len(_GZIP)]).startswith(_GZIP):
            return bytes(data), None


def _broken(data: bytearray, why: str) -> str:
    return f"its gzip stream breaks off after {len(data):,} bytes ({why})"


# -------------------------------------------------------------------------------------------
# XML: <urlset> and <sitemapindex>
# -------------------------------------------------------------------------------------------


def _xml(data: bytes) -> Document:
    document = _begin(_root(data))
    etree.clear_error_log()  # the thread's log: _cause reads this document's errors only
    # No DTD, no entity expanded, nothing fetched, no huge tree: see the module docstring.
    # Only the entries' ends are events: a Python call per element would cost 5 times more.
    parser = etree.XMLPullParser(
        events=("end",),
        tag="{*}url" if document.kind == "urlset" else "{*}sitemap",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )
    size = tags = 0  # read since an entry of the root last ended
    try:
        for chunk, element in _events(parser, data):
            if element is None:
                # An attribute is a node to lxml as an element is: count its = too.
                size, tags = size + len(chunk), tags + chunk.count(b"<") + chunk.count(b"=")
                if size > _MAX_ENTRY or tags > _MAX_ENTRY_TAGS:
                    document.problem = _too_long()
                    break
            elif _add(document, element):  # full
                break
            elif _of_root(element):
                size = tags = 0
    except etree.XMLSyntaxError as exc:
        document.problem = f"its XML breaks off: {_cause(exc)}"
    return document


def _root(data: bytes) -> str:
    """Return the local name of the root element, refusing a document type before it.

    Comments and processing instructions may come first, and may hold anything.
    """
    prolog = _PROLOG.match(data)
    start = prolog.end() if prolog else 0
    if data[start : start + len(_DOCTYPE)].upper() == _DOCTYPE:
        raise FetchError("bad_sitemap", _REFUSED)
    root = _ROOT_TAG.match(data, start)
    if root is None:
        raise FetchError("bad_sitemap", "not a sitemap: no XML element in it")
    return root.group(1).decode("ascii")


def _of_root(element: etree._Element) -> bool:
    """Whether ``element`` is an entry: a child of the root."""
    parent = element.getparent()
    return parent is not None and parent.getparent() is None


def _too_long() -> str:
    return (
        f"an entry runs on past {_MAX_ENTRY // 1024 // 1024} MiB or {_MAX_ENTRY_TAGS:,} tags "
        "without ending; the rest is left out"
    )


def _events(
    parser: etree.XMLPullParser, data: bytes
) -> Iterator[tuple[bytes, etree._Element | None]]:
    """Yield each chunk of ``data`` as it is fed to the parser (with None), then the elements
    whose end it read (with b""), those before an error included.

    A pull parser rather than ``iterparse``, which drops the events of the chunk that broke.
    """
    escape = _Ampersands()
    try:
        for offset in range(0, len(data), _CHUNK):
            chunk = escape(data[offset : offset + _CHUNK], last=offset + _CHUNK >= len(data))
            parser.feed(chunk)
            yield chunk, None
            yield from ((b"", element) for _, element in parser.read_events())
    except etree.XMLSyntaxError:
        yield from ((b"", element) for _, element in parser.read_events())
        raise
    parser.close()  # if it raises, the elements it would close were cut: not yielded
    yield from ((b"", element) for _, element in parser.read_events())


class _Ampersands:
    """Escape the bare ``&`` of a document chunk by chunk, but in CDATA sections (whose
    text is as written), comments and processing instructions (which may hold a CDATA
    marker that is none): a whole document at once costs a Python object per ``&``,
    1.5 GB for a 16 MiB document of them."""

    def __init__(self) -> None:
        self._held = b""  # the end of the last chunk, which may have begun an entity
        self._until: bytes | None = None  # the end of the section the text is in, if any

    def __call__(self, chunk: bytes, *, last: bool) -> bytes:
        data = self._held + chunk
        cut = len(data) if last else _cut(data)
        data, self._held = data[:cut], data[cut:]
        out, at = [], 0
        while at < len(data):
            if self._until is not None:  # as written, up to the section's end
                end = data.find(self._until, at)
                stop = len(data) if end < 0 else end + len(self._until)
                self._until = self._until if end < 0 else None
                out.append(data[at:stop])
            else:
                start, opener, self._until = _next_section(data, at)
                out.append(_BARE_AMPERSAND.sub(b"&amp;", data[at:start]) + opener)
                stop = start + len(opener)
            at = stop
        return b"".join(out)


def _next_section(data: bytes, at: int) -> tuple[int, bytes, bytes | None]:
    """Find the first section opening in ``data`` from ``at``: where, its opener and its
    end; (``len(data)``, b"", None) if none does."""
    found = [(data.find(opener, at), opener, end) for opener, end in _SECTIONS]
    return min(
        ((start, opener, end) for start, opener, end in found if start >= 0),
        default=(len(data), b"", None),
    )


def _cut(data: bytes) -> int:
    """Where to end a chunk so that no reference or section marker is split: before the
    first ``&``, ``<``, ``]``, ``-`` or ``?`` near its end, before the ``]]`` of a ``]]>``,
    the ``--`` of a ``-->`` or the start of a ``<!--`` just before it, and before a
    reference not ended yet."""
    tail = max(len(data) - _HOLD, 0)
    cut = min((at for at in (data.find(c, tail) for c in b"&<]-?") if at >= 0), default=len(data))
    for _ in range(2):
        if cut > 0 and data[cut - 1 : cut] in (b"]", b"-"):
            cut -= 1
    opens = data.rfind(b"<", max(cut - 8, 0), cut)  # "<!-" of a "<!--" the window began in
    if opens >= 0 and any(opener.startswith(data[opens:cut]) for opener, _ in _SECTIONS):
        cut = opens
    amp = data.rfind(b"&", max(len(data) - _MAX_REFERENCE, 0), cut)
    if amp >= 0 and _UNENDED.fullmatch(data, amp + 1, cut):  # &#0000…038; may be long
        cut = amp
    return cut


def _cause(error: etree.XMLSyntaxError) -> str:
    """Say what broke the XML: libxml2's first fatal error since ``_xml`` cleared the log
    (an undeclared prefix is an error that breaks nothing), more telling than lxml's. Not
    its last: chunks fed after the first error each add one ("Extra content")."""
    log = error.error_log or ()
    first = next((entry for entry in log if entry.level >= _FATAL), None) or next(
        (entry for entry in log if entry.level >= _ERROR), None
    )
    if first is None:
        return f"{error.msg} (line {error.lineno})"
    return f"{first.message} (line {first.line})"


_ERROR, _FATAL = etree.ErrorLevels.ERROR, etree.ErrorLevels.FATAL


def _begin(root: str) -> Document:
    """Start reading the document whose root element has this local name."""
    if root not in ("urlset", "sitemapindex"):
        raise FetchError(
            "bad_sitemap",
            f"not a sitemap: its root element is <{root}>, not <urlset> or <sitemapindex>",
        )
    return Document(root)  # type: ignore[arg-type]  # one of the two, checked above


def _add(document: Document, element: etree._Element) -> bool:
    """Keep an entry of the root, then free it; return whether the list is full."""
    root = element.getparent()
    if root is None:  # the root itself
        return False
    if root.getparent() is not None:  # nested deeper: no entry; emptied, its siblings kept
        element.clear(keep_tail=False)
        return False
    if not document.entries and not document.unusable and root.getroottree().docinfo.doctype:
        raise FetchError("bad_sitemap", _REFUSED)  # a second lock: _xml looked already
    entry = _entry(element)
    if entry is None:
        document.unusable += 1
    elif len(document.entries) < MAX_ENTRIES:
        document.entries.append(entry)
    else:
        document.problem = _too_many()
    element.clear(keep_tail=False)
    while element.getprevious() is not None:
        del root[0]  # entries already read: the parser would keep the whole tree otherwise
    return document.problem is not None


def _entry(element: etree._Element) -> Entry | None:
    loc = lastmod = None
    for child in element:
        name = _local(child)
        if name == "loc":
            loc = (child.text or "").strip()
        elif name == "lastmod":
            lastmod = (child.text or "").strip() or None
    if not loc or len(loc) > _MAX_URL:
        return None
    return Entry(loc, lastmod)


def _local(element: etree._Element) -> str:
    """Return an element's tag without its namespace; "" for what is not an element."""
    tag = element.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _too_many(what: str = "entries") -> str:
    return f"it has more than {MAX_ENTRIES:,} {what}, the protocol's limit; the rest is left out"


# -------------------------------------------------------------------------------------------
# Text: one URL a line
# -------------------------------------------------------------------------------------------


def _text(data: bytes) -> Document:
    document = Document("text")
    for line in _LINE.finditer(data):  # one at a time: a list of them all may be 30 times
        url = line.group().decode("utf-8", "replace").strip()  # the size of the body
        if not url:
            continue
        if len(document.entries) + document.unusable == MAX_ENTRIES:
            document.problem = _too_many("lines")
            break
        if not _TEXT_URL.match(url) or len(url) > _MAX_URL:
            document.unusable += 1
        else:
            document.entries.append(Entry(url))
    if not document.entries and document.unusable:
        raise FetchError("bad_sitemap", "not a sitemap: neither XML nor a list of URLs")
    return document


# -------------------------------------------------------------------------------------------
# <lastmod>: W3C datetimes
# -------------------------------------------------------------------------------------------

_DATE = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?\Z")


def period(text: str) -> tuple[datetime, datetime] | None:
    """Return the first and last moment (UTC) a W3C datetime may stand for; None if unreadable.

    ``2026-11`` stands for all of November, ``2026-11-01`` for that day (UTC), a time for
    itself; a time without a zone is taken as UTC.
    """
    text = text.strip()
    if found := _DATE.match(text):
        return _span(*found.groups())
    try:
        moment = datetime.fromisoformat(text)
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except ValueError:
        return None
    except OverflowError:  # 9999-12-31T23:59-23:59 is past the last moment Python knows
        return None
    return moment, moment


def _span(year: str, month: str | None, day: str | None) -> tuple[datetime, datetime] | None:
    try:
        start = datetime(int(year), int(month or 1), int(day or 1), tzinfo=UTC)
        if day:
            end = start + timedelta(days=1)
        elif month:
            end = (start + timedelta(days=32)).replace(day=1)
        else:
            end = start.replace(year=start.year + 1)
    except ValueError:  # 2026-13, or the year 10000
        return None
    except OverflowError:  # the end of 9999-12-31
        return start, datetime.max.replace(tzinfo=UTC)
    return start, end - timedelta(microseconds=1)
