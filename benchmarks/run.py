"""Crawl one site with fw and its peers, side by side, and compare them.

1. The site: ``shop`` (the default) generates a static site of N ~16 KB pages (reused
   if one of the same shape is there); ``pydocs`` is Debian's python3.11-doc HTML, whose
   reference set of pages is found from the files on disk (``docsite.py``).
2. Serve it on loopback: nginx if installed, else fastserver.py; check it answers, and
   measure how fast it serves, so the crawlers, not the server, are what is measured.
3. Run each crawler as a child process, one after another (round-robin with --runs):
   wall time, items exported, CPU time and peak RSS from os.wait4.
4. Print a table of the medians and fw's ratios, and write everything to
   benchmarks/results/<timestamp>.json.

``--site broad`` is another benchmark, a crawl of thousands of hosts: see broad.py.

usage: python benchmarks/run.py [--site shop|pydocs|broad] [--pages 20000]
                                [--concurrency 32] [--runs 1]
                                [--only floor,fw,scrapy,crawlee] [--server auto]
Peers (Scrapy, Crawlee) run only when installed: bash benchmarks/setup_peers.sh.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Set
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from broad import BROAD_CRAWLERS, DEFAULT_BROAD, run_broad
from crawlers import CRAWLER_NAMES, DEFAULT_CRAWLERS, Crawler, Job, find_crawlers
from docsite import DEFAULT_DOCS, START_PATH, load_docs, require_docs
from measure import Run, median_of, run_measured
from report import ratios, table, write_results
from servers import Server, measure_server, running_server
from shopsite import KiB, ensure_site

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: Below this many times the fastest crawler's rate, the server may be what limits a crawl.
_HEADROOM_WARNING = 2.0
#: Each site's concurrency when --concurrency is not given.
_CONCURRENCY = {"shop": 32, "pydocs": 16, "broad": 256}
#: What the issue asks of fw on the docs, printed beside the ratios measured.
_TARGETS = {"pydocs": {"fw/floor pages/s": 1.5, "fw/scrapy pages/s": 8.0}}
#: fw spiders, compiled ahead like fw itself (see _compile_fw).
_FW_SPIDERS = ("shop.py", "pydocs/fw_spider.py", "broad/fw_spider.py")


@dataclass(frozen=True)
class Target:
    """The site the crawlers crawl, as run.py needs it."""

    site: str  # shop or pydocs
    root: Path  # the folder served
    start_path: str  # where every crawl starts
    pages: int  # the items a valid crawl exports
    description: str  # for the table's heading
    check: tuple[str, ...]  # pages the server must answer byte for byte
    paths: list[str]  # what the server's rate is measured over
    reference: frozenset[str] | None = None  # pydocs: the paths a crawl must find
    facts: dict[str, Any] = field(default_factory=dict)  # for the results file

    def reference_urls(self, base: str) -> Set[str] | None:
        """Return the URLs a valid crawl exports, served at ``base`` (None: any SKUs)."""
        return None if self.reference is None else {base + path for path in self.reference}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 0 if every run of every crawler was valid."""
    args = _parser().parse_args(argv)
    args.concurrency = args.concurrency or _CONCURRENCY[args.site]
    _compile_fw()
    if args.site == "broad":
        return run_broad(args)
    unknown = sorted(set(args.only or ()) - set(CRAWLER_NAMES))
    if unknown:
        raise SystemExit(
            f"unknown crawler {', '.join(unknown)}; choose from {', '.join(CRAWLER_NAMES)}"
        )
    crawlers, skipped = find_crawlers(
        args.only or list(DEFAULT_CRAWLERS), args.scrapy_bin, args.crawlee_python
    )
    started = datetime.now()
    for name, why in skipped.items():
        print(f"skipping {name}: {why}")
    target = _target(args)
    with running_server(target.root, target.check, args.server) as server:
        rate = _server_rate(server, target, args)
        runs = _run_all(crawlers, server.base, target, args)
    versions = {c.name: c.version for c in crawlers}
    print(
        f"\n{target.description}, concurrency {args.concurrency}, {args.runs} run(s) each, "
        f"median of the valid runs; server: {server.kind} {server.detail}\n"
    )
    print(table(runs, versions))
    found = ratios(runs)
    targets = _TARGETS.get(args.site, {})
    for label, value in found.items():
        wanted = f" (target >= {targets[label]:g})" if label in targets else ""
        print(f"{label}: {value:.2f}{wanted}")
    _warn_about_headroom(rate, runs)
    results = _results(args, started, target, server, rate, runs, versions, skipped, found)
    print(f"\nresults: {write_results(args.results_dir, results, started)}")
    return 0 if all(run.valid for its_runs in runs.values() for run in its_runs) else 1


def _compile_fw() -> None:
    """Compile fw's sources to bytecode, as pip does for the packages it installs.

    fw is installed editable, so nothing compiled it; where PYTHONDONTWRITEBYTECODE is set
    every fw process would compile its modules again as it starts (~0.1 s each), which the
    peers, installed from wheels, never do.
    """
    for folder in ("framework", "plugins"):
        compileall.compile_dir(REPO / folder, quiet=1)
    for spider in _FW_SPIDERS:
        compileall.compile_file(HERE / spider, quiet=1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Crawl a site with fw, the aiohttp floor, Scrapy and Crawlee."
    )
    parser.add_argument(
        "--site",
        choices=["shop", "pydocs", "broad"],
        default="shop",
        help="shop: a generated site of --pages pages (default); pydocs: the Python 3.11 "
        "docs from Debian's python3.11-doc; broad: thousands of hosts (see broad.py)",
    )
    parser.add_argument("--pages", type=int, default=20_000, help="shop: site size (default 20000)")
    parser.add_argument("--page-kb", type=int, default=16, help="shop: page size (default 16)")
    parser.add_argument(
        "--concurrency",
        type=int,
        help="requests in flight, for every crawler (default: shop 32, pydocs 16, broad 256)",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="runs per crawler, round-robin; the median is reported"
    )
    parser.add_argument(
        "--only",
        type=_names,
        help=f"comma-separated subset of {','.join(CRAWLER_NAMES)} "
        f"(default: {','.join(DEFAULT_CRAWLERS)}); for --site broad, of "
        f"{','.join(BROAD_CRAWLERS)} (default: {','.join(DEFAULT_BROAD)})",
    )
    broad = parser.add_argument_group("--site broad")
    broad.add_argument("--hosts", type=int, default=2000, help="hosts (default 2000)")
    broad.add_argument(
        "--pages-per-host", type=int, default=20, help="pages of each host (default 20)"
    )
    broad.add_argument(
        "--delay",
        type=float,
        default=2.0,
        help="seconds between two requests to one host (default 2)",
    )
    parser.add_argument(
        "--server",
        choices=["auto", "nginx", "python"],
        default="auto",
        help="auto: nginx if installed, else fastserver.py",
    )
    parser.add_argument(
        "--scrapy-bin", type=Path, help="default: benchmarks/.venvs/scrapy/bin/scrapy"
    )
    parser.add_argument(
        "--crawlee-python", type=Path, help="default: benchmarks/.venvs/crawlee/bin/python"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="seconds one crawl may take before it is killed (default 1800)",
    )
    parser.add_argument(
        "--server-seconds",
        type=float,
        default=3.0,
        help="how long to load the server to measure it (0: skip)",
    )
    parser.add_argument(
        "--site-dir",
        type=Path,
        help=f"shop: where to generate it (default benchmarks/site); pydocs: the docs' "
        f"HTML folder (default {DEFAULT_DOCS}); broad: where to generate the hosts' pages "
        "(default benchmarks/site-broad)",
    )
    parser.add_argument("--results-dir", type=Path, default=HERE / "results")
    parser.add_argument(
        "--keep-output", action="store_true", help="keep each run's scratch directory (items, logs)"
    )
    return parser


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(CRAWLER_NAMES) - set(BROAD_CRAWLERS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown crawler {', '.join(unknown) or '(none)'}; choose from "
            f"{', '.join(CRAWLER_NAMES)} (broad: {', '.join(BROAD_CRAWLERS)})"
        )
    return names


def _target(args: argparse.Namespace) -> Target:
    """Generate or find the site, and describe it for the rest of the run."""
    if args.site == "pydocs":
        root = args.site_dir or DEFAULT_DOCS
        require_docs(root)
        print(f"site: the pages reachable from {root}{START_PATH} ...", end=" ", flush=True)
        docs = load_docs(root)
        print(f"{docs.pages} pages, {docs.total_bytes / 2**20:.1f} MiB")
        return Target(
            "pydocs",
            root,
            START_PATH,
            docs.pages,
            f"{docs.pages} pages of the Python 3.11 docs ({docs.total_bytes / 2**20:.0f} MiB)",
            (START_PATH, docs.largest()),
            sorted(docs.paths),
            docs.paths,
            {"root": str(root), "pages": docs.pages, "total_bytes": docs.total_bytes},
        )
    root = args.site_dir or HERE / "site"
    print(f"site: {args.pages:,} pages under {root} ...", end=" ", flush=True)
    site = ensure_site(root, args.pages, args.page_kb * KiB)
    print(f"{site.total_bytes / site.pages / KiB:.1f} KB per page")
    return Target(
        "shop",
        site.root,
        "/p/0.html",
        site.pages,
        f"{site.pages:,} pages of {site.page_bytes // KiB} KB",
        ("/p/0.html", f"/p/{site.pages - 1}.html"),
        [f"/p/{i}.html" for i in range(site.pages)],
        facts={**asdict(site), "root": str(site.root)},
    )


def _server_rate(server: Server, target: Target, args: argparse.Namespace) -> dict[str, Any] | None:
    """Measure what the server delivers, over the site's pages in a random order."""
    print(f"server: {server.kind} {server.detail} at {server.base}")
    if args.server_seconds <= 0:
        return None
    paths = list(target.paths)
    random.Random(1).shuffle(paths)
    rate = measure_server(server, paths, seconds=args.server_seconds, connections=args.concurrency)
    per_core = rate.get("requests_per_cpu_s")
    print(
        f"server rate: {rate['requests_per_s']:,.0f} pages/s ({rate['mib_per_s']:,.0f} MiB/s)"
        f" using {rate.get('server_cpu_share', 0):.0%} of a core"
        + (f", ~{per_core:,.0f} pages/s per core" if per_core else "")
        + f", {rate['errors']} errors"
    )
    if rate["errors"]:
        raise SystemExit(
            "the server failed requests under load: fix it before measuring crawlers against it"
        )
    return rate


def _run_all(
    crawlers: list[Crawler], base: str, target: Target, args: argparse.Namespace
) -> dict[str, list[Run]]:
    """Run every crawler ``args.runs`` times, round-robin, so drift affects all alike."""
    runs: dict[str, list[Run]] = {c.name: [] for c in crawlers}
    for number in range(1, args.runs + 1):
        for crawler in crawlers:
            run = _run_one(crawler, base, target, args)
            runs[crawler.name].append(run)
            print(
                f"{crawler.name} run {number}/{args.runs}: {run.pages_per_s:,.0f} pages/s, "
                f"{run.cpu_ms_per_page:.2f} CPU ms/page, {run.peak_rss_mb:.0f} MB, "
                f"{run.items:,} items in {run.wall_s:.1f}s"
                + (
                    ""
                    if run.valid
                    else f" — INVALID (exit {run.returncode}"
                    f"{', timed out' if run.timed_out else ''})"
                    + (f"; pages {run.mismatch}" if run.mismatch else "")
                    + f":\n{run.log_tail}"
                ),
                flush=True,
            )
    return runs


def _run_one(crawler: Crawler, base: str, target: Target, args: argparse.Namespace) -> Run:
    """Crawl once in a scratch directory outside the repository, then clean it up."""
    workdir = Path(tempfile.mkdtemp(prefix=f"fw-bench-{crawler.name}-"))
    try:
        job = Job(target.site, base, base + target.start_path, args.concurrency, workdir)
        output = workdir / crawler.output
        if crawler.prepare is not None:  # unmeasured: fills the warm cache
            subprocess.run(
                crawler.prepare(job),
                cwd=workdir,
                env=_child_env(),
                check=True,
                capture_output=True,
                timeout=args.timeout,
            )
        return run_measured(
            crawler.name,
            crawler.command(job, output),
            cwd=workdir,
            output=output,
            expected=target.pages,
            timeout=args.timeout,
            env=_child_env(),
            copies=crawler.copies,
            reference=target.reference_urls(base),
        )
    finally:
        if args.keep_output:
            print(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _child_env() -> dict[str, str]:
    """The environment for crawlers: ours, minus what would make one import another's code."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def _warn_about_headroom(rate: dict[str, Any] | None, runs: dict[str, list[Run]]) -> None:
    fastest = max((m["pages_per_s"] for r in runs.values() if (m := median_of(r))), default=0)
    if rate is None or not fastest:
        return
    headroom = rate["requests_per_s"] / fastest
    print(f"server headroom: it served {headroom:.1f}x the fastest crawler's rate")
    if headroom < _HEADROOM_WARNING:
        print("warning: the server may be limiting the fastest crawler", file=sys.stderr)


def _results(
    args: argparse.Namespace,
    started: datetime,
    target: Target,
    server: Server,
    rate: dict[str, Any] | None,
    runs: dict[str, list[Run]],
    versions: dict[str, str],
    skipped: dict[str, str],
    found: dict[str, float],
) -> dict[str, Any]:
    """Gather everything measured, and what it was measured on, for the results file."""
    return {
        "started": started.isoformat(timespec="seconds"),
        "arguments": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items()
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "site": {"kind": target.site, **target.facts},
        "server": {"kind": server.kind, "detail": server.detail, "rate": rate},
        "crawlers": {
            name: {
                "version": versions[name],
                "median": median_of(its_runs),
                "runs": [run.to_json() for run in its_runs],
            }
            for name, its_runs in runs.items()
        },
        "skipped": skipped,
        "ratios": found,
    }


if __name__ == "__main__":
    sys.exit(main())
