"""Who may use a crawl in Redis: its own project only, with the right password, over TLS
it trusts; and a password never shows in what fw prints.

Against a real ``redis-server`` (with ``requirepass`` and ACL users where a test needs
them) and a real TLS terminator in front of it, with a test CA from ``trustme``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import trustme

from framework.errors import ProjectError, UsageError
from framework.fetch.politeness import HostPolicy, Politeness
from framework.frontier import Owner
from framework.frontier.redis import RedisFrontier, shown
from framework.http import Request
from tests.redis_server import RedisServer, redis_binary

pytestmark = pytest.mark.skipif(redis_binary() is None, reason="no redis-server to run")

POLITENESS = Politeness(HostPolicy(4, 0.0), {})
PASSWORD = "s3cret-Pa55"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    yield redis_server
    redis_server.stop()


@contextlib.asynccontextmanager
async def opened(
    url: str, name: str, owner: Owner | None, fresh: bool = False
) -> AsyncIterator[RedisFrontier]:
    frontier = RedisFrontier(url, POLITENESS, name=name, owner=owner, fresh=fresh)
    await frontier.open()
    try:
        yield frontier
    finally:
        await frontier.close()


# -------------------------------------------------------------------------------------------
# One crawl, one project
# -------------------------------------------------------------------------------------------


async def test_another_project_of_the_same_name_is_refused_its_crawl(
    server: RedisServer,
) -> None:
    alpha = Owner("project", "shop", "alpha.yaml:3")
    async with opened(server.url, "project", alpha) as first:
        await first.add([Request("http://a.test/1")])
    beta = Owner("project", "news", "beta.yaml:4")
    with pytest.raises(ProjectError) as refused:
        async with opened(server.url, "project", beta):
            pass
    assert str(refused.value).startswith("beta.yaml:4: frontier: ")
    assert "holds, under 'fw:project:', the crawl of project 'project' (spider shop)" in str(
        refused.value
    )
    async with opened(server.url, "project", alpha) as again:  # the owner goes on
        assert again.counts().pending == 1


async def test_fresh_does_not_wipe_another_projects_crawl(server: RedisServer) -> None:
    async with opened(server.url, "project", Owner("project", "shop")) as first:
        await first.add([Request("http://a.test/1")])
    with pytest.raises(ProjectError, match="crawl of project 'project' \\(spider shop\\)"):
        async with opened(server.url, "project", Owner("project", "news"), fresh=True):
            pass
    assert redis.Redis.from_url(server.url).hget("fw:project:meta", "spider") == b"shop"
    async with opened(server.url, "project", Owner("project", "shop")) as owner:
        assert owner.counts().pending == 1


async def test_another_project_of_the_same_name_and_spider_is_refused_while_its_workers_run(
    server: RedisServer,
) -> None:
    shop = Owner("project", "rules", "a.yaml:3", ("shop.test",))
    news = Owner("project", "rules", "b.yaml:3", ("news.test", "127.0.0.1:8080"))
    async with opened(server.url, "project", shop) as running:
        await running.add([Request("http://shop.test/1")])
        for fresh in (False, True):  # nor may its --fresh wipe the running crawl
            with pytest.raises(ProjectError) as refused:
                async with opened(server.url, "project", news, fresh=fresh):
                    pass
            assert str(refused.value) == (
                "b.yaml:3: frontier: the Redis at redis://127.0.0.1:"
                f"{server.port}/0 holds, under 'fw:project:', a crawl whose running workers "
                "have allowed_domains [shop.test], and this project [127.0.0.1:8080, "
                "news.test]: each would drop the other's pages as offsite. If it is another "
                "project's crawl, give this project a name of its own (name:) or its crawl "
                "another ?prefix=; to change allowed_domains for the rest of this crawl, stop "
                "its workers first (one killed counts as running for a lease, 30s)"
            )
        assert running.counts().pending == 1
        # The same domains written another way are the same crawl's.
        same = Owner("project", "rules", "c.yaml:3", ("SHOP.test", "shop.test"))
        async with opened(server.url, "project", same) as joined:
            assert joined.counts().pending == 1


async def test_allowed_domains_changed_between_runs_are_taken_with_a_warning(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with opened(server.url, "project", Owner("project", "rules", "", ("a.test",))) as first:
        await first.add([Request("http://a.test/1")])
    wider = Owner("project", "rules", "", ("a.test", "b.test"))
    async with opened(server.url, "project", wider) as resumed:
        assert resumed.counts().pending == 1
        assert "allowed_domains changed since the crawl under 'fw:project:' last ran: " in (
            caplog.text
        )
        assert "[a.test] before, [a.test, b.test] now" in caplog.text
        # Now the crawl's running workers are the wider ones'.
        with pytest.raises(ProjectError, match=r"have allowed_domains \[a.test, b.test\]"):
            async with opened(server.url, "project", Owner("project", "rules", "", ("a.test",))):
                pass
    caplog.clear()
    async with opened(server.url, "project", wider):
        assert "allowed_domains changed" not in caplog.text
    every = Owner("project", "rules", "", ())
    async with opened(server.url, "project", every):
        assert "[a.test, b.test] before, [] (every host) now" in caplog.text


async def test_a_worker_killed_counts_as_running_for_a_lease(server: RedisServer) -> None:
    url = f"{server.url}?lease=30"
    dead = RedisFrontier(url, POLITENESS, name="project", owner=Owner("p", "s", "", ("a.test",)))
    await dead.open()
    assert dead._heartbeat is not None
    dead._heartbeat.cancel()  # as if killed: no beat, no close
    await dead._scripts.disconnect()
    other = Owner("p", "s", "", ("b.test",))
    with pytest.raises(ProjectError, match="stop its workers first"):
        async with opened(url, "project", other):
            pass
    client = redis.Redis.from_url(server.url)
    seconds, _ = client.time()
    client.hset("fw:project:workers", dead.worker, str(seconds - 31))  # silent for a lease
    async with opened(url, "project", other) as taken:
        assert taken.counts().pending == 0


async def test_fresh_leaves_a_crawl_whose_prefix_starts_with_its_own(
    server: RedisServer,
) -> None:
    async with opened(f"{server.url}?prefix=fw:shop:eu:", "eu", None) as nested:
        await nested.add([Request("http://eu.test/1"), Request("http://eu.test/2")])
    async with opened(server.url, "shop", None) as shop:
        await shop.add([Request("http://shop.test/1")])
    async with opened(server.url, "shop", None, fresh=True) as wiped:
        assert wiped.counts().pending == 0
    async with opened(f"{server.url}?prefix=fw:shop:eu:", "eu", None) as kept:
        assert kept.counts().pending == 2


# -------------------------------------------------------------------------------------------
# Passwords and ACLs
# -------------------------------------------------------------------------------------------


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis with a password, and a user ``reader`` that may not run scripts."""
    redis_server = RedisServer(tmp_path, password=PASSWORD)
    redis_server.start()
    redis_server.client().execute_command(
        "ACL", "SETUSER", "reader", "on", ">readpass", "~*", "+@read"
    )
    yield redis_server
    redis_server.stop()


@pytest.mark.parametrize(
    "credentials",
    [":wrong-password@", "", "reader:readpass@"],
    ids=["wrong-password", "no-password", "acl-refuses-scripts"],
)
async def test_a_redis_that_refuses_fw_is_a_usage_error_at_once(
    locked: RedisServer, credentials: str
) -> None:
    url = f"redis://{credentials}127.0.0.1:{locked.port}/0"
    with pytest.raises(UsageError) as refused:
        await asyncio.wait_for(opened(url, "shop", None).__aenter__(), timeout=10)
    message = str(refused.value)
    assert message.startswith(f"frontier: redis at 127.0.0.1:{locked.port} refused")
    assert "wrong-password" not in message and "readpass" not in message


async def test_the_right_password_opens_the_crawl(locked: RedisServer) -> None:
    async with opened(f"redis://:{PASSWORD}@127.0.0.1:{locked.port}/0", "shop", None) as ok:
        assert await ok.add([Request("http://a.test/")])


def test_a_password_is_masked_wherever_fw_shows_a_redis_url() -> None:
    assert (
        shown(f"redis://:{PASSWORD}@h:6379/0?prefix=fw:x:") == "redis://***@h:6379/0?prefix=fw:x:"
    )
    assert shown(f"redis://h/0?password={PASSWORD}&db=1") == "redis://h/0?password=***&db=1"
    assert shown("redis://h/0?password=ab#cdSECRET") == "redis://h/0?password=***"
    with pytest.raises(UsageError) as bad_lease:
        RedisFrontier(f"redis://:{PASSWORD}@h/0?lease=soon", POLITENESS, name="x")
    assert PASSWORD not in str(bad_lease.value) and "lease=soon" in str(bad_lease.value)


async def test_fw_status_and_its_errors_never_print_the_password(
    locked: RedisServer, tmp_path: Path
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{locked.port}/0"
    async with opened(url, "shop", None) as crawl:
        await crawl.add([Request("http://127.0.0.1:1/")])
    project = tmp_path / "shop.yaml"
    project.write_text(
        "spider: rules\nstart_urls: [http://127.0.0.1:1/]\n"
        f"rules: {{items: [{{fields: {{t: h1}}}}]}}\nfrontier: {url}\n"
    )
    fw = [sys.executable, "-m", "framework", "status", str(project)]
    for extra, code in (([], 0), (["--json"], 0), (["-s", f"frontier={url[:-2]}x/0"], 2)):
        done = await asyncio.to_thread(
            subprocess.run, [*fw, *extra], check=False, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == code, done.stderr
        assert PASSWORD not in done.stdout + done.stderr, extra
        assert "redis://***@127.0.0.1:" in done.stdout + done.stderr


@pytest.mark.parametrize(
    "url",
    [
        "redis://:ab12?xyzSECRET@127.0.0.1:6399/0",  # a raw ? ends the "port" inside it
        "redis://127.0.0.1:99999/0?password=QSECRET",  # refused for its port, not its password
    ],
)
async def test_a_redis_url_refused_for_its_form_never_prints_the_password(
    tmp_path: Path, url: str
) -> None:
    project = tmp_path / "shop.yaml"
    project.write_text(
        "spider: rules\nstart_urls: [http://127.0.0.1:1/]\n"
        "rules: {items: [{fields: {t: h1}}]}\nfrontier: {$env: FRONTIER}\n"
    )
    for command in ("status", "run"):
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "framework", command, str(project)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "FRONTIER": url},
        )
        assert done.returncode == 2, done.stderr
        assert "SECRET" not in done.stdout + done.stderr and "ab12" not in done.stderr, command
        assert done.stderr.count("Error:") == 1 and "frontier: redis://" in done.stderr


# -------------------------------------------------------------------------------------------
# TLS
# -------------------------------------------------------------------------------------------


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls(server: RedisServer, ca: trustme.CA) -> AsyncIterator[int]:
    """A TLS terminator on a free port in front of ``server``, its certificate from ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", server.port)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))

    terminator = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=context)
    yield terminator.sockets[0].getsockname()[1]
    terminator.close()


async def test_a_certificate_fw_does_not_trust_is_a_usage_error_at_once(tls: int) -> None:
    with pytest.raises(UsageError, match=r"refused the connection: .*certificate verify failed"):
        await asyncio.wait_for(
            opened(f"rediss://127.0.0.1:{tls}/0", "shop", None).__aenter__(), timeout=10
        )


async def test_a_certificate_from_the_given_ca_is_trusted(
    tls: int, ca: trustme.CA, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    async with opened(f"rediss://127.0.0.1:{tls}/0?ssl_ca_certs={bundle}", "shop", None) as ok:
        assert await ok.add([Request("http://a.test/")])
