"""Fetching one request, politely: from a ``Request`` to a ``Response`` or a ``FetchError``.

- ``downloader``: one aiohttp session; the ``Fetcher`` seam.
- ``recording``: ``--record`` and ``--replay``, fetchers too.
- ``robots``: robots.txt, read once per site.
- ``politeness``: each host's limits, adaptive throttling, the pace the frontier keeps.
- ``stalls``: time a blocking callback held the event loop, charged to no request or host.
- ``statuses``: what a status means: a redirect to follow, an error to retry or count.
- ``retry``: when to retry, and how long to wait first.
- ``parsers``: the parser for a response's media type; fw's own HTML, XML and JSON ones.
"""
