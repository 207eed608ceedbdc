"""`mcp-tasks bench`: figures measured in one run, each beside its reference and the ratio."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .registry import Registry
from .stores import SqliteStore
from .stores import sqlite_raw


@dataclass
class Figure:
    """One row of the bench table."""

    name: str
    value: float
    unit: str
    reference: str
    reference_value: float | None
    better: str = "higher"  # or "lower"

    @property
    def ratio(self) -> float | None:
        if not self.reference_value or not self.value:
            return None
        return self.value / self.reference_value


async def populate_ready(reg: Registry, count: int, batch: int = 500) -> None:
    """`count` ready tasks with mixed priorities."""
    for start in range(0, count, batch):
        n = min(batch, count - start)
        await reg.create_tasks([{"title": f"task {start + i}", "priority": 1 + (start + i) % 9} for i in range(n)])


async def populate_blocked_outranking(reg: Registry, total: int, batch: int = 500) -> None:
    """Half the tasks blocked (priority 10, waiting on a task that never finishes), half ready (1-9)."""
    gate = (await reg.create_tasks([{"title": "never finishes", "priority": 1}])).ids[0]
    half = total // 2
    for start in range(0, half, batch):
        n = min(batch, half - start)
        await reg.create_tasks([{"title": f"blocked {start + i}", "priority": 10, "depends_on": [gate]} for i in range(n)])
    await populate_ready(reg, total - half - 1, batch)


async def claims_per_second(workdir: Path, count: int, synchronous: str = "FULL") -> Figure:
    """Claims/s through the registry API vs the same SQL in a raw sqlite3 loop, same sync mode."""
    reg_db, raw_db = workdir / "claims-registry.db", workdir / "claims-raw.db"
    for db in (reg_db, raw_db):
        async with Registry(SqliteStore(db, synchronous="NORMAL"), agent="bench") as reg:
            await populate_ready(reg, count)
    async with Registry(SqliteStore(reg_db, synchronous=synchronous), agent="bench") as reg:
        t0 = time.perf_counter()
        claimed = 0
        while claimed < count and await reg.claim() is not None:
            claimed += 1
        registry_rate = claimed / (time.perf_counter() - t0)
    conn = sqlite_raw.connect(str(raw_db), synchronous)
    try:
        t0 = time.perf_counter()
        raw_claimed = sqlite_raw.claim_loop(conn, count)
        raw_rate = raw_claimed / (time.perf_counter() - t0)
    finally:
        conn.close()
    return Figure(f"claims/s, registry API, 1 process ({synchronous})", registry_rate, "claims/s",
                  "raw sqlite3 loop, same SQL", raw_rate)


async def list_available_latency(workdir: Path, total: int, repeat: int = 200) -> Figure:
    """Median store-level list_available(limit 50) with every blocked task outranking every ready one."""
    db = workdir / f"list-{total}.db"
    async with Registry(SqliteStore(db, synchronous="NORMAL"), agent="bench") as reg:
        await populate_blocked_outranking(reg, total)
    async with SqliteStore(db) as store:
        now = time.time()
        samples = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            rows = await store.read(lambda tx: tx.list_ready(now, None, None, None, 50))
            samples.append(time.perf_counter() - t0)
            assert len(rows) == 50
    return Figure(f"list_available(50) at {total:,} tasks, store, median", statistics.median(samples) * 1000, "ms",
                  "", None, better="lower")


def render(figures: list[Figure]) -> str:
    """The figures as an aligned text table."""
    rows = []
    for f in figures:
        ref = "-" if f.reference_value is None else f"{f.reference_value:,.3f}"
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}x"
        rows.append([f.name, f"{f.value:,.3f} {f.unit}", f.reference or "-", ref, ratio])
    headers = ["measure", "value", "reference", "reference value", "ratio"]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


async def run(quick: bool = False) -> list[Figure]:
    """Every benchmark, small with `quick`."""
    with tempfile.TemporaryDirectory(prefix="mcp-tasks-bench-") as tmp:
        work = Path(tmp)
        figures = [await claims_per_second(work, 300 if quick else 3000)]
        for total in ([1_000] if quick else [1_000, 10_000, 100_000]):
            figures.append(await list_available_latency(work, total, repeat=50 if quick else 200))
    return figures


if __name__ == "__main__":
    print(render(asyncio.run(run())))
