"""A project file that would exhaust memory or the stack is one located error and exit 2."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import subprocess
from pathlib import Path

import pytest

from framework.config.project import load_project, parse_override
from framework.config.yamlfile import MAX_BYTES, MAX_DEPTH, MAX_REPEATED, Overrun, parse
from framework.errors import ProjectError
from tests.conftest import Completed, Serve, fw_command, pages, write_project

#: Far below what an unbounded loader needs for a bomb (gigabytes), far above what fw
#: needs to refuse one: a test that regresses dies of MemoryError instead of the host.
ADDRESS_SPACE = 1024 * 1024 * 1024

#: A billion laughs: nine levels of nine aliases, 387 million values in 600 bytes. The
#: aliases pass MAX_REPEATED on line 13, the sixth level (the line of &f).
BOMB = "".join(
    f"            - &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)
BOMB_LINE = 13
REPEATED = "fw expands aliases to at most 100,000 values"


def _bomb_project(start_url: str) -> str:
    return (
        f"spider: rules\nstart_urls: [{start_url}]\n"
        "rules:\n  items:\n    - fields:\n        x:\n          const:\n"
        "            - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + BOMB
    )


def _flow_bomb() -> str:
    """Return the bomb as one line of flow YAML, as it would be given to ``-s``."""
    levels = ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [
        f"&{name} [{', '.join([f'*{prev}'] * 9)}]"
        for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    return f"[{', '.join(levels)}]"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


async def run_fw_bounded(*args: str, cwd: Path) -> Completed:
    """Run ``fw`` in a subprocess limited to ``ADDRESS_SPACE`` bytes of memory."""
    process = await asyncio.create_subprocess_exec(
        *fw_command(),
        *args,
        cwd=cwd,
        preexec_fn=_limit_memory,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:  # generous: a bounded loader answers in about a second
        out, err = await asyncio.wait_for(process.communicate(), 90)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(), err.decode())


def one_error(result: Completed) -> str:
    """Return the one line a refused project prints, checking it exited 2 and said nothing."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("command", ["check", "run"])
async def test_an_alias_bomb_in_a_rules_const_is_refused(
    command: str, tmp_path: Path, serve: Serve
) -> None:
    # A page to scrape, so that an unbounded fw run would copy the const into an item.
    site = await serve(pages({"/": "<h1>hi</h1>"}))
    path = write_project(tmp_path, _bomb_project(f"{site}/"))
    line = one_error(await run_fw_bounded(command, str(path), cwd=tmp_path))
    assert line.startswith(f"Error: {path}:{BOMB_LINE}: the aliases up to here repeat "), line
    assert line.endswith(REPEATED)


DEEP = 10_000
HEAD = "spider: rules\nstart_urls: [http://127.0.0.1:9/]\n"  # never fetched: refused first

# The value of ``rules:`` (from line 3), the line the error names, words it must contain.
ENDLESS = {
    "nested lists": (" " + "[" * DEEP + "]" * DEEP, 3, "nested 101 levels deep"),
    "nested mappings": (" " + "{a: " * DEEP + "}" * DEEP, 3, "nested 101 levels deep"),
    "nested block lists": ("\n  x:\n    " + "- " * DEEP + "x", 5, "nested 101 levels deep"),
    # Each anchor nests the one before: 60 levels written, 120 once the alias is expanded.
    "a chain of aliases": (
        f"\n  x:\n    - &a0 {'[' * 60}1{']' * 60}\n    - &a1 {'[' * 60}*a0{']' * 60}",
        6,
        "with the alias *a0 here, the value is nested 123 levels deep",
    ),
    "an alias inside its own value": (
        "\n  x: &a\n    - y\n    - *a",
        6,
        "the alias *a is inside the value &a it repeats",
    ),
}


@pytest.mark.parametrize("case", ENDLESS)
@pytest.mark.parametrize("command", ["check", "run"])
async def test_an_endless_value_is_refused_at_its_line(
    case: str, command: str, tmp_path: Path
) -> None:
    value, lineno, words = ENDLESS[case]
    path = tmp_path / "project.yaml"
    path.write_text(f"{HEAD}rules:{value}\n", encoding="utf-8")
    line = one_error(await run_fw_bounded(command, str(path), cwd=tmp_path))
    assert line.startswith(f"Error: {path}:{lineno}: "), line
    assert words in line


@pytest.mark.parametrize("command", ["check", "run"])
async def test_a_10_mb_project_file_is_refused_unparsed(command: str, tmp_path: Path) -> None:
    urls = "".join(f"  - http://127.0.0.1:9/{n:07}\n" for n in range(330_000))
    path = tmp_path / "big.yaml"
    path.write_text(f"spider: rules\nstart_urls:\n{urls}", encoding="utf-8")
    size = path.stat().st_size
    assert size > 10_000_000
    line = one_error(await run_fw_bounded(command, str(path), cwd=tmp_path))
    assert line == (
        f"Error: {path}:1: the project file is {size:,} bytes; "
        "fw reads project files up to 1,048,576 bytes"
    )


@pytest.mark.parametrize("command", ["check", "run", "status"])
async def test_a_project_file_that_is_no_regular_file_is_refused_unread(
    command: str, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # no writer will ever come: opening it for reading once waited forever
    line = one_error(await run_fw_bounded(command, str(fifo), cwd=tmp_path))
    assert line == f"Error: {fifo}: not a regular file (a FIFO)"
    line = one_error(await run_fw_bounded(command, str(tmp_path), cwd=tmp_path))
    assert line == f"Error: {tmp_path}: not a regular file (a folder)"


def test_a_project_file_given_on_stdin_is_read_when_stdin_is_a_file(tmp_path: Path) -> None:
    path = write_project(tmp_path, f"{HEAD}rules: {{items: [{{fields: {{t: h1}}}}]}}\n")
    with path.open("rb") as stdin:
        done = subprocess.run(
            [*fw_command(), "check", "/dev/stdin"],
            stdin=stdin,
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"OK: /dev/stdin: stdin: spider rules, 1 start URL(s)")


# -s KEY=VALUE, words the error must contain
BAD_OVERRIDES = {
    "an alias bomb": (f"rules.items.0.fields.x.const={_flow_bomb()}", REPEATED),
    "nested lists": (
        "rules.items.0.fields.x.const=" + "[" * DEEP + "]" * DEEP,
        "nested 101 levels deep",
    ),
}


@pytest.mark.parametrize("case", BAD_OVERRIDES)
@pytest.mark.parametrize("command", ["check", "run"])
async def test_an_override_past_a_limit_is_refused(
    case: str, command: str, tmp_path: Path, serve: Serve
) -> None:
    override, words = BAD_OVERRIDES[case]
    site = await serve(pages({"/": "<h1>hi</h1>"}))
    rules = "rules: {items: [{fields: {x: {const: 1}}}]}\n"
    path = write_project(tmp_path, f"spider: rules\nstart_urls: [{site}/]\n{rules}")
    line = one_error(await run_fw_bounded(command, str(path), "-s", override, cwd=tmp_path))
    assert line.startswith("Error: -s: rules.items[0].fields.x.const: "), line
    assert words in line


def test_an_env_value_nested_past_the_limit_is_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FW_DELAY", "[" * DEEP)
    path = write_project(tmp_path, f"{HEAD}delay: {{$env: FW_DELAY}}\n")
    with pytest.raises(ProjectError) as raised:
        load_project(path)
    assert str(raised.value) == (
        f"{path}:3: delay: expected a number, got the value of $env FW_DELAY (not shown)"
    )


def test_values_may_nest_up_to_the_limit() -> None:
    assert parse("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(Overrun, match="nested 101 levels deep"):
        parse("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))


def test_aliases_may_nest_up_to_the_limit() -> None:
    anchor = "&a " + "[" * 50 + "]" * 50  # 50 levels, at levels 2 to 51
    assert parse(f"[{anchor}, {'[' * 49}*a{']' * 49}]") is not None  # *a at 51 to 100
    with pytest.raises(Overrun, match=r"with the alias \*a here, the value is nested 101 levels"):
        parse(f"[{anchor}, {'[' * 50}*a{']' * 50}]")


def test_an_override_counts_its_key_path_against_the_limit() -> None:
    key = ".".join(["rules"] + ["a"] * (MAX_DEPTH - 1))
    assert parse_override(f"{key}=x") == (tuple(key.split(".")), "x")
    assert parse_override(f"{key[:-2]}=[x]")[1] == ["x"]
    with pytest.raises(ProjectError, match="nested 101 levels deep"):
        parse_override(f"{key}=[x]")
    with pytest.raises(ProjectError) as raised:
        parse_override(".".join(["a"] * 5000) + "=1")
    assert str(raised.value) == (
        "-s: a.a.a…: the key path is 5,000 keys deep; fw reads values nested up to 100 levels"
    )


def test_aliases_may_repeat_up_to_the_limit() -> None:
    # &a names 1,000 values (the list and its 999 items); each *a repeats them all.
    named = f"&a [{', '.join(['x'] * 999)}], &s x"
    at_the_limit = f"[{named}{', *a' * (MAX_REPEATED // 1000)}]"
    assert len(parse(at_the_limit)) == 2 + MAX_REPEATED // 1000
    with pytest.raises(Overrun, match="repeat 100,001 values"):
        parse(f"[{named}{', *a' * (MAX_REPEATED // 1000)}, *s]")


def test_merge_keys_repeat_values_like_aliases(tmp_path: Path) -> None:
    # &base names 2,001 values: the mapping, its 1,000 keys and their values.
    base = f"  base: &base {{{', '.join(f'k{n}: {n}' for n in range(1000))}}}\n"
    merges = "".join(f"  m{n}:\n    <<: *base\n    own: {n}\n" for n in range(49))
    text = f"{HEAD}rules:\n{base}{merges}"
    path = write_project(tmp_path, text)
    project = load_project(path)
    assert project.section("rules")["m1"] == {**project.section("rules")["base"], "own": 1}
    assert project.error_source.where(("rules", "m1", "own")) == f"{path}:10"
    path.write_text(f"{text}  m49: {{<<: *base}}\n", encoding="utf-8")  # 50 x 2,001 > 100,000
    with pytest.raises(
        ProjectError, match=rf"{re.escape(str(path))}:{4 + 3 * 49 + 1}: .*{REPEATED}"
    ):
        load_project(path)


def test_a_project_file_may_be_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "project.yaml"
    path.write_text(HEAD + "#" * (MAX_BYTES - len(HEAD) - 1) + "\n", encoding="utf-8")
    assert load_project(path).spider == "rules"
    path.write_text(path.read_text() + "\n", encoding="utf-8")
    with pytest.raises(ProjectError, match="1,048,577 bytes"):
        load_project(path)


def test_the_readme_states_the_limits() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    reference = " ".join(readme.split("Parsed once with", 1)[1].split("| Key |")[0].split())
    assert f"project files of up to {MAX_BYTES // 1024**2} MiB" in reference
    assert f"nested up to {MAX_DEPTH} levels" in reference
    assert f"repeat at most {MAX_REPEATED:,} values" in reference
