"""Serve the benchmark site on loopback: nginx when it is installed, else ``fastserver.py``.

Either way the server is a separate process that this module starts on a free port,
checks is answering the site's pages, measures, and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen import hammer

__all__ = ["Server", "measure_server", "running_server", "serving_hosts"]

HERE = Path(__file__).resolve().parent
_STARTUP_TIMEOUT = 60.0  # fastserver reads the whole site into memory first
_TICKS = os.sysconf("SC_CLK_TCK")

_NGINX_CONF = """\
# Written by benchmarks/servers.py for one benchmark run.
user {user};
worker_processes 1;
worker_rlimit_nofile {files};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
  access_log off;
  types {{
    text/html html; application/json json; text/plain txt; text/css css;
    application/javascript js; image/png png; image/svg+xml svg;
  }}
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
{servers}}}
"""
_NGINX_SERVER = """\
  server {{
{listen}
    root {root};
    location / {{ }}
  }}
"""
#: nginx's one worker: connections (each listening socket takes one too) and open files.
_CONNECTIONS, _FILES = 4096, 8192


@dataclass
class Server:
    """A running server process and the base URL it answers on."""

    kind: str
    base: str
    process: subprocess.Popen[bytes]
    detail: str = ""

    def cpu_seconds(self) -> float | None:
        """Return the CPU time used so far by the server and its workers (Linux only)."""
        try:
            return sum(_cpu_of(pid) for pid in _process_tree(self.process.pid))
        except OSError:
            return None

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def running_server(root: Path, check: Sequence[str], kind: str = "auto") -> Iterator[Server]:
    """Serve ``root`` for the duration of the ``with`` block.

    ``check`` names pages (``/p/0.html``) the server must answer byte for byte before
    anything is measured. ``kind`` is ``nginx``, ``python`` (fastserver.py) or ``auto``:
    nginx if it is on PATH.
    """
    nginx = _nginx()
    if kind == "nginx" and nginx is None:
        raise SystemExit("--server nginx: nginx is not installed")
    with tempfile.TemporaryDirectory(prefix="fw-bench-server-") as tmp:
        if nginx is not None and kind in ("auto", "nginx"):
            server = _start_nginx(nginx, root, Path(tmp))
        else:
            server = _start_fastserver(root, Path(tmp))
        try:
            _check_up(server, root, check)
            yield server
        finally:
            server.stop()


def _start_nginx(nginx: str, root: Path, tmp: Path) -> Server:
    """Start nginx in the foreground on a free port, with every path under ``tmp``."""
    _warm_page_cache(root)  # so the first crawler does not pay for the disk
    for _ in range(3):  # the free port may be taken between choosing and binding it
        port = _free_port()
        listen = f"    listen 127.0.0.1:{port} backlog=4096;"
        servers = _NGINX_SERVER.format(listen=listen, root=root.resolve())
        process = _launch_nginx(nginx, tmp, servers, _CONNECTIONS, _FILES)
        server = Server("nginx", f"http://127.0.0.1:{port}", process, _version(nginx))
        if _wait_for_port("127.0.0.1", port, process):
            return server
        server.stop()
    raise SystemExit("nginx did not start:\n" + (tmp / "error.log").read_text(errors="replace"))


@contextlib.contextmanager
def serving_hosts(
    one: Path, many: Path, addresses: Sequence[str], port: int, check: Mapping[str, Path]
) -> Iterator[Server]:
    """Serve ``one`` on 127.0.0.1 and ``many/<address>/`` on each of ``addresses``, on ``port``.

    nginx with a ``listen`` line per address; its root names the folder by
    ``$server_addr``, the address the connection came to. A worker needs a file for each
    listening socket and for each connection, and a crawler process may keep a connection
    to every host: room for up to three such processes makes four files per host. The
    open-files hard limit caps that (root in a container cannot raise it: 20,000 on the
    machine measured), so one nginx serves at most ``_hosts_per_nginx()`` addresses and
    more hosts get more nginx processes, a slice of the addresses each; the first also
    serves ``one``. ``check`` maps URLs to the files they must answer with.
    """
    nginx = _nginx()
    if nginx is None:
        raise SystemExit("the broad benchmark needs nginx (apt-get install nginx-light)")
    per_nginx = _hosts_per_nginx()
    slices = [addresses[i : i + per_nginx] for i in range(0, len(addresses), per_nginx)]
    started: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="fw-bench-server-") as tmp:
        _warm_page_cache(one)
        _warm_page_cache(many)
        try:
            for number, hosts in enumerate(slices):
                blocks = _NGINX_SERVER.format(
                    listen="\n".join(f"    listen {address}:{port};" for address in hosts),
                    root=f"{many.resolve()}/$server_addr",
                )
                if number == 0:
                    listen = f"    listen 127.0.0.1:{port} backlog=4096;"
                    blocks = _NGINX_SERVER.format(listen=listen, root=one.resolve()) + blocks
                folder = Path(tmp) / str(number)
                folder.mkdir()
                connections = 4 * len(hosts) + _CONNECTIONS
                process = _launch_nginx(nginx, folder, blocks, connections, 2 * connections)
                detail = f"{_version(nginx)} x{len(slices)}"
                started.append(Server("nginx", f"http://127.0.0.1:{port}", process, detail))
                if not _wait_for_port(hosts[-1], port, process):
                    log = (folder / "error.log").read_text(errors="replace")
                    raise SystemExit(f"nginx did not start:\n{log}")
            for url, file in check.items():
                _check_page(started[0], url, file)
            yield started[0]
        finally:
            for server in started:
                server.stop()


def _hosts_per_nginx() -> int:
    """Return how many addresses one nginx can serve within the open-files hard limit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return max(1, (hard - _CONNECTIONS) // 4) if hard != resource.RLIM_INFINITY else 1 << 30


def _launch_nginx(
    nginx: str, tmp: Path, servers: str, connections: int, files: int
) -> subprocess.Popen[bytes]:
    """Write the configuration for ``servers`` (server blocks) and start nginx on it."""
    conf = tmp / "nginx.conf"
    conf.write_text(
        _NGINX_CONF.format(
            tmp=tmp,
            user=_current_user(),
            servers=servers,
            connections=connections,
            files=files,
        ),
        encoding="utf-8",
    )
    log = (tmp / "stderr.log").open("wb")
    process = subprocess.Popen(
        [nginx, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return process


def _nginx() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


def _start_fastserver(root: Path, tmp: Path) -> Server:
    """Start fastserver.py on a free port and read the address it prints once ready."""
    log = (tmp / "stderr.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(HERE / "fastserver.py"), str(root)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    log.close()
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], _STARTUP_TIMEOUT)
    line = process.stdout.readline().decode() if ready else ""
    if not line.startswith("listening on "):
        process.kill()
        raise SystemExit(
            "fastserver.py did not start:\n" + (tmp / "stderr.log").read_text(errors="replace")
        )
    base, _, detail = line.removeprefix("listening on ").strip().partition(" ")
    return Server("fastserver", base, process, detail.strip("()"))


def _check_up(server: Server, root: Path, paths: Sequence[str]) -> None:
    """Fail unless the server answers each of ``paths`` (HTML pages) correctly."""
    for path in paths:
        _check_page(server, server.base + path, root / path.lstrip("/"))


def _check_page(server: Server, url: str, page: Path) -> None:
    """Fail unless ``url`` answers with the bytes of ``page``, as HTML."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = answer.read()
            content_type = answer.headers.get("Content-Type", "")
    except OSError as exc:
        raise SystemExit(f"{server.kind} does not serve {url}: {exc}") from exc
    if body != page.read_bytes() or not content_type.startswith("text/html"):
        raise SystemExit(f"{server.kind} serves {url} wrongly ({content_type})")


def measure_server(
    server: Server, paths: Sequence[str], *, seconds: float = 3.0, connections: int = 32
) -> dict[str, Any]:
    """Load the server with ``loadgen`` and return its rate and the CPU share it took.

    A first, unmeasured second of load lets loopback socket buffers grow to their working
    size; measured cold, the same server can look three times slower.
    """
    asyncio.run(hammer(server.base, paths, seconds=1.0, connections=connections))
    cpu_before = server.cpu_seconds()
    result = asyncio.run(hammer(server.base, paths, seconds=seconds, connections=connections))
    cpu_after = server.cpu_seconds()
    report: dict[str, Any] = {
        "requests_per_s": result.rate,
        "mib_per_s": result.bytes / result.seconds / 2**20,
        "errors": result.errors,
        "seconds": result.seconds,
        "connections": connections,
    }
    if cpu_before is not None and cpu_after is not None:
        # The load generator (one Python process) may be what limits the rate; the CPU the
        # server used meanwhile says what one core of server could deliver.
        share = (cpu_after - cpu_before) / result.seconds
        report["server_cpu_share"] = share
        report["requests_per_cpu_s"] = result.rate / share if share > 0 else None
    return report


def _warm_page_cache(root: Path) -> None:
    for path in root.rglob("*.html"):
        path.read_bytes()


def _current_user() -> str:
    """Name our own user and group, so nginx's worker can read what we can read.

    Started as root, nginx would otherwise drop its worker to ``nobody``, which cannot
    enter a private temporary directory; started as anyone else it ignores the directive.
    """
    return f"{pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(
    host: str, port: int, process: subprocess.Popen[bytes], timeout: float = 30
) -> bool:
    """Wait until something accepts connections on ``port``; False if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _version(binary: str) -> str:
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).strip().rpartition(": ")[2]


def _process_tree(pid: int) -> list[int]:
    """Return ``pid`` and its direct children (nginx's master and its workers)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if _stat_fields(int(entry.name))[1] == str(pid):
                    children.append(int(entry.name))
    return [pid, *children]


def _cpu_of(pid: int) -> float:
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _stat_fields(pid: int) -> list[str]:
    """Return /proc/PID/stat's fields after the command name (state, ppid, ...)."""
    text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    return text.rpartition(")")[2].split()
