"""Run a command, stopped from outside for part of the time, as one crawler for run.py.

usage: python benchmarks/idle.py RUN_S STOP_S -- fw ... run fw.yaml -s ...

Lets the command run for RUN_S seconds, then stops it (SIGSTOP) for STOP_S, and so on
until it exits; exits with its code. A stopped process uses no CPU, as a crawl waiting for
its hosts' delays does not, but its code and its batches are those of the command: so the
one-host crawl run this way (``fw-1host-idle``) tells what idle time alone costs a page on
this machine, with none of a paced crawl's own work. Its CPU time, as run.py measures it
through ``os.wait4``, is the command's.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: be killed with this process, even while stopped (a run that times out
    is killed with SIGKILL, which leaves no chance to let the child go)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def main(argv: list[str]) -> int:
    running, stopped = float(argv[0]), float(argv[1])
    command = argv[argv.index("--") + 1 :]
    # preexec_fn is unsafe beside threads; this process has none.
    child = subprocess.Popen(command, preexec_fn=_die_with_parent)  # noqa: PLW1509
    try:
        while _runs_on(child, running):
            child.send_signal(signal.SIGSTOP)
            try:
                _runs_on(child, stopped)  # stopped, it cannot exit: this only sleeps
            finally:
                child.send_signal(signal.SIGCONT)
    finally:
        if child.poll() is None:
            child.kill()
    return child.wait()


def _runs_on(child: subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait up to ``seconds`` for the child to exit; tell whether it still runs."""
    try:
        child.wait(seconds)
    except subprocess.TimeoutExpired:
        return True
    return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
