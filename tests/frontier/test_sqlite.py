"""What only the SQLite frontier does: state that outlives the process, and its lock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import sqlite3
from pathlib import Path

import pytest

from framework.errors import CrawlAborted, UsageError
from framework.fetch.politeness import HostPolicy, Politeness
from framework.frontier import ONCE, Lease, LeaseLost, Saved
from framework.frontier.sqlite import _SCHEMA, SqliteFrontier, read_status
from framework.http import Request
from tests.conftest import Serve, fw_command, pages, read_jsonl, run_fw, write_project
from tests.disks import small_disk
from tests.frontier.leases import ack, fail
from tests.linked_site import LinkedSite

POLITENESS = Politeness(HostPolicy(4, 0.0), {})


async def opened(path: Path, *, fresh: bool = False) -> tuple[SqliteFrontier, Saved]:
    frontier = SqliteFrontier(path, POLITENESS, fresh=fresh)
    return frontier, await frontier.open()


async def lease_of(frontier: SqliteFrontier) -> Lease:
    got = await frontier.claim()
    assert isinstance(got, Lease), f"expected a lease, got {got!r}"
    return got


def urls(*paths: str) -> list[Request]:
    return [Request(f"http://a.test/{p}") for p in paths]


async def test_a_new_state_is_not_a_resumed_crawl(tmp_path: Path) -> None:
    frontier, saved = await opened(tmp_path / "state" / "crawl.db")
    assert saved == Saved()
    await frontier.close()


async def test_queue_seen_set_and_checkpoint_outlive_the_process(tmp_path: Path) -> None:
    frontier, _ = await opened(tmp_path / "crawl.db")
    await frontier.add(urls("1", "2"))
    lease = await lease_of(frontier)
    await ack(frontier, lease, urls("3", "1"), checkpoint={"jsonl:/x": 120})
    await frontier.close()

    again, saved = await opened(tmp_path / "crawl.db")
    assert saved.resumed and not saved.finished
    assert (saved.settled, dict(saved.checkpoints)) == (1, {"jsonl:/x": 120})
    assert await again.add(urls("1", "2", "3", "4")) == urls("4")  # dedup survived
    claimed = {(await lease_of(again)).request.url for _ in range(3)}
    assert claimed == {"http://a.test/2", "http://a.test/3", "http://a.test/4"}
    await again.close()


async def test_leases_of_a_killed_run_go_back_to_the_queue(tmp_path: Path) -> None:
    frontier, _ = await opened(tmp_path / "crawl.db")
    await frontier.add(urls("1"))
    lease = await lease_of(frontier)
    await frontier.close()  # as if killed: the lease was never settled

    again, saved = await opened(tmp_path / "crawl.db")
    assert saved.resumed and again.counts().pending == 1
    assert (await lease_of(again)).request == lease.request
    with pytest.raises(LeaseLost):  # the dead run's lease is not this run's
        await ack(again, lease, [])
    await again.close()


async def test_a_retry_outlives_the_process_with_its_retry_count(tmp_path: Path) -> None:
    frontier, _ = await opened(tmp_path / "crawl.db")
    await frontier.add(urls("1"))
    lease = await lease_of(frontier)
    await frontier.retry(lease, lease.request.replace(retries=1), 0.0)
    await frontier.close()

    again, saved = await opened(tmp_path / "crawl.db")
    assert saved.resumed and again.counts().delayed == 1
    assert (await lease_of(again)).request.retries == 1
    await again.close()


async def test_a_finished_crawl_says_so_and_fresh_starts_over(tmp_path: Path) -> None:
    frontier, _ = await opened(tmp_path / "crawl.db")
    await frontier.add(urls("1", "2"))
    await ack(frontier, await lease_of(frontier), [])
    await fail(frontier, await lease_of(frontier), "http_404")
    await frontier.close()

    again, saved = await opened(tmp_path / "crawl.db")
    assert (saved.finished, saved.settled) == (True, 2)
    await again.close()
    fresh, saved = await opened(tmp_path / "crawl.db", fresh=True)
    assert saved == Saved()
    assert await fresh.add(urls("1")) == urls("1")
    await fresh.close()


async def test_fresh_discards_a_crawls_state_and_nothing_that_is_not_state(
    tmp_path: Path,
) -> None:
    stopped, _ = await opened(tmp_path / "crawl.db")
    await stopped.add(urls("1"))
    await lease_of(stopped)
    await stopped.close()
    again, saved = await opened(tmp_path / "crawl.db", fresh=True)
    assert saved == Saved()
    await again.close()
    # The message of a file that is no state once said "or run with --fresh", which
    # then emptied the project file, a plugin or the user's own database.
    for name, data in (("project.yaml", b"spider: x\n"), ("theirs.db", None)):
        path = tmp_path / name
        if data is None:
            with contextlib.closing(sqlite3.connect(path)) as db:
                db.execute("CREATE TABLE notes (text)")
                db.commit()
        else:
            path.write_bytes(data)
        before = path.read_bytes()
        with pytest.raises(UsageError, match="is not fw crawl state, so --fresh leaves it alone"):
            await opened(path, fresh=True)
        assert path.read_bytes() == before


async def test_another_programs_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    # fw run wrote its own tables into it, and fw status then showed it as a crawl.
    theirs = tmp_path / "theirs.db"
    with contextlib.closing(sqlite3.connect(theirs)) as db:
        db.execute("CREATE TABLE notes (text)")
        db.commit()
    before = theirs.read_bytes()
    with pytest.raises(UsageError, match="is not fw crawl state; give the frontier a path"):
        await opened(theirs)
    assert theirs.read_bytes() == before


async def test_a_state_whose_making_was_cut_short_is_fws_still(tmp_path: Path) -> None:
    # Killed between two of its CREATE TABLEs (by an older fw, which made them one by one):
    # refused as another program's, with --fresh refusing it too, only deleting it helped.
    path = tmp_path / "crawl.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(_SCHEMA[: _SCHEMA.index(");\n") + 2])  # the requests table alone
        db.commit()
    for fresh in (False, True):
        frontier, _ = await opened(path, fresh=fresh)
        await frontier.close()


async def test_fresh_reads_the_state_at_its_path_as_written(tmp_path: Path) -> None:
    # A URI read "st%41te" as "stAte": the check looked at another file than --fresh empties.
    theirs = tmp_path / "st%41te" / "crawl.db"
    theirs.parent.mkdir()
    with contextlib.closing(sqlite3.connect(theirs)) as db:
        db.execute("CREATE TABLE notes (text)")
        db.commit()
    state, _ = await opened(tmp_path / "stAte" / "crawl.db")
    await state.close()
    with pytest.raises(UsageError, match="is not fw crawl state"):
        await opened(theirs, fresh=True)
    for odd in ("st#te", "st?te"):
        frontier, _ = await opened(tmp_path / odd / "crawl.db")
        await frontier.close()
        again, saved = await opened(tmp_path / odd / "crawl.db", fresh=True)
        assert saved == Saved()
        await again.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st#te", "st%41te", "st?te", "stAte"]


async def test_a_second_process_on_the_same_state_is_refused(tmp_path: Path) -> None:
    frontier, _ = await opened(tmp_path / "crawl.db")
    with pytest.raises(UsageError, match="another fw process is running this crawl"):
        await opened(tmp_path / "crawl.db")  # a second open file description: like a process
    status = read_status(tmp_path / "crawl.db")
    assert len(status.workers) == 1 and status.workers[0].alive  # status needs no lock
    await frontier.close()
    assert (read_status(tmp_path / "crawl.db")).workers == ()


async def test_status_counts_by_state_and_host(tmp_path: Path) -> None:
    frontier, _ = await opened(tmp_path / "crawl.db")
    await frontier.add([*urls("1", "2", "3"), Request("http://b.test/1")])
    for settle in ("ack", "fail", "hold"):
        lease = await lease_of(frontier)
        if settle == "ack":
            await ack(frontier, lease, [])
        elif settle == "fail":
            await fail(frontier, lease, "timeout")
    status = read_status(frontier.path)
    assert (status.pending, status.leased, status.done, status.failed) == (1, 1, 1, 1)
    assert sum(h.pending + h.leased + h.done + h.failed for h in status.hosts.values()) == 4
    assert set(status.hosts) == {"a.test", "b.test"}
    await frontier.close()


async def test_claiming_uses_the_queue_index_not_a_scan(tmp_path: Path) -> None:
    """Dequeue cost stays flat as the queue grows: the claim query walks an index."""
    frontier, _ = await opened(tmp_path / "crawl.db")
    await frontier.close()
    db = sqlite3.connect(tmp_path / "crawl.db")
    plan = " ".join(
        row[3]
        for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT id, data, priority FROM requests WHERE host = ? AND "
            "state = 0 ORDER BY priority DESC, id LIMIT 2",
            ("a.test",),
        )
    )
    db.close()
    assert "USING INDEX queue" in plan and "TEMP B-TREE" not in plan, plan


async def test_a_state_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "crawl.db").write_text("not a database, just text " * 100)
    with pytest.raises(UsageError, match=r"crawl\.db"):
        await opened(tmp_path / "crawl.db")


async def test_a_state_damaged_anywhere_is_a_clear_error_never_an_internal_one(
    tmp_path: Path,
) -> None:
    # A damaged page past the schema failed the first count as "internal error".
    for page in range(2, 12):
        path = tmp_path / f"crawl{page}.db"
        frontier, _ = await opened(path)
        await frontier.add([Request(f"http://a.test/{n}") for n in range(3000)])
        await frontier.close()
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with path.open("r+b") as file:
            file.seek(4096 * (page - 1))
            file.write(b"\xff" * 4096)
        try:
            again, _ = await opened(path)
        except UsageError as exc:
            assert "is not fw crawl state (database disk image is malformed)" in str(exc)
        else:
            await again.close()  # the page held only requests: what claims find, below


async def test_a_queued_request_that_cannot_be_read_stops_the_crawl_saying_so(
    tmp_path: Path,
) -> None:
    frontier, _ = await opened(tmp_path / "crawl.db")
    await frontier.add(urls("1"))
    await frontier.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "crawl.db")) as db, db:
        db.execute("UPDATE requests SET data = NULL")
    again, _ = await opened(tmp_path / "crawl.db")
    with pytest.raises(CrawlAborted, match=r"the state is damaged: queued request 1 cannot be"):
        await again.claim()  # an AttributeError: "internal error", and a crawl that hung
    await again.close()


@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_a_state_file_removed_or_replaced_under_the_crawl_stops_it(
    tmp_path: Path, how: str
) -> None:
    # The crawl wrote on to a file nobody would read, and its lock no longer kept out a
    # second fw run: both crawled everything and said all was well.
    path = tmp_path / "crawl.db"
    frontier, _ = await opened(path)
    await frontier.add(urls("1"))
    if how == "removed":
        path.unlink()
    else:
        copy = tmp_path / "copy.db"
        with (
            contextlib.closing(sqlite3.connect(path)) as db,
            contextlib.closing(sqlite3.connect(copy)) as backup,
        ):
            db.backup(backup)
        copy.replace(path)
    with pytest.raises(CrawlAborted, match="the state file was removed or replaced while"):
        await frontier.add(urls("2"))
    await frontier.close()


# -------------------------------------------------------------------------------------------
# Whose crawl the state is, who holds it, and a state file that cannot be written
# -------------------------------------------------------------------------------------------


def rules_project(folder: Path, name: str, starts: list[str], state: Path, *extra: str) -> Path:
    """A rules crawl of a linked site, with its frontier in ``state``; ``extra`` lines added."""
    path = write_project(
        folder,
        f"""
        name: {name}
        spider: rules
        start_urls: [{", ".join(starts)}]
        robots: ignore
        frontier: "sqlite:///{state}"
        rules:
          follow: [a]
          items: [{{fields: {{page: {{value: url}}}}}}]
        """,
        name=f"{name}.yaml",
    )
    with path.open("a", encoding="utf-8") as file:
        file.writelines(line + "\n" for line in extra)
    return path


async def test_another_projects_state_is_refused_not_continued(
    tmp_path: Path, serve: Serve
) -> None:
    base = await LinkedSite(20, latency=0).start(serve)
    state = tmp_path / "state" / "crawl.db"
    alpha = rules_project(tmp_path, "alpha", [f"{base}/p/0"], state, "max_pages: 5")
    assert (await run_fw("run", str(alpha), "-q", "-o", str(tmp_path / "a.jsonl"))).returncode == 0
    beta = rules_project(tmp_path, "beta", [f"{base}/p/0"], state)
    refused = await run_fw("run", str(beta), "-o", str(tmp_path / "b.jsonl"))
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        f"Error: {beta}:5: frontier: {state} holds the crawl of project 'alpha' (spider rules); "
        "use another path, or --fresh to discard it"
    )
    assert not (tmp_path / "b.jsonl").exists() or not read_jsonl(tmp_path / "b.jsonl")
    status = await run_fw("status", str(beta))  # not shown as beta's either
    assert (status.returncode, status.stderr.strip()) == (
        2,
        f"Error: {beta}:5: frontier: {state} holds the crawl of project 'alpha' (spider "
        "rules), not this one's",
    )
    fresh = await run_fw("run", str(beta), "-q", "--fresh", "-o", str(tmp_path / "b.jsonl"))
    assert fresh.returncode == 0, fresh.stderr
    assert len(read_jsonl(tmp_path / "b.jsonl")) == 20


async def test_fw_status_of_a_file_that_is_no_crawl_state_says_so(tmp_path: Path) -> None:
    state = tmp_path / "notes.db"
    state.write_text("my notes, not a database\n", encoding="utf-8")
    project = rules_project(tmp_path, "alpha", ["http://127.0.0.1:9/"], state)
    status = await run_fw("status", str(project))
    assert status.returncode == 2
    assert status.stderr.startswith(f"Error: frontier: {state} is not fw crawl state ("), (
        status.stderr
    )
    assert state.read_text(encoding="utf-8") == "my notes, not a database\n"


async def test_narrowing_allowed_domains_between_runs_takes_effect(
    tmp_path: Path, serve: Serve
) -> None:
    site = LinkedSite(40, latency=0)
    base = await site.start(serve)
    other = base.replace("127.0.0.1", "localhost")  # the same site under a second name
    state = tmp_path / "crawl.db"
    starts = [f"{base}/p/0", f"{other}/p/1", f"{other}/p/2", f"{other}/p/3"]
    wide = rules_project(
        tmp_path, "shop", starts, state, "max_pages: 2", "allowed_domains: [127.0.0.1, localhost]"
    )
    first = await run_fw("run", str(wide), "-q", "-o", str(tmp_path / "first.jsonl"))
    assert first.returncode == 0, first.stderr
    narrow = rules_project(tmp_path, "shop", starts[:1], state, "allowed_domains: [127.0.0.1]")
    second = await run_fw("run", str(narrow), "-q", "-o", str(tmp_path / "second.jsonl"))
    assert second.returncode == 0, second.stderr
    pages = [item["page"] for item in read_jsonl(tmp_path / "second.jsonl")]
    assert pages and not any(page.startswith(other) for page in pages)
    # Said, once: changing start_urls changes allowed_domains too, unless it is set.
    said = [line for line in second.stderr.splitlines() if "allowed_domains now" in line]
    assert len(said) == 1 and f"starting with {other}/p/" in said[0], second.stderr


async def test_a_deleted_lock_file_does_not_let_a_second_process_in(
    tmp_path: Path, serve: Serve
) -> None:
    site = LinkedSite(400, latency=0.05)
    base = await site.start(serve)
    state = tmp_path / "crawl.db"
    project = rules_project(tmp_path, "shop", [f"{base}/p/0"], state)
    first = await asyncio.create_subprocess_exec(
        *fw_command(),
        "run",
        str(project),
        "-q",
        "-o",
        str(tmp_path / "one.jsonl"),
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await site.served(5)
        Path(f"{state}.lock").unlink()
        second = await run_fw("run", str(project), "-o", str(tmp_path / "two.jsonl"))
        assert second.returncode == 2
        assert "another fw process is running this crawl" in second.stderr
    finally:
        first.kill()
        await first.wait()


@pytest.mark.parametrize(
    ("disk", "limit", "reason"),
    [
        # SQLite reports both as SQLITE_FULL: it was "No space left on device" on an empty disk.
        (None, 96 * 1024, "File too large"),
        # And close to a small limit, a full disk was taken for the limit.
        ("96k", 1 << 20, "No space left on device"),
    ],
    ids=["the limit", "a full disk near it"],
)
async def test_the_file_size_limit_and_a_full_disk_under_the_state_are_told_apart(
    tmp_path: Path, serve: Serve, disk: str | None, limit: int, reason: str
) -> None:
    base = await LinkedSite(3000, latency=0).start(serve)
    folder = tmp_path / "state"
    with small_disk(folder, disk) if disk else contextlib.nullcontext(folder):
        state = folder / "crawl.db"
        project = rules_project(tmp_path, "shop", [f"{base}/p/0"], state)
        process = await asyncio.create_subprocess_exec(
            *fw_command(),
            "run",
            str(project),
            "-q",
            "-o",
            "-",  # a pipe: not a file the limit applies to
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
        )
        async with asyncio.timeout(60):
            _, err = await process.communicate()
    assert process.returncode == 1, err
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith(f"Error: frontier {state}: {reason} ("), last


async def test_a_full_disk_under_the_state_file_is_one_located_error(
    tmp_path: Path, serve: Serve
) -> None:
    base = await LinkedSite(3000, latency=0).start(serve)
    with small_disk(tmp_path / "state", "128k") as folder:
        project = rules_project(tmp_path, "shop", [f"{base}/p/0"], folder / "crawl.db")
        done = await run_fw("run", str(project), "-q", "-o", str(tmp_path / "items.jsonl"))
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: frontier {folder / 'crawl.db'}: No space left on device (")
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert all(json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines())


async def test_a_full_disk_in_one_large_step_names_the_disk_not_the_rollback(
    tmp_path: Path, serve: Serve
) -> None:
    # SQLite rolls a transaction back itself when the disk fills mid-way: fw's own ROLLBACK
    # then failed, and "cannot rollback - no transaction is active" hid the full disk.
    links = "".join(f'<a href="/p/{n}">x</a>' for n in range(20_000))
    base = await serve(pages({"/": links}))
    with small_disk(tmp_path / "state", "600k") as folder:
        project = rules_project(tmp_path, "shop", [f"{base}/"], folder / "crawl.db")
        done = await run_fw("run", str(project), "-q", "-o", str(tmp_path / "items.jsonl"))
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: frontier {folder / 'crawl.db'}: No space left on device ("), (
        last
    )


def fill(folder: Path) -> None:
    """Write a file in ``folder`` until its disk is full."""
    with (folder / "filler").open("wb", buffering=0) as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"\0" * 4096)


async def test_a_full_disk_when_a_closed_crawl_reopens_is_not_taken_for_bad_state(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "state", "256k") as folder:
        frontier, _ = await opened(folder / "crawl.db")
        await frontier.add(urls(*map(str, range(200))))
        for _ in range(3):
            await ack(frontier, await lease_of(frontier))
        await frontier.close()  # cleanly: the WAL is emptied, its -shm must be made anew
        fill(folder)
        with pytest.raises(CrawlAborted) as raised:
            await opened(folder / "crawl.db")
        assert str(raised.value) == (
            f"frontier {folder / 'crawl.db'}: No space left on device (3 requests settled; "
            "a rerun continues from them)"
        )
        (folder / "filler").unlink()
        again, saved = await opened(folder / "crawl.db")
        assert (saved.resumed, saved.settled, again.counts().pending) == (True, 3, 197)
        await again.close()


async def test_a_full_disk_when_a_killed_crawl_resumes_says_so_and_the_rerun_continues(
    tmp_path: Path, serve: Serve
) -> None:
    site = LinkedSite(300, latency=0.02)
    base = await site.start(serve)
    items = tmp_path / "items.jsonl"
    with small_disk(tmp_path / "state", "8m") as folder:  # room for its WAL
        state = folder / "crawl.db"
        project = rules_project(tmp_path, "shop", [f"{base}/p/0"], state)
        first = await asyncio.create_subprocess_exec(
            *fw_command(),
            "run",
            str(project),
            "-q",
            "-o",
            str(items),
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await site.served(30)
        finally:
            first.kill()  # its leases stay leased in the state, to be put back
            await first.wait()
        fill(folder)
        full = await run_fw("run", str(project), "-q", "-o", str(items))
        assert full.returncode == 1, full.stderr
        last = full.stderr.strip().splitlines()[-1]
        assert re.fullmatch(
            rf"Error: frontier {re.escape(str(state))}: No space left on device \(\d+ requests "
            r"settled; a rerun continues from them\)",
            last,
        ), last
        assert "not fw crawl state" not in full.stderr
        (folder / "filler").unlink()
        rerun = await run_fw("run", str(project), "-q", "-o", str(items))
    assert rerun.returncode == 0, rerun.stderr
    pages = [item["page"] for item in read_jsonl(items)]
    assert sorted(pages) == sorted(f"{base}/p/{n}" for n in range(300))  # each exactly once


# ---------------------------------------------------------------------------------------------
# Planted symbolic links: fw's own state is never written through one
# ---------------------------------------------------------------------------------------------


async def test_a_symlink_in_place_of_the_state_is_refused_and_its_target_kept(
    tmp_path: Path,
) -> None:
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    (tmp_path / "crawl.db").symlink_to(precious)
    with pytest.raises(UsageError, match=r"crawl.db: a symbolic link; fw does not write through"):
        await opened(tmp_path / "crawl.db")
    assert precious.read_text() == "keep me"


@pytest.mark.parametrize(
    ("state", "error"),
    [
        ("/dev/null", "frontier: /dev/null: not a regular file; the crawl's state needs one"),
        (
            "fifo",  # its open waited for a reader: no signal but SIGKILL ended it
            "frontier: cannot open {tmp}/fifo: not a regular file; the crawl's state needs one",
        ),
        ("file/crawl.db", "frontier: cannot open {tmp}/file/crawl.db: {tmp}/file is not a folder"),
        ("file/a/b.db", "frontier: cannot open {tmp}/file/a/b.db: {tmp}/file is not a folder"),
    ],
)
async def test_a_state_path_that_cannot_hold_a_database_is_named(
    tmp_path: Path, state: str, error: str
) -> None:
    # /dev/null gave "disk I/O error (0 requests settled; a rerun continues from them)".
    (tmp_path / "file").write_text("")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UsageError) as raised:
        await opened(tmp_path / state)
    assert str(raised.value) == error.format(tmp=tmp_path)


async def test_a_symlink_in_place_of_the_lock_file_is_not_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    (tmp_path / "crawl.db.lock").symlink_to(precious)
    frontier, _ = await opened(tmp_path / "crawl.db")
    await frontier.close()
    assert precious.read_text() == "keep me"
    assert "crawl.db.lock: a symbolic link" in caplog.text


async def test_the_state_is_for_its_user_alone(tmp_path: Path) -> None:
    frontier, _ = await opened(tmp_path / "crawl.db")
    await frontier.close()
    assert (tmp_path / "crawl.db").stat().st_mode & 0o777 == 0o600  # it holds request headers


async def test_a_retry_takes_over_a_failure_an_older_fw_left_and_older_fws_read_the_state(
    tmp_path: Path,
) -> None:
    # An older fw left both a request's failure and its retry's failure counted.
    frontier, _ = await opened(tmp_path / "crawl.db")
    await frontier.add(urls("page"))
    await fail(frontier, await lease_of(frontier), "http_503")
    retry = Request("http://a.test/page", dont_filter=True, meta={ONCE: 7})
    await frontier.add([retry])
    await fail(frontier, await lease_of(frontier), "http_503")
    await frontier.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "crawl.db")) as db, db:
        db.execute("UPDATE requests SET reason = 'http_503' WHERE state = 3")  # as it left it
    assert read_status(tmp_path / "crawl.db").failed == 2

    again, _ = await opened(tmp_path / "crawl.db")
    assert await again.add([retry]) == [retry]  # its retry's entry, queued again
    await ack(again, await lease_of(again))
    assert (again.counts().done, again.counts().failed, again.counts().seen) == (1, 0, 1)
    await again.close()
    status = read_status(tmp_path / "crawl.db")
    assert (status.done, status.failed) == (1, 0)
    with contextlib.closing(sqlite3.connect(tmp_path / "crawl.db")) as db:
        states = {state for (state,) in db.execute("SELECT DISTINCT state FROM requests")}
    assert states <= {0, 1, 2, 3, 4}  # the states every fw knows
