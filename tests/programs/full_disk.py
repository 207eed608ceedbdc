"""A real full disk under a real server, checked step by step (tests/test_faults.py runs this).

Usage: unshare --user --map-root-user --mount python full_disk.py stdio|http WORKDIR

Inside its own mount namespace (so no root is needed and nothing outlives the run) this mounts a
small tmpfs at WORKDIR/disk, puts the database there, serves it (stdio or HTTP, the server's log
outside the small disk), and then: an agent holds a task with a 5 s lease; a filler file takes
every free byte; writes are refused naming the cause while reads keep working; the lease runs out
and the reaper fails, logs one line and (HTTP) /healthz says degraded and why; the filler is
deleted; without a restart the reaper expires the lease, writes succeed and /healthz says ok;
nothing acknowledged is lost and verify is clean. Any deviation fails an assert with its reason.

SQLite only, unlike the other fault tests: a full disk is a property of a file on a disk, and
only the SQLite store writes its own file. A PostgreSQL store writes nothing to its host's disk:
a full disk there is the database server's condition (it answers with a disk-full error, which
the store wraps as the same "full" refusal), and filling it would take owning that server.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from mcp_tasks import Registry, State
from mcp_tasks.stores import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
FULL = "database or disk is full: nothing was changed"


async def call(client: Client, tool: str, **args: Any) -> tuple[bool, Any]:
    result = await client.call_tool(tool, args)
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    return (not result.is_error), (text if result.is_error else result.structured_content)


async def until(what: Callable[[], Awaitable[Any]], seconds: float, why: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = await what()
        if got:
            return got
        await anyio.sleep(0.1)
    raise AssertionError(f"waited {seconds:.0f}s: {why}")


def fill(path: Path) -> None:
    """Write zeros to `path` until the file system has no byte left."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        for size in (4096, 512, 1):  # the last blocks
            while True:
                try:
                    f.write(b"\0" * size)
                except OSError:
                    break


@contextlib.asynccontextmanager
async def serve(transport: str, db: str, log: Path) -> AsyncIterator[tuple[Client, str | None]]:
    args = ["serve", "--db", db, "--agent", "worker", "--reaper-interval", "0.2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if transport == "stdio":
        params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_tasks", *args], env=env)
        with open(log, "w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                yield client, None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "w") as errlog:
        proc = subprocess.Popen([sys.executable, "-m", "mcp_tasks", *args, "--http", "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=errlog)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx2.AsyncClient() as http:
            async def up() -> bool:
                with contextlib.suppress(httpx2.HTTPError):
                    return (await http.get(f"{base}/healthz")).status_code == 200
                return False

            await until(up, 30, "the HTTP server did not come up")
            async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
                yield client, base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def health(base: str) -> dict[str, Any]:
    async with httpx2.AsyncClient() as http:
        r = await http.get(f"{base}/healthz")
        body = r.json()
        assert r.status_code == 200, (r.status_code, body)  # 503 only when the database cannot be read
        return body


async def main(transport: str, work: Path) -> None:
    disk = work / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    db, log = str(disk / "t.db"), work / "server.log"
    async with Registry(SqliteStore(db), agent="planner") as reg:
        t1, t2 = (await reg.create_tasks([{"title": "held while the disk fills"}, {"title": "waits"}])).ids
    async with serve(transport, db, log) as (client, base):
        ok, claim = await call(client, "claim", task_id=t1, lease_seconds=5)
        assert ok, claim
        ok, started = await call(client, "start", task_id=t1, lease=claim["lease"])
        assert ok, started
        fill(disk / "filler")

        ok, refused = await call(client, "create_tasks", tasks=[{"title": "no room"}])
        assert not ok and refused.endswith(FULL + "."), refused
        ok, refused = await call(client, "checkpoint", task_id=t1, lease=claim["lease"], data={"step": 1})
        assert not ok and FULL in refused, refused
        ok, got = await call(client, "get_task", task_id=t1)
        assert ok and got["task"]["state"] == "ACTIVE", got
        ok, listed = await call(client, "list_available")
        assert ok and [t["id"] for t in listed["tasks"]] == [t2], listed

        async def reaper_failed() -> bool:
            return "reaper failed" in log.read_text(errors="replace")

        await until(reaper_failed, 30, "the reaper never failed while the disk was full")
        if base is not None:
            body = await health(base)
            assert body["status"] == "degraded", body
            assert any("reaper failing since" in p and FULL in p for p in body["problems"]), body
        ok, got = await call(client, "get_task", task_id=t1)
        assert ok and got["task"]["state"] == "ACTIVE", got  # no room to expire it yet

        (disk / "filler").unlink()

        async def expired() -> bool:
            ok, got = await call(client, "get_task", task_id=t1)
            return ok and got["task"]["state"] == "PENDING"

        await until(expired, 90, "the reaper did not resume by itself once space returned")
        ok, created = await call(client, "create_tasks", tasks=[{"title": "room again"}])
        assert ok and len(created["ids"]) == 1, created
        if base is not None:
            async def healthy() -> bool:
                return (await health(base))["status"] == "ok"

            await until(healthy, 30, "/healthz did not return to ok")
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert "works again" in text and FULL in text, text
    assert len(text.splitlines()) < 40, text
    async with Registry(SqliteStore(db), agent="checker") as reg:
        assert await reg.verify() == []
        task = await reg.get(t1)
        # exactly the reaper's two changes since the acknowledged start: expired (ACTIVE -> FAILED), retried
        assert task.state == State.PENDING and task.version == started["version"] + 2, task
        assert [e.type for e in await reg.events(t1)][-2:] == ["lease_expired", "retried"]
    print(json.dumps({"ok": True, "transport": transport}))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], Path(sys.argv[2]))
