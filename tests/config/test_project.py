"""Every invalid project gets one line, ``Error: FILE:LINE: key: what is wrong``, and exit 2."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
from aiohttp import web

from framework.cli import main
from framework.config.project import Project, load_project, parse_override
from framework.config.schema import build, keys_of, option
from framework.config.yamlfile import Source
from framework.errors import ProjectError, ProjectErrors
from tests.conftest import Serve, pages, read_jsonl, run_fw, write_project

VALID = """\
spider: shop
start_urls: [https://shop.example/]
plugins: [./shop.py]
"""

# (project text, line the error must point at, key, words the message must contain)
INVALID = {
    # An unclosed bracket or quote is blamed where it opened, not where PyYAML gave up.
    "unclosed bracket": (
        "spider: shop\nstart_urls: [https://a.example/\nretries: 3\n",
        2,
        "",
        "invalid YAML in the [ opened on this line: expected ',' or ']', but got ':' on line 3",
    ),
    "unclosed bracket at the end": (
        "spider: shop\nstart_urls: [https://a.example/\n",
        2,
        "",
        "in the [ opened on this line",
    ),
    "unclosed quote": (
        'spider: "shop\nretries: 3\n',
        1,
        "",
        "in the string quoted on this line: found unexpected end of stream at the end of the file",
    ),
    "bad indentation": (
        "spider: shop\n  bad: indent\nretries: 3\n",
        2,
        "",
        "invalid YAML: mapping values are not allowed here",
    ),
    "sequence item dedented": (
        "start_urls:\n  - https://a.example/\n - https://b.example/\n",
        3,
        "",
        "invalid YAML: expected <block end>",
    ),
    "a NUL byte": (  # PyYAML's reader says only its offset: the line is worked out
        VALID + 'name: "a\x00b"\n',
        4,
        "",
        "invalid YAML: character U+0000 (NUL) is not allowed",
    ),
    "a control character after bare CR line breaks": (
        'spider: shop\rstart_urls: [https://shop.example/]\rname: "a\x01b"\r',
        3,
        "",
        "invalid YAML: character U+0001 is not allowed",
    ),
    "unknown top-level key": (
        VALID + "concurency: {total: 4}\n",
        4,
        "concurency",
        "did you mean 'concurrency'",
    ),
    "unknown nested key": (
        VALID + "concurrency:\n  total: 4\n  per_domian: 2\n",
        6,
        "concurrency.per_domian",
        "did you mean 'per_domain'",
    ),
    "wrong type": (VALID + "timeout: fast\n", 4, "timeout", "expected a number, got 'fast'"),
    # fw check said OK, and fw run refused it.
    "redis frontier option": (
        VALID + 'frontier: "redis://127.0.0.1:1/0?lease=30&patience=soon"\n',
        4,
        "frontier",
        "redis://127.0.0.1:1/0?lease=30&patience=soon: patience=soon: expected a number of "
        "seconds > 0, or inf",
    ),
    "redis frontier with an unclosed bracket": (
        VALID + 'frontier: "redis://ada:pw@[::1/0"\n',
        4,
        "frontier",
        "redis://***@[::1/0: Invalid IPv6 URL",
    ),
    "wrong type in list": (
        "spider: shop\nplugins: [./shop.py]\nstart_urls:\n  - https://a.example/\n  - 42\n",
        5,
        "start_urls[1]",
        "expected an http(s) URL, got 42",
    ),
    "start url outside allowed_domains": (
        "spider: shop\nstart_urls:\n  - https://www.shop.example/\n  - https://other.example/\n"
        "allowed_domains: [shop.example]\nplugins: [./shop.py]\n",
        4,
        "start_urls[1]",
        "host other.example is not in allowed_domains [shop.example]",
    ),
    "number as allowed domain": (
        VALID + "allowed_domains: [5]\n",
        4,
        "allowed_domains[0]",
        "expected a host name such as movie.douban.com, got 5",
    ),
    "no start urls": (
        "spider: shop\nstart_urls: []\nplugins: [./shop.py]\n",
        2,
        "start_urls",
        "no start URLs, and spider shop starts from them",
    ),
    "start_urls left out": (
        "spider: shop\nplugins: [./shop.py]\n",
        1,
        "start_urls",
        "the crawl would fetch nothing",
    ),
    "out of range": (VALID + "concurrency: {total: 0}\n", 4, "concurrency.total", "at least 1"),
    "negative delay": (VALID + "delay: -1\n", 4, "delay", "at least 0"),
    "unknown spider": (
        "spider: shpo\nstart_urls: [https://a.example/]\nplugins: [./shop.py]\n",
        1,
        "spider",
        "unknown spider 'shpo' (did you mean 'shop'?)",
    ),
    "missing spider": (
        "start_urls: [https://a.example/]\n",
        1,
        "spider",
        "required key is missing",
    ),
    "unknown exporter": (
        VALID + "exporters:\n  - {format: xml, path: out.xml}\n",
        5,
        "exporters[0].format",
        "unknown exporter 'xml'",
    ),
    "exporter without path": (
        VALID + "exporters:\n  - format: jsonl\n",
        5,
        "exporters[0].path",
        "required",
    ),
    "missing plugin file": (
        VALID.replace("[./shop.py]", "\n  - ./shop.py\n  - ./nowhere.py"),
        5,
        "plugins[1]",
        "no such plugin file './nowhere.py'",
    ),
    "broken plugin file": (
        VALID.replace("./shop.py", "./shop.py, ./broken.py"),
        3,
        "plugins[1]",
        "SyntaxError",
    ),
    "failing plugin file": (
        VALID.replace("./shop.py", "./raises.py"),
        3,
        "plugins[0]",
        "RuntimeError: no config",
    ),
    "missing plugin module": (
        VALID.replace("./shop.py", "team_pkg.spiders"),
        3,
        "plugins[0]",
        "no module named 'team_pkg.spiders'",
    ),
    "ftp start url": (
        "spider: shop\nplugins: [./shop.py]\nstart_urls: [ftp://files.example/x]\n",
        3,
        "start_urls[0]",
        "not an http(s) URL",
    ),
    "url as allowed domain": (
        VALID + "allowed_domains: [https://shop.example/]\n",
        4,
        "allowed_domains[0]",
        "not a host name",
    ),
    "port out of range in an allowed domain": (
        VALID + "allowed_domains: ['shop.example:99999']\n",
        4,
        "allowed_domains[0]",
        "a port is a number from 1 to 65535",
    ),
    "ipv6 start url on another port than allowed": (
        "spider: shop\nplugins: [./shop.py]\nstart_urls: ['http://[::1]:8080/']\n"
        "allowed_domains: ['[::1]:8081']\n",
        3,
        "start_urls[0]",
        "host ::1 is not in allowed_domains [[::1]:8081]",
    ),
    "not an ipv6 address": (
        VALID + "allowed_domains: ['[1::2::3]:80']\n",
        4,
        "allowed_domains[0]",
        "'[1::2::3]:80': not an IPv6 address",
    ),
    "ipv6 pattern with a port": (
        VALID + "domains: {'[::1]:80': {delay: 1}}\n",
        4,
        "domains",
        "'[::1]:80' is not a host pattern",
    ),
    "empty file": ("", 1, "", "the project file is empty"),
    "only a comment": ("# nothing yet\n", 1, "", "the project file is empty"),
    "not a mapping": ("- spider: shop\n", 1, "", "expected a mapping"),
    "plugin section not a mapping": (VALID + "shop: 5\n", 4, "shop", "expected a mapping"),
    "headers not a mapping": (
        VALID + "headers: [User-Agent]\n",
        4,
        "headers",
        "expected a mapping",
    ),
    "header name with a line break": (
        VALID + 'headers: {"X-A\\nB": v}\n',
        4,
        "headers",
        "not a valid header name",
    ),
    "header value with a line break": (
        VALID + 'headers: {X-A: "v\\r\\nX-B: w"}\n',
        4,
        "headers",
        "the value of X-A contains a line break",
    ),
    "header value with a NUL": (
        VALID + 'headers: {X-A: "v\\0w"}\n',
        4,
        "headers",
        "the value of X-A contains a NUL character",
    ),
    "not a number": (VALID + "delay: .nan\n", 4, "delay", "expected a finite number"),
    "infinite": (VALID + "timeout: .inf\n", 4, "timeout", "expected a finite number"),
    "absurd concurrency": (
        VALID + "concurrency: {total: 100000000}\n",
        4,
        "concurrency.total",
        "at most 10000",
    ),
    "start url whose host is no host": (
        "spider: shop\nplugins: [./shop.py]\nstart_urls: ['http://a b/']\n",
        3,
        "start_urls[0]",
        "'http://a b/' is not a valid URL",
    ),
    "start url with a bad port": (
        "spider: shop\nplugins: [./shop.py]\nstart_urls: [http://a.example:99999/]\n",
        3,
        "start_urls[0]",
        "not a valid URL",
    ),
    "key written twice": (
        VALID + "delay: 1\nretries: 2\ndelay: 2\n",
        6,
        "delay",
        "written twice (first on line 4)",
    ),
    "yaml boolean as a header name": (
        VALID + "headers:\n  on: x\n",
        5,
        "headers",
        "True is not a key name",
    ),
    "number as a host pattern": (
        VALID + "domains:\n  1: {delay: 1}\n",
        5,
        "domains",
        "1 is not a key name",
    ),
    "yaml boolean as a key": (
        VALID + "concurrency:\n  on: 3\n",
        5,
        "concurrency",
        "True is not a key name",
    ),
    "alias bomb": (
        "a0: &a0 [x]\n"
        + "".join(f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]\n" for n in range(1, 10))
        + VALID,
        6,
        "",
        "fw expands aliases to at most 100,000 values",
    ),
}

PLUGIN_FILES = {
    "shop.py": (
        "from framework import Spider, hookimpl\n\n"
        "class Shop(Spider):\n    name = 'shop'\n\n"
        "@hookimpl\ndef register_spiders(register):\n    register(Shop)\n"
    ),
    "broken.py": "def register_spiders(register)\n    pass\n",
    "raises.py": "raise RuntimeError('no config')\n",
    "seeds.py": (
        "from framework import Request, Spider, hookimpl\n\n"
        "class Seeds(Spider):\n    name = 'seeds'\n\n"
        "    def start_requests(self):\n        yield Request('https://shop.example/')\n\n"
        "@hookimpl\ndef register_spiders(register):\n    register(Seeds)\n"
    ),
}


def error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def expect(line: str, file: Path, lineno: int, key: str, words: str) -> None:
    prefix = f"Error: {file}:{lineno}: " + (f"{key}: " if key else "")
    assert line.startswith(prefix), f"{line!r} does not start with {prefix!r}"
    assert words in line


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    for name, text in PLUGIN_FILES.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("case", INVALID)
@pytest.mark.parametrize("command", ["check", "run"])
def test_invalid_project_gives_one_located_line_and_exit_2(
    case: str, command: str, project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, lineno, key, words = INVALID[case]
    path = write_project(project_dir, text)
    assert main([command, str(path)]) == 2
    captured = capsys.readouterr()
    expect(error_line(captured.err), path, lineno, key, words)
    assert captured.out == ""


@pytest.mark.parametrize("command", ["check", "run"])
async def test_invalid_project_in_a_subprocess(command: str, project_dir: Path) -> None:
    path = write_project(project_dir, VALID + "concurrency:\n  total: many\n")
    result = await run_fw(command, str(path))
    assert result.returncode == 2
    expect(
        error_line(result.stderr), path, 5, "concurrency.total", "expected an integer, got 'many'"
    )


MANY_ERRORS = (
    VALID
    + """\
timeout: fast
concurrency:
  total: 0
  per_domian: 2
exporters:
  - {format: jsonl}
  - {path: out.jsonl, format: 5}
"""
)


@pytest.mark.parametrize("command", ["check", "run"])
async def test_every_error_in_the_file_gets_its_own_line_in_file_order(
    command: str, project_dir: Path
) -> None:
    path = write_project(project_dir, MANY_ERRORS)
    result = await run_fw(command, str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: {path}:4: timeout: expected a number, got 'fast'",
        f"Error: {path}:6: concurrency.total: must be at least 1, got 0",
        f"Error: {path}:7: concurrency.per_domian: unknown key (did you mean 'per_domain'?)",
        f"Error: {path}:9: exporters[0].path: required: the file to write (or - for stdout)",
        f"Error: {path}:10: exporters[1].format: expected an exporter name such as jsonl",
    ]


async def test_past_twenty_errors_fw_check_says_how_many_more(project_dir: Path) -> None:
    urls = "".join(f"  - {n}\n" for n in range(25))
    path = write_project(
        project_dir, f"spider: shop\nplugins: [./shop.py]\nstart_urls:\n{urls}timeout: fast\n"
    )
    result = await run_fw("check", str(path))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[:2] == [
        f"Error: {path}:4: start_urls[0]: expected an http(s) URL, got 0",
        f"Error: {path}:5: start_urls[1]: expected an http(s) URL, got 1",
    ]
    assert lines[19] == f"Error: {path}:23: start_urls[19]: expected an http(s) URL, got 19"
    assert lines[20:] == ["… and 6 more errors"]


def test_errors_on_the_command_line_come_first(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_project(project_dir, VALID + "delay: -1\n")
    assert main(["check", str(path), "-s", "timeout=fast", "-s", "retries=-1"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "Error: -s: timeout: expected a number, got 'fast'",
        "Error: -s: retries: must be at least 0, got -1",
        f"Error: {path}:4: delay: must be at least 0, got -1",
    ]


def test_several_errors_are_one_project_error_listing_each(project_dir: Path) -> None:
    path = write_project(project_dir, MANY_ERRORS)
    with pytest.raises(ProjectError) as raised:
        load_project(path)
    error = raised.value
    assert isinstance(error, ProjectErrors)
    assert [(e.where, e.key) for e in error.errors] == [
        (f"{path}:4", "timeout"),
        (f"{path}:6", "concurrency.total"),
        (f"{path}:7", "concurrency.per_domian"),
        (f"{path}:9", "exporters[0].path"),
        (f"{path}:10", "exporters[1].format"),
    ]
    assert (error.where, error.key, error.message) == (
        f"{path}:4",
        "timeout",
        "expected a number, got 'fast'",
    )
    assert str(error) == "\n".join(str(e) for e in error.errors)


def test_every_unset_environment_variable_is_named(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FW_TOKEN", raising=False)
    monkeypatch.delenv("FW_PROXY", raising=False)
    text = VALID + "headers:\n  X-Token: {$env: FW_TOKEN}\n  X-Proxy: {$env: FW_PROXY}\n"
    with pytest.raises(ProjectErrors) as raised:
        load_project(write_project(project_dir, text))
    assert [e.message for e in raised.value.errors] == [
        "the environment variable FW_TOKEN is not set",
        "the environment variable FW_PROXY is not set",
    ]


def test_every_offsite_start_url_is_named(project_dir: Path) -> None:
    text = (
        "spider: shop\nstart_urls:\n  - https://a.example/\n  - https://shop.example/\n"
        "  - https://b.example/\nallowed_domains: [shop.example]\n"
    )
    with pytest.raises(ProjectErrors) as raised:
        load_project(write_project(project_dir, text))
    assert [e.key for e in raised.value.errors] == ["start_urls[0]", "start_urls[2]"]


@dataclasses.dataclass(frozen=True)
class Needs:
    token: str = option(doc="A key without a default.")
    every: int = option(1, doc="A key with a limit.", minimum=1)


def test_a_misspelt_required_key_is_one_error_a_missing_one_another() -> None:
    source = Source(Path("p.yaml"), {})
    with pytest.raises(ProjectError) as raised:
        build(Needs, {"tokn": "x"}, source, ("needs",))
    assert not isinstance(raised.value, ProjectErrors)
    assert str(raised.value) == "p.yaml:1: needs.tokn: unknown key (did you mean 'token'?)"
    with pytest.raises(ProjectErrors) as several:
        build(Needs, {"colour": "red", "every": 0}, source, ("needs",))
    assert [str(e) for e in several.value.errors] == [
        "p.yaml:1: needs.colour: unknown key",
        "p.yaml:1: needs.token: required key is missing",
        "p.yaml:1: needs.every: must be at least 1, got 0",
    ]


def test_missing_project_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["check", str(missing)]) == 2
    line = error_line(capsys.readouterr().err)
    assert line == f"Error: {missing}: cannot read the project file: No such file or directory"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("concurrency.per_domain=lots", "concurrency.per_domain: expected an integer, got 'lots'"),
        (
            "start_urls.0={$env: FW_NOT_SET}",
            "start_urls[0]: the environment variable FW_NOT_SET is not set",
        ),
        # A wrong path is the error, not the variable its value names.
        ("start_urls.5={$env: FW_NOT_SET}", "start_urls[5]: no such item (the list has 1)"),
        # A top-level key is a name, even all digits.
        ("0=1", "0: unknown key; top-level keys are fw's own or a plugin's name"),
    ],
)
def test_a_bad_override_points_at_the_command_line(
    project_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    override: str,
    message: str,
) -> None:
    monkeypatch.delenv("FW_NOT_SET", raising=False)
    path = write_project(project_dir, VALID)
    assert main(["check", str(path), "-s", override]) == 2
    assert error_line(capsys.readouterr().err) == f"Error: -s: {message}"


def test_override_takes_a_secret_from_the_environment(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FW_TOKEN", "0123")  # YAML would read 0123 as the octal number 83
    path = write_project(project_dir, VALID)
    project = load_project(path, ["headers.X-Token={$env: FW_TOKEN}"])
    assert project.headers == {"X-Token": "0123"}


def test_override_without_equals_is_a_usage_error(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_project(project_dir, VALID)
    assert main(["check", str(path), "-s", "retries"]) == 2
    assert "expected KEY=VALUE" in error_line(capsys.readouterr().err)


def test_plugin_with_a_misspelt_hook_is_named(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project_dir / "typo.py").write_text(
        "from framework import hookimpl\n\n@hookimpl\ndef register_spider(register):\n    pass\n",
        encoding="utf-8",
    )
    path = write_project(project_dir, VALID.replace("./shop.py", "./shop.py, ./typo.py"))
    assert main(["check", str(path)]) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(
        f"Error: {path}:3: plugins[1]: plugin 'typo.py': register_spider is not an fw hook"
    )
    assert "did you mean 'register_spiders'" in line


def test_valid_project_loads_into_frozen_objects_with_defaults(tmp_path: Path) -> None:
    path = write_project(
        tmp_path,
        VALID + "concurrency: {per_domain: 2}\nexporters:\n"
        "  - {format: csv, path: out/m.csv, delimiter: ';'}\n",
    )
    project = load_project(path, ["retries=5", "headers.User-Agent=Mozilla/5.0"])
    assert project.name == "project"
    assert project.allowed_domains == ("shop.example:443",)  # the start URL's host and port
    ipv6 = load_project(path, ["start_urls=['http://[::1]:8080/']", "domains={'[::1]': {}}"])
    assert ipv6.allowed_domains == ("[::1]:8080",) and list(ipv6.domains) == ["::1"]
    assert project.concurrency.total == 16 and project.concurrency.per_domain == 2
    assert project.retries == 5
    assert dict(project.headers) == {"User-Agent": "Mozilla/5.0"}
    spec = project.exporters[0]
    assert spec.path == str(tmp_path / "out/m.csv")  # relative to the project file
    assert dict(spec.options) == {"delimiter": ";"}
    with pytest.raises(AttributeError):
        project.retries = 1  # type: ignore[misc]


async def test_check_accepts_the_example_projects() -> None:
    paths = sorted((Path(__file__).parents[2] / "projects").glob("*.yaml"))
    assert {p.name for p in paths} >= {"douban.yaml", "quotes.yaml"}
    for path in paths:
        result = await run_fw("check", str(path))
        assert result.returncode == 0, result.stderr
        assert re.match(rf"OK: {re.escape(str(path))}: ", result.stdout)


def test_every_project_key_is_in_the_readme_reference() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    hints = typing.get_type_hints(Project)
    for f in keys_of(Project):
        kind = hints[f.name]
        nested = (
            [f"{f.name}.{g.name}" for g in keys_of(kind)] if dataclasses.is_dataclass(kind) else []
        )
        for key in nested or [f.name]:
            assert f"| `{key}` |" in readme, f"README's project reference lacks {key}"


def test_env_pulls_a_secret_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_TOKEN", "s3cret")
    project = load_project(
        write_project(
            tmp_path,
            """
        spider: rules
        start_urls: [https://a.example/]
        headers: {Authorization: {$env: SHOP_TOKEN}}
        rules: {api_key: {$env: SHOP_TOKEN}}
        """,
        )
    )
    assert project.headers == {"Authorization": "s3cret"}
    assert project.section("rules") == {"api_key": "s3cret"}  # plugin sections too


def test_an_unset_env_variable_is_one_located_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHOP_TOKEN", raising=False)
    path = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [https://a.example/]
        headers:
          Authorization: {$env: SHOP_TOKEN}
        """,
    )
    with pytest.raises(ProjectError) as raised:
        load_project(path)
    assert str(raised.value) == (
        f"{path}:4: headers.Authorization: the environment variable SHOP_TOKEN is not set"
    )


OVERRIDDEN = """\
spider: rules
start_urls: [https://a.example/]
concurrency: {total: 8}
exporters:
  - {format: jsonl, path: out.jsonl}
rules:
  follow: [li.next a]
  items: [{fields: {title: h1}}]
"""

# -s VALUE, the key the error names, words the message must contain
BAD_OVERRIDES = {
    "a mapping": ("concurrency={total: 0}", "concurrency.total", "at least 1"),
    "a list of mappings": (
        "exporters=[{format: xml, path: a}]",
        "exporters[0].format",
        "unknown exporter 'xml'",
    ),
    "a list": ("start_urls=[ftp://x/]", "start_urls[0]", "not an http(s) URL"),
    "a plugin's list": ('rules.follow=["a[[["]', "rules.follow[0]", "not a valid CSS selector"),
    "a misspelt key": ("concurency.total=2", "concurency", "did you mean 'concurrency'"),
}


@pytest.mark.parametrize("case", BAD_OVERRIDES)
async def test_an_error_inside_an_overridden_value_blames_the_command_line(
    case: str, tmp_path: Path
) -> None:
    value, key, words = BAD_OVERRIDES[case]
    path = write_project(tmp_path, OVERRIDDEN)
    result = await run_fw("check", str(path), "-s", value)
    assert result.returncode == 2
    line = error_line(result.stderr)
    assert line.startswith(f"Error: -s: {key}: "), line
    assert words in line


def test_an_override_beside_a_bad_key_still_blames_the_file(tmp_path: Path) -> None:
    path = write_project(tmp_path, OVERRIDDEN.replace("{total: 8}", "{total: 0}"))
    with pytest.raises(ProjectError) as raised:
        load_project(path, ["concurrency.per_domain=2"])
    assert str(raised.value).startswith(f"{path}:3: concurrency.total: must be at least 1")


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("rules.items[0].fields.text", ("rules", "items", 0, "fields", "text")),
        ("rules.items.0.fields.text", ("rules", "items", 0, "fields", "text")),
        ("table[1][0]", ("table", 1, 0)),
        ("table.1.0", ("table", 1, 0)),
        ("0.1", ("0", 1)),  # a top-level key is a name, even all digits
        (" headers.X-Token ", ("headers", "X-Token")),
        ("domains['example.com'].delay", ("domains", "example.com", "delay")),  # dots in a key
        ('domains["127.0.0.1"].headers.X-A', ("domains", "127.0.0.1", "headers", "X-A")),
    ],
)
def test_an_override_names_list_items_by_index_either_way(key: str, path: tuple[object]) -> None:
    assert parse_override(f"{key}=h2") == (path, "h2")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("rules.items[3].fields.text=h2", "-s: rules.items[3]: no such item (the list has 1)"),
        ("rules.items.3.fields.text=h2", "-s: rules.items[3]: no such item (the list has 1)"),
        ("start_urls[0]=", "-s: start_urls[0]: no such item (the list is empty)"),
        (
            "rules.items.fields.text=h2",
            "-s: rules.items.fields: rules.items is a list: name an item by its index, "
            "e.g. rules.items[0]",
        ),
        (
            "rules.items.[0].fields.text=h2",
            "-s rules.items.[0].fields.text=h2: 'rules.items.[0].fields.text' is not a key "
            "path: join keys with dots and name a list item by its index, as in "
            "rules.items[0].fields.title or rules.items.0.fields.title",
        ),
        ("rules..items=[]", "-s rules..items=[]: 'rules..items' is not a key path: join"),
        ("[0]=1", "-s [0]=1: '[0]' is not a key path: join"),
        ("rules.items[x]=1", "-s rules.items[x]=1: 'rules.items[x]' is not a key path: join"),
    ],
)
def test_an_override_of_a_missing_item_says_what_the_list_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    text = OVERRIDDEN.replace("start_urls: [https://a.example/]", "start_urls: []")
    path = write_project(tmp_path, text)
    assert main(["check", str(path), "-s", override]) == 2
    assert error_line(capsys.readouterr().err).startswith(f"Error: {message}")


def test_an_override_of_a_section_an_alias_shares_changes_that_section_alone(
    tmp_path: Path,
) -> None:
    text = OVERRIDDEN + "domains: {example.com: {delay: 1}}\ntable: &t {a: 1}\nother: *t\n"
    path = write_project(tmp_path, text)
    project = load_project(path, ["table.a=2", "domains['example.com'].delay=3"])
    assert project.sections["table"] == {"a": 2} and project.sections["other"] == {"a": 1}
    assert project.domains["example.com"].delay == 3


async def test_fw_run_overrides_a_field_of_a_list_item(tmp_path: Path, serve: Serve) -> None:
    base = await serve(pages({"/": "<h1>Title</h1><h2>Text</h2>"}))
    path = write_project(tmp_path, OVERRIDDEN.replace("https://a.example/", f"{base}/"))
    result = await run_fw("run", str(path), "-s", "rules.items[0].fields.text=h2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_jsonl(tmp_path / "out.jsonl") == [{"title": "Title", "text": "Text"}]


def test_an_override_inside_a_value_it_replaces_blames_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_project(tmp_path, OVERRIDDEN)
    assert main(["check", str(path), "-s", "start_urls[0].url=https://b.example/"]) == 2
    assert error_line(capsys.readouterr().err) == (
        "Error: -s: start_urls[0]: expected an http(s) URL, got a mapping"
    )


async def test_env_values_are_read_as_the_key_needs(tmp_path: Path, serve: Serve) -> None:
    seen: list[str] = []

    async def page(request: web.Request) -> web.Response:
        seen.append(request.headers["X-Token"])
        return web.Response(text="<h1>Hi</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    base = await serve(app)
    path = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{base}/]
        robots: {{$env: FW_ROBOTS}}
        delay: {{$env: FW_DELAY}}
        retries: {{$env: FW_RETRIES}}
        cookies: {{$env: FW_COOKIES}}
        headers: {{X-Token: {{$env: FW_TOKEN}}}}
        rules: {{items: [{{fields: {{title: h1, token: {{const: {{$env: FW_TOKEN}}}}}}}}]}}
        exporters: [{{path: out.jsonl}}]
        """,
    )
    env = {
        "FW_ROBOTS": "ignore",
        "FW_DELAY": "0.5",
        "FW_RETRIES": "1",
        "FW_COOKIES": "false",
        "FW_TOKEN": "0123",
    }  # YAML would read 0123 as the octal number 83
    result = await run_fw("run", str(path), env=env)
    assert result.returncode == 0, result.stderr
    assert seen == ["0123"]
    assert read_jsonl(tmp_path / "out.jsonl") == [{"title": "Hi", "token": "0123"}]


async def test_an_env_value_of_the_wrong_type_names_the_variable(project_dir: Path) -> None:
    path = write_project(project_dir, VALID + "delay: {$env: FW_DELAY}\n")
    result = await run_fw("check", str(path), env={"FW_DELAY": "soon"})
    assert result.returncode == 2
    assert error_line(result.stderr) == (
        f"Error: {path}:4: delay: expected a number, got the value of $env FW_DELAY (not shown)"
    )


async def test_fw_run_refuses_an_offsite_start_url_without_fetching(
    tmp_path: Path, serve: Serve
) -> None:
    hits: list[str] = []

    async def page(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="<h1>Hi</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    base = await serve(app)
    path = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{base}/]
        allowed_domains: [example.com]
        rules: {{items: [{{fields: {{title: h1}}}}]}}
        """,
    )
    result = await run_fw("run", str(path))
    assert result.returncode == 2
    assert error_line(result.stderr) == (
        f"Error: {path}:2: start_urls[0]: host 127.0.0.1 is not in allowed_domains "
        "[example.com]; add it there, or drop allowed_domains to allow the hosts of start_urls"
    )
    assert hits == []


@pytest.mark.parametrize(
    "text",
    [
        "spider: seeds\nplugins: [./seeds.py]\n",  # its start_requests() needs no start_urls
        "spider: shop\nplugins: [./shop.py]\nfrontier: sqlite:///crawl.db\n",  # may resume
        "spider: shop\nplugins: [./shop.py]\nstart_urls: [https://www.shop.example/]\n"
        "allowed_domains: [shop.example]\n",  # a subdomain is allowed
        "spider: shop\nplugins: [./shop.py]\nstart_urls: ['http://shop.example:8080/']\n"
        "allowed_domains: ['shop.example:8080']\n",  # a port pins the crawl to it
        *(
            "spider: shop\nplugins: [./shop.py]\nstart_urls: ['http://[::1]:8080/']\n"
            f"allowed_domains: [{allowed}]\ndomains: {{'[::1]': {{delay: 1}}}}\n"
            for allowed in ("'::1'", "'[::1]'", "'[::1]:8080'", "'[0::1]:8080'")
        ),
    ],
)
def test_projects_that_can_crawl_are_accepted(
    text: str, project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(write_project(project_dir, text))]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("name", ["../../x", "a/b", "shop:eu", ".hidden", "", "x" * 101])
def test_a_crawl_name_that_could_leave_the_folder_or_nest_keys_is_refused(
    project_dir: Path, name: str
) -> None:
    text = VALID + f"name: {name!r}\n"
    if not name:  # empty: the default, the file's name
        assert load_project(write_project(project_dir, text)).name == "project"
        return
    with pytest.raises(ProjectError, match=r"project.yaml:\d+: name: .* is not a crawl name"):
        load_project(write_project(project_dir, text))


def test_a_crawl_named_after_its_file_keeps_only_the_characters_a_name_may_have(
    project_dir: Path,
) -> None:
    path = write_project(project_dir, VALID, name="my shop: eu.yaml")
    assert load_project(path).name == "my-shop-eu"


@pytest.mark.parametrize(
    "override",
    [
        "headers={$env: FW_SECRET}",
        "max_pages={$env: FW_SECRET}",
        "start_urls=[{$env: FW_SECRET}]",
        "allowed_domains=[{$env: FW_SECRET}]",
        "name={$env: FW_SECRET}",
        "frontier={$env: FW_SECRET}",
    ],
)
@pytest.mark.parametrize("secret", ["tok/s3cret", "tok/s3cret" + "x" * 100])  # or cut short
def test_an_env_value_is_never_shown_in_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, override: str, secret: str
) -> None:
    monkeypatch.setenv("FW_SECRET", secret)  # invalid for every one of these keys
    path = write_project(tmp_path, "spider: rules\nstart_urls: [https://a.example/]\n")
    with pytest.raises(ProjectError) as caught:
        load_project(path, [override])
    assert "s3cret" not in str(caught.value)
    assert "$env FW_SECRET (not shown)" in str(caught.value)


def test_a_key_that_is_no_name_is_blamed_at_its_own_line_with_the_other_mistakes(
    tmp_path: Path,
) -> None:
    text = VALID + "\n\non: 1\nheaders:\n  User-Agent: x\n\n  yes: 1\ntimeout: fast\n"
    with pytest.raises(ProjectErrors) as raised:
        load_project(write_project(tmp_path, text))
    assert [(e.where, e.key, e.message.split(":")[0]) for e in raised.value.errors] == [
        (f"{tmp_path / 'project.yaml'}:6", "", "True is not a key name"),
        (f"{tmp_path / 'project.yaml'}:10", "headers", "True is not a key name"),
        (f"{tmp_path / 'project.yaml'}:11", "timeout", "expected a number, got 'fast'"),
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("start_urls", "[ftp://{long}]"),
        ("start_urls", "['http://{long} x/']"),
        ("name", "n{long}"),
        ("allowed_domains", "['{long}:1:2']"),
        ("allowed_domains", "['[1::2::{long}]:80']"),
        ("frontier", "x{long}"),
        ("spider", "s{long}"),
        ("exporters", "[{{format: x{long}, path: out.x}}]"),
    ],
)
def test_a_long_value_is_cut_short_in_its_error(
    tmp_path: Path, key: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "shop.py").write_text(PLUGIN_FILES["shop.py"], encoding="utf-8")
    text = "spider: shop\nstart_urls: [https://shop.example/]\nplugins: [./shop.py]\n"
    lines = [line for line in text.splitlines() if not line.startswith(f"{key}:")]
    lines.append(f"{key}: {value.format(long='q' * 100_000)}")
    path = write_project(tmp_path, "\n".join(lines) + "\n")
    assert main(["check", str(path)]) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"Error: {path}:{len(lines)}: {key}") and "qqq..." in line
    assert len(line) < 400, line


@pytest.mark.parametrize(
    ("text", "value"), [("1e3", 1000.0), ("2.5e1", 25.0), ("5E-1", 0.5), ("+2e+1", 20.0)]
)
def test_a_number_with_an_exponent_is_a_number_where_one_is_expected(
    tmp_path: Path, text: str, value: float
) -> None:
    # YAML 1.1 reads 1e3 and 2.5e1 as text; a key that takes a number reads them as one.
    path = write_project(
        tmp_path, f"spider: shop\nstart_urls: [https://a.example/]\ntimeout: {text}\n"
    )
    project = load_project(path, [f"delay={text}", f"headers.X-N={text}"])
    assert (project.timeout, project.delay) == (value, value)
    assert project.headers == {"X-N": text}  # where text is expected, it stays as written
