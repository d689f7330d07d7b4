"""The crawlers compared, and how to start each one against a site as a child process.

Every crawler does the same crawl of a site at the same concurrency, and writes its items
to a file run.py counts. On the shop: one item per page (url, sku, title, price, desc),
``ul.related a`` followed. On the Python docs: one item per page (url, title, h1, link
count), every ``a[href]`` followed on the same host. ``SCRIPTS`` says which file each
crawler runs for each site.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = [
    "CRAWLER_NAMES",
    "DEFAULT_CRAWLERS",
    "SCRIPTS",
    "Crawler",
    "Job",
    "find_crawlers",
    "fw_command",
]

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
#: In the order they run; the floor first, as everything is compared with it.
CRAWLER_NAMES = (
    "floor",
    "fw",
    "fw-apart-x2",
    "fw-sqlite",
    "fw-redis",
    "fw-redis-x2",
    "fw-cache-cold",
    "fw-cache-warm",
    "scrapy",
    "crawlee",
)
#: What runs without ``--only``: fw's persistent frontiers are compared on request.
DEFAULT_CRAWLERS = ("floor", "fw", "scrapy", "crawlee")
#: Site -> crawler -> the script it runs (for fw: the project file). Each takes the
#: server's base URL and knows where its site's crawl starts.
SCRIPTS = {
    "shop": {
        "floor": HERE / "limit_aiohttp.py",
        "fw": HERE / "shop.yaml",
        "scrapy": HERE / "scrapy_spider.py",
        "crawlee": HERE / "crawlee_crawler.py",
    },
    "pydocs": {
        "floor": HERE / "pydocs" / "floor.py",
        "fw": HERE / "pydocs" / "fw.yaml",
        "scrapy": HERE / "pydocs" / "scrapy_spider.py",
        "crawlee": HERE / "pydocs" / "crawlee_crawler.py",
    },
}


@dataclass(frozen=True)
class Job:
    """One crawl to run: the site, where it starts, the concurrency, the scratch directory."""

    site: str  # a key of SCRIPTS
    base: str
    start_url: str  # the page every other is reachable from
    concurrency: int
    workdir: Path

    def script(self, crawler: str) -> str:
        """Return the file ``crawler`` runs for this job's site."""
        return str(SCRIPTS[self.site][crawler])


@dataclass(frozen=True)
class Crawler:
    """A crawler that can run: its command for a job, where it writes, its version."""

    name: str
    output: str  # the export's file name in the job's workdir; .json means a JSON array
    command: Callable[[Job, Path], list[str]]
    version: str
    copies: int = 1  # how many times it crawls the whole site (fw-apart-x2: twice)
    #: Run in the job's workdir before the measured command, unmeasured (fills a cache).
    prepare: Callable[[Job], list[str]] | None = None


def find_crawlers(
    names: list[str], scrapy_bin: Path | None, crawlee_python: Path | None
) -> tuple[list[Crawler], dict[str, str]]:
    """Return the named crawlers that are installed, and why each other one was skipped."""
    scrapy_bin = scrapy_bin or VENVS / "scrapy" / "bin" / "scrapy"
    crawlee_python = crawlee_python or VENVS / "crawlee" / "bin" / "python"
    makers: dict[str, Callable[[], Crawler | str]] = {
        "floor": _floor,
        "fw": _fw,
        "fw-apart-x2": _fw_apart,
        "fw-sqlite": _fw_sqlite,
        "fw-redis": lambda: _fw_redis(1),
        "fw-redis-x2": lambda: _fw_redis(2),
        "fw-cache-cold": lambda: _fw_cache(warm=False),
        "fw-cache-warm": lambda: _fw_cache(warm=True),
        "scrapy": lambda: _scrapy(scrapy_bin),
        "crawlee": lambda: _crawlee(crawlee_python),
    }
    found, skipped = [], {}
    for name in CRAWLER_NAMES:
        if name in names:
            made = makers[name]()
            if isinstance(made, Crawler):
                found.append(made)
            else:
                skipped[name] = made
    return found, skipped


def _floor() -> Crawler:
    def command(job: Job, out: Path) -> list[str]:
        return [
            sys.executable,
            job.script("floor"),
            job.base,
            str(out),
            str(job.concurrency),
        ]

    return Crawler(
        "floor",
        "items.jsonl",
        command,
        f"aiohttp {_version('aiohttp')}, parsel {_version('parsel')}",
    )


def _fw() -> Crawler:
    def command(job: Job, out: Path) -> list[str]:
        return [*_fw_run(job), "-o", str(out), "--stats", str(job.workdir / "fw-stats.json")]

    return Crawler("fw", "items.jsonl", command, f"fw {_version('fwcrawl')}")


def _fw_apart() -> Crawler:
    """Two fw processes side by side, each crawling the whole site on its own.

    Each has its own memory frontier: what two processes that share nothing get out of
    this machine, the ceiling for two workers that share one crawl (``fw-redis-x2``).
    """

    def command(job: Job, out: Path) -> list[str]:
        return [
            sys.executable,
            str(HERE / "workers.py"),
            "2",
            str(out),
            "--apart",
            "--",
            *_fw_run(job),
        ]

    return Crawler(
        "fw-apart-x2",
        "items.jsonl",
        command,
        f"fw {_version('fwcrawl')}, 2 separate crawls",
        copies=2,
    )


def _fw_sqlite() -> Crawler:
    def command(job: Job, out: Path) -> list[str]:
        return [
            *_fw_run(job),
            "-s",
            f"frontier=sqlite:///{job.workdir / 'crawl.db'}",
            "-o",
            str(out),
        ]

    return Crawler(
        "fw-sqlite", "items.jsonl", command, f"fw {_version('fwcrawl')}, SQLite frontier"
    )


def _fw_redis(workers: int) -> Crawler:
    """``workers`` fw processes sharing a Redis frontier (``workers.py`` starts Redis)."""

    def command(job: Job, out: Path) -> list[str]:
        # Per-host limits hold across workers: give the one host room for all of them, so
        # that the comparison is of workers, not of a politeness cap.
        return [
            sys.executable,
            str(HERE / "workers.py"),
            str(workers),
            str(out),
            "--",
            *_fw_run(job),
            "-s",
            f"concurrency.per_domain={job.concurrency * 2}",
        ]

    name = "fw-redis" if workers == 1 else f"fw-redis-x{workers}"
    return Crawler(
        name,
        "items.jsonl",
        command,
        f"fw {_version('fwcrawl')}, Redis frontier, {workers} worker(s)",
    )


def _fw_cache(*, warm: bool) -> Crawler:
    """fw with the development cache (``--cache``): cold, it crawls the network and stores
    every page; warm, it re-runs the crawl from a cache an unmeasured cold run filled."""

    def command(job: Job, out: Path) -> list[str]:
        return [*_fw_run(job), "--cache", str(job.workdir / "cache"), "-o", str(out)]

    def prepare(job: Job) -> list[str]:
        return command(job, job.workdir / "cold.jsonl")

    name, what = ("fw-cache-warm", "warm") if warm else ("fw-cache-cold", "cold")
    return Crawler(
        name,
        "items.jsonl",
        command,
        f"fw {_version('fwcrawl')}, {what} --cache",
        prepare=prepare if warm else None,
    )


def _fw_run(job: Job) -> list[str]:
    """The ``fw run`` command line every fw variant shares."""
    concurrency = job.concurrency
    return [
        *fw_command(),
        "--log-level",
        "warning",
        "run",
        job.script("fw"),
        "-s",
        f'start_urls=["{job.start_url}"]',
        "-s",
        f"concurrency.total={concurrency}",
        "-s",
        f"concurrency.per_domain={concurrency}",
    ]


def fw_command() -> list[str]:
    """Run ``fw`` as users do, through its console script, when it is installed."""
    script = Path(sys.executable).with_name("fw")
    return [str(script)] if script.exists() else [sys.executable, "-m", "framework"]


def _scrapy(scrapy_bin: Path) -> Crawler | str:
    if not scrapy_bin.exists():
        return f"{scrapy_bin} not found (run benchmarks/setup_peers.sh, or --scrapy-bin)"

    def command(job: Job, out: Path) -> list[str]:
        concurrency = job.concurrency
        return [
            str(scrapy_bin),
            "runspider",
            job.script("scrapy"),
            "-a",
            f"base={job.base}",
            "-O",
            f"{out}:jsonlines",
            "-s",
            f"CONCURRENT_REQUESTS={concurrency}",
            "-s",
            f"CONCURRENT_REQUESTS_PER_DOMAIN={concurrency}",
        ]

    return Crawler("scrapy", "items.jsonl", command, _output_of([str(scrapy_bin), "version"]))


def _crawlee(python: Path) -> Crawler | str:
    if not python.exists():
        return f"{python} not found (run benchmarks/setup_peers.sh, or --crawlee-python)"

    def command(job: Job, out: Path) -> list[str]:
        return [
            str(python),
            job.script("crawlee"),
            job.base,
            str(out),
            str(job.concurrency),
        ]

    found = _output_of([str(python), "-c", "import crawlee; print(crawlee.__version__)"])
    return Crawler("crawlee", "items.json", command, f"crawlee {found}")


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


def _output_of(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    text = done.stdout.strip() or done.stderr.strip()
    return text.splitlines()[-1] if text else "?"
