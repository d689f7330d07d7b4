"""fw new: a project folder and a plugin package that pass their own tests at once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_fw


def pytest_in(folder: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=folder, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


async def test_a_new_project_checks_and_passes_its_own_test(tmp_path: Path) -> None:
    made = await run_fw("new", "project", "shop_news", "-d", str(tmp_path))
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "shop_news"
    assert sorted(p.name for p in folder.iterdir()) == [
        "project.yaml", "pytest.ini", "spider.py", "tests"]
    checked = await run_fw("check", str(folder / "project.yaml"))
    assert checked.returncode == 0, checked.stderr
    assert "spider shop_news" in checked.stdout
    tested = await asyncio.to_thread(pytest_in, folder)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout


async def test_a_new_plugin_installs_is_listed_and_passes_its_own_tests(
        tmp_path: Path) -> None:
    made = await run_fw("new", "plugin", "shop_news", "-d", str(tmp_path))
    assert made.returncode == 0, made.stderr
    package = tmp_path / "fw-shop-news"
    site = tmp_path / "site"
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                         "--no-build-isolation", "--target", str(site), str(package)],
        check=True, capture_output=True, timeout=120)
    path = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site),
                                                         os.environ.get("PYTHONPATH")]))}
    listed = await run_fw("plugins", "--json", env=path)
    plugin = next(p for p in json.loads(listed.stdout) if p["name"] == "shop_news")
    assert plugin["provides"] == {"spiders": ["shop_news"], "exporters": ["shop_news"]}
    tested = await asyncio.to_thread(pytest_in, package, path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "2 passed" in tested.stdout


async def test_bad_names_and_existing_folders_are_usage_errors(tmp_path: Path) -> None:
    bad = await run_fw("new", "plugin", "Shop-News", "-d", str(tmp_path))
    assert bad.returncode == 2 and "lower-case letters" in bad.stderr
    (tmp_path / "taken").mkdir()
    taken = await run_fw("new", "project", "taken", "-d", str(tmp_path))
    assert taken.returncode == 2 and "already exists" in taken.stderr
