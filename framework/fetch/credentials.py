"""Which headers are credentials, and which hosts may receive them.

The project's ``headers:`` go to every host the crawl visits, but their credentials only to
hosts within ``allowed_domains``: a file a page names on another host (the ``files``
plugin's downloads, fetched wherever they are) gets none. ``domains: {PATTERN:
{headers: …}}`` go only to the hosts matching the pattern. Credentials — ``Authorization``,
``Cookie``, ``Proxy-Authorization``, and any header whose value comes from ``$env`` — are
never sent after a redirect that changed the scheme, host or port (curl's and requests'
rule, after their CVEs about credentials leaking on redirects): the redirect's target gets
the request without them, the spider's own included, and without a body. Nor are the
project's credentials sent over plain ``http`` to a host the crawl reaches over ``https``
(a start URL's, or one it has fetched so): a link or a sitemap entry written with
``http://`` would otherwise send them in clear.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from framework.config.project import DomainPolicy, Project
from framework.config.yamlfile import EnvText
from framework.http import Request
from framework.http.urls import Offsite, host_of, shown_url

__all__ = [
    "UNCREDENTIALED",
    "HostHeaders",
    "crossed_origin",
    "is_credential",
    "warn_of_wide_credentials",
    "without_credentials",
]

log = logging.getLogger("fw")

#: The names of the headers that carry credentials, lower-case.
CREDENTIAL_NAMES = frozenset({"authorization", "cookie", "proxy-authorization"})
#: A request's meta key: a redirect on its way crossed origins, so it carries no credentials.
UNCREDENTIALED = "uncredentialed"


def is_credential(name: str, value: str) -> bool:
    """Whether a header carries a credential: by its name, or a value from ``$env``."""
    return name.lower() in CREDENTIAL_NAMES or isinstance(value, EnvText)


def without_credentials(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """Return ``headers`` less its credentials (None stays None)."""
    if headers is None:
        return None
    return {name: value for name, value in headers.items() if not is_credential(name, value)}


def crossed_origin(source: str, target: str) -> bool:
    """Whether a redirect from ``source`` to ``target`` changes the scheme, host or port."""
    before, after = urlsplit(source), urlsplit(target)
    return (before.scheme, before.hostname, _port(before.scheme, before.port)) != (
        after.scheme,
        after.hostname,
        _port(after.scheme, after.port),
    )


def _port(scheme: str, port: int | None) -> int | None:
    return port if port is not None else {"http": 80, "https": 443}.get(scheme)


class HostHeaders:
    """The project's headers a request gets beyond the session's: its credentials and
    the headers of the ``domains:`` pattern its host matches. Cached per host."""

    def __init__(
        self,
        headers: Mapping[str, str],
        domains: Mapping[str, DomainPolicy],
        allowed_domains: Sequence[str] = (),
        start_urls: Sequence[str] = (),
    ) -> None:
        #: Every host gets these with each request, redirected or not.
        self.everywhere = {k: v for k, v in headers.items() if not is_credential(k, v)}
        self._credentials = {k: v for k, v in headers.items() if is_credential(k, v)}
        self._offsite = Offsite(allowed_domains)  # no domains: every host is the crawl's
        # Most specific first, as politeness matches them: exact names, then the longest.
        self._scoped = sorted(
            ((p, d.headers) for p, d in domains.items() if d.headers),
            key=lambda item: ("*" in item[0] or "?" in item[0], -len(item[0])),
        )
        self._cache: dict[tuple[str, bool, bool], Mapping[str, str]] = {}
        #: Hosts reached over https: their credentials never go over plain http.
        self._secure = {_named(host_of(url)) for url in start_urls if _is_https(url)}
        self._warned: set[str] = set()

    def __bool__(self) -> bool:
        """Whether any request gets headers of its own: else the session's are all."""
        return bool(self._credentials or self._scoped)

    def for_request(self, request: Request) -> Mapping[str, str]:
        """Return the headers ``request`` gets, besides the session's and its own."""
        url = request.url
        # A file on a host outside allowed_domains: its pattern's headers, not the project's.
        offsite = bool(self._credentials) and not self._offsite.allows(url)
        host = host_of(url)
        uncredentialed = bool(request.meta.get(UNCREDENTIALED)) or self._downgraded(request, host)
        key = (host, uncredentialed, offsite)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._resolve(*key)
        return found

    def _downgraded(self, request: Request, host: str) -> bool:
        """Whether ``request`` goes over plain http to a host the crawl reaches over https."""
        if _is_https(request.url):
            self._secure.add(_named(host))
            return False
        if _named(host) not in self._secure:
            return False
        if host not in self._warned and self._resolve(host, False, False) != self._resolve(
            host, True, False
        ):
            self._warned.add(host)
            log.warning(
                "%s: sent without credentials: the crawl reaches %s over https, and they "
                "never go over plain http",
                shown_url(request),
                host,
            )
        return True

    def _resolve(self, host: str, uncredentialed: bool, offsite: bool) -> Mapping[str, str]:
        headers = {} if offsite else dict(self._credentials)
        for pattern, scoped in self._scoped:
            if fnmatchcase(host, pattern):
                headers.update(scoped)
                break
        if uncredentialed:
            return {k: v for k, v in headers.items() if not is_credential(k, v)}
        return headers


@functools.lru_cache(maxsize=4096)
def _named(host: str) -> str:
    """Return ``host`` as one name however it is written: without the dot that may end it,
    and as IDNA writes it, which is the host the request reaches (``localhost.``,
    ``localhost。`` and ``ＬＯＣＡＬＨＯＳＴ`` are ``localhost``)."""
    try:
        return host.encode("idna").decode("ascii").lower().rstrip(".")
    except UnicodeError:  # no name IDNA can write: no request reaches it by another
        return host.lower().rstrip(".")


def _is_https(url: str) -> bool:
    return url[:6].lower() == "https:"


def warn_of_wide_credentials(project: Project) -> None:
    """Say, at start, where top-level credential headers will go if that is more than
    one host: every host the crawl visits gets them."""
    names = sorted(k for k, v in project.headers.items() if is_credential(k, v))
    if not names:
        return
    hosts: Sequence[str] = project.allowed_domains or ()
    if project.allowed_domains == ():
        where = "every host the crawl visits (allowed_domains: [] allows any)"
    elif len(hosts) > 1:
        where = f"{len(hosts)} hosts and their subdomains: {', '.join(hosts)}"
    else:
        return
    log.warning(
        "headers: %s will be sent to %s; give credentials to one host with "
        "domains: {HOST: {headers: …}}",
        ", ".join(names),
        where,
    )
