"""A fleet of agent processes on one database, and the checks run on what they leave behind.

`db` is a location as `--db` takes it (a SQLite file or a postgresql:// URL): every agent's server
process opens it, and the checks read it back through a registry."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mcp_tasks import Registry, State
from mcp_tasks.models import Event
from mcp_tasks.stores import make_store

AGENT = Path(__file__).parent / "programs" / "mcp_agent.py"
ROOT = Path(__file__).resolve().parent.parent
LEGAL = set(State)


async def make_plan(db: str, count: int, rng: random.Random, max_retries: int = 10) -> dict[str, list[str]]:
    """`count` tasks in batches of 500, each depending on up to two earlier ones. Returns deps by id."""
    ids: list[str] = []
    async with Registry(make_store(db, synchronous="NORMAL"), agent="planner") as reg:
        for start in range(0, count, 500):
            size = min(500, count - start)
            specs = []
            for j in range(size):
                local = [f"k{x}" for x in rng.sample(range(j), min(j, rng.randint(0, 2)))] if rng.random() < 0.6 else []
                earlier = rng.sample(ids, 1) if ids and rng.random() < 0.2 else []
                specs.append({"key": f"k{j}", "title": f"task {start + j}", "priority": rng.randint(1, 10),
                              "depends_on": local + earlier, "max_retries": max_retries})
            ids += (await reg.create_tasks(specs)).ids
        deps = {}
        for tid in ids:
            deps[tid] = (await reg.get(tid)).depends_on
    return deps


@dataclass
class Fleet:
    """Agent processes (each with its own server process) working on one database."""

    db: str
    workdir: Path
    lease: float = 60
    fail_rate: float = 0.05
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    started: int = 0

    @property
    def stop_file(self) -> Path:
        return self.workdir / "stop"

    def journal(self, name: str) -> Path:
        return self.workdir / f"{name}.jsonl"

    def start(self, name: str) -> None:
        self.started += 1
        err = open(self.workdir / f"{name}.{self.started}.err", "w")
        self.procs[name] = subprocess.Popen(
            [sys.executable, str(AGENT), self.db, name, str(self.started), str(self.journal(name)),
             str(self.stop_file), "--lease", str(self.lease), "--fail-rate", str(self.fail_rate)],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=err,
        )
        err.close()

    def server_of(self, name: str) -> int | None:
        """The pid of the `mcp-tasks serve` child of an agent process (Linux /proc)."""
        agent = self.procs[name].pid
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == agent:
                return int(stat.parent.name)
        return None

    def kill_agent(self, name: str) -> None:
        os.kill(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait()

    def stop(self, timeout: float = 120) -> list[int]:
        """Ask every agent to finish once nothing is left; returns their exit codes."""
        self.stop_file.touch()
        codes = []
        for p in self.procs.values():
            try:
                codes.append(p.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        return codes

    def errors(self) -> str:
        return "\n".join(p.read_text() for p in self.workdir.glob("*.err") if p.read_text().strip())

    def records(self) -> list[dict]:
        out = []
        for path in self.workdir.glob("*.jsonl"):
            for line in path.read_text().splitlines():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # the last line of a killed agent may be cut short
        return out


async def all_events(db: str) -> list[Event]:
    async with Registry(make_store(db), agent="checker") as reg:
        return [e async for page in reg.event_pages() for e in page]


EXPECTED_EVENT = {"claim": {"claimed"}, "start": {"started"}, "checkpoint": {"checkpoint"},
                  "complete": {"completed"}, "fail": {"failed", "retried"}}


def check_history(events: list[Event], deps: dict[str, list[str]], records: list[dict]) -> dict[str, int]:
    """Zero double claims, dependencies respected, every acknowledged change present. Returns counts."""
    by_task: dict[str, list[Event]] = {}
    holder: dict[str, str | None] = {}
    done_seq: dict[str, int] = {}
    for e in events:
        by_task.setdefault(e.task_id, []).append(e)
        assert e.to_state is None or e.to_state in LEGAL
        if e.type == "claimed":
            assert holder.get(e.task_id) is None, f"double claim of {e.task_id} at event {e.seq}"
            holder[e.task_id] = e.actor
        elif e.to_state in (State.PENDING, State.FAILED, State.DONE, State.CANCELLED) and e.type != "created":
            holder[e.task_id] = None
        if e.type == "started":
            for dep in deps[e.task_id]:
                assert dep in done_seq and done_seq[dep] < e.seq, f"{e.task_id} started before {dep} was DONE"
        if e.to_state == State.DONE:
            done_seq[e.task_id] = e.seq
    acked = 0
    for r in records:
        if r["op"] not in EXPECTED_EVENT or r.get("version") is None:
            continue
        history = by_task[r["task"]]
        # one event per version: the change that produced version v is the task's v-th event
        assert len(history) >= r["version"], f"acknowledged {r['op']} of {r['task']} v{r['version']} is missing"
        event = history[r["version"] - 1]
        assert event.type in EXPECTED_EVENT[r["op"]], (r, event)
        if r["op"] == "checkpoint":
            assert event.data["set"]["checkpoint_data"] == r["data"], (r, event)
        acked += 1
    return {"acked": acked, "claims": sum(e.type == "claimed" for e in events)}
