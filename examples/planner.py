"""A planner: turns a goal into a dependent batch of tasks with one `create_tasks` call.

It starts `python -m mcp_tasks serve` over stdio, creates the plan (batch keys + depends_on, a few
task types, one task that requires review, one tagged "flaky" so the example agents show a retry
resuming from its checkpoint), prints the ids by key, then reads the `tasks://board` resource and
`list_available` to show what agents can claim first.

    python examples/planner.py --db tasks.db --goal "Publish the 1.0 release notes"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from typing import Any

from mcp import Client, StdioServerParameters


def plan(goal: str) -> list[dict[str, Any]]:
    """The tasks for `goal`: two parallel roots, a reviewed draft, two parallel follow-ups, a finish."""
    return [
        {"key": "research", "title": f"Research: {goal}", "type": "research", "priority": 8,
         "description": "Collect the facts and constraints. Output: a list of findings in the result."},
        {"key": "inventory", "title": f"Inventory existing material for: {goal}", "type": "research",
         "priority": 7, "tags": ["flaky"],
         "description": "List what already exists. Tagged 'flaky': the example agent crashes on the first "
                        "attempt, to show fail(retryable) and resuming from the checkpoint."},
        {"key": "draft", "title": f"Draft the approach for: {goal}", "type": "write", "priority": 9,
         "depends_on": ["research", "inventory"], "requires_review": True,
         "description": "Write the approach from the findings. Another agent must approve it."},
        {"key": "build", "title": f"Build: {goal}", "type": "code", "priority": 6, "depends_on": ["draft"],
         "description": "Implement the approved draft. Output: paths of the changed files as artifacts."},
        {"key": "docs", "title": f"Document: {goal}", "type": "write", "priority": 5, "depends_on": ["draft"],
         "description": "Write the user-facing text for the approved draft."},
        {"key": "ship", "title": f"Ship: {goal}", "type": "code", "priority": 4, "depends_on": ["build", "docs"],
         "description": "Release the built and documented work."},
    ]


async def main(argv: list[str] | None = None) -> int:
    """Create the plan, then show the ids by key, the board and the ready tasks."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True, help="the database the agents share: a SQLite file or a postgresql:// URL")
    p.add_argument("--goal", default="Publish the 1.0 release notes", help="what the plan should achieve")
    args = p.parse_args(argv)

    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
    server = StdioServerParameters(command=sys.executable, env=env,
                                   args=["-m", "mcp_tasks", "serve", "--db", args.db, "--agent", "planner"])
    async with Client(server) as client:
        # One batch: all tasks are created or none, and depends_on may name keys of this batch.
        # The request_id makes a repeated call (after a timeout) return the same ids, not a copy.
        created = await client.call_tool(
            "create_tasks", {"tasks": plan(args.goal), "request_id": f"plan-{uuid.uuid4().hex[:12]}"})
        if created.is_error:
            print(f"plan refused: {created.content[0].text}", file=sys.stderr)
            return 1
        print(f"created {len(created.structured_content['ids'])} tasks for: {args.goal}")
        for key, task_id in created.structured_content["by_key"].items():
            print(f"  {key:<10} {task_id}")

        # The board resource: counts by state, who holds what, dead letters, blocked work.
        board = json.loads((await client.read_resource("tasks://board")).contents[0].text)
        counts = ", ".join(f"{state} {n}" for state, n in board["counts"].items() if n)
        print(f"board: {counts}; ready now: {board['ready']}")

        # What agents get first, in claim order (priority, then age).
        ready = (await client.call_tool("list_available", {})).structured_content["tasks"]
        for task in ready:
            print(f"ready: {task['id']} ({task['type']}, priority {task['priority']}): {task['title']}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
