"""The verify rows of `mcp-tasks bench`: `mcp-tasks verify` on the large database (100,000 tasks
and 1,000,000 events in the full run), whole and `--since` the last 1,000 events.

The whole check runs once (seconds at full size), as `mcp-tasks verify` runs it (its task rows
replayed in one process per core, at most four, from 20,000 tasks), against the 10 s it is held
to; the `--since` check is the median of `samples` runs, against the whole check of the same run.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..registry import Registry
from ..stores import SqliteStore

if TYPE_CHECKING:
    from .bench import Bench, Figure

LIMIT_S = 10.0  # verify of 1M events finishes within this
RECENT = 1_000  # the events `verify --since` covers

ROWS = ("verify, whole database", f"verify --since, last {RECENT:,} events")


async def run(b: Bench, db: Path, size: str) -> list[Figure]:
    """Seconds `Registry.verify` takes on `db`: whole, and since the seq RECENT events back."""
    from .bench import Figure

    samples = 5 if b.sizes.cold_runs < 5 else 15
    async with Registry(SqliteStore(db, read_only=True), agent="bench") as reg:
        t0 = time.perf_counter()
        found = await reg.verify(jobs=None)
        whole = time.perf_counter() - t0
        mark = max(0, await reg.last_seq() - RECENT)
        times = []
        for _ in range(samples):
            t0 = time.perf_counter()
            recent = await reg.verify(since=mark)
            times.append(time.perf_counter() - t0)
    if found or recent:
        raise RuntimeError(f"verify bench: the benchmark database has {len(found) or len(recent)} problems")
    processes = f"in {found.jobs} processes" if found.jobs > 1 else "in one process"
    b.notes.append(f"{ROWS[0]}, {size}: {found.tasks:,} tasks replayed {processes}")
    b.notes.append(f"{ROWS[1]}, {size}: {recent.tasks:,} tasks replayed, median of {samples} runs")
    return [Figure(f"{ROWS[0]}, {size}", whole, "s", "limit", LIMIT_S),
            Figure(f"{ROWS[1]}, {size}", statistics.median(times), "s", "whole verify", whole)]
