"""``fw status``: read a persistent crawl's state and show it as a table or JSON."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from framework.config.project import load_project
from framework.frontier import Status
from framework.frontier.backends import read_status, shown

__all__ = ["show"]


def show(file: Path, overrides: Sequence[str] = (), *, as_json: bool = False) -> str:
    """Return the state of the crawl ``file`` describes, for people or (``as_json``) machines."""
    project = load_project(file, overrides)
    status = asyncio.run(read_status(project))
    where = f"{project.name} ({shown(project.frontier)})"
    if as_json:
        return json.dumps(
            {
                "crawl": project.name,
                "frontier": shown(project.frontier),
                "state": _state(status),
                **dataclasses.asdict(status),
            },
            indent=2,
        )
    return "\n".join(_lines(where, status))


def _state(status: Status) -> str:
    if status.finished:
        return "finished"
    if any(worker.alive for worker in status.workers):
        return "running"
    return "stopped" if status.done + status.failed else "not started"


def _lines(where: str, status: Status) -> list[str]:
    lines = [
        f"{where}: {_state(status)}",
        f"pending {status.pending}  delayed {status.delayed}  leased {status.leased}  "
        f"done {status.done}  failed {status.failed}",
    ]
    if status.hosts:
        table = [["HOST", "PENDING", "LEASED", "DONE", "FAILED"]]
        table += [
            [host, str(h.pending), str(h.leased), str(h.done), str(h.failed)]
            for host, h in status.hosts.items()
        ]
        widths = [max(len(row[i]) for row in table) for i in range(5)]
        lines += [
            "  ".join(
                cell.rjust(w) if i else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in table
        ]
    for worker in status.workers:
        alive = "alive" if worker.alive else "gone"
        lines.append(f"worker {worker.id}: {alive}, last seen {worker.idle:.1f}s ago")
    if not status.workers:
        lines.append("workers: none running")
    return lines
