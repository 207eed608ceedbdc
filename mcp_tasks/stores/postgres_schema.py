"""Creating and migrating the PostgreSQL store's schema: storage/postgres/schema.sql for a new
registry, storage/postgres/migrations/ for an older one, recorded in schema_migrations; a newer
schema, or a schema of that name holding another application's tables, is refused unchanged.
Concurrent openers (servers starting together on several hosts) take turns on an advisory lock."""

from __future__ import annotations

import time
from typing import Any

from ..errors import StoreCorrupt, StoreUnavailable
from . import sql_files

MIGRATION_LOCK = 0x4D435450_0002


def migrate(pool: Any, schema: str, location: str, create: bool = True) -> None:
    """Bring the registry in `schema` up to date, creating it when it does not exist and `create`
    is set (read commands never create one)."""
    import psycopg

    q = sql_files.queries("postgres")
    known = sql_files.migrations("postgres")
    try:
        with pool.connection() as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%(key)s)", {"key": MIGRATION_LOCK})
                tables = {r["name"] for r in conn.execute(q["table_names"]).fetchall()}
                if not tables and not create:
                    raise StoreUnavailable(f"no mcp-tasks registry at {location}; create one with mcp-tasks init "
                                           "or name an existing one with --db or MCP_TASKS_DB")
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                if tables and "schema_migrations" not in tables:
                    raise StoreUnavailable(
                        f"{location}: schema {schema} holds tables that are not an mcp-tasks registry "
                        f"({', '.join(sorted(tables)[:5])}); mcp-tasks leaves them alone: name another schema "
                        "with ?schema=NAME in the URL"
                    )
                conn.execute(q["create_migrations_table"])
                applied = {r["version"] for r in conn.execute(q["applied_migrations"]).fetchall()}
                newer = applied - {m.version for m in known}
                if newer:
                    raise StoreCorrupt(
                        f"{location} has schema version {max(newer)}, newer than this mcp-tasks knows "
                        f"({len(known)}); upgrade mcp-tasks to use it"
                    )
                if not (tables - {"schema_migrations"}):
                    conn.execute(sql_files.schema("postgres"))
                    for m in known:
                        conn.execute(q["record_migration"], {"version": m.version, "name": m.name, "at": time.time()})
                    return
                for m in known:
                    if m.version not in applied:
                        conn.execute(m.sql)
                        conn.execute(q["record_migration"], {"version": m.version, "name": m.name, "at": time.time()})
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StoreUnavailable(f"{location}: the user may not create the registry's tables "
                               f"({' '.join(str(exc).split())[:200]}); grant CREATE or have an owner run mcp-tasks init") from exc
    except psycopg.OperationalError as exc:
        from .postgres import connect_error

        raise connect_error(location, exc) from exc
