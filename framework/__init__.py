"""fw: a plugin-based asynchronous web-crawling framework.

What plugin authors import: ``Spider``, ``Request``, ``Response``, ``hookimpl``, the base
classes ``Exporter``, ``Middleware``, ``ItemStep`` (with the ``ItemContext`` a step is
given) and ``FetchLayer`` (with its ``FetchContext``), the ``option`` helper for option
schemas, ``Recording`` (the folder ``--record`` writes, with ``Recorded`` and ``Entry``:
what it holds), ``open_new`` (a temporary file no planted link can redirect), ``beside``
(where an exporter keeps a hidden note of its file, ``.NAME.fw-KIND``),
``no_room`` (whether ``ulimit -f`` is why SQLite could not write a file), ``write_fully``
(a write that waits for room where a non-blocking descriptor takes none: a shell's socket),
``SECRET_QUERY`` (the meta key of a request whose query holds a password: fw shows and
records its URL without it), ``UNCREDENTIALED`` (the meta key of a request that goes
without the project's credentials) with ``crossed_origin`` and ``without_credentials``
for a plugin that follows redirects itself, the control-flow exceptions, and
``CrawlAborted``, which stops a crawl that cannot go on (exit 1).
"""

from __future__ import annotations

from framework.__about__ import __version__
from framework.config.schema import option
from framework.errors import (
    Blocked,
    CloseSpider,
    CrawlAborted,
    DropItem,
    FetchError,
    FormError,
    FwError,
    HttpError,
    IgnoreRequest,
    InvalidItem,
    Unchanged,
)
from framework.exporters import Exporter
from framework.fetch.credentials import UNCREDENTIALED, crossed_origin, without_credentials
from framework.fetch.layers import FetchContext, FetchLayer
from framework.fetch.recording import Entry, Recorded, Recording
from framework.hookspecs import hookimpl
from framework.http import NotSupported, Request, Response
from framework.http.forms import SECRET_QUERY
from framework.items import ItemContext, ItemStep
from framework.middleware import Handler, Middleware
from framework.output import write_fully
from framework.paths import beside, no_room, open_new
from framework.spider import Spider

__all__ = [
    "SECRET_QUERY",
    "UNCREDENTIALED",
    "Blocked",
    "CloseSpider",
    "CrawlAborted",
    "DropItem",
    "Entry",
    "Exporter",
    "FetchContext",
    "FetchError",
    "FetchLayer",
    "FormError",
    "FwError",
    "Handler",
    "HttpError",
    "IgnoreRequest",
    "InvalidItem",
    "ItemContext",
    "ItemStep",
    "Middleware",
    "NotSupported",
    "Recorded",
    "Recording",
    "Request",
    "Response",
    "Spider",
    "Unchanged",
    "__version__",
    "beside",
    "crossed_origin",
    "hookimpl",
    "no_room",
    "open_new",
    "option",
    "without_credentials",
    "write_fully",
]
