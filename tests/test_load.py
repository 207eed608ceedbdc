"""Many server processes on one database under real MCP clients; and the same under SIGKILLs.
Both run on every store: the servers get `--db <location>` (a SQLite file, a PostgreSQL schema).

Sizes are set for CI (a minute or so each); raise them by hand with
MCP_TASKS_LOAD_TASKS, MCP_TASKS_LOAD_AGENTS, MCP_TASKS_CRASH_TASKS and MCP_TASKS_CRASH_KILLS.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from mcp_tasks import Registry, State
from .databases import TestDatabase
from .fleet import Fleet, all_events, check_history, make_plan

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills and /proc are Linux-specific")


async def test_eight_server_processes_share_one_database_under_load(db: TestDatabase, tmp_path):
    tasks = int(os.environ.get("MCP_TASKS_LOAD_TASKS", "400"))
    agents = int(os.environ.get("MCP_TASKS_LOAD_AGENTS", "8"))
    deps = await make_plan(db.location, tasks, random.Random(3))
    fleet = Fleet(db.location, tmp_path, lease=120, fail_rate=0.05)
    for i in range(agents):
        fleet.start(f"agent-{i}")
    fleet.stop_file.touch()  # agents leave once nothing is left to claim
    codes = fleet.stop(timeout=600)
    assert codes == [0] * agents, fleet.errors()

    events = await all_events(db.location)
    records = fleet.records()
    counts = check_history(events, deps, records)
    # without crashes every claim was acknowledged: exactly one claim event per claim
    assert counts["claims"] == sum(r["op"] == "claim" for r in records)
    assert sum(r["op"] == "fail" for r in records) > 0, "random failures should have happened"
    assert len({r["agent"] for r in records if r["op"] == "complete"}) == agents, "every agent did work"
    async with Registry(db.store(), agent="checker") as reg:
        assert (await reg.counts())[State.DONE] == tasks
        assert await reg.verify() == []


async def test_sigkilled_servers_and_agents_lose_no_acknowledged_change(db: TestDatabase, tmp_path):
    tasks = int(os.environ.get("MCP_TASKS_CRASH_TASKS", "200"))
    kills = int(os.environ.get("MCP_TASKS_CRASH_KILLS", "20"))
    rng = random.Random(5)
    deps = await make_plan(db.location, tasks, rng, max_retries=100)
    abandoned = abandon_one(db.location)  # one hand-over for sure, whatever the random kills bring
    fleet = Fleet(db.location, tmp_path, lease=5, fail_rate=0.03)  # the shortest lease the registry grants
    names = [f"agent-{i}" for i in range(5)]
    for name in names:
        fleet.start(name)
    deadline = time.monotonic() + 600
    done_kills = {"agent": 0, "server": 0}
    born = {name: time.monotonic() for name in names}
    while sum(done_kills.values()) < kills:
        assert time.monotonic() < deadline, f"only {done_kills} kills in time"
        time.sleep(rng.uniform(0.1, 0.4))
        for name in names:  # an agent whose server died exits: start it again under the same name
            if fleet.procs[name].poll() is not None:
                fleet.start(name)
                born[name] = time.monotonic()
        # kill only agents that have been up long enough to hold work
        working = [n for n in names if time.monotonic() - born[n] > 1.5]
        if not working:
            continue
        name = rng.choice(working)
        kind = "agent" if done_kills["agent"] <= done_kills["server"] else "server"
        if kind == "agent":
            fleet.kill_agent(name)
        else:
            server = fleet.server_of(name)
            if server is None:
                continue
            os.kill(server, signal.SIGKILL)
            fleet.procs[name].wait(timeout=60)  # the agent sees its server die and exits
        done_kills[kind] += 1
        fleet.start(name)  # same name again: fencing must hold across the restart
        born[name] = time.monotonic()
    assert done_kills["agent"] > 0 and done_kills["server"] > 0
    codes = fleet.stop(timeout=600)
    assert codes == [0] * len(names), fleet.errors()

    events = await all_events(db.location)
    records = fleet.records()
    counts_acked = check_history(events, deps, records)
    async with Registry(db.store(), agent="checker") as reg:
        counts = await reg.counts()
        assert counts[State.DONE] == tasks, counts
        assert await reg.verify() == []
    expiries = [e for e in events if e.type == "lease_expired"]
    assert expiries, "killed agents' leases must have expired and been recovered"
    # Every claim that came with a checkpoint received the latest one saved before it; some of those
    # resumed work another agent process (killed, or whose server was killed) saved before its lease
    # expired: a process restarted under the same name counts, it knows nothing of its predecessor.
    by_task: dict[str, list] = {}
    for e in events:
        by_task.setdefault(e.task_id, []).append(e)
    handed_over = 0
    for r in (r for r in records if r["op"] == "claim" and r.get("checkpoint")):
        history = by_task[r["task"]][: r["version"]]
        saved = [e for e in history if e.type == "checkpoint"]
        assert saved and saved[-1].data["set"]["checkpoint_data"] == r["checkpoint"], r
        expired = [e for e in history if e.type == "lease_expired"]
        if expired and r["checkpoint"]["pid"] != r["pid"]:
            handed_over += 1
    print(f"kills {done_kills}, acknowledged changes checked {counts_acked['acked']}, lease expiries {len(expiries)}, handed over {handed_over}")
    assert handed_over > 0, "some task should have been resumed by another process from a dead one's checkpoint"
    resumed = [r for r in records if r["op"] == "claim" and r["task"] == abandoned and r.get("checkpoint")]
    first = min(resumed, key=lambda r: r["version"]) if resumed else None
    assert first and first["checkpoint"]["by"] == "doomed", "the abandoned task's checkpoint should be handed over"



# A process that claims a task, checkpoints it and dies without a word: its lease runs out, and
# whichever agent claims the task next must receive its checkpoint.
ABANDON = """
import asyncio, os, sys
from mcp_tasks import Registry
from mcp_tasks.stores import make_store
async def main():
    async with Registry(make_store(sys.argv[1]), agent="doomed") as reg:
        claim = await reg.claim(lease_seconds=5)
        await reg.start(claim.task.id, claim.lease)
        await reg.checkpoint(claim.task.id, claim.lease, {"step": 1, "by": "doomed", "pid": os.getpid(), "nonce": 0})
        print(claim.task.id, flush=True)
    os._exit(0)
asyncio.run(main())
"""


def abandon_one(location: str) -> str:
    """Run ABANDON in a process of its own; the id of the task it left behind."""
    from .server_helpers import ROOT

    done = subprocess.run([sys.executable, "-c", ABANDON, location], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]
