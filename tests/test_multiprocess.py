"""Several OS processes claiming from one database (a SQLite file, a PostgreSQL schema): no double
claims, dependencies respected.

Size: MCP_TASKS_TEST_TASKS tasks (default 2000 on SQLite; MCP_TASKS_TEST_PG_TASKS, default 1000,
on PostgreSQL, where every claim is a round trip to the server) shared by MCP_TASKS_TEST_PROCS
processes (default 4)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from mcp_tasks import Registry, State
from mcp_tasks.ids import lease_hash

from .databases import TestDatabase
from .fleet import check_history

WORKER = Path(__file__).parent / "programs" / "claim_worker.py"
TASKS = {"sqlite": int(os.environ.get("MCP_TASKS_TEST_TASKS", "2000")),
         "postgres": int(os.environ.get("MCP_TASKS_TEST_PG_TASKS", "1000"))}
PROCS = int(os.environ.get("MCP_TASKS_TEST_PROCS", "4"))


async def _plan(reg: Registry, n: int, rng: random.Random) -> dict[str, list[str]]:
    ids: list[str] = []
    for start in range(0, n, 500):
        size = min(500, n - start)
        specs = []
        for j in range(size):
            local = [f"k{x}" for x in rng.sample(range(j), min(j, rng.randint(0, 2)))]
            earlier = rng.sample(ids, min(len(ids), rng.randint(0, 1)))
            specs.append({"key": f"k{j}", "title": f"task {start + j}", "priority": rng.randint(1, 10),
                          "depends_on": local + earlier, "max_retries": 10})
        ids += (await reg.create_tasks(specs)).ids
    deps = {}
    for tid in ids:
        deps[tid] = (await reg.get(tid)).depends_on
    return deps


async def test_processes_share_one_database_without_double_claims(db: TestDatabase, tmp_path):
    tasks = TASKS[db.kind]
    async with Registry(db.store(), agent="planner") as reg:
        deps = await _plan(reg, tasks, random.Random(11))
    assert sum(len(d) for d in deps.values()) > tasks // 2

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    # Output goes to files, not pipes: a worker must never block on a full pipe that nobody reads
    # while it holds a task (the others would wait out its lease).
    logs = [(tmp_path / f"worker-{i}.out", tmp_path / f"worker-{i}.err") for i in range(PROCS)]
    procs = []
    for i, (out, err) in enumerate(logs):
        with open(out, "w") as o, open(err, "w") as e:
            procs.append(subprocess.Popen([sys.executable, str(WORKER), db.location, f"worker-{i}", str(i)],
                                          stdout=o, stderr=e, text=True, env=env))
    for p in procs:
        p.wait(timeout=600)
    outputs = [(out.read_text(), err.read_text()) for out, err in logs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    claims = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    per_worker = [len(out.splitlines()) for out, _ in outputs]
    assert all(n > 0 for n in per_worker), f"every process should have claimed work: {per_worker}"

    async with Registry(db.store(), agent="checker") as reg:
        counts = await reg.counts()
        assert counts[State.DONE] == tasks, counts
        events = [e async for page in reg.event_pages() for e in page]
        assert await reg.verify() == []

    claim_events = [e for e in events if e.type == "claimed"]
    # exactly one claim event per acknowledged claim, and the same leases
    assert len(claim_events) == len(claims)
    assert sorted(e.data["set"]["lease_hash"] for e in claim_events) == sorted(lease_hash(c["lease"]) for c in claims)

    check_history(events, deps, records=[])  # zero double claims; nothing started before its dependencies
