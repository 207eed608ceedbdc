"""The CLI on the same registry: init, add, list, show, verify, people's commands, events --follow,
stats, replay on every store (the `db` fixture's location as --db); the rules for where the
default SQLite file lives, and a refusal before any database is opened, on SQLite alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    out = subprocess.run([sys.executable, "-m", "mcp_tasks", *args], capture_output=True, text=True, env=full_env)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_add_list_show_verify(db):
    location = db.location
    assert "database ready" in run("init", "--db", location).stdout
    first = run("add", "Write the spec", "--db", location, "-p", "8", "--tag", "docs").stdout.strip()
    second = run("add", "Build it", "--db", location, "--depends-on", first, "-t", "code").stdout.strip()
    assert first.startswith("t-") and second.startswith("t-")
    listing = run("list", "--db", location).stdout
    assert first in listing and second in listing and "PENDING" in listing
    ready = run("list", "--ready", "--db", location).stdout
    assert first in ready and second not in ready
    shown = run("show", second, "--db", location).stdout
    assert "waiting for 1 dependencies" in shown and first in shown and "created" in shown
    assert "every stored task equals the replay" in run("verify", "--db", location).stdout


def test_errors_are_clear_and_exit_nonzero(db):
    location = db.location
    out = run("add", "x", "--db", location, "--depends-on", "t-0000000000", check=False)
    assert out.returncode == 3 and "unknown tasks" in out.stderr
    out = run("show", "nope", "--db", location, check=False)
    assert out.returncode == 3 and "not a task id" in out.stderr
    out = run("add", "x", "--db", location, "-p", "11", check=False)
    assert out.returncode == 2 and "argument -p/--priority: must be between 1 and 10, not 11" in out.stderr


def test_database_location_flag_env_and_default(tmp_path):
    env_db = tmp_path / "from-env.db"
    run("init", env={"MCP_TASKS_DB": str(env_db)})
    assert env_db.exists()
    flag_db = tmp_path / "from-flag.db"
    run("init", "--db", str(flag_db), env={"MCP_TASKS_DB": str(env_db)})
    assert flag_db.exists()
    data_home = tmp_path / "xdg"
    env = {"XDG_DATA_HOME": str(data_home), "HOME": str(tmp_path)}
    base = {k: v for k, v in os.environ.items() if k != "MCP_TASKS_DB"}
    out = subprocess.run([sys.executable, "-m", "mcp_tasks", "init"], capture_output=True, text=True,
                         env={**base, "PYTHONPATH": str(ROOT), **env})
    assert out.returncode == 0, out.stderr
    if sys.platform.startswith("linux"):
        assert (data_home / "mcp-tasks" / "tasks.db").exists()


def test_people_review_cancel_retry_and_schedule_from_the_cli(db):
    import asyncio

    from mcp_tasks import Registry
    from mcp_tasks.stores import make_store

    location = db.location
    reviewed = run("add", "Needs review", "--db", location, "--review").stdout.strip()
    dead = run("add", "Will die", "--db", location, "--max-retries", "0").stdout.strip()
    later = run("add", "Later", "--db", location, "--backlog").stdout.strip()

    async def work() -> None:
        async with Registry(make_store(location), agent="worker") as reg:
            for tid, finish in ((reviewed, "complete"), (dead, "fail")):
                claim = await reg.claim(tid)
                await reg.start(tid, claim.lease)
                if finish == "complete":
                    await reg.complete(tid, claim.lease, result="draft")
                else:
                    await reg.fail(tid, claim.lease, "broken", retryable=False)

    asyncio.run(work())
    own = run("review", reviewed, "--approve", "--db", location, "--agent", "worker", check=False)
    assert own.returncode == 3 and "cannot review it" in own.stderr
    assert "REVIEW" in run("show", reviewed, "--db", location).stdout
    assert f"{reviewed} DONE (reviewed by alice)" in run("review", reviewed, "--approve", "-m", "ok", "--db", location, "--agent", "alice").stdout
    assert f"{dead} PENDING" in run("retry", dead, "--db", location).stdout
    assert f"{dead} CANCELLED" in run("cancel", dead, "-r", "obsolete", "--db", location).stdout
    assert f"{later} PENDING" in run("schedule", later, "--db", location).stdout
    assert "every stored task equals the replay" in run("verify", "--db", location).stdout


def test_serve_refuses_a_nonsense_lease(tmp_path):
    from mcp_tasks.rules import Policy

    out = run("serve", "--db", str(tmp_path / "x.db"), "--lease-seconds", "0", check=False)
    bounds = f"between {Policy.lease_min:g} and {Policy.lease_max:g}, not 0"
    assert out.returncode == 2 and f"argument --lease-seconds: must be {bounds}" in out.stderr
    assert not (tmp_path / "x.db").exists()


def test_events_follow_stats_and_replay(db):
    import asyncio
    import queue
    import threading

    from mcp_tasks import Registry
    from mcp_tasks.stores import make_store

    location = db.location
    first = run("add", "Before following", "--db", location).stdout.strip()
    follower = subprocess.Popen(
        [sys.executable, "-m", "mcp_tasks", "events", "--follow", "--interval", "0.1", "--db", location],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        async def change() -> str:
            async with Registry(make_store(location), agent="worker") as reg:
                claim = await reg.claim(first)
                await reg.start(first, claim.lease)
                await reg.complete(first, claim.lease, result="ok", usage={"tokens": 10, "api_calls": 1, "cost": 0.5})
                return (await reg.create_tasks([{"title": "made while following"}])).ids[0]

        lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=lambda: [lines.put(line) for line in follower.stdout], daemon=True).start()
        second = asyncio.run(change())
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while not any(second in line and "created" in line for line in seen):
            assert time.monotonic() < deadline, f"follow did not show the new event: {seen}"
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        assert any(first in line and "completed" in line for line in seen)
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        follower.stdout.close()
    stats = run("stats", "--db", location).stdout
    assert "DONE 1" in stats and "PENDING 1" in stats and "worker" in stats
    replay = run("replay", first, "--db", location)
    assert json.loads(replay.stdout)["state"] == "DONE" and "equals the stored task" in replay.stderr
