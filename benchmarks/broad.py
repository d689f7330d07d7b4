"""The broad-crawl benchmark: thousands of hosts on loopback, crawled politely.

``python benchmarks/run.py --site broad --hosts 2000`` (run.py hands its arguments here):

1. The site (``broadsite.py``): ``--hosts`` hosts, each an address 127.20.x.y, each with
   ``--pages-per-host`` pages that link to pages of other hosts; and the same pages once
   more on one host, 127.0.0.1. One nginx serves both (``servers.serving_hosts``).
2. The crawlers, one after another, each a child process measured by ``launch.py``:

   ``fw``           the broad crawl with the memory frontier: ``broad/fw.yaml``
                    (256 in flight, 1 per host, 2 s between two requests to a host)
   ``fw-1host``     the same pages from one host, no delay, 256 in flight: the CPU-bound
                    ideal, and the baseline for CPU and memory per page
   ``fw-1host-serial``
                    the same pages from one host, one request at a time: about the broad
                    crawl's pace on a small machine, and the baseline that tells what
                    CPU per page owes to the many hosts and what to the slower pace
   ``fw-1host-idle``
                    ``fw-1host`` stopped from outside 0.3 s after every 0.2 s (``idle.py``),
                    idle about as much as the paced crawl: what idling costs a page here
   ``fw-unpaced``   the broad crawl with no delay: as fast as the machine goes, like
                    ``fw-1host``, so that the two differ only in the number of hosts
   ``fw-redis-x2``, ``fw-redis-x2-1host``
                    the same with the Redis frontier and 2 workers (``workers.py``)
   ``scrapy``       Scrapy with the same politeness and its broad-crawl settings
                    (``broad/scrapy_spider.py``); ``scrapy-1host`` on request

3. Each crawl's items carry the time each page was parsed; ``timeline.py`` reads the
   sustained rate from them (every host known, none done) and compares it with the
   lower of the two ideals: ``hosts / delay`` and the matching one-host crawl's rate.
   A run is valid when its item URLs are exactly the site's pages, each once.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from broadsite import BroadSite, address, ensure_broad_site
from crawlers import find_crawlers, fw_command
from measure import Run, run_measured
from report import write_results
from servers import Server, serving_hosts
from timeline import Timeline, politeness_floor, read_times, timeline

__all__ = ["BROAD_CRAWLERS", "DEFAULT_BROAD", "raise_file_limit", "run_broad"]

HERE = Path(__file__).resolve().parent
#: Makes a crawler's command line: (site, items file, the one-host copy?) -> argv.
Command = Callable[[BroadSite, Path, bool], list[str]]
#: In the order they run: each one-host crawl before the broad crawl it is the ideal of.
BROAD_CRAWLERS = (
    "fw-1host",
    "fw-1host-serial",
    "fw-1host-idle",
    "fw-unpaced",
    "fw",
    "fw-redis-x2-1host",
    "fw-redis-x2",
    "scrapy-1host",
    "scrapy",
)
DEFAULT_BROAD = (
    "fw-1host",
    "fw-1host-serial",
    "fw-1host-idle",
    "fw-unpaced",
    "fw",
    "fw-redis-x2-1host",
    "fw-redis-x2",
    "scrapy",
)
#: What the issue asks of fw: the share of the lower ideal it sustains, the most CPU per
#: page it may spend over the one-host crawl.
_TARGET_SHARE, _TARGET_CPU = 0.85, 1.2
#: ``fw-1host-idle`` runs this long, then is stopped this long: idle 60% of the time, about
#: as much as the paced 2,000-host crawl on a small machine (~1,000 pages/s of ~2,500).
_IDLE_RUN_S, _IDLE_STOP_S = 0.2, 0.3
#: A window shorter than this says little: no sustained rate is given for it.
_SHORT_WINDOW_S = 5.0


@dataclass(frozen=True)
class BroadCrawler:
    """One crawler of the broad benchmark: what it runs, and on which copy of the site."""

    name: str
    single: bool  # crawls the one-host copy
    command: Command
    version: str


@dataclass(frozen=True)
class BroadRun:
    """One measured crawl, and its pace as read from its items."""

    run: Run
    pace: Timeline | None


def run_broad(args: argparse.Namespace) -> int:
    """Run the broad benchmark; exit 0 if every run was valid."""
    started = datetime.now()
    crawlers = _crawlers(args)
    files = raise_file_limit(args.hosts)
    root = args.site_dir or HERE / "site-broad" / f"{args.hosts}x{args.pages_per_host}"
    print(f"site: {args.hosts:,} hosts x {args.pages_per_host} pages under {root} ...", flush=True)
    site = ensure_broad_site(root, args.hosts, args.pages_per_host)
    addresses = [address(host) for host in range(site.hosts)]
    check = {
        site.url(0, 0, single=False): site.broad_root / addresses[0] / "0.html",
        site.url(site.hosts - 1, 0, single=False): site.broad_root / addresses[-1] / "0.html",
        site.url(site.hosts - 1, 0, single=True): site.single_root / str(site.hosts - 1) / "0.html",
    }
    with serving_hosts(site.single_root, site.broad_root, addresses, site.port, check) as server:
        print(f"server: {server.kind} {server.detail}, port {site.port}, open files {files}")
        runs = _run_all(crawlers, site, args)
    figures = _report(runs, site, server, args)
    results = _results(args, started, site, server, runs, figures, crawlers)
    print(f"\nresults: {write_results(args.results_dir, results, started)}")
    return 0 if all(r.run.valid for its_runs in runs.values() for r in its_runs) else 1


def _report(
    runs: dict[str, list[BroadRun]], site: BroadSite, server: Server, args: argparse.Namespace
) -> dict[str, str]:
    """Print the table and the figures; return the figures, for the results file."""
    print(
        f"\n{site.hosts:,} hosts x {site.pages} pages of {_kb(site)} KB, delay {args.delay:g} s, "
        f"per host 1, {args.concurrency} in flight; server: {server.kind} {server.detail}; "
        f"load now: {_load()}\n"
    )
    print(_table(runs))
    figures = _figures(runs, site, args.delay)
    floor = politeness_floor(site.hosts, site.pages, args.delay)
    figures["politeness floor"] = (
        f"no crawl of these hosts can take less than {floor:.1f} s from first page to last "
        "(the slowest host's jittered delays)"
    )
    for label, value in figures.items():
        print(f"{label}: {value}")
    return figures


def _crawlers(args: argparse.Namespace) -> list[BroadCrawler]:
    """Return the named crawlers that can run; say why any other is skipped."""
    names = args.only or list(DEFAULT_BROAD)
    unknown = sorted(set(names) - set(BROAD_CRAWLERS))
    if unknown:
        raise SystemExit(
            f"--site broad: unknown crawler {', '.join(unknown)}; choose from "
            f"{', '.join(BROAD_CRAWLERS)}"
        )
    fw = _fw(args)
    makers: dict[str, Callable[[], BroadCrawler | str]] = {
        "fw-1host": lambda: BroadCrawler("fw-1host", True, fw, _fw_version()),
        "fw-1host-serial": lambda: BroadCrawler(
            "fw-1host-serial", True, _fw(args, serial=True), _fw_version()
        ),
        "fw-1host-idle": lambda: BroadCrawler("fw-1host-idle", True, _idle(fw), _fw_version()),
        "fw-unpaced": lambda: BroadCrawler(
            "fw-unpaced", False, _fw(args, unpaced=True), _fw_version()
        ),
        "fw": lambda: BroadCrawler("fw", False, fw, _fw_version()),
        "fw-redis-x2-1host": lambda: BroadCrawler(
            "fw-redis-x2-1host", True, _workers(fw, 2), _fw_version() + ", Redis, 2 workers"
        ),
        "fw-redis-x2": lambda: BroadCrawler(
            "fw-redis-x2", False, _workers(fw, 2), _fw_version() + ", Redis, 2 workers"
        ),
        "scrapy-1host": lambda: _scrapy("scrapy-1host", True, args),
        "scrapy": lambda: _scrapy("scrapy", False, args),
    }
    found = []
    for name in BROAD_CRAWLERS:
        if name in names:
            made = makers[name]()
            if isinstance(made, str):
                print(f"skipping {name}: {made}")
            else:
                found.append(made)
    return found


def _fw(args: argparse.Namespace, *, serial: bool = False, unpaced: bool = False) -> Command:
    """Return how to start fw on either copy of the site; ``serial``: one request at a
    time; ``unpaced``: the broad crawl with no delay."""
    concurrency = 1 if serial else args.concurrency

    def command(site: BroadSite, out: Path, single: bool) -> list[str]:
        settings = [f'start_urls=["{site.start_url(single)}"]']
        if single:  # nothing to be polite to: as fast as the machine goes
            settings += ["delay=0", f"concurrency.per_domain={concurrency}"]
        else:
            settings += [f"delay={0 if unpaced else args.delay:g}"]
        settings += [f"concurrency.total={concurrency}"]
        return [
            *fw_command(),
            "--log-level",
            "warning",
            "run",
            str(HERE / "broad" / "fw.yaml"),
            *(arg for setting in settings for arg in ("-s", setting)),
            "-o",
            str(out),
        ]

    return command


def _workers(fw: Command, count: int) -> Command:
    """Wrap an fw command in ``workers.py``: ``count`` workers on a throw-away Redis."""

    def command(site: BroadSite, out: Path, single: bool) -> list[str]:
        worker = fw(site, out, single)[:-2]  # workers.py gives each worker its own -o
        return [sys.executable, str(HERE / "workers.py"), str(count), str(out), "--", *worker]

    return command


def _idle(fw: Command) -> Command:
    """Wrap an fw command in ``idle.py``: stopped from outside part of the time.

    Throttling is off: a reply in flight across a stop looks slow, and the throttler
    would pace the host, which is the work this crawl must leave out.
    """

    def command(site: BroadSite, out: Path, single: bool) -> list[str]:
        stops = [str(_IDLE_RUN_S), str(_IDLE_STOP_S)]
        crawl = [*fw(site, out, single), "-s", "throttle=false"]
        return [sys.executable, str(HERE / "idle.py"), *stops, "--", *crawl]

    return command


def _scrapy(name: str, single: bool, args: argparse.Namespace) -> BroadCrawler | str:
    found, skipped = find_crawlers(["scrapy"], args.scrapy_bin, None)
    if not found:
        return skipped["scrapy"]

    def command(site: BroadSite, out: Path, single: bool) -> list[str]:
        settings = [f"CONCURRENT_REQUESTS={args.concurrency}"]
        if single:
            settings += ["DOWNLOAD_DELAY=0", f"CONCURRENT_REQUESTS_PER_DOMAIN={args.concurrency}"]
        else:
            settings += [f"DOWNLOAD_DELAY={args.delay:g}"]
        return [
            str(args.scrapy_bin or HERE / ".venvs" / "scrapy" / "bin" / "scrapy"),
            "runspider",
            str(HERE / "broad" / "scrapy_spider.py"),
            "-a",
            f"start_url={site.start_url(single)}",
            "-O",
            f"{out}:jsonlines",
            *(arg for setting in settings for arg in ("-s", setting)),
        ]

    return BroadCrawler(name, single, command, found[0].version)


def _fw_version() -> str:
    found, _ = find_crawlers(["fw"], None, None)
    return found[0].version


def raise_file_limit(hosts: int) -> int:
    """Let the crawlers keep a connection to every host: raise the open-files limit.

    A crawler may hold a keep-alive connection per host (fw's aiohttp pool and Scrapy's
    both do), so 10,000 hosts need more than the usual 1,024 files. The soft limit goes up
    to the hard one, and as root the hard one too; children inherit both.
    """
    wanted = max(65_536, 2 * hosts + 4096)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in ((wanted, max(hard, wanted)), (min(wanted, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
            return limit[0]
        except (ValueError, OSError):
            continue
    return soft


def _run_all(
    crawlers: Sequence[BroadCrawler], site: BroadSite, args: argparse.Namespace
) -> dict[str, list[BroadRun]]:
    runs: dict[str, list[BroadRun]] = {c.name: [] for c in crawlers}
    for number in range(1, args.runs + 1):
        for crawler in crawlers:
            print(f"{crawler.name} run {number}/{args.runs} (load {_load()}) ...", flush=True)
            done = _run_one(crawler, site, args)
            runs[crawler.name].append(done)
            print("  " + _summary(done), flush=True)
    return runs


def _run_one(crawler: BroadCrawler, site: BroadSite, args: argparse.Namespace) -> BroadRun:
    """Crawl once in a scratch directory, read the items' times, clean up."""
    workdir = Path(tempfile.mkdtemp(prefix=f"fw-bench-broad-{crawler.name}-"))
    try:
        output = workdir / "items.jsonl"
        run = run_measured(
            crawler.name,
            crawler.command(site, output, crawler.single),
            cwd=workdir,
            output=output,
            expected=site.total_pages,
            timeout=args.timeout,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            reference=site.urls(crawler.single),
        )
        return BroadRun(run, timeline(read_times(output)))
    finally:
        if args.keep_output:
            print(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _summary(done: BroadRun) -> str:
    run, pace = done.run, done.pace
    text = (
        f"{run.items:,} items in {run.wall_s:.1f} s ({run.pages_per_s:,.0f} pages/s), "
        f"{run.cpu_ms_per_page:.2f} CPU ms/page, {run.peak_rss_mb:.0f} MB"
    )
    if pace is not None:
        text += (
            f"; all {pace.hosts:,} hosts known at {pace.all_known_s:.1f} s, first done at "
            f"{pace.first_done_s:.1f} s, {pace.sustained_rate:,.0f} pages/s in between"
        )
    if not run.valid:
        text += f" — INVALID (exit {run.returncode}{', timed out' if run.timed_out else ''})"
        text += (f"; pages {run.mismatch}" if run.mismatch else "") + f":\n{run.log_tail}"
    return text


_COLUMNS = (
    "crawler",
    "pages/s",
    "crawling pages/s",
    "sustained pages/s",
    "CPU ms/page",
    "peak RSS MB",
    "wall s",
    "hosts known at s",
    "window s",
    "valid",
)


def _table(runs: dict[str, list[BroadRun]]) -> str:
    """One row per run: the whole crawl, then its pace (see ``timeline.py``)."""
    rows = [list(_COLUMNS)]
    for name, its_runs in runs.items():
        for done in its_runs:
            run, pace = done.run, done.pace
            rows.append(
                [
                    name,
                    f"{run.pages_per_s:,.0f}",
                    f"{pace.crawl_rate:,.0f}" if pace else "-",
                    f"{pace.sustained_rate:,.0f}"
                    if pace and pace.hosts > 1 and _has_window(done)
                    else "-",
                    f"{run.cpu_ms_per_page:.2f}",
                    f"{run.peak_rss_mb:.0f}",
                    f"{run.wall_s:.1f}",
                    f"{pace.all_known_s:.1f}" if pace and pace.hosts > 1 else "-",
                    f"{pace.window_s:.1f}" if pace and pace.hosts > 1 else "-",
                    ("yes" if run.valid else "INVALID") + (" (timed out)" if run.timed_out else ""),
                ]
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i in (0, len(_COLUMNS) - 1) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )


def _figures(runs: dict[str, list[BroadRun]], site: BroadSite, delay: float) -> dict[str, str]:
    """The issue's figures for each broad crawl against its one-host crawl."""
    politeness = site.hosts / delay if delay else float("inf")
    figures = {"politeness-bound ideal (hosts / delay)": f"{politeness:,.0f} pages/s"}
    for broad, single in (
        ("fw", "fw-1host"),
        ("fw-redis-x2", "fw-redis-x2-1host"),
        ("scrapy", "scrapy-1host"),
    ):
        many, one = _typical(runs.get(broad)), _typical(runs.get(single))
        if many is None or many.pace is None:
            continue
        if not _has_window(many):  # a few pages over a moment make no rate
            figures[f"{broad}: sustained rate"] = (
                f"not measured: every host was known and none done for only "
                f"{many.pace.window_s:.1f} s (fewer pages per host, a shorter window)"
            )
        if one is None or one.pace is None:
            continue
        cpu_bound = one.pace.crawl_rate
        figures[f"{broad}: CPU-bound ideal ({single} crawling)"] = f"{cpu_bound:,.0f} pages/s"
        if _has_window(many):
            bound = "politeness" if politeness <= cpu_bound else "CPU"
            share = many.pace.sustained_rate / min(politeness, cpu_bound)
            figures[f"{broad}: sustained / lower ideal ({bound}-bound)"] = f"{share:.0%}" + (
                f" (target >= {_TARGET_SHARE:.0%})" if broad == "fw" else ""
            )
        figures[f"{broad}: CPU per page / {single}'s"] = _cpu_ratio(runs, broad, single) + (
            f" (target <= {_TARGET_CPU:g}x)" if broad == "fw" else ""
        )
        per_host = (many.run.peak_rss_mb - one.run.peak_rss_mb) * 1024 / site.hosts
        figures[f"{broad}: memory per known host"] = (
            f"{per_host:.1f} KB ((peak RSS - {single}'s) / hosts)"
        )
    fw, serial = _typical(runs.get("fw")), _typical(runs.get("fw-1host-serial"))
    if fw and serial and serial.pace:
        figures["fw: CPU per page / fw-1host-serial's"] = (
            f"{_cpu_ratio(runs, 'fw', 'fw-1host-serial')} (one host, one request at a "
            f"time: {serial.pace.crawl_rate:,.0f} pages/s)"
        )
    if _typical(runs.get("fw-1host-idle")) and _typical(runs.get("fw-1host")):
        idle = _IDLE_STOP_S / (_IDLE_RUN_S + _IDLE_STOP_S)
        figures["fw-1host-idle: CPU per page / fw-1host's (what idle time costs)"] = (
            f"{_cpu_ratio(runs, 'fw-1host-idle', 'fw-1host')} (the same crawl, stopped "
            f"{_IDLE_STOP_S:g} s after every {_IDLE_RUN_S:g} s: {idle:.0%} of the time)"
        )
    figures |= _unpaced(runs)
    fw, scrapy = _typical(runs.get("fw")), _typical(runs.get("scrapy"))
    if fw and scrapy and fw.pace and scrapy.pace and _has_window(fw) and _has_window(scrapy):
        figures["fw / scrapy, sustained pages/s"] = (
            f"{fw.pace.sustained_rate / scrapy.pace.sustained_rate:.1f}x"
        )
        figures["fw / scrapy, wall"] = f"{fw.run.wall_s / scrapy.run.wall_s:.2f}x"
    return figures


def _unpaced(runs: dict[str, list[BroadRun]]) -> dict[str, str]:
    """Split the broad crawl's CPU per page over one host's into hosts and pace.

    ``fw-unpaced`` and ``fw-1host`` both run flat out and differ only in their hosts;
    ``fw`` and ``fw-unpaced`` crawl the same hosts and differ only in their pace.
    """
    unpaced = _typical(runs.get("fw-unpaced"))
    if unpaced is None or unpaced.pace is None:
        return {}
    figures = {"fw-unpaced: crawling": f"{unpaced.pace.crawl_rate:,.0f} pages/s"}
    if _typical(runs.get("fw-1host")) is not None:
        figures["fw-unpaced: CPU per page / fw-1host's (what the hosts cost)"] = _cpu_ratio(
            runs, "fw-unpaced", "fw-1host"
        )
    if _typical(runs.get("fw")) is not None:
        figures["fw: CPU per page / fw-unpaced's (what the pace costs)"] = _cpu_ratio(
            runs, "fw", "fw-unpaced"
        )
    return figures


def _has_window(done: BroadRun) -> bool:
    """Tell whether the run's sustained rate was measured over a window long enough."""
    return done.pace is not None and done.pace.window_s >= _SHORT_WINDOW_S


def _typical(runs: list[BroadRun] | None) -> BroadRun | None:
    """Return the valid run of median CPU per page (the lower one of an even count): with
    ``--runs`` above 1, the run a crawler's figures come from."""
    valid = sorted((done for done in runs or () if done.run.valid), key=_cpu_ms)
    return valid[(len(valid) - 1) // 2] if valid else None


def _cpu_ratio(runs: dict[str, list[BroadRun]], many: str, one: str) -> str:
    """Return ``many``'s CPU per page over ``one``'s as the median of each round's own ratio.

    A round runs every crawler once, minutes apart at most; on a VM whose speed drifts
    over a longer time, a ratio of two medians could pair a fast run with a slow one.
    """
    pairs = zip(runs.get(many) or (), runs.get(one) or (), strict=False)
    ratios = [_cpu_ms(a) / _cpu_ms(b) for a, b in pairs if a.run.valid and b.run.valid]
    if len(ratios) < 2:
        return f"{ratios[0]:.2f}x" if ratios else "no round with two valid runs"
    listed = ", ".join(f"{ratio:.2f}" for ratio in ratios)
    return f"{statistics.median(ratios):.2f}x (median of {len(ratios)} rounds: {listed})"


def _cpu_ms(done: BroadRun) -> float:
    return done.run.cpu_ms_per_page


def _kb(site: BroadSite) -> int:
    return (site.broad_root / address(0) / "0.html").stat().st_size // 1024


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _results(
    args: argparse.Namespace,
    started: datetime,
    site: BroadSite,
    server: Server,
    runs: dict[str, list[BroadRun]],
    figures: dict[str, str],
    crawlers: Sequence[BroadCrawler],
) -> dict[str, Any]:
    return {
        "started": started.isoformat(timespec="seconds"),
        "benchmark": "broad",
        "arguments": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items()
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_after": os.getloadavg(),
        },
        "site": {"root": str(site.root), "hosts": site.hosts, "pages": site.pages},
        "server": {"kind": server.kind, "detail": server.detail},
        "crawlers": {
            crawler.name: {
                "version": crawler.version,
                "single_host": crawler.single,
                "runs": [
                    done.run.to_json() | {"timeline": done.pace.to_json() if done.pace else None}
                    for done in runs[crawler.name]
                ],
            }
            for crawler in crawlers
        },
        "figures": figures,
    }
