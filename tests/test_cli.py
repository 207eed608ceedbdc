"""The CLI on the same registry: init, add, list, show, verify; database location rules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    out = subprocess.run([sys.executable, "-m", "mcp_tasks", *args], capture_output=True, text=True, env=full_env)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_add_list_show_verify(tmp_path):
    db = str(tmp_path / "cli.db")
    assert "database ready" in run("init", "--db", db).stdout
    first = run("add", "Write the spec", "--db", db, "-p", "8", "--tag", "docs").stdout.strip()
    second = run("add", "Build it", "--db", db, "--depends-on", first, "-t", "code").stdout.strip()
    assert first.startswith("t-") and second.startswith("t-")
    listing = run("list", "--db", db).stdout
    assert first in listing and second in listing and "PENDING" in listing
    ready = run("list", "--ready", "--db", db).stdout
    assert first in ready and second not in ready
    shown = run("show", second, "--db", db).stdout
    assert "waiting for 1 dependencies" in shown and first in shown and "created" in shown
    assert "every stored task equals the replay" in run("verify", "--db", db).stdout


def test_errors_are_clear_and_exit_nonzero(tmp_path):
    db = str(tmp_path / "cli.db")
    out = run("add", "x", "--db", db, "--depends-on", "t-0000000000", check=False)
    assert out.returncode == 2 and "unknown tasks" in out.stderr
    out = run("show", "nope", "--db", db, check=False)
    assert out.returncode == 2 and "not a task id" in out.stderr
    out = run("add", "x", "--db", db, "-p", "11", check=False)
    assert out.returncode == 2 and "priority is 11; allowed: 1 to 10" in out.stderr


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
