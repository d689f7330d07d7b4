"""The rules spider: the quotes example end to end, every field option, and located errors."""

from __future__ import annotations

import logging
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any, get_args

import pytest
from aiohttp import web
from fwcrawl_plugins.rules import RulesSpider
from fwcrawl_plugins.rules_values import TYPES, FieldType

from framework import Request, Response
from framework.cli import main
from framework.crawl.runner import prepare
from framework.fetch.parsers import parse_html
from plugins import rules
from tests.conftest import FIXTURES, Serve, crawl, read_jsonl, run_fw, write_project

QUOTES_SITE = FIXTURES / "quotes"
QUOTES_PROJECT = Path(__file__).parents[2] / "projects" / "quotes.yaml"

# ---------------------------------------------------------------------------------------
# The example project, as a user runs it
# ---------------------------------------------------------------------------------------

#: (text, author, author page, tags, listing page) of every quote in the fixtures.
QUOTES = [
    (
        "“The world as we have created it is a process of our thinking. It cannot be changed "
        "without changing our thinking.”",
        "Albert Einstein",
        "Albert-Einstein",
        ["change", "deep-thoughts", "thinking", "world"],
        "/",
    ),
    (
        "“It is our choices, Harry, that show what we truly are, far more than our abilities.”",
        "J.K. Rowling",
        "J-K-Rowling",
        ["abilities", "choices"],
        "/",
    ),
    (
        "“The person, be it gentleman or lady, who has not pleasure in a good novel, must be "
        "intolerably stupid.”",
        "Jane Austen",
        "Jane-Austen",
        ["aliteracy", "books", "classic", "humor"],
        "/",
    ),
    (
        "“Try not to become a man of success. Rather become a man of value.”",
        "Albert Einstein",
        "Albert-Einstein",
        ["adulthood", "success", "value"],
        "/page/2/",
    ),
    (
        "“It takes a great deal of bravery to stand up to our enemies, but just as much to "
        "stand up to our friends.”",
        "J.K. Rowling",
        "J-K-Rowling",
        ["courage", "friends"],
        "/page/2/",
    ),
    (
        "“There is nothing I would not do for those who are really my friends. I have no "
        "notion of loving people by halves, it is not my nature.”",
        "Jane Austen",
        "Jane-Austen",
        [],
        "/page/2/",
    ),
]
#: (author page, name, born date, born location, born year) of every author page.
AUTHORS = [
    ("Albert-Einstein", "Albert Einstein", "March 14, 1879", "Ulm, Germany", 1879),
    (
        "J-K-Rowling",
        "J.K. Rowling",
        "July 31, 1965",
        "Yate, South Gloucestershire, England, The United Kingdom",
        1965,
    ),
    (
        "Jane-Austen",
        "Jane Austen",
        "December 16, 1775",
        "Steventon Rectory, Hampshire, The United Kingdom",
        1775,
    ),
]


def quotes_site(hits: Counter[str]) -> web.Application:
    """Serve the fixtures, each file at its URL path, counting requests by path."""

    async def page(request: web.Request) -> web.Response:
        hits[request.path] += 1
        file = QUOTES_SITE / request.path.strip("/") / "index.html"
        if not file.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=file.read_bytes(), content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get("/{path:.*}", page)
    return app


async def test_quotes_project_runs_end_to_end(tmp_path: Path, serve: Serve) -> None:
    hits: Counter[str] = Counter()
    base = await serve(quotes_site(hits))
    out = tmp_path / "quotes.jsonl"
    done = await run_fw(
        "run",
        str(QUOTES_PROJECT),
        "-s",
        f"start_urls=[{base}/]",
        "-s",
        "allowed_domains=[127.0.0.1]",
        "-s",
        "delay=0",
        "-s",
        "exporters=[]",
        "-o",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    items = read_jsonl(out)
    assert sorted((i for i in items if i["kind"] == "quote"), key=str) == sorted(
        (
            {
                "kind": "quote",
                "text": text,
                "author": author,
                "tags": tags,
                "author_url": f"{base}/author/{slug}",
                "page": base + page,
            }
            for text, author, slug, tags, page in QUOTES
        ),
        key=str,
    )
    assert sorted((i for i in items if i["kind"] == "author"), key=str) == sorted(
        (
            {
                "kind": "author",
                "name": name,
                "born_date": date,
                "born_location": location,
                "born_year": year,
                "url": f"{base}/author/{slug}",
            }
            for slug, name, date, location, year in AUTHORS
        ),
        key=str,
    )
    assert len(items) == len(QUOTES) + len(AUTHORS)
    # Only the pagination and the (about) links are followed, each page once.
    # robots.txt is read once (it is missing here, which allows everything).
    assert hits == {
        "/robots.txt": 1,
        "/": 1,
        "/page/2/": 1,
        **{f"/author/{a[0]}": 1 for a in AUTHORS},
    }


async def test_items_lacking_a_required_field_are_reported_at_the_end(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    base = await serve(quotes_site(Counter()))
    project = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{base}/page/2/]
        exporters: [{{path: out/items.jsonl}}]
        rules:
          items:
            - each: div.quote
              fields:
                author: small.author::text
                first_tag: {{css: a.tag::text, required: true}}
        """,
    )
    with caplog.at_level(logging.WARNING, logger="fw"):
        stats = await crawl(project)
    assert read_jsonl(tmp_path / "out/items.jsonl") == [
        {"author": "Albert Einstein", "first_tag": "adulthood"},
        {"author": "J.K. Rowling", "first_tag": "courage"},
    ]
    assert stats.items == 2
    assert caplog.messages == [
        "items skipped for lacking a required field: rules.items[0].fields.first_tag 1"
    ]


# ---------------------------------------------------------------------------------------
# Field options and rules, in process
# ---------------------------------------------------------------------------------------

SHOP = "http://shop.test/products/list"
SHOP_PAGE = """
<html><head><base href="http://shop.test/catalog/"></head><body>
<h1>  The   <em>Widget</em>
  shop </h1>
<div class="product" data-sku="W-1">
  <h2>Widget</h2>
  <span class="price">$1,234.50</span>
  <span class="reviews">Reviews: 1,234</span>
  <span class="stock">In stock</span> <span class="sale"></span>
  <span class="rating">4.5 out of 5</span>
  <a class="more" href="w1.html">more</a>
  <ul class="colours"><li>red</li><li> dark
     blue </li></ul>
</div>
<div class="product" data-sku="W-2">
  <h2>Gadget</h2>
  <span class="price">3.5k coins</span>
  <span class="reviews">none yet</span>
  <span class="stock">NO</span>
</div>
<div class="product" data-sku="W-3"><span class="price">$9</span></div>
<ul class="pager"><li class="next"><a href="?page=2">next</a></li></ul>
<a href="/about">About</a> <a href="mailto:shop@example.com">Mail us</a>
</body></html>
"""


def rules_spider(tmp_path: Path, rules: str) -> RulesSpider:
    """Load a project with this ``rules:`` section, as ``fw`` does, and return its spider."""
    project = write_project(
        tmp_path,
        "spider: rules\nstart_urls: [http://shop.test/]\n"
        "rules:\n" + textwrap.indent(textwrap.dedent(rules), "  "),
    )
    spider = prepare(project).components.spider
    assert isinstance(spider, RulesSpider)
    return spider


def html(url: str, body: str) -> Response:
    return Response(
        url,
        200,
        {"Content-Type": "text/html; charset=utf-8"},
        body.encode(),
        Request(url),
        parse_html,
    )


def parse(spider: RulesSpider, response: Response) -> tuple[list[dict[str, Any]], list[str]]:
    """Return the items and the URLs of the requests the spider makes of one page."""
    results = list(spider.parse(response))
    return (
        [r for r in results if isinstance(r, dict)],
        [r.url for r in results if isinstance(r, Request)],
    )


def test_fields_read_queries_attributes_regexes_and_types(tmp_path: Path) -> None:
    spider = rules_spider(
        tmp_path,
        r"""
        items:
          - each: div.product
            fields:
              name: {css: h2::text, required: true}
              name_xpath: {xpath: './h2/text()'}
              sku: {css: div.product, attr: data-sku}
              price: {css: .price, type: float}
              reviews: {css: .reviews, re: 'Reviews: (.*)', type: int}
              in_stock: {css: .stock, type: bool}
              on_sale: {css: .sale, type: bool, default: false}
              rating: {css: .rating, type: float, default: 0}
              link: {css: a.more, type: url}
              colours: {css: .colours li, many: true}
              first_colour: .colours li
              page: {value: url}
              kind: {const: product}
        """,
    )
    items, _ = parse(spider, html(SHOP, SHOP_PAGE))
    assert items == [
        {
            "name": "Widget",
            "name_xpath": "Widget",
            "sku": "W-1",
            "price": 1234.5,
            "reviews": 1234,
            "in_stock": True,
            "on_sale": True,
            "rating": 4.5,
            "link": "http://shop.test/catalog/w1.html",
            "colours": ["red", "dark blue"],
            "first_colour": "red",
            "page": SHOP,
            "kind": "product",
        },
        {
            "name": "Gadget",
            "name_xpath": "Gadget",
            "sku": "W-2",
            "price": 3500.0,
            "reviews": None,
            "in_stock": False,
            "on_sale": False,
            "rating": 0,
            "link": None,
            "colours": [],
            "first_colour": None,
            "page": SHOP,
            "kind": "product",
        },
    ]
    # W-3 has no name, which is required: skipped, and counted for the end-of-crawl warning.
    assert spider.skipped == {"rules.items[0].fields.name": 1}


def test_the_page_is_one_item_without_each_and_pages_picks_the_rules(tmp_path: Path) -> None:
    spider = rules_spider(
        tmp_path,
        """
        items:
          - pages: /products/
            fields:
              title: h1
              products: {xpath: 'count(//div[@class="product"])', type: int}
              skus: {css: 'div.product::attr(data-sku)', many: true}
          - pages: /basket/
            fields: {title: h1}
        """,
    )
    items, _ = parse(spider, html(SHOP, SHOP_PAGE))
    assert items == [{"title": "The Widget shop", "products": 3, "skus": ["W-1", "W-2", "W-3"]}]
    basket_items, _ = parse(spider, html("http://shop.test/basket/", SHOP_PAGE))
    assert basket_items == [{"title": "The Widget shop"}]


def test_an_each_that_matches_strings_fails_the_page_after_its_items_and_links(
    tmp_path: Path,
) -> None:
    # Past the checks at load time (it ends in a bracket), found out when it runs: the
    # page fails (a counted spider_error, listed), with what the other rules read kept.
    spider = rules_spider(
        tmp_path,
        """
        follow: [li.next]
        items:
          - each_xpath: '(//div[@class="product"]/@data-sku)'
            fields: {name: h2}
          - each: div.product
            fields: {name: h2}
        """,
    )
    results: list[Any] = []
    with pytest.raises(ValueError) as failed:
        results.extend(spider.parse(html(SHOP, SHOP_PAGE)))
    assert str(failed.value) == (
        "rules.items[0].each_xpath matched strings or a value, not elements: no item is read "
        "from those; select elements, and read text in fields"
    )
    items = [result for result in results if isinstance(result, dict)]
    assert items == [{"name": "Widget"}, {"name": "Gadget"}, {"name": None}]
    assert [result.url for result in results if isinstance(result, Request)]


def test_follow_rules_pick_links_by_query_url_and_page(tmp_path: Path) -> None:
    spider = rules_spider(
        tmp_path,
        """
        follow:
          - li.next                     # an element without href: the links inside it
          - css: a::attr(href)
            match: /about$
          - xpath: //a[@class="more"]
            pages: /basket/
          - match: mailto             # no query: every link
        items: [{fields: {title: h1}}]
        """,
    )
    _, urls = parse(spider, html(SHOP, SHOP_PAGE))
    assert urls == [
        "http://shop.test/catalog/?page=2",
        "http://shop.test/about",
        "mailto:shop@example.com",
    ]
    _, basket_urls = parse(spider, html("http://shop.test/basket/", SHOP_PAGE))
    assert "http://shop.test/catalog/w1.html" in basket_urls


@pytest.mark.parametrize(
    ("text", "as_int", "as_float"),
    [
        ("1,234", 1234, 1234.0),
        ("$1,234.56", 1234, 1234.56),
        ("1.5k views", 1500, 1500.0),
        ("3M", 3_000_000, 3e6),
        ("2B", 2_000_000_000, 2e9),
        ("-7 °C", -7, -7.0),
        ("COVID-19", 19, 19.0),
        ("5 Kids", 5, 5.0),
        ("1,2,3", 1, 1.0),
        ("1,234,567,890,123,456,789", 1234567890123456789, 1.2345678901234568e18),
        (
            "12345678901234567890123456789012345",  # more digits than Decimal's 28: still exact
            12345678901234567890123456789012345,
            1.2345678901234568e34,
        ),
        ("n/a", None, None),
    ],
)
def test_numbers_are_read_sensibly(
    tmp_path: Path, text: str, as_int: int | None, as_float: float | None
) -> None:
    spider = rules_spider(
        tmp_path,
        """
        items: [{fields: {n: {css: p, type: int}, x: {css: p, type: float}}}]
        """,
    )
    items, _ = parse(spider, html(SHOP, f"<p>{text}</p>"))
    assert items == [{"n": as_int, "x": as_float}]


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    assert rules.__doc__ is not None
    example = rules.__doc__.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    spider = prepare(write_project(tmp_path, example)).components.spider
    assert isinstance(spider, RulesSpider)
    assert [len(rule.fields) for rule in spider.options.items] == [9, 1]


def test_every_type_has_a_converter() -> None:
    assert set(TYPES) == set(get_args(FieldType))


def test_defaults_are_fresh_for_every_item(tmp_path: Path) -> None:
    spider = rules_spider(
        tmp_path,
        """
        items: [{each: div.product, fields: {tags: {css: .tag, many: true, default: [new]}}}]
        """,
    )
    items, _ = parse(spider, html(SHOP, SHOP_PAGE))
    items[0]["tags"].append("changed by a plugin")
    assert [item["tags"] for item in items[1:]] == [["new"], ["new"]]


def test_a_page_without_a_parser_is_skipped(tmp_path: Path) -> None:
    spider = rules_spider(tmp_path, "items: [{fields: {title: h1}}]")
    pdf = Response(SHOP, 200, {"Content-Type": "application/pdf"}, b"%PDF", Request(SHOP))
    assert parse(spider, pdf) == ([], [])


# ---------------------------------------------------------------------------------------
# Invalid rules: one located line, exit 2
# ---------------------------------------------------------------------------------------

EACH_STRINGS = (
    "rules.items[0].each: ::text and ::attr() select strings, not elements: each needs "
    "elements, one item per match (such as div.quote); read text and attributes in its fields"
)
EACH_XPATH_STRINGS = (
    "rules.items[0].each_xpath: selects strings or a value, not elements: each_xpath needs "
    "elements, one item per match (such as //div[@class='quote']); read text and attributes "
    "in its fields"
)
ERRORS = [
    (
        """
     items:
       - fields:
           author:
             css: small.author::text
             reqired: true
     """,
        "reqired",
        "rules.items[0].fields.author.reqired: unknown key (did you mean 'required'?)",
    ),
    (
        """
     items:
       - fields:
           title: h1
           author:
             css: small.author
             xpath: //small
     """,
        "author:",
        "rules.items[0].fields.author: give one of css, xpath, value or const, not css and xpath",
    ),
    (
        """
     items:
       - fields:
           author: {attr: href}
     """,
        "author:",
        "rules.items[0].fields.author: give one of css, xpath, value or const "
        "to say where the value is",
    ),
    (
        """
     items:
       - fields:
           year:
             css: .born
             re: '(\\d{4}'
     """,
        "re:",
        "rules.items[0].fields.year.re: not a valid regular expression: missing ), "
        "unterminated subpattern at position 0",
    ),
    (
        """
     items:
       - fields:
           year:
             css: .born
             type: integer
     """,
        "type:",
        "rules.items[0].fields.year.type: must be one of 'str', 'int', 'float', "
        "'bool', 'url', got 'integer'",
    ),
    (
        """
     items:
       - fields:
           title: h1
           tags: [a.tag, span.tag]
     """,
        "tags:",
        "rules.items[0].fields.tags: expected a CSS query or a mapping such as "
        "{css: h1}, got a list",
    ),
    (
        """
     items:
       - fields:
           no: h1
     """,
        "fields:",
        "rules.items[0].fields: field name False is not a string: quote it",
    ),
    (
        """
     items:
       - each_xpath: //div[
         fields: {title: h1}
     """,
        "each_xpath:",
        "rules.items[0].each_xpath: not a valid XPath expression: XPath "
        "error: Invalid expression in //div[",
    ),
    (
        """
     items:
       - each: 'a::attr(href)'
         fields: {title: b}
     """,
        "each:",
        EACH_STRINGS,
    ),
    (
        """
     items:
       - each: 'div.quote, div.quote *::text'
         fields: {title: b}
     """,
        "each:",
        EACH_STRINGS,
    ),
    (
        """
     items:
       - each_xpath: count(//a)
         fields: {title: b}
     """,
        "each_xpath:",
        EACH_XPATH_STRINGS,
    ),
    (
        """
     items:
       - each_xpath: '//div[@class="quote"]/text()'
         fields: {title: b}
     """,
        "each_xpath:",
        EACH_XPATH_STRINGS,
    ),
    (
        """
     items:
       - each_xpath: //a/@href
         fields: {title: b}
     """,
        "each_xpath:",
        EACH_XPATH_STRINGS,
    ),
    (
        """
     items:
       - each_xpath: '//p/text()[normalize-space()]'
         fields: {title: b}
     """,
        "each_xpath:",
        EACH_XPATH_STRINGS,
    ),
    (
        """
     items:
       - each_xpath: //a/@href[1]
         fields: {title: b}
     """,
        "each_xpath:",
        EACH_XPATH_STRINGS,
    ),
    (
        """
     follow:
       - li.next a
       - css: 'li.next a['
     items: [{fields: {title: h1}}]
     """,
        "css:",
        "rules.follow[1].css: not a valid CSS selector: Expected ident or '*', got <EOF at 10>",
    ),
    (
        """
     items: []
     """,
        "items:",
        "rules.items: give at least one item rule, such as {fields: {title: h1}}",
    ),
]


@pytest.mark.parametrize(
    ("rules", "marker", "message"),
    ERRORS,
    ids=[message.partition(":")[0] for _, _, message in ERRORS],
)
def test_invalid_rules_are_one_located_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rules: str, marker: str, message: str
) -> None:
    text = (
        "spider: rules\nstart_urls: [http://shop.test/]\nrules:\n"
        + textwrap.indent(textwrap.dedent(rules).strip("\n"), "  ")
        + "\n"
    )
    project = write_project(tmp_path, text)
    line = 1 + next(n for n, row in enumerate(text.splitlines()) if marker in row)
    assert main(["check", str(project)]) == 2
    assert capsys.readouterr().err == f"Error: {project}:{line}: {message}\n"


async def test_fw_check_reports_a_misspelt_rules_key(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [http://shop.test/]
        rules:
          folow: [li.next a]
          items: [{fields: {title: h1}}]
        """,
    )
    done = await run_fw("check", str(project))
    assert done.returncode == 2
    assert done.stderr == (
        f"Error: {project}:4: rules.folow: unknown key (did you mean 'follow'?)\n"
    )
