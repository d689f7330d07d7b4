"""docs/proxies.md: its project loads, and what it shows is what the plugin prints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fwcrawl_plugins.proxies import _described

from tests.conftest import run_fw

PAGE = (Path(__file__).parents[3] / "docs" / "proxies.md").read_text(encoding="utf-8")


def block(language: str) -> str:
    (found,) = re.findall(rf"```{language}\n(.*?)```", PAGE, re.DOTALL)
    return str(found)


async def test_the_project_of_the_page_passes_fw_check(tmp_path: Path) -> None:
    (tmp_path / "project.yaml").write_text(block("yaml"), encoding="utf-8")
    secrets = {"PROXY_URL": "http://crawler:secret@proxy-1.example:3128"}
    done = await run_fw(
        "check", str(tmp_path / "project.yaml"), env={**secrets, "PROXY_PASSWORD": "secret"}
    )
    assert done.returncode == 0, done.stderr
    assert "secret" not in done.stdout + done.stderr


def test_the_summary_line_of_the_page_is_what_its_stats_print() -> None:
    counts = json.loads("{" + block("json") + "}")["plugins"]["proxies"]
    ((name, proxy),) = counts.items()
    assert f"`proxies: {_described(name, proxy)}; …`" in PAGE


@pytest.mark.parametrize(
    "said",
    [
        "Error: proxies: every proxy failed 4 times in a row, resting between: "
        "http://***@proxy-1.example:3128 (HTTP 407: it refused the credentials), ",
        "; check proxies.urls and their credentials",
    ],
)
def test_the_error_of_the_page_has_the_shape_the_crawl_tests_check(said: str) -> None:
    assert said in PAGE  # test_crawl.py checks this shape on a real crawl
