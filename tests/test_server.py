"""The MCP server through real clients: in-memory (both protocol eras), stdio and HTTP subprocesses.

Every test that keeps or reads tasks runs on every store (the `db` fixture; server processes get
`--db <location>`), changes made by another process included. The tests of the transport alone
(Host and Origin checks, the refusal to listen beyond loopback, the tool list) use a SQLite file:
the store plays no part in them."""

from __future__ import annotations

import contextlib
import json
import warnings

import anyio
import httpx2
import pytest
from mcp import Client, MCPDeprecationWarning, MCPError
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourceUpdated
from mcp.types import PromptReference, ResourceTemplateReference, ResourceUpdatedNotification

from mcp_tasks.server import create_server

from .lifecycle import run_lifecycle
from .server_helpers import Agent, http_server, stdio_params

MODES = ["auto", "legacy"]


@contextlib.asynccontextmanager
async def in_memory_agents(db: str, mode: str, names=("planner", "agent-a", "agent-b", "reviewer")):
    async with contextlib.AsyncExitStack() as stack:
        agents = []
        for name in names:
            server = create_server(db, agent=name, poll_interval=0.05)
            client = await stack.enter_async_context(Client(server, mode=mode))
            agents.append(Agent(client))
        yield agents


@pytest.mark.parametrize("mode", MODES)
async def test_lifecycle_in_memory(db, mode):
    async with in_memory_agents(db.location, mode) as agents:
        assert agents[0].client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        await run_lifecycle(*agents)


async def test_lifecycle_over_stdio(db):
    location = db.location
    async with contextlib.AsyncExitStack() as stack:
        agents = []
        for name, mode in (("planner", "auto"), ("agent-a", "legacy"), ("agent-b", "auto"), ("reviewer", "legacy")):
            agents.append(Agent(await stack.enter_async_context(Client(stdio_params(location, name), mode=mode))))
        await run_lifecycle(*agents)


async def test_lifecycle_over_http(db):
    with http_server(db.location) as base:
        async with contextlib.AsyncExitStack() as stack:
            agents = []
            for name, mode in (("planner", "legacy"), ("agent-a", "auto"), ("agent-b", "legacy"), ("reviewer", "auto")):
                http = await stack.enter_async_context(httpx2.AsyncClient(headers={"X-MCP-Tasks-Agent": name}))
                client = await stack.enter_async_context(
                    Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode))
                agents.append(Agent(client))
            await run_lifecycle(*agents)
        async with httpx2.AsyncClient() as http:
            assert (await http.get(f"{base}/healthz")).json()["status"] == "ok"
            evil = await http.post(f"{base}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                   headers={"Host": "evil.example", "Accept": "application/json, text/event-stream"})
            assert evil.status_code == 421


@pytest.mark.parametrize("host", ["LOCALHOST", "127.0.0.2"])
async def test_http_dns_rebinding_protection_on_every_loopback_address(tmp_path, host):
    with http_server(str(tmp_path / "t.db"), host=host) as base:
        port = base.rsplit(":", 1)[1]
        target = f"http://{'127.0.0.2' if host == '127.0.0.2' else '127.0.0.1'}:{port}/mcp"
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        async with httpx2.AsyncClient() as http:
            evil = await http.post(target, json=init, headers={**headers, "Host": "evil.example"})
            assert evil.status_code == 421
            ok = await http.post(target, json=init, headers={**headers, "Host": f"localhost:{port}"})
            assert ok.status_code == 200
            bad_origin = await http.post(target, json=init, headers={**headers, "Origin": "http://evil.example"})
            assert bad_origin.status_code == 403


async def test_http_refuses_non_loopback_addresses(tmp_path):
    import subprocess
    import sys

    from .server_helpers import ROOT

    out = subprocess.run([sys.executable, "-m", "mcp_tasks", "serve", "--http", "--host", "0.0.0.0",
                          "--db", str(tmp_path / "t.db")], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.returncode != 0 and "refusing to listen on 0.0.0.0" in out.stderr


@pytest.mark.parametrize("mode", MODES)
async def test_tool_surface(tmp_path, mode):
    async with Client(create_server(str(tmp_path / "t.db")), mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert sorted(tools) == sorted([
        "list_available", "claim", "start", "checkpoint", "complete", "fail", "pause", "resume", "release",
        "create_tasks", "update_task", "cancel", "schedule", "retry", "review", "get_task", "find_tasks"])
    for name in ("list_available", "get_task", "find_tasks"):
        assert tools[name].annotations.read_only_hint is True
    assert tools["cancel"].annotations.destructive_hint is True
    assert tools["claim"].annotations.idempotent_hint is False
    assert all(t.output_schema is not None and t.description for t in tools.values())
    assert tools["list_available"].input_schema["properties"]["limit"] == {"default": 20, "maximum": 100, "minimum": 1, "type": "integer"}
    assert tools["checkpoint"].input_schema["properties"]["progress"]["maximum"] == 100
    for name in ("start", "checkpoint", "complete", "fail", "pause", "resume", "release", "create_tasks",
                 "update_task", "cancel", "schedule", "retry", "review", "claim"):
        assert "request_id" in tools[name].input_schema["properties"], name


@pytest.mark.parametrize("mode", MODES)
async def test_resources_and_completions(db, mode):
    async with Client(create_server(db.location, agent="agent-a"), mode=mode) as client:
        agent = Agent(client)
        ids = (await agent.call("create_tasks", tasks=[{"key": "a", "title": "A"}, {"key": "b", "title": "B", "depends_on": ["a"]},
                                                       {"key": "c", "title": "C", "max_retries": 0}]))["by_key"]
        claim = await agent.call("claim", task_id=ids["c"])
        await agent.call("start", task_id=ids["c"], lease=claim["lease"])
        await agent.call("fail", task_id=ids["c"], lease=claim["lease"], error="impossible", retryable=False)
        await agent.call("cancel", task_id=ids["a"], reason="not needed")

        listed = {r.uri for r in (await client.list_resources()).resources}
        assert {"tasks://available", "tasks://board", "events://recent", "metrics://summary"} <= listed
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert {"task://{task_id}", "task://{task_id}/events", "agent://{agent}/tasks"} <= templates

        task = await agent.read(f"task://{ids['b']}")
        assert task["state"] == "PENDING" and "blocked by failed work" in task["readiness"]
        events = await agent.read(f"task://{ids['c']}/events")
        assert [e["type"] for e in events] == ["created", "claimed", "started", "failed"]
        board = await agent.read("tasks://board")
        assert board["counts"]["FAILED"] == 1 and board["dead_letters"][0]["id"] == ids["c"]
        assert board["blocked_by_failed"] == [{"id": ids["b"], "dependency": ids["a"], "dependency_state": "CANCELLED"}]
        assert (await agent.read("tasks://available"))["tasks"] == []
        assert [e["type"] for e in await agent.read("events://recent")][-4:] == ["claimed", "started", "failed", "cancelled"]
        mine = await agent.read("agent://agent-a/tasks")
        assert [t["id"] for t in mine] == [ids["c"]]
        metrics = await agent.read("metrics://summary")
        assert metrics["by_agent"]["agent-a"]["failed"] == 1 and metrics["queue"]["CANCELLED"] == 1
        with pytest.raises(MCPError) as info:
            await client.read_resource("task://t-0000000000")
        assert "no task has id" in info.value.message

        done = await client.complete(ResourceTemplateReference(uri="task://{task_id}"), {"name": "task_id", "value": "t-"})
        assert sorted(done.completion.values) == sorted(ids.values())
        first = ids["a"][:4]
        narrowed = await client.complete(ResourceTemplateReference(uri="task://{task_id}/events"), {"name": "task_id", "value": first})
        assert narrowed.completion.values and all(v.startswith(first) for v in narrowed.completion.values)
        agents = await client.complete(ResourceTemplateReference(uri="agent://{agent}/tasks"), {"name": "agent", "value": "age"})
        assert agents.completion.values == ["agent-a"]
        prompt_ids = await client.complete(PromptReference(name="review"), {"name": "task_id", "value": "t-"})
        assert len(prompt_ids.completion.values) == 3


@pytest.mark.parametrize("mode", MODES)
async def test_prompts(db, mode):
    async with Client(create_server(db.location, agent="agent-a"), mode=mode) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        assert sorted(prompts) == ["plan", "resume", "review", "work-loop"]
        assert {a.name: a.required for a in prompts["plan"].arguments} == {"goal": True, "types": False}
        loop = await client.get_prompt("work-loop", {"capabilities": "code, docs"})
        text = loop.messages[0].content.text
        assert "Task types you do: code, docs" in text and "claim" in text and "lease" in text and "checkpoint" in text
        assert "`claim` with `start=true`" in text  # claim + complete is the whole cycle
        bare = (await client.get_prompt("work-loop", {})).messages[0].content.text  # no arguments: defaults, no blanks
        assert "Task types you do: any type\n" in bare and "before stopping: 1\n" in bare and "{{" not in bare
        assert "if empty" not in bare and ": \n" not in bare
        plan = await client.get_prompt("plan", {"goal": "ship the login page"})
        assert "Goal: ship the login page" in plan.messages[0].content.text and "create_tasks" in plan.messages[0].content.text
        agent = Agent(client)
        tid = (await agent.call("create_tasks", tasks=[{"title": "Resume me"}]))["ids"][0]
        claim = await agent.call("claim", task_id=tid)
        await agent.call("start", task_id=tid, lease=claim["lease"])
        await agent.call("checkpoint", task_id=tid, lease=claim["lease"], data={"page": 12})
        resume = (await client.get_prompt("resume", {"task_id": tid})).messages[0].content.text
        assert f"You hold task {tid}" in resume and '"page": 12' in resume and claim["lease"] not in resume
        review = (await client.get_prompt("review", {"task_id": "t-0000000000"})).messages[0].content.text
        assert "could not read the task" in review


async def _wait_for(sub, uri: str, seconds: float = 10) -> None:
    with anyio.fail_after(seconds):
        async for event in sub:
            if event == ResourceUpdated(uri=uri):
                return


async def test_listen_streams_hear_changes_from_this_and_another_process(db):
    location = db.location
    async with Client(create_server(location, agent="watcher", poll_interval=0.05)) as client:
        agent = Agent(client)
        tid = (await agent.call("create_tasks", tasks=[{"title": "watched"}]))["ids"][0]
        uris = [f"task://{tid}", "tasks://board"]
        async with client.listen(resource_subscriptions=uris) as sub:
            assert sorted(sub.honored.resource_subscriptions) == sorted(uris)
            await agent.call("claim", task_id=tid)  # a change made through this server
            await _wait_for(sub, f"task://{tid}")
            async with Client(stdio_params(location, "other-process")) as other:  # a change made by another process
                await Agent(other).call("update_task", task_id=tid, priority=9)
            await _wait_for(sub, f"task://{tid}")
        assert (await agent.read(f"task://{tid}"))["priority"] == 9


async def test_legacy_resources_subscribe_hears_changes_from_another_process(db):
    location = db.location
    got: dict[str, anyio.Event] = {}

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification) and message.params.uri in got:
            got[message.params.uri].set()

    server = create_server(location, agent="watcher", poll_interval=0.05)
    async with Client(server, mode="legacy", message_handler=on_message) as client:
        assert client.server_capabilities.resources.subscribe is True
        agent = Agent(client)
        tid = (await agent.call("create_tasks", tasks=[{"title": "watched"}]))["ids"][0]
        uri = f"task://{tid}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.subscribe_resource(uri)
        got[uri] = anyio.Event()
        async with Client(stdio_params(location, "other-process"), mode="legacy") as other:
            await Agent(other).call("cancel", task_id=tid, reason="from elsewhere")
        with anyio.fail_after(10):
            await got[uri].wait()
        assert server.legacy_subscriptions.count() == 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.unsubscribe_resource(uri)
        assert server.legacy_subscriptions.count() == 0


async def test_structured_and_text_content_agree_and_omit_nulls(db):
    async with Client(create_server(db.location)) as client:
        result = await client.call_tool("create_tasks", {"tasks": [{"title": "x"}]})
        text = result.content[0].text
        assert json.loads(text) == result.structured_content and "null" not in text and "\n" not in text


async def test_prompt_arguments_are_bounded_and_cleaned(db):
    async with Client(create_server(db.location)) as client:
        huge = await client.get_prompt("plan", {"goal": "g" * 100_000})
        text = huge.messages[0].content.text
        assert len(text) < 10_000 and "more characters cut" in text
        odd = await client.get_prompt("plan", {"goal": "a\x00b"})
        assert "Goal: ab" in odd.messages[0].content.text
        missing = await client.get_prompt("resume", {"task_id": "t-" + "x" * 5000})
        assert "could not read the task" in missing.messages[0].content.text


async def test_an_empty_claim_says_what_the_queue_waits_for(db):
    async with Client(create_server(db.location, agent="a")) as client:
        agent = Agent(client)
        assert (await agent.call("claim"))["message"] == "No ready task: no open work at all."
        ids = (await agent.call("create_tasks", tasks=[
            {"key": "r", "title": "reviewed", "requires_review": True}, {"key": "f", "title": "flaky"},
            {"key": "d", "title": "after review", "depends_on": ["r"]}]))["by_key"]
        for key, finish in (("r", "complete"), ("f", "fail")):
            claim = await agent.call("claim", task_id=ids[key])
            await agent.call("start", task_id=ids[key], lease=claim["lease"])
            await agent.call(finish, task_id=ids[key], lease=claim["lease"], **({"error": "x"} if finish == "fail" else {}))
        empty = await agent.call("claim")
        assert "a retried task becomes ready in" in empty["message"] and "1 in REVIEW waiting for a reviewer" in empty["message"]
        assert 0 < empty["retry_after_s"] <= 2


async def test_metrics_count_retries_and_expiries_per_agent(db):
    from mcp_tasks import Policy

    clock = [1_800_000_000.0]
    server = create_server(db.location, agent="agent-a", clock=lambda: clock[0],
                           policy=Policy(lease_seconds=30))
    async with Client(server) as client:
        agent = Agent(client)
        a, b = (await agent.call("create_tasks", tasks=[{"title": "a"}, {"title": "b"}]))["ids"]
        claim = await agent.call("claim", task_id=a)
        await agent.call("start", task_id=a, lease=claim["lease"])
        await agent.call("fail", task_id=a, lease=claim["lease"], error="flaky")
        claim = await agent.call("claim", task_id=b)
        await agent.call("start", task_id=b, lease=claim["lease"])
        clock[0] += 31
        await server.app_state.registry.reap()
        mine = (await agent.read("metrics://summary"))["by_agent"]["agent-a"]
        assert (mine["failed"], mine["lease_expiries"], mine["retries"]) == (1, 1, 2)
