"""A real HTTP forward proxy on loopback: what ``HTTP_PROXY`` or a crawl's proxy points at.

It answers absolute-form requests (``GET http://host:port/path HTTP/1.1``) by fetching them
itself, as squid or tinyproxy would for plain http, and counts what it relayed. With
``credentials`` it asks for ``Proxy-Authorization: Basic …`` and answers 407 without it.
"""

from __future__ import annotations

import base64
from collections import Counter

import aiohttp
from aiohttp import web

__all__ = ["ForwardProxy"]


class ForwardProxy:
    """Relay plain-http requests to their target; ``relayed`` counts them by URL."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.relayed: Counter[str] = Counter()
        self.refused = 0
        self._expected = (
            "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
            if credentials
            else None
        )

    def app(self) -> web.Application:
        """The aiohttp application to serve."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._relay)
        return app

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        if self._expected and request.headers.get("Proxy-Authorization") != self._expected:
            self.refused += 1
            return web.Response(status=407, headers={"Proxy-Authenticate": 'Basic realm="fw"'})
        target = str(request.url)  # the absolute URL the client asked the proxy for
        self.relayed[target] += 1
        headers = {k: v for k, v in request.headers.items() if not k.lower().startswith("proxy-")}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                target,
                headers=headers,
                data=await request.read(),
                allow_redirects=False,
            ) as answer,
        ):
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() in _KEPT}
            return web.Response(status=answer.status, body=body, headers=kept)


#: Response headers relayed to the client (the body is relayed decoded).
_KEPT = frozenset({"content-type", "location", "retry-after", "set-cookie", "etag"})
