"""Run a command, stopped from outside for part of the time, as one crawler for run.py.

usage: python benchmarks/idle.py RUN_S STOP_S -- fw ... run fw.yaml -s ...

Lets the command run for RUN_S seconds, then stops it (SIGSTOP) for STOP_S, and so on
until it exits; exits as it did. A stopped process uses no CPU, as a crawl waiting for its
hosts' delays does not, but its code and its batches are those of the command: so the
one-host crawl run this way (``fw-1host-idle``) tells what idle time alone costs a page on
this machine, with none of a paced crawl's own work.

Its CPU time, as run.py measures it through ``os.wait4``, is the command's and this
wrapper's start-up (~0.05 s): the wrapper waits on a pidfd, so it does not wake while it
waits. A run killed for its timeout takes the command with it (``PR_SET_PDEATHSIG``) but
reports only the wrapper's CPU; such a run is invalid anyway.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    running, stopped = float(argv[0]), float(argv[1])
    command = argv[argv.index("--") + 1 :]
    parent = os.getpid()
    # preexec_fn is unsafe beside threads; this process has none.
    child = subprocess.Popen(command, preexec_fn=lambda: _die_with(parent))  # noqa: PLW1509
    try:
        exited = _exit_watch(child.pid)
        while not exited(running):
            os.kill(child.pid, signal.SIGSTOP)  # not reaped yet: the pid is still the child's
            try:
                exited(stopped)  # stopped, it cannot exit: this only sleeps
            finally:
                os.kill(child.pid, signal.SIGCONT)
    finally:
        if child.poll() is None:
            child.kill()
        code = child.wait()
    if code < 0:  # end the way the child ended, so that run.py sees its signal
        with contextlib.suppress(OSError):  # SIGKILL's cannot be set, nor needs to be
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def _die_with(parent: int) -> None:
    """In the child: be killed with the wrapper, even while stopped (a run that times out
    is killed with SIGKILL, which leaves the wrapper no chance to let the child go)."""
    if ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0 or os.getppid() != parent:
        os._exit(127)  # no guard, or the wrapper died before it was set


def _exit_watch(pid: int) -> Callable[[float], bool]:
    """Return a wait for the process's exit: ``exited(seconds)`` tells whether it has."""
    poller = select.poll()
    poller.register(os.pidfd_open(pid), select.POLLIN)
    return lambda seconds: bool(poller.poll(seconds * 1000))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
