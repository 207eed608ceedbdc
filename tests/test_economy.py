"""What mcp-tasks costs an agent: the bytes of its tool definitions and of its answers.

The limits are those of the agent economy issue: the agent role's tools/list at most 6,000 bytes
as name + description + inputSchema and 12,000 bytes whole (compact JSON, as a client sends it to
the model); numbers that are whole stay whole in answers.
"""

from __future__ import annotations

import json
from typing import Any

from mcp import Client

from mcp_tasks.server import create_server
from mcp_tasks.states import Role

AGENT_CORE_LIMIT = 6_000  # name + description + inputSchema of every tool the agent role sees
AGENT_WHOLE_LIMIT = 12_000  # the whole tools/list entries, output schemas and annotations included


def compact(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


async def tool_list_sizes(location: str, role: Role) -> tuple[int, int, int]:
    """(tools, core bytes, whole bytes) of `role`'s tools/list."""
    async with Client(create_server(location, agent="sizes", role=role)) as client:
        tools = (await client.list_tools()).tools
    whole = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    core = [{"name": t.name, "description": t.description, "inputSchema": t.input_schema} for t in tools]
    return len(tools), compact(core), compact(whole)


async def test_the_agent_roles_tool_list_fits_its_limits_and_each_role_sees_only_its_tools(db):
    sizes = {role: await tool_list_sizes(db.location, role) for role in Role}
    tools, core, whole = sizes[Role.AGENT]
    assert core <= AGENT_CORE_LIMIT, f"agent tools/list: {core} bytes of names, descriptions and input schemas"
    assert whole <= AGENT_WHOLE_LIMIT, f"agent tools/list: {whole} bytes whole"
    counts = [sizes[r][0] for r in (Role.VIEWER, Role.AGENT, Role.PLANNER, Role.ADMIN)]
    assert counts == sorted(counts) and counts[0] < counts[1] < counts[2], sizes  # each role sees fewer than the next


async def test_whole_numbers_stay_whole_in_answers(db):
    async with Client(create_server(db.location, agent="worker")) as client:
        async def call(tool: str, **args: Any) -> tuple[dict[str, Any], str]:
            result = await client.call_tool(tool, args)
            assert not result.is_error, result.content
            return result.structured_content or {}, result.content[0].text

        tid = (await call("create_tasks", tasks=[{"title": "count tokens"}]))[0]["ids"][0]
        lease = (await call("claim", task_id=tid))[0]["lease"]
        await call("start", task_id=tid, lease=lease)
        await call("complete", task_id=tid, lease=lease, result="ok", usage={"tokens": 1234, "api_calls": 3, "cost": 0.5})
        answer, text = await call("get_task", task_id=tid)
    usage = answer["task"]["usage"]
    assert usage == {"tokens": 1234, "api_calls": 3, "cost": 0.5} and type(usage["tokens"]) is int
    assert '"tokens":1234,' in text and '"version":4' in text
