"""Run one command from a small process and report its time, CPU and peak memory as JSON.

Why a separate launcher: on Linux a child's ``ru_maxrss`` starts at the peak RSS of the
process that spawned it (``execve`` carries the old address space's high-water mark over,
and ``vfork`` shares the parent's). Spawned straight from run.py, every crawler would
report at least run.py's own peak, which grows as it counts items. Spawned from this
process, which imports next to nothing, the floor under the figure is ~10 MB.

usage: python benchmarks/launch.py REPORT.json TIMEOUT LOG -- COMMAND...
Exits with the command's exit status; REPORT.json gets wall_s, user_s, sys_s,
peak_rss_kb, returncode and timed_out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


def launch(command: list[str], timeout: float, log_path: Path) -> dict[str, object]:
    """Run ``command`` (killed after ``timeout`` s) and return what the kernel measured."""
    with log_path.open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            process.kill()

        killer = threading.Timer(timeout, kill)
        killer.start()
        try:
            # wait4, not Popen.wait: only wait4 hands back the child's resource usage.
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
    return {
        "wall_s": wall,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "peak_rss_kb": usage.ru_maxrss,
        "returncode": process.returncode,
        "timed_out": timed_out.is_set(),
    }


def main(argv: list[str]) -> int:
    """Parse ``REPORT TIMEOUT LOG -- COMMAND...``, run the command, write the report."""
    report, timeout, log, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit(__doc__)
    measured = launch(command, float(timeout), Path(log))
    Path(report).write_text(json.dumps(measured), encoding="utf-8")
    return 0 if measured["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
