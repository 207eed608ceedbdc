"""Transport and protocol limits through real server processes (stdio and HTTP).

stdio: a line the SDK's parser cannot take is answered with a JSON-RPC error carrying the
request's id, and the next line is served. HTTP: connections that never deliver a complete
request are closed, open connections and sessions are bounded (excess gets 503 with Retry-After,
idle connections make room for new ones), stderr stays quiet under floods, and every route
applies the Host/Origin rule. Subscriptions are bounded in number and URI length, in both eras.
The store plays no part in these limits: a SQLite file serves them all.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import INVALID_REQUEST, PARSE_ERROR

from mcp_tasks import limits

from .server_helpers import ROOT, free_port, http_process, stdio_params

PROGRAM = ROOT / "tests" / "programs" / "http_server.py"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


# ---------------------------------------------------------------- stdio


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_stdio_answers_arguments_nested_past_the_parser_limit(tmp_path, mode):
    """A real client's call nested 200 deep gets an error answer (so the call returns), then serving goes on."""
    async with Client(stdio_params(str(tmp_path / "t.db"), "deep"), mode=mode) as client:
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        with anyio.fail_after(30), pytest.raises(MCPError) as refused:
            await client.call_tool("checkpoint", {"task_id": "t-zzzzzzzzzz", "lease": "x", "data": nested(200)})
        assert refused.value.code == PARSE_ERROR and "nested too deeply" in refused.value.message
        created = await client.call_tool("create_tasks", {"tasks": [{"title": "after the deep call"}]})
        assert not created.is_error and created.structured_content is not None


class RawStdio:
    """`mcp-tasks serve` on stdio, fed raw lines; a reader thread collects its answers."""

    def __init__(self, db: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcp_tasks", "serve", "--db", db, "--agent", "raw"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.answers.put(json.loads(line))

    def send(self, line: bytes) -> dict[str, Any]:
        """Send one line and return the next answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()
        return self.answers.get(timeout=30)

    def close(self) -> tuple[int, str]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        stderr = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code, stderr


def test_stdio_answers_unreadable_lines_and_keeps_serving(tmp_path):
    server = RawStdio(str(tmp_path / "t.db"))
    try:
        assert "result" in server.send(json.dumps(INIT).encode())
        deep = b'{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"get_task","arguments":{"t":%s}}}'
        cases = [
            (b"this is not JSON {", None, PARSE_ERROR),
            (deep % (b"[" * 200 + b"]" * 200), 41, PARSE_ERROR),
            (b'{"params":{"x":' + b"[" * 100_000 + b"]" * 100_000 + b'},"method":"ping","id":"deep"}', "deep", PARSE_ERROR),
            (b'{"jsonrpc":"2.0","id":43,"method":"ping","params":{"bad":"\\udc80"}}', 43, PARSE_ERROR),
            (b'{"jsonrpc":"2.0","id":44,"method":5}', 44, INVALID_REQUEST),
            (b"[1, 2, 3]", None, INVALID_REQUEST),
        ]
        for line, rid, code in cases:
            answer = server.send(line)
            assert answer["id"] == rid and answer["error"]["code"] == code, (line[:60], answer)
            assert len(answer["error"]["message"]) < 200
            assert server.send(b'{"jsonrpc":"2.0","id":99,"method":"ping"}') == {"jsonrpc": "2.0", "id": 99, "result": {}}
    finally:
        code, stderr = server.close()
    assert code == 0 and "Traceback" not in stderr, stderr[-3000:]


# ---------------------------------------------------------------- HTTP


@contextlib.contextmanager
def limited_http_server(db: str, **limits_: Any) -> Iterator[tuple[str, Any]]:
    """tests/programs/http_server.py with the given serve_http limits; yields (base URL, stderr file)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with http_process([sys.executable, str(PROGRAM), db, str(port), *(f"{k}={v}" for k, v in limits_.items())],
                      base) as errors:
        yield base, errors


def stderr_of(errors: Any) -> str:
    errors.seek(0)
    return errors.read().decode(errors="replace")


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def connect(base: str, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port_of(base)), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def closed_by_server(sock: socket.socket, within: float = 15.0) -> bool:
    """Whether the server closes `sock` within `within` seconds (what it sends meanwhile is read and dropped)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            return False
        except OSError:  # reset
            return True
    return False


def read_response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (then closed here too)."""
    sock.settimeout(10)
    out = b""
    with sock, contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            out += chunk
    return out


def request(base: str, method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
    host = f"127.0.0.1:{port_of(base)}"
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\n{headers}")
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body if body else (head + "\r\n").encode()


def open_stream(base: str) -> socket.socket:
    """A 2025-11-25 session and its standing GET stream: a connection busy for as long as it is open."""
    answer = read_response(connect(base, request(base, "POST", "/mcp", json.dumps(INIT).encode(),
                                                 "Connection: close\r\n")))
    head = answer.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 200"), answer[:500]
    session = next(line.split(":", 1)[1].strip() for line in head.splitlines()
                   if line.lower().startswith("mcp-session-id:"))
    sock = connect(base, request(base, "GET", "/mcp", headers=f"Mcp-Session-Id: {session}\r\n"
                                 "Mcp-Protocol-Version: 2025-11-25\r\nAccept: text/event-stream\r\n"))
    sock.settimeout(10)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200"), "the GET stream did not open"
    return sock


async def normal_call(base: str, mode: str = "auto") -> None:
    """A real client on its own connection still gets served."""
    async with httpx2.AsyncClient(headers={"X-MCP-Tasks-Agent": "normal"}) as http:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode) as client:
            with anyio.fail_after(30):
                result = await client.call_tool("create_tasks", {"tasks": [{"title": "normal"}]})
    assert not result.is_error


async def test_http_closes_connections_that_deliver_no_complete_request(tmp_path):
    with limited_http_server(str(tmp_path / "t.db"), idle_timeout=0.5, max_connections=50) as (base, errors):
        stream = open_stream(base)  # busy: must outlive the timeout
        body_missing = request(base, "POST", "/mcp", b"x" * 100)[:-90]
        stalled = {
            "idle": connect(base),
            "half a request head": connect(base, request(base, "POST", "/mcp")[:40]),
            "head without its body": connect(base, body_missing),
            "idle after a response": connect(base, request(base, "GET", "/healthz")),
        }
        trickle = connect(base, b"GET /healthz HTTP/1.1\r\n")
        for what, sock in stalled.items():
            with sock:
                assert closed_by_server(sock), f"{what}: the server kept the connection open"
        deadline = time.monotonic() + 15
        with trickle, pytest.raises(OSError):  # one header byte every 0.1 s never completes a request
            while time.monotonic() < deadline:
                trickle.sendall(b"X")
                time.sleep(0.1)
        stream.setblocking(False)
        with stream, pytest.raises(BlockingIOError):  # still open, nothing to read: not closed
            assert stream.recv(65536), "the server sent data on an idle stream"
        await normal_call(base, "legacy")
        log = stderr_of(errors)
    assert "Traceback" not in log and "idle_timeout" in log and len(log.splitlines()) <= 3, log


async def test_http_connection_bound_evicts_idle_and_refuses_when_all_are_busy(tmp_path):
    bound = 4
    with limited_http_server(str(tmp_path / "t.db"), idle_timeout=5.0, max_connections=bound,
                             max_sessions=bound) as (base, errors):
        idle = [connect(base) for _ in range(40)]  # more idle connections than the bound
        await normal_call(base)  # a new connection evicts an idle one
        assert sum(closed_by_server(sock, within=0.5) for sock in idle) >= len(idle) - bound
        for sock in idle:
            sock.close()

        streams = [open_stream(base) for _ in range(bound)]  # every connection busy
        for _ in range(150):
            answer = read_response(connect(base, request(base, "GET", "/healthz")))
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503") and b"\r\nretry-after: 5\r\n" in head.lower(), answer
            assert body.count(b"\n") == 1 and b"too many connections" in body, body
        streams.pop().close()
        await normal_call(base)  # room again
        for sock in streams:
            sock.close()
        log = stderr_of(errors)
    assert "Traceback" not in log and len(log) < 2000, log
    assert log.count("max_connections") == 2, log  # one line per cause: evicting, refusing


async def test_http_session_bound_refuses_with_retry_after_while_others_work(tmp_path):
    with limited_http_server(str(tmp_path / "t.db"), max_sessions=2) as (base, errors):
        streams = [open_stream(base) for _ in range(2)]
        async with httpx2.AsyncClient() as http:
            for _ in range(50):
                refused = await http.post(f"{base}/mcp", json=INIT,
                                          headers={"Accept": "application/json, text/event-stream"})
                assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
                assert refused.text.count("\n") == 0 and "Too many open sessions" in refused.text
        await normal_call(base, "auto")  # 2026-07-28 needs no session
        for sock in streams:
            sock.close()
        log = stderr_of(errors)
    assert "Traceback" not in log and log.count("Refusing to open a new session") == 1, log


async def test_healthz_applies_the_host_and_origin_rule(tmp_path):
    with limited_http_server(str(tmp_path / "t.db")) as (base, errors):
        async with httpx2.AsyncClient() as http:
            assert (await http.get(f"{base}/healthz")).status_code == 200
            assert (await http.get(f"{base}/healthz", headers={"Host": f"localhost:{port_of(base)}"})).status_code == 200
            for path in ("/healthz", "/no-such-route"):
                assert (await http.get(f"{base}{path}", headers={"Host": "evil.example"})).status_code == 421
                bad_origin = await http.get(f"{base}{path}", headers={"Origin": "http://evil.example"})
                assert bad_origin.status_code == 403
            for _ in range(50):
                await http.get(f"{base}/healthz", headers={"Host": "evil.example"})
        log = stderr_of(errors)
    assert log.count("Invalid Host header") == 1, log  # logged once, not once per request


# ---------------------------------------------------------------- subscriptions


@pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")  # resources/subscribe is the 2025 way
async def test_legacy_subscriptions_are_bounded_per_session(tmp_path):
    async with Client(stdio_params(str(tmp_path / "t.db"), "subs"), mode="legacy") as client:
        with pytest.raises(MCPError, match="MAX_URI") as long_uri:
            await client.subscribe_resource("task://" + "x" * limits.MAX_URI)
        assert f"at most {limits.MAX_URI}" in long_uri.value.message
        uris = [f"task://t-{i:08d}" for i in range(limits.MAX_SUBSCRIPTIONS)]
        for uri in uris:
            await client.subscribe_resource(uri)
        await client.subscribe_resource(uris[0])  # again: not a new subscription
        with pytest.raises(MCPError, match="MAX_SUBSCRIPTIONS") as too_many:
            await client.subscribe_resource("tasks://board")
        assert f"{limits.MAX_SUBSCRIPTIONS} subscriptions" in too_many.value.message
        await client.unsubscribe_resource(uris[0])
        await client.subscribe_resource("tasks://board")  # room again


async def test_listen_streams_are_bounded(tmp_path):
    async with Client(stdio_params(str(tmp_path / "t.db"), "listen")) as client:
        with pytest.raises(MCPError, match="MAX_SUBSCRIPTIONS"):
            async with client.listen(resource_subscriptions=[f"task://t-{i:08d}" for i in
                                                             range(limits.MAX_SUBSCRIPTIONS + 1)]):
                pass
        with pytest.raises(MCPError, match="MAX_URI"):
            async with client.listen(resource_subscriptions=["task://" + "x" * limits.MAX_URI]):
                pass
        async with client.listen(resource_subscriptions=["tasks://board"]) as sub:
            assert sub.honored.resource_subscriptions == ["tasks://board"]
