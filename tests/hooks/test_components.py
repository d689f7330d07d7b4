"""Checking a project against the loaded plugins reports every mistake it finds at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_fw, write_project

BROKEN_PLUGIN = "def register_spiders(register)\n    pass\n"


async def test_fw_run_reports_every_error_found_after_the_plugins_load(tmp_path: Path) -> None:
    path = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [https://a.example/]
        concurency: {total: 4}
        rules:
          itemz: [{fields: {title: h1}}]
        exporters:
          - {format: xml, path: out.xml}
          - {path: out.jsonl, indent: 2}
        """,
    )
    result = await run_fw("run", str(path), "-o", "items.txt", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"Error: -o: {tmp_path.resolve() / 'items.txt'}: no exporter for this file extension "
        "(known: .jsonl .jl .ndjson .json .csv .db .sqlite .sqlite3)",
        f"Error: {path}:3: concurency: unknown key (did you mean 'concurrency'?); top-level "
        "keys are fw's own or a plugin's name",
        f"Error: {path}:5: rules.itemz: unknown key (did you mean 'items'?)",
        f"Error: {path}:7: exporters[0].format: unknown exporter 'xml'; installed: csv, json, "
        "jsonl, sqlite (see fw plugins)",
        f"Error: {path}:8: exporters[1].indent: unknown key; exporter 'jsonl' takes no options",
    ]


async def test_a_plugin_that_fails_to_load_is_the_only_error_shown(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text(BROKEN_PLUGIN, encoding="utf-8")
    path = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [https://a.example/]
        plugins: [./broken.py]
        concurency: {total: 4}
        exporters: [{format: xml, path: out.xml}]
        """,
    )
    result = await run_fw("check", str(path))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: {path}:3: plugins[0]: "), line
    assert "SyntaxError" in line


@pytest.mark.parametrize("command", ["check", "run"])
async def test_two_exporters_writing_one_file_are_refused_naming_both(
    tmp_path: Path, command: str
) -> None:
    path = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [https://a.example/]
        rules: {items: [{fields: {page: {value: url}}}]}
        exporters:
          - {path: out/a.jsonl}
          - {path: out/../out/a.jsonl}
        """,
    )
    (tmp_path / "out").mkdir()
    (tmp_path / "out/a.jsonl").write_text("")
    (tmp_path / "out/hard.jsonl").hardlink_to(tmp_path / "out/a.jsonl")  # one file, two names
    extra = ["-o", "out/a.jsonl", "-o", "-", "-o", "-", "-o", "out/hard.jsonl"]
    result = await run_fw(command, str(path), *(extra if command == "run" else []), cwd=tmp_path)
    assert result.returncode == 2
    twice = "give each exporter its own file"
    lines = [f"Error: {path}:6: exporters[1].path: already written by exporters[0]; {twice}"]
    if command == "run":
        lines += [
            f"Error: -o: {tmp_path / 'out/a.jsonl'}: already written by exporters[0]; {twice}",
            f"Error: -o: -: already written by -o -; {twice}",
            f"Error: -o: {tmp_path / 'out/hard.jsonl'}: already written by exporters[0]; {twice}",
        ]
    assert sorted(result.stderr.splitlines()) == sorted(lines)


@pytest.mark.parametrize("command", ["check", "run"])
async def test_an_export_path_that_is_a_folder_is_refused_before_any_fetch(
    tmp_path: Path, command: str
) -> None:
    path = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [https://a.example/]
        rules: {items: [{fields: {page: {value: url}}}]}
        exporters: [{format: jsonl, path: out}]
        """,
    )
    (tmp_path / "out").mkdir()
    result = await run_fw(command, str(path), cwd=tmp_path)
    assert result.returncode == 2  # fw check said OK, and fw run failed with exit 1
    assert result.stderr.strip() == (
        f"Error: {path}:4: exporters[0].path: is a folder; give the export a file in it"
    )


async def test_the_section_of_a_spider_not_in_use_is_checked_all_the_same(tmp_path: Path) -> None:
    path = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [https://a.example/]
        rules: {items: [{fields: {title: h1}}]}
        douban: {subject: false}
        """,
    )
    result = await run_fw("check", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: {path}:4: douban.subject: unknown key (did you mean 'subjects'?)"
    )


async def test_a_section_no_plugin_reads_is_an_unknown_key(tmp_path: Path) -> None:
    (tmp_path / "shop.py").write_text(
        "from framework import Spider, hookimpl\n\nclass Shop(Spider):\n    name = 'shop'\n\n"
        "@hookimpl\ndef register_spiders(register):\n    register(Shop)\n",
        encoding="utf-8",
    )
    path = write_project(
        tmp_path,
        """
        spider: shop
        start_urls: [https://a.example/]
        plugins: [./shop.py]
        forms: {url: https://a.example/login}
        schema: {strict: yes}
        fw: {whatever: 1}
        shop.py: {pages: 2}
        shop: {pages: 2}
        sitemaps: {urls: [https://a.example/sitemap.xml]}
        """,
    )
    result = await run_fw("check", str(path))
    assert result.returncode == 2
    # A spider's section (shop:) is read, and so is that of a plugin whose hooks are handed
    # the project (sitemaps:); the others would be ignored without a word.
    assert result.stderr.splitlines() == [
        f"Error: {path}:4: forms: plugin 'forms' takes no options of its own; its middleware "
        "'login' does: write them under login:",
        f"Error: {path}:5: schema: plugin 'schema' takes no options; remove this section",
        f"Error: {path}:6: fw: plugin 'fw' takes no options; remove this section",
        f"Error: {path}:7: shop.py: plugin 'shop.py' takes no options of its own; its spider "
        "'shop' does: write them under shop:",
    ]


async def test_every_plugin_file_that_fails_to_load_is_named(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text(BROKEN_PLUGIN, encoding="utf-8")
    path = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [https://a.example/]
        plugins:
          - ./nowhere.py
          - ./broken.py
        """,
    )
    result = await run_fw("check", str(path))
    assert result.returncode == 2
    first, second = result.stderr.splitlines()
    assert first == f"Error: {path}:4: plugins[0]: no such plugin file './nowhere.py'"
    assert second.startswith(f"Error: {path}:5: plugins[1]: ./broken.py failed to import: ")


async def test_a_plugins_section_refused_hides_no_other_mistake(tmp_path: Path) -> None:
    # The unknown key and exporter format showed only once the proxies were fixed.
    project = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [http://a.test/]
        foo: 1
        proxies: {urls: ['socks5://p.test:1']}
        exporters: [{format: nope, path: out.jsonl}]
        rules: {items: [{fields: {t: h1}}]}
        """,
    )
    done = await run_fw("check", str(project))
    assert done.returncode == 2
    said = [line.split(": ")[2] for line in done.stderr.splitlines()]
    assert said == ["foo", "proxies.urls[0]", "exporters[0].format"], done.stderr


@pytest.mark.parametrize(
    ("core", "said"),
    [
        # The plugins' mistakes showed only once the core key was fixed.
        ("delay: -1", ["delay", "foo", "exporters[0].format", "rules.itemz"]),
        ("-s timeout=fast", ["timeout", "foo", "exporters[0].format", "rules.itemz"]),
        # Which plugins load is in doubt: the core mistakes alone are said.
        ("plugins: 3", ["plugins"]),
    ],
)
async def test_a_core_key_refused_hides_no_plugins_mistake(
    tmp_path: Path, core: str, said: list[str]
) -> None:
    in_file = "" if core.startswith("-s") else core
    project = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [http://a.test/]
        {in_file}
        foo: 1
        exporters: [{{format: nope, path: out.jsonl}}]
        rules: {{follow: [a], itemz: []}}
        """,
    )
    overrides = core.split(" ", 1) if core.startswith("-s") else []
    done = await run_fw("check", str(project), *overrides)
    assert done.returncode == 2
    assert [line.split(": ")[2] for line in done.stderr.splitlines()] == said, done.stderr


async def test_a_name_refused_is_said_alone_not_with_what_another_name_would_clash_with(
    tmp_path: Path,
) -> None:
    # The crawl's own files are named after it: checked under the file's name instead, its
    # failures file went where this export goes, and that was said too.
    project = write_project(
        tmp_path,
        """
        spider: rules
        name: my crawl
        start_urls: [http://a.test/]
        exporters: [{path: project.failures.jsonl}]
        rules: {follow: [a], itemz: []}
        """,
    )
    done = await run_fw("check", str(project))
    assert done.returncode == 2
    assert [line.split(": ")[2] for line in done.stderr.splitlines()] == ["name"], done.stderr


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("sitemaps: {bogus: 1}", "sitemaps.bogus"),  # checked as it adds start requests
        ("frontier: 'redis://127.0.0.1:1/0?patience=0'", "frontier"),
        ("incremental: true", "incremental"),  # needs a persistent frontier
    ],
)
async def test_a_core_key_refused_hides_no_mistake_found_later_either(
    tmp_path: Path, line: str, key: str
) -> None:
    project = write_project(
        tmp_path,
        f"""
        spider: rules
        start_urls: [http://a.test/]
        delay: -1
        {line}
        rules: {{follow: [a], items: [{{fields: {{t: h1}}}}]}}
        """,
    )
    done = await run_fw("check", str(project))
    assert done.returncode == 2
    assert [line.split(": ")[2] for line in done.stderr.splitlines()] == ["delay", key]


async def test_the_crawls_parts_refused_together_are_said_together(tmp_path: Path) -> None:
    # The exporter's mistake hid the sitemaps' (a start request a plugin adds), and the
    # frontier's hid both, until each was fixed in turn.
    project = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [http://a.test/]
        frontier: 'redis://127.0.0.1:1/0?patience=0'
        sitemaps: {bogus: 1}
        exporters: [{path: out.jsonl, fields: 3}]
        rules: {follow: [a], items: [{fields: {t: h1}}]}
        """,
    )
    done = await run_fw("check", str(project))
    assert done.returncode == 2
    said = [line.split(": ")[2] for line in done.stderr.splitlines()]
    assert said == ["frontier", "sitemaps.bogus", "exporters[0].fields"], done.stderr


async def test_a_refused_key_other_checks_read_is_said_alone_not_with_what_its_default_causes(
    tmp_path: Path,
) -> None:
    # Left at its default (the start URLs' hosts), allowed_domains made the sitemaps check
    # refuse a host the user had allowed.
    project = write_project(
        tmp_path,
        """
        spider: rules
        start_urls: [http://shop.example/]
        allowed_domains: [shop.example, sitemaps.example, "http://typo.example/"]
        sitemaps: {urls: ['http://sitemaps.example/sitemap.xml']}
        rules: {follow: [a], items: [{fields: {t: h1}}]}
        """,
    )
    done = await run_fw("check", str(project))
    assert done.returncode == 2
    said = [line.split(": ")[2] for line in done.stderr.splitlines()]
    assert said == ["allowed_domains[2]"], done.stderr
