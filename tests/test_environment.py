"""A bad environment gets one line, not a traceback; read commands never create databases.

Every case runs the real CLI in a subprocess and checks the exact one-line message, the exit code,
that nothing printed a traceback, and that the path (and its directory) is exactly as it was.

Most cases are about a SQLite file by nature (paths, directories, file modes, the application_id
mark, read-only files and mounts) and use one. PostgreSQL gets its own: URLs that cannot be used,
read commands that never create a registry; and the refusals, interrupts and piped output run
on every store.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from mcp import Client

from mcp_tasks import Registry
from mcp_tasks.errors import StoreBusy
from mcp_tasks.stores import SqliteStore, make_store
from mcp_tasks.stores.postgres import PostgresStore, parse_url
from mcp_tasks.stores.sqlite_file import APPLICATION_ID

from .databases import TestDatabase, new_database
from .server_helpers import Agent, stdio_params

ROOT = Path(__file__).resolve().parent.parent
HINT = "with --db or MCP_TASKS_DB"
READS = [["list"], ["show", "t-0000000000"], ["stats"], ["events"], ["verify"], ["replay", "t-0000000000"]]
WRITES = [["init"], ["add", "a task"], ["cancel", "t-0000000000", "-r", "why"], ["retry", "t-0000000000"],
          ["schedule", "t-0000000000"], ["review", "t-0000000000", "--approve"]]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`mcp-tasks ARGS` in a subprocess; stdin stays open, so a server that started would wait."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("MCP_TASKS_DB", "MCP_TASKS_SYNC")}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([sys.executable, "-m", "mcp_tasks", *args], stdin=subprocess.PIPE, capture_output=True,
                          text=True, env=full_env, timeout=120)


def refused(out: subprocess.CompletedProcess, code: int, message: str, *, exact: bool = True) -> None:
    """Exactly one line `error: ...` on stderr (equal to `message`, or starting with it), nothing
    on stdout, exit code `code`, no traceback."""
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0] == message if exact else lines[0].startswith(message), lines[0]
    assert out.stdout == ""
    assert out.returncode == code, (out.returncode, out.stderr)


def snapshot(path: Path) -> dict[str, object]:
    """The path's directory as it is: every entry's bytes and times, and the directory's own mtime
    (a file made and removed again changes it)."""
    folder = path.parent if path.parent.exists() else path.parent.parent
    entries: dict[str, object] = {".": (folder.stat().st_mtime_ns, folder.stat().st_mode)}
    for entry in sorted(folder.iterdir()):
        st = entry.stat()
        digest = hashlib.sha256(entry.read_bytes()).hexdigest() if entry.is_file() else "dir"
        entries[entry.name] = (digest, st.st_size, st.st_mtime_ns, st.st_mode)
    return entries


async def add_tasks(path: Path | str, tasks: int) -> list[str]:
    """`tasks` new tasks in a real mcp-tasks database (made if missing); returns their ids."""
    async with Registry(make_store(str(path)), agent="setup") as reg:
        ids: list[str] = []
        while len(ids) < tasks:
            batch = [{"title": f"task {len(ids) + i}"} for i in range(min(500, tasks - len(ids)))]
            ids += (await reg.create_tasks(batch)).ids
        return ids


def make_db(path: Path | str, tasks: int = 1) -> list[str]:
    """A real mcp-tasks database (a SQLite file or any location) with `tasks` tasks; returns their ids."""
    return asyncio.run(add_tasks(path, tasks))


def foreign_db(path: Path, *, wal: bool) -> None:
    """Another application's SQLite file: WAL mode with its own application_id, or a plain one
    (application_id 0) whose tables are not ours."""
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA application_id = 1234")
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.commit()
    conn.close()


# ---------------------------------------------------------------- read-only databases


def _ok(*command: str) -> bool:
    """Whether a system command ran and succeeded (False when it is not installed)."""
    try:
        return subprocess.run(command, capture_output=True).returncode == 0
    except OSError:
        return False


def _cannot_write(path: Path) -> bool:
    try:
        if path.is_dir():
            probe = path / ".probe"
            probe.touch()
            probe.unlink()
        else:
            open(path, "r+b").close()
    except OSError as exc:
        return exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    return False


@contextmanager
def read_only(db: Path, how: str) -> Iterator[tuple[str, Path]]:
    """Make the database `db` read-only for every process, as `how` says: "file" (the file only),
    "directory" (the file and its directory), "mount" (its directory mounted read-only) or "uri"
    (SQLite's read-only open, asked for with sqlite:///PATH?mode=ro). Yields the --db value to use
    and the path the database is then at.

    Permissions do not stop root: as root this uses a read-only bind mount or `chattr +i`, and
    where neither is allowed (a container without those capabilities) SQLite's own read-only open
    (sqlite:///PATH?mode=ro), so the database is really read-only however the tests run."""
    targets = [db] if how == "file" else [db, db.parent]
    if how == "uri":
        yield f"sqlite:///{db}?mode=ro", db
        return
    if os.geteuid() != 0:
        for p in targets:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            assert all(_cannot_write(p) for p in targets)
            yield str(db), db
        finally:
            for p in reversed(targets):
                p.chmod(0o755 if p.is_dir() else 0o644)
        return
    if how == "mount":
        mount_point = Path(tempfile.mkdtemp(dir=db.parent.parent))
        if _ok("mount", "--bind", "-o", "ro", str(db.parent), str(mount_point)):
            try:
                _ok("mount", "-o", "remount,bind,ro", str(mount_point))
                moved = mount_point / db.name
                if _cannot_write(moved) and _cannot_write(mount_point):
                    yield str(moved), moved
                    return
            finally:
                _ok("umount", str(mount_point))
        mount_point.rmdir()
    if _ok("chattr", "+i", *map(str, targets)):
        try:
            if all(_cannot_write(p) for p in targets):
                yield str(db), db
                return
        finally:
            _ok("chattr", "-i", *map(str, targets))
    yield f"sqlite:///{db}?mode=ro", db


def only_read(db_arg: str) -> str:
    """The stable start of the refusal of a write to a read-only database."""
    return f"error: {db_arg.removeprefix('sqlite:///').split('?')[0]} can only be read ("


# ---------------------------------------------------------------- the cases


@pytest.mark.parametrize("args", [["list"], ["add", "x"], ["serve"], ["serve", "--http", "--port", "8799"]])
def test_a_text_file_or_a_directory_is_refused_and_left_alone(tmp_path, args):
    text = tmp_path / "notes.txt"
    text.write_text("my shopping list\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    before = snapshot(text)
    out = cli(*args, "--db", str(text))
    refused(out, 4, f"error: {text} is not a SQLite database (it holds other data); mcp-tasks leaves it alone: "
                    f"name an mcp-tasks database or a new file {HINT}.")
    out = cli(*args, "--db", str(folder))
    refused(out, 4, f"error: {folder} is a directory, not a database file; name a file {HINT}.")
    assert snapshot(text) == before and list(folder.iterdir()) == []


@pytest.mark.parametrize("args", READS)
def test_read_commands_never_create_a_database(tmp_path, args):
    missing_dir = tmp_path / "nowhere" / "tasks.db"
    out = cli(*args, "--db", str(missing_dir))
    refused(out, 4, f"error: no database at {missing_dir}; create one with mcp-tasks init or name an existing one {HINT}.")
    assert not missing_dir.parent.exists()
    for db in (tmp_path / "absent.db", tmp_path / "empty.db"):
        if db.name == "empty.db":
            db.touch()
        before = snapshot(db)
        out = cli(*args, "--db", str(db))
        refused(out, 4, f"error: no database at {db}; create one with mcp-tasks init or name an existing one {HINT}.")
        assert snapshot(db) == before


@pytest.mark.parametrize("args", READS)
def test_read_commands_never_create_a_postgresql_registry(tmp_path, args):
    db = new_database("postgres", tmp_path)  # a schema nobody has made
    try:
        out = cli(*args, "--db", db.location)
        refused(out, 4, f"error: no mcp-tasks registry at {parse_url(db.location)[2]}; create one with mcp-tasks "
                        f"init or name an existing one {HINT}.")
        assert db.sql(("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (db.schema,)))[0] == [(0,)]
    finally:
        db.drop()


def test_write_commands_create_the_database_owner_only(tmp_path):
    db = tmp_path / "new" / "deeper" / "tasks.db"
    out = cli("add", "first", "--db", str(db))
    assert out.returncode == 0, out.stderr
    assert (db.stat().st_mode & 0o777, db.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    assert db.parent.parent.stat().st_mode & 0o777 == 0o700
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID

    async def sides_while_open() -> dict[str, int]:
        async with Registry(SqliteStore(db), agent="x") as reg:
            await reg.create_tasks([{"title": "second"}])
            return {s: Path(f"{db}{s}").stat().st_mode & 0o777 for s in ("-wal", "-shm")}

    assert asyncio.run(sides_while_open()) == {"-wal": 0o600, "-shm": 0o600}

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    empty = shared / "empty.db"
    empty.touch()
    empty.chmod(0o640)
    assert cli("init", "--db", str(empty)).returncode == 0
    assert cli("init", "--db", str(shared / "fresh.db")).returncode == 0
    assert (empty.stat().st_mode & 0o777, shared.stat().st_mode & 0o777) == (0o640, 0o755)  # existing modes kept
    assert (shared / "fresh.db").stat().st_mode & 0o777 == 0o600
    with closing(sqlite3.connect(empty, isolation_level=None)) as conn:  # the empty file became a database
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_opening_an_up_to_date_database_writes_nothing(tmp_path):
    db = tmp_path / "t.db"
    make_db(db)
    before = snapshot(db)
    for args in (["init"], ["list"], ["stats"], ["verify"]):
        out = cli(*args, "--db", str(db))
        assert out.returncode == 0, out.stderr
    after = snapshot(db)
    assert after[db.name] == before[db.name] and set(after) == set(before)


def test_a_path_through_a_file_cannot_be_created(tmp_path):
    blocker = tmp_path / "plain"
    blocker.write_text("x")
    db = blocker / "tasks.db"
    out = cli("add", "x", "--db", str(db))
    refused(out, 4, f"error: cannot create a database at {db}: Not a directory", exact=False)
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("wal", [False, True], ids=["plain", "wal"])
@pytest.mark.parametrize("args", [["list"], ["add", "x"], ["init"], ["serve"]])
def test_another_applications_database_is_refused_and_never_changed(tmp_path, args, wal):
    db = tmp_path / "theirs.db"
    foreign_db(db, wal=wal)
    before = snapshot(db)
    out = cli(*args, "--db", str(db))
    detail = "application_id 0x000004d2" if wal else "tables 'notes'"
    refused(out, 4, f"error: {db} is another application's SQLite database ({detail}); mcp-tasks leaves it alone: "
                    f"name an mcp-tasks database or a new file {HINT}.")
    assert snapshot(db) == before


def test_a_database_from_before_the_mark_is_ours_and_gets_it_when_written(tmp_path):
    db = tmp_path / "old.db"
    tid = make_db(db)[0]
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("PRAGMA application_id = 0")
    assert tid in cli("list", "--db", str(db)).stdout
    out = cli("add", "after the upgrade", "--db", str(db))
    assert out.returncode == 0, out.stderr
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


@pytest.mark.parametrize("args", [["list"], ["add", "x"], ["serve"]])
def test_a_database_from_a_newer_version_is_refused_in_one_line(tmp_path, args):
    db = tmp_path / "future.db"
    make_db(db)
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    before = snapshot(db)
    out = cli(*args, "--db", str(db))
    refused(out, 4, f"error: {db} has schema version 999, newer than this mcp-tasks knows (", exact=False)
    assert out.stderr.rstrip().endswith("upgrade mcp-tasks to use it (nothing was changed).")
    assert snapshot(db) == before


PG_FAILURES = [
    ("postgresql://postgres@127.0.0.1:1/test",
     "nothing accepts connections there (is PostgreSQL running, and are host and port right?)"),
    ("postgresql://postgres@127.0.0.1:5432/mcp_tasks_no_such_database",
     "that database does not exist (create it with createdb, or name another)"),
    ("postgresql://no_such_role:s3cret@127.0.0.1:5432/test", "the user name or password was refused"),
    ("postgresql://postgres:s3cret@db.invalid/test", "the host name cannot be resolved"),
]


@pytest.mark.parametrize("url, why", PG_FAILURES, ids=["refused", "no database", "no such user", "no such host"])
@pytest.mark.parametrize("args", [["list"], ["add", "x"], ["serve"], ["serve", "--http"]])
def test_a_postgresql_url_that_cannot_be_used_gets_one_line(tmp_path, args, url, why):
    out = cli(*args, "--db", url)
    shown = url.replace(":s3cret", "").split("?")[0]
    refused(out, 4, f"error: cannot connect to {shown}: {why}.")
    assert "s3cret" not in out.stderr


def test_a_malformed_postgresql_url_gets_one_line():
    out = cli("list", "--db", "postgresql://postgres@127.0.0.1:notaport/test")
    refused(out, 4, "error: the database URL is not valid: Port could not be cast to integer value as 'notaport' "
                    "(postgresql://USER@HOST:PORT/DBNAME).")
    out = cli("list", "--db", "postgresql://postgres@127.0.0.1:5432/test?schema=Bad-Name")
    refused(out, 4, "error: schema 'Bad-Name' in the database URL is not a plain name; use lower-case letters, "
                    "digits and _ (e.g. ?schema=team_a).")
    for bad in ("0", "-5", "nan", "soon", "601"):
        out = cli("list", "--db", f"postgresql://postgres@127.0.0.1:5432/test?connect_timeout={bad}")
        refused(out, 4, f"error: connect_timeout={bad!r} in the database URL is not a number of seconds from 1 to 600.")
    out = cli("list", "--db", "postgresql://postgres@127.0.0.1:5432/test?statement_timeout=4000")
    refused(out, 4, "error: statement_timeout='4000' in the database URL is not a number of seconds from 1 to 3600.")


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_timeouts_in_the_url_are_the_stores_settings(db):
    """statement_timeout (ours, never passed to libpq) is set on every pooled connection."""
    store = PostgresStore(f"{db.location}&statement_timeout=1.5&connect_timeout=3")
    assert (store.connect_timeout, store.statement_timeout) == (3.0, 1.5)
    assert "statement_timeout" not in store.conninfo and "connect_timeout=3" in store.conninfo
    await store.open()
    try:
        shown = await store.read(lambda tx: tx._execute("SHOW statement_timeout", {}).fetchone())
        with pytest.raises(StoreBusy) as refused:
            await store.read(lambda tx: tx._execute("SELECT pg_sleep(5)", {}).fetchone())
    finally:
        await store.close()
    assert shown == {"statement_timeout": "1500ms"}
    assert refused.value.problem == ("a database statement ran past 1.5s and was cancelled: nothing was changed; "
                                     "retry shortly")


@pytest.mark.parametrize("args", [["list"], ["add", "x"], ["serve"]])
def test_a_bad_sync_setting_names_the_allowed_values(tmp_path, args):
    db = tmp_path / "t.db"
    out = cli(*args, "--db", str(db), env={"MCP_TASKS_SYNC": "bogus"})
    refused(out, 2, "error: MCP_TASKS_SYNC is 'bogus'; allowed: full, normal (unset means full)")
    assert not db.exists()


@pytest.mark.parametrize("args, message", [
    (["serve", "--http", "--port", "99999"], "argument --port: must be between 1 and 65535, not 99999"),
    (["serve", "--port", "http"], "argument --port: 'http' is not a whole number"),
    (["serve", "--reaper-interval", "0"], "argument --reaper-interval: must be between 0.1 and 3600, not 0"),
    (["serve", "--reaper-interval", "nan"], "argument --reaper-interval: must be between 0.1 and 3600, not nan"),
    (["events", "--follow", "--interval", "0"], "argument --interval: must be between 0.05 and 3600, not 0"),
    (["list", "-n", "0"], "argument -n/--limit: must be between 1 and 100, not 0"),
    (["show", "t-0000000000", "--events", "-1"], "argument --events: must be between 0 and 500, not -1"),
    (["add", "x", "--max-retries", "1000"], "argument --max-retries: must be between 0 and 100, not 1000"),
    (["serve", "--lease-seconds", "1"], "argument --lease-seconds: must be between 5 and 86400, not 1"),
    (["list", "--sync", "sometimes"], "argument --sync: invalid choice: 'sometimes' (choose from 'full', 'normal')"),
])
def test_numeric_and_choice_flags_are_bounded(tmp_path, args, message):
    db = tmp_path / "t.db"
    out = cli(*args, "--db", str(db))
    command = "mcp-tasks " + args[0]
    refused(out, 2, f"error: {message} (see {command} --help)")
    assert not db.exists()


@pytest.mark.parametrize("how", ["file", "directory", "mount", "uri"])
def test_write_commands_on_a_read_only_database_are_refused_and_change_nothing(tmp_path, how):
    db = tmp_path / "ro" / "tasks.db"
    db.parent.mkdir()
    make_db(db)
    with read_only(db, how) as (arg, at):
        before = snapshot(at)
        for args in WRITES:
            out = cli(*args, "--db", arg)
            refused(out, 4, only_read(arg), exact=False)
            assert out.stderr.rstrip().endswith(f"nothing was changed; make it writable or name a writable database {HINT}.")
            assert snapshot(at) == before
        listed = cli("list", "--db", arg)
        assert listed.returncode == 0 and "task 0" in listed.stdout, listed.stderr
        if arg == str(at) and how != "file":  # a read-only directory: SQLite may not even add -wal/-shm
            assert snapshot(at) == before


@pytest.mark.parametrize("how", ["directory", "mount", "uri"])
async def test_serve_on_a_read_only_database_serves_reads_and_refuses_writes(tmp_path, how):
    db = tmp_path / "ro" / "tasks.db"
    db.parent.mkdir()
    ids = await add_tasks(db, 3)
    with read_only(db, how) as (arg, at):
        before = snapshot(at)
        async with Client(stdio_params(arg, "viewer")) as client:
            agent = Agent(client)
            got = await agent.call("get_task", task_id=ids[0], events=5)
            assert got["task"]["id"] == ids[0] and got["events"][0]["type"] == "created"
            found = await agent.call("find_tasks")
            assert sorted(t["id"] for t in found["tasks"]) == sorted(ids)
            for tool, args in (("create_tasks", {"tasks": [{"title": "new"}]}), ("claim", {"task_id": ids[1]})):
                text = await agent.refused(tool, **args)
                assert "can only be read" in text and "nothing was changed" in text, text
            assert (await agent.call("get_task", task_id=ids[1]))["task"]["state"] == "PENDING"
        after = snapshot(at)
        if arg != str(at):  # SQLite's read-only open in a writable directory may keep -wal/-shm beside it
            after = {k: v for k, v in after.items() if k not in (".", f"{db.name}-wal", f"{db.name}-shm")}
            before = {k: v for k, v in before.items() if k != "."}
        assert after == before


@pytest.mark.parametrize("bad", ["text", "foreign", "newer", "sync"])
def test_serve_on_a_bad_database_exits_at_once_with_one_line(tmp_path, bad):
    db = tmp_path / "t.db"
    env = {}
    if bad == "text":
        db.write_text("hello\n")
    elif bad == "foreign":
        foreign_db(db, wal=True)
    elif bad == "newer":
        make_db(db)
        with closing(sqlite3.connect(db, isolation_level=None)) as conn:
            conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    else:
        env = {"MCP_TASKS_SYNC": "bogus"}
    before = snapshot(db)
    out = cli("serve", "--db", str(db), env=env)  # stdin stays open: a started server would not return
    refused(out, 2 if bad == "sync" else 4, "error: ", exact=False)
    assert snapshot(db) == before


def test_output_piped_into_head_ends_quietly(db: TestDatabase):
    make_db(db.location, tasks=1500)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (["list", "-n", "100"], ["events", "--last", "5000"]):
        proc = subprocess.Popen([sys.executable, "-m", "mcp_tasks", *args, "--db", db.location],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert proc.stdout is not None and proc.stderr is not None
        if args[0] == "events":  # `| head -1`: read one line, then go away while it still writes
            assert proc.stdout.readline().startswith(b"#1 ")
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.wait(timeout=120) == 0, err
        assert err == "", err


def test_refusals_exit_3_and_an_interrupt_130(db: TestDatabase):
    tid = make_db(db.location)[0]
    out = cli("show", "t-0000000000", "--db", db.location)
    refused(out, 3, "error: no task has id t-0000000000", exact=False)
    out = cli("schedule", tid, "--db", db.location)
    refused(out, 3, "error: ", exact=False)
    follower = subprocess.Popen([sys.executable, "-m", "mcp_tasks", "events", "--follow", "--db", db.location],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert follower.stdout is not None and follower.stderr is not None
    assert tid in follower.stdout.readline()  # it is following now
    follower.send_signal(signal.SIGINT)
    assert follower.wait(timeout=60) == 130
    assert "Traceback" not in follower.stderr.read()
    follower.stdout.close()
    follower.stderr.close()
