"""A worker agent: the reference implementation of prompts/work-loop.md.

It starts `python -m mcp_tasks serve` as its MCP server over stdio and follows the work-loop prompt
step by step: claim with start=true (and a request_id) -> read the checkpoint -> work with
checkpoints -> complete, or fail(retryable=True) when the work raises. It stops when nothing is ready.
The "work" is simulated; replace `work_step` with your model or tool calls.

    python examples/agent_loop.py --db tasks.db --agent agent-a --capability research
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Callable
from typing import Any

from mcp import Client, MCPError, StdioServerParameters
from mcp.types import REQUEST_TIMEOUT

STEPS = ("read the brief", "gather inputs", "produce the output", "check the output")


class Refused(Exception):
    """The registry said no (wrong state, lease lost): the text says why and what is allowed now."""


def request_id(action: str) -> str:
    """A fresh retry key: new for every new action, reused only to repeat a call whose answer was lost."""
    return f"{action}-{uuid.uuid4().hex[:12]}"


async def call(client: Client, tool: str, args: dict[str, Any], attempts: int = 3) -> dict[str, Any]:
    """Call a tool and return its structured result; raise Refused when the registry refuses.

    A timed-out call is repeated with the SAME arguments, request_id included, so a call that did
    reach the server takes effect once and its first answer comes back.
    """
    args = {**args, "request_id": args.get("request_id") or request_id(tool)}
    for attempt in range(1, attempts + 1):
        try:
            result = await client.call_tool(tool, args, read_timeout_seconds=30)
        except MCPError as exc:
            if exc.code != REQUEST_TIMEOUT or attempt == attempts:
                raise
            continue
        if result.is_error:
            raise Refused(result.content[0].text)
        return result.structured_content or {}
    raise AssertionError("unreachable")


async def work_step(task: dict[str, Any], step: int, delay: float) -> str:
    """One unit of simulated work. Tasks tagged "flaky" crash in step 3 of their first attempt."""
    await asyncio.sleep(delay)
    if "flaky" in task.get("tags", []) and task["retry_count"] == 0 and step == 2:
        raise RuntimeError(f"simulated crash while trying to {STEPS[step]} (tag 'flaky', first attempt)")
    return f"{STEPS[step]}: ok"


async def run_task(
    client: Client, say: Callable[[str], None], task: dict[str, Any], lease: str, delay: float
) -> None:
    """Steps 2-4 of the loop for one claimed and started task. Raises Refused if the task stops being ours."""
    tid = task["id"]
    # 2. Read before you work: a checkpoint means an earlier attempt got part-way.
    saved = task.get("checkpoint_data")
    state = saved if isinstance(saved, dict) and "next_step" in saved else {"next_step": 0, "outputs": []}
    resumed_from = state["next_step"]
    if resumed_from:
        say(f"resuming {tid} from checkpoint: step {resumed_from + 1}/{len(STEPS)}")
    for error in task.get("errors", []):
        say(f"earlier error on {tid}: {error}")

    # 3. Work, checkpointing after every step with what a stranger needs to continue.
    calls = 0
    while state["next_step"] < len(STEPS):
        step = state["next_step"]
        try:
            output = await work_step(task, step, delay)
        except Exception as exc:  # noqa: BLE001  # the work failed (any error): 4. report it, retryable
            say(f"work on {tid} raised: {exc}")
            status = await call(client, "fail", {"task_id": tid, "lease": lease, "error": str(exc), "retryable": True})
            say(f"failed {tid} -> {status['state']} ({status.get('next', '')})")
            return
        calls += 1
        state = {"next_step": step + 1, "outputs": [*state["outputs"], output]}
        progress = 100 * state["next_step"] // len(STEPS)
        await call(client, "checkpoint", {"task_id": tid, "lease": lease, "data": state,
                                          "note": f"did: {STEPS[step]}", "progress": progress})
        say(f"checkpoint {tid} step {step + 1}/{len(STEPS)} ({progress}%)")

    # 4. Success. REVIEW means another agent approves it; either way we are done with it.
    result = {"summary": f"finished: {task['title']}", "outputs": state["outputs"], "resumed_from_step": resumed_from}
    status = await call(client, "complete", {"task_id": tid, "lease": lease, "result": result,
                                             "usage": {"api_calls": calls}})
    say(f"completed {tid} -> {status['state']}")


async def main(argv: list[str] | None = None) -> int:
    """Run the work loop until nothing is ready or --max-tasks tasks are finished."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True, help="the database shared with the other agents: a SQLite file or a postgresql:// URL")
    p.add_argument("--agent", default=f"agent-{os.getpid()}", help="this agent's name")
    p.add_argument("--max-tasks", type=int, default=None, help="stop after finishing N tasks (completed or failed)")
    p.add_argument("--capability", action="append", default=[], help="task type this agent does (repeatable)")
    p.add_argument("--step-seconds", type=float, default=0.2, help="simulated time per work step")
    args = p.parse_args(argv)

    def say(line: str) -> None:
        print(f"[{args.agent}] {line}", flush=True)

    # The server runs as our child; the stdio client passes only a minimal environment, so hand on
    # PYTHONPATH for source checkouts.
    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
    server = StdioServerParameters(command=sys.executable, env=env,
                                   args=["-m", "mcp_tasks", "serve", "--db", args.db, "--agent", args.agent])
    finished = 0
    async with Client(server) as client:
        while args.max_tasks is None or finished < args.max_tasks:
            # 1. Claim and start: one atomic call; `call` repeats it with the same request_id after a timeout.
            claim_args: dict[str, Any] = {"start": True, "request_id": request_id("claim")}
            if args.capability:
                claim_args["capabilities"] = args.capability
            got = await call(client, "claim", claim_args)
            task, lease = got.get("task"), got.get("lease")
            if task is None:
                say(f"nothing to claim: {got.get('message', '')} Stopping; tasks finished: {finished}.")
                return 0
            say(f"claimed {task['id']} attempt {task['retry_count'] + 1} ({task['type']}): {task['title']}")
            try:
                await run_task(client, say, task, lease, args.step_seconds)
                finished += 1
            except Refused as exc:
                # Lease lost or state changed under us: stop working on it and claim again.
                say(f"gave up {task['id']}: {exc}")
    say(f"stopping as asked; tasks finished: {finished}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
