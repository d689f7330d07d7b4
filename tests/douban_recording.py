"""Write ``projects/douban-recording/``: a recording of a Douban crawl made from saved pages.

``fw run projects/douban.yaml --replay projects/douban-recording`` shows fw working with
no network. The listing is the real Chengdu "coming soon" page of December 2019
(``tests/fixtures/douban/later_chengdu_2019-12.html``), answered for Beijing's URL; each
film's subject page is one of the three real subject pages saved, in turn, since the
pages of those films were not saved: a film's listing fields are its own, its subject
fields (poster, rating, year, directors) those of the page it was paired with.

``python -m tests.douban_recording`` writes it again; ``tests/plugins/test_douban.py``
checks that the shipped folder is exactly what this makes.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from itertools import cycle
from pathlib import Path
from types import TracebackType

from multidict import CIMultiDict

from framework.crawl import runner
from framework.fetch.recording import Recorder
from framework.http import Request, Response
from framework.spider import run_callback

HERE = Path(__file__).parent
ROOT = HERE.parent
PROJECT = ROOT / "projects" / "douban.yaml"
RECORDING = ROOT / "projects" / "douban-recording"
PAGES = HERE / "fixtures" / "douban"
LISTING = PAGES / "later_chengdu_2019-12.html"
SUBJECTS = [PAGES / f"subject_{n}.html" for n in (1293181, 1417598, 26336252)]
HTML = "text/html; charset=utf-8"


_README = """# A recording of a Douban crawl, made from saved pages

`fw run projects/douban.yaml --replay projects/douban-recording -o movies.jsonl` crawls it
with no network. The listing is Douban's real Chengdu "coming soon" page of December 2019,
answered for Beijing's URL; each film's subject page is one of three real saved subject
pages, in turn: a film's listing fields are its own, its poster, rating, year and
directors those of the page it was paired with. Written by `python -m tests.douban_recording`
from `tests/fixtures/douban/` (whose README says where each page comes from).
"""


class _Saved:
    """A fetcher that answers from saved pages, by URL; robots.txt is missing (404)."""

    def __init__(self, pages: dict[str, Path]) -> None:
        self._pages = pages

    async def __aenter__(self) -> _Saved:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Nothing to release."""

    async def fetch(self, request: Request) -> Response:
        page = self._pages.get(request.url)
        if page is None:
            return Response(
                request.url, 404, CIMultiDict({"Content-Type": "text/plain"}), b"", request
            )
        return Response(
            request.url, 200, CIMultiDict({"Content-Type": HTML}), page.read_bytes(), request
        )


async def write(folder: Path) -> None:
    """Write the recording into ``folder`` (emptied first)."""
    prepared = runner.prepare(PROJECT)
    (start,) = prepared.project.start_urls
    spider = prepared.components.spider
    parsers = prepared.components.parsers
    listing = Response(
        start,
        200,
        CIMultiDict({"Content-Type": HTML}),
        LISTING.read_bytes(),
        Request(start),
        parsers.for_type("text/html"),
    )
    films = (await run_callback(spider, "parse", listing)).requests
    pages = {start: LISTING} | {film.url: page for film, page in zip(films, cycle(SUBJECTS))}
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "README.md").write_text(_README, encoding="utf-8")
    async with Recorder(_Saved(pages), folder) as recorder:
        for request in [
            Request(start.split("/cinema/")[0] + "/robots.txt"),
            listing.request,
            *films,
        ]:
            await recorder.fetch(request)


if __name__ == "__main__":
    asyncio.run(write(Path(sys.argv[1]) if len(sys.argv) > 1 else RECORDING))
