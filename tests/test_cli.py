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
from typing import Any

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


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process (cheaper than a subprocess): (exit code, stdout, stderr)."""
    from mcp_tasks.cli import main

    try:
        code = main(list(args))
    except SystemExit as exc:  # a usage error, as the console script exits with it
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys, *args: str) -> Any:
    code, out, err = cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_every_command_prints_json_with_the_models_field_names(db, capsys):
    """--json after the command on each command that prints a result, parsed; the text forms too."""
    loc = ("--db", db.location)
    assert cli_json(capsys, "init", *loc)["tasks"] == 0
    first = cli_json(capsys, "add", "写文档 📝", "--tag", "docs", "-p", "8", *loc)["ids"][0]
    second = cli_json(capsys, "add", "Build it", "--depends-on", first, "--backlog", *loc)["ids"][0]
    listing = cli_json(capsys, "list", *loc)
    assert [t["id"] for t in listing["tasks"]] == [second, first] and listing["total"] == 2
    assert listing["capped"] is False and listing["tasks"][1]["title"] == "写文档 📝"
    assert [t["id"] for t in cli_json(capsys, "list", "--ready", *loc)["tasks"]] == [first]
    shown = cli_json(capsys, "show", second, *loc)
    assert shown["task"]["depends_on"] == [first] and shown["readiness"]["ready"] is False
    assert shown["events"][0]["type"] == "created" and "lease_hash" not in shown["task"]
    assert [t["state"] for t in cli_json(capsys, "schedule", second, *loc)["tasks"]] == ["PENDING"]
    edited = cli_json(capsys, "edit", second, "--title", "Build it well", "--remove-dep", first, "--tag", "code", *loc)
    assert (edited["title"], edited["depends_on"], edited["tags"], edited["version"]) == ("Build it well", [], ["code"], 3)
    assert cli_json(capsys, "cancel", second, "-r", "not needed", *loc)["state"] == "CANCELLED"
    code, out, _ = cli(capsys, "events", "--task", second, "--json", *loc)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [e["type"] for e in lines] == ["created", "scheduled", "updated", "cancelled"]
    assert all(isinstance(e["seq"], int) and isinstance(e["at"], float) for e in lines)
    verified = cli_json(capsys, "verify", *loc)
    assert verified == {"ok": True, "tasks": 2, "since": None, "jobs": 1, "problems": []}
    replayed = cli_json(capsys, "replay", second, *loc)
    assert replayed["equal"] is True and replayed["task"]["state"] == "CANCELLED" and replayed["events"] == 4
    stats = cli_json(capsys, "stats", *loc)
    assert stats["board"]["counts"]["CANCELLED"] == 1 and stats["board"]["ready"] == 1
    code, out, _ = cli(capsys, "show", first, *loc)
    assert code == 0 and "写文档 📝" in out and time.strftime("%Y-%m-%d", time.localtime()) in out


def test_list_pages_show_the_total_and_continue_by_cursor_or_all(db, capsys):
    loc = ("--db", db.location)
    ids = [cli_json(capsys, "add", f"task {i}" + (" with a longer title" if i == 4 else ""), *loc)["ids"][0]
           for i in range(5)]
    code, out, _ = cli(capsys, "list", "-n", "2", *loc)
    assert code == 0 and "2 of 5 tasks" in out and ids[4] in out and ids[2] not in out
    cursor = out.split("--cursor ")[1].split()[0]
    page = cli_json(capsys, "list", "-n", "2", "--cursor", cursor, *loc)
    assert [t["id"] for t in page["tasks"]] == [ids[2], ids[1]] and page["total"] == 5 and page["next_cursor"]
    code, out, _ = cli(capsys, "list", "-n", "2", "--all", *loc)
    assert code == 0 and all(i in out for i in ids) and "5 of 5 tasks" in out and "--cursor" not in out
    assert out.count("assignee") == 1  # one header for every page
    lines = out.splitlines()
    column = lines[0].index("updated")  # the widest title is on the first page: later pages keep its widths
    assert all(line[column - 2:column] == "  " and line[column].isdigit() for line in lines[2:7]), out
    code, out, _ = cli(capsys, "list", "-n", "2", "--all", "--json", *loc)
    assert [json.loads(line)["id"] for line in out.splitlines()] == ids[::-1]


def test_edit_checks_the_version_and_release_force_takes_held_work_back(db, capsys):
    import asyncio

    from mcp_tasks import Registry
    from mcp_tasks.errors import LeaseError
    from mcp_tasks.stores import make_store

    loc = ("--db", db.location)
    tid = cli_json(capsys, "add", "Long job", *loc)["ids"][0]
    code, out, _ = cli(capsys, "edit", tid, "-p", "9", "--expect-version", "1", *loc)
    assert code == 0 and out.strip() == f"{tid} version 2"
    code, _, err = cli(capsys, "edit", tid, "-p", "3", "--expect-version", "1", "--json", *loc)
    assert code == 3 and err.count("\n") == 1 and f"expected version 1 but {tid} is at version 2" in err
    code, _, err = cli(capsys, "edit", tid, *loc)
    assert code == 2 and "nothing to change" in err
    code, _, err = cli(capsys, "release", tid, *loc)
    assert code == 2 and "--force" in err

    async def hold(task_id: str) -> str:
        async with Registry(make_store(db.location), agent="worker") as reg:
            claim = await reg.claim(task_id)
            await reg.start(task_id, claim.lease)
            return claim.lease

    asyncio.run(hold(tid))
    taken = cli_json(capsys, "release", tid, "--force", "-r", "worker died", *loc)
    assert taken["state"] == "PENDING" and taken["retry_count"] == 1 and "worker died" in taken["error_log"][-1]["error"]
    running = cli_json(capsys, "add", "Running job", *loc)["ids"][0]
    lease = asyncio.run(hold(running))
    code, out, _ = cli(capsys, "cancel", running, "-r", "the customer withdrew", "--agent", "ada", *loc)
    assert code == 0 and out.strip() == f"{running} CANCELLED"

    async def late() -> str:
        async with Registry(make_store(db.location), agent="worker") as reg:
            try:
                await reg.checkpoint(running, lease)
            except LeaseError as exc:
                return exc.message
            return "accepted"

    assert "ada cancelled the task (the customer withdrew)" in asyncio.run(late())


def test_db_and_json_before_the_command_and_unknown_task_events(tmp_path):
    """As a person types it, in a real process: global options first, errors one line with the
    code (option parsing does not depend on the store)."""
    from mcp_tasks.cli import main

    location = str(tmp_path / "tasks.db")
    assert main(["--db", location, "add", "Anywhere"]) == 0
    listed = json.loads(run("--db", location, "--json", "list").stdout)
    assert [t["title"] for t in listed["tasks"]] == ["Anywhere"] and listed["total"] == 1
    out = run("events", "--task", "t-0000000000", "--db", location, "--json", check=False)
    assert out.returncode == 3 and out.stdout == ""
    assert out.stderr == "error: no task has id t-0000000000, and no event names it.\n"
