"""The SQLite file behind a store: what is at a path, and opening it without surprises.

`inspect` finds out what a path holds (nothing, a directory, some other kind of file, another
application's database, a database from a newer mcp-tasks, or ours) without creating or changing
anything, not even a -wal or -shm file beside it. `create_file` makes a new database file readable
by its owner only; `prepare` does both before a store opens and says whether the database can only
be read. `connect` opens an existing one read-write or read-only, and `migrate` brings the schema
up to date, writing only when something needs it.

Our files are marked with `PRAGMA application_id`; a file from an mcp-tasks that predates the mark
(id 0, with our `tasks` and `schema_migrations` tables) is ours too and gets the mark the next time
it is opened for writing. Any other SQLite file is refused and never changed.
"""

from __future__ import annotations

import errno
import math
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import StoreCorrupt, StoreReadOnly, StoreUnavailable
from . import sql_files

APPLICATION_ID = int.from_bytes(b"MCPT", "big")  # 0x4D435054, in every database we create
_MAGIC = b"SQLite format 3\x00"
_OURS = {"tasks", "schema_migrations"}
NAME_IT = "with --db or MCP_TASKS_DB"


def latest_version() -> int:
    """The schema version this mcp-tasks writes: its highest migration."""
    return sql_files.migrations("sqlite")[-1].version


def no_database(path: str) -> StoreUnavailable:
    """The refusal of a read on a path that holds no database."""
    return StoreUnavailable(
        f"no database at {path}; create one with mcp-tasks init or name an existing one {NAME_IT}"
    )


def split_statements(script: str) -> list[str]:
    """Split an SQL script into complete statements (triggers with inner `;` stay whole)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip() and not all(ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()):
        raise ValueError(f"incomplete SQL statement at end of script: {buf.strip()[:80]!r}")
    return out


# ---------------------------------------------------------------- what is at a path


def _header(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(100)


def _is_wal(path: Path) -> bool:
    """Whether the file header says WAL mode (read and write format versions 2)."""
    try:
        return _header(path)[18:20] == b"\x02\x02"
    except OSError:
        return False


def _side(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _dir_writable(path: Path) -> bool:
    return os.access(path.parent, os.W_OK | os.X_OK)


def inspect(path: str) -> int | None:
    """The schema version of the mcp-tasks database at `path`, or None when there is none yet
    (no file, an empty file, or a SQLite database without any tables). Creates and changes nothing.

    Raises StoreUnavailable for a directory, an unreadable path, a file that is not SQLite or
    another application's database; StoreCorrupt for a database from a newer mcp-tasks;
    sqlite3.Error when SQLite cannot read the file.
    """
    p = Path(os.path.abspath(path))
    try:
        if p.is_dir():
            raise StoreUnavailable(f"{path} is a directory, not a database file; name a file {NAME_IT}")
        if not p.exists():
            return None
        if not p.is_file():
            raise StoreUnavailable(f"{path} is not a regular file (a device or socket); name a database file {NAME_IT}")
        header = _header(p)
    except PermissionError:
        raise StoreUnavailable(
            f"cannot read {path}: permission denied; fix its permissions or name another database {NAME_IT}"
        ) from None
    except OSError as exc:
        raise StoreUnavailable(f"cannot read {path}: {exc.strerror or exc}; name another database {NAME_IT}") from None
    if not header:
        return None
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise StoreUnavailable(
            f"{path} is not a SQLite database (it holds other data); mcp-tasks leaves it alone: "
            f"name an mcp-tasks database or a new file {NAME_IT}"
        )
    if int.from_bytes(header[68:72], "big") not in (0, APPLICATION_ID):
        raise _foreign(path, f"application_id {int.from_bytes(header[68:72], 'big'):#010x}")
    conn = connect(path, read_only=True, timeout=5.0, probe=True)
    try:
        app_id, tables, versions = _schema(conn)
    finally:
        conn.close()
    if not _check(path, app_id, tables, versions):
        return None
    return max(versions, default=0)


def _schema(conn: sqlite3.Connection) -> tuple[int, set[str], set[int]]:
    """(application_id, table names, applied migration versions) of the database, read only."""
    q = sql_files.queries("sqlite")
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    tables = {str(r[0]) for r in conn.execute(q["table_names"])}
    versions = {int(r[0]) for r in conn.execute(q["applied_migrations"])} if "schema_migrations" in tables else set()
    return app_id, tables, versions


def _check(path: str, app_id: int, tables: set[str], versions: set[int]) -> bool:
    """True for one of our databases, False for an empty one; raises for anything else."""
    if app_id not in (0, APPLICATION_ID):
        raise _foreign(path, f"application_id {app_id:#010x}")
    if app_id == 0 and tables and not _OURS <= tables:
        shown = ", ".join(repr(t)[:40] for t in sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
        raise _foreign(path, f"tables {shown}")
    newer = versions - {m.version for m in sql_files.migrations("sqlite")}
    if newer:
        raise StoreCorrupt(
            f"{path} has schema version {max(newer)}, newer than this mcp-tasks knows ({latest_version()}): "
            "it was written by a newer mcp-tasks; upgrade mcp-tasks to use it (nothing was changed)"
        )
    return "tasks" in tables


def _foreign(path: str, detail: str) -> StoreUnavailable:
    return StoreUnavailable(
        f"{path} is another application's SQLite database ({detail}); mcp-tasks leaves it alone: "
        f"name an mcp-tasks database or a new file {NAME_IT}"
    )


def why_read_only(path: str) -> str | None:
    """Why the database at `path` can only be read, or None when it can be written."""
    p = Path(os.path.abspath(path))
    try:
        if os.statvfs(p).f_flag & os.ST_RDONLY:
            return "it is on a read-only file system"
    except (AttributeError, OSError):  # no statvfs on Windows
        pass
    if not os.access(p, os.W_OK):
        return "the file is not writable"
    if not _dir_writable(p):
        return "its directory is not writable, so SQLite cannot create its -wal and -shm files there"
    return None


def read_only_error(path: str, reason: str) -> StoreReadOnly:
    """The refusal of a write to a database that can only be read."""
    return StoreReadOnly(
        f"{path} can only be read ({reason}): nothing was changed; make it writable or name a "
        f"writable database {NAME_IT}"
    )


# ---------------------------------------------------------------- creating and opening


def prepare(path: str, *, create: bool, must_write: bool, read_only_reason: str | None) -> str | None:
    """Get `path` ready to open before SQLite touches it: refuse what is not ours, create a new
    database if `create` allows, and return why it can only be read (None: it can be written).

    `read_only_reason` is given when the caller asked for a read-only open; `must_write` refuses
    a database that can only be read instead of opening it read-only."""
    version = inspect(path)
    if version is None:
        if not create or read_only_reason:
            raise no_database(path)
        create_file(path)
    reason = read_only_reason or why_read_only(path)
    if reason is None:
        return None
    if version is None:
        raise StoreReadOnly(f"cannot create a database at {path}: {reason}; choose a writable place {NAME_IT}")
    if must_write:
        raise read_only_error(path, reason)
    if version < latest_version():
        raise StoreReadOnly(
            f"{path} has schema version {version} and needs upgrading to {latest_version()}, but {reason}: "
            "open it once with write access (mcp-tasks init) to upgrade it"
        )
    return reason


def create_file(path: str) -> None:
    """An empty database file at `path`, readable by its owner only (0600; SQLite gives the -wal
    and -shm files the same mode), in directories created owner-only (0700) where missing.
    Existing files and directories keep their modes."""
    p = Path(os.path.abspath(path))
    try:
        missing = []
        d = p.parent
        while not d.exists() and d != d.parent:
            missing.append(d)
            d = d.parent
        for d in reversed(missing):
            try:
                d.mkdir(mode=0o700)
            except FileExistsError:
                continue
            os.chmod(d, 0o700)  # exactly, whatever the umask
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as exc:
        refused = StoreReadOnly if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else StoreUnavailable
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(p) else ""
        raise refused(
            f"cannot create a database at {path}: {exc.strerror or exc}{where}; choose a writable place {NAME_IT}"
        ) from None


def connect(path: str, *, read_only: bool, timeout: float, probe: bool = False) -> sqlite3.Connection:
    """A connection to the existing database at `path`; never creates it.

    Read-only connections never write. SQLite reads a WAL database through its -wal and -shm files
    and creates them when they are missing; where that is impossible (a read-only directory or
    mount) or unwanted (`probe`: looking at a file that may not be ours), a WAL database with no
    -wal file is opened `immutable`: everything committed is then in the main file.
    """
    kwargs: dict[str, Any] = dict(timeout=timeout, isolation_level=None, check_same_thread=False, cached_statements=256)
    if path == ":memory:":
        return with_math(sqlite3.connect(path, **kwargs))
    p = Path(os.path.abspath(path))
    uri = p.as_uri()
    if not read_only:
        return with_math(sqlite3.connect(uri + "?mode=rw", uri=True, **kwargs))
    immutable = not _side(p, "-wal").exists() and _is_wal(p) and (probe or not _dir_writable(p))
    conn = sqlite3.connect(uri + ("?mode=ro&immutable=1" if immutable else "?mode=ro"), uri=True, **kwargs)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        conn.close()
        if immutable or (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF != sqlite3.SQLITE_CANTOPEN:
            raise
        conn = sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, **kwargs)  # -wal there, -shm impossible
    return conn


def _ln(x: Any) -> float | None:
    return math.log(x) if isinstance(x, (int, float)) and x > 0 else None


def _floor(x: Any) -> int | None:
    return math.floor(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def with_math(conn: sqlite3.Connection) -> sqlite3.Connection:
    """`conn`, with ln() and floor() (the aggregates' triggers use them) supplied where this SQLite
    was built without its math functions."""
    try:
        conn.execute("SELECT ln(2.0), floor(2.5)")
    except sqlite3.OperationalError:
        conn.create_function("ln", 1, _ln, deterministic=True)
        conn.create_function("floor", 1, _floor, deterministic=True)
    return conn


# ---------------------------------------------------------------- schema


def migrate(conn: sqlite3.Connection, path: str, retry: Callable[[Callable[[], Any]], Any]) -> None:
    """Bring the database on `conn` (opened read-write) up to date: the schema in an empty one,
    pending migrations in an older one, our application_id, WAL mode. Writes only what is missing;
    refuses another application's database and a newer one. `retry` runs a statement until the
    database is no longer busy."""
    if _needs_writing(path, *_schema(conn)):
        retry(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            app_id, tables, versions = _schema(conn)  # again, now that no one else can write
            _check(path, app_id, tables, versions)
            if app_id != APPLICATION_ID:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            if "tasks" not in tables:
                create_schema(conn)
            else:
                apply_migrations(conn, versions)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    if path != ":memory:" and str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        retry(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())


def _needs_writing(path: str, app_id: int, tables: set[str], versions: set[int]) -> bool:
    if not _check(path, app_id, tables, versions):
        return True
    return app_id != APPLICATION_ID or max(versions, default=0) < latest_version()


def create_schema(conn: sqlite3.Connection) -> None:
    """A new database: the current schema in one go, every migration recorded as applied."""
    q = sql_files.queries("sqlite")
    conn.execute(q["create_migrations_table"])
    for stmt in split_statements(sql_files.schema("sqlite")):
        conn.execute(stmt)
    now = time.time()
    for m in sql_files.migrations("sqlite"):
        conn.execute(q["record_migration"], {"version": m.version, "name": m.name, "at": now})


def apply_migrations(conn: sqlite3.Connection, applied: set[int], upto: int | None = None) -> list[int]:
    """Apply the migrations not in `applied` (up to version `upto`), in order; returns those applied."""
    q = sql_files.queries("sqlite")
    conn.execute(q["create_migrations_table"])
    done = []
    for m in sql_files.migrations("sqlite"):
        if m.version in applied or (upto is not None and m.version > upto):
            continue
        for stmt in split_statements(m.sql):
            conn.execute(stmt)
        conn.execute(q["record_migration"], {"version": m.version, "name": m.name, "at": time.time()})
        done.append(m.version)
    return done


def schema_fingerprint(conn: sqlite3.Connection) -> dict[str, Any]:
    """Normalised description of the schema of `conn`'s database (rows as sqlite3.Row)."""
    q = sql_files.queries("sqlite")
    out: dict[str, Any] = {}
    for obj in conn.execute(q["schema_objects"]).fetchall():
        kind, name, table, sql = obj["type"], obj["name"], obj["tbl_name"], obj["sql"]
        entry: dict[str, Any] = {"type": kind, "table": table}
        if kind == "table":
            entry["columns"] = [tuple(r) for r in conn.execute(f"PRAGMA table_xinfo({name!r})")]
            entry["foreign_keys"] = [tuple(r)[2:] for r in conn.execute(f"PRAGMA foreign_key_list({name!r})")]
        elif kind == "index":
            entry["columns"] = [tuple(r) for r in conn.execute(f"PRAGMA index_xinfo({name!r})")]
            entry["sql"] = " ".join((sql or "").split())
        else:
            entry["sql"] = " ".join((sql or "").split())
        out[name] = entry
    return out
