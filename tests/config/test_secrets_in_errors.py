"""A value from ``$env``, or a password in a start URL, may be a secret: no error about the
project file shows it, the plugins' checks included, however they quote it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_fw, write_project

SECRET = "hunter2-Secret"


@pytest.mark.parametrize(
    "line",
    [
        "cache: {dir: c, expire: {$env: S}}",
        "files: {fields: [poster], max_size: {$env: S}}",
        "sitemaps: {since: {$env: S}}",
        "proxies: {urls: [{$env: S}]}",
        "allowed_domains: [{$env: S}]",  # quoted lower-cased, as host names are
    ],
)
async def test_an_env_value_a_check_refuses_is_never_shown(tmp_path: Path, line: str) -> None:
    project = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: ["http://127.0.0.1:1/"]
        rules: {{items: [{{fields: {{u: h1}}}}]}}
        {line}
        """,
    )
    done = await run_fw("check", str(project), env={"S": SECRET})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"Error: {project}:"), done.stderr
    assert SECRET not in done.stderr and SECRET.lower() not in done.stderr


async def test_a_start_url_with_a_blank_in_its_password_is_refused_without_showing_it(
    tmp_path: Path,
) -> None:
    project = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: ["http://ada:correct horse battery@127.0.0.1:1/"]
        rules: {items: [{fields: {u: h1}}]}
        """,
    )
    done = await run_fw("check", str(project))
    assert done.returncode == 2, done.stderr
    assert "horse" not in done.stderr
    assert "write a blank in a password as %20" in done.stderr


async def test_a_short_or_plain_env_value_leaves_other_errors_as_written(tmp_path: Path) -> None:
    # Masked everywhere, "obey" and "1000" garbled fw's own words and gave themselves away.
    project = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: ["http://127.0.0.1:1/"]
        rules: {items: [{fields: {u: h1}}]}
        headers: {X-Mode: {$env: MODE}, X-Count: {$env: COUNT}}
        robots: sometimes
        delay: -1000
        """,
    )
    done = await run_fw("check", str(project), env={"MODE": "obey", "COUNT": "1000"})
    assert done.returncode == 2, done.stderr
    assert "robots: must be one of 'obey', 'ignore'" in done.stderr
    assert "got -1000" in done.stderr and "***" not in done.stderr
