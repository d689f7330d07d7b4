"""The bundled douban spider: its callbacks on real saved pages, and ``fw run`` against a
loopback copy of Douban built from those pages (see tests/fixtures/douban/README.md).

Expected values were read from the fixture files by hand, not computed with the spider.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from fwcrawl_plugins.douban import DoubanSpider

from framework import Blocked, FetchError, Request, Response
from framework.fetch.parsers import parse_html
from tests import douban_recording
from tests.conftest import FIXTURES, Completed, Serve, read_jsonl, run_fw

PAGES = FIXTURES / "douban"
PROJECT = Path(__file__).parents[2] / "projects" / "douban.yaml"
DOUBAN = "https://movie.douban.com"
FIELDS = [
    "id",
    "url",
    "title",
    "release_date",
    "genres",
    "region",
    "wants",
    "poster",
    "rating",
    "year",
    "directors",
]

# The loopback site answers /subject/<id>/ with SUBJECT_PAGES[id % 4].
SUBJECT_PAGES = (
    "subject_26336252.html",
    "subject_1293181.html",
    "subject_1417598.html",
    "subject_1417598_unrated.html",
)
SUBJECT_FIELDS: dict[str, dict[str, Any]] = {
    "subject_26336252.html": {  # 2018 template: .webp poster, /celebrity/ links
        "poster": "https://img3.doubanio.com/view/photo/s_ratio_poster/public/p2529365085.webp",
        "rating": 8.3,
        "year": 2018,
        "directors": ["克里斯托弗·麦奎里"],
    },
    "subject_1293181.html": {
        "poster": "https://img9.doubanio.com/view/photo/s_ratio_poster/public/p1021883305.jpg",
        "rating": 9.0,
        "year": 1960,
        "directors": ["阿尔弗雷德·希区柯克"],
    },
    "subject_1417598.html": {
        "poster": "https://img9.doubanio.com/view/photo/s_ratio_poster/public/p726839485.jpg",
        "rating": 8.7,
        "year": 2004,
        "directors": ["温子仁"],
    },
    "subject_1417598_unrated.html": {
        "poster": "https://img9.doubanio.com/view/photo/s_ratio_poster/public/p726839485.jpg",
        "rating": None,
        "year": 2004,
        "directors": ["温子仁"],
    },
}
NO_SUBJECT: dict[str, Any] = {"poster": None, "rating": None, "year": None, "directors": []}

# Listing fields of chosen films, as the listings write them; the URL's host is added later.
LISTED: dict[str, dict[str, Any]] = {
    # first film of later_chengdu_2019-12.html; 26848640 % 4 == 0
    "26848640": {
        "title": "教授与疯子",
        "release_date": "12月24日",
        "genres": ["剧情", "传记"],
        "region": "爱尔兰",
        "wants": 16577,
    },
    "27065625": {
        "title": "浴血反击",
        "release_date": "12月24日",
        "genres": ["战争"],
        "region": "中国大陆",
        "wants": 156,
    },  # % 4 == 1
    "34906654": {
        "title": "煽疯点火",
        "release_date": "12月24日",
        "genres": ["剧情", "喜剧", "爱情"],
        "region": "中国大陆",
        "wants": 58,
    },  # 2
    "34800447": {
        "title": "妈妈，我想你",
        "release_date": "12月27日",
        "genres": ["剧情", "家庭"],
        "region": "中国大陆",
        "wants": 4646,
    },  # % 4 == 3: the unrated page
    "34901106": {
        "title": "老嘎",
        "release_date": "12月31日",
        "genres": ["喜剧", "爱情"],
        "region": "中国大陆",
        "wants": 43,
    },  # last film of 2019-12
    # first film of later_chengdu_2019-03.html; % 4 == 1
    "27624661": {
        "title": "比悲伤更悲伤的故事",
        "release_date": "03月14日",
        "genres": ["爱情"],
        "region": "台湾",
        "wants": 9652,
    },
    # redirected to the challenge host in one test
    "26715636": {
        "title": "地久天长",
        "release_date": "03月22日",
        "genres": ["剧情", "家庭"],
        "region": "中国大陆",
        "wants": 70742,
    },
    # the one film with no want count; % 4 == 0
    "30474016": {
        "title": "爱无痕",
        "release_date": "03月19日",
        "genres": ["剧情"],
        "region": "中国大陆",
        "wants": None,
    },
}
# The two listings share no film, so a crawl of both exports 21 + 20 items.
FILMS_DECEMBER, FILMS_MARCH = 21, 20


def listed(base: str, subject_id: str) -> dict[str, Any]:
    """Return a chosen film's listing fields, its URL on the site at ``base``."""
    return {"id": subject_id, "url": f"{base}/subject/{subject_id}/", **LISTED[subject_id]}


def expected(base: str, subject_id: str) -> dict[str, Any]:
    """Return the item the loopback site should yield for a chosen film."""
    page = SUBJECT_PAGES[int(subject_id) % len(SUBJECT_PAGES)]
    return listed(base, subject_id) | SUBJECT_FIELDS[page]


def response(url: str, body: bytes, meta: dict[str, Any] | None = None) -> Response:
    return Response(
        url,
        200,
        {"Content-Type": "text/html; charset=utf-8"},
        body,
        Request(url, meta=meta),
        parser=parse_html,
    )


def fixture(name: str) -> bytes:
    return (PAGES / name).read_bytes()


# -------------------------------------------------------------------------------------------
# The callbacks, in process, on the real pages
# -------------------------------------------------------------------------------------------


def test_listing_yields_one_subject_request_per_film_with_its_listing_fields() -> None:
    url = f"{DOUBAN}/cinema/later/chengdu/"
    requests = list(DoubanSpider().parse(response(url, fixture("later_chengdu_2019-03.html"))))
    assert len(requests) == FILMS_MARCH
    assert all(
        isinstance(r, Request) and r.callback == "parse_subject" and r.errback == "subject_failed"
        for r in requests
    )
    assert [r.url for r in requests] == [r.meta["film"]["url"] for r in requests]
    by_id = {r.meta["film"]["id"]: r for r in requests}
    assert by_id["27624661"] is requests[0]
    for subject_id in ("27624661", "30474016"):
        request = by_id[subject_id]
        assert request.url == f"{DOUBAN}/subject/{subject_id}/"
        assert request.meta == {"film": listed(DOUBAN, subject_id)}
        # A persistent frontier stores meta as JSON.
        assert json.loads(json.dumps(request.meta)) == request.meta


def test_listing_from_december_2019() -> None:
    url = f"{DOUBAN}/cinema/later/chengdu/"
    requests = list(DoubanSpider().parse(response(url, fixture("later_chengdu_2019-12.html"))))
    assert len(requests) == FILMS_DECEMBER
    assert requests[0].meta["film"] == listed(DOUBAN, "26848640")
    assert requests[-1].meta["film"] == listed(DOUBAN, "34901106")


def test_listing_entries_are_told_apart_by_content_and_links_resolved_against_the_page() -> None:
    page = """<html><head><title>北京影讯</title></head><body><div id="showing-soon">
      <div class="item mod"><div class="intro"><h3><a href="/subject/11/"> 甲 </a></h3><ul>
        <li class="dt">剧情 / 动画</li><li class="dt">日本</li>
        <li class="dt last"><span>7人想看</span></li>
        <li><a class="ticket_btn">3家影院有影讯 »</a></li></ul></div></div>
      <div class="item mod odd"><div class="intro"><h3><a href="../../../subject/22/">乙</a></h3>
        <ul><li class="dt">1月5日</li><li class="dt">喜剧</li><li class="dt">法国</li>
        <li class="dt last"><span>%s人想看</span></li></ul>
      </div></div>
    </div></body></html>""" % ("9" * 5_000)  # no count: not the listing's end
    url = "http://mirror.test/cinema/later/beijing/"
    films = [r.meta["film"] for r in DoubanSpider().parse(response(url, page.encode()))]
    assert films == [
        {
            "id": "11",
            "url": "http://mirror.test/subject/11/",
            "title": "甲",
            "release_date": None,
            "genres": ["剧情", "动画"],
            "region": "日本",
            "wants": 7,
        },
        {
            "id": "22",
            "url": "http://mirror.test/subject/22/",
            "title": "乙",
            "release_date": "1月5日",
            "genres": ["喜剧"],
            "region": "法国",
            "wants": None,
        },
    ]


@pytest.mark.parametrize("page", list(SUBJECT_FIELDS))
def test_subject_page_completes_the_film(page: str) -> None:
    film = listed(DOUBAN, "30474016")
    url = f"{DOUBAN}/subject/30474016/"
    items = list(DoubanSpider().parse_subject(response(url, fixture(page), {"film": film})))
    assert items == [film | SUBJECT_FIELDS[page]]
    assert list(items[0]) == FIELDS


def test_failed_subject_page_still_exports_the_film_from_the_listing() -> None:
    film = listed(DOUBAN, "27624661")
    request = Request(film["url"], meta={"film": film})
    items = list(DoubanSpider().subject_failed(request, FetchError("timeout", "timed out")))
    assert items == [film | NO_SUBJECT]
    assert list(items[0]) == FIELDS


CHALLENGE = """<html><head><title>豆瓣</title></head><body>
  <p>检测到有异常请求从你的 IP 发出，请 <a href="/login">登录</a> 使用豆瓣。</p></body></html>"""


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (fixture("login_wall.html"), "a login wall"),
        (CHALLENGE.encode(), "a challenge page"),
        (fixture("subject_1293181.html"), "no #showing-soon"),
    ],
    ids=["login-wall", "challenge-text", "no-showing-soon"],
)
def test_a_listing_that_is_not_one_is_reported_blocked(body: bytes, reason: str) -> None:
    url = f"{DOUBAN}/cinema/later/beijing/"
    with pytest.raises(Blocked, match=f"^{re.escape(reason)}"):
        list(DoubanSpider().parse(response(url, body)))


def test_an_empty_listing_is_not_blocked() -> None:
    body = '<html><body><div id="showing-soon" class="tab-bd"></div></body></html>'
    assert (
        list(DoubanSpider().parse(response(f"{DOUBAN}/cinema/later/lhasa/", body.encode()))) == []
    )


def test_a_walled_subject_page_exports_the_listing_data_then_reports_blocked() -> None:
    film = listed(DOUBAN, "27065625")
    results = DoubanSpider().parse_subject(
        response(film["url"], fixture("login_wall.html"), {"film": film})
    )
    assert next(results) == film | NO_SUBJECT
    with pytest.raises(Blocked, match=r"^a login wall .* instead of the film's page"):
        next(results)


# -------------------------------------------------------------------------------------------
# fw run projects/douban.yaml against a loopback copy of Douban
# -------------------------------------------------------------------------------------------

LISTINGS = {"beijing": "later_chengdu_2019-12.html", "chengdu": "later_chengdu_2019-03.html"}


def html(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="text/html", charset="utf-8")


async def start_douban(
    serve: Serve,
    *,
    listings: Mapping[str, str] = LISTINGS,
    statuses: Mapping[str, int] | None = None,
    walled: Collection[str] = (),
    hits: dict[str, int] | None = None,
    challenged: Collection[str] = (),
    posters: dict[str, int] | None = None,
) -> str:
    """Serve the fixtures as Douban would, with Douban's URLs pointing at this server.

    ``statuses`` makes some subject ids answer with an error status, ``walled`` with the
    login wall, ``challenged`` with a redirect to Douban's challenge host; ``hits`` counts
    requests by path. With ``posters`` (counting requests by path), the posters' image
    hosts are served here too: ``https://img3.doubanio.com/…`` is ``BASE/img3.doubanio.com/…``.
    """
    base = ""
    counts = {} if hits is None else hits

    async def listing(request: web.Request) -> web.Response:
        counts[request.path] = counts.get(request.path, 0) + 1
        name = listings.get(request.match_info["city"])
        if name is None:
            raise web.HTTPNotFound
        body = fixture(name)
        return html(
            body if name == "login_wall.html" else body.replace(DOUBAN.encode(), base.encode())
        )

    async def subject(request: web.Request) -> web.Response:
        counts[request.path] = counts.get(request.path, 0) + 1
        subject_id = request.match_info["id"]
        if statuses and subject_id in statuses:
            return web.Response(status=statuses[subject_id], text="no such film")
        if subject_id in walled:
            return html(fixture("login_wall.html"))
        if subject_id in challenged:
            raise web.HTTPFound(f"https://sec.douban.com/b?r={request.path}")
        page = fixture(SUBJECT_PAGES[int(subject_id) % len(SUBJECT_PAGES)])
        if posters is not None:
            page = re.sub(rb"https://(img\d\.doubanio\.com)", base.encode() + rb"/\1", page)
        return html(page)

    async def poster(request: web.Request) -> web.Response:
        assert posters is not None
        posters[request.path] = posters.get(request.path, 0) + 1
        return web.Response(body=b"poster " + request.path.encode(), content_type="image/jpeg")

    app = web.Application()
    app.router.add_get(r"/{host:img\d\.doubanio\.com}/{path:.*}", poster)
    app.router.add_get("/cinema/later/{city}/", listing)
    app.router.add_get(r"/subject/{id:\d+}/", subject)
    base = await serve(app)
    return base


async def run_douban(
    tmp_path: Path,
    base: str,
    cities: Collection[str] = LISTINGS,
    *overrides: str,
    project: Path = PROJECT,
) -> tuple[Completed, list[dict[str, Any]], dict[str, Any]]:
    """Run ``fw run projects/douban.yaml`` pointed at ``base``; return items and stats."""
    starts = ", ".join(f"{base}/cinema/later/{city}/" for city in cities)
    out, stats = tmp_path / "movies.jsonl", tmp_path / "stats.json"
    result = await run_fw(
        "run",
        str(project),
        "-s",
        f"start_urls=[{starts}]",
        "-s",
        "allowed_domains=[127.0.0.1]",
        "-s",
        "delay=0",
        "-s",
        "exporters=[]",
        *overrides,
        "-o",
        str(out),
        "--stats",
        str(stats),
        cwd=tmp_path,
    )
    items = read_jsonl(out) if out.exists() else []
    return result, items, json.loads(stats.read_text(encoding="utf-8"))


async def test_fw_run_exports_every_film_of_every_listing(tmp_path: Path, serve: Serve) -> None:
    hits: dict[str, int] = {}
    base = await start_douban(serve, hits=hits)
    result, items, stats = await run_douban(tmp_path, base)
    assert result.returncode == 0, result.stderr
    assert "blocked" not in result.stderr
    assert len(items) == stats["items"] == FILMS_DECEMBER + FILMS_MARCH
    assert stats["errors"] == {} and stats["pages"] == 2 + len(items)
    assert set(hits.values()) == {1}  # each listing and subject page fetched once
    by_id = {item["id"]: item for item in items}
    assert len(by_id) == len(items)
    for subject_id in LISTED:
        assert by_id[subject_id] == expected(base, subject_id), subject_id
    for item in items:
        assert list(item) == FIELDS
        assert item["url"] == f"{base}/subject/{item['id']}/"
        assert isinstance(item["title"], str) and item["title"] == item["title"].strip() != ""
        assert re.fullmatch(r"\d{2}月\d{2}日", item["release_date"])
        assert item["genres"] and all(isinstance(g, str) and g for g in item["genres"])
        assert isinstance(item["region"], str) and item["region"]
        if item["id"] == "30474016":  # the listing shows no want count for it
            assert item["wants"] is None
        else:
            assert isinstance(item["wants"], int) and item["wants"] > 0
        page = SUBJECT_PAGES[int(item["id"]) % len(SUBJECT_PAGES)]
        assert {k: item[k] for k in NO_SUBJECT} == SUBJECT_FIELDS[page]


async def test_fw_run_exports_films_whose_subject_page_failed(tmp_path: Path, serve: Serve) -> None:
    hits: dict[str, int] = {}
    base = await start_douban(
        serve, statuses={"30474016": 404, "27624661": 503}, hits=hits, challenged={"26715636"}
    )
    result, items, stats = await run_douban(
        tmp_path, base, ["chengdu"], "-s", "backoff={base: 0.01, max: 0.05}"
    )
    assert result.returncode == 0, result.stderr
    assert len(items) == FILMS_MARCH
    by_id = {item["id"]: item for item in items}
    assert by_id["30474016"] == listed(base, "30474016") | NO_SUBJECT
    assert by_id["27624661"] == listed(base, "27624661") | NO_SUBJECT
    # A redirect to the challenge host is outside allowed_domains: a failure, not a loss.
    assert by_id["26715636"] == listed(base, "26715636") | NO_SUBJECT
    assert sum(item["poster"] is None for item in items) == 3
    # 404 fails at once; 503 is retried (retries: 3 in the project) before the errback runs.
    assert stats["errors"] == {"http_404": 1, "http_503": 1, "offsite_redirect": 1}
    assert stats["retries"] == 3
    assert hits["/subject/27624661/"] == 4 and hits["/subject/30474016/"] == 1


@pytest.mark.parametrize("dropped", ["depth", "offsite"])
async def test_fw_run_exports_films_whose_subject_page_the_crawl_does_not_fetch(
    tmp_path: Path, serve: Serve, dropped: str
) -> None:
    hits: dict[str, int] = {}
    base = await start_douban(serve, hits=hits)
    if dropped == "depth":
        listing, override = base, "max_depth=0"
    else:  # the listing on a host of its own, the subjects it links to on another
        listing = base.replace("127.0.0.1", "localhost")
        override = f"allowed_domains=[localhost:{urlsplit(base).port}]"
    starts = f"start_urls=[{listing}/cinema/later/chengdu/]"
    result, items, stats = await run_douban(tmp_path, base, [], "-s", starts, "-s", override)
    assert result.returncode == 0, result.stderr
    assert not [path for path in hits if path.startswith("/subject/")]
    assert len(items) == FILMS_MARCH
    assert all({key: item[key] for key in NO_SUBJECT} == NO_SUBJECT for item in items)
    chosen = [item for item in items if item["id"] in LISTED]
    assert chosen and all(item == listed(base, item["id"]) | NO_SUBJECT for item in chosen)
    assert stats["filtered"] == {dropped: FILMS_MARCH} and stats["errors"] == {}


async def test_fw_run_reports_a_host_that_refuses_everything(tmp_path: Path, serve: Serve) -> None:
    async def teapot(request: web.Request) -> web.Response:
        return web.Response(status=418)

    app = web.Application()
    app.router.add_get("/{tail:.*}", teapot)
    base = await serve(app)
    result, items, stats = await run_douban(tmp_path, base)
    assert result.returncode == 1, result.stderr  # nothing fetched: a scheduler must see it
    assert items == [] and stats["errors"] == {"http_418": 2}
    blocked = [line for line in result.stderr.splitlines() if line.startswith("blocked:")]
    assert len(blocked) == 1 and blocked[0].startswith("blocked: 127.0.0.1 answered HTTP 418")


async def test_fw_run_reports_login_walls_served_with_200(tmp_path: Path, serve: Serve) -> None:
    base = await start_douban(
        serve,
        walled={"30474016"},
        listings={"beijing": "login_wall.html", "chengdu": "later_chengdu_2019-03.html"},
    )
    result, items, stats = await run_douban(tmp_path, base)
    assert result.returncode == 0, result.stderr
    assert stats["errors"] == {"blocked": 2}
    walls = [line for line in result.stderr.splitlines() if "login wall" in line]
    assert len(walls) == 2
    # One line each, naming the page: "ERROR: blocked: a login wall (...) ... (URL)".
    assert any(
        line.startswith("ERROR: blocked: a login wall")
        and line.endswith(f"({base}/cinema/later/beijing/)")
        for line in walls
    )
    assert any(line.endswith(f"({base}/subject/30474016/)") for line in walls)
    # The walled subject page's film is still exported, from the listing.
    assert len(items) == FILMS_MARCH
    assert next(i for i in items if i["id"] == "30474016") == listed(base, "30474016") | NO_SUBJECT


async def test_fw_run_with_subjects_false_exports_the_listings_only(
    tmp_path: Path, serve: Serve
) -> None:
    hits: dict[str, int] = {}
    base = await start_douban(serve, hits=hits)
    result, items, stats = await run_douban(
        tmp_path, base, ["chengdu"], "-s", "douban.subjects=false"
    )
    assert result.returncode == 0, result.stderr
    assert len(items) == stats["items"] == FILMS_MARCH
    assert hits == {"/cinema/later/chengdu/": 1}  # no subject page was fetched
    by_id = {item["id"]: item for item in items}
    for subject_id in ("27624661", "26715636", "30474016"):
        assert by_id[subject_id] == listed(base, subject_id) | NO_SUBJECT


async def test_the_commented_files_section_saves_every_poster_once(
    tmp_path: Path, serve: Serve
) -> None:
    text = PROJECT.read_text(encoding="utf-8")
    block = text[text.index("# files:") :]
    uncommented = "\n".join(line.removeprefix("# ") for line in block.splitlines())
    project = tmp_path / "douban.yaml"
    project.write_text(text.replace(block, uncommented + "\n"), encoding="utf-8")
    posters: dict[str, int] = {}
    base = await start_douban(serve, posters=posters)
    result, items, stats = await run_douban(tmp_path, base, ["beijing"], project=project)
    assert result.returncode == 0, result.stderr
    assert stats["errors"] == {} and len(items) == FILMS_DECEMBER
    # The subject pages repeat: films share posters, and each poster is fetched once.
    assert posters and set(posters.values()) == {1}
    assert stats["downloads"] == len(posters)
    for item in items:
        [saved] = item["files"]
        assert saved["url"] == item["poster"] and saved["error"] is None
        body = (tmp_path / "out" / "posters" / saved["path"]).read_bytes()
        assert body == b"poster " + urlsplit(item["poster"]).path.encode()
        assert saved["sha256"] == hashlib.sha256(body).hexdigest()


async def test_a_misspelt_douban_option_is_a_located_error(tmp_path: Path) -> None:
    project = tmp_path / "douban.yaml"
    project.write_text(
        PROJECT.read_text(encoding="utf-8") + "douban:\n  subject: false\n", encoding="utf-8"
    )
    lines = project.read_text(encoding="utf-8").count("\n")
    result = await run_fw("check", str(project))
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: {project}:{lines}: douban.subject: unknown key (did you mean 'subjects'?)\n"
    )


# -------------------------------------------------------------------------------------------
# The shipped recording: fw seen working with no network
# -------------------------------------------------------------------------------------------

ELEVEN = {
    "id",
    "url",
    "title",
    "release_date",
    "genres",
    "region",
    "wants",
    "poster",
    "rating",
    "year",
    "directors",
}


async def test_the_readme_replay_command_gives_every_film_with_its_eleven_fields(
    tmp_path: Path,
) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    (command,) = re.findall(r"`(fw run projects/douban\.yaml --replay [^`]+)`", readme)
    shutil.copytree(PROJECT.parent, tmp_path / "projects")
    done = await run_fw(*shlex.split(command)[1:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    films = read_jsonl(tmp_path / "movies.jsonl")
    assert len(films) == 21 and all(set(film) == ELEVEN for film in films)
    assert all(film["poster"] and film["year"] and film["directors"] for film in films)
    assert "21 items exported, 0 errors" in done.stderr


async def test_the_shipped_recording_is_what_the_saved_pages_make(tmp_path: Path) -> None:
    await douban_recording.write(tmp_path / "made")
    shipped = sorted(p.name for p in douban_recording.RECORDING.iterdir())
    assert shipped == sorted(p.name for p in (tmp_path / "made").iterdir())
    for name in shipped:
        made = (tmp_path / "made" / name).read_bytes()
        assert (douban_recording.RECORDING / name).read_bytes() == made, name
