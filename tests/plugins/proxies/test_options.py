"""The proxies: section is checked as the project loads, and never quotes a secret."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fwcrawl_plugins.proxies.options import ProxiesOptions

from framework.crawl import runner
from framework.errors import ProjectError
from tests.conftest import write_project


def load(tmp_path: Path, section: str) -> ProxiesOptions:
    project = write_project(
        tmp_path,
        "spider: rules\nstart_urls: [http://a.test/]\n"
        f"rules: {{items: [{{fields: {{t: h1}}}}]}}\n{section}\n",
    )
    options = runner.prepare(project).project.section("proxies")
    assert isinstance(options, ProxiesOptions)
    return options


@pytest.mark.parametrize(
    ("section", "error"),
    [
        (
            "proxies: {urls: ['socks5://crawler:hunter2@p.test:1080']}",
            "proxies.urls[0]: socks5://***@p.test:1080: socks5:// proxies are not supported; "
            "write an http:// or https:// proxy",
        ),
        (
            "proxies: {urls: [p.test:3128]}",
            "proxies.urls[0]: p.test:3128: p.test:// proxies are not supported",
        ),
        (
            "proxies: {urls: ['http://crawler:hunter2@']}",
            "proxies.urls[0]: http://***@: has no host",
        ),
        (
            "proxies: {urls: ['http://crawler:hunter2@p.test:99999']}",
            "proxies.urls[0]: http://***@p.test:99999: Port out of range",
        ),
        (
            "proxies: {urls: ['http://crawler:hunter2#x@p.test:3128']}",  # a raw "#": no port
            "proxies.urls[0]: http://***@p.test:3128: its port is not a number; a password "
            "with / ? or # in it must be percent-encoded, or given as password:",
        ),
        (
            "proxies: {urls: [http://p.test:1, http://p.test:1]}",
            "proxies.urls[1]: http://p.test:1 is listed twice",
        ),
        (
            "proxies: {urls: [{url: 'http://crawler:hunter2@p.test:1'}]}",
            "proxies.urls[0].url: put the credentials in username and password, not here",
        ),
        ("proxies: {urls: [{username: crawler}]}", "proxies.urls[0].url: required key is missing"),
        ("proxies: {urls: http://p.test:1}", "proxies.urls: expected a list of proxy URLs"),
        (
            "proxies: {rotate: sticky}",
            "proxies.rotate: must be one of 'round_robin', 'random', 'sticky_per_host'",
        ),
        ("proxies: {fail_after: 0}", "proxies.fail_after: must be at least 1, got 0"),
        (
            "proxies: {ban_statuses: [403, 200]}",
            "proxies.ban_statuses[1]: 200 is not a status a site refuses with",
        ),
        (
            "headers: {proxy-authorization: Basic Y3Jhd2xlcjpodW50ZXIy}",
            "headers: Proxy-Authorization would reach the sites, not just the proxy",
        ),
        ("proxies: {backoff: {base: -1}}", "proxies.backoff.base: must be at least 0, got -1"),
    ],
)
def test_a_mistake_is_an_error_at_its_line_without_the_secret(
    tmp_path: Path, section: str, error: str
) -> None:
    with pytest.raises(ProjectError, match=re.escape(error)) as raised:
        load(tmp_path, section)
    assert "hunter2" not in str(raised.value)
    assert str(raised.value).startswith(f"{tmp_path / 'project.yaml'}:4: ")


def test_a_whole_url_or_just_the_secrets_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXY_URL", "http://crawler:hunter2@p1.test:3128")
    monkeypatch.setenv("PROXY_USER", "crawler@home")
    monkeypatch.setenv("PROXY_PASSWORD", "0123:/#")  # text, however YAML would read it
    options = load(
        tmp_path,
        """
proxies:
  urls:
    - {$env: PROXY_URL}
    - {url: 'https://p2.test', username: {$env: PROXY_USER}, password: {$env: PROXY_PASSWORD}}
""",
    )
    first, second = options.urls
    assert first.url == "http://crawler:hunter2@p1.test:3128"
    assert second.url == "https://crawler%40home:0123%3A%2F%23@p2.test"
    assert (first.shown, second.shown) == ("http://***@p1.test:3128", "https://***@p2.test")
    assert (first.origin, second.origin) == ("http://p1.test:3128", "https://p2.test:443")
    assert "hunter2" not in repr(options) and "0123" not in repr(options)


def test_without_a_section_the_pool_is_empty_and_the_defaults_hold(tmp_path: Path) -> None:
    options = load(tmp_path, "")
    assert options.urls == ()
    assert (options.rotate, options.fail_after, options.ban_statuses) == (
        "round_robin",
        3,
        (403, 429),
    )


def test_every_bad_proxy_of_the_list_is_said_in_one_run(tmp_path: Path) -> None:
    section = "proxies:\n  urls: [socks5://p.test:1, http://p.test:2, 'http://', http://p.test:2]"
    with pytest.raises(ProjectError) as raised:
        load(tmp_path, section)
    said = str(raised.value).splitlines()
    assert [line.partition(": ")[2].partition(":")[0] for line in said] == [
        "proxies.urls[0]",
        "proxies.urls[2]",
        "proxies.urls[3]",
    ]
