"""Pick the frontier backend a project's ``frontier:`` key names."""

from __future__ import annotations

from pathlib import Path

from framework.config.project import Project
from framework.fetch.politeness import Politeness
from framework.frontier import Frontier
from framework.frontier.memory import MemoryFrontier

__all__ = ["make_frontier"]


def make_frontier(
    project: Project, politeness: Politeness | None = None, *, fresh: bool = False
) -> Frontier:
    """Build (not yet open) the project's frontier; ``fresh`` discards saved state."""
    politeness = politeness or Politeness.of(project)
    url = project.frontier
    if url.startswith("sqlite:///"):
        from framework.frontier.sqlite import SqliteFrontier

        return SqliteFrontier(Path(url.removeprefix("sqlite:///")), politeness, fresh=fresh)
    if url != "memory":
        from framework.frontier.redis import RedisFrontier  # redis-py only when used

        frontier: Frontier = RedisFrontier(url, politeness, name=project.name, fresh=fresh)
        return frontier
    return MemoryFrontier(politeness)
