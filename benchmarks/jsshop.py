"""A loopback shop whose every page is built by JavaScript: the browser benchmark's site.

``/js/N`` is an empty shell whose script fetches ``/api/N`` and builds three products and
links to pages 2N+1 and 2N+2 (those below the size): a tree of pages reachable from
``/js/0``, none of whose content is in its HTML.

usage: python benchmarks/jsshop.py PORT PAGES   (prints "ready" once it listens)
"""

from __future__ import annotations

import sys

from aiohttp import web

__all__ = ["app"]

_SHELL = """<html><head><title>Page {n}</title></head><body>
<h1>Page {n}</h1><div id="main"></div>
<script>
fetch('/api/{n}').then(r => r.json()).then(data => {{
  const main = document.getElementById('main');
  for (const p of data.products) {{
    const div = document.createElement('div');
    div.className = 'product';
    div.innerHTML = '<h2>' + p.name + '</h2><span class="price">' + p.price + '</span>';
    main.append(div);
  }}
  for (const link of data.links) {{
    const a = document.createElement('a');
    a.className = 'next'; a.href = link; a.textContent = link;
    main.append(a);
  }}
}});
</script></body></html>"""


def app(pages: int) -> web.Application:
    """The shop of ``pages`` pages."""

    def number(request: web.Request) -> int:
        n = int(request.match_info["n"])
        if not 0 <= n < pages:
            raise web.HTTPNotFound()
        return n

    async def shell(request: web.Request) -> web.Response:
        return web.Response(text=_SHELL.format(n=number(request)), content_type="text/html")

    async def api(request: web.Request) -> web.Response:
        n = number(request)
        products = [{"name": f"Product {n}-{k}", "price": n + k / 10} for k in range(3)]
        links = [f"/js/{c}" for c in (2 * n + 1, 2 * n + 2) if c < pages]
        return web.json_response({"products": products, "links": links})

    shop = web.Application()
    shop.router.add_get("/js/{n}", shell)
    shop.router.add_get("/api/{n}", api)
    return shop


if __name__ == "__main__":
    port, size = int(sys.argv[1]), int(sys.argv[2])
    web.run_app(app(size), host="127.0.0.1", port=port, print=lambda _: print("ready", flush=True))
