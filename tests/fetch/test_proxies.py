"""Crawling through a real forward proxy on loopback."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Serve, pages, read_jsonl, run_fw, write_project
from tests.proxies import ForwardProxy


async def test_http_proxy_from_the_environment_carries_every_request(
    tmp_path: Path, serve: Serve
) -> None:
    base = await serve(pages({"/": '<a href="/a">a</a>', "/a": "<h1>a</h1>"}))
    proxy = ForwardProxy()
    proxy_url = await serve(proxy.app(), "127.0.0.2")
    project = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{base}/]
        rules: {{follow: [a], items: [{{fields: {{page: {{value: url}}}}}}]}}
        """,
    )
    done = await run_fw(
        "run",
        str(project),
        "-q",
        "-o",
        str(tmp_path / "items.jsonl"),
        env={"HTTP_PROXY": proxy_url, "NO_PROXY": ""},
    )
    assert done.returncode == 0, done.stderr
    assert len(read_jsonl(tmp_path / "items.jsonl")) == 2
    assert proxy.relayed == {f"{base}/robots.txt": 1, f"{base}/": 1, f"{base}/a": 1}
