"""The hooks fw calls on plugins: the whole contract between fw and a plugin.

A plugin is a module (or any object) with functions named after these hooks and marked
with ``@framework.hookimpl``. An implementation may accept any subset of a hook's
arguments, in any order: fw passes them by name.

Five kinds of hooks:

* **Registry hooks** run once at start-up, before the project is checked, in llm's callback
  style: the plugin calls ``register(...)`` for each thing it provides. When two plugins
  register the same name the first one called wins; plugins are called newest first, so a
  user's plugin overrides a bundled one (order them with ``tryfirst``/``trylast``); fw's
  bundled plugins load before other packages', which may so replace a bundled name. Two
  other packages registering one name get a warning naming both.
* **Start-up hooks** run once the project is checked and the spider built, before anything
  is fetched (``fw check`` runs them too, so that their mistakes show there).
* **The item pipeline hook** ``item_step`` runs once per crawl, once the project is
  checked and its spider built: each plugin returns the step items take on their way from
  the spider to the exporters, or None.
* **Decision hooks** run once when a project is checked, and answer a question about its
  crawl; fw combines every plugin's answer as the hook says.
* **Event hooks** run during a crawl. They may be ``async def``; fw awaits what they
  return. An exception from one plugin is reported with the plugin's name and the URL,
  counted as ``plugin_error``, and does not stop the crawl or the other plugins. One that
  has not returned after a minute or two is named in a warning, every minute while the
  crawl waits for it. A middleware object may implement event hooks too, as methods marked
  ``@hookimpl``: fw calls them for that middleware's own crawl, which is how a plugin
  keeps state per crawl.

An implementation is a ``def`` that returns (an event hook's may be ``async def``): a
generator is refused when the plugin loads, since calling it would run none of its body,
except for ``extra_start_requests``, whose answer fw iterates.

``firstresult`` and hook wrappers are not used by fw: anything that wraps a request is a
middleware (see ``register_middlewares``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from framework.config.project import Project
    from framework.crawl.stats import Stats
    from framework.exporters import Exporter
    from framework.fetch.layers import FetchLayer
    from framework.frontier import Memory
    from framework.http import Parser, Request, Response
    from framework.items import ItemStep
    from framework.middleware import Middleware
    from framework.spider import Spider

__all__ = ["API_VERSION", "hookimpl", "hookspec"]

#: The version of this contract. It goes up when a hook changes incompatibly; a plugin
#: declares what it was built for with a module attribute ``FW_API_VERSION = 1`` (or a
#: tuple of the versions it supports), and fw refuses to load it for any other.
API_VERSION = 1

hookspec = pluggy.HookspecMarker("fw")
hookimpl = pluggy.HookimplMarker("fw")


# -------------------------------------------------------------------------------------------
# Registry hooks: called once at start-up
# -------------------------------------------------------------------------------------------


@hookspec
def register_spiders(register: Callable[[type[Spider]], None]) -> None:
    """Register the spiders this plugin provides.

    Called once when fw starts, before the project file's ``spider:`` is looked up. A
    spider is selected by its class attribute ``name``. Not async.

    :param register: Call ``register(SpiderClass)`` once per spider class.
    :returns: Nothing; fw ignores the return value. What the plugin provides is what it
        passes to ``register``.
    """


@hookspec
def register_exporters(register: Callable[[type[Exporter]], None]) -> None:
    """Register exporters: where items can be written.

    Called once at start-up. An exporter is chosen by its ``format`` (``format: jsonl``
    in the project file) or by a file extension in its ``extensions`` (``-o out.jsonl``).
    Not async.

    :param register: Call ``register(ExporterClass)`` once per exporter class.
    :returns: Nothing; fw ignores the return value. What the plugin provides is what it
        passes to ``register``.
    """


@hookspec
def register_parsers(register: Callable[[str, Parser], None]) -> None:
    """Register parsers: what turns a response body into the document spiders query.

    Called once at start-up. ``response.css()`` and ``.xpath()`` use the parser registered
    for the response's media type; a response with no parser (an image, a PDF) is not
    parsed. Media types match exactly (``text/html``), by structured suffix (``+xml``)
    or by top-level type (``text/*``); the empty string stands for a missing
    Content-Type. fw's own HTML, XML and JSON parsers are registered ``trylast``, so a
    plugin's parser replaces them. Not async.

    :param register: Call ``register(media_type, parser)``; ``parser(response)`` returns
        a ``parsel.Selector``.
    :returns: Nothing; fw ignores the return value. What the plugin provides is what it
        passes to ``register``.
    """


@hookspec
def register_middlewares(register: Callable[[type[Middleware]], None]) -> None:
    """Register middlewares: wrappers around every fetch, aiohttp style.

    Called once at start-up; each registered class is instantiated once per crawl with
    the options of its own section of the project file. A middleware's
    ``async __call__(request, handler)`` may change the request, answer it without
    fetching, inspect or replace the response, or raise ``IgnoreRequest`` (drop the
    request) or ``Unchanged`` (the page is as it was: no callback, its earlier links
    followed). Its methods marked ``@hookimpl`` are event hooks for its own crawl. The
    first middleware registered is the outermost. A middleware reports what it counted
    with ``stats()`` (JSON-ready data: ``plugins.<name>`` in ``--stats``) and
    ``summary()`` (lines for the end-of-crawl summary), both read when the crawl ends; it
    stops the crawl, exit 1, by raising ``CrawlAborted`` (e.g. no proxy left to fetch
    through). Not async.

    :param register: Call ``register(MiddlewareClass)`` once per middleware class.
    :returns: Nothing; fw ignores the return value. What the plugin provides is what it
        passes to ``register``.
    """


@hookspec
def register_callbacks(register: Callable[..., None]) -> None:
    """Register callbacks for the requests this plugin makes itself.

    Called once at start-up. A request names a spider method as its ``callback`` or
    ``errback``; it names a plugin's callback by the name registered here, which has a
    colon (``sitemaps:sitemap``) so that it is never a spider method's. fw calls it where
    it would call a spider's callback (with the response) or errback (with the request
    and the error), passing by name whichever of ``response``, ``request``, ``error``,
    ``spider`` and ``project`` it takes. Like a spider's callback it returns or yields
    items and requests, may be a generator or ``async def``, and may raise ``FetchError``
    to count the page as failed by that kind; an exception is counted as ``plugin_error``.
    Unlike a spider's, the requests it yields keep the depth they were made with (0 unless
    given): a plugin that seeds pages decides how deep they count. Registering is not async.

    :param register: Call ``register(name, function)`` once per callback;
        ``register(name, function, allowed_status={404})`` also hands responses with those
        HTTP statuses to it instead of counting them as failures, as a spider's
        ``allowed_status`` does.
    :returns: Nothing; fw ignores the return value. What the plugin provides is what it
        passes to ``register``.
    """


@hookspec
def register_fetch_layers(register: Callable[[type[FetchLayer]], None]) -> None:
    """Register fetch layers: plugins that fetch some requests themselves.

    Called once at start-up; each registered class is instantiated once per crawl with
    the options of its own section of the project file, opened when the crawl opens its
    fetcher and closed with it. A layer sits below the middlewares and above fw's
    downloader, inside ``--record`` and ``--replay``, so robots.txt, politeness, retries,
    ``max_pages`` and the failures file treat what it fetches like any request, and a
    recording replays its answers. Its ``fetch(request)`` answers a request (fw's
    ``browser`` plugin renders pages in headless Chromium) or passes it to the layer
    below; ``open(context)`` hands it that layer, the crawl's cookie jar and the
    project. A middleware cannot do this: it is not opened or closed, sees no cookie
    jar, and sits outside the recorder. The first layer registered is the outermost.
    Not async.

    :param register: Call ``register(FetchLayerClass)`` once per ``framework.FetchLayer``
        subclass.
    :returns: Nothing; fw ignores the return value. What the plugin provides is what it
        passes to ``register``.
    """


@hookspec
def register_flags(register: Callable[[str, str, str], None]) -> None:
    """Register ``fw run`` flags, each standing for a ``-s`` override.

    Called once when ``fw`` reads its command line, for the plugins found through the
    ``fw`` entry points (a project's ``plugins:`` are loaded later, too late to add
    flags). A flag's override comes before the ``-s`` ones, which can change it. Not async.

    :param register: Call ``register(flag, override, help)``: ``flag`` is a long option
        fw does not use itself (``--incremental``), ``override`` a ``KEY=VALUE`` as ``-s``
        takes it (``incremental.enabled=true``), ``help`` one line for ``fw run --help``.
    :returns: Nothing; fw ignores the return value. What the plugin provides is what it
        passes to ``register``.
    """


# -------------------------------------------------------------------------------------------
# Start-up hooks: called once the project is checked and the spider built
# -------------------------------------------------------------------------------------------


@hookspec
def extra_start_requests(project: Project, spider: Spider) -> Iterable[Request] | None:
    """Add requests to the start of the crawl, beside the spider's own start requests.

    Called once by ``fw check`` and once by ``fw run``, before anything is fetched. Not
    async: return the requests, quickly. They are queued before the spider's start
    requests, and a project whose plugins add some needs no ``start_urls``. With
    ``--retry-failed`` the crawl starts from its failures alone and these are not queued.
    To report a mistake in the plugin's section at its line, raise
    ``project.error_source.error((section, key), "what is wrong")``; any other exception
    stops fw, naming the plugin.

    :param project: The validated project; ``project.section(name)`` gives a plugin its
        own section (see ``crawl_started``).
    :param spider: The spider the crawl will run.
    :returns: The requests to add (a list or any iterable of ``Request``), or None.
    """


# -------------------------------------------------------------------------------------------
# Item pipeline: called once per crawl, before it starts
# -------------------------------------------------------------------------------------------


@hookspec
def item_step(project: Project, spider: Spider) -> ItemStep | None:
    """Return this plugin's step of the item pipeline for this crawl, or None.

    Called once per crawl (and by ``fw check``), after the project is checked and the
    spider built, before the exporters open. Not async. Each item a callback yields goes
    through the steps in the order pluggy calls this hook (newest plugin first;
    ``tryfirst``/``trylast`` move one), then through ``item_scraped``, then to the
    exporters. The bundled ``schema`` step is ``tryfirst`` (it validates what the spider
    yielded) and ``files`` is ``trylast`` (it downloads what the item holds last).

    A step (``framework.ItemStep``) may await, transform the item, or reject it with a
    reason (``InvalidItem``: counted ``item_invalid``); ``context.fetch(request)`` downloads
    through the crawl's own scheduling, politeness and retries, and ``context.report``
    counts a failure that does not reject the item. The item's page is
    acknowledged only once every step is done with it, so a crawl killed meanwhile gives
    the page back to a persistent frontier and loses no item. ``columns()`` tells the
    exporters the item's fields up front. An exception raised here stops the crawl before
    it starts, naming the plugin (exit 2).

    :param project: The validated project; ``project.section(name)`` gives a plugin its
        own options (None when the section is left out and some key has no default).
    :param spider: The spider instance of this crawl (its ``Item`` type, its options).
    :returns: An ``ItemStep`` instance, or None to take no part in this crawl.
    """


# -------------------------------------------------------------------------------------------
# Decision hooks: called once when a project is checked
# -------------------------------------------------------------------------------------------


@hookspec
def renew_finished_crawl(project: Project) -> bool | None:
    """Say whether a finished crawl starts a new round when it is run again.

    Called once when a project is checked (``fw check``, ``fw run``), its plugins' options
    validated. When any plugin answers True and a persistent frontier finds its crawl
    finished, a new round starts: the frontier forgets every request it has seen and
    settled (dedup starts over), the exports and the failures file start over, the
    spider's start requests are queued again, and the crawl's memory (``crawl_started``)
    is kept. Otherwise a finished crawl says so and does nothing; ``--retry-failed``
    never renews. Not async.

    :param project: The validated project; ``project.section(name)`` gives a plugin its
        options.
    :returns: True to renew a finished crawl; False or None leaves the choice to other
        plugins. Raise ``ValueError`` to refuse the project: its message is reported as
        an error at the plugin's section of the project file, and fw exits 2.
    """


# -------------------------------------------------------------------------------------------
# Event hooks: called during a crawl; may be ``async def``
# -------------------------------------------------------------------------------------------


@hookspec
def crawl_started(project: Project, spider: Spider, memory: Memory) -> Awaitable[None] | None:
    """Be told a crawl is starting.

    Called once, after the exporters are open and before the first request is scheduled.
    May be async.

    :param project: The validated project; ``project.section(name)`` gives a plugin its
        own options: the built ``Options`` object when the plugin module declares one,
        or None when the section is left out and some key of it has no default (a
        plugin not used by this crawl need not be configured).
    :param spider: The spider instance that will parse the pages.
    :param memory: What the crawl remembers about each page from one round to the next,
        kept by a persistent frontier (a memory frontier remembers nothing):
        ``await memory.get(request)`` returns the text earlier rounds left for the
        request (by fingerprint: method, canonical URL, body), or None;
        ``await memory.put(request, text_or_None)`` keeps text for the next rounds.
        During a round ``get`` answers what the rounds before it left, never what this
        round put: so a page fetched again after a crash is compared with the last
        finished round, and a value may be put before the page is settled.
    :returns: None, or the awaitable an ``async def`` implementation returns, which fw
        awaits; any other value is ignored.
    """


@hookspec
def request_scheduled(request: Request, spider: Spider) -> Awaitable[None] | None:
    """Be told a new request entered the frontier.

    Called for each request that passed the scheme, offsite, depth and duplicate checks,
    including start requests and redirects, but not retries. May be async; keep it cheap,
    it runs for every link.

    :param request: The request as queued; do not modify it.
    :param spider: The running spider.
    :returns: None, or the awaitable an ``async def`` implementation returns, which fw
        awaits; any other value is ignored.
    """


@hookspec
def response_received(response: Response, spider: Spider) -> Awaitable[None] | None:
    """Be told a response arrived, before redirects and status checks.

    Called for every response, including redirects and error statuses (but not for
    connection errors or timeouts, which reach ``crawl_error``). May be async.

    :param response: The response; reading ``.text`` or ``.css()`` here is allowed.
    :param spider: The running spider.
    :returns: None, or the awaitable an ``async def`` implementation returns, which fw
        awaits; any other value is ignored.
    """


@hookspec
def page_parsed(
    request: Request, response: Response, requests: Sequence[Request], spider: Spider
) -> Awaitable[None] | None:
    """Be told what a page led to: the requests its callback yielded.

    Called once per response whose callback ran to its end and reported no problem
    (``crawl_error`` reports those, and ``CloseSpider`` ends it), after its items passed
    ``item_scraped`` and before the page is settled; not when ``max_items`` cut its items
    off, nor for an errback, nor for a page a middleware found ``Unchanged``. May be async.

    :param request: The request as the frontier handed it out, before the middlewares
        changed it (``response.request`` is the one they fetched).
    :param response: The response the callback parsed.
    :param requests: Every request it yielded, in order, before the scheme, offsite,
        depth and duplicate checks; do not modify them.
    :param spider: The running spider.
    :returns: None, or the awaitable an ``async def`` implementation returns, which fw
        awaits; any other value is ignored.
    """


@hookspec
def item_scraped(
    item: dict[str, Any], response: Response | None, spider: Spider
) -> Awaitable[None] | None:
    """Inspect, enrich or drop an item before it is exported.

    Called for each item a callback yields, in plugin order, once it has been through the
    item steps (``item_step``) and before any exporter sees it. Modify ``item`` in place
    to change what is exported; raise ``DropItem`` to keep it out of the exports
    (counted, not an error), or ``InvalidItem`` to reject it as an ``item_invalid``
    failure. May be async.

    :param item: The item as a dict.
    :param response: The response whose callback produced the item (None for an item
        from an errback).
    :param spider: The running spider.
    :returns: None, or the awaitable an ``async def`` implementation returns, which fw
        awaits; any other value is ignored: change the item in place, or raise
        ``DropItem``, to change what is exported.
    """


@hookspec
def crawl_error(
    error: BaseException, kind: str, request: Request | None, spider: Spider
) -> Awaitable[None] | None:
    """Be told something failed: a request after its last retry, a callback, a plugin.

    Called once per counted failure, after it has been logged. May be async. An
    exception raised here is logged and counted as one ``plugin_error`` (a failure of the
    plugin's own), but not handed to ``crawl_error`` again, which could loop.
    Read or format the error's traceback during the call: once every hook has returned,
    fw drops it, because its frames hold the page in memory until a rare collection.

    :param error: The exception (``FetchError``/``HttpError`` for failed requests).
    :param kind: The failure's name in the stats, e.g. ``timeout``, ``http_404``,
        ``spider_error``, ``plugin_error``, ``blocked``.
    :param request: The request being handled, or None if the failure had none.
    :param spider: The running spider.
    :returns: None, or the awaitable an ``async def`` implementation returns, which fw
        awaits; any other value is ignored.
    """


@hookspec
def crawl_finished(project: Project, spider: Spider, stats: Stats) -> Awaitable[None] | None:
    """Be told the crawl is over, however it ended.

    Called once after the last request, before the exporters are closed, also when the
    crawl was interrupted or aborted (``stats.reason`` says which). May be async.

    :param project: The validated project.
    :param spider: The spider that ran.
    :param stats: The final counts: pages, items, errors by kind, elapsed time.
    :returns: None, or the awaitable an ``async def`` implementation returns, which fw
        awaits; any other value is ignored.
    """
