"""An agent process for the load and crash tests: its own `mcp-tasks serve` over stdio, a work loop.

Usage: python mcp_agent.py DB NAME SEED JOURNAL STOPFILE [--lease S] [--fail-rate P]
(DB: what `--db` takes, a SQLite file or a postgresql:// URL)

Every acknowledged change is appended to JOURNAL as one JSON line, after the server answered:
{"op", "task", "version", ...}. The agent runs until STOPFILE exists and every task is finished (DONE, CANCELLED or dead).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent.parent


class Journal:
    """Line-per-record, flushed after every write (a SIGKILL can at most cut the last line)."""

    def __init__(self, path: str, agent: str) -> None:
        self.f = open(path, "a", encoding="utf-8")
        self.agent = agent

    def write(self, **record: object) -> None:
        self.f.write(json.dumps({"agent": self.agent, "pid": os.getpid(), **record}) + "\n")
        self.f.flush()


async def call(client: Client, tool: str, args: dict) -> tuple[bool, dict | str]:
    result = await client.call_tool(tool, args)
    if result.is_error:
        return False, result.content[0].text
    return True, result.structured_content or {}


async def nothing_left(client: Client) -> bool:
    """True when every task is DONE, CANCELLED or a dead letter."""
    board = json.loads((await client.read_resource("tasks://board")).contents[0].text)  # type: ignore[union-attr]
    return all(n == 0 for state, n in board["counts"].items() if state not in ("DONE", "CANCELLED", "FAILED"))


async def work(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    journal = Journal(args.journal, args.name)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_tasks", "serve", "--db", args.db, "--agent", args.name,
              "--lease-seconds", str(args.lease), "--reaper-interval", "0.3"],
        env={"PYTHONPATH": str(ROOT)},
    )
    async with Client(params) as client:
        journal.write(op="hello")
        idle = 0
        while True:
            ok, claim = await call(client, "claim", {"request_id": f"{args.name}-{os.getpid()}-{rng.random()}"})
            if not ok or "task" not in claim:
                if Path(args.stop).exists() and await nothing_left(client):
                    return
                idle += 1
                await anyio.sleep(min(0.02 * idle, 0.3))
                continue
            idle = 0
            task, lease = claim["task"], claim["lease"]
            tid = task["id"]
            journal.write(op="claim", task=tid, version=task["version"], checkpoint=task.get("checkpoint_data"))
            ok, res = await call(client, "start", {"task_id": tid, "lease": lease})
            if not ok:
                journal.write(op="refused", task=tid, tool="start", message=res)
                continue
            journal.write(op="start", task=tid, version=res["version"])
            step = (task.get("checkpoint_data") or {}).get("step", 0)
            for _ in range(rng.randint(1, 3)):
                step += 1
                data = {"step": step, "by": args.name, "pid": os.getpid(), "nonce": rng.randrange(10**9)}
                ok, res = await call(client, "checkpoint", {"task_id": tid, "lease": lease, "data": data})
                if not ok:
                    journal.write(op="refused", task=tid, tool="checkpoint", message=res)
                    break
                journal.write(op="checkpoint", task=tid, version=res["version"], data=data)
                await anyio.sleep(rng.random() * 0.01)
            else:
                if rng.random() < args.fail_rate:
                    ok, res = await call(client, "fail", {"task_id": tid, "lease": lease, "error": "random failure"})
                    journal.write(op="fail" if ok else "refused", task=tid, tool="fail",
                                  version=res.get("version") if ok else None)
                    continue
                ok, res = await call(client, "complete", {"task_id": tid, "lease": lease, "result": {"by": args.name}})
                if ok:
                    journal.write(op="complete", task=tid, version=res["version"])
                else:
                    journal.write(op="refused", task=tid, tool="complete", message=res)


def main() -> None:
    p = argparse.ArgumentParser()
    for name in ("db", "name", "seed", "journal", "stop"):
        p.add_argument(name)
    p.add_argument("--lease", type=float, default=60)
    p.add_argument("--fail-rate", type=float, default=0.05)
    args = p.parse_args()
    args.seed = int(args.seed)
    anyio.run(work, args)


if __name__ == "__main__":
    main()
