"""MCP over stdio that answers every line: the SDK's connection runner behind our own line framing.

The SDK's stdio transport hands a line it cannot parse (invalid JSON, nesting past its parser's
limit of about 200 levels, a lone surrogate escape, an integer of thousands of digits) to the
session as an exception, and the session drops it: that call is never answered and the client
waits forever. Here such a line is answered with a JSON-RPC error, parse error (-32700) or invalid
request (-32600), carrying the request's id whenever the line shows one, and the next line is
served as usual.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from io import TextIOWrapper
from typing import BinaryIO

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.shared.message import SessionMessage
from mcp.types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError, jsonrpc_message_adapter
from pydantic import ValidationError

log = logging.getLogger(__name__)

_WS = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_ATOM = re.compile(r"[^,}\]\s]+")  # a number, true, false or null
_BRACKET_OR_STRING = re.compile(r'["\[\]{}]')


def _skip_ws(line: str, pos: int) -> int:
    spaces = _WS.match(line, pos)
    assert spaces is not None  # the pattern matches the empty string
    return spaces.end()


def _value_end(line: str, pos: int) -> int | None:
    """Where the JSON value starting at `pos` ends, found without decoding it (any depth, no recursion)."""
    if line.startswith('"', pos):
        string = _STRING.match(line, pos)
        return string.end() if string else None
    if not line.startswith(("[", "{"), pos):
        atom = _ATOM.match(line, pos)
        return atom.end() if atom else None
    depth = 0
    while (found := _BRACKET_OR_STRING.search(line, pos)) is not None:
        if found.group() == '"':
            string = _STRING.match(line, found.start())
            if string is None:
                return None
            pos = string.end()
            continue
        depth += 1 if found.group() in "[{" else -1
        pos = found.end()
        if depth == 0:
            return pos
    return None


def request_id(line: str) -> str | int | None:
    """The id of the request on `line`, read from the outermost object alone; None if it shows none.

    Only requests (objects with a `method`) count: echoing the id of a malformed response would
    answer one of the client's own requests by mistake.
    """
    raw_id: str | None = None
    is_request = False
    pos = _skip_ws(line, 0)
    if not line.startswith("{", pos):
        return None
    pos += 1
    while (key := _STRING.match(line, _skip_ws(line, pos))) is not None:
        colon = _skip_ws(line, key.end())
        if not line.startswith(":", colon):
            break
        start = _skip_ws(line, colon + 1)
        end = _value_end(line, start)
        if end is None:
            break
        if key.group() == '"id"':
            raw_id = line[start:end]
        elif key.group() == '"method"':
            is_request = True
        pos = _skip_ws(line, end)
        if not line.startswith(",", pos):
            break
        pos += 1
    if raw_id is None or not is_request:
        return None
    try:
        value = json.loads(raw_id)
        if isinstance(value, str):
            value.encode("utf-8")  # a lone surrogate cannot be written back
    except (ValueError, UnicodeEncodeError):
        return None
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def parse_line(line: str) -> SessionMessage | JSONRPCError:
    """The message on one input line, or the error to answer in its place."""
    try:
        return SessionMessage(jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            reason = first.get("ctx", {}).get("error") or first["msg"]
            if "recursion limit" in reason:
                reason += " (JSON nested too deeply to read)"
            error = ErrorData(code=PARSE_ERROR, message=f"Parse error: {reason}")
        else:
            where = ".".join(str(p) for p in first["loc"][1:])
            error = ErrorData(code=INVALID_REQUEST,
                              message=f"Invalid Request: {where + ': ' if where else ''}{first['msg']}")
        return JSONRPCError(jsonrpc="2.0", id=request_id(line), error=error)


def _write_line(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()


async def run_stdio(mcp: MCPServer, wire_in: BinaryIO, wire_out: BinaryIO) -> None:
    """Serve `mcp` over one pair of byte streams until the input ends."""
    # The SDK's own stdio entry (MCPServer.run_stdio_async) drives this same private low-level server.
    server = mcp._lowlevel_server
    to_server, from_client = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    to_client, outgoing = anyio.create_memory_object_stream[SessionMessage](0)
    answers = to_client.clone()
    lines = anyio.wrap_file(TextIOWrapper(wire_in, encoding="utf-8", errors="replace"))

    async def read() -> None:
        async with to_server, answers:
            async for line in lines:
                if not line.strip():
                    continue
                parsed = parse_line(line)
                try:
                    if isinstance(parsed, SessionMessage):
                        await to_server.send(parsed)
                    else:
                        await answers.send(SessionMessage(parsed))
                except anyio.BrokenResourceError:  # the server has stopped
                    return

    async def write(scope: anyio.CancelScope) -> None:
        async with outgoing:
            async for message in outgoing:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                try:
                    await anyio.to_thread.run_sync(_write_line, wire_out, data.encode("utf-8"))
                except (BrokenPipeError, ConnectionResetError):
                    log.info("the client closed its end of stdout; stopping")
                    scope.cancel()
                    return

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        tg.start_soon(write, tg.cancel_scope)
        await server.run(from_client, to_client, server.create_initialization_options())


@contextmanager
def _claimed_stdio() -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """The protocol's stdin and stdout as private descriptors.

    While serving, fd 0 reads nothing and fd 1 writes to stderr, so stray output (a print, a child
    process) cannot corrupt the protocol, as in the SDK's own stdio transport.
    """
    sys.stdout.flush()
    try:
        if os.name != "posix":
            raise OSError("descriptors are only moved on POSIX")
        wire = (os.dup(sys.stdin.fileno()), os.dup(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):
        yield sys.stdin.buffer, sys.stdout.buffer
        return
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)
    except OSError:
        log.info("serving stdio without diverting fd 0 and 1: stray output may reach the client")
    try:
        # closefd=False: a worker thread may still be blocked reading when serving ends.
        yield os.fdopen(wire[0], "rb", closefd=False), os.fdopen(wire[1], "wb", closefd=False)
    finally:
        os.dup2(wire[0], 0)
        os.dup2(wire[1], 1)


def serve_stdio(mcp: MCPServer) -> None:
    """Serve `mcp` on this process's stdin and stdout until stdin closes (replaces `mcp.run()`)."""
    with _claimed_stdio() as (wire_in, wire_out):
        anyio.run(run_stdio, mcp, wire_in, wire_out)
