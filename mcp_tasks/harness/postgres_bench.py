"""The registry's SQL on bare psycopg connections: the PostgreSQL references of `mcp-tasks bench`.

`claim_loop` runs the statements a registry claim runs (reap scan, pick with SKIP LOCKED,
dependencies, compare-and-set update, event insert) in one READ COMMITTED transaction each, with
no pool, threads, models, rules or sequencer: the event goes to a table whose id is a plain
bigserial (storage/postgres/bench.sql), numbered as it is inserted, and the time is the client's.
With `counter=True` the transaction ends by updating one counter row, the commit-order design
the store did not choose. `naive_list_ready` is the list reference without the maintained
unmet_deps counter. `Schemas` gives a run schemas of its own and drops them all at the end.

Claiming processes are `python -m mcp_tasks.harness.postgres_bench KIND URL LIMIT CONNECTIONS
AGENT` (KIND: registry, raw or counter); they speak the protocol of bench_data's workers: print
"ready", wait for "go", claim, print one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import threading
import time
import urllib.parse
from dataclasses import asdict
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader

from ..ids import lease_hash, new_lease_token
from ..registry import Registry
from ..stores import sql_files
from ..stores.postgres import PostgresStore, connect_error, parse_url
from .bench_data import WARM_UP, ClaimRun
from .naive import fetch_batches, first_ready

LEASE_SECONDS = 600.0
REAP_BATCH = 100  # the registry's Policy.reap_batch


def bench_queries() -> dict[str, str]:
    """The bench's own named queries (storage/postgres/bench.sql)."""
    return sql_files.queries("postgres", "bench.sql")


def with_schema(url: str, schema: str) -> str:
    """`url` naming `schema` (any ?schema= it had is replaced; other parameters are kept)."""
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode([*query, ("schema", schema)])))


def connect(url: str, autocommit: bool = False) -> psycopg.Connection[dict[str, Any]]:
    """A connection configured like the store's: the URL's schema first on the search path, jsonb
    as text, dict rows."""
    conninfo, schema, _ = parse_url(url)
    conn = psycopg.connect(conninfo, row_factory=dict_row, autocommit=autocommit)
    conn.adapters.register_loader("jsonb", TextLoader)
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    if not autocommit:
        conn.commit()
    return conn


class Schemas:
    """Schemas of one bench run, named PREFIX_<label>, all dropped by `drop_all` (also those a
    crashed step left behind). The database's other schemas are never touched."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"mcp_tasks_bench_{secrets.token_hex(4)}_"

    def name(self, label: str) -> str:
        """The schema for `label`."""
        return self.prefix + label

    def url_of(self, label: str) -> str:
        """The database URL naming `label`'s schema."""
        return with_schema(self.url, self.name(label))

    def drop(self, label: str) -> None:
        """Drop `label`'s schema and everything in it."""
        with connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL(bench_queries()["bench_drop_schema"]).format(schema=sql.Identifier(self.name(label))))

    def drop_all(self) -> None:
        """Drop every schema of this run."""
        q = bench_queries()
        with connect(self.url, autocommit=True) as conn:
            for row in conn.execute(q["bench_schemas"], {"prefix": self.prefix}).fetchall():
                conn.execute(sql.SQL(q["bench_drop_schema"]).format(schema=sql.Identifier(row["name"])))

    def left(self) -> list[str]:
        """Schemas of this run that still exist."""
        with connect(self.url, autocommit=True) as conn:
            return [r["name"] for r in conn.execute(bench_queries()["bench_schemas"], {"prefix": self.prefix})]


def server_info(url: str) -> dict[str, Any]:
    """The server's version, synchronous_commit and max_connections, and `location` (the URL
    without password or schema); StoreUnavailable, in one line, when it cannot be reached."""
    _, _, location = parse_url(url)
    location = location.split("?", 1)[0]
    try:
        with connect(url, autocommit=True) as conn:
            row = conn.execute(bench_queries()["bench_server"]).fetchone()
    except psycopg.OperationalError as exc:
        raise connect_error(location, exc) from None
    assert row is not None
    return {**row, "location": location}


async def fresh_registry_schema(url: str, template: str | None = None) -> None:
    """Create the registry's schema at `url` through the store, filled with the rows of the
    `template` schema when given, and the raw loops' reference tables."""
    store = PostgresStore(url, pool_min=1, pool_max=1)
    await store.open()
    await store.close()
    q = bench_queries()
    with connect(url) as conn:
        if template is not None:
            conn.execute(sql.SQL(q["bench_copy"]).format(template=sql.Identifier(template)))
        conn.execute(q["bench_tables"])
        conn.commit()


def counts(url: str) -> tuple[int, int]:
    """(tasks, events) in the registry at `url`."""
    q = bench_queries()
    with connect(url, autocommit=True) as conn:
        tasks, events = conn.execute(q["bench_count_tasks"]).fetchone(), conn.execute(q["bench_count_events"]).fetchone()
        assert tasks is not None and events is not None
        return int(tasks["n"]), int(events["n"])


# ---------------------------------------------------------------- raw loops


def claim_loop(conn: psycopg.Connection[dict[str, Any]], count: int, agent: str = "raw", counter: bool = False) -> int:
    """Claim up to `count` ready tasks, one transaction each; returns how many were claimed."""
    q, b = sql_files.queries("postgres"), bench_queries()
    claimed = 0
    for _ in range(count):
        now = time.time()
        conn.execute(q["expired_leases"], {"now": now, "limit": REAP_BATCH}).fetchall()
        row = conn.execute(q["next_ready"], {"now": now, "caps": None, "tags": None, "skip": []}).fetchone()
        if row is None:
            conn.commit()
            break
        conn.execute(q["task_depends_on"], {"id": row["id"]}).fetchall()
        params = dict(row)
        del params["num"], params["created_at"], params["created_by"]
        lease = lease_hash(new_lease_token())
        params.update(
            state="ASSIGNED", assignee=agent, assigned_at=now, lease_hash=lease, lease_expires_at=now + LEASE_SECONDS,
            lease_seconds=LEASE_SECONDS, not_before=None, lease_end=None, version=row["version"] + 1, updated_at=now,
            expected_version=row["version"], expected_state=row["state"],
        )
        if conn.execute(q["update_task"], params).rowcount != 1:
            raise RuntimeError(f"raw claim loop: the compare-and-set on {row['id']} failed")
        data = {"set": {"assignee": agent, "assigned_at": now, "lease_hash": lease,
                        "lease_expires_at": now + LEASE_SECONDS, "lease_seconds": LEASE_SECONDS, "not_before": None,
                        "lease_end": None},
                "lease_seconds": LEASE_SECONDS}
        conn.execute(b["bench_insert_event"], {
            "task_id": row["id"], "type": "claimed", "from_state": "PENDING", "to_state": "ASSIGNED",
            "actor": agent, "at": now, "data": json.dumps(data),
        }).fetchone()
        if counter:
            conn.execute(b["bench_take_seq"]).fetchone()
        conn.commit()
        claimed += 1
    return claimed


def naive_list_ready(conn: psycopg.Connection[Any], now: float, limit: int) -> list[str]:
    """Ids of the first `limit` ready tasks, found without the unmet_deps counter: PENDING tasks in
    claim order, read through a server-side cursor, each one's dependencies asked for one query at
    a time. Runs inside the caller's transaction (a server-side cursor needs one)."""
    q = sql_files.queries("postgres")
    with conn.cursor(name="bench_naive") as candidates:
        candidates.execute(bench_queries()["bench_naive_pending"], {"now": now})
        return first_ready(fetch_batches(candidates),
                           lambda tid: conn.execute(q["dependency_states"], {"id": tid}).fetchall(), limit)


# ---------------------------------------------------------------- claiming processes


def _wait_for_go() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("bench worker: expected 'go' on stdin")


async def _registry_claims(url: str, limit: int, connections: int, agent: str, pool: int, served: bool) -> ClaimRun:
    """`connections` claimers sharing one registry whose pool has `pool` connections, as one server
    process serving that many agents at once; the clock stops when every claim is numbered. With
    `served`, the process also runs what `mcp-tasks serve` runs beside the tools: the change
    follower (woken by its own writes and by `watch()`), the watch connection and the reaper."""
    from ..server.notify import ChangeFollower

    store = PostgresStore(url, pool_min=min(pool, connections), pool_max=pool)
    async with Registry(store, agent=agent) as reg:
        background: list[asyncio.Task[None]] = []
        if served:
            async def publish(_uris: list[str]) -> None:
                """No subscribers: what is published goes nowhere."""

            follower = ChangeFollower(reg, publish)
            reg.add_listener(follower.poke)
            background = [asyncio.create_task(c) for c in (follower.run(), store.watch(follower.poke), reg.run_reaper())]

        async def claimer(i: int, n: int) -> int:
            done = 0
            while done < n and await reg.claim(actor=f"{agent}-{i}") is not None:
                done += 1
            return done

        await asyncio.gather(*(claimer(i, WARM_UP) for i in range(connections)))
        await store.settle()
        _wait_for_go()
        t0 = time.monotonic()
        claimed = await asyncio.gather(*(claimer(i, limit) for i in range(connections)))
        await store.settle()
        stopped = time.monotonic()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        return ClaimRun(sum(claimed), t0, stopped)


def _raw_claims(url: str, limit: int, connections: int, agent: str, counter: bool) -> ClaimRun:
    """`connections` threads, each with its own connection running `claim_loop`."""
    conns = [connect(url) for _ in range(connections)]
    go = threading.Event()
    claimed = [0] * connections
    stops = [0.0] * connections

    def claimer(i: int) -> None:
        go.wait()
        claimed[i] = claim_loop(conns[i], limit, f"{agent}-{i}", counter)
        stops[i] = time.monotonic()

    try:
        for i, conn in enumerate(conns):
            claim_loop(conn, WARM_UP, f"{agent}-{i}", counter)
        threads = [threading.Thread(target=claimer, args=(i,)) for i in range(connections)]
        for t in threads:
            t.start()
        _wait_for_go()
        t0 = time.monotonic()
        go.set()
        for t in threads:
            t.join()
        return ClaimRun(sum(claimed), t0, max(stops))
    finally:
        for conn in conns:
            conn.close()


# ---------------------------------------------------------------- the other server, following


async def follow(url: str, watch: bool = True) -> None:
    """The far side of the notification latency figure: a registry with its own store, woken by
    `watch()` and following the log with the server's ChangeFollower, printing "seen TASK_ID
    MONOTONIC" for each task whose events it publishes; and a bare LISTEN connection printing "raw
    PAYLOAD MONOTONIC" (the reference). Prints "ready" once both listen; runs until stdin closes.
    Without `watch` the follower only polls, as it does where LISTEN cannot work (a connection
    pooler in transaction mode)."""
    from ..server.notify import ChangeFollower

    store = PostgresStore(url, pool_min=1, pool_max=2)
    async with Registry(store, agent="bench-follower") as reg:

        async def publish(uris: list[str]) -> None:
            now = time.monotonic()
            for uri in uris:
                if uri.startswith("task://") and not uri.endswith("/events"):
                    print(f"seen {uri[len('task://'):]} {now:.6f}", flush=True)

        follower = ChangeFollower(reg, publish)
        await follower.catch_up()  # from the end of the log
        conninfo, _, _ = parse_url(url)
        raw = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        await raw.execute(bench_queries()["bench_listen"])

        async def listen_raw() -> None:
            async for note in raw.notifies():
                print(f"raw {note.payload} {time.monotonic():.6f}", flush=True)

        listening = asyncio.Event()

        def wake() -> None:
            listening.set()  # watch() wakes once as soon as it listens
            follower.poke()

        if not watch:
            listening.set()
        followers = (follower.run(), store.watch(wake)) if watch else (follower.run(),)
        tasks = [asyncio.create_task(c) for c in (*followers, listen_raw())]
        try:
            await listening.wait()
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.read)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await raw.close()


def worker(argv: list[str]) -> None:
    """One bench process: `follow URL`, or a claiming process KIND URL LIMIT CONNECTIONS AGENT."""
    if argv[:1] == ["follow"] and len(argv) in (2, 3):
        asyncio.run(follow(argv[1], watch=argv[2:] != ["poll"]))
        return
    if len(argv) not in (5, 6) or argv[0] not in ("registry", "served", "raw", "counter"):
        raise SystemExit("usage: python -m mcp_tasks.harness.postgres_bench registry|served|raw|counter URL LIMIT "
                         "CONNECTIONS AGENT [POOL], or follow URL [poll] (started by the bench)")
    kind, url, limit, connections, agent = argv[:5]
    if kind in ("registry", "served"):
        pool = int(argv[5]) if len(argv) == 6 else int(connections)
        run = asyncio.run(_registry_claims(url, int(limit), int(connections), agent, pool, kind == "served"))
    else:
        run = _raw_claims(url, int(limit), int(connections), agent, counter=kind == "counter")
    print(json.dumps(asdict(run)), flush=True)


if __name__ == "__main__":
    worker(sys.argv[1:])
