"""Run every example for real: the planner, two agent loops racing on one database, the desktop
config; on every store (the examples pass `--db` through to `mcp-tasks serve`)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters

from mcp_tasks import Registry

from .databases import TestDatabase

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CLAIM_LINE = re.compile(r"^\[(?P<agent>[\w-]+)\] claimed (?P<id>t-\S+) attempt (?P<attempt>\d+) \((?P<type>[\w-]+)\):")
TOOLS = {"list_available", "claim", "start", "checkpoint", "complete", "fail", "pause", "resume", "release",
         "create_tasks", "update_task", "cancel", "schedule", "retry", "review", "get_task", "find_tasks"}


async def run(args: list[str], cwd: Path, timeout: float = 60) -> str:
    """Run `python ARGS` in `cwd`; return stdout, failing the test (with stderr) on a non-zero exit."""
    proc = await asyncio.create_subprocess_exec(sys.executable, *args, cwd=cwd, env=ENV,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{out.decode()}\n{err.decode()}"
    return out.decode()


def server(db: str, agent: str) -> StdioServerParameters:
    """The registry server over stdio, as the examples start it."""
    return StdioServerParameters(command=sys.executable, env={"PYTHONPATH": str(ROOT)},
                                 args=["-m", "mcp_tasks", "serve", "--db", db, "--agent", agent])


async def tool(client: Client, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Call a tool that must succeed; return its structured result."""
    result = await client.call_tool(name, args)
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def wait_for_work(client: Client, patience: float = 30) -> None:
    """Wait until some task is claimable (a failed task backs off for a second or two before its retry)."""
    deadline = time.monotonic() + patience
    while not (await tool(client, "list_available", {}))["tasks"]:
        assert time.monotonic() < deadline, "no task became ready"
        await asyncio.sleep(0.1)


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".json")} == {
        "agent_loop.py", "planner.py", "claude_desktop_config.json"}


async def test_planner_then_two_agents_finish_the_plan(db: TestDatabase, tmp_path: Path) -> None:
    location = db.location
    planned = await run([str(EXAMPLES / "planner.py"), "--db", location, "--goal", "Ship the example"], tmp_path)
    by_key = dict(re.findall(r"^  (\w+)\s+(t-\S+)$", planned, re.MULTILINE))
    assert set(by_key) == {"research", "inventory", "draft", "build", "docs", "ship"}, planned
    # Only the two roots are ready at first; the board counts all six as PENDING.
    assert set(re.findall(r"^ready: (t-\S+)", planned, re.MULTILINE)) == {by_key["research"], by_key["inventory"]}
    assert "board: PENDING 6; ready now: 2" in planned

    outputs: list[str] = []
    async with Client(server(location, "reviewer")) as reviewer:
        # Agents stop when nothing is ready (work-loop.md step 1), so run them in rounds; between rounds
        # a different agent approves work waiting in REVIEW and waits out retry backoff. Every round
        # ends at least one attempt (agent-a takes any type), and the plan has 6 tasks + 1 retry.
        for _ in range(7 + 1):
            tasks = (await tool(reviewer, "find_tasks", {"limit": 100}))["tasks"]
            assert not [t for t in tasks if t["state"] in ("FAILED", "CANCELLED")], tasks
            if all(t["state"] == "DONE" for t in tasks):
                break
            for t in tasks:
                if t["state"] == "REVIEW":
                    await tool(reviewer, "review", {"task_id": t["id"], "approve": True, "comment": "looks right"})
            await wait_for_work(reviewer)
            loop = [str(EXAMPLES / "agent_loop.py"), "--db", location, "--step-seconds", "0.05"]
            outputs += await asyncio.gather(
                run([*loop, "--agent", "agent-a"], tmp_path),
                run([*loop, "--agent", "agent-b", "--capability", "research", "--capability", "write",
                     "--max-tasks", "1"], tmp_path),
            )
        else:
            raise AssertionError(f"the plan did not finish: {tasks}")

        assert sorted(t["id"] for t in tasks) == sorted(by_key.values())
        details = {tid: await tool(reviewer, "get_task", {"task_id": tid, "events": 50}) for tid in by_key.values()}

    # What the agents printed is exactly what the event log recorded: every claim, by whom.
    printed = [m for out in outputs for m in map(CLAIM_LINE.match, out.splitlines()) if m]
    logged = Counter((tid, e["actor"]) for tid, d in details.items() for e in d["events"] if e["type"] == "claimed")
    assert Counter((m["id"], m["agent"]) for m in printed) == logged
    # Each claim also started the task (claim with start=true): the very next event, by the same agent.
    for d in details.values():
        events = d["events"]
        for claimed, after in zip(events, events[1:]):
            if claimed["type"] == "claimed":
                assert (after["type"], after["seq"], after["actor"]) == ("started", claimed["seq"] + 1, claimed["actor"])
    # No task was held twice: each attempt of each task was claimed by exactly one process.
    attempts = Counter((m["id"], int(m["attempt"])) for m in printed)
    assert max(attempts.values()) == 1
    for tid, d in details.items():
        assert sorted(a for t, a in attempts if t == tid) == list(range(1, d["task"]["retry_count"] + 2))
    # Each process finished every task it claimed, and stopped when nothing was ready or, for
    # agent-b (--max-tasks 1), after its first task.
    for out in outputs:
        lines = out.splitlines()
        claims = [m for m in map(CLAIM_LINE.match, lines) if m]
        for m in claims:
            assert re.search(rf"\] (completed|failed) {m['id']} ->", out), out
        if lines[-1].endswith("stopping as asked; tasks finished: 1"):
            assert lines[0].startswith("[agent-b]") and len(claims) == 1, out
        else:
            assert "nothing to claim" in lines[-1], out
            assert not lines[0].startswith("[agent-b]") or not claims, out
    # The capability filter held: agent-b does research and writing only.
    assert {m["type"] for m in printed if m["agent"] == "agent-b"} <= {"research", "write"}

    # The flaky task failed once, was retried, and the retry resumed from the checkpoint.
    flaky = details[by_key["inventory"]]["task"]
    assert flaky["retry_count"] == 1 and "simulated crash" in flaky["errors"][0]
    assert flaky["result"]["resumed_from_step"] == 2
    assert any(f"resuming {flaky['id']} from checkpoint: step 3/4" in out for out in outputs)
    # The reviewed task was approved by someone other than its assignee.
    draft = details[by_key["draft"]]["task"]
    assert draft["reviewer"] == "reviewer" != draft["assignee"]
    assert all(d["task"]["state"] == "DONE" and d["task"]["result"]["outputs"] for d in details.values())

    verified = await run(["-m", "mcp_tasks", "verify", "--db", location], tmp_path)
    assert verified.startswith("ok: 6 tasks")


async def test_claude_desktop_config_starts_a_server(db: TestDatabase) -> None:
    config = json.loads((EXAMPLES / "claude_desktop_config.json").read_text())
    entry = config["mcpServers"]["tasks"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entry["command"] in scripts  # the console script the package installs
    assert set(entry["env"]) == {"MCP_TASKS_DB"}

    # Launch what the `mcp-tasks` script runs, with the config's args, and the test's database.
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_tasks", *entry["args"]],
                                   env={**entry["env"], "MCP_TASKS_DB": db.location, "PYTHONPATH": str(ROOT)})
    async with Client(params) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        created = await tool(client, "create_tasks", {"tasks": [{"title": "hello from the desktop"}]})
        task = (await tool(client, "get_task", {"task_id": created["ids"][0]}))["task"]
    assert task["created_by"] == entry["args"][entry["args"].index("--agent") + 1]
    async with Registry(db.store(), agent="checker") as reg:  # kept where MCP_TASKS_DB said
        assert (await reg.get(task["id"])).title == "hello from the desktop"
