"""Pick the frontier backend a project's ``frontier:`` key names: to crawl with, or to read."""

from __future__ import annotations

from pathlib import Path

from framework.config.project import Project
from framework.errors import UsageError
from framework.fetch.politeness import Politeness
from framework.frontier import Frontier, Owner, Status
from framework.frontier.memory import MemoryFrontier

__all__ = ["check_frontier", "make_frontier", "read_status", "shown"]


def check_frontier(project: Project) -> None:
    """Refuse a ``redis://`` frontier whose fw options (``?lease=``, ``?patience=``,
    ``?prefix=``) are wrong, as ``fw check`` must, without connecting to it."""
    url = project.frontier
    if url == "memory" or url.startswith("sqlite:///"):
        return
    from framework.frontier import redis

    try:
        redis.where(url, project.name)
    except UsageError as exc:
        message = str(exc).removeprefix("frontier: ")
        raise project.error_source.error(("frontier",), message) from None


def make_frontier(
    project: Project,
    politeness: Politeness | None = None,
    *,
    fresh: bool = False,
    renew: bool = False,
) -> Frontier:
    """Build (not yet open) the project's frontier; ``fresh`` discards saved state, and
    ``renew`` starts a new round of a finished crawl (see ``frontier``)."""
    politeness = politeness or Politeness.of(project)
    url = project.frontier
    where = project.error_source.where(("frontier",))
    owner = Owner(project.name, project.spider, where, project.allowed_domains)
    if url.startswith("sqlite:///"):
        from framework.frontier.sqlite import SqliteFrontier

        return SqliteFrontier(
            Path(url.removeprefix("sqlite:///")), politeness, fresh=fresh, renew=renew, owner=owner
        )
    if url != "memory":
        from framework.frontier.redis import RedisFrontier  # redis-py only when used

        frontier: Frontier = RedisFrontier(
            url, politeness, name=project.name, fresh=fresh, owner=owner, renew=renew
        )
        return frontier
    return MemoryFrontier(politeness)


async def read_status(project: Project) -> Status:
    """Read the state of the project's crawl without joining it (``fw status``)."""
    url = project.frontier
    if url.startswith("sqlite:///"):
        from framework.frontier import sqlite

        owner = Owner(project.name, project.spider, project.error_source.where(("frontier",)))
        return sqlite.read_status(Path(url.removeprefix("sqlite:///")), owner)
    if url != "memory":
        from framework.frontier import redis

        place = redis.where(url, project.name)
        return await redis.read_status(place.url, place.prefix, lease=place.lease)
    raise UsageError(
        f"{project.file}: frontier: memory keeps no state outside its `fw run`; "
        "set frontier: sqlite:///… or redis://… to follow a crawl"
    )


def shown(url: str) -> str:
    """Return a ``frontier:`` value for people to read, its credentials masked."""
    if url == "memory" or url.startswith("sqlite:///"):
        return url
    from framework.frontier import redis

    return redis.shown(url)
