"""Plugins: a real installed distribution, discovery order, and clear failures."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import framework
from framework import Exporter, hookimpl
from framework.__about__ import __version__
from framework.cli import main
from framework.config.project import load_project
from framework.crawl import runner
from framework.errors import PluginError, ProjectError
from framework.hooks.manager import make_plugin_manager
from framework.hooks.registry import Registry
from tests.conftest import Serve, crawl, fw_command, pages, read_jsonl, run_fw, write_project
from tests.distributions import fake_distribution, on_path

PACKAGE = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "fw-teamshop"
        version = "1.2.3"
        dependencies = []

        [project.entry-points.fw]
        teamshop = "fw_teamshop"
        """,
    "fw_teamshop/__init__.py": """
        from framework import Spider, hookimpl

        class TeamShop(Spider):
            name = "teamshop"

            async def parse(self, response):
                yield {"team": "shop", "h1": response.css("h1::text").get()}

        @hookimpl
        def register_spiders(register):
            register(TeamShop)
        """,
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build and pip-install the team's plugin package into a folder of its own."""
    root = tmp_path_factory.mktemp("teamshop")
    for name, text in PACKAGE.items():
        (root / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "src" / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    target = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(root / "src"),
        ],
        check=True,
        capture_output=True,
    )
    return target


def with_path(target: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    }


async def test_an_installed_distribution_is_listed(installed: Path) -> None:
    result = await run_fw("plugins", "--json", env=with_path(installed))
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["teamshop"] == {
        "name": "teamshop",
        "distribution": "fw-teamshop",
        "version": "1.2.3",
        "module": "fw_teamshop",
        "hooks": ["register_spiders"],
        "provides": {"spiders": ["teamshop"]},
    }
    table = await run_fw("plugins", env=with_path(installed))
    assert any(
        line.split()[:4] == ["teamshop", "fw-teamshop", "1.2.3", "register_spiders"]
        for line in table.stdout.splitlines()
    )


async def test_an_installed_spider_is_usable_by_name(
    installed: Path, tmp_path: Path, serve: Serve
) -> None:
    base = await serve(pages({"/": "<h1>Team shop</h1>"}))
    project = write_project(tmp_path, f"spider: teamshop\nstart_urls: [{base}/]\n")
    result = await run_fw(
        "run", str(project), "-o", str(tmp_path / "out.jsonl"), env=with_path(installed)
    )
    assert result.returncode == 0, result.stderr
    assert read_jsonl(tmp_path / "out.jsonl") == [{"team": "shop", "h1": "Team shop"}]
    assert "teamshop-1.2.3" in result.stderr  # the plugins header


NOISY = """
import ctypes, os, subprocess, sys
from framework import hookimpl

print("noisy: at import")
os.write(1, b"noisy: to descriptor 1\\n")
subprocess.run([sys.executable, "-c", "print('noisy: a child of its import')"], check=True)
ctypes.CDLL(None).printf(b"noisy: C's printf, buffered\\n")
sys.__stdout__.write("noisy: Python's stdout, buffered\\n")

@hookimpl
def item_scraped(item):
    print("noisy: scraped", item)
"""


async def h1_project(tmp_path: Path, serve: Serve, site: dict[str, str]) -> Path:
    """A project crawling each page of ``site`` for its ``h1``."""
    base = await serve(pages(site))
    starts = ", ".join(f"{base}{path}" for path in site)
    return write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{starts}]
        rules: {{items: [{{fields: {{h1: h1}}}}]}}
        """,
    )


async def test_what_a_plugin_prints_stays_out_of_fws_data_on_stdout(
    tmp_path: Path, serve: Serve
) -> None:
    site = fake_distribution(tmp_path / "site", "fw-noisy", "0.1", "noisy", "fw_noisy", NOISY)
    project = await h1_project(tmp_path, serve, {"/": "<h1>hi</h1>", "/b": "<h1>b</h1>"})
    env = {**on_path(site), "PYTHONUNBUFFERED": ""}  # buffered, as where users run fw
    crawled = await run_fw("run", str(project), "-o", "-", env=env)
    assert crawled.returncode == 0, crawled.stderr
    assert sorted(json.loads(line)["h1"] for line in crawled.stdout.splitlines()) == ["b", "hi"]
    assert crawled.stderr.count("noisy: scraped") == 2
    listed = await run_fw("plugins", "--json", env=env)
    assert "noisy" in {row["name"] for row in json.loads(listed.stdout)}
    for said in (
        "at import",
        "to descriptor 1",
        "a child of its import",
        "C's printf, buffered",
        "Python's stdout, buffered",
    ):
        assert f"noisy: {said}" in crawled.stderr and f"noisy: {said}" in listed.stderr


WRAPS_STDERR = """
import sys

class Tee:  # no fileno(): a log shipper's wrapper, say
    def __init__(self, stream):
        self.stream = stream
    def write(self, text):
        return self.stream.write(text)
    def flush(self):
        self.stream.flush()
    def isatty(self):
        return False

sys.stderr = Tee(sys.stderr)
"""


async def test_a_plugin_that_wraps_stderr_at_import_leaves_stdout_to_fws_data(
    tmp_path: Path, serve: Serve
) -> None:
    """fw loads the plugins twice for fw run (its flags, then the crawl): the second time,
    ``sys.stderr`` is the plugin's."""
    site = fake_distribution(tmp_path / "site", "fw-tee", "0.1", "tee", "fw_tee", WRAPS_STDERR)
    project = await h1_project(tmp_path, serve, {"/": "<h1>hi</h1>"})
    crawled = await run_fw("run", str(project), "-o", "-", env=on_path(site))
    assert crawled.returncode == 0, crawled.stderr
    assert [json.loads(line) for line in crawled.stdout.splitlines()] == [{"h1": "hi"}]


@pytest.mark.parametrize("then", ["", "logs = [open(f'log{n}', 'w') for n in range(3)]\n"])
async def test_an_import_that_closes_fws_copy_of_stdout_is_one_line(
    tmp_path: Path, then: str
) -> None:
    """Whether or not the import opens files of its own in the copy's place next."""
    (tmp_path / "closer.py").write_text(f"import os\nos.closerange(3, 256)\n{then}")
    project = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [http://127.0.0.1:9/]
        plugins: [./closer.py]
        """,
    )
    done = await run_fw("run", str(project), "-o", "-", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith(
        "Error: standard output was lost while the plugins loaded: an import closed the "
        "descriptor ("
    )
    assert done.stdout == ""
    assert all(not log.read_text() for log in tmp_path.glob("log*"))


LATE_COLUMN = """
from framework import Spider, hookimpl

class Late(Spider):
    name = "late"

    def parse(self, response):
        yield {"page": response.url[-1], **({"late": 1} if response.url.endswith("b") else {})}
        yield from response.follow_all(css="a")

@hookimpl
def register_spiders(register):
    register(Late)
"""


async def late_column_to_stdout(tmp_path: Path, serve: Serve, exporter: str) -> Path:
    """A project exporting to /dev/stdout items of which the second has a late column."""
    base = await serve(pages({"/a": '<a href="/b">b</a>', "/b": "b"}))
    (tmp_path / "late.py").write_text(LATE_COLUMN, encoding="utf-8")
    return write_project(
        tmp_path,
        f"""
        spider: late
        plugins: [./late.py]
        start_urls: [{base}/a]
        concurrency: {{total: 1}}
        exporters: [{{format: {exporter}, path: /dev/stdout}}]
        """,
    )


async def test_an_export_naming_stdout_by_a_path_is_written_through_descriptor_1(
    tmp_path: Path, serve: Serve
) -> None:
    """``/dev/stdout`` is opened by its name: a CSV there completes its header in the file
    the shell opened, stderr is left alone, and a shell's ``>>`` appends."""
    project = await late_column_to_stdout(tmp_path, serve, "csv")
    out, err = tmp_path / "out.csv", tmp_path / "err.log"
    err.write_text("an earlier line\n", encoding="utf-8")

    async def run(*args: str, mode: str) -> None:
        with out.open(mode) as stdout, err.open("ab") as stderr:  # `> out.csv 2>> err.log`
            process = await asyncio.create_subprocess_exec(
                *fw_command(), "run", str(project), *args, stdout=stdout, stderr=stderr
            )
            async with asyncio.timeout(30):
                assert await process.wait() == 0

    await run(mode="wb")
    assert out.read_text(encoding="utf-8").splitlines() == ["page,late", "a,", "b,1"]
    assert err.read_text(encoding="utf-8").startswith("an earlier line\n")
    assert not list(tmp_path.glob(".*"))
    await run("-s", "exporters=[{format: jsonl, path: /dev/stdout}]", mode="ab")  # `>>`
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[:3] == ["page,late", "a,", "b,1"]  # appended to, never cut
    assert [json.loads(line) for line in lines[3:]] == [{"page": "a"}, {"page": "b", "late": 1}]
    await run(mode="ab")  # a CSV after what the file held: its header is left as written
    assert out.read_text(encoding="utf-8").splitlines() == [*lines, "page", "a", "b,1"]
    assert "columns late appeared after the header was written" in err.read_text()
    assert not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("exporter", ["jsonl", "csv"])
async def test_an_export_at_dev_stdout_writes_to_a_socket_there(
    tmp_path: Path, serve: Serve, exporter: str
) -> None:
    """No open() by name takes a socket (``fw run | nc``, a supervisor's log socket): the
    export writes through the descriptor, as ``-o -`` does."""
    project = await late_column_to_stdout(tmp_path, serve, exporter)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        process = await asyncio.create_subprocess_exec(
            *fw_command(), "run", str(project), stdout=theirs, stderr=asyncio.subprocess.PIPE
        )
        theirs.close()
        received = await asyncio.to_thread(_read_all, ours)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    if exporter == "jsonl":
        assert [json.loads(line) for line in received.splitlines()] == [
            {"page": "a"},
            {"page": "b", "late": 1},
        ]
    else:  # a header on a socket cannot be written again: it says so
        assert received.splitlines() == ["page", "a", "b,1"]
        assert "columns late appeared after the header was written" in err.decode()


async def test_an_export_at_a_descriptor_past_stderr_that_is_a_socket_is_refused(
    tmp_path: Path,
) -> None:
    """Past stdout and stderr a socket may be fw's own (its event loop's): writing there
    would lose every item with exit 0. An inherited one is refused alike, said so."""
    project = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [http://127.0.0.1:9/]
        rules: {items: [{fields: {h1: h1}}]}
        """,
    )
    ours, theirs = socket.socketpair()
    with ours, theirs:
        fd = theirs.fileno()
        process = await asyncio.create_subprocess_exec(
            *fw_command(),
            "run",
            str(project),
            "-s",
            f"exporters=[{{format: jsonl, path: /dev/fd/{fd}}}]",
            pass_fds=[fd],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert err.decode().splitlines()[-1] == (
        f"Error: exporter jsonl cannot open /dev/fd/{fd}: a socket, which no file is opened as"
    )


def _read_all(sock: socket.socket) -> str:
    sock.settimeout(30)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


async def test_a_broken_installed_plugin_is_named(tmp_path: Path) -> None:
    # A distribution whose entry point cannot be imported, faked as pytest does.
    info = tmp_path / "fw_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fw-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fw]\nbroken = fw_broken_missing_module\n")
    result = await run_fw("plugins", env=with_path(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: plugin 'broken' (from fw-broken 0.1) failed to load: ModuleNotFoundError: "
        "No module named 'fw_broken_missing_module'"
    )


async def test_a_distribution_that_lost_its_metadata_is_listed_but_no_requirement(
    tmp_path: Path,
) -> None:
    info = tmp_path / "fw_bare-0.1.dist-info"  # an install cut short: no METADATA
    info.mkdir()
    (info / "entry_points.txt").write_text("[fw]\nbare = fw_bare\n", encoding="utf-8")
    (tmp_path / "fw_bare.py").write_text('"""Bare."""\n', encoding="utf-8")
    table = await run_fw("plugins", env=on_path(tmp_path))
    assert table.returncode == 0, table.stderr
    assert "(no metadata) fw_bare-0.1.dist-info" in table.stdout
    pinned = await run_fw("plugins", "--requirements", env=on_path(tmp_path))
    assert (pinned.returncode, pinned.stdout) == (2, "")
    assert pinned.stderr == (
        "Error: fw plugins --requirements: (no metadata) fw_bare-0.1.dist-info: an installed "
        "plugin's distribution has lost its metadata, so no requirement names it; reinstall it\n"
    )


async def test_a_plugin_name_two_distributions_register_is_refused_naming_both(
    tmp_path: Path,
) -> None:
    # Left alone, whichever the path lists first loads: here fw's own exporters would go.
    fake_distribution(tmp_path, "fw-shadow", "0.1", "exporters", "fw_shadow", '"""Taken."""')
    result = await run_fw("plugins", env=on_path(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: plugin name 'exporters' is registered twice, by fwcrawl {framework.__version__} "
        "and by fw-shadow 0.1: only one of them could load; uninstall one, or "
        "rename the entry point of yours in the [project.entry-points.fw] of its pyproject.toml"
    )


@pytest.mark.parametrize("command", ["plugins", "run"])
async def test_one_module_under_two_entry_points_is_refused_naming_them(
    tmp_path: Path, command: str
) -> None:
    fake_distribution(tmp_path, "fw-twice", "0.1", "twice_a", "fw_twice", '"""One."""')
    entry_points = next(tmp_path.glob("fw_twice-*.dist-info")) / "entry_points.txt"
    entry_points.write_text("[fw]\ntwice_a = fw_twice\ntwice_b = fw_twice\n", encoding="utf-8")
    project = write_project(tmp_path, "spider: x\n")
    result = await run_fw(*[command, str(project)][: 1 + (command == "run")], env=on_path(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: plugin 'twice_b' (from fw-twice 0.1): its module fw_twice is plugin "
        "'twice_a' already: name one module in one fw entry point"
    )


@pytest.mark.parametrize("flag", ["--quiet", "--log-level"])
async def test_a_plugin_flag_fw_run_has_already_is_refused(tmp_path: Path, flag: str) -> None:
    source = (
        "from framework import hookimpl\n\n@hookimpl\ndef register_flags(register):\n"
        f"    register('{flag}', 'max_pages=1', 'mine')\n"
    )
    fake_distribution(tmp_path, "fw-mine", "0.1", "mine", "fw_mine", source)
    project = write_project(tmp_path, "spider: x\n")
    result = await run_fw("run", str(project), env=on_path(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: plugin 'mine': register_flags: {flag} is an option of fw run"
    )


async def test_a_plugin_flag_another_plugin_has_already_is_named(tmp_path: Path) -> None:
    source = (
        "from framework import hookimpl\n\n@hookimpl\ndef register_flags(register):\n"
        "    register('--incremental', 'max_pages=1', 'mine')\n"
    )
    fake_distribution(tmp_path, "fw-mine", "0.1", "mine", "fw_mine", source)
    result = await run_fw("run", "--help", env=on_path(tmp_path))
    assert result.returncode == 0, result.stderr
    # Installed later, it comes first, as a later plugin's exporter does: it is named.
    assert result.stderr.strip() == (
        "plugin 'incremental': register_flags: --incremental is plugin 'mine''s flag "
        "already (-s max_pages=1); this one (-s incremental.enabled=true) is left out"
    )
    assert "-s max_pages=1; plugin mine" in result.stdout


SPIDER_NAMED_SAME = """
from framework import Spider, hookimpl

class Same(Spider):
    name = "same"

@hookimpl
def register_spiders(register):
    register(Same)
"""


async def test_a_name_two_installed_distributions_register_is_a_warning_naming_both(
    tmp_path: Path,
) -> None:
    for team in ("a", "b"):
        fake_distribution(
            tmp_path, f"fw-team{team}", "0.1", f"team{team}", f"fw_team{team}", SPIDER_NAMED_SAME
        )
    result = await run_fw("plugins", env=on_path(tmp_path))
    assert result.returncode == 0, result.stderr
    (warning,) = [line for line in result.stderr.splitlines() if "register it twice" in line]
    # Which one wins is the order the packages were found in: the user must hear of it.
    assert "(from fw-teama 0.1)" in warning and "(from fw-teamb 0.1)" in warning
    assert warning.startswith("WARNING: spider 'same': installed packages register it twice")


FAST_CSV = """
from framework import Exporter, hookimpl

class FastCsv(Exporter):
    format = "csv"
    extensions = (".csv",)

@hookimpl
def register_exporters(register):
    register(FastCsv)
"""


async def test_a_package_replacing_a_bundled_name_wins_whatever_the_order_found(
    tmp_path: Path,
) -> None:
    # Found before fw's own on the path: bundled plugins still load first, so it wins.
    site = fake_distribution(tmp_path, "fw-fastcsv", "1.0", "fastcsv", "fw_fastcsv", FAST_CSV)
    result = await run_fw("plugins", "--json", env=on_path(site))
    assert result.returncode == 0, result.stderr
    assert "register it twice" not in result.stderr  # meant: no warning on every run
    (fast,) = [p for p in json.loads(result.stdout) if p["name"] == "fastcsv"]
    assert fast["provides"] == {"exporters": ["csv"]}


COMPACT_JSONL = """
from framework import Exporter, hookimpl

class Compact(Exporter):
    format = "compact"
    extensions = (".jsonl", ".compact")

    def write(self, item):
        raise AssertionError("never chosen for .jsonl")

@hookimpl
def register_exporters(register):
    register(Compact)
"""


async def test_an_extension_two_installed_formats_claim_is_refused_for_o(
    tmp_path: Path, serve: Serve
) -> None:
    fake_distribution(tmp_path / "site", "fw-teamd", "0.1", "teamd", "fw_teamd", COMPACT_JSONL)
    base = await serve(pages({"/": "<h1>hi</h1>"}))
    project = write_project(
        tmp_path,
        f"spider: rules\nstart_urls: [{base}/]\nrules: {{items: [{{fields: {{h: h1}}}}]}}\n",
    )
    out = tmp_path / "items.jsonl"
    env = on_path(tmp_path / "site")
    refused = await run_fw("run", str(project), "-o", str(out), env=env)
    assert refused.returncode == 2 and not out.exists()
    assert refused.stderr.strip() == (
        f"Error: -o: {out}: exporters 'compact' of plugin 'teamd' (from fw-teamd 0.1) and "
        f"'jsonl' of plugin 'exporters' (from fwcrawl {__version__}) both write this "
        "extension; list the export under exporters: with the format: to use"
    )
    # Its own extension, and a format named in the project, still choose without doubt.
    with project.open("a", encoding="utf-8") as file:
        file.write(f"exporters: [{{format: jsonl, path: {out}}}]\n")
    crawled = await run_fw("run", str(project), env=env)
    assert crawled.returncode == 0, crawled.stderr
    assert read_jsonl(out) == [{"h": "hi"}]


class BetterJson(Exporter):
    format = "jsonl"
    extensions = (".jsonl",)


class UserPlugin:
    @hookimpl
    def register_exporters(self, register):  # type: ignore[no-untyped-def]
        register(BetterJson)


def test_a_later_plugin_overrides_a_bundled_name() -> None:
    pm = make_plugin_manager()
    pm.register(UserPlugin(), name="user")
    registry = Registry.collect(pm)
    assert registry.exporters["jsonl"] is BetterJson
    assert registry.owners["exporters", "jsonl"] == "user"
    assert registry.exporters["csv"].__module__ == "fwcrawl_plugins.exporters.csvfile"


def test_wrappers_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "wrap.py").write_text(
        "from framework import hookimpl\n\n@hookimpl(wrapper=True)\n"
        "def crawl_started(project):\n    yield\n",
        encoding="utf-8",
    )
    project = load_project(write_project(tmp_path, "spider: x\nplugins: [./wrap.py]\n"))
    with pytest.raises(ProjectError) as raised:
        make_plugin_manager(project.plugins, source=project.source)
    assert str(raised.value).startswith(
        f"{project.file}:2: plugins[0]: plugin 'wrap.py': crawl_started is a wrapper"
    )


def test_a_registry_hook_that_raises_is_named() -> None:
    class Raises:
        @hookimpl
        def register_spiders(self, register):  # type: ignore[no-untyped-def]
            raise ValueError("bad config")

    pm = make_plugin_manager()
    pm.register(Raises(), name="raiser")
    with pytest.raises(
        PluginError, match="plugin 'raiser': register_spiders raised ValueError: bad config"
    ):
        Registry.collect(pm)


def test_registering_something_that_is_not_a_spider_is_named() -> None:
    class Wrong:
        @hookimpl
        def register_spiders(self, register):  # type: ignore[no-untyped-def]
            register(dict)

    pm = make_plugin_manager()
    pm.register(Wrong(), name="wrong")
    with pytest.raises(
        PluginError,
        match="plugin 'wrong': registered <class 'dict'>, which "
        "is not a Spider subclass with a name",
    ):
        Registry.collect(pm)


def test_discovery_order_is_documented_and_real(tmp_path: Path) -> None:
    spider_file(tmp_path, "mine.py", "mine")
    project = load_project(write_project(tmp_path, "spider: mine\nplugins: [./mine.py]\n"))
    names = [
        name
        for name, _ in make_plugin_manager(
            project.plugins, source=project.source
        ).list_name_plugin()
    ]
    # 1-2: the built-in plugin; 3: entry points (bundled ones among them); 4: the project's.
    assert names[0] == "fw" and names[-1] == "mine.py"
    assert {"douban", "rules", "exporters"} <= set(names[1:-1])


def spider_file(directory: Path, name: str, spider: str, body: str = "") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(
        "from framework import Spider, hookimpl\n\n"
        f"class S(Spider):\n    name = {spider!r}\n{body}\n\n"
        "@hookimpl\ndef register_spiders(register):\n    register(S)\n",
        encoding="utf-8",
    )


def test_a_project_file_named_like_an_installed_plugin_is_still_loaded(tmp_path: Path) -> None:
    spider_file(tmp_path, "douban.py", "mine")
    spider_file(tmp_path / "a", "spiders.py", "from_a")
    spider_file(tmp_path / "b", "spiders.py", "from_b")
    project = write_project(
        tmp_path, "spider: mine\nplugins: [./douban.py, a/spiders.py, b/spiders.py]\n"
    )
    pm = make_plugin_manager(load_project(project).plugins, source=load_project(project).source)
    registry = Registry.collect(pm)
    assert {"mine", "from_a", "from_b", "douban"} <= set(registry.spiders)
    assert registry.owners["spiders", "from_b"] == "b/spiders.py"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "    def __init__(self, *args, **kwargs):\n        raise KeyError('api_key')",
            "Error: plugin 'boom.py': spider 'boom' failed to start at {file}:6: KeyError: "
            "'api_key'",
        ),
        # It fails inside the standard library: the plugin's line that called it is named.
        (
            "    def __init__(self, *args, **kwargs):\n        import os\n"
            "        self.key = os.environ['FW_TEST_NEVER_SET']",
            "Error: plugin 'boom.py': spider 'boom' failed to start at {file}:7: KeyError: "
            "'FW_TEST_NEVER_SET'",
        ),
        # The call itself fails: no line of the plugin ran, so none is named.
        (
            "    def __init__(self):\n        pass",
            "Error: plugin 'boom.py': spider 'boom' failed to start: TypeError: "
            "S.__init__() got an unexpected keyword argument 'start_urls'",
        ),
    ],
)
def test_a_spider_that_cannot_start_is_named(
    tmp_path: Path, body: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spider_file(tmp_path, "boom.py", "boom", body)
    project = write_project(tmp_path, "spider: boom\nplugins: [./boom.py]\n")
    assert main(["check", str(project)]) == 2
    expected = message.format(file=(tmp_path / "boom.py").resolve())  # as it was imported
    assert capsys.readouterr().err.strip() == expected


def test_async_registry_hooks_are_refused(tmp_path: Path) -> None:
    class Async:
        @hookimpl
        async def register_spiders(self, register):  # type: ignore[no-untyped-def]
            register(None)

    pm = make_plugin_manager()
    pm.register(Async(), name="asyncy")
    with pytest.raises(
        PluginError, match="plugin 'asyncy': register_spiders must be a plain def, not async def"
    ):
        Registry.collect(pm)


def test_a_hook_with_a_wrong_signature_is_one_located_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sig.py").write_text(
        "from framework import hookimpl\n\n@hookimpl\ndef register_spiders(registr):\n    pass\n"
    )
    project = write_project(tmp_path, "spider: x\nplugins:\n  - ./sig.py\n")
    assert main(["check", str(project)]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1
    assert error.startswith(f"Error: {project}:3: plugins[0]: plugin 'sig.py': ")
    assert "registr" in error


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        (
            "def register_spyders(register):\n    pass",
            "register_spyders is not an fw hook (did you mean 'register_spiders'?)",
        ),
        (
            "def register_spiders(register):\n    raise ValueError('oops')",
            "register_spiders raised ValueError: oops",
        ),
        (
            "def register_spiders(register):\n    register(dict)",
            "registered <class 'dict'>, which is not a Spider subclass with a name",
        ),
        (
            "async def register_spiders(register):\n    pass",
            "register_spiders must be a plain def, not async def",
        ),
        (  # a generator's body never runs when called: nothing would be registered
            "def register_spiders(register):\n    yield",
            "register_spiders is a generator: fw would call it and its body would never run; "
            "make it a def that returns (or an async def for an event hook)",
        ),
        (  # nor would an event hook's: the item would not be enriched, with exit 0
            "async def item_scraped(item, response, spider):\n    yield",
            "item_scraped is a generator: fw would call it and its body would never run; "
            "make it a def that returns (or an async def for an event hook)",
        ),
    ],
)
def test_a_project_plugin_that_breaks_registration_is_located_at_its_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hook: str, message: str
) -> None:
    (tmp_path / "bad.py").write_text(
        f"from framework import hookimpl\n\n@hookimpl\n{hook}\n", encoding="utf-8"
    )
    project = write_project(tmp_path, "spider: rules\nplugins:\n  - ./bad.py\n")
    assert main(["check", str(project)]) == 2
    assert capsys.readouterr().err == (
        f"Error: {project}:3: plugins[0]: plugin 'bad.py': {message}\n"
    )


async def test_an_installed_plugin_that_breaks_registration_names_its_distribution(
    tmp_path: Path,
) -> None:
    site = fake_distribution(
        tmp_path,
        "fw-typo",
        "1.0",
        "typo",
        "fw_typo",
        """
        from framework import hookimpl

        @hookimpl
        def register_spyders(register):
            pass
        """,
    )
    result = await run_fw("plugins", env=on_path(site))
    assert result.returncode == 2
    assert result.stderr == (
        "Error: plugin 'typo' (from fw-typo 1.0): register_spyders is "
        "not an fw hook (did you mean 'register_spiders'?)\n"
    )


# ---------------------------------------------------------------------------------------------
# Plugin control: what loads, tracing, the API version, requirements
# ---------------------------------------------------------------------------------------------


async def test_requirements_list_each_distribution_once(installed: Path) -> None:
    result = await run_fw("plugins", "--requirements", env=with_path(installed))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["fw-teamshop==1.2.3", f"fwcrawl=={__version__}"]


async def test_autoload_can_be_turned_off_and_plugins_listed_by_module(
    installed: Path, tmp_path: Path
) -> None:
    env = {**with_path(installed), "FW_DISABLE_PLUGIN_AUTOLOAD": "1"}
    listed = await run_fw("plugins", "--json", env=env)
    assert [p["name"] for p in json.loads(listed.stdout)] == ["fw"]
    project = write_project(
        tmp_path,
        """
        spider: teamshop
        start_urls: [http://127.0.0.1:9/]
        plugins: [fw_teamshop]
        """,
    )
    checked = await run_fw("check", str(project), env=env)
    assert checked.returncode == 0, checked.stderr


def test_disable_plugins_keeps_a_plugin_out(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        """
        spider: douban
        start_urls: [http://127.0.0.1:9/]
        disable_plugins: [douban]
        """,
    )
    with pytest.raises(ProjectError, match="spider: unknown spider 'douban'"):
        runner.prepare(project)


async def test_the_plugins_header_leaves_disabled_plugins_out(tmp_path: Path, serve: Serve) -> None:
    base = await serve(pages({"/": "<h1>hi</h1>"}))
    project = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{base}/]
        robots: ignore
        disable_plugins: [cache, douban, exporters, files, schema, sitemaps]
        rules: {{items: [{{fields: {{title: h1::text}}}}]}}
        """,
    )
    result = await run_fw("run", str(project))
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stderr.splitlines() if "plugins:" in line)
    listed = header.partition("project: plugins: ")[2].split(", ")
    # Other bundled plugins may be listed too: only the disabled ones must not be.
    assert {f"fw-{__version__}", f"rules-{__version__}"} <= set(listed)
    assert not [name for name in listed if name.startswith(("douban-", "exporters-"))]


MARKS_ITS_IMPORT = """
import os
from pathlib import Path

Path(os.environ["FW_TEST_MARK"]).write_text("imported")
"""


@pytest.mark.parametrize("flag", [[], ["--incremental"]])
async def test_fw_run_never_imports_a_disabled_plugin(
    tmp_path: Path, serve: Serve, flag: list[str]
) -> None:
    """Not even to read the flags plugins add to fw run: its import may do anything."""
    site = fake_distribution(
        tmp_path / "site", "fw-teamh", "0.1", "teamh", "fw_teamh", MARKS_ITS_IMPORT
    )
    base = await serve(pages({"/": "<h1>hi</h1>"}))
    project = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{base}/]
        disable_plugins: [teamh]
        frontier: sqlite:///state.db
        rules: {{items: [{{fields: {{title: h1::text}}}}]}}
        """,
    )
    mark = tmp_path / "mark"
    env = {**on_path(site), "FW_TEST_MARK": str(mark)}
    result = await run_fw("run", str(project), *flag, "-o", "-", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"title": "hi"}
    assert not mark.exists()
    listed = await run_fw("plugins", env=env)  # while it still loads where not disabled
    assert listed.returncode == 0 and mark.read_text() == "imported"


async def test_a_flag_of_a_disabled_plugin_names_the_plugins_disabled(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [http://127.0.0.1:9/]
        disable_plugins: [incremental]
        frontier: sqlite:///state.db
        """,
    )
    result = await run_fw("run", str(project), "--incremental")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "Error: fw run: unrecognized arguments: --incremental (fw run takes no flag of a "
        "plugin the project's disable_plugins turns off: incremental)"
    ]
    extra = await run_fw("run", str(project), "other.yaml")  # no flag: argparse says it
    assert extra.returncode == 2 and "disable_plugins" not in extra.stderr


DISABLES_CACHE = """
spider: rules
start_urls: [http://127.0.0.1:9/]
disable_plugins: [cache]
rules: {items: [{fields: {title: h1::text}}]}
"""


@pytest.mark.parametrize("kept", ["", "cache: {dir: kept}\n"])
@pytest.mark.parametrize(
    ("args", "given"),
    [
        (["--cache", "c"], "--cache"),
        (["--cache-refresh"], "--cache-refresh"),
        (["-s", "cache.dir=c"], "-s"),
        (["-s", "cache={dir: c}"], "-s"),
    ],
)
async def test_what_sets_a_disabled_plugin_on_the_command_line_is_refused(
    tmp_path: Path, args: list[str], given: str, kept: str
) -> None:
    """It would do nothing: a crawl the user meant to cache would fetch everything."""
    project = write_project(tmp_path, DISABLES_CACHE + kept)
    result = await run_fw("run", str(project), *args)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: {given}: cache") and line.endswith(
        f": plugin 'cache' is disabled (disable_plugins): what {given} sets here would do "
        f"nothing; enable the plugin, or leave {given} out"
    )
    assert not (tmp_path / "c").exists()


async def test_a_disabled_plugins_section_the_file_keeps_or_the_command_line_nulls_is_fine(
    tmp_path: Path,
) -> None:
    project = write_project(tmp_path, DISABLES_CACHE + "cache: {dir: kept}\n")
    for nulled in ([], ["-s", "cache=null"], ["-s", "cache.dir=null"], ["-s", "cache={dir: null}"]):
        checked = await run_fw("check", str(project), *nulled)
        assert checked.returncode == 0, (nulled, checked.stderr)


async def test_every_option_setting_a_disabled_plugin_is_named(tmp_path: Path) -> None:
    project = write_project(tmp_path, DISABLES_CACHE + "cache: {dir: kept}\n")
    result = await run_fw("run", str(project), "--cache-refresh", "-s", "cache.dir=c")
    assert result.returncode == 2
    assert [line.split(": ")[1:3] for line in result.stderr.splitlines()] == [
        ["-s", "cache.dir"],
        ["--cache-refresh", "cache.refresh"],
    ]


def test_fw_plugins_does_not_describe_a_disabled_plugin() -> None:
    pm = make_plugin_manager(disabled=["douban"])
    assert "douban" not in [info.name for info in pm.infos()]
    assert "douban" not in [row["name"] for row in Registry.collect(pm).describe(pm)]
    assert "rules" in [info.name for info in pm.infos()]


def test_disabling_a_plugin_that_is_not_installed_is_one_located_line(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [http://127.0.0.1:9/]
        disable_plugins:
          - dooban
        """,
    )
    with pytest.raises(ProjectError) as raised:
        runner.prepare(project)
    assert str(raised.value).startswith(
        f"{project}:4: disable_plugins[0]: no installed plugin 'dooban' (did you mean 'douban'?)"
    )


@pytest.mark.parametrize(("declared", "loads"), [("1", True), ("(1, 2)", True), ("2", False)])
def test_a_plugin_for_another_api_version_is_refused_by_name(
    tmp_path: Path, declared: str, loads: bool
) -> None:
    spider_file(tmp_path, "future.py", "future", body="")
    with (tmp_path / "future.py").open("a", encoding="utf-8") as file:
        file.write(f"FW_API_VERSION = {declared}\n")
    project = write_project(
        tmp_path,
        """
        spider: future
        start_urls: [http://127.0.0.1:9/]
        plugins: [./future.py]
        """,
    )
    if loads:
        assert runner.prepare(project).components.spider.name == "future"
        return
    with pytest.raises(
        ProjectError,
        match=r"plugin 'future\.py' was built for fw plugin "
        r"API 2, but fw .* provides API 1",
    ):
        runner.prepare(project)


async def test_an_installed_plugin_for_another_api_version_is_one_line_naming_it(
    tmp_path: Path,
) -> None:
    site = fake_distribution(
        tmp_path / "site",
        "fw-oldapi",
        "0.3",
        "oldapi",
        "fw_oldapi",
        """
        FW_API_VERSION = 2
        """,
    )
    project = write_project(tmp_path, "spider: rules\nstart_urls: [http://127.0.0.1:9/]\n")
    for args in (["plugins"], ["check", str(project)]):
        result = await run_fw(*args, env=on_path(site))
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr == (
            "Error: plugin 'oldapi' (from fw-oldapi 0.3) was built for fw plugin API 2, but "
            f"fw {__version__} provides API 1: install a version of the plugin made for this "
            "fw, or another fw\n"
        )


async def test_a_range_of_api_versions_is_taken_at_once(tmp_path: Path) -> None:
    source = "import sys\n\nFW_API_VERSION = range(1, sys.maxsize)\n"
    site = fake_distribution(tmp_path / "site", "fw-wide", "0.1", "wide", "fw_wide", source)
    result = await run_fw("plugins", env=on_path(site), timeout=20)  # not walked number by number
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("declared", ['"1"', '(1, "2")', "1.0"])
async def test_an_api_version_that_is_no_number_is_said_so(tmp_path: Path, declared: str) -> None:
    source = f"FW_API_VERSION = {declared}\n"
    site = fake_distribution(tmp_path / "site", "fw-typed", "0.1", "typed", "fw_typed", source)
    result = await run_fw("plugins", env=on_path(site))
    assert result.returncode == 2
    assert result.stderr.startswith(
        "Error: plugin 'typed' (from fw-typed 0.1): FW_API_VERSION is a number, or a tuple of "
        "them (FW_API_VERSION = 1), not "
    ), result.stderr


async def test_trace_prints_every_hook_call_with_its_plugin(tmp_path: Path, serve: Serve) -> None:
    base = await serve(pages({"/": "<h1>hi</h1>"}))
    (tmp_path / "watch.py").write_text(
        textwrap.dedent("""
        from framework import hookimpl

        @hookimpl
        def item_scraped(item):
            pass

        @hookimpl
        def response_received(response):
            pass
        """),
        encoding="utf-8",
    )
    signed_in = base.replace("://", "://ada:s3cret-pw@")  # a password the trace must not print
    project = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [{signed_in}/]
        robots: ignore
        plugins: [./watch.py]
        rules: {{items: [{{fields: {{title: h1::text}}}}]}}
        """,
    )
    result = await run_fw("run", str(project), env={"FW_TRACE_PLUGINS": "1"})
    assert result.returncode == 0, result.stderr
    assert "fw trace: register_spiders -> rules" in result.stderr
    assert "fw trace: item_scraped -> watch.py item={'title': 'hi'}" in result.stderr
    shown = base.replace("://", "://***@")
    assert f"fw trace: response_received -> watch.py response={shown}/" in result.stderr
    assert "s3cret-pw" not in result.stderr


WATCH = """
from dataclasses import dataclass

from framework import hookimpl, option


@dataclass(frozen=True)
class Options:
    webhook: str = option(doc="Where to post the stats.")
    every: int = option(100, doc="Post every this many items.", minimum=1)


@hookimpl
def crawl_started(project):
    options = project.section("watch.py")
    print(f"watching: {type(options).__name__} {options.webhook} {options.every}")
"""


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ("{webhook: https://hooks.example/x, every: 5}", None),
        ("{webhook: https://hooks.example/x, every: 0}", "every: must be at least 1"),
        ("{webhok: https://hooks.example/x}", "webhok: unknown key (did you mean 'webhook'?)"),
    ],
)
async def test_a_plugin_declares_the_schema_of_its_own_section(
    tmp_path: Path, section: str, error: str | None
) -> None:
    (tmp_path / "watch.py").write_text(WATCH, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [http://127.0.0.1:9/]
        plugins: [./watch.py]
        retries: 0
        rules: {{items: [{{fields: {{title: h1::text}}}}]}}
        watch.py: {section}
        """,
    )
    result = await run_fw("run", "-q", str(project))
    if error is None:  # the section was built: the crawl ran (and, offline, fetched nothing)
        assert result.returncode == 1 and "nothing was fetched" in result.stderr, result.stderr
        assert "watching: Options https://hooks.example/x 5" in result.stderr  # print() goes there
    else:
        assert result.returncode == 2
        assert result.stderr.startswith(f"Error: {project}:6: watch.py.{error}"), result.stderr


# ---------------------------------------------------------------------------------------------
# A plugin module's Options: one section per name, required only when the plugin is used
# ---------------------------------------------------------------------------------------------

MYPLUG = '''
    """An installed plugin whose module and spider share a name, as `fw new plugin` makes."""

    import json
    from dataclasses import dataclass

    from framework import Exporter, Spider, hookimpl, option


    @dataclass(frozen=True)
    class Options:
        token: str = option(doc="The API token.")
        every: int = option(10, doc="Report every this many items.", minimum=1)


    class MyplugSpider(Spider):
        name = "myplug"

        async def parse(self, response):
            yield {"title": response.css("h1::text").get(), "token": self.options.token,
                   "every": self.options.every}


    class MyplugExporter(Exporter):
        format = "myplug"
        extensions = (".myplug",)

        def open(self):
            self._file = self.open_binary()

        def write(self, item):
            self._file.write((json.dumps(item) + "\\n").encode())

        def close(self):
            self._file.close()


    @hookimpl
    def register_spiders(register):
        register(MyplugSpider)


    @hookimpl
    def register_exporters(register):
        register(MyplugExporter)


    @hookimpl
    def crawl_started(project, spider):
        options = project.section("myplug")
        print(f"myplug: {type(options).__name__}, the spider's: {spider.options is options}")
'''


@pytest.fixture(scope="module")
def myplug(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("myplug")
    return on_path(fake_distribution(site, "fw-myplug", "0.1.0", "myplug", "fw_myplug", MYPLUG))


async def test_a_plugin_module_and_its_spider_share_one_section(
    myplug: dict[str, str], tmp_path: Path, serve: Serve
) -> None:
    base = await serve(pages({"/": "<h1>Home</h1>"}))
    project = write_project(
        tmp_path,
        f"""
        spider: myplug
        start_urls: [{base}/]
        robots: ignore
        myplug: {{token: secret, every: 3}}
        """,
    )
    result = await run_fw("run", str(project), "-o", str(tmp_path / "out.jsonl"), env=myplug)
    assert result.returncode == 0, result.stderr
    assert read_jsonl(tmp_path / "out.jsonl") == [{"title": "Home", "token": "secret", "every": 3}]
    assert "myplug: Options, the spider's: True" in result.stderr  # print() goes there


@pytest.mark.parametrize(
    ("text", "error"),
    [
        # The plugin is used (its spider, its exporter): its section must be there.
        ("spider: myplug\n", "1: myplug.token: required key is missing"),
        (
            "spider: rules\nrules: {items: [{fields: {t: h1::text}}]}\n"
            "exporters: [{format: myplug, path: out.myplug}]\n",
            "1: myplug.token: required key is missing",
        ),
        # A section that is written is checked, whether the plugin is used or not.
        (
            "spider: rules\nrules: {items: [{fields: {t: h1::text}}]}\nmyplug:\n  tokn: x\n",
            "5: myplug.tokn: unknown key (did you mean 'token'?)",
        ),
        # Not used, and not configured: no concern of this project.
        ("spider: rules\nrules: {items: [{fields: {t: h1::text}}]}\n", None),
        ("spider: douban\nexporters: [{format: jsonl, path: out.jsonl}]\n", None),
    ],
)
async def test_a_plugin_section_with_required_keys_is_required_only_when_used(
    myplug: dict[str, str], tmp_path: Path, text: str, error: str | None
) -> None:
    project = write_project(tmp_path, "start_urls: [http://127.0.0.1:9/]\n" + text)
    result = await run_fw("check", str(project), env=myplug)
    if error is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 2
        assert result.stderr == f"Error: {project}:{error}\n"


async def test_one_section_cannot_follow_two_schemas(tmp_path: Path) -> None:
    site = fake_distribution(
        tmp_path / "site",
        "fw-twice",
        "1.0",
        "twice",
        "fw_twice",
        """
        from dataclasses import dataclass

        from framework import Spider, hookimpl, option


        @dataclass(frozen=True)
        class Options:
            token: str = option("", doc="The API token.")


        class Twice(Spider):
            name = "twice"

            @dataclass(frozen=True)
            class Options:
                pages: int = option(1, doc="How many pages.")


        @hookimpl
        def register_spiders(register):
            register(Twice)
        """,
    )
    project = write_project(tmp_path, "spider: twice\nstart_urls: [http://127.0.0.1:9/]\n")
    result = await run_fw("check", str(project), env=on_path(site))
    assert result.returncode == 2
    assert result.stderr.startswith(
        "Error: plugin 'twice': spider 'twice' declares Options, "
        "and so does the plugin module that owns the section "
        "'twice:'; one section has one schema"
    )


def test_a_plugin_listed_in_the_project_must_be_configured(tmp_path: Path) -> None:
    (tmp_path / "watch.py").write_text(WATCH, encoding="utf-8")
    project = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [http://127.0.0.1:9/]
        plugins: [./watch.py]
        rules: {items: [{fields: {title: h1::text}}]}
        """,
    )
    with pytest.raises(ProjectError) as raised:
        runner.prepare(project)
    assert str(raised.value) == f"{project}:1: watch.py.webhook: required key is missing"


@pytest.mark.parametrize(
    ("section", "chained"),
    [
        ("", ["proxies"]),  # a request may name its proxy: that one always takes part
        ("cache: {dir: cache}", ["cache", "proxies"]),
        ("login: {url: 'http://127.0.0.1:9/login', data: {user: me}}", ["login", "proxies"]),
    ],
)
def test_a_middleware_a_crawl_does_not_need_is_left_out_of_its_chain(
    tmp_path: Path, section: str, chained: list[str]
) -> None:
    project = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: ['http://127.0.0.1:9/']
        rules: {{items: [{{fields: {{title: h1::text}}}}]}}
        {section}
        """,
    )
    prepared = runner.prepare(project)
    assert sorted(m.name for m in prepared.components.middlewares) == chained


BROKEN_LAYER = """
from framework import FetchLayer, Spider, hookimpl

class Broken(FetchLayer):
    name = "broken"

    async def fetch(self, request):
        if request.url.endswith("/raises"):
            raise KeyError("oops")
        if request.url.endswith("/answers-text"):
            return "not a response"
        return await self.context.fetch(request)

class Links(Spider):
    name = "links"

    def parse(self, response):
        yield {"url": response.url}
        yield from response.follow_all()

@hookimpl
def register_fetch_layers(register):
    register(Broken)

@hookimpl
def register_spiders(register):
    register(Links)
"""


async def test_a_fetch_layer_that_raises_or_answers_no_response_fails_that_request_named(
    tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    base = await serve(
        pages(
            {
                "/": "<a href='/raises'>a</a> <a href='/answers-text'>b</a> <a href='/ok'>c</a>",
                "/ok": "<p>fine</p>",
            }
        )
    )
    (tmp_path / "broken.py").write_text(BROKEN_LAYER, encoding="utf-8")
    project = write_project(
        tmp_path,
        f"""
        spider: links
        start_urls: [{base}/]
        plugins: [./broken.py]
        robots: ignore
        """,
    )
    out = tmp_path / "items.jsonl"
    stats = await crawl(project, outputs=(str(out),))

    assert stats.errors == {"plugin_error": 2}
    assert {item["url"] for item in read_jsonl(out)} == {f"{base}/", f"{base}/ok"}
    assert "fetch layer 'broken' raised KeyError: 'oops'" in caplog.text
    assert "fetch layer 'broken' returned str, not a Response" in caplog.text


# ---------------------------------------------------------------------------------------------
# A plugin's own faults (its schema, its names) are the plugin's errors, named
# ---------------------------------------------------------------------------------------------

RULES_PROJECT = """\
spider: rules
start_urls: [https://a.example/]
rules: {items: [{fields: {title: h1}}]}
"""

FAULTY_CHECK = """
from dataclasses import dataclass
from framework import Spider, hookimpl, option

def positive(value):
    if value < 0:
        raise TypeError("must be positive")  # ValueError is what a check raises
    return value

class S(Spider):
    name = "boom"

    @dataclass(frozen=True)
    class Options:
        pages: int = option(1, doc="Pages.", check=positive)

@hookimpl
def register_spiders(register):
    register(S)
"""

FAULTY_POST_INIT = """
from dataclasses import dataclass
from framework import Spider, hookimpl, option

@dataclass(frozen=True)
class Options:
    n: int = option(0, doc="N.")

    def __post_init__(self):
        raise KeyError("post")

class S(Spider):
    name = "boom"

@hookimpl
def register_spiders(register):
    register(S)
"""


@pytest.mark.parametrize(
    ("source", "section", "message"),
    [
        (
            FAULTY_CHECK,
            "boom: {pages: -1}\n",
            "its Options for boom raised at {file}:7: TypeError: must be positive",
        ),
        # Its section is not even written: building it from the defaults fails.
        (FAULTY_POST_INIT, "", "its Options for boom.py raised at {file}:10: KeyError: 'post'"),
    ],
)
def test_a_plugin_schema_that_fails_is_the_plugin_s_error(
    tmp_path: Path, source: str, section: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "boom.py").write_text(source, encoding="utf-8")
    project = write_project(tmp_path, f"spider: boom\nplugins: [./boom.py]\n{section}")
    assert main(["check", str(project)]) == 2
    expected = message.format(file=(tmp_path / "boom.py").resolve())
    assert capsys.readouterr().err.strip() == (
        f"Error: {project}:2: plugins[0]: plugin 'boom.py': {expected} (a schema refuses a "
        "value by raising ValueError)"
    )


async def test_an_installed_plugin_whose_schema_fails_is_named(tmp_path: Path) -> None:
    site = fake_distribution(tmp_path, "fw-boom", "0.1", "boom", "fw_boom", FAULTY_POST_INIT)
    project = write_project(tmp_path, RULES_PROJECT)
    result = await run_fw("check", str(project), env=on_path(site))
    assert result.returncode == 2
    raised = (site / "fw_boom.py").read_text().splitlines().index('        raise KeyError("post")')
    assert result.stderr.strip() == (
        f"Error: plugin 'boom': its Options for boom raised at {site / 'fw_boom.py'}:{raised + 1}: "
        "KeyError: 'post' (a schema refuses a value by raising ValueError)"
    )


def test_a_spider_whose_name_is_no_string_is_refused_by_its_plugin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Not the spider in use: another project's plugin, listed here too.
    error = refused_beside_a_spider(
        tmp_path,
        capsys,
        "five.py",
        "from framework import Spider, hookimpl\n\nclass Five(Spider):\n    name = 5\n\n"
        "@hookimpl\ndef register_spiders(register):\n    register(Five)\n",
    )
    assert error.endswith(".Five'>, whose name is 5, not a string"), error


def refused_beside_a_spider(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, source: str
) -> str:
    """Check a project using spider ``shop`` with the plugin ``name`` listed second; return
    the one error line, located at that plugin's entry and saying what it registered."""
    spider_file(tmp_path, "shop.py", "shop")
    (tmp_path / name).write_text(source, encoding="utf-8")
    project = write_project(tmp_path, f"spider: shop\nplugins: [./shop.py, ./{name}]\n")
    assert main(["check", str(project)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"Error: {project}:2: plugins[1]: plugin '{name}': registered ")
    return error


@pytest.mark.parametrize(
    ("disabled", "error"),
    [
        # Without the plugin that failed to load, --incremental was "unrecognized".
        ("", "plugin 'brokenimp' (from fw-brokenimp 0.1) failed to load: RuntimeError: broken"),
        # The project disables it: the flag is the bundled incremental plugin's, and taken.
        ("disable_plugins: [brokenimp]\n", "--incremental: incremental: needs a persistent"),
    ],
)
async def test_a_broken_installed_plugin_is_named_whatever_flags_are_given(
    tmp_path: Path, disabled: str, error: str
) -> None:
    site = fake_distribution(
        tmp_path / "site",
        "fw-brokenimp",
        "0.1",
        "brokenimp",
        "fw_brokenimp",
        "raise RuntimeError('broken')\n",
    )
    project = write_project(tmp_path, RULES_PROJECT + disabled)
    result = await run_fw("run", str(project), "--incremental", env=on_path(site))
    assert result.returncode == 2
    assert result.stderr.startswith(f"Error: {error}"), result.stderr


@pytest.mark.parametrize("extensions", ['".zz"', '("zz",)', '(".",)', "None"])
def test_an_exporter_whose_extensions_are_no_tuple_of_extensions_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extensions: str
) -> None:
    # A string was taken letter by letter: every -o PATH ending in . or z went to it.
    error = refused_beside_a_spider(
        tmp_path,
        capsys,
        "zz.py",
        "from framework import Exporter, hookimpl\n\nclass Zz(Exporter):\n"
        f"    format = 'zz'\n    extensions = {extensions}\n\n"
        "@hookimpl\ndef register_exporters(register):\n    register(Zz)\n",
    )
    assert error.endswith("not a tuple of extensions such as ('.jsonl',)"), error
