"""The benchmark commands the docs show are ones the benchmark scripts accept.

A benchmark takes minutes, so the suite does not run them; it asks each script for its
``--help`` instead, and checks every flag and every crawler name a documented command uses
against it, so that a renamed flag or crawler cannot leave the docs behind.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
PAGES = [REPO / "README.md", REPO / "benchmarks" / "README.md", *sorted(REPO.glob("docs/*.md"))]
COMMAND = re.compile(r"python3? (benchmarks/\w+\.py\b[^`#\n]*)")
#: ``run.py``'s arguments quoted alone in the figures' tables: `--site pydocs --runs 3`.
RUN_ARGUMENTS = re.compile(r"`(--(?:site|hosts|only)\b[^`]*)`")


def documented_commands() -> list[tuple[str, list[str]]]:
    """Return each distinct ``python benchmarks/…`` command of the docs, as (page, words)."""
    found: dict[str, str] = {}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        commands = COMMAND.findall(text)
        commands += (f"benchmarks/run.py {arguments}" for arguments in RUN_ARGUMENTS.findall(text))
        for command in commands:
            found.setdefault(command.strip(), str(page.relative_to(REPO)))
    return [(page, shlex.split(command)) for command, page in sorted(found.items())]


@functools.cache
def help_of(script: str) -> str:
    """Return a benchmark script's ``--help``, unwrapped so names stay whole."""
    done = subprocess.run(
        [sys.executable, script, "--help"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100000"},
        timeout=60,
    )
    assert done.returncode == 0, f"{script} --help failed: {done.stderr.strip()[-300:]}"
    return done.stdout


def test_the_docs_show_the_benchmarks_commands() -> None:
    scripts = {words[0] for _, words in documented_commands()}
    assert {"benchmarks/run.py", "benchmarks/scale.py", "benchmarks/browser.py"} <= scripts


@pytest.mark.parametrize(
    ("page", "words"),
    documented_commands(),
    ids=lambda value: shlex.join(value) if isinstance(value, list) else value,
)
def test_a_documented_command_uses_only_what_its_script_accepts(
    page: str, words: list[str]
) -> None:
    script, *arguments = words
    text = help_of(script)
    options = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", text))
    for argument in arguments:
        flag = argument.split("=", 1)[0]
        if flag.startswith("--"):
            assert flag in options, f"{page}: {script} has no {flag}"
    if "--only" in arguments[:-1]:  # not a bare mention of the flag
        # The names a script knows are the comma-separated lists its help gives.
        lists = re.findall(r"[\w-]+(?:,[\w-]+)+", text)
        named = {name for listed in lists for name in listed.split(",")}
        for crawler in arguments[arguments.index("--only") + 1].split(","):
            assert crawler in named, f"{page}: {script} --only knows no crawler {crawler!r}"
