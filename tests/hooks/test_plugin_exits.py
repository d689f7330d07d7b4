"""A plugin calling ``sys.exit()`` while fw loads it: one line naming it and exit 2, not silence."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_fw, write_project
from tests.distributions import fake_distribution, on_path

SHOP = """
from framework import Spider, hookimpl

class Shop(Spider):
    name = "shop"

@hookimpl
def register_spiders(register):
    register(Shop)
"""

ADVICE = "while loading; a plugin should raise an exception instead"


def project_with(tmp_path: Path, plugin: str) -> Path:
    (tmp_path / "shop.py").write_text(SHOP, encoding="utf-8")
    return write_project(
        tmp_path,
        f"""
        spider: shop
        start_urls: [http://127.0.0.1:9/]
        plugins:
          - ./shop.py
          - {plugin}
        """,
    )


@pytest.mark.parametrize("command", ["check", "run"])
async def test_a_plugin_file_exiting_at_import_is_located(command: str, tmp_path: Path) -> None:
    (tmp_path / "exits.py").write_text("import sys\n\nsys.exit(3)\n", encoding="utf-8")
    project = project_with(tmp_path, "./exits.py")
    result = await run_fw(command, str(project))
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: {project}:5: plugins[1]: ./exits.py called sys.exit(3) {ADVICE}\n"
    )


async def test_a_plugin_file_cancelled_at_import_is_located(tmp_path: Path) -> None:
    # A BaseException, as SystemExit is: it gave a traceback.
    code = "import asyncio\n\nraise asyncio.CancelledError('never ready')\n"
    (tmp_path / "cancels.py").write_text(code, encoding="utf-8")
    project = project_with(tmp_path, "./cancels.py")
    result = await run_fw("check", str(project))
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: {project}:5: plugins[1]: ./cancels.py failed to import: CancelledError: "
        "never ready\n"
    )


async def test_argparse_in_a_plugin_file_is_located(tmp_path: Path) -> None:
    # argparse exits from its own code, while fw imports the plugin file.
    (tmp_path / "cli.py").write_text(
        "import argparse\n\nargparse.ArgumentParser(prog='cli').parse_args(['--bogus'])\n",
        encoding="utf-8",
    )
    project = project_with(tmp_path, "./cli.py")
    result = await run_fw("check", str(project))
    assert result.returncode == 2
    *printed_by_argparse, last = result.stderr.splitlines()
    assert "unrecognized arguments: --bogus" in printed_by_argparse[-1]
    assert last == f"Error: {project}:5: plugins[1]: ./cli.py called sys.exit(2) {ADVICE}"


async def test_a_plugin_module_exiting_in_a_registry_hook_is_located(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "team_exit").mkdir(parents=True)
    (site / "team_exit" / "__init__.py").write_text(
        "import sys\nfrom framework import hookimpl\n\n@hookimpl\n"
        "def register_spiders(register):\n    sys.exit('no config')\n",
        encoding="utf-8",
    )
    project = project_with(tmp_path, "team_exit")
    result = await run_fw("check", str(project), env=on_path(site))
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: {project}:5: plugins[1]: plugin 'team_exit': "
        "register_spiders called sys.exit('no config'); a plugin should "
        "raise an exception instead\n"
    )


async def test_an_installed_plugin_exiting_is_named_with_its_distribution(tmp_path: Path) -> None:
    site = fake_distribution(
        tmp_path,
        "fw-quits",
        "1.0",
        "quits",
        "fw_quits",
        """
        import sys

        sys.exit()
        """,
    )
    result = await run_fw("plugins", env=on_path(site))
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: plugin 'quits' (from fw-quits 1.0) called sys.exit() {ADVICE}\n"
    )


@pytest.mark.parametrize("command", ["check", "run"])
async def test_a_plugin_exiting_in_renew_finished_crawl_is_named(
    tmp_path: Path, command: str
) -> None:
    (tmp_path / "renews.py").write_text(
        "import sys\nfrom framework import hookimpl\n\n@hookimpl\n"
        "def renew_finished_crawl(project):\n    sys.exit(0)\n",
        encoding="utf-8",
    )
    project = project_with(tmp_path, "./renews.py")
    project.write_text(project.read_text() + "frontier: sqlite:///state.db\n")
    result = await run_fw(command, str(project))
    assert result.returncode == 2
    assert result.stderr.endswith(
        "Error: plugin 'renews.py': renew_finished_crawl called sys.exit(0)\n"
    ), result.stderr


@pytest.mark.parametrize(
    ("implementation", "said"),
    [
        ("async def renew_finished_crawl(project):\n    return True\n", "must be a plain def"),
        ("def renew_finished_crawl(project):\n    return 1\n", "returned 1; it returns True"),
    ],
)
async def test_a_renew_answer_that_is_no_bool_is_named_not_taken_for_no(
    tmp_path: Path, implementation: str, said: str
) -> None:
    (tmp_path / "renews.py").write_text(
        f"from framework import hookimpl\n\n@hookimpl\n{implementation}", encoding="utf-8"
    )
    project = project_with(tmp_path, "./renews.py")
    project.write_text(project.read_text() + "frontier: sqlite:///state.db\n")
    result = await run_fw("check", str(project))
    assert result.returncode == 2
    assert result.stderr.startswith(f"Error: plugin 'renews.py': renew_finished_crawl {said}")
    assert "never awaited" not in result.stderr  # no bare Python warning instead of fw's
