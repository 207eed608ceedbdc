"""Databases and worker processes for `mcp-tasks bench` (the measurements are in bench.py).

Tasks are created through the registry (batches of 500, synchronous=NORMAL: population is not
measured); histories of 1M events are appended by the bulk path in sqlite_bench.py, which
writes the rows and events the registry would write.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..registry import Registry
from ..stores import SqliteStore
from . import sqlite_bench

BATCH = 500
GATE_TITLE = "never finishes"  # the task every blocked task of the large databases waits for


async def populate_ready(reg: Registry, count: int, *, priority: int | None = None) -> None:
    """`count` ready tasks, priorities 1-9 mixed (or all `priority`)."""
    for start in range(0, count, BATCH):
        n = min(BATCH, count - start)
        await reg.create_tasks([
            {"title": f"task {start + i}", "priority": priority or 1 + (start + i) % 9,
             "description": "benchmark task", "tags": ["bench"]}
            for i in range(n)
        ])


async def populate_blocked_outranking(reg: Registry, total: int) -> None:
    """Half the tasks blocked (priority 10, waiting on a task that never finishes), half ready (1-9)."""
    gate = (await reg.create_tasks([{"title": GATE_TITLE, "priority": 1}])).ids[0]
    half = total // 2
    for start in range(0, half, BATCH):
        n = min(BATCH, half - start)
        await reg.create_tasks([
            {"title": f"blocked {start + i}", "priority": 10, "depends_on": [gate]} for i in range(n)
        ])
    await populate_ready(reg, total - half - 1)


async def add_ready(db: Path, count: int, *, priority: int | None = None) -> None:
    """Open `db` (creating or migrating it) and add `count` ready tasks."""
    async with Registry(SqliteStore(db, synchronous="NORMAL"), agent="bench") as reg:
        await populate_ready(reg, count, priority=priority)


async def blocked_outranking_db(db: Path, total: int) -> None:
    """A new database of `total` tasks where every blocked task outranks every ready one."""
    async with Registry(SqliteStore(db, synchronous="NORMAL"), agent="bench") as reg:
        await populate_blocked_outranking(reg, total)


def add_history(db: Path, events_total: int) -> tuple[int, int]:
    """Append finished task histories until `db` holds `events_total` events; returns (tasks, events)."""
    conn = sqlite_bench.connect(str(db), "NORMAL")
    try:
        _, events = sqlite_bench.counts(conn)
        if events < events_total:
            sqlite_bench.append_history(conn, events_total - events)
        return sqlite_bench.counts(conn)
    finally:
        conn.close()


def db_counts(db: Path) -> tuple[int, int]:
    """(tasks, events) in `db` (a benchmark database or a copy: the connection may switch it to WAL)."""
    conn = sqlite_bench.connect(str(db), "NORMAL")
    try:
        return sqlite_bench.counts(conn)
    finally:
        conn.close()


async def copy_db(src: Path | str, dst: Path) -> Path:
    """A consistent copy of `src` at `dst` (the source is never written)."""
    await SqliteStore(src).copy_to(dst)
    return dst


# ---------------------------------------------------------------- claiming processes
# Workers are `python -m mcp_tasks.harness.bench_data KIND DB SYNC LIMIT AGENT`: they open their
# connection, print "ready", wait for "go" on stdin, claim, and print one JSON line
# {"claims", "started", "stopped"} with time.monotonic() stamps (one system-wide clock).
# Each first makes WARM_UP claims that are not counted (statement cache, page cache).

WARM_UP = 20


@dataclass
class ClaimRun:
    """What one claiming process did: claims, and when it started and stopped (time.monotonic)."""

    claims: int
    started: float
    stopped: float


def _wait_for_go() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("bench worker: expected 'go' on stdin")


async def _registry_claims(db: str, synchronous: str, limit: int, agent: str) -> ClaimRun:
    async with Registry(SqliteStore(db, synchronous=synchronous), agent=agent) as reg:
        for _ in range(WARM_UP):
            await reg.claim()
        _wait_for_go()  # opened, migrated and warmed up before the clock starts
        t0 = time.monotonic()
        n = 0
        while n < limit and await reg.claim() is not None:
            n += 1
        return ClaimRun(n, t0, time.monotonic())


def _raw_claims(db: str, synchronous: str, limit: int, agent: str) -> ClaimRun:
    conn = sqlite_bench.connect(db, synchronous)
    try:
        sqlite_bench.claim_loop(conn, WARM_UP, agent)
        _wait_for_go()
        t0 = time.monotonic()
        n = sqlite_bench.claim_loop(conn, limit, agent)
        return ClaimRun(n, t0, time.monotonic())
    finally:
        conn.close()


def worker(argv: list[str]) -> None:
    """One claiming process: `registry` or `raw`, then DB SYNC LIMIT AGENT."""
    if len(argv) != 5:
        raise SystemExit("usage: python -m mcp_tasks.harness.bench_data registry|raw DB SYNC LIMIT AGENT (started by the bench)")
    kind, db, synchronous, limit, agent = argv
    if kind == "registry":
        run = asyncio.run(_registry_claims(db, synchronous, int(limit), agent))
    elif kind == "raw":
        run = _raw_claims(db, synchronous, int(limit), agent)
    else:
        raise SystemExit(f"bench worker: unknown kind {kind!r}")
    print(json.dumps(asdict(run)), flush=True)


def claims_rate(kind: str, db: Path, processes: int, limit: int, synchronous: str) -> tuple[float, int]:
    """Aggregate claims/s of `processes` OS processes claiming from `db`; returns (rate, claims).

    Each process opens its connection first; all start together, and the rate is the total
    claims over the span from the first start to the last stop. `limit` caps each process's
    counted claims; each also makes WARM_UP uncounted claims first, so `db` needs
    `processes * (limit + WARM_UP)` ready tasks.
    """
    return run_claimers(kind, [
        ["mcp_tasks.harness.bench_data", kind, str(db), synchronous, str(limit), f"bench-{kind}-{i}"]
        for i in range(processes)
    ])


def run_claimers(kind: str, commands: list[list[str]]) -> tuple[float, int]:
    """Start one `python -m COMMAND...` claiming process per command, let them open and warm up,
    start them together, and return (aggregate claims/s, claims) over the span from the first start
    to the last stop."""
    procs = [
        subprocess.Popen([sys.executable, "-m", *command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env=child_env())
        for command in commands
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"bench worker {kind} did not start (exit code {p.wait(timeout=60)})")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        runs = []
        for p in procs:
            out, _ = p.communicate(timeout=900)
            if p.returncode != 0:
                raise RuntimeError(f"bench worker {kind} failed with exit code {p.returncode}")
            runs.append(ClaimRun(**json.loads(out.strip().splitlines()[-1])))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    total = sum(r.claims for r in runs)
    span = max(r.stopped for r in runs) - min(r.started for r in runs)
    return (total / span if span > 0 else 0.0), total


def pythonpath() -> dict[str, str]:
    """PYTHONPATH for child Pythons, so this package imports in them even when it is not installed."""
    root = str(Path(__file__).resolve().parents[2])
    return {"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}


def child_env() -> dict[str, str]:
    """The environment for child Pythons: ours, plus `pythonpath()`."""
    return {**os.environ, **pythonpath()}


if __name__ == "__main__":
    worker(sys.argv[1:])
