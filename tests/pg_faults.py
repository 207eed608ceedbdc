"""Real faults for the multi-host tests: SIGKILLed servers, killed PostgreSQL backends, and the
PostgreSQL server itself stopped and started again.

The server is controlled with `pg_ctlcluster` (Debian's PostgreSQL packages: the cluster on the test
database's port); MCP_TASKS_TEST_PG_CTL names another command that takes `stop` and `start` as its
last argument. Stopping PostgreSQL
affects every database on that server: callers start it again in a `finally`.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from .multihost import Cluster, terminate



def is_listener(backend: dict) -> bool:
    """The connection a server LISTENs on (its last statement was LISTEN)."""
    return str(backend["query"] or "").lstrip().upper().startswith("LISTEN")


def pg_ctl_command(conninfo: str) -> list[str]:
    """The command that stops and starts the PostgreSQL server of `conninfo` (the action is appended):
    MCP_TASKS_TEST_PG_CTL, or pg_ctlcluster for the local cluster on that port."""
    given = os.environ.get("MCP_TASKS_TEST_PG_CTL")
    if given:
        return shlex.split(given)
    port = urllib.parse.urlsplit(conninfo).port or 5432
    if shutil.which("pg_lsclusters") and shutil.which("pg_ctlcluster"):
        listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, timeout=30).stdout
        for line in listing.splitlines():
            version, name, cluster_port = line.split()[:3]
            if cluster_port == str(port):
                return ["pg_ctlcluster", "--skip-systemctl-redirect", version, name]
    raise AssertionError(f"no way to restart the PostgreSQL server on port {port}: this test needs pg_ctlcluster "
                         "(Debian's packages) or MCP_TASKS_TEST_PG_CTL, a command taking stop or start last")


def pg_ready(conninfo: str) -> bool:
    """True when the PostgreSQL server of `conninfo` accepts connections (pg_isready)."""
    parts = urllib.parse.urlsplit(conninfo)
    out = subprocess.run(["pg_isready", "-q", "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432)],
                         timeout=30)
    return out.returncode == 0


def pg_control(action: str, conninfo: str, seconds: float = 120) -> None:
    """`stop` or `start` the PostgreSQL server; `start` returns once it accepts connections."""
    command = [*pg_ctl_command(conninfo), action]
    out = subprocess.run(command, timeout=seconds, capture_output=True, text=True)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({out.returncode}): {(out.stdout + out.stderr)[-2000:]}")
    if action == "start":
        deadline = time.monotonic() + seconds
        while not pg_ready(conninfo):
            assert time.monotonic() < deadline, "PostgreSQL did not accept connections after starting"
            time.sleep(0.2)


def ensure_running(conninfo: str) -> None:
    """Start PostgreSQL when it is not accepting connections (the `finally` of every test that stops it)."""
    if not pg_ready(conninfo):
        try:
            pg_control("start", conninfo)
        except AssertionError:  # "already running" while it finishes starting: waited for below
            pass
        deadline = time.monotonic() + 120
        while not pg_ready(conninfo):
            assert time.monotonic() < deadline, "PostgreSQL is not running after the test"
            time.sleep(0.2)


def record_connections(backends: list[dict], seen: dict[int, int]) -> None:
    """Keep in `seen` the most connections each server had open at once."""
    per: dict[int, int] = {}
    for b in backends:
        i = int(b["application_name"].rsplit("-", 1)[1])
        per[i] = per.get(i, 0) + 1
    for i, n in per.items():
        seen[i] = max(seen.get(i, 0), n)


async def watch_connections(cluster: Cluster, conninfo: str, done: anyio.Event, seen: dict[int, int]) -> None:
    """Until `done`: how many connections each server holds, as PostgreSQL sees them (into `seen`)."""
    while not done.is_set():
        record_connections(await anyio.to_thread.run_sync(cluster.backends, conninfo), seen)
        with anyio.move_on_after(0.5):
            await done.wait()


@dataclass
class Chaos:
    """Kills, recorded: backends terminated (how many mid-transaction, how many listeners) and servers
    SIGKILLed and started again."""

    cluster: Cluster
    conninfo: str
    rng: random.Random
    terminated: int = 0
    in_transaction: int = 0  # active, or idle in a transaction (between its statements)
    between_statements: int = 0  # of those, idle in a transaction
    listeners: int = 0
    server_kills: int = 0
    seen_backends: dict[int, int] = field(default_factory=dict)  # most connections seen at once, per server

    async def terminate_some(self, listener: bool = False) -> None:
        """Kill one backend of our servers: a listener when asked, else one in a transaction when
        there is one (mid-transaction), else any."""
        backends = await anyio.to_thread.run_sync(self.cluster.backends, self.conninfo)
        record_connections(backends, self.seen_backends)
        if listener:
            pool = [b for b in backends if is_listener(b)]
        else:
            pool = [b for b in backends if b["state"] in ("active", "idle in transaction")
                    and not is_listener(b)] or backends
        if not pool:
            return
        victim = self.rng.choice(pool)
        if await anyio.to_thread.run_sync(terminate, self.conninfo, victim["pid"]):
            self.terminated += 1
            self.in_transaction += victim["state"] in ("active", "idle in transaction") and not is_listener(victim)
            self.between_statements += victim["state"] == "idle in transaction"
            self.listeners += is_listener(victim)

    async def kill_server(self) -> None:
        """SIGKILL a live server, start it again on its port, wait until it is healthy."""
        live = self.cluster.live()
        if not live:
            return
        server = self.rng.choice(live)
        server.kill()
        self.server_kills += 1
        await anyio.sleep(self.rng.uniform(0.2, 1.0))
        server.start()
        await server.wait_healthy()

    async def run(self, done: anyio.Event, progress: Callable[[], float], kills: int, terminate_every: float) -> None:
        """Until `done`: terminate a backend every `terminate_every` seconds (on average; the first and
        every tenth a listener), and SIGKILL a server each time `progress()` (the share of the work
        done, 0 to 1) passes 1/(kills+1), 2/(kills+1), ... of the way."""
        rounds = 0
        while not done.is_set():
            with anyio.move_on_after(self.rng.uniform(0.5, 1.5) * terminate_every):
                await done.wait()
            if done.is_set():
                return
            await self.terminate_some(listener=rounds % 10 == 0)
            rounds += 1
            if self.server_kills < kills and progress() >= (self.server_kills + 1) / (kills + 1):
                await self.kill_server()


async def listeners_of(cluster: Cluster, conninfo: str) -> set[int]:
    """The servers that have a LISTEN connection open now."""
    backends = await anyio.to_thread.run_sync(cluster.backends, conninfo)
    return {int(b["application_name"].rsplit("-", 1)[1]) for b in backends if is_listener(b)}
