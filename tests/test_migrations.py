"""Schema migrations: a migrated database equals a fresh one, and keeps its data."""

from __future__ import annotations

import sqlite3

from mcp_tasks import Registry, State
from mcp_tasks.errors import StoreCorrupt
from mcp_tasks.stores import SqliteStore, sql_files
from mcp_tasks.stores.sqlite_file import apply_migrations, schema_fingerprint


def _fingerprint(path) -> dict:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return schema_fingerprint(conn)
    finally:
        conn.close()


def _migrated_db(path, upto: int | None = None) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    apply_migrations(conn, set(), upto)
    conn.execute("COMMIT")
    conn.close()


async def test_migrated_database_equals_a_fresh_one(tmp_path):
    fresh, migrated = tmp_path / "fresh.db", tmp_path / "migrated.db"
    async with SqliteStore(fresh):
        pass
    _migrated_db(migrated)
    async with SqliteStore(migrated):  # opening an up-to-date database changes nothing
        pass
    a, b = _fingerprint(fresh), _fingerprint(migrated)
    assert a == b
    assert {"tasks", "deps", "events", "requests", "tasks_ready", "events_no_update"} <= set(a)


async def test_every_older_schema_upgrades_with_its_data(tmp_path):
    versions = [m.version for m in sql_files.migrations("sqlite")]
    fresh = tmp_path / "fresh.db"
    async with SqliteStore(fresh):
        pass
    for upto in versions:
        path = tmp_path / f"v{upto}.db"
        _migrated_db(path, upto)
        async with Registry(SqliteStore(path), agent="old") as reg:
            tid = (await reg.create_tasks([{"title": "made before the upgrade"}])).ids[0]
        async with Registry(SqliteStore(path), agent="new") as reg:
            assert (await reg.get(tid)).state == State.PENDING
            assert await reg.verify() == []
        assert _fingerprint(path) == _fingerprint(fresh)


async def test_migrations_are_recorded(tmp_path):
    path = tmp_path / "t.db"
    async with SqliteStore(path):
        pass
    conn = sqlite3.connect(path)
    recorded = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    conn.close()
    assert recorded == [m.version for m in sql_files.migrations("sqlite")]


async def test_a_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "t.db"
    async with SqliteStore(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    try:
        await store.open()
    except StoreCorrupt as exc:
        assert "has schema version 999, newer than this mcp-tasks knows" in exc.message
        assert "upgrade mcp-tasks" in exc.message
    else:
        await store.close()
        raise AssertionError("opening a newer database must fail")
