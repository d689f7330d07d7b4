"""The request a spider asks for and the response its callback receives.

The web's vocabulary, which every other package speaks: ``Request`` and ``Response``
here; ``urls`` (fetchable, on-site, canonical, fingerprinted), ``links`` (a page's links,
resolved fast), ``encoding`` (a body decoded as browsers do) and ``forms`` (a form
submitted as browsers do, encoded by ``formdata``) beside them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lxml import etree
from parsel import Selector, SelectorList
from w3lib.html import get_base_url

from framework.errors import FormError
from framework.http.encoding import decode, is_utf8, sniff
from framework.http.forms import SECRET_QUERY, Click, FormData, submission
from framework.http.links import Joiner, hrefs

__all__ = ["NotSupported", "Parser", "Request", "Response", "is_plugin_callback", "media_type"]

#: Turns a response into the document its ``css()``/``xpath()`` query (see ``hookspecs``).
Parser = Callable[["Response"], Selector]


def media_type(headers: Mapping[str, str]) -> str:
    """Return the Content-Type's media type without parameters, lower-cased (``text/html``)."""
    return headers.get("Content-Type", "").partition(";")[0].strip().lower()


class NotSupported(TypeError):
    """The response has no parser for its content type (an image, a PDF, ...)."""


class Request:
    """One URL to fetch, and what to do with the answer.

    A URL's fragment (``#section``) is never sent to a server, so a request holds the URL
    without it. ``callback`` and ``errback`` are the *names* of spider methods, so that a
    request can be stored as JSON by a persistent frontier; passing the bound method is
    accepted and turned into its name. ``meta`` travels to the response and must be
    JSON-serialisable for persistent frontiers. Higher ``priority`` is fetched first.
    ``proxy`` (``http://host:port``, credentials allowed) sends this request through that
    HTTP proxy, whatever the project's ``proxies:`` or the environment say; it is not part
    of the request's identity (dedup). ``render=True`` (or ``meta={"render": True}``) asks
    for the page as a headless browser renders it, ``render=False`` for the page as
    served; None leaves it to the project (``browser.render``); nor is it part of the
    fingerprint. ``depth``, ``retries`` and ``redirects`` are kept by the engine.
    """

    __slots__ = (
        "body",
        "callback",
        "depth",
        "dont_filter",
        "errback",
        "headers",
        "meta",
        "method",
        "priority",
        "proxy",
        "redirects",
        "render",
        "retries",
        "url",
    )

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        callback: object = None,
        errback: object = None,
        priority: int = 0,
        meta: dict[str, Any] | None = None,
        depth: int = 0,
        dont_filter: bool = False,
        retries: int = 0,
        redirects: int = 0,
        proxy: str | None = None,
        render: bool | None = None,
    ) -> None:
        if "#" in url:  # never sent: the page is the same with or without it
            url = url.partition("#")[0]
        self.url, self.headers, self.body = url, headers, body
        self.method = method if method == "GET" else method.upper()
        # Names pass straight through; only a method needs turning into its name.
        self.callback = (
            callback if callback is None or type(callback) is str else _method_name(callback)
        )
        self.errback = errback if errback is None else _method_name(errback)
        self.priority, self.meta, self.depth = priority, {} if meta is None else meta, depth
        self.dont_filter, self.retries, self.redirects = dont_filter, retries, redirects
        self.proxy = proxy
        # Scrapy users say it in meta; the field is what fw reads.
        if render is None and meta and meta.get("render") is not None:
            render = meta["render"]
        if render is not None and not isinstance(render, bool):  # "false" is no False
            raise ValueError(f"Request(render=...) must be True, False or None, not {render!r}")
        self.render = render

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dataclass with eq

    def replace(self, **changes: Any) -> Request:
        """Return a copy with ``changes`` applied (the engine treats requests as values)."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        return Request(**(fields | changes))

    def to_dict(self) -> dict[str, Any]:
        """Return the request as JSON-ready data (the body in base64); never pickle."""
        data = {name: getattr(self, name) for name in self.__slots__}
        data["headers"] = dict(self.headers) if self.headers is not None else None
        data["body"] = base64.b64encode(self.body).decode() if self.body is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Request:
        """Rebuild a request from ``to_dict()``'s data; unknown keys are an error."""
        fields = dict(data)
        if fields.get("body") is not None:
            fields["body"] = base64.b64decode(fields["body"])
        return cls(**fields)


def is_plugin_callback(name: str | None) -> bool:
    """Tell whether ``name`` names a plugin's callback (``plugin:name``) rather than a
    spider method."""
    return name is not None and ":" in name


def _method_name(callback: object) -> str | None:
    """Accept a spider method or its name; anything else could not be persisted."""
    if callback is None or isinstance(callback, str):
        return callback
    name = getattr(callback, "__name__", None)
    if getattr(callback, "__self__", None) is None or not name:
        raise TypeError(f"callback must be a spider method or its name, not {callback!r}")
    return str(name)


class Response:
    """What the server answered: status, headers, body, and ways to query and follow it."""

    __slots__ = (
        "_base_url",
        "_bom",
        "_encoding",
        "_links",
        "_parser",
        "_selector",
        "_text",
        "body",
        "cached",
        "headers",
        "latency",
        "request",
        "status",
        "url",
    )

    def __init__(
        self,
        url: str,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        request: Request,
        parser: Parser | None = None,
        *,
        cached: bool = False,
        latency: float | None = None,
    ) -> None:
        self.url, self.status, self.headers, self.body = url, status, headers, body
        self.request, self._parser = request, parser
        #: Answered without the network (from a cache or a recording): fw neither waits
        #: the host's delay for it nor learns the host's speed from it.
        self.cached = cached
        #: Seconds the host took to answer, set by a fetch layer that knows better than the
        #: time the whole fetch took (a rendered page: its document's, not the rendering);
        #: adaptive throttling learns the host's speed from it.
        self.latency = latency
        self._text: str | None = None
        self._encoding: str | None = None
        self._bom = 0
        self._selector: Selector | None = None
        self._base_url: str | None = None
        self._links: Joiner | None = None

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url}>"

    @property
    def meta(self) -> dict[str, Any]:
        """The ``meta`` of the request this answers."""
        return self.request.meta

    @property
    def media_type(self) -> str:
        """The content type without parameters, lower-cased (``text/html``)."""
        return media_type(self.headers)

    @property
    def text(self) -> str:
        """The body decoded: BOM, HTTP charset, ``<meta>`` charset, then detection."""
        if self._text is None:
            self._text = decode(self.body, self.encoding, self._bom)
        return self._text

    @property
    def encoding(self) -> str:
        """The encoding a browser would read the body with (see ``text``)."""
        if self._encoding is None:
            self._encoding, self._bom = sniff(self.body, self.headers.get("Content-Type"))
        return self._encoding

    @property
    def utf8_body(self) -> bytes | None:
        """The body without its BOM if it is UTF-8, for parsers that take bytes; else None."""
        return self.body[self._bom :] if is_utf8(self.encoding) else None

    def json(self) -> Any:
        """Parse the body as JSON."""
        return json.loads(self.text)

    def parse_with(self, parser: Parser | None) -> None:
        """Parse with ``parser`` unless a parser was given: fw gives a response a middleware
        made the parser registered for its media type, as it does a downloaded one."""
        if self._parser is None:
            self._parser = parser

    @property
    def parseable(self) -> bool:
        """Whether a parser is registered for this response's content type."""
        return self._parser is not None

    @property
    def selector(self) -> Selector:
        """The parsed document, built once by the parser registered for this content type."""
        if self._selector is None:
            if self._parser is None:
                raise NotSupported(f"{self.url}: no parser for {self.media_type or 'this body'}")
            self._selector = self._parser(self)
        return self._selector

    def css(self, query: str) -> SelectorList[Selector]:
        """Query the document with a CSS selector (parsel, with ``::text``/``::attr()``).

        A response fw does not parse (an image, a PDF) matches nothing.
        """
        if self._parser is None:
            return SelectorList()
        return self.selector.css(query)

    def xpath(self, query: str, **variables: Any) -> SelectorList[Selector]:
        """Query the document with XPath; an unparsed response matches nothing."""
        if self._parser is None:
            return SelectorList()
        return self.selector.xpath(query, **variables)

    @property
    def base_url(self) -> str:
        """The URL relative links resolve against: ``<base href>`` if the page has one."""
        if self._base_url is None:
            has_base = self._parser is not None and b"<base" in self.body[:4096].lower()
            self._base_url = get_base_url(self.text, self.url) if has_base else self.url
        return self._base_url

    def urljoin(self, url: str) -> str:
        """Resolve ``url`` against this page, as a browser would, less its fragment.

        A link too broken to resolve (``http://[::1``) comes back as written: the engine
        then drops it as ``invalid_url`` instead of the spider crashing on one bad href.
        """
        if self._links is None:
            self._links = Joiner(self.base_url)
        return self._links.join(url)

    def follow(
        self,
        href: str | Selector,
        callback: object = None,
        *,
        priority: int = 0,
        meta: dict[str, Any] | None = None,
        keep_fragment: bool = False,
        **kwargs: Any,
    ) -> Request:
        """Make a request for a link on this page; ``href`` may be a string or an ``<a>``.

        Links to other schemes (``mailto:``, ``javascript:``) are allowed here and dropped
        by the engine, so spiders need not filter them. The request has no fragment; with
        ``keep_fragment`` the link's fragment is in ``meta["fragment"]``.
        """
        if isinstance(href, Selector):
            href = _link_of(href)
        if keep_fragment:
            meta = {**(meta or {}), "fragment": href.partition("#")[2]}
        return Request(
            self.urljoin(href),
            callback=callback,
            priority=priority,
            meta={} if meta is None else meta,
            **kwargs,
        )

    def follow_all(
        self,
        urls: Iterable[str | Selector] | None = None,
        callback: object = None,
        *,
        css: str | None = None,
        xpath: str | None = None,
        priority: int = 0,
        meta: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Request]:
        """Make requests for many links of this page at once: those in ``urls``, or those a
        ``css`` or ``xpath`` query picks (default: every ``a[href]``).

        A query reads the links straight from the parsed page, as strings: much cheaper
        than a ``Selector`` per element. Links to the page itself (``#section``) are
        left out. Each request gets its own copy of ``meta``.
        """
        if urls is None:
            links = hrefs(self.selector.root, css=css, xpath=xpath) if self._parser else []
        else:
            links = [_link_of(url) if isinstance(url, Selector) else url for url in urls]
        return [
            Request(
                self.urljoin(link),
                callback=callback,
                priority=priority,
                meta={} if meta is None else dict(meta),
                **kwargs,
            )
            for link in links
            if not link.startswith("#")
        ]

    def form(
        self,
        *,
        css: str | None = None,
        xpath: str | None = None,
        index: int = 0,
        data: FormData | None = None,
        click: Click = True,
        callback: object = None,
        priority: int = 0,
        meta: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Request:
        """Return the request a browser sends when a form of this page is submitted.

        The form is the ``index``-th (default: the first) of those a ``css`` or ``xpath``
        query picks — forms, or elements inside them — or of the page's forms. It sends
        what the page set: hidden inputs (CSRF tokens), checked boxes, selected options,
        typed defaults. ``data`` changes that: a string or a list of strings replaces a
        field's values (or adds the field), None leaves it out. ``click`` is the submit
        button pressed: True, the form's first one; False, none; or a CSS query or an
        element picking one (its name and value are sent, its ``formaction``,
        ``formmethod`` and ``formenctype`` apply).

        A GET form puts the fields in the action's query; a POST one in the body,
        urlencoded, multipart or text/plain, with its Content-Type. ``Referer`` and, for
        POST, ``Origin`` are set as a browser sets them (CSRF checks read them);
        ``headers`` adds to or replaces them. Raises ``FormError``, naming this page's URL,
        when no form matches, ``index`` is out of range, or ``click`` picks no submit
        button of the form.
        """
        if self._parser is None or self.selector.type != "html":
            kind = self.media_type or "no content type"
            raise FormError(f"{self.url}: not an HTML page ({kind}), so it has no forms")
        sent = submission(
            self.selector, self, css=css, xpath=xpath, index=index, data=data, click=click
        )
        given = {name.lower() for name in headers or ()}
        merged = {name: value for name, value in sent.headers.items() if name.lower() not in given}
        meta = {} if meta is None else meta
        return Request(
            sent.url,
            method=sent.method,
            headers={**merged, **(headers or {})},
            body=sent.body,
            callback=callback,
            priority=priority,
            meta={**meta, SECRET_QUERY: list(sent.secret_query)} if sent.secret_query else meta,
            **kwargs,
        )


def _link_of(element: Selector) -> str:
    """Return an element's ``href`` (else ``src``), read from lxml without building ``attrib``."""
    root = element.root
    if isinstance(root, etree._Element):
        return root.get("href") or root.get("src") or ""
    return element.attrib.get("href") or element.attrib.get("src") or ""
