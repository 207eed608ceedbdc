"""The HTTP rows of `mcp-tasks bench`: tool calls over Streamable HTTP from 16 concurrent clients.

Three servers run at once, each in a process of its own on a loopback port, and 16 clients per
server (in the bench process, one HTTP connection each) take turns on them:

- ours with tokens: `mcp-tasks serve --http` on a database holding 16 agent tokens, one per
  client (`Authorization: Bearer`), with the per-token rate limit raised out of reach
  (`--rate 100000 --burst 1000000`), so that the figure is the cost of authentication and not of
  the limiter;
- ours without tokens: the same server on a database without tokens (loopback only, the
  X-MCP-Tasks-Agent header names each client);
- the reference: a bare MCPServer with one no-op tool (`bench_noop.py --http`), same uvicorn
  settings.

On our servers each client runs claim, start, complete cycles as fast as it can; on the no-op,
no-op calls. Both databases are synthetic (ready tasks, even with --db). After a warm-up of each
server, the servers take turns for `rounds` windows each, the order rotating from round to
round; the first RAMP seconds of each window are not counted. Calls/s is the median window's
(calls finished within it over its length); p99 is of the latencies, as the clients saw them, of
all calls finished within the windows. The notes add p50, and the CPU each call cost the server
and the clients (read from /proc): one client process can use at most a core, and on a small
machine the clients rather than the no-op server may set the no-op's pace.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..registry import Registry
from ..stores import SqliteStore
from ..tokens import Tokens
from . import bench_data as D

if TYPE_CHECKING:
    from .bench import Bench, Figure

CLIENTS = 16
RATE, BURST = 100_000, 1_000_000  # per token: far above what the clients reach
RAMP = 0.2  # seconds at the start of each window that are not counted
CYCLES_PER_S = 1_000  # ready tasks are seeded for this many cycles a second (several times a 2-core machine's)
START_TIMEOUT = 60.0  # seconds for a server to listen


@dataclass(frozen=True)
class HttpSizes:
    """How long each server is measured."""

    warm_up: float  # seconds per server before the first window
    window: float  # seconds per server and round, counted
    rounds: int


QUICK = HttpSizes(warm_up=0.5, window=1.0, rounds=1)
FULL = HttpSizes(warm_up=1.0, window=1.0, rounds=10)

ROWS = (f"HTTP tool calls/s, {CLIENTS} clients with tokens", f"HTTP tool call p99, {CLIENTS} clients with tokens",
        f"HTTP tool calls/s, tokens on vs off, {CLIENTS} clients",
        f"HTTP tool call p99, tokens on vs off, {CLIENTS} clients")


def row_names() -> list[str]:
    """The measure column of every HTTP row (the test checks each is there)."""
    return list(ROWS)


@dataclass
class Side:
    """One server under measurement, its clients, and what they saw in the counted windows."""

    name: str
    cycles: bool  # claim/start/complete cycles (ours), or no-op calls
    pid: int
    clients: list[Any] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)  # calls/s of each window
    latencies: list[float] = field(default_factory=list)  # seconds
    calls: int = 0
    server_cpu: float | None = 0.0  # CPU seconds of the server process within the windows (None: unknown)
    client_cpu: float = 0.0  # CPU seconds of the bench process (the clients) within the windows
    seconds: float = 0.0

    def cpu_ms(self, seconds: float | None) -> float | None:
        """CPU milliseconds per counted call (None when unknown)."""
        return None if seconds is None or not self.calls else 1000 * seconds / self.calls

    def summary(self) -> str:
        """Calls/s, p50, p99 and CPU per call of server and clients, for the notes."""
        def cpu(seconds: float | None) -> str:
            per_call = self.cpu_ms(seconds)
            if seconds is None or per_call is None:
                return "n/a"
            return f"{per_call:.3g} ms ({seconds / self.seconds:.0%} of a core)"

        return (f"HTTP, {self.name}: {statistics.median(self.rates):,.0f} calls/s, "
                f"p50 {percentile_ms(self.latencies, 50):.3g} ms, p99 {percentile_ms(self.latencies, 99):.3g} ms; "
                f"CPU per call: server {cpu(self.server_cpu)}, clients {cpu(self.client_cpu)}")


async def run(b: Bench) -> list[Figure]:
    """The four HTTP rows: calls/s and p99 with tokens vs the no-op server, and vs ours without tokens."""
    from .bench import Figure

    sizes = QUICK if b.sizes.claim_rounds == 1 else FULL
    tasks = math.ceil((sizes.warm_up + sizes.rounds * (RAMP + sizes.window) + 1) * CYCLES_PER_S)
    b.say(f"HTTP: populating {tasks:,} ready tasks, twice")
    plain, tokened = b.work / "http-plain.db", b.work / "http-tokens.db"
    await D.add_ready(plain, tasks)
    await D.copy_db(plain, tokened)
    names = [f"bench-{i}" for i in range(CLIENTS)]
    async with Registry(SqliteStore(tokened, synchronous="NORMAL"), agent="bench") as reg:
        tokens = [(await Tokens(reg).create(name, "agent"))[1] for name in names]
    ports = [_free_port() for _ in range(3)]
    ours = ["-m", "mcp_tasks", "serve", "--http", "--sync", b.synchronous.lower(), "--rate", str(RATE),
            "--burst", str(BURST)]
    commands = [[*ours, "--db", str(tokened), "--port", str(ports[0])],
                [*ours, "--db", str(plain), "--port", str(ports[1])],
                ["-m", "mcp_tasks.harness.bench_noop", "--http", str(ports[2])]]
    b.say("HTTP: starting 3 servers")
    async with _servers(b, commands) as pids, AsyncExitStack() as stack:
        sides = [Side("tokens", True, pids[0]), Side("no tokens", True, pids[1]), Side("no-op", False, pids[2])]
        identities: list[list[dict[str, str]]] = [
            [{"Authorization": f"Bearer {t}"} for t in tokens], [{"X-MCP-Tasks-Agent": n} for n in names],
            [{} for _ in names]]
        for side, port, headers in zip(sides, ports, identities):
            side.clients = [await _client(stack, port, h) for h in headers]
        for side in sides:
            b.say(f"HTTP: warming up {side.name} ({sizes.warm_up:g} s)")
            await _window(side, 0.0, sizes.warm_up, count=False)
        for r in range(sizes.rounds):
            for side in sides[r % 3:] + sides[:r % 3]:
                b.say(f"HTTP: {CLIENTS} clients on {side.name}, round {r + 1} of {sizes.rounds}")
                await _window(side, RAMP, sizes.window)
    auth, plain_side, noop = sides
    if sizes.rounds > 1:
        for other in (noop, plain_side):
            spread = " ".join(f"{m / o:.2f}x" for m, o in zip(auth.rates, other.rates))
            b.notes.append(f"HTTP calls/s ratio by round, tokens vs {other.name}: {spread}")
    b.notes += [side.summary() for side in sides]
    ours_ms, noop_ms = auth.cpu_ms(auth.server_cpu), noop.cpu_ms(noop.server_cpu)
    if ours_ms is not None and noop_ms is not None:
        b.notes.append(f"HTTP server CPU per call, tokens vs no-op: {ours_ms / noop_ms:.2f}x (where the clients, one "
                       "process, use a whole core on the no-op, they and not its server set its calls/s)")
    calls, p99 = statistics.median(auth.rates), percentile_ms(auth.latencies, 99)
    return [
        Figure(ROWS[0], calls, "calls/s", f"no-op tool, bare MCPServer, same {CLIENTS} clients",
               statistics.median(noop.rates)),
        Figure(ROWS[1], p99, "ms", "no-op tool, bare MCPServer, p99", percentile_ms(noop.latencies, 99)),
        Figure(ROWS[2], calls, "calls/s", "ours without tokens (X-MCP-Tasks-Agent)",
               statistics.median(plain_side.rates)),
        Figure(ROWS[3], p99, "ms", "ours without tokens, p99", percentile_ms(plain_side.latencies, 99)),
    ]


@asynccontextmanager
async def _servers(b: Bench, commands: list[list[str]]) -> AsyncIterator[list[int]]:
    """`python COMMAND...` for each command, all started at once, whose last argument is the port it
    listens on; yields their pids once all listen, and stops them afterwards."""
    procs: list[asyncio.subprocess.Process] = []
    try:
        with b.server_log() as errlog:
            for command in commands:
                procs.append(await asyncio.create_subprocess_exec(
                    sys.executable, *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=errlog, env=D.child_env()))
        await asyncio.gather(*(_listening(p, int(c[-1]), b.work / "servers.log") for p, c in zip(procs, commands)))
        yield [p.pid for p in procs]
    finally:
        await asyncio.gather(*(_stop(p) for p in procs))


async def _client(stack: AsyncExitStack, port: int, headers: dict[str, str]) -> Any:
    """An MCP client of http://127.0.0.1:PORT/mcp sending `headers`, open until `stack` closes."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=60))
    return await stack.enter_async_context(Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp",
                                                                         http_client=http)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _listening(proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
    """Wait until the server accepts connections (uvicorn listens once the app has started)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.returncode is not None:
            raise RuntimeError(f"an HTTP server of the bench exited with code {proc.returncode} (see {log})")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"an HTTP server of the bench did not listen within {START_TIMEOUT:g} s") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGINT (uvicorn shuts down cleanly; elsewhere than POSIX, terminate), then kill after 10 s."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT if os.name == "posix" else signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _window(side: Side, ramp: float, seconds: float, count: bool = True) -> None:
    """Every client of `side` calls as fast as it can for `ramp` + `seconds` (and finishes its cycle);
    when `count`, the calls that finished within the last `seconds` are added to the side's figures."""
    finished: list[tuple[float, float]] = []  # (end, latency)
    start = time.perf_counter() + ramp
    end = start + seconds
    cpu: list[tuple[float | None, float]] = []  # (server, clients) at start and end

    async def call(client: Any, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        result = await client.call_tool(tool, args)
        t1 = time.perf_counter()
        finished.append((t1, t1 - t0))
        if result.is_error:
            raise RuntimeError(f"HTTP bench, {side.name}: {tool} failed: "
                               f"{result.content[0].text if result.content else result}")
        got: dict[str, Any] = result.structured_content or {}
        return got

    async def calls(client: Any) -> None:
        while time.perf_counter() < end:
            if not side.cycles:
                await call(client, "noop", {})
                continue
            got = await call(client, "claim", {})
            if not got.get("lease"):
                raise RuntimeError(f"HTTP bench, {side.name}: claim found no ready task ({got.get('message')}); "
                                   f"the bench seeds {CYCLES_PER_S:,} cycles a second")
            task, lease = got["task"]["id"], got["lease"]
            await call(client, "start", {"task_id": task, "lease": lease})
            await call(client, "complete", {"task_id": task, "lease": lease, "result": "ok"})

    async def clock() -> None:
        for t in (start, end):
            await asyncio.sleep(max(0.0, t - time.perf_counter()))
            cpu.append((cpu_seconds(side.pid), time.process_time()))

    await asyncio.gather(clock(), *(calls(c) for c in side.clients))
    if not count:
        return
    counted = [latency for t, latency in finished if start <= t <= end]
    side.rates.append(len(counted) / seconds)
    side.latencies += counted
    side.calls += len(counted)
    side.seconds += seconds
    (server0, clients0), (server1, clients1) = cpu
    side.server_cpu = None if side.server_cpu is None or server0 is None or server1 is None else \
        side.server_cpu + server1 - server0
    side.client_cpu += clients1 - clients0


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid`, all its threads (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile_ms(latencies: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `latencies` (seconds) in milliseconds; NaN for none."""
    if not latencies:
        return math.nan
    ordered = sorted(latencies)
    return 1000 * ordered[min(len(ordered), max(1, math.ceil(p / 100 * len(ordered)))) - 1]
