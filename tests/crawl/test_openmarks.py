"""The marks beside a Redis worker's open exports (``framework/crawl/openmarks.py``)."""

from __future__ import annotations

import os
from pathlib import Path

from framework.crawl import openmarks


def test_a_mark_holds_only_for_its_crawl_and_the_file_it_was_made_for(tmp_path: Path) -> None:
    export = tmp_path / "items.json"
    export.write_text("[\n{}", encoding="utf-8")
    openmarks.mark(str(export), "shop")
    assert (tmp_path / ".items.json.fw-open").is_file()
    assert openmarks.marked(str(export), "shop")
    assert not openmarks.marked(str(export), "news")  # another crawl's export of that name
    mine = tmp_path / "mine.json"
    mine.write_text('{"report": 1}\n', encoding="utf-8")
    mine.replace(export)  # the user's own file there now: never closed with a "]"
    assert not openmarks.marked(str(export), "shop")
    export.unlink()
    assert not openmarks.marked(str(export), "shop")  # moved away: nothing to finish
    openmarks.unmark(str(export))
    assert not list(tmp_path.iterdir())


def test_a_mark_not_written_whole_or_planted_marks_nothing(tmp_path: Path) -> None:
    export = tmp_path / "items.json"
    export.write_text("[\n{}", encoding="utf-8")
    beside = tmp_path / ".items.json.fw-open"
    for planted in (b"", b'{"crawl": "shop", "file": [', b"\x00" * 10_000):
        beside.write_bytes(planted)
        assert not openmarks.marked(str(export), "shop")
    beside.unlink()
    os.mkfifo(beside)  # never opened: nothing would ever write it
    assert not openmarks.marked(str(export), "shop")
    for path in ("-", "/dev/stdout"):  # written in place, never reopened by a rerun
        openmarks.mark(path, "shop")
        assert not openmarks.marked(path, "shop")
