"""Turn measured runs into the printed table, the ratios, and the JSON results file."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from measure import Run, median_of

__all__ = ["PAIRED", "RATIOS", "ratios", "table", "write_results"]

#: name -> (numerator crawler, denominator crawler, figure). Above 1 is better for fw in
#: pages/s, worse in CPU and memory.
RATIOS: dict[str, tuple[str, str, str]] = {
    "fw/floor pages/s": ("fw", "floor", "pages_per_s"),
    "fw/scrapy pages/s": ("fw", "scrapy", "pages_per_s"),
    "fw/crawlee pages/s": ("fw", "crawlee", "pages_per_s"),
    "fw/floor CPU per page": ("fw", "floor", "cpu_ms_per_page"),
    "fw/floor peak RSS": ("fw", "floor", "peak_rss_mb"),
    "fw-apart-x2/fw pages/s": ("fw-apart-x2", "fw", "pages_per_s"),
    "fw-sqlite/fw pages/s": ("fw-sqlite", "fw", "pages_per_s"),
    "fw-redis/fw pages/s": ("fw-redis", "fw", "pages_per_s"),
    "fw-redis-x2/fw-redis pages/s": ("fw-redis-x2", "fw-redis", "pages_per_s"),
    "fw-cache-cold/fw pages/s": ("fw-cache-cold", "fw", "pages_per_s"),
    "fw-cache-warm/fw pages/s": ("fw-cache-warm", "fw", "pages_per_s"),
}

#: Ratios also given as the median of each round's own ratio. Crawlers run round-robin,
#: so one round's two runs are a minute apart, where two medians may come from runs many
#: minutes apart: on a machine whose speed drifts (shared hosts), the ratio of two
#: medians can pair a fast run with a slow one.
PAIRED = (
    "fw-apart-x2/fw pages/s",
    "fw-redis-x2/fw-redis pages/s",
    "fw-cache-warm/fw pages/s",
)

_COLUMNS = (
    "crawler",
    "pages/s",
    "CPU ms/page",
    "peak RSS MB",
    "items",
    "wall s",
    "valid",
    "version",
)


def table(runs: Mapping[str, Sequence[Run]], versions: Mapping[str, str]) -> str:
    """Format one row per crawler: the medians of its valid runs."""
    rows = [list(_COLUMNS)]
    for name, its_runs in runs.items():
        rows.append(_row(name, its_runs, versions.get(name, "")))
    numeric = range(1, 6)
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _row(name: str, runs: Sequence[Run], version: str) -> list[str]:
    valid = f"{sum(r.valid for r in runs)}/{len(runs)}"
    median = median_of(runs)
    if median is None:  # show what the last failed run did, so the failure is visible
        last = runs[-1]
        return [
            name,
            "-",
            "-",
            f"{last.peak_rss_mb:.0f}",
            f"{last.items:,}",
            f"{last.wall_s:.1f}",
            f"{valid} INVALID",
            version,
        ]
    return [
        name,
        f"{median['pages_per_s']:,.0f}",
        f"{median['cpu_ms_per_page']:.2f}",
        f"{median['peak_rss_mb']:.0f}",
        f"{median['items']:,.0f}",
        f"{median['wall_s']:.1f}",
        valid,
        version,
    ]


def ratios(runs: Mapping[str, Sequence[Run]]) -> dict[str, float]:
    """Return each ratio whose two crawlers both have valid runs."""
    medians = {name: median_of(its_runs) for name, its_runs in runs.items()}
    found = {}
    for label, (top, bottom, figure) in RATIOS.items():
        a, b = medians.get(top), medians.get(bottom)
        if a is not None and b is not None and b[figure]:
            found[label] = a[figure] / b[figure]
            if label in PAIRED and (paired := _paired(runs[top], runs[bottom], figure)):
                found[f"{label}, median of {len(paired)} rounds"] = statistics.median(paired)
    return found


def _paired(tops: Sequence[Run], bottoms: Sequence[Run], figure: str) -> list[float]:
    """Return the ratio of the two crawlers' runs in each round where both were valid."""
    return [
        getattr(top, figure) / getattr(bottom, figure)
        for top, bottom in zip(tops, bottoms, strict=True)
        if top.valid and bottom.valid and getattr(bottom, figure)
    ]


def write_results(directory: Path, results: dict[str, Any], started: datetime) -> Path:
    """Write ``results`` as ``directory/<timestamp>.json`` and return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{started:%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
