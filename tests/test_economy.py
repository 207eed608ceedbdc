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

from .helpers import FakeClock

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


LIFECYCLE_LIMIT = 900  # bytes a model sees for one task's lifecycle: its calls' arguments and the answers


async def test_a_tasks_lifecycle_costs_the_model_at_most_900_bytes(db):
    """create_tasks (one task) + claim(start=true) + checkpoint + complete: the arguments the model
    writes and the text it reads back, as compact JSON."""
    seen: list[tuple[str, int, int]] = []
    async with Client(create_server(db.location, agent="worker")) as client:
        async def call(tool: str, **args: Any) -> dict[str, Any]:
            result = await client.call_tool(tool, args)
            assert not result.is_error, result.content
            text = "".join(c.text for c in result.content)
            seen.append((tool, compact(args), len(text.encode())))
            return result.structured_content or {}

        await call("create_tasks", tasks=[{"title": "Write the parser", "description": "Parse the config file"}])
        got = await call("claim", start=True)
        tid, lease = got["task"]["id"], got["lease"]
        assert got["task"]["state"] == "ACTIVE" and got["lease_expires_at"]
        await call("checkpoint", task_id=tid, lease=lease, data={"step": 1}, progress=50)
        assert (await call("complete", task_id=tid, lease=lease, result="done"))["state"] == "DONE"
    total = sum(a + b for _, a, b in seen)
    assert total <= LIFECYCLE_LIMIT, f"{total} bytes: {seen}"


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


# Names an answer may hold about a task that the task itself (its model, its export) does not: what
# is derived for the reader. Every other name must be the task's own, with the task's value.
DERIVED = {"readiness", "errors", "next", "has_checkpoint", "blocks"}
SYNONYMS = {"retries", "checkpoint", "checkpoint_at", "times", "expires_at", "lease_expiry"}


def task_shaped(value: Any) -> list[dict[str, Any]]:
    """Every object in `value` that describes a task (it has an `id` beginning with t-)."""
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        if isinstance(value.get("id"), str) and value["id"].startswith("t-"):
            found.append(value)
        for v in value.values():
            found += task_shaped(v)
    elif isinstance(value, list):
        for v in value:
            found += task_shaped(v)
    return found


async def test_a_field_has_one_name_in_tools_resources_cli_json_and_export(db, tmp_path):
    import subprocess
    import sys

    from mcp_tasks.stores import make_store
    from mcp_tasks.transfer import export_to_file

    answers: list[Any] = []
    clock = FakeClock()
    async with Client(create_server(db.location, agent="worker", clock=clock)) as client:
        async def call(tool: str, **args: Any) -> dict[str, Any]:
            result = await client.call_tool(tool, args)
            assert not result.is_error, result.content
            answers.append(result.structured_content)
            return result.structured_content or {}

        async def read(uri: str) -> Any:
            answers.append(json.loads((await client.read_resource(uri)).contents[0].text))

        ids = (await call("create_tasks", tasks=[{"title": "flaky", "tags": ["x"]}, {"title": "other"}]))["ids"]
        first = await call("claim", task_id=ids[0], start=True)
        await call("checkpoint", task_id=ids[0], lease=first["lease"], data={"step": 1}, progress=10)
        await call("fail", task_id=ids[0], lease=first["lease"], error="broke", retryable=True)
        clock.advance(3600)  # past the retry backoff
        await call("list_available")
        again = await call("claim", task_id=ids[0], start=True)
        await call("complete", task_id=ids[0], lease=again["lease"], result="ok", usage={"tokens": 7})
        await call("get_task", task_id=ids[0], events=20, event_data=True)
        await call("find_tasks")
        for uri in (f"task://{ids[0]}", f"task://{ids[0]}/events", "agent://worker/tasks", "tasks://available",
                    "tasks://board", "events://recent"):
            await read(uri)
    shown = subprocess.run([sys.executable, "-m", "mcp_tasks", "show", ids[0], "--db", db.location, "--json"],
                           capture_output=True, text=True, check=True)
    answers.append(json.loads(shown.stdout)["task"])

    store = make_store(db.location)
    await store.open()
    try:
        await export_to_file(store, tmp_path / "export.jsonl")
    finally:
        await store.close()
    records = [json.loads(line) for line in (tmp_path / "export.jsonl").read_text(encoding="utf-8").splitlines()]
    exported = {r["task"]["id"]: r["task"] for r in records if "task" in r}

    objects = task_shaped(answers)
    assert len(objects) > 10
    compared = 0
    for obj in objects:
        own = exported[obj["id"]]
        assert not SYNONYMS & obj.keys(), obj
        assert obj.keys() <= own.keys() | DERIVED, (obj.keys() - own.keys() - DERIVED, obj)
        if obj.get("version") != own["version"]:
            continue  # an answer from before the task's last change: its values were true then
        for name in obj.keys() & own.keys() & {"retry_count", "checkpoint_data", "progress", "title", "tags", "state",
                                               "usage", "max_retries", "result"}:
            assert obj[name] == own[name] or (name == "usage" and {**own[name], **obj[name]} == own[name]), (name, obj)
        compared += 1
    assert compared >= 3
    texts = json.dumps(answers)
    assert not any(f'"{s}":' in texts for s in SYNONYMS), [s for s in SYNONYMS if f'"{s}":' in texts]
