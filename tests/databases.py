"""Test databases of every kind: a fresh SQLite file, or a fresh schema in a PostgreSQL database.

`TestDatabase.location` is what `--db` and MCP_TASKS_DB take, so one test drives the library, the
CLI and server processes over the same database. PostgreSQL tests use the database named by
MCP_TASKS_TEST_PG (default postgresql://postgres@127.0.0.1:5432/mcp_tasks_test, created when
missing); each test gets a schema of its own, dropped afterwards. They never skip in CI: an
unreachable server fails them, saying so. Elsewhere MCP_TASKS_TEST_PG=skip skips them, and the
test summary says that it did.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mcp_tasks.stores import Store, make_store

KINDS = ["sqlite", "postgres"]
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/mcp_tasks_test"
SKIPPED: list[str] = []  # reasons, printed in the test summary
PG_SKIPPED = "PostgreSQL tests skipped: MCP_TASKS_TEST_PG=skip"
BROWSER_MISSING = "browser tests need Debian's chromium (apt-get install chromium; .ci/run installs it)"
KNOWN_SKIPS = (PG_SKIPPED, BROWSER_MISSING)  # skips the summary repeats as a note
_checked: dict[str, str | None] = {}


def pg_base() -> str:
    """The PostgreSQL database URL for tests (skips, or fails in CI, when none can be used)."""
    url = os.environ.get("MCP_TASKS_TEST_PG", DEFAULT_PG)
    if url == "skip":
        if os.environ.get("CI"):
            pytest.fail("MCP_TASKS_TEST_PG=skip is not allowed in CI: the PostgreSQL tests must run")
        reason = PG_SKIPPED
        if reason not in SKIPPED:
            SKIPPED.append(reason)
        pytest.skip(reason)
    if url not in _checked:
        _checked[url] = _prepare(url)
    problem = _checked[url]
    if problem:
        pytest.fail(f"PostgreSQL is not usable for the tests at {url}: {problem}. Start it (see .ci/run), point "
                    "MCP_TASKS_TEST_PG at a database, or set MCP_TASKS_TEST_PG=skip to skip these tests locally")
    return url


def _prepare(url: str) -> str | None:
    """Connect, creating the test database when it is missing; the problem, or None."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=5).close()
        return None
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            return " ".join(str(exc).split())
    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    try:
        with psycopg.connect(urllib.parse.urlunsplit(parts._replace(path="/postgres")), autocommit=True,
                             connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return None
    except psycopg.Error as exc:
        return " ".join(str(exc).split())


@dataclass
class TestDatabase:
    """One fresh database of one kind for one test."""

    __test__ = False
    kind: str
    location: str
    path: Path | None = None  # the SQLite file
    schema: str | None = None  # the PostgreSQL schema
    base: str | None = None  # the PostgreSQL database URL, without the schema
    _opened: list[Any] = field(default_factory=list)

    def store(self, **options: Any) -> Store:
        """A store over this database (not opened yet)."""
        return make_store(self.location, **options)

    def sql(self, *statements: str | tuple[str, tuple[Any, ...]], bypass: bool = True) -> list[list[Any]]:
        """Run statements directly on the database (the way another tool would), committed; the
        rows of each, as tuples. Placeholders: `?` for SQLite, `%s` for PostgreSQL. `bypass`: with
        foreign keys, CHECK constraints and (PostgreSQL) triggers off, as a careless tool would."""
        out: list[list[Any]] = []
        if self.kind == "sqlite":
            conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
            try:
                if bypass:
                    conn.execute("PRAGMA foreign_keys = OFF")
                    conn.execute("PRAGMA ignore_check_constraints = ON")
                for st in statements:
                    q, params = (st, ()) if isinstance(st, str) else st
                    out.append([tuple(r) for r in conn.execute(q, params).fetchall()])
            finally:
                conn.close()
            return out
        import psycopg

        assert self.base is not None
        with psycopg.connect(self.base, autocommit=True) as pconn:
            pconn.execute(f"SET search_path TO {self.schema}")  # type: ignore[arg-type]
            if bypass:  # foreign keys and triggers off
                pconn.execute("SET session_replication_role = replica")
            for st in statements:
                q, params = (st, ()) if isinstance(st, str) else st
                cur = pconn.execute(q, params or None)  # type: ignore[arg-type]
                out.append([tuple(r) for r in cur.fetchall()] if cur.description else [])
        return out

    def drop(self) -> None:
        """Remove the database (the PostgreSQL schema; pytest removes the SQLite file)."""
        if self.kind == "postgres" and self.base is not None:
            import psycopg

            with psycopg.connect(self.base, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")  # type: ignore[arg-type]


def new_database(kind: str, tmp_path: Path) -> TestDatabase:
    """A fresh, empty database of `kind`."""
    if kind == "sqlite":
        path = tmp_path / f"tasks-{secrets.token_hex(3)}.db"
        return TestDatabase(kind, str(path), path=path)
    base = pg_base()
    schema = f"t_{secrets.token_hex(6)}"
    sep = "&" if "?" in base else "?"
    return TestDatabase(kind, f"{base}{sep}schema={schema}", schema=schema, base=base)
