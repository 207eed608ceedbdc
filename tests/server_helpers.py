"""Helpers for tests that talk to the server through real MCP clients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent


class Agent:
    """A thin test wrapper over an MCP client: call a tool and get its structured result or error text."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def call(self, tool: str, **args: Any) -> dict[str, Any]:
        result = await self.client.call_tool(tool, args)
        if result.is_error:
            raise AssertionError(f"{tool} refused: {result.content[0].text}")
        assert result.structured_content is not None
        assert json.loads(result.content[0].text) == result.structured_content
        return result.structured_content

    async def refused(self, tool: str, **args: Any) -> str:
        result = await self.client.call_tool(tool, args)
        assert result.is_error, f"{tool} should have been refused: {result.content[0].text}"
        return result.content[0].text

    async def read(self, uri: str) -> Any:
        res = await self.client.read_resource(uri)
        return json.loads(res.contents[0].text)  # type: ignore[union-attr]


def stdio_params(db: str, agent: str, *extra: str) -> StdioServerParameters:
    """Launch parameters for `mcp-tasks serve` on stdio in a child process."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_tasks", "serve", "--db", db, "--agent", agent, *extra],
        env={"PYTHONPATH": str(ROOT)},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MCP_TASKS = [sys.executable, "-m", "mcp_tasks"]


@contextmanager
def http_process(argv: list[str], base: str, log: Path | None = None, *, env: dict[str, str] | None = None,
                 stdout: Path | None = None) -> Iterator[Any]:
    """Run `argv` (an HTTP server listening at `base`) until its /healthz says ok; yields its stderr
    file (`log` when given), and stops the server afterwards. `env`: its environment (default: this
    process's); `stdout`: a file for its standard output (default: discarded)."""
    import tempfile
    import urllib.request

    errors: Any = open(log, "w+b") if log is not None else tempfile.TemporaryFile()
    out: Any = open(stdout, "wb") if stdout is not None else subprocess.DEVNULL
    proc = subprocess.Popen(argv, env={**(os.environ if env is None else env), "PYTHONPATH": str(ROOT)}, stdout=out,
                            stderr=errors)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                errors.seek(0)
                raise AssertionError(f"server exited: {errors.read().decode()}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1) as r:
                    if json.load(r)["status"] == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("HTTP server did not become healthy")
            time.sleep(0.05)
        yield errors
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        errors.close()
        if stdout is not None:
            out.close()


@contextmanager
def http_server(db: str, *extra: str, host: str = "127.0.0.1", log: Path | None = None) -> Iterator[str]:
    """`mcp-tasks serve --http` in a child process on a free loopback port; yields the base URL.
    The server's stderr goes to `log` when given."""
    port = free_port()
    base = f"http://{'127.0.0.2' if host == '127.0.0.2' else '127.0.0.1'}:{port}"
    argv = [*MCP_TASKS, "serve", "--http", "--host", host, "--port", str(port), "--db", db, *extra]
    with http_process(argv, base, log):
        yield base
