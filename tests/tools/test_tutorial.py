"""docs/tutorial.md, run as written: every command and code block, in order, in an empty folder.

A fenced ``sh`` block is run line by line. Any other block says what it is with an HTML
comment on the line before it, and a block without one fails the test:

- ``<!-- test: write PATH -->``: save the block as PATH;
- ``<!-- test: replace class NAME in PATH -->``: put the block in place of that class;
- ``<!-- test: output -->``: the block is what the command before it printed;
- ``<!-- test: background server -->``: start the command and leave it running;
- ``<!-- test: illustrative -->``: not run (keep these few).

``<!-- test: stop the server -->`` on a line of its own stops the server.

What the test changes, and why: ``path/to/fw`` is this checkout; the server listens on a
free port rather than 8000, which every URL follows (another run may hold 8000); ``fw``,
``pytest`` and ``pip`` are this virtualenv's, in a throwaway one that sees its packages, so
that ``pip install`` leaves this one alone and finds everything offline; commands read an
empty stdin, so ``fw shell``'s session ends at once.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests.tools.test_scaffold import throwaway_venv

ROOT = Path(__file__).parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
CHECKOUT = "path/to/fw"
PORT = "8000"

_MARKER = re.compile(r"<!-- test: (.+?) -->")
_REPLACE = re.compile(r"replace class (\w+) in (\S+)")


@dataclass(frozen=True)
class Step:
    """One thing the reader does: a block and what its marker says to do with it."""

    line: int
    action: str  # "sh", or a marker's text: "write PATH", "output", ...
    text: str  # the block, or "" for a marker alone
    prose: str  # the text since the previous block, which tells the reader what to do


def steps(markdown: str) -> Iterator[Step]:
    """Yield the tutorial's steps in order; fail on a block the test cannot place."""
    prose: list[str] = []
    marker: str | None = None
    block: list[str] | None = None
    start, language = 0, ""
    for number, line in enumerate(markdown.splitlines(), 1):
        if block is not None:
            if line.startswith("```"):
                action = marker or language
                assert action == "sh" or marker, f"tutorial.md:{start}: unmarked {language} block"
                yield Step(start, action, "\n".join(block) + "\n", "\n".join(prose))
                block, marker, prose = None, None, []
            else:
                block.append(line)
        elif line.startswith("```"):
            block, start, language = [], number, line.removeprefix("```").strip()
        elif found := _MARKER.fullmatch(line.strip()):
            if found[1] == "stop the server":
                yield Step(number, found[1], "", "")
            else:
                marker = found[1]
        else:
            assert marker is None or not line.strip(), f"tutorial.md:{number}: text after a marker"
            prose.append(line)
    assert block is None, f"tutorial.md:{start}: a block is never closed"
    assert marker is None, f"tutorial.md: a marker at the end, with no block: {marker}"


class Reader:
    """Follow the tutorial in one folder, as a reader at a shell would."""

    def __init__(self, folder: Path, env: dict[str, str], state: Path) -> None:
        self.cwd, self.env, self.state = folder, env, state
        self.port: int | None = None
        self.server: subprocess.Popen[str] | None = None
        self.printed = ""  # what the last command wrote to stdout

    def substitute(self, text: str) -> str:
        text = text.replace(CHECKOUT, str(ROOT))
        if self.port is not None:
            text = text.replace(f"127.0.0.1:{PORT}", f"127.0.0.1:{self.port}")
        return text

    def do(self, step: Step) -> None:
        """Do what ``step`` says, as the reader would."""
        where = f"tutorial.md:{step.line}"
        verb = step.action.split()[0]
        actions = {
            "sh": self.commands,
            "write": self.write,
            "replace": self.replace,
            "output": self.compare,
            "background": self.start_server,
            "stop": self.stop,
            "illustrative": self.skip,
        }
        assert verb in actions, f"{where}: unknown marker {step.action!r}"
        actions[verb](step, where)

    def skip(self, step: Step, where: str) -> None:
        """Leave out a block marked illustrative."""

    def commands(self, step: Step, where: str) -> None:
        for command in step.text.splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                self.run(self.substitute(command), where)

    def write(self, step: Step, where: str) -> None:
        path = step.action.removeprefix("write ")
        assert f"`{path}`" in step.prose, f"{where}: the text does not name {path}"
        file = self.cwd / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(self.substitute(step.text), encoding="utf-8")

    def replace(self, step: Step, where: str) -> None:
        replace = _REPLACE.fullmatch(step.action)
        assert replace, f"{where}: not replace class NAME in PATH: {step.action!r}"
        name, path = replace.groups()
        assert f"`{path}`" in step.prose and f"`{name}`" in step.prose, where
        replace_class(self.cwd / path, name, step.text)

    def compare(self, step: Step, where: str) -> None:
        expected = self.substitute(step.text)
        if self.printed != expected:
            diff = difflib.unified_diff(
                expected.splitlines(), self.printed.splitlines(), "tutorial", "printed", lineterm=""
            )
            pytest.fail(
                f"{where}: the command printed otherwise:\n" + "\n".join(diff), pytrace=False
            )

    def run(self, command: str, where: str) -> None:
        # One shell per command; `cd` carries over, as it would at a terminal.
        done = subprocess.run(
            ["bash", "-ec", f'{command}\npwd > "{self.state}"'],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"{where}: {command}\n{done.stdout}{done.stderr}", pytrace=False)
        self.cwd = Path(self.state.read_text(encoding="utf-8").strip())
        self.printed = done.stdout

    def stop(self, step: Step, where: str) -> None:
        assert self.server is not None, f"{where}: no server is running"
        self.close_server()

    def close_server(self) -> None:
        if self.server is None:
            return
        if self.server.poll() is None:
            self.server.terminate()
            self.server.wait(timeout=10)
        assert self.server.stdout is not None
        self.server.stdout.close()

    def start_server(self, step: Step, where: str) -> None:
        """Start the server on a free port; return once it says it is listening."""
        command = self.substitute(step.text).strip()
        log = self.state.with_name("server.log")
        on_any_port, changed = re.subn(rf"\b{PORT}\b", "0", command, count=1)
        assert changed, f"{where}: the server is not on port {PORT}"
        with log.open("w", encoding="utf-8") as errors:  # the server keeps its own copy
            self.server = subprocess.Popen(
                ["bash", "-c", f"exec {on_any_port}"],
                cwd=self.cwd,
                env={**self.env, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
        assert self.server.stdout is not None
        said = self.server.stdout.readline()  # http.server's "Serving HTTP on ... port N"
        listening = re.search(r"port (\d+)", said)
        if listening is None:
            self.close_server()
            said += log.read_text(encoding="utf-8")
            pytest.fail(f"{where}: {command}\n{said}", pytrace=False)
        self.port = int(listening[1])


def replace_class(file: Path, name: str, code: str) -> None:
    """Put ``code`` in place of the class ``name`` (with its decorators) in ``file``."""
    source = file.read_text(encoding="utf-8")
    found = [
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.ClassDef) and node.name == name
    ]
    assert len(found) == 1, f"{file}: no class {name}, or more than one"
    node = found[0]
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    lines = source.splitlines(keepends=True)
    lines[first - 1 : node.end_lineno] = [code]
    file.write_text("".join(lines), encoding="utf-8")


def shell_environment(venv: Path) -> dict[str, str]:
    """Return the environment of the reader's shell: fw, pytest and pip on the PATH."""
    python = venv / "bin" / "python"
    for command in ("fw", "pytest", "pip"):  # as pip writes console scripts
        (script,) = entry_points(group="console_scripts", name=command)
        file = venv / "bin" / command
        file.write_text(
            f"#!{python}\nimport sys\nfrom {script.module} import {script.attr}\n"
            f"sys.exit({script.attr}())\n",
            encoding="utf-8",
        )
        file.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FW_"))}
    return {
        **env,
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv),
        "PIP_NO_INDEX": "1",  # offline: fw and the build backend are already installed
        "PIP_NO_BUILD_ISOLATION": "0",  # pip reads this as "build isolation: off"
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        # fw's own test tools are not the reader's: hypothesis's plugin costs 2 s a run.
        "PYTEST_ADDOPTS": "-p no:hypothesispytest",
    }


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    throwaway_venv(venv)
    folder = tmp_path / "reader"
    folder.mkdir()
    reader = Reader(folder, shell_environment(venv), tmp_path / "cwd")
    try:
        for step in steps(TUTORIAL.read_text(encoding="utf-8")):
            reader.do(step)
    finally:
        reader.close_server()


@pytest.mark.parametrize(
    ("markdown", "error"),
    [
        ("```python\nx = 1\n```\n", "unmarked python block"),
        ("<!-- test: output -->\nsome words\n```text\nx\n```\n", "text after a marker"),
        ("```sh\nfw check project.yaml\n", "never closed"),
    ],
)
def test_a_block_the_test_cannot_place_fails_it(markdown: str, error: str) -> None:
    with pytest.raises(AssertionError, match=error):
        list(steps(markdown))
