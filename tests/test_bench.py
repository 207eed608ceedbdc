"""`mcp-tasks bench`: every row is printed (never the timings), its databases are valid, a user's
database given with --db is never changed, and --postgres leaves no schema behind."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcp_tasks import Registry
from mcp_tasks.harness import bench, bench_data, http_bench, postgres_bench, sqlite_bench
from mcp_tasks.stores import SqliteStore
from mcp_tasks.stores.postgres import PostgresStore

from .databases import pg_base

ROOT = Path(__file__).parent.parent
NUMBER = r"\d[\d,]*(\.\d+)?(e[+-]?\d+)?"


def run_bench(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_tasks.harness.bench", "--quick", *args],
        check=False, capture_output=True, text=True, timeout=600, env=bench_data.child_env(), cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def assert_rows(out: str, names: list[str]) -> None:
    lines = out.splitlines()
    assert lines[0].startswith("machine: ") and "cores" in lines[0] and "SQLite" in lines[0]
    assert "synchronous=FULL" in lines[1]
    for name in names:
        row = [ln for ln in lines if ln.startswith(name)]
        assert len(row) == 1, f"row {name!r} missing or repeated in:\n{out}"
        cells = re.split(r"\s{2,}", row[0].strip())
        assert len(cells) == 5, row[0]
        _, value, _, reference_value, ratio = cells
        if name == "server RSS" and not Path("/proc").is_dir():
            assert value.startswith("n/a"), row[0]  # memory is read from /proc (Linux)
            continue
        assert re.match(NUMBER, value) and re.match(NUMBER, reference_value), row[0]
        assert re.fullmatch(NUMBER + "x", ratio), row[0]


def bench_schemas(url: str) -> set[str]:
    """Schemas a bench run may make in the database at `url` (any run's, not only this test's)."""
    with postgres_bench.connect(url, autocommit=True) as conn:
        return {r["name"] for r in conn.execute(postgres_bench.bench_queries()["bench_schemas"],
                                                {"prefix": "mcp_tasks_bench_"})}


def test_quick_run_prints_every_row_with_its_reference_and_ratio():
    """One quick run as CI runs the bench: every SQLite row, each with value, reference and ratio."""
    out = run_bench()
    assert_rows(out, bench.row_names(quick=True))
    assert "listed different tasks" not in out and "claims of" not in out, out
    for side in ("tokens", "no tokens", "no-op"):
        assert re.search(rf"^note: HTTP, {side}: {NUMBER} calls/s, p50 .*; CPU per call: ", out, re.M), side


def test_quick_postgres_only_run_prints_its_rows_and_leaves_no_schema_behind():
    """--postgres-only: PostgreSQL's rows (claims, list_available, cross-server latency, export and
    import), none of SQLite's; the schemas it made are gone afterwards, and the schema the URL names
    is never created."""
    base = pg_base()
    out = run_bench("--postgres", postgres_bench.with_schema(base, "mcp_tasks_bench_named"), "--postgres-only")
    assert_rows(out, bench.row_names(quick=True, postgres=True, sqlite=False))
    assert not [name for name in bench.row_names(quick=True) if name in out], out
    assert out.splitlines()[2].startswith("postgres: PostgreSQL "), out
    assert "listed different tasks" not in out and "claims of" not in out and "never published" not in out, out
    prefix = re.search(r"^note: PostgreSQL figures were measured in schemas (mcp_tasks_bench_[0-9a-f]+_)\*, all dropped",
                       out, re.MULTILINE)
    assert prefix is not None, out
    assert not {s for s in bench_schemas(base) if s.startswith(prefix.group(1)) or s == "mcp_tasks_bench_named"}


def test_postgres_only_without_postgres_says_so_in_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_tasks.harness.bench", "--quick", "--postgres-only"],
        check=False, capture_output=True, text=True, timeout=120, env=bench_data.child_env(), cwd=ROOT,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "error: --postgres-only needs --postgres URL\n"


def test_http_percentiles_are_nearest_rank_in_milliseconds():
    latencies = [i / 1000 for i in range(100, 0, -1)]  # 100 down to 1 ms
    assert http_bench.percentile_ms(latencies, 50) == pytest.approx(50)
    assert http_bench.percentile_ms(latencies, 99) == pytest.approx(99)
    assert http_bench.percentile_ms([0.004], 99) == pytest.approx(4)
    assert math.isnan(http_bench.percentile_ms([], 99))


def test_postgres_option_with_an_unreachable_server_says_so_in_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_tasks.harness.bench", "--quick", "--postgres", "postgresql://nobody@127.0.0.1:1/x"],
        check=False, capture_output=True, text=True, timeout=120, env=bench_data.child_env(), cwd=ROOT,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: cannot connect to postgresql://nobody@"), \
        proc.stderr


def test_db_before_the_command_is_the_bench_db_too(tmp_path):
    missing = tmp_path / "missing.db"
    for argv in (["--db", str(missing), "bench", "--quick"], ["bench", "--quick", "--db", str(missing)]):
        proc = subprocess.run([sys.executable, "-m", "mcp_tasks", *argv], check=False, capture_output=True, text=True,
                              timeout=120, env=bench_data.child_env(), cwd=ROOT)
        assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"error: no database file at {missing}\n"), argv


async def test_postgres_raw_loops_claim_each_ready_task_once_and_the_naive_scan_agrees():
    schemas = postgres_bench.Schemas(pg_base())
    try:
        async with Registry(PostgresStore(schemas.url_of("t")), agent="check") as reg:
            await bench_data.populate_blocked_outranking(reg, 61)
            listed = [s.id for s in (await reg.list_available(limit=50)).items]
            now = time.time()
            naive = await reg.store.read(lambda tx: postgres_bench.naive_list_ready(tx.conn, now, 50))
            assert naive == listed and len(listed) == 31  # 30 ready, and the task the blocked ones wait on
        await postgres_bench.fresh_registry_schema(schemas.url_of("copy"), schemas.name("t"))
        assert postgres_bench.counts(schemas.url_of("copy")) == postgres_bench.counts(schemas.url_of("t"))
        with postgres_bench.connect(schemas.url_of("copy")) as conn:
            assert postgres_bench.claim_loop(conn, 20, counter=True) == 20
            assert postgres_bench.claim_loop(conn, 20) == 11
            head = conn.execute("SELECT seq FROM bench_head").fetchall()
            ids = [r["id"] for r in conn.execute("SELECT id FROM bench_events ORDER BY id").fetchall()]
        assert [h["seq"] for h in head] == [20] and ids == list(range(1, 32))
        async with Registry(PostgresStore(schemas.url_of("copy")), agent="check") as copy:
            assert (await copy.claim()) is None
            assert (await copy.counts())["ASSIGNED"] == 31
    finally:
        schemas.drop_all()
    assert schemas.left() == []


def test_db_option_measures_a_copy_and_never_changes_the_users_file(tmp_path):
    db = tmp_path / "mine.db"
    asyncio.run(bench_data.add_ready(db, 60))
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    siblings = sorted(p.name for p in tmp_path.iterdir())
    out = run_bench("--db", str(db))
    assert_rows(out, bench.row_names(quick=True, db=str(db)))
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == siblings


async def test_bench_databases_pass_verify_and_the_naive_scan_agrees(tmp_path):
    db = tmp_path / "history.db"
    await bench_data.blocked_outranking_db(db, 600)
    tasks, events = bench_data.add_history(db, 5_000)
    assert (tasks, events) == (600, 5_000)
    async with Registry(SqliteStore(db), agent="check") as reg:
        assert await reg.verify() == []
        listed = [s.id for s in (await reg.list_available(limit=50)).items]
        now = time.time()
        naive = await reg.store.read(lambda tx: sqlite_bench.naive_list_ready(tx.conn, now, 50))
        assert naive == listed and len(listed) > 0


async def test_raw_claim_loop_writes_what_the_registry_would(tmp_path):
    db = tmp_path / "raw.db"
    await bench_data.add_ready(db, 30)
    conn = sqlite_bench.connect(str(db))
    try:
        assert sqlite_bench.claim_loop(conn, 100) == 30
    finally:
        conn.close()
    async with Registry(SqliteStore(db), agent="check") as reg:
        assert await reg.verify() == []
        assert (await reg.claim()) is None


def test_claim_processes_report_every_claim(tmp_path):
    db = tmp_path / "claims.db"
    asyncio.run(bench_data.add_ready(db, 2 * (10 + bench_data.WARM_UP)))
    for kind in ("registry", "raw"):
        copy = asyncio.run(bench_data.copy_db(db, tmp_path / f"{kind}.db"))
        rate, claims = bench_data.claims_rate(kind, copy, 2, 10, "NORMAL")
        assert claims == 20 and rate > 0


async def test_copying_a_live_database_sees_its_committed_tasks(tmp_path):
    db = tmp_path / "live.db"
    async with Registry(SqliteStore(db), agent="writer") as reg:
        await reg.create_tasks([{"title": f"t{i}"} for i in range(5)])
        assert (tmp_path / "live.db-wal").exists()
        await SqliteStore(db).copy_to(tmp_path / "copy.db")
    async with Registry(SqliteStore(tmp_path / "copy.db"), agent="reader") as copy:
        assert sum((await copy.counts()).values()) == 5
