"""Open what a crawl needs, in order: its frontier, its exports, its fetcher.

Each goes on the crawl's exit stack, so that whatever opened is closed however the crawl
ends; a part that cannot open or close aborts the crawl with a one-line reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path

from framework.config.project import Project
from framework.crawl.pipeline import ItemPipeline
from framework.crawl.settle import Committer
from framework.crawl.stats import Stats
from framework.errors import CrawlAborted
from framework.exporters import Exporter
from framework.fetch.downloader import DEFAULT_HEADERS, Downloader, DownloadSettings, Fetcher
from framework.fetch.recording import Recorder, Replayer
from framework.frontier import Frontier, Saved
from framework.hooks.components import Components
from framework.middleware import Handler, chain

__all__ = ["downloader", "open_exports", "open_fetcher", "open_frontier", "user_agent"]

log = logging.getLogger("fw")


async def open_frontier(frontier: Frontier, stack: AsyncExitStack, name: str) -> Saved:
    """Open the frontier and say so if it continues a saved crawl."""
    saved = await frontier.open()
    stack.push_async_callback(frontier.close)
    if saved.resumed and not saved.finished:
        counts = frontier.counts()
        log.info(
            "%s: continuing the saved crawl: %d requests settled, %d queued, %d to retry",
            name,
            saved.settled,
            counts.pending,
            counts.delayed,
        )
    return saved


def open_exports(
    stack: AsyncExitStack,
    exporters: Sequence[Exporter],
    items: ItemPipeline,
    commits: Committer,
    saved: Saved,
) -> None:
    """Open the exporters; a resumed crawl adds to its exports, cut back to the last ack."""
    for exporter in exporters:
        exporter.append = exporter.append or saved.resumed
        try:
            exporter.open()
        except Exception as exc:
            raise CrawlAborted(
                f"exporter {exporter.format} cannot open {exporter.path}: {_reason(exc)}"
            ) from exc
        stack.callback(_close_exporter, exporter)
    try:
        items.rewind(saved.checkpoints)
        mark = commits.start()
    except Exception as exc:
        raise CrawlAborted(f"cannot resume the exports: {_reason(exc)}") from exc
    unsure = [key for key, value in mark.items() if value is None]
    if unsure and saved.resumed:
        log.warning(
            "%s cannot be rewound: after a crash it may repeat the items of pages "
            "that were not acknowledged",
            ", ".join(unsure),
        )


async def open_fetcher(
    stack: AsyncExitStack,
    fetcher: Fetcher,
    components: Components,
    *,
    record: Path | None,
    replay: Path | None,
) -> Handler:
    """Open the fetcher (or the recording that stands in for it) behind the middlewares."""
    if replay is not None:
        fetcher = Replayer(replay, components.parsers)
    elif record is not None:
        fetcher = Recorder(fetcher, record)
    fetcher = await stack.enter_async_context(fetcher)
    return chain(components.middlewares, fetcher.fetch)


def downloader(project: Project, components: Components, stats: Stats) -> Downloader:
    """Build the aiohttp downloader the project's settings ask for."""
    return Downloader(
        DownloadSettings(
            project.concurrency.total,
            project.timeout,
            project.max_response_size,
            project.headers,
            project.cookies,
        ),
        components.parsers,
        stats,
    )


def user_agent(project: Project) -> str:
    """Return the User-Agent the crawl sends, which robots.txt rules are matched against."""
    for name, value in project.headers.items():
        if name.lower() == "user-agent":
            return value
    return DEFAULT_HEADERS["User-Agent"]


def _close_exporter(exporter: Exporter) -> None:
    try:
        exporter.close()
    except Exception as exc:
        raise CrawlAborted(
            f"exporter {exporter.format} ({exporter.path}) failed to close: {_reason(exc)}"
        ) from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"
