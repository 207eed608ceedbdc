"""Who a caller is, through real servers: two clients never receive each other's stored answers
(even under one agent name and one request_id), repeats by lease survive restarts, and a claim's
request_id is replayed only while its lease holds. On every store: the servers get `--db <location>`."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_tasks import Registry, State
from mcp_tasks.stores import make_store

from .server_helpers import ROOT, Agent, http_server, stdio_params


@contextlib.asynccontextmanager
async def http_agent(base: str, mode: str = "auto", name: str | None = None) -> AsyncIterator[Agent]:
    """A client over streamable HTTP, naming itself with X-MCP-Tasks-Agent when `name` is given."""
    headers = {"X-MCP-Tasks-Agent": name} if name else {}
    async with httpx2.AsyncClient(headers=headers) as http:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode) as client:
            yield Agent(client)


async def seed(db: str, n: int) -> list[str]:
    async with Registry(make_store(db), agent="planner") as reg:
        return (await reg.create_tasks([{"title": f"task {i}"} for i in range(n)])).ids


async def task_state(db: str, tid: str) -> tuple[State, str | None, int]:
    async with Registry(make_store(db), agent="checker") as reg:
        t = await reg.get(tid)
        return t.state, t.assignee, len(await reg.events(tid))


async def test_two_stdio_hosts_with_one_agent_name_never_share_a_claim(db):
    """The README's Claude Desktop setup on two machines: same --agent, same request_id."""
    location = db.location
    await seed(location, 3)
    async with Client(stdio_params(location, "claude-desktop")) as c1, \
            Client(stdio_params(location, "claude-desktop")) as c2:
        one, two = Agent(c1), Agent(c2)
        first = await one.call("claim", request_id="claim-1")
        second = await two.call("claim", request_id="claim-1")
        assert first["task"]["id"] != second["task"]["id"] and first["lease"] != second["lease"]
        again = await one.call("claim", request_id="claim-1")  # the same client repeating: its own answer
        assert (again["task"]["id"], again["lease"]) == (first["task"]["id"], first["lease"])
        # each can work only its own task
        await two.refused("start", task_id=first["task"]["id"], lease=second["lease"])
        await one.call("start", task_id=first["task"]["id"], lease=first["lease"])
        await two.call("start", task_id=second["task"]["id"], lease=second["lease"])


@pytest.mark.parametrize("named", [False, True], ids=["no header", "same header"])
async def test_two_http_clients_never_share_a_claim(db, named):
    location = db.location
    await seed(location, 4)
    with http_server(location, "--agent", "shared") as base:
        name = "same-name" if named else None
        async with http_agent(base, "auto", name) as one, http_agent(base, "legacy", name) as two, \
                http_agent(base, "auto", name) as three:
            claims = [await a.call("claim", request_id="claim-1") for a in (one, two, three)]
            assert len({c["task"]["id"] for c in claims}) == 3 and len({c["lease"] for c in claims}) == 3
            holders = [(await a.call("get_task", task_id=c["task"]["id"]))["task"]["assignee"]
                       for a, c in zip((one, two, three), claims)]
            if named:
                assert holders == ["same-name"] * 3
            else:  # clients without a name are told apart: each is an agent of its own
                assert len(set(holders)) == 3 and all(h.startswith("shared-") for h in holders)
            again = await two.call("claim", request_id="claim-1")
            assert again["lease"] == claims[1]["lease"]


async def check_restart(location: str, connect: Any) -> None:
    """Claim, start, complete, and claim another whose answer gets lost; the server restarts; the
    same calls again: by lease they answer as the first time, by request id they never double work."""
    t1, t2, t3, t4 = await seed(location, 4)
    async with connect() as agent:
        first = await agent.call("claim", task_id=t1, request_id="claim-1")
        lease = first["lease"]
        await agent.call("start", task_id=t1, lease=lease)
        done = await agent.call("complete", task_id=t1, lease=lease, result={"ok": True})
        held = await agent.call("claim", task_id=t2, request_id="claim-2")
    _, _, logged = await task_state(location, t1)
    async with connect() as agent:  # a new server process: nothing of the first one survives in memory
        # a repeated complete by the lease that completed the task answers as the first time did
        assert await agent.call("complete", task_id=t1, lease=lease, result={"ok": True}) == done
        late = await agent.refused("checkpoint", task_id=t1, lease=lease)
        assert "has ended: you completed it" in late
        # a repeated claim: never the work twice, never refused
        retried = await agent.call("claim", request_id="claim-2")
        assert retried["task"]["id"] == t3 and retried["lease"] != held["lease"]
        reused = await agent.call("claim", request_id="claim-1")  # its claim ended long ago: a new claim
        assert reused["task"]["id"] == t4
    assert (await task_state(location, t1))[2] == logged, "a repeat appended events"
    state, holder, _ = await task_state(location, t2)
    assert state == State.ASSIGNED and holder is not None  # still held by the lost lease until it expires


async def test_repeated_complete_and_claim_after_a_stdio_server_restart(db):
    location = db.location

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Agent]:
        async with Client(stdio_params(location, "worker")) as client:
            yield Agent(client)

    await check_restart(location, connect)


async def test_repeated_complete_and_claim_after_an_http_server_restart(db):
    location = db.location

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Agent]:
        with http_server(location) as base:
            async with http_agent(base, "auto", "worker") as agent:
                yield agent

    await check_restart(location, connect)


async def test_a_claim_request_id_reused_after_its_claim_ended_is_a_new_claim(db):
    location = db.location
    t1, t2 = await seed(location, 2)
    async with Client(stdio_params(location, "worker")) as client:
        agent = Agent(client)
        first = await agent.call("claim", request_id="claim-1")
        await agent.call("start", task_id=first["task"]["id"], lease=first["lease"])
        await agent.call("complete", task_id=first["task"]["id"], lease=first["lease"])
        second = await agent.call("claim", request_id="claim-1")  # the next day, in a new conversation
        assert second["task"]["id"] != first["task"]["id"] and second["lease"] != first["lease"]
        assert {first["task"]["id"], second["task"]["id"]} == {t1, t2}
        await agent.call("release", task_id=second["task"]["id"], lease=second["lease"])
        third = await agent.call("claim", request_id="claim-1", tags=[])  # other arguments: still a new claim
        assert third["task"]["id"] == second["task"]["id"] and third["lease"] != second["lease"]


async def test_reserved_names_are_refused(db):
    location = db.location
    out = subprocess.run([sys.executable, "-m", "mcp_tasks", "serve", "--db", location, "--agent", "reaper"],
                         capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": ""},
                         stdin=subprocess.DEVNULL)
    assert out.returncode != 0 and "reserved" in out.stderr and "Traceback" not in out.stderr
    await seed(location, 1)
    with http_server(location) as base:
        async with http_agent(base, "auto", "Reaper") as agent:
            assert "reserved for changes the registry makes itself" in await agent.refused("claim")
