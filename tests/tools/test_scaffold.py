"""fw new: a project folder and a plugin package that pass their own tests at once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from framework.__about__ import __version__
from tests.conftest import run_fw


def pytest_in(folder: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


async def test_a_new_project_checks_and_passes_its_own_test(tmp_path: Path) -> None:
    made = await run_fw("new", "project", "shop_news", "-d", str(tmp_path))
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "shop_news"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",  # which names fwcrawl[testing], what the tests need
        "project.yaml",
        "pytest.ini",
        "spider.py",
        "tests",
    ]
    checked = await run_fw("check", str(folder / "project.yaml"))
    assert checked.returncode == 0, checked.stderr
    assert "spider shop_news" in checked.stdout
    assert "pip install 'fwcrawl[testing]'" in (folder / "README.md").read_text()
    tested = await asyncio.to_thread(pytest_in, folder)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout


def throwaway_venv(where: Path) -> Path:
    """Create a venv that installs into itself but sees this one's packages; return python.

    ``--system-site-packages`` would show the base interpreter's packages, not those of the
    venv running the tests, so a ``.pth`` line adds this venv's site-packages (with its
    ``.pth`` files, among them fw's own editable install): fw, pytest and pip are there,
    and nothing is fetched from the network.
    """
    try:
        venv.EnvBuilder(with_pip=False).create(where)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot create a virtual environment here: {exc}")
    python = where / "bin" / "python"
    own = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    parent = sysconfig.get_path("purelib")
    (Path(own.stdout.strip()) / "fw_tests_parent.pth").write_text(
        f"import site; site.addsitedir({parent!r})\n", encoding="utf-8"
    )
    return python


def run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def test_a_new_plugin_passes_its_own_tests_right_after_pip_install_e(tmp_path: Path) -> None:
    made = await run_fw("new", "plugin", "shop_news", "-d", str(tmp_path))
    assert made.returncode == 0, made.stderr
    package = tmp_path / "fw-shop-news"
    python = await asyncio.to_thread(throwaway_venv, tmp_path / "venv")
    # As the README says, offline: the build backend and fw come from this environment.
    installed = await asyncio.to_thread(
        run,
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-index",
        "--no-build-isolation",
        "-e",
        f"{package}[test]",
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = await asyncio.to_thread(run, python, "-m", "framework", "plugins", "--json")
    plugin = next(p for p in json.loads(listed.stdout) if p["name"] == "shop_news")
    assert (plugin["distribution"], plugin["version"]) == ("fw-shop-news", "0.1.0")
    assert plugin["provides"] == {"spiders": ["shop_news"], "exporters": ["shop_news"]}
    tested = await asyncio.to_thread(
        run, python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=package
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 passed" in tested.stdout
    # Editable: a change to the source is what the next crawl runs, with no reinstall.
    module = package / "src" / "fw_shop_news" / "__init__.py"
    module.write_text(
        module.read_text(encoding="utf-8").replace('name = "shop_news"', 'name = "shop_news_v2"'),
        encoding="utf-8",
    )
    relisted = await asyncio.to_thread(run, python, "-m", "framework", "plugins", "--json")
    plugin = next(p for p in json.loads(relisted.stdout) if p["name"] == "shop_news")
    assert plugin["provides"]["spiders"] == ["shop_news_v2"]


async def test_bad_names_and_existing_folders_are_usage_errors(tmp_path: Path) -> None:
    bad = await run_fw("new", "plugin", "Shop-News", "-d", str(tmp_path))
    assert bad.returncode == 2 and "lower-case letters" in bad.stderr
    (tmp_path / "taken").mkdir()
    taken = await run_fw("new", "project", "taken", "-d", str(tmp_path))
    assert taken.returncode == 2 and "already exists" in taken.stderr
    for name in ("shop_", "a" * 65):  # fw-shop- is no distribution name pip installs
        named = await run_fw("new", "plugin", name, "-d", str(tmp_path))
        assert named.returncode == 2 and "ending with a letter or digit" in named.stderr
    bundled = await run_fw("new", "plugin", "files", "-d", str(tmp_path))
    assert bundled.returncode == 2, bundled.stderr
    assert bundled.stderr.strip() == (
        "Error: fw new plugin files: an installed plugin (fwcrawl) is named 'files' already; "
        "choose another name"
    )
    # Not a plugin's name, but what the new one would register: a clash, or fw's own
    # exporter quietly replaced.
    for name, taken in [
        ("login", f"the middleware of plugin 'forms' (from fwcrawl {__version__})"),
        ("jsonl", f"the exporter of plugin 'exporters' (from fwcrawl {__version__})"),
        (
            "db",
            f"the extension .db of exporter 'sqlite' of plugin 'exporters' (from fwcrawl "
            f"{__version__})",
        ),
        ("delay", "fw's own project key of that name, which the plugin's section would need"),
    ]:
        clash = await run_fw("new", "plugin", name, "-d", str(tmp_path))
        assert clash.returncode == 2 and not (tmp_path / f"fw-{name}").exists()
        assert clash.stderr.strip() == (
            f"Error: fw new plugin {name}: {name!r} is taken, by {taken}; choose another"
        )
    (tmp_path / "afile").write_text("")
    into_a_file = await run_fw("new", "project", "shop", "-d", str(tmp_path / "afile"))
    assert into_a_file.stderr.strip() == (
        f"Error: fw new project shop: cannot write {tmp_path / 'afile' / 'shop'}: Not a directory"
    )
    assert into_a_file.returncode == 2
