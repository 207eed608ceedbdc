"""The PostgreSQL rows of `mcp-tasks bench --postgres URL`, each measured beside its reference.

Everything runs in schemas of the run's own (postgres_bench.Schemas), dropped at the end even
when a step fails; the schema the URL names, and every other schema, is never touched.

- claims/s through the registry vs raw psycopg loops running the same pick, compare-and-set and
  event insert with a plain bigserial event id (no sequencer), at 1 connection and at 16 (4 server
  processes, each serving 4 agents at once, as several hosts share one database; the raw loops: 4
  processes of 4 threads, one connection each). The registry is measured twice: with exactly as
  many connections as the raw loops (pools of 1 and 4; its numbering passes wait for a free one),
  and as `mcp-tasks serve` runs it (the default pool of 8, the change follower woken by its own
  writes and by `watch()`, the reaper). And the counter-row design's raw loop, against the same
  reference.
- list_available(50) vs the naive dependency scan, as on SQLite.
- cross-server notification latency: a change through one store, until another process's
  follower (woken by its store's `watch()`) publishes it; vs a bare NOTIFY between the same two
  processes.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from ..registry import Registry
from ..stores.postgres import PostgresStore
from ..stores.postgres_tx import PostgresTx
from . import bench_data as D
from . import postgres_bench as P

if TYPE_CHECKING:
    from .bench import Bench, Figure

PROCESSES, POOL = 4, 4  # the 16-connection layout: server processes x connections each
SERVED_POOL = 8  # PostgresStore's default pool (serve --pool-size)


@dataclass(frozen=True)
class PgSizes:
    """How much work each PostgreSQL measurement does."""

    claims_one: int  # counted claims at 1 connection
    claims_each: int  # counted claims per connection at 16 connections
    rounds: int
    list_sizes: tuple[int, ...]
    list_budget: float  # seconds of list sampling per size
    pings: int  # notification latency samples, each kind


QUICK = PgSizes(claims_one=150, claims_each=25, rounds=1, list_sizes=(1_000,), list_budget=0.5, pings=40)
FULL = PgSizes(claims_one=1_000, claims_each=200, rounds=5, list_sizes=(1_000, 10_000, 100_000), list_budget=3.0,
               pings=400)

CLAIM_ROWS = (
    ("claims/s, PostgreSQL registry, 1 connection", "registry", 1),
    ("claims/s, PostgreSQL registry, 16 connections", "registry", 16),
    ("claims/s, PostgreSQL registry as served, 1 agent", "served", 1),
    ("claims/s, PostgreSQL registry as served, 16 agents", "served", 16),
    ("claims/s, PostgreSQL counter-row loop, 1 connection", "counter", 1),
    ("claims/s, PostgreSQL counter-row loops, 16 connections", "counter", 16),
)
KINDS = ("registry", "served", "raw", "counter")
LATENCY = "cross-server change to follower, PostgreSQL"


def row_names(quick: bool) -> list[str]:
    """The measure column of every PostgreSQL row (the test checks each is there)."""
    sizes = QUICK if quick else FULL
    return ([name for name, _, _ in CLAIM_ROWS]
            + [f"list_available(50), PostgreSQL, {n:,} tasks" for n in sizes.list_sizes]
            + [f"{LATENCY}, p50", f"{LATENCY}, p99"])


async def run(b: Bench, url: str) -> list[Figure]:
    """Every PostgreSQL figure, in schemas of this run that are all dropped at the end."""
    sizes = QUICK if b.sizes.claim_rounds == 1 else FULL
    schemas = P.Schemas(url)
    try:
        figures = await bench_claims(b, schemas, sizes)
        figures += await bench_list(b, schemas, sizes)
        figures += await bench_latency(b, schemas, sizes)
    finally:
        await asyncio.to_thread(schemas.drop_all)
    left = await asyncio.to_thread(schemas.left)
    b.notes.append(f"PostgreSQL figures were measured in schemas {schemas.prefix}*, "
                   + (f"of which {', '.join(left)} could not be dropped" if left else "all dropped"))
    return figures


# ---------------------------------------------------------------- claims


def _layout(connections: int) -> tuple[int, int]:
    return (1, 1) if connections == 1 else (PROCESSES, POOL)


async def bench_claims(b: Bench, schemas: P.Schemas, sizes: PgSizes) -> list[Figure]:
    """Claims/s of the registry and of the counter-row loop vs the raw bigserial loop, at 1 and 16
    connections. The kinds alternate for `rounds` rounds, each on a fresh copy of one template
    schema of ready tasks; each figure is the median round."""
    from .bench import Figure

    limits = {1: sizes.claims_one, 16: sizes.claims_each}
    need = max(procs * conns * (limits[n] + D.WARM_UP) for n in limits for procs, conns in [_layout(n)])
    b.say(f"PostgreSQL claims: populating {need:,} ready tasks")
    async with Registry(PostgresStore(schemas.url_of("template")), agent="bench") as reg:
        await D.populate_ready(reg, need)
    rates: dict[tuple[str, int], list[float]] = {}
    for connections in (1, 16):
        procs, conns = _layout(connections)
        for r in range(sizes.rounds):
            for kind in KINDS:
                label = f"{kind}_{connections}_{r}"
                await P.fresh_registry_schema(schemas.url_of(label), schemas.name("template"))
                b.say(f"PostgreSQL claims: {kind}, {connections} connection(s), round {r + 1} of {sizes.rounds}")
                pool = SERVED_POOL if kind == "served" else conns
                commands = [["mcp_tasks.harness.postgres_bench", kind, schemas.url_of(label), str(limits[connections]),
                             str(conns), f"bench-{kind}-{i}", str(pool)] for i in range(procs)]
                rate, done = await asyncio.to_thread(D.run_claimers, kind, commands)
                rates.setdefault((kind, connections), []).append(rate)
                planned = procs * conns * limits[connections]
                if done < planned:
                    b.notes.append(f"PostgreSQL {kind} at {connections} connection(s) made {done} claims of {planned}")
                await asyncio.to_thread(schemas.drop, label)
        if sizes.rounds > 1:
            for kind in ("registry", "served", "counter"):
                spread = " ".join(f"{m / r:.2f}x" for m, r in zip(rates[kind, connections], rates["raw", connections]))
                b.notes.append(f"PostgreSQL {kind} claims/s ratio by round, {connections} connection(s): {spread}")
    figures = []
    for name, kind, connections in CLAIM_ROWS:
        reference = ("raw psycopg loop, 1 connection" if connections == 1
                     else f"raw psycopg loops, {PROCESSES} processes x {POOL} connections")
        figures.append(Figure(name, statistics.median(rates[kind, connections]), "claims/s", reference,
                              statistics.median(rates["raw", connections])))
    return figures


# ---------------------------------------------------------------- list_available


async def bench_list(b: Bench, schemas: P.Schemas, sizes: PgSizes) -> list[Figure]:
    """Median list_available(limit 50) vs the naive scan at each size; one schema grows from size
    to size (every blocked task outranks every ready one, as on SQLite)."""
    from .bench import Figure, _timed

    figures = []
    have = 0
    async with Registry(PostgresStore(schemas.url_of("list"), pool_min=1, pool_max=1), agent="bench") as reg:
        for total in sizes.list_sizes:
            b.say(f"PostgreSQL list_available: populating {total:,} tasks")
            await D.populate_blocked_outranking(reg, total - have)
            have = total
            await asyncio.to_thread(_analyze, schemas.url_of("list"))

            async def ours() -> list[str]:
                return [s.id for s in (await reg.list_available(limit=50)).items]

            async def naive() -> list[str]:
                now = time.time()
                return await reg.store.read(lambda tx: P.naive_list_ready(cast(PostgresTx, tx).conn, now, 50))

            b.say(f"PostgreSQL list_available: measuring at {total:,} tasks")
            if await ours() != await naive():
                b.notes.append(f"PostgreSQL list_available at {total:,} tasks: the registry and the naive scan "
                               "listed different tasks")
            mine: list[float] = []
            ref: list[float] = []
            t_end = time.perf_counter() + sizes.list_budget
            while len(ref) < 200 and (time.perf_counter() < t_end or len(ref) < 3):
                ref.append(await _timed(naive))
                mine += [await _timed(ours) for _ in range(5)]
            figures.append(Figure(f"list_available(50), PostgreSQL, {total:,} tasks", statistics.median(mine) * 1000,
                                  "ms median", "naive: PENDING in order, deps queried per task",
                                  statistics.median(ref) * 1000))
    return figures


def _analyze(url: str) -> None:
    with P.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


# ---------------------------------------------------------------- notification latency


async def bench_latency(b: Bench, schemas: P.Schemas, sizes: PgSizes) -> list[Figure]:
    """p50 and p99 of a change through one store until another process's follower publishes it,
    vs a bare NOTIFY between the same two processes (`latencies`)."""
    from .bench import Figure

    b.say(f"PostgreSQL notification latency: {sizes.pings} changes and {sizes.pings} bare notifications")
    ours, ref, missed = await latencies(schemas.url_of("latency"), sizes.pings)
    if missed:
        b.notes.append(f"cross-server latency: the follower never published {missed} of {sizes.pings} changes "
                       "within 5 s")
    reference = "bare NOTIFY to LISTEN, same two processes"
    return [Figure(f"{LATENCY}, p{p}", _ms(_percentile(ours, p)), "ms", f"{reference}, p{p}", _ms(_percentile(ref, p)))
            for p in (50, 99)]


async def latencies(url: str, pings: int, watch: bool = True) -> tuple[list[float], list[float], int]:
    """(change latencies, bare NOTIFY latencies, changes never seen) in seconds: a change through
    this process's store (a one-task create_tasks) until the follower in another process (woken by
    `watch()`, or polling only when `watch` is false) publishes it; and a bare NOTIFY from this
    process until that process's LISTEN connection receives it. The kinds alternate, with a short
    random pause between samples; time.monotonic is one clock for both processes."""
    ours: list[float] = []
    ref: list[float] = []
    missed = 0
    async with Registry(PostgresStore(url, pool_min=1, pool_max=2), agent="bench") as reg:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mcp_tasks.harness.postgres_bench", "follow", url, *([] if watch else ["poll"]),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=D.child_env())
        assert child.stdin is not None and child.stdout is not None
        out = child.stdout
        try:
            line = await asyncio.wait_for(out.readline(), 60)
            if line.strip() != b"ready":
                raise RuntimeError(f"the follower process did not start (exit code {await child.wait()})")
            raw = await asyncio.to_thread(P.connect, url, True)
            try:
                for i in range(pings):
                    await asyncio.sleep(random.uniform(0.005, 0.02))
                    t0 = time.monotonic()
                    await asyncio.to_thread(raw.execute, P.bench_queries()["bench_notify"], {"payload": f"p{i}"})
                    ref.append(await _seen(out, "raw", f"p{i}") - t0)
                    await asyncio.sleep(random.uniform(0.005, 0.02))
                    t0 = time.monotonic()
                    tid = (await reg.create_tasks([{"title": f"ping {i}"}])).ids[0]
                    try:
                        ours.append(await _seen(out, "seen", tid) - t0)
                    except TimeoutError:
                        missed += 1
            finally:
                raw.close()
        finally:
            child.stdin.close()
            try:
                await asyncio.wait_for(child.wait(), 30)
            except TimeoutError:
                child.kill()
                await child.wait()
    return ours, ref, missed


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


async def _seen(out: asyncio.StreamReader, kind: str, key: str, timeout: float = 5.0) -> float:
    """The monotonic time in the follower's first line `KIND KEY TIME`."""
    async def scan() -> float:
        while True:
            line = await out.readline()
            if not line:
                raise RuntimeError("the follower process ended early")
            parts = line.decode().split()
            if len(parts) == 3 and parts[0] == kind and parts[1] == key:
                return float(parts[2])

    return await asyncio.wait_for(scan(), timeout)


def _percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (nearest rank), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(p / 100 * len(ordered)))) - 1]
