"""fw as another team gets it: a plain install of the built wheel in a fresh virtualenv.

One virtualenv for the module (building it is the slow part): the wheel of this checkout
with only its ``testing`` extra, as a team adopting fw installs it. Then, from a user's
folder whose own ``plugins`` package comes first on ``sys.path``:

- the bundled plugins load (they are installed as ``fwcrawl_plugins``);
- a scaffolded project and a scaffolded plugin pass their own tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
RECORDING = ROOT / "projects" / "douban-recording"


class Installed:
    """A virtualenv with fw's wheel installed; ``run`` a command of it in a folder."""

    def __init__(self, folder: Path) -> None:
        self.bin = folder / "bin"

    def run(self, *command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
        program = str(self.bin / command[0])
        done = subprocess.run(
            [program, *command[1:]],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**_clean_environment(), **env},
        )
        return done


def _clean_environment() -> dict[str, str]:
    """This process's environment without what points at its own virtualenv."""
    kept = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    kept["PATH"] = os.pathsep.join(
        p for p in kept.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix)
    )
    return {**kept, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("packaging")
    source = _copy_of_the_checkout(work / "source")  # building writes build/ beside it
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(work / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (work / "dist").glob("fwcrawl-*.whl")
    venv.EnvBuilder(with_pip=True).create(work / "venv")
    env = Installed(work / "venv")
    added = env.run("pip", "install", "-q", f"{wheel}[testing]", cwd=work)
    assert added.returncode == 0, added.stdout + added.stderr
    yield env


def _copy_of_the_checkout(target: Path) -> Path:
    """Copy the files git tracks (and new ones it does not ignore), as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for name in listed.stdout.splitlines():
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    """A team's folder with a ``plugins`` package of its own, as many projects have."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "__init__.py").write_text("# the team's own plugins\n")
    return tmp_path


def test_the_bundled_plugins_load_beside_a_projects_own_plugins_package(
    installed: Installed, user_folder: Path
) -> None:
    listed = installed.run("fw", "plugins", cwd=user_folder, PYTHONPATH=str(user_folder))
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[0] for line in listed.stdout.splitlines()[1:]} >= {
        "douban",
        "rules",
        "exporters",
    }
    project = ROOT / "projects" / "douban.yaml"
    replayed = installed.run(
        "fw",
        "run",
        str(project),
        "--replay",
        str(RECORDING),
        "-s",
        "exporters=[]",
        "-o",
        "movies.jsonl",
        "-q",
        cwd=user_folder,
        PYTHONPATH=str(user_folder),
    )
    assert replayed.returncode == 0, replayed.stderr
    assert len((user_folder / "movies.jsonl").read_text().splitlines()) == 21


def test_a_scaffolded_project_passes_its_tests_with_only_the_testing_extra(
    installed: Installed, user_folder: Path
) -> None:
    made = installed.run("fw", "new", "project", "shop", cwd=user_folder)
    assert made.returncode == 0, made.stderr
    tested = installed.run(
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        cwd=user_folder / "shop",
        PYTHONPATH=str(user_folder),
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout


def test_a_scaffolded_plugin_installs_and_passes_its_tests(
    installed: Installed, user_folder: Path
) -> None:
    made = installed.run("fw", "new", "plugin", "teamx", cwd=user_folder)
    assert made.returncode == 0, made.stderr
    added = installed.run("pip", "install", "-q", "./fw-teamx", cwd=user_folder)
    assert added.returncode == 0, added.stdout + added.stderr
    listed = installed.run("fw", "plugins", "--requirements", cwd=user_folder)
    assert listed.stdout.splitlines() == ["fw-teamx==0.1.0", "fwcrawl==0.1.0"]
    tested = installed.run(
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "fw-teamx",
        cwd=user_folder,
        PYTHONPATH=str(user_folder),
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
