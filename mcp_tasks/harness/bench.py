"""`mcp-tasks bench`: figures measured in one run, each beside its reference and the ratio.

Every figure is measured in the same run as its reference, so the ratio holds on a noisy
machine even when the absolute numbers move. Databases live in a temporary folder; `--db`
measures a copy of the user's database (the original is only ever opened read-only).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO, cast

from ..errors import StoreError
from ..registry import Registry
from ..stores import SqliteStore
from ..stores.sqlite_tx import SqliteTx
from . import bench_data as D
from . import sqlite_bench

HELP = ("measure claims/s, list latency, MCP call cost (stdio and HTTP), cold start, memory and board render "
        "time against references")
DESCRIPTION = (
    "Measure mcp-tasks against a reference for every figure, in one run: claims/s through the "
    "registry vs a raw sqlite3 loop running the same SQL (1 and 4 processes); list_available(50) "
    "vs a naive dependency scan; one MCP tool call over stdio and server cold start vs a bare "
    "MCPServer; tool calls/s and p99 latency over Streamable HTTP from 16 concurrent clients, with a "
    "bearer token each (rate limit raised out of reach), vs a bare MCPServer's no-op tool and vs our "
    "server without tokens; server memory (RSS) vs a bare MCPServer; the web board's render time (the "
    "board and two task pages, server time) on the large database vs its 50 ms limit; reads of "
    "metrics://summary, tasks://board and /metrics at 10k, 100k and 1M events vs their 20 ms limit; export "
    "and import events/s on the large database vs a raw read of its event log. Prints one table (ratio = value / "
    "reference value). The full run takes a minute or more (it builds a 100k-task, 1M-event database); "
    "--quick takes seconds. --postgres URL adds the PostgreSQL store's rows: claims/s vs raw psycopg loops "
    "(1 and 16 connections), list_available(50), and cross-server notification latency, measured in new "
    "schemas that are dropped afterwards; --postgres-only leaves SQLite's rows out."
)


@dataclass
class Figure:
    """One row of the bench table."""

    name: str
    value: float | None
    unit: str
    reference: str
    reference_value: float | None

    @property
    def ratio(self) -> float | None:
        """value / reference value (None when either is missing or zero)."""
        if not self.reference_value or not self.value:
            return None
        return self.value / self.reference_value


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does."""

    claims: int  # per process
    list_sizes: tuple[int, ...]
    mcp_cycles: int
    cold_runs: int
    rss_tasks: int
    rss_events: int
    list_budget: float  # seconds of list_available sampling per size
    claim_rounds: int


QUICK = Sizes(claims=300, list_sizes=(1_000,), mcp_cycles=20, cold_runs=2, rss_tasks=5_000, rss_events=50_000,
              list_budget=0.5, claim_rounds=1)
FULL = Sizes(claims=1_000, list_sizes=(1_000, 10_000, 100_000), mcp_cycles=200, cold_runs=5, rss_tasks=100_000,
             rss_events=1_000_000, list_budget=3.0, claim_rounds=5)


@dataclass
class Bench:
    """One run: where databases go, what to measure, and notes for the end of the table."""

    work: Path
    sizes: Sizes
    synchronous: str
    user_db: Path | None = None
    notes: list[str] = field(default_factory=list)
    say: Callable[[str], None] = lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True)

    def server_log(self) -> TextIO:
        """The file that collects the stderr of every server the bench starts (for diagnosis)."""
        return open(self.work / "servers.log", "a", encoding="utf-8")

    async def fresh(self, name: str) -> Path:
        """A path for a new benchmark database: empty, or a copy of the user's database with --db."""
        path = self.work / name
        if self.user_db is not None:
            await D.copy_db(self.work / "base.db", path)
        return path


def row_names(quick: bool, db: str | None = None, postgres: bool = False, sqlite: bool = True) -> list[str]:
    """The measure column of every row a run prints (the test checks each is there); `postgres`:
    with the rows of --postgres; not `sqlite`: without SQLite's (--postgres-only)."""
    # These load the MCP server and client: imported here, not for every CLI command.
    from . import aggregates_bench, board_bench, http_bench, transfer_bench, verify_bench

    sizes = QUICK if quick else FULL
    names: list[str] = []
    if sqlite:
        names += ["claims/s, registry, 1 process", "claims/s, registry, 4 processes"]
        if db is None:
            names += [f"list_available(50), {n:,} tasks" for n in sizes.list_sizes]
        else:
            names.append("list_available(50), --db copy")
        names += ["MCP tool call over stdio", *http_bench.row_names(), "cold start to first tools/list", "server RSS",
                  *board_bench.ROWS, *aggregates_bench.row_names(sizes.rss_events, _short, db is not None),
                  *transfer_bench.row_names(postgres=False), *verify_bench.ROWS]
    if postgres:
        from . import postgres_figures

        names += [*transfer_bench.row_names(postgres=True), *postgres_figures.row_names(quick)]
    return names


# ---------------------------------------------------------------- claims


async def bench_claims(b: Bench) -> list[Figure]:
    """Claims/s through the registry vs the raw sqlite3 loop, same SQL and sync mode, 1 and 4 processes.

    Registry and raw runs alternate for `claim_rounds` rounds, each on a fresh copy of one
    template database; each figure is the median round.
    """
    n = b.sizes.claims
    template = await b.fresh("claims-template.db")
    b.say(f"claims: populating {4 * (n + D.WARM_UP):,} ready tasks")
    await D.add_ready(template, 4 * (n + D.WARM_UP))
    figures = []
    for procs in (1, 4):
        rates: dict[str, list[float]] = {"registry": [], "raw": []}
        plural = "es" if procs > 1 else ""
        for r in range(b.sizes.claim_rounds):
            for kind in ("registry", "raw"):
                db = await D.copy_db(template, b.work / f"claims-{kind}-{procs}-{r}.db")
                b.say(f"claims: {kind}, {procs} process{plural}, round {r + 1} of {b.sizes.claim_rounds}")
                rate, done = D.claims_rate(kind, db, procs, n, b.synchronous)
                rates[kind].append(rate)
                if done < procs * n:
                    b.notes.append(f"{kind} with {procs} process{plural} made {done} claims of {procs * n} planned")
                db.unlink()
        if len(rates["raw"]) > 1:
            spread = " ".join(f"{m / r:.2f}x" for m, r in zip(rates["registry"], rates["raw"]))
            b.notes.append(f"claims/s ratio by round, {procs} process{plural}: {spread}")
        figures.append(Figure(
            f"claims/s, registry, {procs} process{plural}", statistics.median(rates["registry"]), "claims/s",
            f"raw sqlite3 loop{'s' if procs > 1 else ''}, same SQL", statistics.median(rates["raw"])))
    return figures


# ---------------------------------------------------------------- list_available


async def bench_list(b: Bench, total: int | None) -> Figure:
    """Median list_available(limit 50) vs the naive scan (per-task dependency queries), same store."""
    if total is None:
        db, label = await b.fresh("list-db.db"), "--db copy"
    else:
        db, label = b.work / f"list-{total}.db", f"{total:,} tasks"
        b.say(f"list_available: populating {total:,} tasks (blocked ones outrank ready ones)")
        await D.blocked_outranking_db(db, total)
    b.say(f"list_available: measuring at {label}")
    async with Registry(SqliteStore(db, synchronous=b.synchronous), agent="bench") as reg:

        async def ours() -> list[str]:
            return [s.id for s in (await reg.list_available(limit=50)).items]

        async def naive() -> list[str]:
            now = time.time()
            return await reg.store.read(lambda tx: sqlite_bench.naive_list_ready(cast(SqliteTx, tx).conn, now, 50))

        if await ours() != await naive():
            b.notes.append(f"list_available at {label}: the registry and the naive scan listed different tasks")
        mine: list[float] = []
        ref: list[float] = []
        t_end = time.perf_counter() + b.sizes.list_budget
        while len(ref) < 200 and (time.perf_counter() < t_end or len(ref) < 3):
            ref.append(await _timed(naive))
            mine += [await _timed(ours) for _ in range(5)]
    if total is None:
        tasks, _ = D.db_counts(db)
        label = f"--db copy ({tasks:,} tasks)"
    return Figure(f"list_available(50), {label}", statistics.median(mine) * 1000, "ms median",
                  "naive: PENDING in order, deps queried per task", statistics.median(ref) * 1000)


async def _timed(fn: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return time.perf_counter() - t0


async def large_db(b: Bench) -> Path:
    """The large database of the RSS and board rows (built once per run; a copy of --db's)."""
    db = b.work / "rss.db"
    if db.exists():
        return db
    if b.user_db is not None:
        return await b.fresh("rss.db")
    size = b.sizes.rss_tasks
    if (b.work / f"list-{size}.db").exists():
        await D.copy_db(b.work / f"list-{size}.db", db)
    else:
        b.say(f"large database: populating {size:,} tasks")
        await D.blocked_outranking_db(db, size)
    b.say(f"large database: appending task histories up to {b.sizes.rss_events:,} events")
    D.add_history(db, b.sizes.rss_events)
    return db


def large_size(db: Path) -> str:
    """'100k tasks + 1M events': what the large database holds."""
    tasks, events = D.db_counts(db)
    return f"{_short(tasks)} tasks + {_short(events)} events"


def _short(n: int) -> str:
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= size and n % (size // 10) == 0:
            return f"{n / size:g}{suffix}"
    return f"{n:,}"


# ---------------------------------------------------------------- the run


async def run(quick: bool = False, db: str | None = None, synchronous: str = "FULL",
              say: Callable[[str], None] | None = None, postgres: str | None = None,
              sqlite: bool = True) -> tuple[list[Figure], list[str]]:
    """Every benchmark (small with `quick`; on a copy of `db` when given; and the PostgreSQL rows,
    in schemas of their own on the server at `postgres`, when given; SQLite's only with `sqlite`);
    returns (figures, notes)."""
    from . import aggregates_bench, board_bench, http_bench, stdio_bench, transfer_bench, verify_bench

    with tempfile.TemporaryDirectory(prefix="mcp-tasks-bench-") as tmp:
        b = Bench(Path(tmp), QUICK if quick else FULL, synchronous.upper())
        if say is not None:
            b.say = say
        if db is not None:
            b.user_db = Path(db)
            await D.copy_db(b.user_db, b.work / "base.db")
        figures: list[Figure] = []
        if sqlite:
            figures += await bench_claims(b)
            for total in ([None] if db is not None else b.sizes.list_sizes):
                figures.append(await bench_list(b, total))
            figures.append(await stdio_bench.bench_mcp_call(b))
            figures += await http_bench.run(b)
            figures.append(await stdio_bench.bench_cold_start(b))
            figures.append(await stdio_bench.bench_rss(b))
        if sqlite or not quick:
            db_large = await large_db(b)
            size = large_size(db_large)
        else:  # --quick --postgres-only: the transfer rows make a small database of their own
            db_large, size = b.work / "rss.db", ""
        if sqlite:
            b.say("board: render times on the large database")
            figures += await board_bench.run(b, db_large, size)
            figures += await aggregates_bench.run(b, db_large, _short)
            figures += await transfer_bench.run(b, db_large, size)
            figures += await verify_bench.run(b, db_large, size)
        if postgres is not None:
            from . import postgres_figures

            figures += await transfer_bench.run_postgres(b, db_large, size, postgres)
            figures += await postgres_figures.run(b, postgres)
        return figures, b.notes


def _kernel() -> str:
    """The kernel's version numbers only (major.minor.patch), without a build's local suffix."""
    return ".".join(platform.release().split("-")[0].split(".")[:3])


def machine(synchronous: str, quick: bool, db: str | None) -> str:
    """The header line: CPU, cores, OS, Python, SQLite and mcp versions, sync mode, run kind."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith(("model name", "Hardware"))), cpu)
    except OSError:
        pass
    try:
        sdk = metadata.version("mcp")
    except metadata.PackageNotFoundError:
        sdk = "?"
    where = f"copy of {db}" if db else "synthetic databases"
    load = f", load average {os.getloadavg()[0]:.2f} at start" if hasattr(os, "getloadavg") else ""
    return (f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {_kernel()}{load}; "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, mcp {sdk}\n"
            f"run: {'quick' if quick else 'full'}, synchronous={synchronous.upper()}, {where}; "
            "ratio = value / reference value")


def _num(v: float | None) -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def render(figures: list[Figure]) -> str:
    """The figures as an aligned text table."""
    rows = []
    for f in figures:
        ratio = "n/a" if f.ratio is None else f"{f.ratio:.3g}x"
        rows.append([f.name, f"{_num(f.value)} {f.unit}", f.reference or "-", f"{_num(f.reference_value)} {f.unit}",
                     ratio])
    headers = ["measure", "value", "reference", "reference value", "ratio"]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench options: --db, --quick, --sync."""
    parser.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS,  # `mcp-tasks --db X bench` too
                        help="measure your own database: every figure is taken on copies of it in a temporary "
                             "folder (deleted afterwards); the file itself is only read, never changed")
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds (for CI)")
    parser.add_argument("--sync", choices=["full", "normal"], default="full", type=str.lower,
                        help="SQLite synchronous mode for the measured writes, ours and references (default full)")
    parser.add_argument("--postgres", metavar="URL",
                        help="also measure the PostgreSQL store on this server (postgresql://USER@HOST:PORT/DBNAME): "
                             "every figure is taken in new schemas that are dropped afterwards; the schema the URL "
                             "names and all other data are never touched")
    parser.add_argument("--postgres-only", action="store_true",
                        help="with --postgres: only the PostgreSQL rows, none of SQLite's")


async def cmd_bench(args: argparse.Namespace) -> int:
    """Run the bench from parsed arguments and print the header, the table and any notes."""
    db = getattr(args, "db", None)
    if db is not None and not Path(db).is_file():
        print(f"error: no database file at {db}", file=sys.stderr)
        return 2
    postgres = getattr(args, "postgres", None)
    if args.postgres_only and postgres is None:
        print("error: --postgres-only needs --postgres URL", file=sys.stderr)
        return 2
    server = None
    if postgres is not None:
        try:
            from . import postgres_bench
        except ImportError:
            print("error: --postgres needs psycopg and psycopg_pool: pip install 'mcp-tasks[postgres]'", file=sys.stderr)
            return 2
        try:
            server = await asyncio.to_thread(postgres_bench.server_info, postgres)
        except StoreError as exc:
            print(f"error: {exc.problem}", file=sys.stderr)
            return 2
    print(machine(args.sync, args.quick, db), flush=True)
    if server is not None:
        print(f"postgres: PostgreSQL {server['version'].split()[0]} at {server['location']}, "
              f"synchronous_commit={server['sync']}; measured in new schemas, dropped afterwards", flush=True)
    figures, notes = await run(quick=args.quick, db=db, synchronous=args.sync, postgres=postgres,
                               sqlite=not args.postgres_only)
    print(render(figures))
    for note in notes:
        print(f"note: {note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m mcp_tasks.harness.bench [--quick] [--db PATH] [--sync full|normal] [--postgres URL]`."""
    parser = argparse.ArgumentParser(prog="mcp-tasks bench", description=DESCRIPTION)
    add_arguments(parser)
    return asyncio.run(cmd_bench(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
