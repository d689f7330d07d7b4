"""Admission's memo of queued URLs: what it skips, and what it must not."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.config.project import load_project
from framework.crawl.admission import Admission
from framework.crawl.stats import Stats
from framework.http import Request
from tests.conftest import write_project


def admission(tmp_path: Path) -> Admission:
    project = load_project(write_project(tmp_path, "spider: x\n"))
    return Admission(project, Stats("x"), "x", persistent=True)


def test_a_queued_url_is_a_duplicate_and_a_leased_one_too(tmp_path: Path) -> None:
    gate = admission(tmp_path)
    one, two = Request("http://a.test/1"), Request("http://a.test/2")
    assert gate.admit([one, one]) == [one]
    gate.queued(two)  # another worker queued it, this one leased it
    assert gate.admit([two, Request("http://a.test/3")]) == [Request("http://a.test/3")]
    gate.queued(Request("http://a.test/4", dont_filter=True))  # never a duplicate
    assert gate.admit([Request("http://a.test/4")]) == [Request("http://a.test/4")]


def test_the_links_of_a_page_whose_lease_was_lost_are_admitted_again(tmp_path: Path) -> None:
    gate = admission(tmp_path)
    links = gate.admit([Request("http://a.test/1"), Request("http://a.test/2")])
    gate.forget(links)  # what the engine does when the page's lease was lost
    assert gate.admit(links) == links  # nothing queued them: they must be sent again
    assert gate.admit(links) == []


def test_a_plugins_callback_gets_its_own_few_warnings_after_the_spiders(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = admission(tmp_path)
    for n in range(7):  # past the few warnings shown
        gate.overflowed(f"http://a.test/{n}", 2, "parse")
    gate.overflowed("http://a.test/map.xml", 1, "sitemaps:sitemap")
    said = [record.getMessage() for record in caplog.records]
    assert said[5] == "spider x: more requests dropped; --stats counts them (filtered)"
    assert said[6:] == [
        "callback sitemaps:sitemap: 1 request from http://a.test/map.xml dropped: past "
        "max_requests_per_page (50000), which bounds what one page adds to the crawl"
    ]
    assert len(said) == 7


def test_a_relative_url_from_a_plugins_callback_is_said_to_be_the_callbacks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = admission(tmp_path)
    for callback in ("parse", "sitemaps:sitemap"):
        assert gate.admit([Request("b.html")], found_on="http://a.test/", callback=callback) == []
    assert [record.getMessage().partition(":")[0] for record in caplog.records] == [
        "spider x",
        "callback sitemaps",
    ]
