"""The aggregates' rows of `mcp-tasks bench`: what metrics://summary and tasks://board (`stats` reads both)
and a /metrics scrape cost to read, at three sizes of database (10k, 100k and 1M events in the full
run, with a tenth as many tasks; --quick: a hundredth of that), each against the 20 ms they are
held to. They read the maintained aggregates, so the three figures of a row should be about equal.

The largest database is the bench's large one (bench.large_db); the two smaller ones are built
here the same way. Each figure is the median of SAMPLES reads after WARM_UP, on a registry opened
on the database as a server opens it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import reports
from ..registry import Registry
from ..server.metrics import ServerMetrics
from ..stores import SqliteStore
from . import bench_data as D

if TYPE_CHECKING:
    from .bench import Bench, Figure

LIMIT_MS = 20.0
WARM_UP = 3
SAMPLES = 21
SHARES = (100, 10, 1)  # the three databases: this fraction of the large one's tasks and events

ROWS = ("metrics://summary read", "tasks://board read", "/metrics registry-wide read")


def sizes(events: int) -> list[int]:
    """The event counts of the three databases when the large one holds `events`."""
    return [events // share for share in SHARES]


async def _median_ms(read: Callable[[], Awaitable[Any]]) -> float:
    times = []
    for i in range(WARM_UP + SAMPLES):
        t0 = time.perf_counter()
        await read()
        if i >= WARM_UP:
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def measure(db: Path) -> list[float]:
    """Median milliseconds of each of ROWS' reads on `db`."""
    async with Registry(SqliteStore(db), agent="bench") as reg:
        scraper = ServerMetrics()
        return [await _median_ms(lambda: reports.metrics(reg)), await _median_ms(lambda: reports.board(reg)),
                await _median_ms(lambda: scraper.refresh(reg, None))]


async def run(b: Bench, large: Path, label: Callable[[int], str]) -> list[Figure]:
    """The rows at each size (only on the copy of the user's database with --db); `label(n)`
    names a size of `n` events."""
    from .bench import Figure

    if b.user_db is not None:
        return [Figure(f"{row}, --db copy", ms, "ms", "limit", LIMIT_MS) for row, ms in zip(ROWS, await measure(large))]
    figures: dict[str, list[float]] = {row: [] for row in ROWS}
    counts = sizes(b.sizes.rss_events)
    for share, events in zip(SHARES, counts):
        db = large
        if share != 1:
            db = b.work / f"aggregates-{events}.db"
            b.say(f"aggregates: {b.sizes.rss_tasks // share:,} tasks and {events:,} events")
            await D.blocked_outranking_db(db, b.sizes.rss_tasks // share)
            D.add_history(db, events)
        for row, ms in zip(ROWS, await measure(db)):
            figures[row].append(ms)
    for row, values in figures.items():
        b.notes.append(f"{row}: {values[-1] / values[0]:.2f}x the time at {label(counts[-1])} events as at "
                       f"{label(counts[0])} (flat: about 1x)")
    return [Figure(f"{row}, {label(n)} events", ms, "ms", "limit", LIMIT_MS)
            for row, values in figures.items() for n, ms in zip(counts, values)]


def row_names(events: int, label: Callable[[int], str], user_db: bool) -> list[str]:
    """The rows a run prints when the large database holds `events` events."""
    if user_db:
        return [f"{row}, --db copy" for row in ROWS]
    return [f"{row}, {label(n)} events" for row in ROWS for n in sizes(events)]
