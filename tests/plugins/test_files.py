"""The files plugin: posters downloaded through the crawl's own fetching, stored by content.

A film site and an image host run on loopback (aiohttp); the ``rules`` spider yields one
item per film with its poster's URL, and ``files:`` downloads them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import signal
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fwcrawl_plugins.files import FilesStep

from framework.crawl.runner import prepare
from framework.errors import ProjectError
from tests.conftest import (
    Serve,
    crawl,
    fw_command,
    pages,
    read_jsonl,
    run_fw,
    write_project,
)


class ImageHost:
    """Serve images by name, counting requests and how many were in flight at once.

    ``/missing.png`` is a 404, ``/big.png`` is ``big`` bytes, ``/moved.png`` redirects to
    ``moved_to``, ``/flaky.png`` fails with 503 once; ``/held.png`` waits for ``release``.
    """

    def __init__(self, robots: str = "", big: int = 0) -> None:
        self.hits: Counter[str] = Counter()
        self.authorization: set[str | None] = set()  # what each request, robots.txt too, had
        self.starts: list[float] = []
        self.inflight = self.most = 0
        self.robots, self.big = robots, big
        self.moved_to = ""
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    @staticmethod
    def body(name: str) -> bytes:
        return b"\x89PNG image of " + name.encode()

    async def start(self, serve: Serve) -> str:
        app = web.Application()
        app.router.add_get("/robots.txt", self._robots)
        app.router.add_get("/{name}", self._image)
        return await serve(app)

    async def _robots(self, request: web.Request) -> web.Response:
        self.authorization.add(request.headers.get("Authorization"))
        return web.Response(text=self.robots) if self.robots else web.Response(status=404)

    async def _image(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[name] += 1
        self.authorization.add(request.headers.get("Authorization"))
        self.starts.append(asyncio.get_running_loop().time())
        self.inflight += 1
        self.most = max(self.most, self.inflight)
        try:
            return await self._answer(name)
        finally:
            self.inflight -= 1

    async def _answer(self, name: str) -> web.StreamResponse:
        await asyncio.sleep(0.02)  # long enough for requests to overlap if they may
        if name == "missing.png":
            return web.Response(status=404)
        if name == "flaky.png" and self.hits[name] == 1:
            return web.Response(status=503)
        if name == "moved.png":
            raise web.HTTPFound(self.moved_to)
        if name == "held.png":
            self.holding.set()
            await self.release.wait()
        body = b"x" * self.big if name == "big.png" else self.body(name)
        return web.Response(body=body, content_type="image/png")


def film_site(films: list[tuple[str, str]], pages: int = 1) -> web.Application:
    """``pages`` listing pages (``/``, ``/2``, ...), each with every film: (title, poster)."""
    listing = "".join(
        f'<div class="film"><h2>{title}</h2><img src="{poster}"></div>' for title, poster in films
    )
    links = "".join(f'<a href="/{n}">page {n}</a>' for n in range(2, pages + 1))

    async def page(request: web.Request) -> web.Response:
        number = request.path.strip("/") or "1"
        return web.Response(
            text=f"<h1>{number}</h1>{listing}{links}".replace("<h2>", f"<h2>{number}:"),
            content_type="text/html",
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    return app


def project(folder: Path, site: str, files: str = "{fields: [poster]}", more: str = "") -> Path:
    return write_project(
        folder,
        textwrap.dedent(f"""
        spider: rules
        start_urls: [{site}/]
        robots: ignore
        rules:
          follow: [a]
          items:
            - each: div.film
              fields:
                title: h2::text
                poster: {{css: img, type: url}}
        files: {files}
        """)
        + more,
    )


async def crawl_films(
    serve: Serve, folder: Path, films: list[tuple[str, str]], **kwargs: Any
) -> tuple[list[dict[str, Any]], Any]:
    site = await serve(film_site(films, kwargs.pop("pages", 1)))
    stats = await crawl(project(folder, site, **kwargs), outputs=(str(folder / "items.jsonl"),))
    return read_jsonl(folder / "items.jsonl"), stats


# ---------------------------------------------------------------------------------------
# What an item gets
# ---------------------------------------------------------------------------------------


async def test_posters_are_stored_by_their_hash_and_listed_in_each_item(
    serve: Serve, tmp_path: Path
) -> None:
    images = ImageHost()
    host = await images.start(serve)
    films = [("Alien", f"{host}/alien.jpg"), ("Brazil", f"{host}/brazil")]
    items, stats = await crawl_films(serve, tmp_path, films, files="{fields: [poster], dir: out}")
    assert [item["title"] for item in items] == ["1:Alien", "1:Brazil"]
    for item, name in zip(items, ("alien.jpg", "brazil"), strict=True):
        body = ImageHost.body(name)
        sha = hashlib.sha256(body).hexdigest()
        # No extension in the URL: the content type gives one.
        suffix = ".jpg" if name.endswith(".jpg") else ".png"
        assert item["files"] == [
            {
                "url": f"{host}/{name}",
                "path": f"{sha[:2]}/{sha}{suffix}",
                "sha256": sha,
                "size": len(body),
                "error": None,
            }
        ]
        assert (tmp_path / "out" / item["files"][0]["path"]).read_bytes() == body
    assert stats.downloads == 2 and stats.pages == 1
    assert not list((tmp_path / "out").rglob(".*.part"))  # nothing half-written is left


async def test_a_stored_file_damaged_on_disk_is_written_again(serve: Serve, tmp_path: Path) -> None:
    images = ImageHost()
    host = await images.start(serve)
    films = [("Alien", f"{host}/alien.jpg")]
    items, _ = await crawl_films(serve, tmp_path, films, files="{fields: [poster], dir: out}")
    stored = tmp_path / "out" / items[0]["files"][0]["path"]
    stored.write_bytes(bytes(len(stored.read_bytes())))  # as many bytes, all zero
    await crawl_films(serve, tmp_path, films, files="{fields: [poster], dir: out}")
    assert stored.read_bytes() == ImageHost.body("alien.jpg")


async def test_a_url_many_items_share_is_fetched_once(serve: Serve, tmp_path: Path) -> None:
    images = ImageHost()
    host = await images.start(serve)
    films = [(f"Film {n}", f"{host}/poster{n % 2}.png") for n in range(6)]
    items, _ = await crawl_films(serve, tmp_path, films, pages=3)  # on pages fetched at once
    assert len(items) == 18
    assert images.hits == {"poster0.png": 1, "poster1.png": 1}
    by_url = {item["files"][0]["url"]: item["files"][0] for item in items}
    for item in items:
        assert item["files"] == [by_url[item["poster"]]]
        assert item["files"][0]["error"] is None


async def test_urls_that_differ_only_in_their_fragment_are_one_download(
    serve: Serve, tmp_path: Path
) -> None:
    images = ImageHost()
    host = await images.start(serve)
    films = [("Film 0", f"{host}/poster0.png"), ("Film 1", f"{host}/poster0.png#large")]
    site = await serve(film_site(films))
    path = project(tmp_path, site)  # the poster as written, fragment and all
    path.write_text(path.read_text().replace("{css: img, type: url}", "{css: img, attr: src}"))
    await crawl(path, outputs=(str(tmp_path / "items.jsonl"),))
    items = read_jsonl(tmp_path / "items.jsonl")
    assert [item["poster"] for item in items] == [url for _, url in films]
    assert images.hits == {"poster0.png": 1}  # a fragment is never sent: one file
    assert [item["files"][0]["url"] for item in items] == [f"{host}/poster0.png"] * 2


async def test_several_urls_in_a_field_and_an_item_without_any(
    serve: Serve, tmp_path: Path
) -> None:
    images = ImageHost()
    host = await images.start(serve)
    site = await serve(
        film_site([("Alien", f"{host}/a.png"), ("Blank", ""), ("Relative", "/rel.png")])
    )
    folder = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{site}/]
        robots: ignore
        rules:
          items:
            - each: div.film
              fields:
                title: h2::text
                stills: {{css: 'img::attr(src)', many: true}}
                extra: {{const: "{host}/a.png"}}
        files: {{fields: [stills, extra]}}
        """,
    )
    await crawl(folder, outputs=(str(tmp_path / "items.jsonl"),))
    items = {item["title"]: item for item in read_jsonl(tmp_path / "items.jsonl")}
    # One entry per distinct URL, in the order the fields give them.
    assert [f["url"] for f in items["1:Alien"]["files"]] == [f"{host}/a.png"]
    assert [f["url"] for f in items["1:Blank"]["files"]] == [f"{host}/a.png"]
    # A relative URL is read against the page, as the browser would.
    assert [f["url"] for f in items["1:Relative"]["files"]] == [f"{site}/rel.png", f"{host}/a.png"]
    assert images.hits["a.png"] == 1


# ---------------------------------------------------------------------------------------
# Failures: counted, recorded in the item, never a lost item
# ---------------------------------------------------------------------------------------


async def test_a_failed_download_is_counted_and_recorded_and_its_item_exported(
    serve: Serve, tmp_path: Path
) -> None:
    images = ImageHost(big=5000)
    host = await images.start(serve)
    films = [
        ("Gone", f"{host}/missing.png"),
        ("Huge", f"{host}/big.png"),
        ("Flaky", f"{host}/flaky.png"),
        ("Mail", "mailto:someone@example.com"),
        ("Fine", f"{host}/fine.png"),
    ]
    items, stats = await crawl_films(
        serve, tmp_path, films, files="{fields: [poster], max_size: 4KB}", more="retries: 1\n"
    )
    files = {item["title"]: item["files"][0] for item in items}
    assert len(items) == 5  # none is lost
    assert files["1:Gone"] == {
        "url": f"{host}/missing.png",
        "path": None,
        "sha256": None,
        "size": None,
        "error": "http_404: HTTP 404",
    }
    assert files["1:Huge"]["error"] == "too_large: body larger than its max_size (4000 bytes)"
    assert files["1:Mail"]["error"] == "scheme: 'mailto:someone@example.com' is not an http(s) URL"
    assert files["1:Flaky"]["error"] is None and images.hits["flaky.png"] == 2  # retried
    assert files["1:Fine"]["error"] is None
    assert stats.errors == {"http_404": 1, "too_large": 1, "scheme": 1}  # each said
    assert stats.retries == 1


async def test_a_malformed_url_fails_on_its_own_and_its_neighbours_download(
    serve: Serve, tmp_path: Path
) -> None:
    images = ImageHost()
    host = await images.start(serve)
    imgs = f'<img src="{host}/a.png"><img src="http://[zz]/c.png"><img src="{host}/b.png">'
    site = await serve(pages({"/": f"<h1>Alien</h1>{imgs}"}))
    folder = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{site}/]
        robots: ignore
        rules: {{items: [{{fields: {{stills: {{css: 'img::attr(src)', many: true}}}}}}]}}
        files: {{fields: [stills]}}
        """,
    )
    stats = await crawl(folder, outputs=(str(tmp_path / "items.jsonl"),))
    [item] = read_jsonl(tmp_path / "items.jsonl")
    assert [(f["url"], f["error"]) for f in item["files"]] == [
        (f"{host}/a.png", None),
        ("http://[zz]/c.png", "invalid_url: 'http://[zz]/c.png' is not a valid URL"),
        (f"{host}/b.png", None),
    ]
    assert images.hits == {"a.png": 1, "b.png": 1}
    assert stats.errors == {"invalid_url": 1}


@pytest.mark.parametrize("in_the_way", ["a file", "a link"])
async def test_a_file_that_cannot_be_stored_is_counted_and_recorded(
    serve: Serve, tmp_path: Path, in_the_way: str
) -> None:
    images = ImageHost()
    host = await images.start(serve)
    sha = hashlib.sha256(ImageHost.body("a.png")).hexdigest()
    (tmp_path / "files").mkdir()
    (tmp_path / "elsewhere").mkdir()
    if in_the_way == "a file":  # its folder cannot be made
        (tmp_path / "files" / sha[:2]).write_text("in the way")
    else:  # planted for its folder: never written through
        (tmp_path / "files" / sha[:2]).symlink_to(tmp_path / "elsewhere")
    items, stats = await crawl_films(serve, tmp_path, [("Alien", f"{host}/a.png")])
    [entry] = items[0]["files"]
    assert entry["path"] is None and entry["sha256"] is None
    assert entry["error"].startswith(f"cannot store it in {(tmp_path / 'files').resolve()}: ")
    assert stats.errors == {"file_error": 1}
    assert not list((tmp_path / "elsewhere").iterdir())


async def test_robots_txt_of_the_image_host_is_obeyed(serve: Serve, tmp_path: Path) -> None:
    images = ImageHost(robots="User-agent: *\nDisallow: /private\n")
    host = await images.start(serve)
    site = await serve(film_site([("Secret", f"{host}/private.png"), ("Open", f"{host}/a.png")]))
    folder = project(tmp_path, site).parent
    text = (folder / "project.yaml").read_text().replace("robots: ignore", "robots: obey")
    (folder / "project.yaml").write_text(text)
    stats = await crawl(folder / "project.yaml", outputs=(str(tmp_path / "items.jsonl"),))
    files = {i["title"]: i["files"][0] for i in read_jsonl(tmp_path / "items.jsonl")}
    assert files["1:Secret"]["error"] == "robots: forbidden by robots.txt"
    assert files["1:Open"]["error"] is None
    assert "private.png" not in images.hits
    assert stats.errors["robots"] == 1


async def test_a_redirect_to_another_host_is_followed(serve: Serve, tmp_path: Path) -> None:
    images, cdn = ImageHost(), ImageHost()
    host, cdn_host = await images.start(serve), await cdn.start(serve)
    cdn_host = cdn_host.replace("127.0.0.1", "localhost")  # another host than the pages'
    images.moved_to = f"{cdn_host}/real.gif"
    items, _ = await crawl_films(
        serve,
        tmp_path,
        [("Moved", f"{host}/moved.png")],
        more="allowed_domains: [127.0.0.1]\n",  # pages only: downloads go anywhere
    )
    entry = items[0]["files"][0]
    assert entry["url"] == f"{host}/moved.png" and entry["error"] is None
    assert entry["sha256"] == hashlib.sha256(ImageHost.body("real.gif")).hexdigest()
    assert entry["path"].endswith(".png")  # the URL the item names gives the extension
    assert cdn.hits["real.gif"] == 1


async def test_the_projects_credentials_stay_off_an_image_host_outside_allowed_domains(
    serve: Serve, tmp_path: Path
) -> None:
    own, scoped = ImageHost(), ImageHost()
    host = await own.start(serve)  # 127.0.0.1, on another port than the pages: offsite
    cdn = await scoped.start(lambda app: serve(app, host="127.0.0.2"))
    films = film_site([("Alien", f"{host}/a.png"), ("Brazil", f"{cdn}/b.png")])
    pages: set[str | None] = set()

    @web.middleware
    async def note(request: web.Request, handler: Any) -> web.StreamResponse:
        pages.add(request.headers.get("Authorization"))
        return await handler(request)

    films.middlewares.append(note)
    site = await serve(films)
    more = """
        headers: {Authorization: Bearer top}
        domains: {"127.0.0.2": {headers: {Authorization: Bearer cdn}}}
        """
    path = project(tmp_path, site, more=textwrap.dedent(more))
    path.write_text(path.read_text().replace("robots: ignore", "robots: obey"))
    stats = await crawl(path, outputs=(str(tmp_path / "items.jsonl"),))
    assert [i["files"][0]["error"] for i in read_jsonl(tmp_path / "items.jsonl")] == [None, None]
    assert stats.downloads == 2
    assert pages == {"Bearer top"}  # the crawl's own host
    assert own.authorization == {None}  # robots.txt and the image alike
    assert scoped.authorization == {"Bearer cdn"}  # what domains: gives that host


# ---------------------------------------------------------------------------------------
# Politeness and limits
# ---------------------------------------------------------------------------------------


async def test_downloads_keep_their_hosts_pace(serve: Serve, tmp_path: Path) -> None:
    images = ImageHost()
    host = await images.start(serve)
    films = [(f"Film {n}", f"{host}/p{n}.png") for n in range(5)]
    await crawl_films(
        serve, tmp_path, films, more="concurrency: {total: 8, per_domain: 1}\ndelay: 0.2\n"
    )
    assert images.most == 1  # one request at a time to the host
    gaps = [b - a for a, b in zip(images.starts, images.starts[1:], strict=False)]
    assert len(gaps) == 4 and min(gaps) >= 0.09  # the delay, jittered by at most half


async def test_downloads_do_not_count_against_max_pages(serve: Serve, tmp_path: Path) -> None:
    images = ImageHost()
    host = await images.start(serve)
    films = [(f"Film {n}", f"{host}/p{n}.png") for n in range(3)]
    items, stats = await crawl_films(serve, tmp_path, films, pages=3, more="max_pages: 1\n")
    assert stats.pages == 1 and stats.reason == "max_pages reached"
    assert [f["error"] for item in items for f in item["files"]] == [None, None, None]


async def test_one_worker_waits_for_its_items_files_without_deadlock(
    serve: Serve, tmp_path: Path
) -> None:
    images = ImageHost()
    host = await images.start(serve)
    films = [(f"Film {n}", f"{host}/p{n}.png") for n in range(4)]
    async with asyncio.timeout(20):
        items, stats = await crawl_films(
            serve, tmp_path, films, pages=2, more="concurrency: {total: 1, per_domain: 1}\n"
        )
    assert len(items) == 8 and stats.downloads == 4


# ---------------------------------------------------------------------------------------
# The project file
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ("{}", "files.fields: required"),
        ("{fields: []}", "files.fields: must name at least one item field"),
        ("{fields: [poster], max_size: 20XB}", "files.max_size: expected a size such as 20MB"),
        ("{fields: [poster], max_size: 0}", "files.max_size: must be at least 1 byte"),
        ("{fields: [poster], max_size: 2GB}", "files.max_size: must be at most 1GiB"),
        ("{fields: [poster], dir: project.yaml}", "files.dir: "),
        ("{fields: [poster], dri: x}", "files.dri: unknown key (did you mean 'dir'?)"),
    ],
)
def test_a_bad_files_section_is_an_error_at_its_key(
    tmp_path: Path, section: str, error: str
) -> None:
    file = project(tmp_path, "http://a.test", files=section)
    with pytest.raises(ProjectError, match=f"project.yaml:\\d+: {re.escape(error)}"):
        prepare(file)


def test_sizes_read_as_the_docs_say(tmp_path: Path) -> None:
    for written, size in [("20MB", 20_000_000), ("512KiB", 524_288), ("0.5GB", 500_000_000)]:
        section = f"{{fields: [poster], max_size: {written}}}"
        file = project(tmp_path, "http://a.test", files=section)
        assert prepare(file).project.section("files").max_size == size
    file = project(tmp_path, "http://a.test", files="{fields: [poster], max_size: 300}")
    prepared = prepare(file)
    assert prepared.project.section("files").max_size == 300
    [(plugin, step)] = prepared.components.items.steps
    assert plugin == "files" and isinstance(step, FilesStep)
    assert step.dir == tmp_path.resolve() / "files"  # beside the project file, not in the cwd


# ---------------------------------------------------------------------------------------
# Crash safety: an item waiting for its files is never lost, nor exported twice
# ---------------------------------------------------------------------------------------


async def test_a_crawl_killed_while_items_wait_for_files_resumes_exactly_once(
    serve: Serve, tmp_path: Path
) -> None:
    images = ImageHost()
    host = await images.start(serve)
    films = [(f"Film {n}", f"{host}/p{n}.png") for n in range(3)] + [("Held", f"{host}/held.png")]
    site = await serve(film_site(films, pages=6))
    file = project(
        tmp_path, site, more='frontier: "sqlite:///state/crawl.db"\nconcurrency: {total: 2}\n'
    )
    out = str(tmp_path / "items.jsonl")
    process = await asyncio.create_subprocess_exec(
        *fw_command(),
        "run",
        str(file),
        "-o",
        out,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(30):
            await images.holding.wait()  # the first page's items wait for held.png
        process.send_signal(signal.SIGKILL)
    finally:
        await process.wait()
    images.release.set()
    done = await run_fw("run", str(file), "-o", out)
    assert done.returncode == 0, done.stderr
    items = read_jsonl(tmp_path / "items.jsonl")
    titles = Counter(item["title"] for item in items)
    assert titles == {f"{page}:{title}": 1 for page in range(1, 7) for title, _ in films}
    assert all(f["error"] is None for item in items for f in item["files"])


async def test_ctrl_c_while_an_item_waits_for_a_file_stops_within_stop_timeout(
    serve: Serve, tmp_path: Path
) -> None:
    images = ImageHost()
    host = await images.start(serve)
    site = await serve(film_site([("Held", f"{host}/held.png")]))
    file = project(tmp_path, site, more="stop_timeout: 0.5\n")
    process = await asyncio.create_subprocess_exec(
        *fw_command(),
        "run",
        str(file),
        "--stats",
        str(tmp_path / "stats.json"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            await images.holding.wait()
            process.send_signal(signal.SIGINT)
            _, err = await process.communicate()
    finally:
        images.release.set()  # else the server's shutdown waits a minute for the handler
    assert process.returncode == 130, err.decode()
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["reason"] == "interrupted" and stats["items"] == 0
    assert "cut short: 1 requests in flight" in err.decode()


def test_the_reference_page_names_every_key_with_its_default() -> None:
    from dataclasses import fields

    from fwcrawl_plugins.files import FilesOptions

    page = (Path(__file__).parents[2] / "docs" / "files.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(" `"): line for line in page.splitlines() if "| `" in line}
    assert set(rows) == {f.name for f in fields(FilesOptions)}
    assert "| `files/` |" in rows["dir"] and "| `20MB` |" in rows["max_size"]
    assert FilesOptions.__dataclass_fields__["max_size"].default == 20 * 1000**2
