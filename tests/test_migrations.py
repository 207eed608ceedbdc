"""Schema migrations, per dialect: a migrated database equals a fresh one, and keeps its data.

Each store keeps its own numbered migrations (storage/<dialect>/migrations/) beside the schema a
new database gets whole (schema.sql). A database built by applying the migrations in order, the
way older versions left it, must end up with exactly the fresh schema once the store has opened
it; a database from a newer version is refused unchanged.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from mcp_tasks import Registry, State
from mcp_tasks.errors import StoreCorrupt
from mcp_tasks.stores import sql_files
from mcp_tasks.stores.sqlite_file import apply_migrations, schema_fingerprint

from .databases import TestDatabase, new_database


def fingerprint(db: TestDatabase) -> dict[str, Any]:
    """Every schema object of the database by name, normalised (the schema's own name left out)."""
    if db.kind == "sqlite":
        conn = sqlite3.connect(str(db.path))
        conn.row_factory = sqlite3.Row
        try:
            return schema_fingerprint(conn)
        finally:
            conn.close()
    rows = db.sql(sql_files.queries("postgres")["schema_objects"], bypass=False)[0]
    unqualified = f"{db.schema}."
    return {f"{kind} {name}": (table, " ".join(str(sql).replace(unqualified, "").split()))
            for kind, name, table, sql in rows}


def migrate_by_hand(db: TestDatabase, upto: int | None = None) -> None:
    """Apply the dialect's migrations in order (up to version `upto`), recording each, as the
    versions that shipped them did; no store is opened."""
    if db.kind == "sqlite":
        conn = sqlite3.connect(str(db.path), isolation_level=None)
        conn.execute("BEGIN")
        apply_migrations(conn, set(), upto)
        conn.execute("COMMIT")
        conn.close()
        return
    q = sql_files.queries("postgres")
    statements: list[str | tuple[str, tuple[Any, ...]]] = [f"CREATE SCHEMA {db.schema}", q["create_migrations_table"]]
    for m in sql_files.migrations("postgres"):
        if upto is None or m.version <= upto:
            statements += [m.sql, ("INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                                   (m.version, m.name, time.time()))]
    db.sql(*statements, bypass=False)


async def opened(db: TestDatabase) -> None:
    """Open and close a store on the database (creating or migrating it)."""
    store = db.store()
    await store.open()
    await store.close()


async def test_migrated_database_equals_a_fresh_one(db, tmp_path):
    migrated = new_database(db.kind, tmp_path)
    try:
        await opened(db)
        migrate_by_hand(migrated)
        await opened(migrated)  # opening an up-to-date database changes nothing
        fresh, upgraded = fingerprint(db), fingerprint(migrated)
        assert fresh == upgraded
        if db.kind == "sqlite":
            assert {"tasks", "deps", "events", "requests", "tasks_ready", "events_no_update"} <= set(fresh)
        else:
            assert {"index tasks_ready", "trigger events_no_update", "function events_append_only",
                    "column event_head.seq", "column requests.response"} <= set(fresh)
    finally:
        migrated.drop()


async def test_every_older_schema_upgrades_with_its_data(db, tmp_path: Path):
    await opened(db)
    for upto in [m.version for m in sql_files.migrations(db.kind)]:
        older = new_database(db.kind, tmp_path)
        try:
            migrate_by_hand(older, upto)
            async with Registry(older.store(), agent="old") as reg:
                tid = (await reg.create_tasks([{"title": "made before the upgrade"}])).ids[0]
            async with Registry(older.store(), agent="new") as reg:
                assert (await reg.get(tid)).state == State.PENDING
                assert await reg.verify() == []
            assert fingerprint(older) == fingerprint(db)
        finally:
            older.drop()


def recorded(db: TestDatabase) -> list[int]:
    return [r[0] for r in db.sql("SELECT version FROM schema_migrations ORDER BY version", bypass=False)[0]]


async def test_migrations_are_recorded(db):
    await opened(db)
    assert recorded(db) == [m.version for m in sql_files.migrations(db.kind)]


async def test_a_database_from_a_newer_version_is_refused(db):
    await opened(db)
    db.sql("INSERT INTO schema_migrations VALUES (999, 'future', 0)", bypass=False)
    store = db.store()
    with pytest.raises(StoreCorrupt) as info:
        await store.open()  # a store that fails to open closes itself
    assert "has schema version 999, newer than this mcp-tasks knows" in info.value.message
    assert "upgrade mcp-tasks" in info.value.message
    assert recorded(db)[-1] == 999  # refused unchanged
