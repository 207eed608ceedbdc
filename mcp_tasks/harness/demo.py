"""`mcp-tasks demo`: simulated agents share one registry through real MCP clients.

The demo starts one `mcp-tasks serve` process per agent on a temporary SQLite file. A lead
agent plans a small software project with dependencies and later reviews the task that needs
review; worker agents claim, start, checkpoint and finish the work. Two tasks fail once and
are retried after a backoff; one worker's server is killed mid-task, and after its lease runs
out the reaper of another server requeues the task and a second worker resumes it from its
checkpoint. A reader follows the event log for what no agent reports itself (the reaper,
retries, unblocked work). The run ends with a summary per task and per agent and a replay
check of every task; the exit code is 0 only when every task is DONE and replay matches.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import TextContent

from .. import reports
from ..display import duration, pad, table
from ..errors import StoreUnavailable
from ..models import Event
from ..registry import Registry
from ..states import State
from ..stores import make_store

LEASE_SECONDS = 5  # the shortest lease the registry grants
REAPER_INTERVAL = 0.5
CALL_TIMEOUT = 20.0
POLL = 0.3
LOG_DELAY = 0.5  # lines are printed this late, in time order, so agents and the event log interleave
LEAD = "lead"
VICTIM = "agent-c"
# name, capabilities (task types it claims), protocol mode of its MCP client (legacy: 2025-11-25)
WORKERS: list[tuple[str, list[str], Literal["auto", "legacy"]]] = [
    ("agent-a", ["code", "docs"], "auto"),
    ("agent-b", ["code", "ops"], "auto"),
    (VICTIM, ["code", "docs"], "auto"),
    ("agent-d", ["docs", "ops"], "legacy"),
]
# The plan the lead creates with one create_tasks call; depends_on uses the batch keys.
PLAN: list[dict[str, Any]] = [
    {"key": "design", "title": "Write the design doc", "type": "docs", "priority": 9},
    {"key": "schema", "title": "Design the database schema", "type": "code", "priority": 9},
    {"key": "ci", "title": "Set up the CI pipeline", "type": "ops", "priority": 6},
    {"key": "db", "title": "Implement the storage layer", "type": "code", "depends_on": ["schema"]},
    {"key": "api", "title": "Build the REST API", "type": "code", "priority": 8, "depends_on": ["design", "schema"]},
    {"key": "ui", "title": "Build the web UI", "type": "code", "depends_on": ["design"]},
    {"key": "auth", "title": "Add login and sessions", "type": "code", "priority": 8, "depends_on": ["api"],
     "requires_review": True},
    {"key": "unit", "title": "Write unit tests", "type": "code", "depends_on": ["db", "api"]},
    {"key": "e2e", "title": "Run end-to-end tests", "type": "ops", "priority": 7, "depends_on": ["ui", "auth", "ci"]},
    {"key": "apidocs", "title": "Document the API", "type": "docs", "depends_on": ["api"]},
    {"key": "guide", "title": "Write the user guide", "type": "docs", "depends_on": ["ui"]},
    {"key": "release", "title": "Release 1.0", "type": "ops", "priority": 10,
     "depends_on": ["unit", "e2e", "apidocs", "guide"]},
]
# Simulated work: steps per task (one checkpoint each), and the tasks that fail on their first try.
STEPS = {"design": 3, "schema": 3, "ci": 2, "db": 3, "api": 3, "ui": 3, "auth": 3, "unit": 3, "e2e": 3,
         "apidocs": 2, "guide": 2, "release": 2}
FLAKY = {"unit": "2 tests failed: test_login, test_expiry (flaky clock fixture)",
         "e2e": "browser crashed: chromium exited with signal 11"}
FLAKY_STEP = 2  # the failing attempt fails at this step, after checkpointing the one before


class DemoError(Exception):
    """A tool call the demo relied on was refused or timed out."""


def server_pids(db: str, agent: str) -> list[int]:
    """Pids of `mcp-tasks serve` processes on `db` for `agent` (Linux /proc; empty elsewhere).

    The database path lies in this run's private temporary directory, so only our own children match.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0")]
        except OSError:
            continue
        pairs = set(itertools.pairwise(argv))
        if "serve" in argv and ("--db", db) in pairs and ("--agent", agent) in pairs:
            found.append(int(entry.name))
    return found


class Demo:
    """One run: the database, the shared log, and what the simulated agents know of each other."""

    def __init__(self, db: str, seed: int, verbose: bool) -> None:
        self.db = db
        self.seed = seed
        self.verbose = verbose
        self.t0 = time.time()
        self.titles: dict[str, str] = {}
        self.keys: dict[str, str] = {}
        self.failed_once: set[str] = set()
        self.killed: str | None = None
        self.alive = len(WORKERS)
        self.planned = anyio.Event()
        self.victim_claimed = anyio.Event()
        self.finished = anyio.Event()
        self._lines: list[tuple[float, int, str]] = []
        self._order = itertools.count()

    # ------------------------------------------------------------ output
    def say(self, who: str, text: str, at: float | None = None) -> None:
        """Log one line: seconds since the start, who, what (printed by `flush`, in time order)."""
        at = time.time() if at is None else at
        self.note(f"{at - self.t0:6.1f}s  {pad(who, 9)} {text}", at)

    def note(self, line: str, at: float) -> None:
        """Log a line as it is, sorted in at time `at`."""
        heapq.heappush(self._lines, (at, next(self._order), line))

    def flush(self, upto: float | None = None) -> None:
        """Print the lines logged for times up to `upto` (all when None)."""
        while self._lines and (upto is None or self._lines[0][0] <= upto):
            print(heapq.heappop(self._lines)[2], flush=True)

    def name(self, tid: str) -> str:
        """A task as `t-xxx "Title"` for the log."""
        return f'{tid} "{self.titles.get(tid, "?")}"'

    # ------------------------------------------------------------ plumbing
    def server(self, agent: str) -> StdioServerParameters:
        """How to start the MCP server process of one agent."""
        root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        args = ["-m", "mcp_tasks", "serve", "--db", self.db, "--agent", agent, "--sync", "normal",
                "--lease-seconds", str(LEASE_SECONDS), "--reaper-interval", str(REAPER_INTERVAL),
                "--log-level", "error"]
        return StdioServerParameters(command=sys.executable, args=args, env={"PYTHONPATH": path})

    async def call(self, client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """Call a tool; its structured result, or DemoError with the server's message."""
        with anyio.fail_after(CALL_TIMEOUT):
            res = await client.call_tool(tool, args)
        if res.is_error:
            first = res.content[0] if res.content else None
            text = first.text if isinstance(first, TextContent) else "(no message)"
            raise DemoError(text)
        return res.structured_content or {}

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake up as soon as the run is finished."""
        with anyio.move_on_after(seconds):
            await self.finished.wait()

    # ------------------------------------------------------------ the lead: plans, then reviews
    async def lead(self) -> None:
        """Create the plan, then approve every task that waits for review until the run ends."""
        try:
            await self._lead()
        except Exception as exc:  # without its lead the run cannot finish: end it now
            self.say(LEAD, f"stopped: {exc!r}")
            self.planned.set()
            self.finished.set()

    async def _lead(self) -> None:
        async with Client(self.server(LEAD)) as client:
            tasks = [dict(spec) for spec in PLAN]
            now = time.time()  # lines are stamped with the time of the request, before its effects
            created = await self.call(client, "create_tasks", {"tasks": tasks, "request_id": "demo-plan"})
            by_key: dict[str, str] = created["by_key"]
            for spec in PLAN:
                self.titles[by_key[spec["key"]]] = spec["title"]
                self.keys[by_key[spec["key"]]] = spec["key"]
            self.say(LEAD, f"created a plan of {len(PLAN)} tasks with create_tasks:", now)
            for spec in PLAN:
                after = ", ".join(by_key[d] for d in spec.get("depends_on", [])) or "-"
                review = "  [needs review]" if spec.get("requires_review") else ""
                self.note(f"{'':18}{by_key[spec['key']]}  {pad(spec['type'], 4)}  {pad(spec['title'], 28)} "
                          f"after: {after}{review}", now)
            self.planned.set()
            while not self.finished.is_set():
                found = await self.call(client, "find_tasks", {"state": "REVIEW"})
                for row in found.get("tasks", []):
                    await self.review(client, row["id"])
                await self.pause(POLL)

    async def review(self, client: Client, tid: str) -> None:
        """Look at a finished task and approve it (the lead is never the assignee)."""
        at = time.time()
        got = await self.call(client, "get_task", {"task_id": tid})
        task = got["task"]
        self.say(LEAD, f"reviewing {self.name(tid)} by {task.get('assignee')}: result {json.dumps(task.get('result'))}",
                 at)
        at = time.time()
        status = await self.call(client, "review", {"task_id": tid, "approve": True, "comment": "looks good, ship it",
                                                    "request_id": f"review-{tid}"})
        self.say(LEAD, f"approved {self.name(tid)} (work by {task.get('assignee')}) -> {status['state']}", at)

    # ------------------------------------------------------------ workers
    async def worker(self, name: str, caps: list[str], mode: Literal["auto", "legacy"]) -> None:
        """Claim, work on and finish tasks until every task is DONE (or this agent is killed)."""
        try:
            await self._worker(name, caps, mode)
        except Exception as exc:  # the others carry on without this agent
            self.say(name, f"stopped: {exc!r}")
        finally:
            self.alive -= 1
            if self.alive == 0:
                self.finished.set()

    async def _worker(self, name: str, caps: list[str], mode: Literal["auto", "legacy"]) -> None:
        rng = random.Random(f"{self.seed}:{name}")
        async with Client(self.server(name), mode=mode) as client:
            self.say(name, f"connected over stdio (protocol {client.protocol_version}), works on: {', '.join(caps)}")
            await self.planned.wait()
            if name != VICTIM:  # let the victim take its first task, so that the crash happens early
                with anyio.move_on_after(5):
                    await self.victim_claimed.wait()
            n = 0
            while not self.finished.is_set():
                n += 1
                at = time.time()
                got = await self.call(client, "claim", {"capabilities": caps, "request_id": f"{name}-claim-{n}"})
                if got.get("task") is None:
                    await self.pause(POLL + rng.uniform(0, 0.15))
                    continue
                if name == VICTIM:
                    self.victim_claimed.set()
                try:
                    if await self.work(client, name, got["task"], got["lease"], rng, at):
                        return
                except DemoError as exc:  # e.g. the lease ran out: the task is someone else's now
                    self.say(name, f"gave up {self.name(got['task']['id'])}: {exc}")

    async def work(
        self, client: Client, name: str, task: dict[str, Any], lease: str, rng: random.Random, at: float
    ) -> bool:
        """Do one task claimed at time `at`; True when this agent was killed while doing it."""
        tid, key = task["id"], self.keys[task["id"]]
        steps, first = STEPS[key], 1
        attempt = task["retry_count"] + 1
        checkpoint = task.get("checkpoint_data")
        claimed = f"claimed {self.name(tid)} (lease {LEASE_SECONDS}s, attempt {attempt})"
        if isinstance(checkpoint, dict) and "step" in checkpoint:
            first = int(checkpoint["step"]) + 1
            self.say(name, f"{claimed}, resuming from checkpoint {json.dumps(checkpoint)}", at)
        else:
            self.say(name, claimed, at)
        ref = {"task_id": tid, "lease": lease}
        await self.call(client, "start", ref)
        for step in range(first, steps + 1):
            await anyio.sleep(rng.uniform(0.3, 0.75))
            if key in FLAKY and key not in self.failed_once and step == FLAKY_STEP:
                self.failed_once.add(key)
                at = time.time()
                status = await self.call(client, "fail", {**ref, "error": FLAKY[key], "retryable": True,
                                                          "request_id": f"{name}-fail-{tid}-{attempt}"})
                self.say(name, f"FAILED {self.name(tid)} at step {step}/{steps}: {FLAKY[key]} "
                               f"(retryable; now {status['state']})", at)
                return False
            data = {"step": step, "of": steps, "by": name}
            at = time.time()
            await self.call(client, "checkpoint", {**ref, "data": data, "progress": 100 * step // steps,
                                                   "note": f"step {step} of {steps} done"})
            if self.verbose or name == VICTIM:
                self.say(name, f"checkpoint {tid} step {step}/{steps}", at)
            if name == VICTIM and self.killed is None and step < steps:
                await self.die(name, tid, step, steps)
                return True
        result = {"summary": f"{self.titles[tid]}: finished", "steps": steps}
        usage = {"tokens": rng.randint(800, 6000), "api_calls": steps + 1}
        at = time.time()
        status = await self.call(client, "complete", {**ref, "result": result, "usage": usage,
                                                      "request_id": f"{name}-complete-{tid}-{attempt}"})
        if status["state"] == State.REVIEW.value:
            self.say(name, f"finished {self.name(tid)} -> REVIEW (needs another agent's approval)", at)
        else:
            self.say(name, f"done {self.name(tid)} -> {status['state']}", at)
        return False

    async def die(self, name: str, tid: str, step: int, steps: int) -> None:
        """Kill this agent's server process hard, in the middle of a task it holds."""
        self.killed = tid
        pids = server_pids(self.db, name)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        how = (f"its server (pid {', '.join(map(str, pids))}) got SIGKILL" if pids
               else "it disconnects without finishing (no /proc here to find its server)")
        self.say(name, f"KILLED mid-task: {how} while holding {self.name(tid)} at step {step}/{steps}; "
                       f"nobody releases the lease, it runs out in {LEASE_SECONDS}s")

    # ------------------------------------------------------------ the event log
    async def follow(self, reg: Registry) -> None:
        """Print what no agent reports itself, and end the run once every task is DONE."""
        seq = 0
        while True:
            self.flush(time.time() - LOG_DELAY)
            if not self.planned.is_set():
                await anyio.sleep(0.1)
                continue
            async for page in reg.event_pages(seq):
                for ev in page:
                    self.on_event(ev)
                seq = page[-1].seq
            if self.finished.is_set():
                return
            counts = await reg.counts()
            if counts[State.DONE] == len(PLAN):
                self.finished.set()
                continue  # one more pass logs the last events
            await anyio.sleep(0.1)

    def on_event(self, ev: Event) -> None:
        """One event as a log line, when it is news: expiries, requeues, newly ready work."""
        fields = ev.data.get("set", {})
        if ev.type == "lease_expired":
            move = f"{ev.from_state.value if ev.from_state else '?'} -> {ev.to_state.value if ev.to_state else '?'}"
            self.say("reaper", f"lease expired: {ev.data.get('holder')} held {self.name(ev.task_id)} "
                               f"without a heartbeat; {move}", ev.at)
        elif ev.type == "retried":
            wait = f" in {duration(ev.data['backoff'])} (backoff)" if "backoff" in ev.data else " now"
            self.say("registry", f"requeued {self.name(ev.task_id)}: retry {fields.get('retry_count')}{wait}", ev.at)
        elif ev.type == "dependency_done" and fields.get("unmet_deps") == 0:
            self.say("registry", f"ready: {self.name(ev.task_id)} (all dependencies done)", ev.at)


# ---------------------------------------------------------------- summary


async def summary(demo: Demo, reg: Registry) -> bool:
    """Print the per-task and per-agent tables and the replay check; True when all is well."""
    events = [e async for page in reg.event_pages() for e in page]
    claims: dict[str, int] = {}
    agent_claims: dict[str, int] = {}
    reviews: dict[str, int] = {}
    for ev in events:
        if ev.type == "claimed":
            claims[ev.task_id] = claims.get(ev.task_id, 0) + 1
            agent_claims[ev.actor] = agent_claims.get(ev.actor, 0) + 1
        elif ev.type == "approved":
            reviews[ev.actor] = reviews.get(ev.actor, 0) + 1
    rows, all_done = [], True
    for tid in demo.titles:
        t = await reg.get(tid)
        all_done &= t.state == State.DONE
        rows.append([t.id, t.title, t.type, t.state.value, claims.get(tid, 0), t.retry_count,
                     t.assignee if t.state == State.DONE else "-", t.reviewer or "-",
                     duration(t.cycle_time)])
    print("\nTasks:")
    print(table(rows, ["id", "title", "type", "state", "claims", "retries", "done by", "reviewer", "cycle"], "  "))
    metrics = await reports.metrics(reg)
    names = sorted(set(agent_claims) | set(reviews) | set(metrics.by_agent))
    arows = []
    for name in names:
        g = metrics.by_agent.get(name, {})
        arows.append([name, agent_claims.get(name, 0), g.get("done", 0), g.get("failed", 0),
                      g.get("lease_expiries", 0), reviews.get(name, 0), g.get("tokens", 0)])
    print("\nAgents:")
    print(table(arows, ["agent", "claims", "done", "failed", "lease expiries", "reviews", "tokens"], "  "))
    diffs = await reg.verify()
    print(f"\nverify: {len(demo.titles)} tasks, {len(diffs)} differences"
          + (" (every task equals the replay of its events)" if not diffs else ""))
    for d in diffs[:20]:
        print(f"  {d.task_id}  {d.field}: stored={d.stored!r} replayed={d.replayed!r}")
    return all_done and not diffs and len(demo.titles) == len(PLAN)


# ---------------------------------------------------------------- entry point


async def run(args: argparse.Namespace) -> int:
    """Run the whole demo; 0 when every task ended DONE and replay found no difference."""
    tmp = tempfile.mkdtemp(prefix="mcp-tasks-demo-")
    db = getattr(args, "db", None) or str(Path(tmp) / "demo.db")
    demo = Demo(db, args.seed, args.verbose)
    ok = False
    try:
        store = make_store(db, synchronous="NORMAL")
        print(f"mcp-tasks demo: {len(WORKERS)} workers and a lead, one `mcp-tasks serve` process each, "
              f"sharing {store.location}")
        print(f"leases last {LEASE_SECONDS}s, reapers sweep every {REAPER_INTERVAL}s; "
              f"{VICTIM} will be killed mid-task\n", flush=True)
        async with Registry(store, agent="demo") as reg:
            if sum((await reg.counts()).values()):
                raise StoreUnavailable(f"{store.location} already holds tasks; the demo needs an empty registry "
                                       "(on PostgreSQL, a new ?schema=NAME gives one)")
            try:
                with anyio.fail_after(args.timeout):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(demo.follow, reg)
                        tg.start_soon(demo.lead)
                        for name, caps, mode in WORKERS:
                            tg.start_soon(demo.worker, name, caps, mode)
            except TimeoutError:
                demo.flush()
                print(f"\ndemo did not finish within {args.timeout:.0f}s", flush=True)
            demo.flush()
            print(f"\nall agents disconnected after {duration(time.time() - demo.t0)}")
            ok = await summary(demo, reg)
    finally:
        demo.flush()  # also on Ctrl-C: show what happened so far
        if args.keep and not getattr(args, "db", None):
            print(f"\ndatabase kept: {db}\n  try: mcp-tasks stats --db {db}")
        else:  # a database the user named is theirs; the temporary folder goes either way
            shutil.rmtree(tmp, ignore_errors=True)
    print("demo ok" if ok else "demo FAILED: not every task is DONE or replay differs", flush=True)
    return 0 if ok else 1
