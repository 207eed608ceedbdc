"""Every place the server relies on SDK (or uvicorn) internals still takes effect.

Each override exists for a measured reason (see its docstring) and depends on something the SDK
does not promise; pyproject.toml bounds `mcp` to the minor versions this file has passed on. When
an SDK upgrade breaks one, the assertion message names the override and the internal it relied on,
so the fix starts in the right place. Through real clients: in memory, and stdio/HTTP processes,
on a SQLite file (the overrides are the SDK's side; the store plays no part in them).
"""

from __future__ import annotations

import json
import time
import warnings

import anyio
import pytest
from mcp import Client, MCPDeprecationWarning, MCPError
from mcp.types import PARSE_ERROR

from mcp_tasks import limits
from mcp_tasks.server import create_server

from .server_helpers import stdio_params
from .test_transport import closed_by_server, connect, limited_http_server, open_stream

MODES = ["auto", "legacy"]


async def _active_task(client: Client) -> tuple[str, str]:
    created = await client.call_tool("create_tasks", {"tasks": [{"title": "override check"}]})
    tid = created.structured_content["ids"][0]  # type: ignore[index]
    lease = (await client.call_tool("claim", {"task_id": tid})).structured_content["lease"]  # type: ignore[index]
    await client.call_tool("start", {"task_id": tid, "lease": lease})
    return tid, lease


@pytest.mark.parametrize("mode", MODES)
async def test_text_keeping_metadata_keeps_json_looking_text(tmp_path, mode):
    async with Client(create_server(str(tmp_path / "t.db")), mode=mode) as client:
        tid, lease = await _active_task(client)
        result = await client.call_tool("checkpoint", {"task_id": tid, "lease": lease, "note": "[1, 2, 3]",
                                                       "request_id": '{"id": 7}'})
        task = (await client.call_tool("get_task", {"task_id": tid})).structured_content["task"]  # type: ignore[index]
    assert not result.is_error and task["checkpoint_note"] == "[1, 2, 3]", (
        "TextKeepingMetadata (tooling.py) no longer keeps JSON-looking text as text: it overrides the SDK's "
        "FuncMetadata.pre_parse_json, called by FuncMetadata.validate_arguments from Tool.run, and is installed by "
        f"assigning Tool.fn_metadata in make_tool. Got {result.content[0].text!r} / {task.get('checkpoint_note')!r}")


@pytest.mark.parametrize("mode", MODES)
async def test_agent_tool_refuses_unknown_and_invalid_arguments_with_structured_errors(tmp_path, mode):
    async with Client(create_server(str(tmp_path / "t.db")), mode=mode) as client:
        unknown = await client.call_tool("get_task", {"task_id": "t-zzzzzzzzzz", "titel": "typo"})
        invalid = await client.call_tool("get_task", {"task_id": 5})
        refused = await client.call_tool("get_task", {"task_id": "t-zzzzzzzzzz"})
    relies = ("AgentTool.run (tooling.py) overrides the SDK's Tool.run, which ToolManager.call_tool calls as "
              "run(arguments, context, convert_result) and which wraps failures in ToolError with the cause as "
              "__cause__")
    assert unknown.is_error and "unknown argument" in unknown.content[0].text and "takes:" in unknown.content[0].text, (
        f"{relies}: an unknown argument was not refused with our message: {unknown.content[0].text!r}")
    assert invalid.is_error and invalid.content[0].text.endswith(
        "invalid arguments: task_id: input should be a valid string (got 5)."), (
        f"{relies}: pydantic's report was not rewritten (ValidationError as __cause__): {invalid.content[0].text!r}")
    for result, code in ((unknown, "invalid_input"), (invalid, "invalid_input"), (refused, "not_found")):
        assert result.structured_content and result.structured_content["error"]["code"] == code, (
            f"{relies}: a refusal lost its structured error content (is_error results pass through "
            f"FuncMetadata.convert_result unchanged): {result.structured_content!r}")


@pytest.mark.parametrize("mode", MODES)
async def test_make_tool_publishes_compact_schemas(tmp_path, mode):
    async with Client(create_server(str(tmp_path / "t.db")), mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    def titled(node: object) -> bool:  # pydantic's generated titles (a property may be named "title")
        if isinstance(node, dict):
            return isinstance(node.get("title"), str) or any(titled(v) for v in node.values())
        return isinstance(node, list) and any(titled(v) for v in node)

    schemas = [t.input_schema for t in tools.values()] + [t.output_schema for t in tools.values()]
    assert not titled(schemas) and "anyOf" not in json.dumps(tools["get_task"].input_schema), (
        "make_tool (tooling.py) no longer publishes compact schemas: it assigns Tool.parameters and "
        "Tool.fn_metadata.output_schema after Tool.from_function, before Tool.output_schema (a cached_property) "
        "is first read")


@pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")
async def test_legacy_subscriptions_are_served_and_forgotten(tmp_path):
    mcp = create_server(str(tmp_path / "t.db"))
    legacy = mcp.legacy_subscriptions  # type: ignore[attr-defined]
    relies = ("LegacySubscriptions (notify.py) registers resources/subscribe on MCPServer._lowlevel_server "
              "(Server.add_request_handler, which also advertises resources.subscribe)")
    async with Client(mcp, mode="legacy") as client:
        caps = client.server_capabilities
        assert caps is not None and caps.resources is not None and caps.resources.subscribe is True, (
            f"{relies}: the capability is no longer advertised")
        await client.subscribe_resource("tasks://board")
        assert legacy.count() == 1, f"{relies}: the subscription was not recorded"
        with pytest.raises(MCPError, match="MAX_URI"):
            await client.subscribe_resource("task://" + "x" * limits.MAX_URI)
    assert legacy.count() == 0, (
        "LegacySubscriptions forgets a session's subscriptions through ServerSession._connection.exit_stack "
        "(SDK internals): they outlived the connection")


@pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")
async def test_session_logs_find_their_connection_and_are_forgotten(tmp_path):
    mcp = create_server(str(tmp_path / "t.db"))
    logs = mcp.app_state.logs  # type: ignore[attr-defined]
    relies = ("CallerLogs (logs.py) keeps a session's level in ServerSession._connection.state and registers "
              "logging/setLevel on MCPServer._lowlevel_server (which also advertises the logging capability)")
    heard: list[object] = []

    async def on_log(params: object) -> None:
        heard.append(params)

    async with Client(mcp, mode="legacy", logging_callback=on_log) as client:
        assert client.server_capabilities.logging is not None, f"{relies}: the capability is no longer advertised"
        await client.set_logging_level("debug")
        await client.call_tool("get_task", {"task_id": "t-zzzzzzzzzz"})
        with anyio.fail_after(10):
            while not heard:
                await anyio.sleep(0.01)
        assert len(logs.sessions) == 1, f"{relies}: the session's log was not found"
    assert not logs.sessions, f"{relies}: a session's log outlived its connection (its exit_stack)"


async def test_listen_bound_is_applied_as_server_middleware(tmp_path):
    async with Client(create_server(str(tmp_path / "t.db"))) as client:
        with pytest.raises(MCPError, match="MAX_SUBSCRIPTIONS"):
            async with client.listen(resource_subscriptions=["task://t"] * (limits.MAX_SUBSCRIPTIONS + 1)):
                pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            assert client.protocol_version == "2026-07-28"


@pytest.mark.parametrize("mode", MODES)
async def test_stdio_runner_answers_parse_errors_in_both_eras(tmp_path, mode):
    relies = ("serve_stdio (server/stdio.py) drives MCPServer._lowlevel_server.run(read, write, "
              "create_initialization_options()) over its own line framing")
    async with Client(stdio_params(str(tmp_path / "t.db"), "runner"), mode=mode) as client:
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28"), (
            f"{relies}: the protocol era was not negotiated as the client asked")
        deep: object = "x"
        for _ in range(250):
            deep = [deep]
        with anyio.fail_after(30), pytest.raises(MCPError) as refused:
            await client.call_tool("get_task", {"task_id": deep})
        assert refused.value.code == PARSE_ERROR, f"{relies}: no parse-error answer: {refused.value!r}"
        assert not (await client.call_tool("find_tasks", {})).is_error, f"{relies}: serving stopped"


async def test_http_guard_sees_requests_in_progress(tmp_path):
    """GuardedConnection and RequestProgress rely on uvicorn: its HTTP protocol classes are built as
    AutoHTTPProtocol(config=, server_state=, app_state=, _loop=) and start a request's ASGI task from
    inside data_received (so the task inherits the connection's context variable)."""
    with limited_http_server(str(tmp_path / "t.db"), idle_timeout=0.5) as (base, _):
        stream = open_stream(base)
        with connect(base) as idle:
            assert closed_by_server(idle), "GuardedConnection no longer closes idle connections (uvicorn internals)"
        time.sleep(0.5)  # the stream has now outlived idle_timeout twice over
        stream.setblocking(False)
        with stream:
            try:
                still_open = stream.recv(1) != b""
            except BlockingIOError:
                still_open = True
            except OSError:
                still_open = False
        assert still_open, ("RequestProgress no longer finds its connection: uvicorn did not start the request task "
                            "inside data_received, so an open stream was closed as idle")
