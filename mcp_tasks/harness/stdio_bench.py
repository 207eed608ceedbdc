"""The stdio rows of `mcp-tasks bench`: one MCP tool call, cold start and server memory, each
against a bare MCPServer (bench_noop.py) measured in the same run."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import bench_data as D

if TYPE_CHECKING:
    from .bench import Bench, Figure


def _children() -> set[int]:
    """Pids of this process's children (Linux /proc; empty elsewhere)."""
    me, found = os.getpid(), set[int]()
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            found.add(int(name))
    return found


def rss_mib(pid: int | None) -> float | None:
    """Resident memory of `pid` in MiB (VmRSS from /proc; None where that is unavailable)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@asynccontextmanager
async def server(b: Bench, args: list[str]) -> AsyncIterator[tuple[Any, int | None]]:
    """A Client connected over stdio to `python ARGS`, and the server's pid when it can be found."""
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, args=args, env=D.pythonpath())
    before = _children()
    with b.server_log() as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            new = _children() - before
            yield client, (new.pop() if len(new) == 1 else None)


def our_server(b: Bench, db: Path) -> list[str]:
    """Arguments that serve the registry in `db` on stdio."""
    return ["-m", "mcp_tasks", "serve", "--db", str(db), "--agent", "bench", "--sync", b.synchronous.lower()]


NOOP_SERVER = ["-m", "mcp_tasks.harness.bench_noop"]


async def _call(client: Any, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content[0].text if result.content else result}")
    return result.structured_content or {}


async def _cycle(client: Any) -> None:
    got = await _call(client, "claim", {})
    if not got.get("lease"):
        raise RuntimeError(f"claim found no ready task: {got.get('message')}")
    tid, lease = got["task"]["id"], got["lease"]
    await _call(client, "start", {"task_id": tid, "lease": lease})
    await _call(client, "complete", {"task_id": tid, "lease": lease, "result": "ok"})


async def bench_mcp_call(b: Bench) -> Figure:
    """Per-call time of claim, start, complete cycles over stdio vs the no-op tool of a bare MCPServer.

    Both servers run at once and take turns (one cycle, then three no-op calls), so both see the
    same machine noise.
    """
    from .bench import Figure

    cycles, warm = b.sizes.mcp_cycles, 3
    db = await b.fresh("mcp.db")
    await D.add_ready(db, cycles + warm, priority=10)
    b.say(f"MCP: {cycles} claim/start/complete cycles vs {3 * cycles} no-op calls")
    ours = ref = 0.0
    async with server(b, our_server(b, db)) as (mine, _), server(b, NOOP_SERVER) as (noop, _):
        for _ in range(warm):
            await _cycle(mine)
            await noop.call_tool("noop", {})
        for _ in range(cycles):
            t0 = time.perf_counter()
            await _cycle(mine)
            t1 = time.perf_counter()
            for _ in range(3):
                await _call(noop, "noop", {})
            ours, ref = ours + t1 - t0, ref + time.perf_counter() - t1
    per_call = 1000 / (3 * cycles)
    return Figure("MCP tool call over stdio (claim/start/complete, per call)", ours * per_call, "ms",
                  "no-op tool, bare MCPServer", ref * per_call)


async def bench_cold_start(b: Bench) -> Figure:
    """Median time from spawning the server to its first tools/list answer, ours vs a bare MCPServer."""
    from .bench import Figure

    db = await b.fresh("cold.db")
    await D.add_ready(db, 100)
    b.say(f"cold start: {b.sizes.cold_runs} runs each")
    ours: list[float] = []
    ref: list[float] = []
    for _ in range(b.sizes.cold_runs):
        for args, samples in ((our_server(b, db), ours), (NOOP_SERVER, ref)):
            t0 = time.perf_counter()
            async with server(b, args) as (client, _):
                await client.list_tools()
                samples.append(time.perf_counter() - t0)
    return Figure("cold start to first tools/list (median)", statistics.median(ours) * 1000, "ms",
                  "bare MCPServer", statistics.median(ref) * 1000)


async def bench_rss(b: Bench) -> Figure:
    """Server RSS on a large database after list_available, get_task and tasks://board, vs a bare MCPServer."""
    from .bench import Figure, _short, large_db

    db = await large_db(b)
    tasks, events = D.db_counts(db)
    b.say(f"RSS: serving {tasks:,} tasks and {events:,} events")
    async with server(b, our_server(b, db)) as (client, pid):
        listed = await _call(client, "list_available", {"limit": 50})
        ids = [t["id"] for t in listed.get("tasks", [])]
        if not ids:
            ids = [t["id"] for t in (await _call(client, "find_tasks", {"limit": 1})).get("tasks", [])]
        if ids:
            await _call(client, "get_task", {"task_id": ids[0], "events": 20})
        await client.read_resource("tasks://board")
        mine = rss_mib(pid)
    async with server(b, NOOP_SERVER) as (client, pid):
        for _ in range(3):
            await _call(client, "noop", {})
        ref = rss_mib(pid)
    if mine is None or ref is None:
        b.notes.append("server RSS: n/a (needs Linux /proc)")
    return Figure(f"server RSS, {_short(tasks)} tasks + {_short(events)} events", mine, "MiB", "bare MCPServer", ref)
