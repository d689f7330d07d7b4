"""The schema plugin: items checked against the spider's ``Item`` type, columns up front.

A loopback site answers every page; the spider in ``films.py`` yields, for a page
``/N``, the items listed under N in its ``YIELDS`` table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web
from fwcrawl_plugins.douban import DoubanSpider, Film

from framework.errors import PluginError
from tests.conftest import Serve, crawl, read_jsonl, run_fw, write_project

SPIDER = """
from dataclasses import dataclass, field
from framework import Spider, hookimpl
from typing_extensions import NotRequired, TypedDict

@dataclass
class Movie:
    title: str
    wants: int
    rating: float | None = None
    genres: list[str] = field(default_factory=list)

class Shown(TypedDict):
    title: str
    rating: NotRequired[float]
    tags: NotRequired[list[str]]

YIELDS = {
    "good": [{"title": "Alien", "wants": 12}],
    "coerced": [{"title": "Brazil", "wants": "3", "rating": "8.5", "genres": ("drama",)}],
    "wrong": [{"title": "Dune", "wants": "many"}],
    "missing": [{"wants": 1}],
    "typo": [{"title": "Heat", "wants": 2, "ratnig": 7.0}],
    "lossy": [{"title": "Ran", "wants": "03"}, {"title": "Zelig", "wants": 4.5}],
    "boolean": [{"title": "Up", "wants": True}],
    "mixed": [{"title": "Jaws", "wants": 9}, {"title": 7, "wants": 9}],
}

class Films(Spider):
    name = "films"
    Item = Movie

    def parse(self, response):
        for page in ("good", "coerced", "wrong", "missing", "typo", "lossy", "boolean", "mixed"):
            yield response.follow("/" + page)
        yield from YIELDS.get(response.url.rsplit("/", 1)[1], [])

class Shows(Spider):
    name = "shows"
    Item = Shown

    def parse(self, response):
        yield {"title": "First"}
        yield {"title": "Second", "tags": ["a", "b"], "rating": 7}

class Broken(Spider):
    name = "broken"
    Item = int

@hookimpl
def register_spiders(register):
    register(Films)
    register(Shows)
    register(Broken)
"""


def site() -> web.Application:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>a page</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    return app


def films_project(folder: Path, base: str, spider: str = "films") -> Path:
    (folder / "films.py").write_text(SPIDER, encoding="utf-8")
    return write_project(
        folder,
        f"""
        spider: {spider}
        start_urls: [{base}/]
        plugins: [./films.py]
        robots: ignore
        """,
    )


async def test_invalid_items_are_counted_logged_listed_and_not_exported(
    serve: Serve, tmp_path: Path
) -> None:
    base = await serve(site())
    file = films_project(tmp_path, base)
    out, stats = tmp_path / "films.jsonl", tmp_path / "stats.json"
    done = await run_fw("run", str(file), "-o", str(out), "--stats", str(stats))
    assert done.returncode == 0, done.stderr
    exported = read_jsonl(out)
    # Valid items go on whole, in the type's field order, defaults filled in; lossless
    # conversions made ("3" -> 3, "8.5" -> 8.5, a tuple -> a list).
    assert sorted(exported, key=lambda item: item["title"]) == [
        {"title": "Alien", "wants": 12, "rating": None, "genres": []},
        {"title": "Brazil", "wants": 3, "rating": 8.5, "genres": ["drama"]},
        {"title": "Jaws", "wants": 9, "rating": None, "genres": []},
    ]
    assert all(list(item) == ["title", "wants", "rating", "genres"] for item in exported)
    assert json.loads(stats.read_text())["errors"] == {"item_invalid": 7}
    log = done.stderr
    for page, field, reason in [
        ("wrong", "wants", "Input should be a valid integer"),
        ("missing", "title", "required by Movie, but missing"),
        ("typo", "ratnig", "not a field of Movie"),
        ("lossy", "wants", "'03' would become 3, which does not read back the same"),
        ("lossy", "wants", "4.5"),
        ("boolean", "wants", "True would become 1"),
        ("mixed", "title", "Input should be a valid string"),
    ]:
        assert any(
            line.startswith("ERROR: item_invalid: spider films: item not exported: ")
            and f"field {field}: " in line
            and reason in line
            and line.endswith(f"({base}/{page})")
            for line in log.splitlines()
        ), (page, field, reason, log)
    # Each page with an invalid item is in the failures file, to be fetched again.
    failures = read_jsonl(tmp_path / "project.failures.jsonl")
    assert sorted(f["request"]["url"] for f in failures) == [
        f"{base}/{page}" for page in ("boolean", "lossy", "missing", "mixed", "typo", "wrong")
    ]
    assert {f["kind"] for f in failures} == {"item_invalid"}
    assert "field ratnig: not a field of Movie" in next(
        f["reason"] for f in failures if f["request"]["url"].endswith("/typo")
    )


async def test_a_csv_header_has_every_field_of_the_type_from_the_first_row(
    serve: Serve, tmp_path: Path
) -> None:
    base = await serve(site())
    file = films_project(tmp_path, base, spider="shows")
    await crawl(file, outputs=(str(tmp_path / "shows.csv"),))
    rows = (tmp_path / "shows.csv").read_text(encoding="utf-8").splitlines()
    # The first item has only a title, but the header names every field of Shown, in order.
    assert rows == ["title,rating,tags", "First,,", 'Second,7.0,"[""a"",""b""]"']


async def test_a_sqlite_table_has_every_field_of_the_type_from_the_start(
    serve: Serve, tmp_path: Path
) -> None:
    import sqlite3

    base = await serve(site())
    file = films_project(tmp_path, base, spider="shows")
    await crawl(file, outputs=(str(tmp_path / "shows.db"),))
    with sqlite3.connect(tmp_path / "shows.db") as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(items)")]
        rows = db.execute("SELECT title, rating, tags FROM items ORDER BY rowid").fetchall()
    assert columns[-3:] == ["title", "rating", "tags"]
    assert rows == [("First", None, None), ("Second", 7.0, '["a","b"]')]


def test_an_item_type_pydantic_cannot_check_stops_the_crawl_naming_it(tmp_path: Path) -> None:
    from framework.crawl.runner import prepare

    file = films_project(tmp_path, "http://a.test", spider="broken")
    expected = r"plugin 'schema'.*: item_step raised.*spider broken: Item = <class 'int'>: expected"
    with pytest.raises(PluginError, match=expected):
        prepare(file)


def test_the_douban_spider_declares_film() -> None:
    assert DoubanSpider.Item is Film
