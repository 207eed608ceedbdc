"""MCP logging (server/logs.py) through real clients: logging/setLevel, the reasons of refused calls,
lease messages to their holder only, and the bound on what one session is sent.

Leases are timed on the server's clock, a FakeClock the tests move (the server's loop notices
within its poll interval); no test waits for real time to pass beyond a bounded wait for a message
to arrive.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import LoggingMessageNotificationParams

from mcp_tasks import Policy
from mcp_tasks.limits import LOG_BURST
from mcp_tasks.server import create_server
from mcp_tasks.server.logs import LEVELS

from .helpers import FakeClock
from .server_helpers import Agent, http_server, stdio_params

pytestmark = pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")  # logging is the 2025 way


class Heard:
    """A client's logging callback: what it was sent, in order."""

    def __init__(self) -> None:
        self.messages: list[LoggingMessageNotificationParams] = []

    async def __call__(self, params: LoggingMessageNotificationParams) -> None:
        self.messages.append(params)

    def events(self) -> list[tuple[str, str]]:
        return [(m.level, m.data["event"]) for m in self.messages]

    async def until(self, count: int, **data: Any) -> list[LoggingMessageNotificationParams]:
        """Wait (boundedly) until at least `count` messages arrived, the last with these data fields."""
        with anyio.fail_after(20):
            while len(self.messages) < count or any(self.messages[-1].data.get(k) != v for k, v in data.items()):
                await anyio.sleep(0.01)
        return self.messages


async def refuse(client: Client, task_id: str = "t-missing") -> None:
    """A tool call the registry refuses (there is no such task)."""
    result = await client.call_tool("start", {"task_id": task_id, "lease": "not-a-lease"})
    assert result.is_error


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_set_level_over_stdio_takes_every_level_and_refuses_others(tmp_path, mode):
    async with Client(stdio_params(str(tmp_path / "t.db"), "a"), mode=mode) as client:
        if mode == "auto":  # 2026-07-28 removed logging/setLevel: a request asks for its own log messages
            with pytest.raises(MCPError) as gone:
                await client.set_logging_level("debug")
            assert gone.value.error.code == -32601
            return
        assert client.server_capabilities.logging is not None
        for level in LEVELS:
            assert (await client.set_logging_level(level)).model_dump(exclude_none=True) == {}
        for bad in ("loud", "DEBUG", 3, None):
            with pytest.raises(MCPError) as refused:
                await client.session._dispatcher.send_raw_request("logging/setLevel", {"level": bad}, {})
            assert refused.value.error.code == -32602
            assert refused.value.error.message == (
                f"logging/setLevel: level {'missing' if bad is None else repr(bad)} is not a log level; use one of: "
                "debug, info, notice, warning, error, critical, alert, emergency")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_refused_call_reason_at_debug_only(db, mode):
    """At the default level ("warning") a refused call sends nothing; at debug, one message with the
    reason. A 2026-07-28 request asks for its own messages (the logLevel _meta key)."""
    server = create_server(db.location, agent="a", poll_interval=0.05)
    quiet, told = Heard(), Heard()
    async with Client(server, mode=mode, logging_callback=quiet) as client:
        await refuse(client, "t-quiet")
        if mode == "legacy":
            await client.set_logging_level("debug")
            await refuse(client, "t-told")
            assert [m.data["message"] for m in await quiet.until(1)] == [
                "no task has id t-told; find_tasks or list_available show existing ids."]
    if mode == "auto":
        async with Client(server, mode=mode, logging_callback=told, log_level="debug") as client:
            await refuse(client, "t-told")
        assert quiet.messages == []
        assert [m.data["message"] for m in await told.until(1)] == [
            "no task has id t-told; find_tasks or list_available show existing ids."]
    [message] = (quiet if mode == "legacy" else told).messages
    assert (message.level, message.logger) == ("debug", "mcp-tasks")
    assert {k: v for k, v in message.data.items() if k != "at"} == {
        "event": "refused", "tool": "start", "code": "not_found",
        "message": "no task has id t-told; find_tasks or list_available show existing ids."}


async def test_refused_call_reason_over_stdio(tmp_path):
    heard = Heard()
    async with Client(stdio_params(str(tmp_path / "t.db"), "a"), mode="legacy", logging_callback=heard) as client:
        await client.set_logging_level("debug")
        agent = Agent(client)
        task = (await agent.call("create_tasks", tasks=[{"title": "x"}]))["ids"][0]
        await agent.call("claim", task_id=task)
        await refuse(client, task)
        [message] = await heard.until(1)
    assert message.data["code"] == "lease" and message.data["task_id"] == task and message.data["state"] == "ASSIGNED"
    assert "not-a-lease" not in json.dumps(message.data)


async def test_lease_messages_reach_their_holder_only(db):
    """Running low (once a term; a checkpoint starts a new one), expired, then reaped: to the
    session that claimed the lease, never to another client of the same server."""
    clock = FakeClock()
    server = create_server(db.location, agent="a", poll_interval=0.05, clock=clock, reaper_interval=3600,
                           policy=Policy(lease_seconds=30))
    holder, other = Heard(), Heard()
    async with Client(server, mode="legacy", logging_callback=holder) as a, \
            Client(server, mode="legacy", logging_callback=other) as b:
        await b.set_logging_level("debug")
        agent = Agent(a)
        task = (await agent.call("create_tasks", tasks=[{"title": "x"}]))["ids"][0]
        lease = (await agent.call("claim", task_id=task))["lease"]
        await agent.call("start", task_id=task, lease=lease)
        clock.advance(25)  # 5 s of 30 left
        await holder.until(1, event="lease_low")
        clock.advance(1)
        await server.app_state.logs.check(server.app_state.registry)  # as its loop does: nothing new to say
        renewed = (await agent.call("checkpoint", task_id=task, lease=lease))["lease_expires_at"]  # a new term
        clock.advance(25)
        await holder.until(2, event="lease_low", lease_expires_at=renewed)
        clock.advance(5)
        await holder.until(3, event="lease_expired")
        await server.app_state.registry.reap()
        await holder.until(4, event="reaped")
        await refuse(b, "t-other")  # the other client's own refusal: the one message it gets
        await other.until(1)
    assert holder.events() == [("warning", "lease_low"), ("warning", "lease_low"), ("error", "lease_expired"),
                               ("error", "reaped")]
    assert [m.data["task_id"] for m in holder.messages] == [task] * 4
    assert holder.messages[0].data["seconds_left"] == 5.0
    assert holder.messages[3].data["state"] == "PENDING"  # failed by the reaper, retried
    assert lease not in json.dumps([m.data for m in holder.messages])
    assert other.events() == [("debug", "refused")]


async def test_bound_drops_a_burst_with_one_notice(db):
    """Over LOG_BURST messages at once, the rest are dropped and reported in one message when the
    rate allows (the bound runs on the server's clock)."""
    clock = FakeClock()
    server = create_server(db.location, agent="a", poll_interval=0.05, clock=clock)
    heard = Heard()
    async with Client(server, mode="legacy", logging_callback=heard) as client:
        await client.set_logging_level("debug")
        for n in range(LOG_BURST + 15):
            await refuse(client, f"t-burst{n}")
        await heard.until(LOG_BURST)
        clock.advance(1)
        await heard.until(LOG_BURST + 1)
        await refuse(client, "t-after")
        await heard.until(LOG_BURST + 2)
    assert heard.events() == [("debug", "refused")] * LOG_BURST + [("debug", "dropped"), ("debug", "refused")]
    assert heard.messages[LOG_BURST].data["count"] == 15
    assert [m.data["message"][:22] for m in heard.messages[:LOG_BURST]] == [
        f"no task has id t-burst{n}"[:22] for n in range(LOG_BURST)]


async def test_bound_over_http_accounts_for_every_message(db):
    """Over HTTP (real server process, real clock): every refused call of a burst is either sent or
    counted in a "dropped" message, and at least one is dropped."""
    calls = 40
    heard = Heard()
    with http_server(db.location) as base:
        async with httpx2.AsyncClient() as http, \
                Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy",
                       logging_callback=heard) as client:
            await client.set_logging_level("debug")
            for n in range(calls):
                await refuse(client, f"t-burst{n}")
            with anyio.fail_after(20):
                while accounted(heard.messages) < calls:
                    await anyio.sleep(0.05)
    dropped = [m.data["count"] for m in heard.messages if m.data["event"] == "dropped"]
    assert dropped and accounted(heard.messages) == calls


def accounted(messages: list[Any]) -> int:
    """Refused calls a client heard of: sent, or counted as dropped."""
    return sum(m.data.get("count", 1) for m in messages)
