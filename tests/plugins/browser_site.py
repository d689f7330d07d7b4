"""A loopback shop whose pages are built by JavaScript, beside the same pages served static.

- ``/static/`` and ``/static/page2``: the catalogue as plain HTML, two pages of products;
- ``/js/`` and ``/js/page2``: the same pages as an empty shell whose script fetches
  ``/api/products?page=N`` and builds the very same HTML;
- ``/scroll``: an infinite scroll: 10 products, then 10 more each time the page is
  scrolled to the bottom, up to ``SCROLL_TOTAL``;
- ``/never``: a page whose script polls the server forever (never network-idle) and
  never shows ``.product``;
- ``/busy``: a page whose script never returns (a busy loop);
- ``/cookie``: a script sets a cookie; ``/whoami`` echoes the cookies it was sent;
- ``/pictures``: a page with an image, a font and a video (``/media/...``);
- ``/go``: a redirect to ``/js/``;
- ``/away``: a script that navigates to ``/static/`` once the page loaded.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections import Counter

from aiohttp import web

__all__ = ["PRODUCTS", "SCROLL_TOTAL", "BrowserSite", "product_html"]

#: The products of each catalogue page.
PRODUCTS = {
    1: [("Lamp", 12.5), ("Kettle", 30.0), ("Rug", 99.9)],
    2: [("Chair", 45.0), ("Table", 120.0)],
}
SCROLL_TOTAL = 50

_BUILD = """
<script>
fetch('/api/products?page=' + document.body.dataset.page)
  .then(r => r.json())
  .then(data => {
    const main = document.getElementById('main');
    for (const p of data.products) {
      const div = document.createElement('div');
      div.className = 'product';
      div.innerHTML = '<h2>' + p.name + '</h2><span class="price">' + p.price + '</span>';
      main.append(div);
    }
    if (data.next) {
      const a = document.createElement('a');
      a.className = 'next'; a.href = data.next; a.textContent = 'next';
      main.append(a);
    }
  });
</script>
"""

_SCROLL = """
<script>
let loaded = 0, loading = false;
async function more() {
  if (loading || loaded >= TOTAL) return;
  loading = true;
  const r = await fetch('/api/scroll?from=' + loaded);
  for (const name of await r.json()) {
    const div = document.createElement('div');
    div.className = 'product'; div.style.height = '300px';
    div.innerHTML = '<h2>' + name + '</h2>';
    document.getElementById('main').append(div);
    loaded++;
  }
  loading = false;
}
more();
window.addEventListener('scroll', () => {
  if (window.innerHeight + window.scrollY >= document.body.scrollHeight - 50) more();
});
</script>
""".replace("TOTAL", str(SCROLL_TOTAL))


def product_html(page: int) -> str:
    """The catalogue page's products as the static page serves them."""
    items = "".join(
        f'<div class="product"><h2>{html.escape(name)}</h2><span class="price">{price}</span></div>'
        for name, price in PRODUCTS[page]
    )
    more = '<a class="next" href="/static/page2">next</a>' if page == 1 else ""
    return items + more


def _shell(page: int, script: str) -> str:
    return (
        f'<html><head><title>Shop</title></head><body data-page="{page}">'
        f'<div id="main"></div>{script}</body></html>'
    )


class BrowserSite:
    """Serve the shop; count what each path was asked for."""

    def __init__(self) -> None:
        self.served: Counter[str] = Counter()
        self.cookies: list[dict[str, str]] = []
        self._changed = asyncio.Condition()

    async def wait_served(self, path: str, times: int) -> None:
        """Return once ``path`` was asked for ``times`` times."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.served[path] >= times)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._count])
        routes = {
            "/static/": self._static,
            "/static/page2": self._static,
            "/js/": self._js,
            "/js/page2": self._js,
            "/api/products": self._products,
            "/scroll": self._scroll_page,
            "/api/scroll": self._scroll_api,
            "/never": self._never,
            "/api/poll": self._poll,
            "/busy": self._busy,
            "/cookie": self._cookie,
            "/whoami": self._whoami,
            "/robots.txt": self._robots,
            "/pictures": self._pictures,
            "/media/{name}": self._media,
            "/away": self._away,
            "/private": self._static,
            "/go": self._go,
        }
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler: object) -> web.StreamResponse:
        async with self._changed:
            self.served[request.path] += 1
            self._changed.notify_all()
        return await handler(request)  # type: ignore[operator, no-any-return]

    async def _static(self, request: web.Request) -> web.Response:
        page = 2 if request.path.endswith("page2") else 1
        main = f'<div id="main">{product_html(page)}</div>'
        body = f"<html><head><title>Shop</title></head><body>{main}</body></html>"
        return web.Response(text=body, content_type="text/html")

    async def _js(self, request: web.Request) -> web.Response:
        page = 2 if request.path.endswith("page2") else 1
        return web.Response(text=_shell(page, _BUILD), content_type="text/html")

    async def _products(self, request: web.Request) -> web.Response:
        page = int(request.query["page"])
        products = [{"name": name, "price": price} for name, price in PRODUCTS[page]]
        return web.json_response({"products": products, "next": "/js/page2" if page == 1 else None})

    async def _scroll_page(self, request: web.Request) -> web.Response:
        return web.Response(text=_shell(1, _SCROLL), content_type="text/html")

    async def _scroll_api(self, request: web.Request) -> web.Response:
        start = int(request.query["from"])
        names = [f"Item {n}" for n in range(start, min(start + 10, SCROLL_TOTAL))]
        return web.json_response(names)

    async def _never(self, request: web.Request) -> web.Response:
        script = "<script>setInterval(() => fetch('/api/poll'), 100);</script>"
        return web.Response(text=_shell(1, script), content_type="text/html")

    async def _poll(self, request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)
        return web.json_response([])

    async def _busy(self, request: web.Request) -> web.Response:
        script = "<script>while (true) {}</script>"
        return web.Response(text=_shell(1, script), content_type="text/html")

    async def _cookie(self, request: web.Request) -> web.Response:
        script = (
            "<script>document.cookie = 'from_js=' + document.cookie.length + '; path=/';"
            "document.getElementById('main').innerHTML = '<p class=done>set</p>';</script>"
        )
        response = web.Response(text=_shell(1, script), content_type="text/html")
        response.set_cookie("from_http", "h1")
        return response

    async def _whoami(self, request: web.Request) -> web.Response:
        self.cookies.append(dict(request.cookies))
        return web.Response(text=json.dumps(dict(request.cookies)), content_type="text/html")

    async def _pictures(self, request: web.Request) -> web.Response:
        body = (
            "<style>@font-face { font-family: f; src: url(/media/f.woff2); }"
            "body { font-family: f; }</style>"
            '<div class="product"><h2>Pictures</h2></div><img src="/media/a.png">'
            '<video src="/media/v.mp4" autoplay muted></video>'
        )
        return web.Response(text=_shell(1, body), content_type="text/html")

    async def _media(self, request: web.Request) -> web.Response:
        return web.Response(body=b"\0" * 100, content_type="application/octet-stream")

    async def _away(self, request: web.Request) -> web.Response:
        away = "<script>setTimeout(() => { location.href = '/static/'; }, 50);</script>"
        script = f"<div class=product><h2>Away</h2></div>{away}"
        return web.Response(text=_shell(1, script), content_type="text/html")

    async def _go(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/js/")

    async def _robots(self, request: web.Request) -> web.Response:
        return web.Response(text="User-agent: *\nDisallow: /private\n", content_type="text/plain")
