"""Several hosts on one PostgreSQL database: `mcp-tasks serve --http` processes, each with its own
pool, and agents that are real MCP clients over streamable HTTP, moving between servers.

An agent keeps its work across connections: when its server goes away (killed, or the transport
breaks) it connects to another live server and repeats the call that was in flight with the same
lease (a repeat after a lost answer is answered as the first call was). A refusal that says the
database is busy or unavailable is retried after a pause; any other refusal drops the task. A call
that gets no answer within `call_limit` seconds fails the test: a hang is a bug.

Every answered change goes to the agent's journal ({"op", "task", "version", ...}), which
tests/fleet.py `check_history` holds against the event log.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psycopg
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CONNECTION_CLOSED


from .server_helpers import MCP_TASKS, ROOT, free_port

TRANSIENT = {"busy", "unavailable", "store"}  # refusals that say "nothing was changed (or maybe), retry"


def env_int(name: str, default: int) -> int:
    """An integer knob from the environment."""
    return int(os.environ.get(name, str(default)))


# ---------------------------------------------------------------- servers


@dataclass
class Server:
    """One `mcp-tasks serve --http` process (a "host"); restarted on the same port after a kill."""

    index: int
    location: str  # the --db value, with an application_name naming this server
    workdir: Path
    extra: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    killed: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self, run: int) -> Path:
        return self.workdir / f"server-{self.index}.{run}.log"

    def start(self) -> None:
        self.runs += 1
        with open(self.log(self.runs), "wb") as errors:
            self.proc = subprocess.Popen(
                [*MCP_TASKS, "serve", "--http", "--port", str(self.port), "--db", self.location,
                 "--agent", f"server-{self.index}", *self.extra],
                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=errors,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a host dying does."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.killed += 1

    def stop(self) -> int | None:
        """Terminate politely; the exit code (None when it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    async def health(self) -> tuple[int, dict[str, Any]]:
        async with httpx2.AsyncClient(timeout=30) as http:
            r = await http.get(f"{self.base}/healthz")
            return r.status_code, r.json()

    async def wait_healthy(self, seconds: float = 60) -> None:
        with anyio.fail_after(seconds):
            while True:
                if not self.alive():
                    raise AssertionError(f"server {self.index} exited: {self.log(self.runs).read_text()[-3000:]}")
                try:
                    if (await self.health())[1].get("status") == "ok":
                        return
                except (httpx2.HTTPError, OSError, ValueError):
                    pass
                await anyio.sleep(0.1)

    def logs(self) -> str:
        return "\n".join(f"--- server {self.index} run {run}\n{self.log(run).read_text()}"
                         for run in range(1, self.runs + 1))


@dataclass
class Cluster:
    """`count` servers on the database at `location` (a test database's --db value)."""

    location: str
    workdir: Path
    count: int
    extra: tuple[str, ...] = ()
    servers: list[Server] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tag = f"mh-{os.getpid()}-{random.randrange(16**6):06x}"  # application_name prefix of our backends
        sep = "&" if "?" in self.location else "?"
        for i in range(self.count):
            postgres = self.location.startswith(("postgres://", "postgresql://"))
            url = f"{self.location}{sep}application_name={self.tag}-{i}" if postgres else self.location
            self.servers.append(Server(i, url, self.workdir, self.extra))

    async def start(self) -> None:
        for s in self.servers:
            s.start()
        for s in self.servers:
            await s.wait_healthy()

    def stop(self) -> dict[int, int | None]:
        return {s.index: s.stop() for s in self.servers}

    def live(self) -> list[Server]:
        return [s for s in self.servers if s.alive()]

    def logs(self) -> str:
        return "\n".join(s.logs() for s in self.servers)

    def backends(self, conninfo: str) -> list[dict[str, Any]]:
        """Our servers' connections as PostgreSQL sees them: pid, application_name, state, query."""
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(
                "SELECT pid, application_name, state, query FROM pg_stat_activity "
                "WHERE starts_with(application_name, %s) AND pid <> pg_backend_pid()", (self.tag + "-",))
            names = [c.name for c in cur.description or []]
            return [dict(zip(names, row)) for row in cur.fetchall()]


def terminate(conninfo: str, pid: int) -> bool:
    """pg_terminate_backend: the backend dies, its transaction (if any) is rolled back."""
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
        return bool(row and row[0])


# ---------------------------------------------------------------- the plan and the checks


# ---------------------------------------------------------------- agents


class Refused(Exception):
    """A refusal other than busy/unavailable: the agent drops the task."""


class TransportLost(Exception):
    """The connection to the server broke: reconnect (to any live server) and repeat the call."""


def _has(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, kind):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_has(e, kind) for e in exc.exceptions)
    return False


@dataclass
class Stats:
    """What happened to the agents, for assertions and the report."""

    calls: int = 0
    transient: int = 0  # refusals saying busy/unavailable, retried
    reconnects: int = 0
    refused: int = 0
    refusals: dict[str, int] = field(default_factory=dict)  # by error code ("none": no code: a server error)
    transient_messages: dict[str, int] = field(default_factory=dict)
    transport_errors: dict[str, int] = field(default_factory=dict)
    slowest: float = 0.0


@dataclass
class HttpAgent:
    """One agent: a name, a journal, the work it holds, and a connection to one server at a time."""

    name: str
    cluster: Cluster
    journal: list[dict[str, Any]]
    stats: Stats
    rng: random.Random
    fail_rate: float = 0.05
    mode: str = "auto"
    call_limit: float = 90.0
    token: str | None = None  # a bearer token (its name is the agent's), else the X-MCP-Tasks-Agent header
    client: Client | None = None
    holding: dict[str, Any] | None = None  # {"task", "lease", "ops": [(tool, args), ...]}

    def write(self, **record: Any) -> None:
        self.journal.append({"agent": self.name, **record})

    async def run(self, deadline: float) -> None:
        """Work until nothing is left; reconnect whenever the server goes away."""
        while True:
            assert time.monotonic() < deadline, f"{self.name} still working at the deadline"
            live = self.cluster.live()
            if not live:
                await anyio.sleep(0.2)
                continue
            server = self.rng.choice(live)
            try:
                identity = {"Authorization": f"Bearer {self.token}"} if self.token else {"X-MCP-Tasks-Agent": self.name}
                async with httpx2.AsyncClient(headers=identity,
                                              timeout=httpx2.Timeout(30, read=self.call_limit + 30)) as http:
                    async with Client(streamable_http_client(f"{server.base}/mcp", http_client=http),
                                      mode=self.mode) as client:
                        self.client = client
                        if await self.work(deadline):
                            return
            except Exception as exc:  # noqa: BLE001 - a broken transport; anything else is re-raised
                if _has(exc, AssertionError):
                    raise
                key = type(exc).__name__ if not isinstance(exc, BaseExceptionGroup) else \
                    "/".join(sorted({type(e).__name__ for e in exc.exceptions}))
                self.stats.transport_errors[key] = self.stats.transport_errors.get(key, 0) + 1
                self.stats.reconnects += 1
                await anyio.sleep(self.rng.uniform(0.05, 0.3))
            finally:
                self.client = None

    async def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """The structured answer; busy/unavailable refusals are retried here, others raise Refused."""
        assert self.client is not None
        pause = 0.05
        while True:
            self.stats.calls += 1
            began = time.monotonic()
            with anyio.move_on_after(self.call_limit) as scope:
                try:
                    result = await self.client.call_tool(tool, args)
                except MCPError as exc:
                    raise TransportLost(f"{tool}: {exc}") from exc
            took = time.monotonic() - began
            self.stats.slowest = max(self.stats.slowest, took)
            if scope.cancelled_caught:
                raise AssertionError(f"{self.name}: {tool} got no answer within {self.call_limit:g}s (a hang)")
            if not result.is_error:
                return result.structured_content or {}
            error = (result.structured_content or {}).get("error", {})
            if error.get("code") in TRANSIENT:
                self.stats.transient += 1
                key = re.sub(r"\d+", "N", f"{tool}: {error.get('message', '')}")[:120]
                self.stats.transient_messages[key] = self.stats.transient_messages.get(key, 0) + 1
                await anyio.sleep(pause * (0.5 + self.rng.random()))
                pause = min(pause * 2, 1.0)
                continue
            self.stats.refused += 1
            code = str(error.get("code", "none"))
            self.stats.refusals[code] = self.stats.refusals.get(code, 0) + 1
            raise Refused(f"{tool}: {result.content[0].text}")  # type: ignore[union-attr]

    async def nothing_left(self) -> bool:
        """True when every task is DONE, CANCELLED or a dead letter."""
        assert self.client is not None
        try:
            res = await self.client.read_resource("tasks://board")
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                raise TransportLost(str(exc)) from exc
            self.stats.transient += 1  # the board could not be read (the database is down): ask again later
            return False
        board = json.loads(res.contents[0].text)  # type: ignore[union-attr]
        return all(n == 0 for state, n in board["counts"].items() if state not in ("DONE", "CANCELLED", "FAILED"))

    def plan(self, task: dict[str, Any], lease: str) -> list[tuple[str, dict[str, Any]]]:
        tid = task["id"]
        ops: list[tuple[str, dict[str, Any]]] = [("start", {"task_id": tid, "lease": lease})]
        step = (task.get("checkpoint_data") or {}).get("step", 0)
        for _ in range(self.rng.randint(1, 3)):
            step += 1
            data = {"step": step, "by": self.name, "nonce": self.rng.randrange(10**9)}
            ops.append(("checkpoint", {"task_id": tid, "lease": lease, "data": data}))
        if self.rng.random() < self.fail_rate:
            ops.append(("fail", {"task_id": tid, "lease": lease, "error": "random failure"}))
        else:
            ops.append(("complete", {"task_id": tid, "lease": lease, "result": {"by": self.name}}))
        return ops

    async def work(self, deadline: float) -> bool:
        """Claim and work on this connection; True when nothing is left to do."""
        idle = 0
        while True:
            assert time.monotonic() < deadline, f"{self.name} still working at the deadline"
            if self.holding is None:
                try:
                    claim = await self.call("claim", {"request_id": f"{self.name}-{self.rng.random()}"})
                except Refused:
                    claim = {}
                if "task" not in claim:
                    if await self.nothing_left():
                        return True
                    idle += 1
                    await anyio.sleep(min(0.02 * idle, 0.3))
                    continue
                idle = 0
                task = claim["task"]
                self.write(op="claim", task=task["id"], version=task["version"], checkpoint=task.get("checkpoint_data"))
                self.holding = {"task": task["id"], "ops": self.plan(task, claim["lease"])}
            ops = self.holding["ops"]
            tool, args = ops[0]
            try:
                res = await self.call(tool, args)
            except Refused as exc:
                self.write(op="refused", task=self.holding["task"], tool=tool, message=str(exc)[:300])
                self.holding = None
                continue
            record: dict[str, Any] = {"op": tool, "task": args["task_id"], "version": res.get("version")}
            if tool == "checkpoint":
                record["data"] = args["data"]
            self.write(**record)
            ops.pop(0)
            if not ops:
                self.holding = None
            elif tool == "checkpoint":
                await anyio.sleep(self.rng.random() * 0.01)


def make_agents(cluster: Cluster, count: int, seed: int, fail_rate: float,
                tokens: dict[str, str] | None = None) -> tuple[list[HttpAgent], list[dict], Stats]:
    """`count` agents sharing one journal and one Stats; half speak the 2025 protocol (sessions).
    With `tokens` (agent name -> bearer token), each agent presents its own."""
    journal: list[dict[str, Any]] = []
    stats = Stats()
    agents = [HttpAgent(f"agent-{i}", cluster, journal, stats, random.Random(seed * 1000 + i), fail_rate,
                        mode="legacy" if i % 2 else "auto", token=(tokens or {}).get(f"agent-{i}"))
              for i in range(count)]
    return agents, journal, stats


async def work_until_done(agents: list[HttpAgent], seconds: float, done: anyio.Event) -> None:
    """Run every agent to the end, then set `done`."""
    deadline = time.monotonic() + seconds
    try:
        async with anyio.create_task_group() as tg:
            for agent in agents:
                tg.start_soon(agent.run, deadline)
    finally:
        done.set()
