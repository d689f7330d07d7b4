"""Load a project file into frozen objects: what to crawl, how fast, and where items go.

Only the core keys are checked here. Keys that name a plugin (``douban: {...}``) are kept
as raw sections and checked by ``components.assemble`` once the plugins are loaded,
because only then is it known which names exist.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import yaml

from framework.config.schema import build, check_key_names, keys_of, option, show, strings
from framework.config.yamlfile import (
    MAX_DEPTH,
    EnvText,
    KeyPath,
    Overrun,
    Source,
    format_key,
    load,
    parse,
    resolve_env,
    shorten,
)
from framework.errors import ErrorList, ProjectError, ProjectErrors, UsageError, check_all
from framework.http.urls import (
    Offsite,
    blank_in_credentials,
    host_of,
    redact,
    site_of,
    split_host,
    unfetchable,
)

__all__ = [
    "Backoff",
    "Concurrency",
    "DomainPolicy",
    "ExporterSpec",
    "Override",
    "Project",
    "Throttle",
    "load_project",
    "load_project_without",
    "parse_override",
]

MiB = 1024 * 1024


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


def _http_url(url: str) -> str:
    problem = unfetchable(url)
    if problem and blank_in_credentials(url):  # not quoted: the password it may show
        raise ValueError(
            "a URL with a blank in its user:password@ is not valid; write a blank in a "
            "password as %20"
        )
    if problem == "scheme":
        raise ValueError(f"{show(url)} is not an http(s) URL; fw fetches only http:// and https://")
    try:  # its host and port are the default allowed_domains: they must read as one
        split_host(site_of(url))
    except ValueError:
        problem = "invalid_url"
    if problem:
        raise ValueError(f"{show(url)} is not a valid URL (check the host and port)")
    return url


def _host_name(host: str) -> str:
    try:
        split_host(host)
    except ValueError as exc:
        raise ValueError(f"{show(host)}: {shorten(str(exc), 200)}") from None
    return host.lower()


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 field names


def _headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise ValueError(f"{show(name)} is not a valid header name")
        if "\r" in value or "\n" in value:
            raise ValueError(f"the value of {name} contains a line break")
        if "\0" in value:
            raise ValueError(f"the value of {name} contains a NUL character")
        if name.lower() == "proxy-authorization":  # inside an https tunnel, the site gets it
            raise ValueError(
                "Proxy-Authorization would reach the sites, not just the proxy; put the "
                "credentials in the proxy's URL (proxies.urls, HTTP_PROXY)"
            )
    return headers


_FRONTIERS = ("memory", "sqlite:///", "redis://", "rediss://", "unix://")


def _crawl_name(name: str) -> str:
    # It becomes a file name beside the project and a Redis key prefix (fw:NAME:), so no
    # "/" or ".." to climb out of the folder, and no ":" to nest in another crawl's keys.
    if name and not _CRAWL_NAME.match(name):
        raise ValueError(
            f"{show(name)} is not a crawl name: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


_CRAWL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9._-]+")


def _frontier(url: str) -> str:
    if url != "memory" and not url.startswith(_FRONTIERS[1:]):
        raise ValueError(
            f"{show(redact(url))} is not a frontier; use memory, sqlite:///path/to/crawl.db "
            "or redis://host:6379/0"
        )
    if url.startswith("sqlite:///") and not url.removeprefix("sqlite:///").strip("/"):
        raise ValueError("sqlite:/// needs a file, e.g. sqlite:///state/crawl.db")
    return url


@dataclass(frozen=True)
class Concurrency:
    """How many requests may be in flight at once."""

    total: int = option(
        16, doc="Requests in flight at once, across all hosts.", minimum=1, maximum=10_000
    )
    per_domain: int = option(
        4, doc="Requests in flight at once to one host.", minimum=1, maximum=10_000
    )


@dataclass(frozen=True)
class DomainPolicy:
    """How hard the hosts matching one pattern may be hit; unset keys keep the defaults."""

    concurrency: int | None = option(
        None, doc="Requests in flight at once to one matching host.", minimum=1, maximum=10_000
    )
    delay: float | None = option(
        None, doc="Seconds between two requests to one matching host, jittered.", minimum=0
    )
    rate: float | None = option(
        None, doc="At most this many requests per second to one matching host.", minimum=0.001
    )
    headers: Mapping[str, str] = option(
        doc="Headers sent only to matching hosts, on top of the top-level headers: where "
        "an API token belongs.",
        default_factory=_empty,
        check=_headers,
    )


def _patterns(domains: Mapping[str, DomainPolicy]) -> Mapping[str, DomainPolicy]:
    return MappingProxyType({_pattern(pattern): policy for pattern, policy in domains.items()})


def _pattern(pattern: str) -> str:
    if "/" not in pattern and ":" not in pattern and pattern.strip("*."):
        return pattern.lower()
    with contextlib.suppress(ValueError):  # an IPv6 address is a host name here, a port is not
        host, port = split_host(pattern)
        if port is None and ":" in host:
            return host
    raise ValueError(
        f"{show(pattern)} is not a host pattern; write it like *.douban.com (no port), "
        "or an IPv6 address like ::1"
    )


@dataclass(frozen=True)
class Throttle:
    """Adaptive throttling: each host's delay follows its latency and its 429/503 replies."""

    enabled: bool = option(
        True,
        doc="Raise a host's delay when it slows down or answers "
        "429/503, lower it back toward the configured delay when healthy.",
    )
    max_delay: float = option(
        60.0,
        doc="The longest delay throttling, or a robots.txt Crawl-delay, may impose.",
        minimum=0,
    )


def _throttle(raw: Any, source: Source, path: KeyPath) -> Throttle:
    """Accept ``throttle: false`` as well as ``throttle: {enabled: false, ...}``."""
    value = raw.scalar() if isinstance(raw, EnvText) else raw
    if isinstance(value, bool):
        return Throttle(enabled=value)
    return build(Throttle, raw, source, path)


@dataclass(frozen=True)
class Backoff:
    """How long to wait before retrying a failed request."""

    base: float = option(
        0.5,
        doc="Seconds before the first retry; doubled for each further retry, with jitter.",
        minimum=0,
    )
    max: float = option(
        60.0,
        doc="The longest wait before a retry, and the longest "
        "Retry-After honoured; a server asking for more fails the request, "
        "and its host rests this long.",
        minimum=0,
    )


@dataclass(frozen=True)
class ExporterSpec:
    """One place items go: a format, a path (``-`` is stdout) and the exporter's options."""

    format: str | None
    path: str
    options: Mapping[str, Any] = field(default_factory=_empty)
    at: KeyPath = ()


def _exporters(raw: Any, source: Source, path: KeyPath) -> tuple[ExporterSpec, ...]:
    if not isinstance(raw, list):
        raise source.error(path, "expected a list like [{format: jsonl, path: out/items.jsonl}]")
    return tuple(check_all(lambda i, item: _exporter(item, source, (*path, i)), enumerate(raw)))


def _exporter(raw: Any, source: Source, at: KeyPath) -> ExporterSpec:
    if not isinstance(raw, Mapping):
        raise source.error(at, "expected a mapping like {format: jsonl, path: out/items.jsonl}")
    options = dict(raw)
    target, fmt = options.pop("path", None), options.pop("format", None)
    if not isinstance(target, str) or not target:
        raise source.error((*at, "path"), "required: the file to write (or - for stdout)")
    if fmt is not None and not isinstance(fmt, str):
        raise source.error((*at, "format"), "expected an exporter name such as jsonl")
    if target != "-":  # Paths in a project file are relative to the project file.
        # abspath, not resolve(): a symlink keeps the name whose extension picks the format.
        target = os.path.abspath(source.file.parent / target)  # noqa: PTH100
    return ExporterSpec(fmt, target, MappingProxyType(options), at)


@dataclass(frozen=True, kw_only=True)
class Project:
    """A validated project file. Each component is handed only the part it needs."""

    name: str = option(
        "",
        doc="The crawl's name: letters, digits, '.', '_' and '-'. It names the failures "
        "file and a Redis crawl's keys; defaults to the project file's name.",
        check=_crawl_name,
    )
    spider: str = option(doc="The name of a registered spider (see `fw plugins`).")
    start_urls: tuple[str, ...] = option(
        (),
        doc="Where the crawl starts (http or https).",
        parse=strings(_http_url, "an http(s) URL"),
    )
    allowed_domains: tuple[str, ...] | None = option(
        None,
        doc="Hosts the crawl may visit, subdomains included; a host with a port "
        "(example.com:8080) allows that port only, 80 and 443 counting as one; an IPv6 "
        "address is written ::1, or [::1]:8080 with a port. Default: the hosts of start_urls, "
        "on their ports. An empty list, [], means every host.",
        parse=strings(_host_name, "a host name such as movie.douban.com", optional=True),
    )
    disable_plugins: tuple[str, ...] = option(
        (),
        doc="Installed plugins not to load, by name (see `fw plugins`). The file may keep "
        "the section named after a disabled plugin; the command line setting a value in it "
        "(`-s cache.dir=...`, `--cache`) is refused, since it would do nothing.",
    )
    plugins: tuple[str, ...] = option(
        (),
        doc="Extra plugins: .py files (relative to the project file) or importable module names.",
    )
    concurrency: Concurrency = option(
        doc="Requests in flight at once.", default_factory=Concurrency
    )
    delay: float = option(
        0.0,
        doc=(
            "Seconds between two requests to one host, jittered between 0.5x and 1.5x, "
            "then moved to the nearest wave (a grid of 1/8 to 1/4 of it, never below "
            "0.5x) that hosts of one delay share; a start late within its wave counts the "
            "next delay from its turn."
        ),
        minimum=0,
    )
    rate: float | None = option(
        None, doc="At most this many requests per second to one host.", minimum=0.001
    )
    domains: Mapping[str, DomainPolicy] = option(
        doc="Per-host overrides of concurrency, delay and rate, by host pattern "
        "(*.douban.com) or IPv6 address (::1); an exact host beats a pattern, a longer "
        "pattern a shorter one.",
        default_factory=_empty,
        check=_patterns,
    )
    throttle: Throttle = option(
        doc="Adaptive throttling, on by default; throttle: false turns it off.",
        default_factory=Throttle,
        parse=_throttle,
    )
    robots: Literal["obey", "ignore"] = option(
        "obey", doc="Obey each host's robots.txt (Disallow and Crawl-delay), or ignore it."
    )
    timeout: float = option(30.0, doc="Seconds one request may take, body included.", minimum=0.001)
    stop_timeout: float = option(
        5.0,
        doc="Seconds the requests in flight get to finish after SIGTERM or Ctrl-C; then they "
        "are cut short and handed back, so that a rerun fetches them.",
        minimum=0,
    )
    retries: int = option(
        2, doc="Retries after a connection error, timeout, 5xx or 429.", minimum=0
    )
    backoff: Backoff = option(doc="Waits between retries.", default_factory=Backoff)
    max_depth: int | None = option(
        None,
        doc="Links followed from a start URL before stopping; 0 fetches only the start URLs.",
        minimum=0,
    )
    max_pages: int | None = option(
        None,
        doc="Stop after this many requests were sent to be fetched: pages, error pages, "
        "redirects, retries and failed attempts each count; a request dropped as offsite "
        "or by robots.txt does not, nor does robots.txt itself.",
        minimum=1,
    )
    max_items: int | None = option(
        None,
        doc="Stop after this many items. With a persistent frontier or --retry-failed, a "
        "page whose items would pass it is left whole for the next run (the first page of a "
        "run goes whole).",
        minimum=1,
    )
    max_requests_per_page: int = option(
        50_000,
        doc="Requests one page's callback may add to the crawl (its links, mostly); the "
        "rest are dropped, counted as filtered too_many_on_page, and the page named in a "
        "warning (the first few: the spider's, and each plugin callback's). The default "
        "takes a whole sitemap (50,000 URLs) and bounds what a hostile page of a million "
        "links adds to the crawl.",
        minimum=1,
    )
    max_response_size: int = option(
        16 * MiB,
        doc="Largest body in bytes, after decompression; a larger response fails.",
        minimum=1,
    )
    max_redirects: int = option(10, doc="Redirects followed from one request.", minimum=0)
    headers: Mapping[str, str] = option(
        doc="Headers sent with every request, e.g. a User-Agent.",
        default_factory=_empty,
        check=_headers,
    )
    cookies: bool = option(True, doc="Keep cookies between requests, as a browser does.")
    frontier: str = option(
        "memory",
        doc="Where the queue and the seen-set live: memory; "
        "sqlite:///state/crawl.db (a file relative to the project file; "
        "survives kill -9); redis://host:6379/0 (shared by every worker "
        "running the project).",
        check=_frontier,
    )
    exporters: tuple[ExporterSpec, ...] = option(
        (), doc="Where items go: a list of {format, path, ...options}.", parse=_exporters
    )
    file: Path = Path("project.yaml")
    source: Source | None = None
    sections: Mapping[str, Any] = field(default_factory=_empty)

    def section(self, name: str) -> Any:
        """Return the raw options the project file gives the plugin ``name``."""
        return self.sections.get(name)

    def allows(self, url: str) -> bool:
        """Tell whether ``url`` is on a host ``allowed_domains`` lets the crawl visit."""
        return self._offsite.allows(url)

    @functools.cached_property
    def _offsite(self) -> Offsite:
        return Offsite(self.allowed_domains or ())

    @property
    def error_source(self) -> Source:
        """Where this project's keys were written, for errors found after loading."""
        return self.source or Source(self.file, {})


class Override(NamedTuple):
    """A ``KEY=VALUE`` from the command line, and what gave it: ``-s``, or a flag that
    stands for it (``--cache``), which errors in its value then name."""

    text: str
    given: str = "-s"


def load_project(file: Path, overrides: Sequence[str | Override] = ()) -> Project:
    """Read, override and validate a project file; raise ``ProjectError`` on any problem.

    A plain string in ``overrides`` is an ``-s`` one."""
    data, source, errors = _read(file, overrides)
    return _build(data, source, file, errors)


def load_project_without(
    file: Path, overrides: Sequence[str | Override], error: ProjectError
) -> Project | None:
    """Load the project with the core keys ``error`` faults left at their defaults, for
    the checks that need a project to run at all (the plugins' own options): one run of
    ``fw check`` then says those too. None if ``error`` is about a key other checks read
    (``_DECISIVE``), or about no key, or if the project needs the keys left out."""
    faulty = {re.split(r"[.\[]", one.key, maxsplit=1)[0] for one in _each(error)}
    if faulty & _DECISIVE:
        return None
    try:
        data, source, _ = _read(file, overrides)  # the key-name errors are in ``error``
        kept = {key: value for key, value in data.items() if key not in faulty}
        return _build(kept, source, file, ErrorList())
    except ProjectError:
        return None


#: Core keys other checks read: left at their defaults, they would make those checks say
#: what is not so. Which plugins load; where the crawl's own files go (its name); the
#: hosts it may visit (allowed_domains, which follows start_urls); its frontier.
_DECISIVE = frozenset(
    {"", "plugins", "disable_plugins", "name", "allowed_domains", "start_urls", "frontier"}
)


def _each(error: ProjectError) -> tuple[ProjectError, ...]:
    return error.errors if isinstance(error, ProjectErrors) else (error,)


def _read(
    file: Path, overrides: Sequence[str | Override]
) -> tuple[dict[str, Any], Source, ErrorList]:
    """Read the project file's keys with ``overrides`` applied; the errors in key names
    are collected, not raised, so that the keys' values are checked too."""
    data, source = load(file)
    if data is None:
        raise source.error(
            (), "the project file is empty; it needs at least spider: and start_urls:"
        )
    if not isinstance(data, dict):
        raise source.error((), "expected a mapping of keys such as spider: and start_urls:")
    errors = ErrorList()
    with errors.collect():  # and go on without them: the other keys may hold mistakes too
        check_key_names(data, source, ())
    data = {key: value for key, value in data.items() if isinstance(key, str)}
    given = [o if isinstance(o, Override) else Override(o) for o in overrides]
    parsed = [(*parse_override(o.text, o.given), o.given) for o in given]
    source = source.with_overrides({path: by for path, _, by in parsed})
    for path, value, by in parsed:  # {$env: NAME} works on the command line too
        node, replaced = _place(data, path, by)  # first: a wrong path is the error, not its value
        source = source.with_overrides({replaced: by})
        node[path[-1]] = resolve_env(value, source, path)
    return data, source, errors


def _build(data: dict[str, Any], source: Source, file: Path, errors: ErrorList) -> Project:
    """Validate the core keys into a ``Project``; the other keys are plugins' sections."""
    core = {f.name for f in keys_of(Project)}
    sections = MappingProxyType({k: v for k, v in data.items() if k not in core})
    with errors.collect():
        project = build(
            Project,
            {k: v for k, v in data.items() if k in core},
            source,
            internal={"file": file, "source": source, "sections": sections},
        )
    errors.raise_any()
    _check_on_site(project)
    return _with_defaults(project)


def _check_on_site(project: Project) -> None:
    """Refuse a start URL outside ``allowed_domains``: the crawl would drop it unseen."""
    if project.allowed_domains is None:
        return
    offsite, errors = Offsite(project.allowed_domains), ErrorList()
    for index, url in enumerate(project.start_urls):
        if not offsite.allows(url):
            errors.add(
                project.error_source.error(
                    ("start_urls", index),
                    f"host {host_of(url)} is not in allowed_domains "
                    f"[{', '.join(project.allowed_domains)}]; add it there, or drop "
                    "allowed_domains to allow the hosts of start_urls",
                )
            )
    errors.raise_any()


def _with_defaults(project: Project) -> Project:
    name = project.name or _NOT_IN_NAMES.sub("-", project.file.stem).strip(".-_")[:100] or "crawl"
    domains = project.allowed_domains
    if domains is None:  # on the start URLs' ports: a host's other ports are other services
        domains = tuple(dict.fromkeys(site_of(url) for url in project.start_urls))
    frontier = project.frontier
    if frontier.startswith("sqlite:///"):  # a relative path is relative to the project file
        path = project.file.parent / frontier.removeprefix("sqlite:///")
        frontier = "sqlite:///" + os.path.abspath(path)  # noqa: PTH100
    return dataclasses.replace(project, name=name, allowed_domains=domains, frontier=frontier)


def parse_override(text: str, given: str = "-s") -> tuple[KeyPath, Any]:
    """Parse ``-s rules.items[0].fields.title=h1`` into a key path and a YAML value;
    ``given`` is what gave it, for errors."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"{given} {text}: expected KEY=VALUE, e.g. -s concurrency.total=8")
    path = _key_path(key.strip(), text, given)
    if len(path) > MAX_DEPTH:  # each key is a level of nesting, as in the file
        raise ProjectError(
            given,
            f"{format_key(path[:3])}…",
            f"the key path is {len(path):,} keys deep; fw reads values nested up to "
            f"{MAX_DEPTH} levels",
        )
    try:  # the value sits as deep as its key path
        parsed = parse(value, len(path)) if value.strip() else ""
    except Overrun as exc:
        raise ProjectError(given, format_key(path), exc.problem) from exc
    except yaml.YAMLError:  # not YAML: the text itself
        parsed = value
    return path, parsed


_NAME = re.compile(r"[^.\[\]]+")
#: After the first name: ``.name``, ``.0`` or ``[0]``, the last two an index into a list,
#: or a key in quotes, ``['example.com']``, for one with dots in it (a host).
_STEP = re.compile(
    r"\.(?:(?P<number>[0-9]+)|(?P<name>[^.\[\]]+))|\[(?P<index>[0-9]+)\]"
    r"|\[(?P<quote>[\"'])(?P<quoted>[^\"']+)(?P=quote)\]"
)


def _key_path(key: str, text: str, given: str) -> KeyPath:
    """Split ``rules.items[0].fields`` (or ``rules.items.0.fields``) into its keys.

    The first name is a key even if it is all digits: the top level is a mapping.
    """
    top = _NAME.match(key)
    if top is None:
        raise _not_a_path(key, text, given)
    path: list[str | int] = [top.group()]
    at = top.end()
    while at < len(key):
        step = _STEP.match(key, at)
        if step is None:
            raise _not_a_path(key, text, given)
        number = step["number"] or step["index"]
        path.append(int(number) if number else step["name"] or step["quoted"])
        at = step.end()
    return tuple(path)


def _not_a_path(key: str, text: str, given: str) -> UsageError:
    return UsageError(
        f"{given} {text}: {key!r} is not a key path: join keys with dots and name a list item "
        "by its index, as in rules.items[0].fields.title or rules.items.0.fields.title; "
        "a key with dots goes in quotes, as in domains['example.com'].delay"
    )


def _place(data: dict[str, Any], path: KeyPath, given: str) -> tuple[Any, KeyPath]:
    """Return the mapping or list that an override of ``path`` sets its last key in, and
    the shortest key whose whole value is now the override's (for ``Source.where``).

    On the way, a key that is missing or holds neither a mapping nor a list gets an empty
    mapping (``throttle: false`` becomes ``{enabled: ...}``); a list item must exist already.
    """
    node: Any = data
    replaced = path
    for depth, part in enumerate(path[:-1]):
        _check_step(node, path[: depth + 1], given)
        child = node[part] if _has(node, part) else None
        if isinstance(child, dict | list):  # a copy: a YAML alias shares it with another key
            child = node[part] = child.copy()
        else:
            child = node[part] = {}
            replaced = path[: depth + 1] if replaced == path else replaced
        node = child
    _check_step(node, path, given)
    return node, replaced


def _check_step(node: Any, path: KeyPath, given: str) -> None:
    """Refuse to step into a list by a name, or to an item it does not have."""
    if not isinstance(node, list) or _has(node, path[-1]):
        return
    if not isinstance(path[-1], int):
        raise UsageError(
            f"{given}: {format_key(path)}: {format_key(path[:-1])} is a list: name an item by "
            f"its index, e.g. {format_key((*path[:-1], 0))}"
        )
    size = f"has {len(node)}" if node else "is empty"
    raise UsageError(f"{given}: {format_key(path)}: no such item (the list {size})")


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, list):
        return isinstance(part, int) and 0 <= part < len(node)
    return part in node
