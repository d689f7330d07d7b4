"""The bundled ``douban`` spider: films coming soon to cinemas, from Douban Movie.

Give it one or more "coming soon" listings as ``start_urls``
(``https://movie.douban.com/cinema/later/<city>/``). It follows every film on each listing
to its subject page and yields **one item per film**::

    id            "26848640"                 the subject id, from the URL
    url           "https://movie.douban.com/subject/26848640/"   as the listing links it
    title         "教授与疯子"                the listing's title
    release_date  "12月24日"                 as the listing writes it: month and day, no year
    genres        ["剧情", "传记"]
    region        "爱尔兰"
    wants         16577                      how many people want to see it; null if not shown
    poster        "https://img3.doubanio.com/view/photo/s_ratio_poster/public/p2577347230.jpg"
    rating        null                       a number once enough people have rated it
    year          2019                       from the subject page's heading
    directors     ["…"]

The first seven fields come from the listing, the last four from the subject page. When a
subject page cannot be had (an HTTP error after the retries, a timeout, a login wall), the
film is still exported from its listing data, with ``poster``, ``rating`` and ``year`` null
and ``directors`` empty: each subject request names ``subject_failed`` as its errback,
which the engine calls once the request has finally failed. The failure itself is still
counted in the crawl's stats and logged.

Douban refuses clients it takes for bots: with HTTP 418 or 403 (the crawl summary then
says ``blocked: movie.douban.com …``), or with a 200 page that is a login wall. The spider
recognises such pages and reports them as ``blocked`` errors instead of exporting nothing
silently. Send a browser ``User-Agent`` and keep ``delay:`` at a second or more, as
``projects/douban.yaml`` does.

Links are followed as the page gives them, never rebuilt from a host name, so the spider
works as well against a mirror or a local test server.

Its section of the project file takes one option (``DoubanOptions``)::

    douban:
      subjects: false   # export the listing's fields only: one request per listing, and
                        # poster, rating, year null and directors empty (default: true)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from parsel import Selector
from typing_extensions import TypedDict  # pydantic reads typing's own only from Python 3.12

from framework import Blocked, FetchError, Request, Response, Spider, hookimpl, option

__all__ = ["DoubanOptions", "DoubanSpider", "Film", "Listed", "SubjectDetails", "register_spiders"]

# A listing's li.dt entries are told apart by what they hold, not by position: the want
# count is sometimes missing (爱无痕 in the March 2019 listing), which shifts positions.
_DATE = re.compile(r"^\d{1,2}月\d{1,2}日")
_WANTS_MARK = "人想看"
_SUBJECT_ID = re.compile(r"/subject/(\d+)")
_YEAR = re.compile(r"\d{4}")
# What Douban's login wall says; seen with both HTTP 403 and 200.
_WALL_TITLE = "登录跳转"
_WALL_TEXT = "有异常请求从你的 IP 发出"
_ADVICE = (
    "Douban takes this client for a bot: send a browser User-Agent (headers:), "
    "slow down (delay:), or try again later"
)


class Listed(TypedDict):
    """What the listing says about one film; travels to the subject page in ``meta``."""

    id: str
    url: str
    title: str
    release_date: str | None
    genres: list[str]
    region: str | None
    wants: int | None


class SubjectDetails(TypedDict):
    """What only the film's subject page says."""

    poster: str | None
    rating: float | None
    year: int | None
    directors: list[str]


class Film(Listed, SubjectDetails):
    """One exported item: the listing's fields, then the subject page's."""


def _unknown() -> SubjectDetails:
    """Return the subject fields of a film whose subject page could not be had."""
    # A fresh list each time: a plugin editing one item's directors must not edit another's.
    return {"poster": None, "rating": None, "year": None, "directors": []}


@dataclass(frozen=True)
class DoubanOptions:
    """The ``douban:`` section of a project file; a misspelt key is an error, not ignored."""

    subjects: bool = option(
        True,
        doc="Follow each film to its subject page for poster, "
        "rating, year and directors; false exports the listing's fields "
        "only (those four null or empty): one request per listing.",
    )


class DoubanSpider(Spider):
    """Crawl Douban's coming-soon listings and each film's subject page."""

    name = "douban"
    Options = DoubanOptions
    options: DoubanOptions
    #: Each item is checked against it (the ``schema`` plugin), and its fields are the columns.
    Item = Film

    def __init__(
        self, options: DoubanOptions | None = None, *, start_urls: Iterable[str] = ()
    ) -> None:
        super().__init__(options or DoubanOptions(), start_urls=start_urls)

    def parse(self, response: Response) -> Iterator[Request | Film]:
        """Follow every film on a coming-soon listing to its subject page."""
        _check_listing(response)
        films = response.css("#showing-soon > div.item")
        if not films:
            self.logger.info("%s: the listing has no films right now", response.url)
        for film in films:
            href = film.css("div.intro h3 a::attr(href)").get(default="").strip()
            listed = _listed(film, response.urljoin(href)) if href else None
            if listed is None:
                self.logger.warning(
                    "%s: skipped a film without a subject link: %s", response.url, _snippet(film)
                )
                continue
            if not self.options.subjects:
                yield _film(listed, _unknown())
                continue
            yield response.follow(
                href,
                callback=self.parse_subject,
                errback=self.subject_failed,
                meta={"film": listed},
            )

    def parse_subject(self, response: Response) -> Iterator[Film]:
        """Complete a film's listing data with its subject page."""
        listed: Listed = response.meta["film"]
        reason = _wall(response)
        if reason is not None:
            # Export what the listing said before reporting the wall, so no film is lost.
            yield _film(listed, _unknown())
            raise Blocked(f"{reason} instead of the film's page; {_ADVICE}")
        yield _film(listed, _subject_details(response))

    def subject_failed(self, request: Request, error: FetchError) -> Iterator[Film]:
        """Export a film from its listing data when its subject page finally failed."""
        listed: Listed = request.meta["film"]
        self.logger.debug("%s: exported from the listing only (%s)", request.url, error.kind)
        yield _film(listed, _unknown())


# -------------------------------------------------------------------------------------------
# Listing page
# -------------------------------------------------------------------------------------------


def _check_listing(response: Response) -> None:
    """Raise ``Blocked`` unless the page is a coming-soon listing (even an empty one)."""
    reason = _wall(response)
    if reason is not None:
        raise Blocked(f"{reason} instead of the listing; {_ADVICE}")
    if not response.css("#showing-soon"):
        raise Blocked(
            "no #showing-soon: a challenge page or not a coming-soon listing; "
            "open it in a browser, and check that start_urls are "
            "/cinema/later/<city>/ pages"
        )


def _listed(film: Selector, url: str) -> Listed | None:
    """Read one film of the listing, or None if its link is not a subject page."""
    match = _SUBJECT_ID.search(url)
    if match is None:
        return None
    entries = [li.xpath("normalize-space(.)").get(default="") for li in film.css("li.dt")]
    date, wants, rest = _classify(entries)
    return {
        "id": match.group(1),
        "url": url,
        "title": film.css("div.intro h3 a::text").get(default="").strip(),
        "release_date": date,
        "genres": _split_genres(rest[0]) if rest else [],
        "region": rest[1] if len(rest) > 1 else None,
        "wants": _digits(wants),
    }


def _classify(entries: list[str]) -> tuple[str | None, str | None, list[str]]:
    """Split a film's ``li.dt`` texts into date, want count, and the rest in page order."""
    date: str | None = None
    wants: str | None = None
    rest: list[str] = []
    for entry in entries:
        if date is None and _DATE.match(entry):
            date = entry
        elif wants is None and _WANTS_MARK in entry:
            wants = entry
        elif entry:
            rest.append(entry)  # genres, then region
    return date, wants, rest


def _split_genres(text: str) -> list[str]:
    return [genre.strip() for genre in text.split(" / ") if genre.strip()]


def _digits(text: str | None) -> int | None:
    """Read ``16577人想看`` as 16577; None if there is no number, or none a count can be
    (a page padded with thousands of digits must not cost the listing's other films)."""
    digits = re.sub(r"[^0-9]", "", text or "")
    return int(digits) if 0 < len(digits) <= _MOST_DIGITS else None


#: More digits than any count of people has.
_MOST_DIGITS = 12


# -------------------------------------------------------------------------------------------
# Subject page
# -------------------------------------------------------------------------------------------


def _subject_details(response: Response) -> SubjectDetails:
    """Read the fields only the subject page has; RDFa attributes are stable since 2018."""
    year = _YEAR.search(response.css("#content h1 span.year::text").get(default=""))
    return {
        "poster": response.css('#mainpic img[rel="v:image"]::attr(src)').get(),
        "rating": _rating(response.css("strong.rating_num::text").get(default="")),
        "year": int(year.group()) if year else None,
        "directors": [
            name.strip()
            for name in response.css('a[rel="v:directedBy"]::text').getall()
            if name.strip()
        ],
    }


def _rating(text: str) -> float | None:
    """Read ``8.7``; unreleased films have an empty ``strong.rating_num``."""
    try:
        return float(text.strip())
    except ValueError:
        return None


def _film(listed: Listed, details: SubjectDetails) -> Film:
    return {**listed, **details}


# -------------------------------------------------------------------------------------------
# Blocking
# -------------------------------------------------------------------------------------------


def _wall(response: Response) -> str | None:
    """Describe the login wall or challenge ``response`` is, or return None if it is none."""
    title = response.css("title::text").get(default="").strip()
    if _WALL_TITLE in title:
        return f"a login wall (<title>{title}</title>)"
    if _WALL_TEXT in response.text:
        return f"a challenge page ('{_WALL_TEXT}')"
    return None


def _snippet(film: Selector) -> str:
    text = " ".join(film.xpath("normalize-space(.)").get(default="").split())
    return text[:80]


@hookimpl(trylast=True)  # bundled: any installed plugin may override it
def register_spiders(register: Callable[[type[Spider]], None]) -> None:
    """Provide the ``douban`` spider."""
    register(DoubanSpider)
