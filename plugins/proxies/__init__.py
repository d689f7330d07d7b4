"""The ``proxies`` plugin: send requests through a pool of HTTP proxies, and keep it healthy.

Which proxy a request goes through, first match wins:

1. its own ``Request(proxy=...)``; a proxy listed in ``proxies.urls`` at the same
   ``scheme://host:port`` lends it its credentials, so a spider need not hold them;
2. the pool of ``proxies.urls``, rotated as ``proxies.rotate`` says;
3. the environment's ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` (aiohttp's ``trust_env``);
4. none.

A proxy that fails rests and the crawl goes on through the others (``pool``); when every
proxy is dead the crawl stops with exit 1. Credentials travel to the proxy alone and are
masked (``http://***@host:port``) in logs, ``--stats``, the summary and the failures file.
docs/proxies.md is the reference.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from framework import (
    SECRET_QUERY,
    CrawlAborted,
    FetchError,
    Handler,
    Middleware,
    Request,
    Response,
    hookimpl,
)

from .options import ProxiesOptions, origin_of, redact
from .pool import Pool, Proxy, Verdict

__all__ = ["Options", "ProxiesMiddleware", "register_middlewares"]

#: The schema of the ``proxies:`` section (fw checks it as the project loads).
Options = ProxiesOptions

log = logging.getLogger("fw.proxies")

#: Failures a proxy may be to blame for, short of failing outright (``proxy``).
_SUSPECT_KINDS = frozenset({"timeout", "connection", "disconnected"})
#: Failures the site's as often as the proxy's: an answer fw cannot read (no HTTP at all,
#: or a body that will not decode). Only another proxy's answer tells: then it is suspect.
_DOUBTFUL_KINDS = frozenset({"bad_response"})


class ProxiesMiddleware(Middleware):
    """Route each request through a proxy of the pool; rest those that fail."""

    name = "proxies"
    Options = ProxiesOptions
    options: ProxiesOptions

    def __init__(self, options: ProxiesOptions) -> None:
        super().__init__(options)
        self.pool = Pool(options)
        # An https tunnel the proxy refuses with a ban status fails as http_<status>.
        self._banned = frozenset(f"http_{status}" for status in options.ban_statuses)
        #: Proxies requests named themselves that the pool does not list, by masked URL.
        self.others: dict[str, Proxy] = {}

    async def __call__(self, request: Request, handler: Handler) -> Response:
        if request.proxy is not None:
            return await self._pinned(request, handler)
        if not self.pool:
            return await handler(request)
        return await self._rotated(request, handler)

    async def _pinned(self, request: Request, handler: Handler) -> Response:
        """Send a request through the proxy it names; the pool lends its credentials."""
        assert request.proxy is not None
        listed = self._listed(request.proxy)
        if listed is None:
            proxy = self._other(request.proxy)
            url = request.proxy
        else:
            proxy = listed
            url = request.proxy if "@" in request.proxy else listed.url
        outcome = await self._attempt(proxy, request, handler, url)
        return outcome.result()

    def _listed(self, url: str) -> Proxy | None:
        try:
            return self.pool.listed(origin_of(url))
        except ValueError:  # the downloader names what is wrong with it
            return None

    def _other(self, url: str) -> Proxy:
        name = redact(url)
        proxy = self.others.get(name)
        if proxy is None:
            proxy = self.others[name] = Proxy(url, name)
        return proxy

    async def _rotated(self, request: Request, handler: Handler) -> Response:
        """Send a request through the pool, through others at once if its proxy fails."""
        host = _host(request.url)
        tried: list[Proxy] = []
        doubts: list[_Outcome] = []  # unreadable answers, each the site's or its proxy's
        outcome: _Outcome | None = None
        while True:
            proxy = await self._pick(host, tried, waits=outcome is None)
            if proxy is None:  # no other proxy to try now: the last answer stands
                assert outcome is not None
                return outcome.result()
            tried.append(proxy)
            outcome = await self._attempt(proxy, request, handler, proxy.url)
            if outcome.doubt is not None:
                doubts.append(outcome)
            elif doubts and outcome.response is not None:  # another proxy's answer is read:
                for doubted in doubts:
                    assert doubted.doubt is not None
                    suspect, epoch, detail = doubted.doubt
                    self._judge(suspect, epoch, detail, doubted, Verdict.SUSPECT, counted=True)
                doubts.clear()  # the unreadable ones were their proxies' doing
            if not outcome.reroute or len(tried) > self.options.reroutes:
                return outcome.result()
            log.debug("%s: through another proxy after %s", _shown(request), outcome.why)

    async def _pick(self, host: str, tried: Sequence[Proxy], *, waits: bool) -> Proxy | None:
        """Pick a proxy; for a first try, wait while every proxy rests."""
        while True:
            if self.pool.all_dead():
                raise CrawlAborted(self._obituary())
            picked = self.pool.pick(host, tried)
            if picked is None or isinstance(picked, Proxy):
                return picked
            if not waits:
                return None
            await asyncio.sleep(picked)

    async def _attempt(
        self, proxy: Proxy, request: Request, handler: Handler, url: str
    ) -> _Outcome:
        """Fetch through ``proxy`` once, and tell the pool how it went (an unreadable
        answer: once another proxy has answered, see ``_rotated``)."""
        epoch = proxy.epoch
        proxy.requests += 1
        try:
            response = await handler(request.replace(proxy=url))
        except FetchError as exc:
            verdict = self._verdict_of(exc.kind)
            outcome = _Outcome(error=exc, why=exc.kind, verdict=verdict)
            detail = str(exc).removeprefix(f"proxy {redact(url)}: ")
        else:
            response.request = request  # the spider's own request, not the pool's choice
            status = response.status
            banned = status in self.options.ban_statuses
            verdict = Verdict.SUSPECT if banned else Verdict.OK
            outcome = _Outcome(response=response, why=f"http_{status}", verdict=verdict)
            detail = f"HTTP {status}"
        if outcome.why in _DOUBTFUL_KINDS:  # counted now, held against it maybe later
            self.pool.count(proxy, outcome.why, detail)
            outcome.doubt = (proxy, epoch, detail)
        else:
            self._judge(proxy, epoch, detail, outcome, outcome.verdict)
        return outcome

    def _judge(
        self,
        proxy: Proxy,
        epoch: int,
        detail: str,
        outcome: _Outcome,
        verdict: Verdict,
        *,
        counted: bool = False,
    ) -> None:
        """Tell the pool how an attempt through ``proxy`` went; rest it if it must."""
        rest = self.pool.judge(proxy, epoch, verdict, outcome.why, detail, counted=counted)
        if rest is not None:
            self._rested(proxy, rest)
            if self.pool.all_dead():
                raise CrawlAborted(self._obituary())

    def _verdict_of(self, kind: str) -> Verdict:
        """Judge a failure: the proxy's own, perhaps its fault, or nothing to do with it."""
        if kind == "proxy":
            return Verdict.FAILED
        if kind in _SUSPECT_KINDS or kind in _DOUBTFUL_KINDS or kind in self._banned:
            return Verdict.SUSPECT  # doubtful ones: another proxy is tried at once
        return Verdict.NEUTRAL

    def _rested(self, proxy: Proxy, seconds: float) -> None:
        if self.pool.dead(proxy):
            log.warning(
                "proxy %s is dead: it failed %d times in a row (last: %s); tried again in %gs",
                proxy.name,
                proxy.strikes,
                proxy.last,
                seconds,
            )
        else:
            log.info("proxy %s rests %gs after %s", proxy.name, seconds, proxy.last)

    def _obituary(self) -> str:
        proxies = self.pool.proxies
        dead = ", ".join(f"{p.name} ({p.last})" for p in proxies[:5])
        if len(proxies) > 5:
            dead += f" and {len(proxies) - 5} more"
        return (
            f"proxies: every proxy failed {self.options.dead_after} times in a row, "
            f"resting between: {dead}; check proxies.urls and their credentials"
        )

    def stats(self) -> Mapping[str, Any] | None:
        """Each proxy's requests, answers, failures by kind, rests and state."""
        counts = self.pool.report()
        counts |= {p.name: p.report(self.options.dead_after, 0.0) for p in self.others.values()}
        return counts or None

    def summary(self) -> Sequence[str]:
        """One line: each proxy's requests, and what went wrong through it."""
        report = self.stats()
        if not report:
            return ()
        shown = [_described(name, counts) for name, counts in list(report.items())[:5]]
        more = f", and {len(report) - 5} more (see --stats)" if len(report) > 5 else ""
        return [f"proxies: {'; '.join(shown)}{more}"]


class _Outcome:
    """One attempt through one proxy: its response or error, and what it says."""

    __slots__ = ("doubt", "error", "response", "verdict", "why")

    def __init__(
        self,
        *,
        why: str,
        verdict: Verdict,
        response: Response | None = None,
        error: FetchError | None = None,
    ) -> None:
        self.why, self.verdict, self.response, self.error = why, verdict, response, error
        #: An unreadable answer's proxy, epoch and detail, judged once another proxy answers.
        self.doubt: tuple[Proxy, int, str] | None = None

    @property
    def reroute(self) -> bool:
        """Whether another proxy may do better at once (a timeout would only wait again)."""
        return self.verdict in (Verdict.SUSPECT, Verdict.FAILED) and self.why != "timeout"

    def result(self) -> Response:
        """Return the response, or raise the error."""
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


def _described(name: str, counts: Mapping[str, Any]) -> str:
    failures: dict[str, int] = counts["failures"]
    text = f"{name} {_times(counts['requests'], 'request')}"
    if failures:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(failures.items()))
        text += f" ({sum(failures.values())} failed: {kinds})"
    if counts["rests"]:
        text += f", rested {_times(counts['rests'], 'time')}"
    if counts["state"] != "up":
        text += f", {counts['state']}"
    return text


def _times(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def _shown(request: Request) -> str:
    """The request's URL for a log line: a GET sign-in's query holds its password."""
    return request.url.partition("?")[0] if request.meta.get(SECRET_QUERY) else request.url


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


@hookimpl(trylast=True)  # bundled: any installed plugin may override it
def register_middlewares(register: Callable[[type[Middleware]], None]) -> None:
    """Provide the ``proxies`` middleware."""
    register(ProxiesMiddleware)
