"""The export and import rows of `mcp-tasks bench`: events per second through `mcp-tasks export`
and `mcp-tasks import` on the large database (100,000 tasks and 1,000,000 events in the full run;
--quick measures a registry of QUICK_TASKS tasks and QUICK_EVENTS events instead, to stay quick),
and with --postgres on a PostgreSQL copy of it (the import into PostgreSQL is measured on the way).

Rates count events (each export also carries one line per task). An export is measured against
the driver reading the event log raw (`bench_read_log`: rows, no JSON, no file); an import against
the export of the same store in the same run (it reads the file twice and writes every row).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..stores import make_store
from ..stores import sql_files
from ..transfer import export_to_file, import_file
from . import sqlite_bench

if TYPE_CHECKING:
    from .bench import Bench, Figure

QUICK_TASKS, QUICK_EVENTS = 300, 3_000  # small: --quick runs in CI and the test suite
ROWS = ("export, SQLite", "import, SQLite")
POSTGRES_ROWS = ("export, PostgreSQL", "import, PostgreSQL")


def row_names(postgres: bool) -> list[str]:
    """The measure column of every transfer row: SQLite's, or with `postgres` PostgreSQL's."""
    return list(POSTGRES_ROWS if postgres else ROWS)


def _raw_read_sqlite(db: Path) -> tuple[int, float]:
    conn = sqlite_bench.connect(str(db), "NORMAL")
    try:
        t0 = time.perf_counter()
        n = sum(1 for _ in conn.execute(sql_files.queries("sqlite", "bench.sql")["bench_read_log"]))
        return n, time.perf_counter() - t0
    finally:
        conn.close()


def _raw_read_postgres(url: str) -> tuple[int, float]:
    from . import postgres_bench as P

    with P.connect(url) as conn:
        t0 = time.perf_counter()
        with conn.cursor(name="bench_read_log") as cur:  # server-side: rows arrive in batches
            cur.execute(P.bench_queries()["bench_read_log"])
            n = sum(1 for _ in cur)
        return n, time.perf_counter() - t0


async def _export(location: str, file: Path) -> tuple[int, float]:
    store = make_store(location, create=False)
    await store.open()
    try:
        t0 = time.perf_counter()
        summary = await export_to_file(store, file)
        return summary.events, time.perf_counter() - t0
    finally:
        await store.close()


async def _import(location: str, file: Path) -> tuple[int, float]:
    store = make_store(location, must_write=True)
    await store.open()
    try:
        t0 = time.perf_counter()
        summary = await import_file(store, file)
        return summary.events, time.perf_counter() - t0
    finally:
        await store.close()


async def run(b: Bench, db: Path, size: str) -> list[Figure]:
    """Export and import rates on the large SQLite database `db` (`size` says what it holds)."""
    import asyncio

    from .bench import Figure

    db, size = await _source(b, db, size)
    file = b.work / "export.jsonl"
    b.say(f"export and import: {size}")
    try:
        events, seconds = await _export(str(db), file)
        raw, raw_seconds = await asyncio.to_thread(_raw_read_sqlite, db)
        exported = events / seconds
        figures = [Figure(f"{ROWS[0]}, {size}", exported, "events/s", "raw read of the event log", raw / raw_seconds)]
        events, seconds = await _import(str(b.work / "imported.db"), file)
        figures.append(Figure(f"{ROWS[1]}, {size}", events / seconds, "events/s", "export, SQLite", exported))
    finally:
        (b.work / "imported.db").unlink(missing_ok=True)
        file.unlink(missing_ok=True)
    return figures


async def run_postgres(b: Bench, db: Path, size: str, postgres: str) -> list[Figure]:
    """Export and import rates on PostgreSQL at `postgres`: the large SQLite database's export
    imported into a schema of the run's own (dropped afterwards), then exported from it."""
    import asyncio

    from .bench import Figure
    from . import postgres_bench as P

    db, size = await _source(b, db, size)
    file = b.work / "export.jsonl"
    await _export(str(db), file)
    schemas = P.Schemas(postgres)
    try:
        url = schemas.url_of("transfer")
        b.say(f"export and import on PostgreSQL: {size}")
        imported, import_seconds = await _import(url, file)
        events, seconds = await _export(url, b.work / "pg-export.jsonl")
        raw, raw_seconds = await asyncio.to_thread(_raw_read_postgres, url)
        exported = events / seconds
        return [
            Figure(f"{POSTGRES_ROWS[0]}, {size}", exported, "events/s", "raw read of the event log", raw / raw_seconds),
            Figure(f"{POSTGRES_ROWS[1]}, {size}", imported / import_seconds, "events/s", "export, PostgreSQL", exported),
        ]
    finally:
        await asyncio.to_thread(schemas.drop_all)
        file.unlink(missing_ok=True)
        (b.work / "pg-export.jsonl").unlink(missing_ok=True)


async def _source(b: Bench, db: Path, size: str) -> tuple[Path, str]:
    """The database the rates are measured on: `db`, or with --quick a small one of its own."""
    from . import bench_data as D
    from .bench import large_size

    if b.sizes.claim_rounds != 1:
        return db, size
    small = b.work / "transfer.db"
    if not small.exists():
        await D.blocked_outranking_db(small, QUICK_TASKS)
        D.add_history(small, QUICK_EVENTS)
    return small, large_size(small)
