"""Several hosts on one PostgreSQL database: `mcp-tasks serve --http` processes, each with its own
pool, real MCP clients over HTTP moving between them, tasks with dependencies and random failures;
then the same under faults: servers SIGKILLed, backends terminated mid-transaction, PostgreSQL
stopped and started again. Nothing acknowledged may be lost, no task may be claimed twice or
started before its dependencies are DONE, every task finishes, verify is clean, no server dies
unless killed and none logs a traceback.

Sizes are set for CI (about a minute and a half for the file on a quiet 2-core machine); raise them
with MCP_TASKS_MULTIHOST_TASKS (default 300; 2000 or more for the full simulation),
MCP_TASKS_MULTIHOST_FAULT_TASKS (150, under kills), MCP_TASKS_MULTIHOST_RESTART_TASKS (100, across
the PostgreSQL restart), MCP_TASKS_MULTIHOST_SERVERS (4),
MCP_TASKS_MULTIHOST_AGENTS (16) and MCP_TASKS_MULTIHOST_KILLS (server SIGKILLs, 3).
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

import anyio
import pytest

from mcp_tasks import Registry, State
from mcp_tasks.stores import make_store
from mcp_tasks.stores.postgres import PostgresStore

from .databases import TestDatabase
from .fleet import all_events, check_history, make_plan
from .multihost import Cluster, Stats, env_int, make_agents, work_until_done
from .pg_faults import Chaos, ensure_running, listeners_of, pg_control, watch_connections

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills are Linux-specific")

SERVERS = env_int("MCP_TASKS_MULTIHOST_SERVERS", 4)
AGENTS = env_int("MCP_TASKS_MULTIHOST_AGENTS", 16)
FAULT_TASKS = env_int("MCP_TASKS_MULTIHOST_FAULT_TASKS", 150)
RESTART_TASKS = env_int("MCP_TASKS_MULTIHOST_RESTART_TASKS", 100)
EXPECTED_REFUSALS = {"lease"}  # under faults: a lease that expired or ended while its agent was cut off


@pytest.fixture(params=["postgres"])
def store_kind(request) -> str:
    """Only PostgreSQL: several hosts cannot share a SQLite file."""
    return request.param


def fault_cluster(db: TestDatabase, tmp_path) -> Cluster:
    """Servers with the shortest lease, so work cut off by a fault comes back quickly."""
    return Cluster(db.location, tmp_path, SERVERS, ("--lease-seconds", "5", "--reaper-interval", "0.3"))


def progress(journal: list[dict], deps: dict[str, list[str]]) -> float:
    """The share of the tasks completed so far (0 to 1)."""
    return sum(r["op"] == "complete" for r in journal) / len(deps)


async def check_outcome(db: TestDatabase, cluster: Cluster, deps: dict[str, list[str]], journal: list[dict],
                        stats: Stats, *, killed: int = 0) -> dict[str, int]:
    """What every test holds the cluster to, after the load (servers still running)."""
    logs = cluster.logs()
    deaths = sum(s.runs - 1 for s in cluster.servers) + sum(not s.alive() for s in cluster.servers)
    assert deaths == killed, f"{deaths} server deaths, {killed} by the test:\n{logs[-6000:]}"
    assert "Traceback" not in logs, logs[-8000:]
    assert set(stats.refusals) <= EXPECTED_REFUSALS, stats
    for server in cluster.servers:  # every background loop recovered
        await server.wait_healthy(60)
    assert db.base is not None
    with anyio.fail_after(60):  # every server listens for other hosts' changes (again, after a fault)
        while await listeners_of(cluster, db.base) != {s.index for s in cluster.servers}:
            await anyio.sleep(0.2)
    events = await all_events(db.location)
    counts = check_history(events, deps, journal)
    async with Registry(make_store(db.location), agent="checker") as reg:
        assert (await reg.counts())[State.DONE] == len(deps)
        assert await reg.verify() == []
    return counts


async def test_servers_on_several_hosts_share_one_postgres_database(db, tmp_path):
    tasks = env_int("MCP_TASKS_MULTIHOST_TASKS", 300)
    assert SERVERS >= 4 and SERVERS * PostgresStore(db.location).pool_max >= 32, "at least 4 servers, 32 connections"
    deps = await make_plan(db.location, tasks, random.Random(11))
    cluster = Cluster(db.location, tmp_path, SERVERS, ("--lease-seconds", "60", "--reaper-interval", "0.5"))
    agents, journal, stats = make_agents(cluster, AGENTS, 11, fail_rate=0.05)
    connections: dict[int, int] = {}
    done = anyio.Event()
    assert db.base is not None
    try:
        await cluster.start()
        began = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(work_until_done, agents, 900, done)
            tg.start_soon(watch_connections, cluster, db.base, done, connections)
        took = time.monotonic() - began
        counts = await check_outcome(db, cluster, deps, journal, stats)
    finally:
        cluster.stop()
    print(f"\n{tasks} tasks, {SERVERS} servers, {AGENTS} agents: {took:.1f}s; {counts}; most connections per server "
          f"(pool and listener) {dict(sorted(connections.items()))}; {stats}")
    assert stats.reconnects == 0 and stats.refused == 0, stats
    # without faults every claim was answered: exactly one claim event per journaled claim
    assert counts["claims"] == sum(r["op"] == "claim" for r in journal)
    assert any(r["op"] == "fail" for r in journal), "random failures should have happened"
    assert len({r["agent"] for r in journal if r["op"] == "complete"}) == AGENTS, "every agent did work"


async def test_killed_servers_and_backends_lose_no_acknowledged_change(db, tmp_path):
    kills = env_int("MCP_TASKS_MULTIHOST_KILLS", 3)
    rng = random.Random(23)
    deps = await make_plan(db.location, FAULT_TASKS, rng, max_retries=100)
    cluster = fault_cluster(db, tmp_path)
    agents, journal, stats = make_agents(cluster, AGENTS, 23, fail_rate=0.03)
    assert db.base is not None
    chaos = Chaos(cluster, db.base, rng)
    done = anyio.Event()
    try:
        await cluster.start()
        began = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(work_until_done, agents, 900, done)
            tg.start_soon(chaos.run, done, lambda: progress(journal, deps), kills, 0.15)
        took = time.monotonic() - began
        counts = await check_outcome(db, cluster, deps, journal, stats, killed=chaos.server_kills)
    finally:
        cluster.stop()
    print(f"\n{FAULT_TASKS} tasks under kills: {took:.1f}s; {counts}; server kills {chaos.server_kills}, backends "
          f"terminated {chaos.terminated} ({chaos.in_transaction} in a transaction, {chaos.between_statements} "
          f"of them between statements, {chaos.listeners} listening); "
          f"most connections seen per server {chaos.seen_backends}; {stats}")
    assert chaos.server_kills == kills, "the load ended before every kill"
    assert chaos.in_transaction > 0 and chaos.listeners > 0, "backends should have died mid-transaction and listening"
    assert stats.reconnects > 0


async def health_while(cluster: Cluster, until: anyio.Event, seen: dict[int, set[str]]) -> None:
    """Ask every server's /healthz over and over until `until`; record every status it gave."""
    async def probe(server: Any) -> None:
        while not until.is_set():
            try:
                code, body = await server.health()
                seen[server.index].add(f"{code} {body.get('status')}")
            except Exception as exc:  # noqa: BLE001 - a health check that fails to answer is recorded too
                seen[server.index].add(f"no answer ({type(exc).__name__})")
            await anyio.sleep(0.1)

    async with anyio.create_task_group() as tg:
        for s in cluster.servers:
            tg.start_soon(probe, s)


async def test_a_postgres_restart_mid_load_is_survived_by_every_server(db, tmp_path):
    rng = random.Random(31)
    assert db.base is not None
    deps = await make_plan(db.location, RESTART_TASKS, rng, max_retries=100)
    cluster = fault_cluster(db, tmp_path)
    agents, journal, stats = make_agents(cluster, AGENTS, 31, fail_rate=0.03)
    done, outage_over = anyio.Event(), anyio.Event()
    during: dict[int, set[str]] = {s.index: set() for s in cluster.servers}
    try:
        await cluster.start()
        began = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(work_until_done, agents, 900, done)
            with anyio.fail_after(300):
                while progress(journal, deps) < 0.2:
                    await anyio.sleep(0.1)
            assert not done.is_set(), "the load ended before the restart"
            stopped = time.monotonic()
            await anyio.to_thread.run_sync(pg_control, "stop", db.base)
            try:
                tg.start_soon(health_while, cluster, outage_over, during)
                with anyio.fail_after(60):  # every server says it is not well while the database is down
                    while not all(any(not s.endswith(" ok") for s in during[i]) for i in during):
                        await anyio.sleep(0.1)
                await anyio.sleep(1.0)
            finally:
                await anyio.to_thread.run_sync(pg_control, "start", db.base)
            started = time.monotonic()
            for server in cluster.servers:  # ok again without a restart of its own
                await server.wait_healthy(90)
            healthy = time.monotonic()
            outage_over.set()
        took = time.monotonic() - began
        counts = await check_outcome(db, cluster, deps, journal, stats)
    finally:
        try:
            cluster.stop()
        finally:
            ensure_running(db.base)
    print(f"\n{RESTART_TASKS} tasks across a PostgreSQL restart: {took:.1f}s; stopped at {stopped - began:.1f}s for "
          f"{started - stopped:.1f}s, every server ok {healthy - started:.1f}s after the start; {counts}; "
          f"/healthz during the outage {during}; {stats}")
    assert all(s.runs == 1 for s in cluster.servers)
