"""Record a crawl's responses to a folder, and replay a crawl from them with no network.

``fw run --record DIR`` wraps the downloader: every answer (and every failure to get one)
is saved under DIR as it arrives. ``fw run --replay DIR`` swaps the downloader for the
recording: each request is answered from DIR, the network is never touched, and a
request that was not recorded fails as ``not_recorded``, naming the URL. Middlewares,
spider and exporters run as usual, so a recorded crawl replays to identical items.

A recording is one pair of files per request, named by the request's fingerprint
(method, canonical URL, body): ``<fp>.json`` (URL, status, headers, or the failure) and
``<fp>.body`` (the body, as received after decompression). A request fetched more than
once (a retry) keeps its last answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import Any

from multidict import CIMultiDict

from framework.errors import FetchError, UsageError
from framework.fetch.downloader import Fetcher
from framework.fetch.parsers import Parsers
from framework.http import Request, Response, media_type
from framework.http.urls import fingerprint

__all__ = ["Recorder", "Replayer"]


def _key(request: Request) -> str:
    return f"{fingerprint(request):016x}"


class Recorder:
    """A fetcher that fetches with ``inner`` and saves every outcome under ``folder``."""

    def __init__(self, inner: Fetcher, folder: Path) -> None:
        self._inner, self.folder = inner, folder

    async def __aenter__(self) -> Recorder:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--record {self.folder}: {exc.strerror or exc}") from exc
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._inner.__aexit__(kind, error, traceback)

    async def fetch(self, request: Request) -> Response:
        """Fetch ``request`` and record the response or the failure."""
        try:
            response = await self._inner.fetch(request)
        except FetchError as exc:
            self._save(
                request,
                {
                    "error": {
                        "kind": exc.kind,
                        "message": str(exc),
                        "retryable": exc.retryable,
                        "retry_after": exc.retry_after,
                    }
                },
                b"",
            )
            raise
        self._save(
            request,
            {"status": response.status, "headers": list(response.headers.items())},
            response.body,
        )
        return response

    def _save(self, request: Request, outcome: dict[str, Any], body: bytes) -> None:
        key = _key(request)
        (self.folder / f"{key}.body").write_bytes(body)
        record = {"method": request.method, "url": request.url, **outcome}
        # The .json last: a crash between the two leaves no record that lacks its body.
        (self.folder / f"{key}.json").write_text(
            json.dumps(record, ensure_ascii=False), encoding="utf-8"
        )


class Replayer:
    """A fetcher that answers every request from a recording and never opens a socket."""

    def __init__(self, folder: Path, parsers: Parsers) -> None:
        self.folder, self._parsers = folder, parsers

    async def __aenter__(self) -> Replayer:
        if not self.folder.is_dir():
            raise UsageError(
                f"--replay {self.folder}: no such folder (record one with fw run --record)"
            )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Nothing to release."""

    async def fetch(self, request: Request) -> Response:
        """Return the recorded answer, or raise the recorded failure."""
        key = _key(request)
        try:
            record = json.loads((self.folder / f"{key}.json").read_text(encoding="utf-8"))
            body = (self.folder / f"{key}.body").read_bytes()
        except FileNotFoundError:
            raise FetchError(
                "not_recorded",
                f"{request.method} {request.url} is not in the recording {self.folder}",
            ) from None
        if "error" in record:
            error = record["error"]
            raise FetchError(
                error["kind"],
                error["message"],
                retryable=error["retryable"],
                retry_after=error["retry_after"],
            )
        headers = CIMultiDict(record["headers"])
        return Response(
            request.url,
            record["status"],
            headers,
            body,
            request,
            self._parsers.for_type(media_type(headers)),
        )
