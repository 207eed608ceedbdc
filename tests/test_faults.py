"""Single faults never take a server down, through real server processes: a full disk (with a
lease expiring meanwhile, then recovery without a restart), a damaged task row, a damaged event.
/healthz tells the truth all along.

The damaged row and event tests run on every store (damaged as each store's column types allow:
PostgreSQL's jsonb holds only valid JSON, so its damage is JSON of the wrong shape). The full
disk stays SQLite-only: it is a property of a file on a disk the server writes itself. A
PostgreSQL server's disk is the database server's to manage; the store's side of it (a refusal
that names the cause) is the same wrapped error."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from mcp_tasks import Registry
from mcp_tasks.stores import make_store

from .databases import TestDatabase
from .server_helpers import MCP_TASKS, ROOT, Agent, http_server, stdio_params

FULL_DISK = ROOT / "tests" / "programs" / "full_disk.py"


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_full_disk_refuses_writes_keeps_reads_and_recovers_by_itself(tmp_path, transport):
    """A real full disk (a small tmpfs in a private mount namespace: no root needed, nothing left
    mounted), with a lease expiring meanwhile, then recovery without a restart; every step is
    asserted in tests/programs/full_disk.py, whose docstring tells the story. SQLite only (see
    there): a full disk is a property of the file the server writes itself."""
    out = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", sys.executable, str(FULL_DISK), transport, str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-6000:]}"
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"ok": True, "transport": transport}


async def until(what: Callable[[], Any], seconds: float = 30.0, pause: float = 0.1) -> Any:
    """Poll `what()` (sync or async) until it returns something truthy."""
    with anyio.fail_after(seconds):
        while True:
            got = what()
            if hasattr(got, "__await__"):
                got = await got
            if got:
                return got
            await anyio.sleep(pause)


async def health(base: str) -> tuple[int, dict[str, Any]]:
    async with httpx2.AsyncClient() as http:
        r = await http.get(f"{base}/healthz")
        return r.status_code, r.json()


@contextlib.asynccontextmanager
async def connect(transport: str, db: str, log: Path, *extra: str) -> AsyncIterator[tuple[Agent, str | None]]:
    """A real server (stdio or HTTP) and a client of it; yields (agent, HTTP base or None)."""
    if transport == "http":
        with http_server(db, "--agent", "worker", *extra, log=log) as base:
            async with httpx2.AsyncClient() as http:
                async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
                    yield Agent(client), base
    else:
        with open(log, "a") as errlog:
            async with Client(stdio_client(stdio_params(db, "worker", *extra), errlog=errlog)) as client:
                yield Agent(client), None


async def seed(db: str, specs: list[dict]) -> list[str]:
    async with Registry(make_store(db), agent="planner") as reg:
        return (await reg.create_tasks(specs)).ids


def server_log(log: Path) -> str:
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    return text


async def _degraded(base: str) -> Any:
    status, body = await health(base)
    return (status, body) if body["status"] == "degraded" else None


async def _healthy(base: str) -> Any:
    status, body = await health(base)
    return (status, body) if body["status"] == "ok" else None


async def _state(agent: Agent, tid: str, state: str) -> bool:
    return (await agent.call("get_task", task_id=tid))["task"]["state"] == state


# Damage each store's column types allow, and what reading it says: SQLite keeps any text in a
# JSON column; PostgreSQL's jsonb only valid JSON, so there it is JSON of the wrong shape.
BAD_ERROR_LOG = {"sqlite": ("{not json", "is not valid JSON"), "postgres": ("{}", "is not a JSON array of objects")}
BAD_EVENT_DATA = {"sqlite": ("{not json", "data is not valid JSON"), "postgres": ("[]", "data is not a JSON object")}


def mark(db: TestDatabase) -> str:
    """The store's parameter placeholder."""
    return "?" if db.kind == "sqlite" else "%s"


def damage_row(db: TestDatabase, tid: str, column: str, value: str) -> None:
    db.sql((f"UPDATE tasks SET {column} = {mark(db)} WHERE id = {mark(db)}", (value, tid)))


def damage_event(db: TestDatabase, tid: str) -> None:
    """Append an event whose data cannot be read (a bad write by some other tool), by actor 'tool'."""
    m = mark(db)
    db.sql((f"INSERT INTO events (task_id, type, actor, at, data) VALUES ({m}, 'checkpoint', 'tool', {m}, {m})",
            (tid, time.time(), BAD_EVENT_DATA[db.kind][0])))


async def damaged_seq(db: TestDatabase, tid: str) -> int:
    """The seq of the damaged event (on PostgreSQL the sequencer numbers it after it was written)."""
    query = f"SELECT seq FROM events WHERE task_id = {mark(db)} AND actor = 'tool' AND seq IS NOT NULL"
    rows = await until(lambda: db.sql((query, (tid,)))[0])
    return int(rows[0][0])


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_a_damaged_row_and_event_harm_only_themselves(db: TestDatabase, tmp_path, transport):
    location, log = db.location, tmp_path / "server.log"
    bad_log, log_says = BAD_ERROR_LOG[db.kind]
    good, bad, expiring = await seed(location, [{"title": "good", "priority": 1}, {"title": "bad", "priority": 9},
                                                {"title": "expiring"}])
    async with Registry(db.store(), agent="other") as reg:
        bad_claim = await reg.claim(bad, lease_seconds=5)
        await reg.claim(expiring, lease_seconds=5)
    assert bad_claim is not None
    damage_row(db, bad, "error_log", bad_log)  # and its lease is about to expire
    for restart in (False, True):  # a damaged row used to crash every server at its next reaper tick, again on restart
        async with connect(transport, location, log, "--reaper-interval", "0.2") as (agent, base):
            refused = await agent.refused("get_task", task_id=bad)
            assert f"task {bad} cannot be read: its column error_log {log_says}" in refused
            assert "error_log" in await agent.refused("start", task_id=bad, lease=bad_claim.lease)
            if not restart:
                # the reaper steps over the damaged row and keeps expiring the others
                await until(lambda: _state(agent, expiring, "PENDING"), 30)
                found = {t["id"] for t in (await agent.call("find_tasks"))["tasks"]}
                assert found == {good, expiring}  # listed around the damaged row
                claim = await agent.call("claim", task_id=good)
                await agent.call("start", task_id=good, lease=claim["lease"])
                damage_event(db, good)
                # the change follower records the bad event and moves past it: notifications flow
                await agent.call("complete", task_id=good, lease=claim["lease"])
                seq = await damaged_seq(db, good)
                event_says = BAD_EVENT_DATA[db.kind][1]
                if base is not None:
                    status, body = await until(lambda: _degraded(base))
                    assert status == 200 and any(f"event {seq}" in p and event_says in p
                                                 for p in body["problems"]), body
                events = (await agent.call("get_task", task_id=good, events=10))["events"]
                assert [e["type"] for e in events][-2:] == ["checkpoint", "completed"]
                assert event_says in json.dumps(events)
            else:
                assert (await agent.call("get_task", task_id=good))["task"]["state"] == "DONE"
    server_log(log)
    out = subprocess.run([*MCP_TASKS, "verify", "--db", location], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr
    assert bad in out.stdout and "error_log" in out.stdout and str(seq) in out.stdout


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_subscribers_keep_hearing_changes_past_a_damaged_event(db: TestDatabase, tmp_path, transport):
    location, log = db.location, tmp_path / "server.log"
    (tid,) = await seed(location, [{"title": "watched"}])
    async with connect(transport, location, log) as (agent, _):
        async with agent.client.listen(resource_subscriptions=[f"task://{tid}"]) as updates:
            damage_event(db, tid)
            with anyio.fail_after(10):
                await updates.__anext__()  # the damaged event is news about the task too
            async with Registry(db.store(), agent="elsewhere") as reg:
                await reg.update(tid, title="renamed elsewhere")
            with anyio.fail_after(10):
                await updates.__anext__()  # and what comes after it still arrives
    server_log(log)
