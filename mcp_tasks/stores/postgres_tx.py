"""PostgresTx: SqlTx on one psycopg connection inside one transaction (READ COMMITTED writes,
REPEATABLE READ READ ONLY reads). Lists travel as arrays; jsonb comes back as text, as SQLite's
JSON columns do, so one row mapping serves both."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import tuple_row

from . import sql_files
from .base import IdCollision
from .rows import Row
from .sql_tx import SqlTx


class PostgresTx(SqlTx):
    """ReadTx and WriteTx over one psycopg connection."""

    def __init__(self, conn: psycopg.Connection[Any], writing: bool) -> None:
        super().__init__(sql_files.queries("postgres"), writing)
        self.conn = conn
        self._now: float | None = None

    def _execute(self, query: str, params: dict[str, Any]) -> psycopg.Cursor[Any]:
        return self.conn.execute(query, params)  # named queries from storage/postgres/

    def _rows(self, name: str, params: dict[str, Any]) -> list[Row]:
        return self._execute(self.q[name], params).fetchall()

    def _tuples(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self.conn.cursor(row_factory=tuple_row) as cur:
            return cur.execute(self.q[name], params).fetchall()

    def _count(self, name: str, params: dict[str, Any]) -> int:
        return self._execute(self.q[name], params).rowcount

    def _list(self, values: list[str]) -> list[str]:
        return list(values)

    def _insert_task(self, params: dict[str, Any]) -> None:
        try:
            self._execute(self.q["insert_task"], params)
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "tasks_id_key":
                raise IdCollision(params["id"]) from None
            raise

    def _insert_event(self, params: dict[str, Any]) -> int:
        row = self._execute(self.q["insert_event"], params).fetchone()
        assert row is not None
        return int(row["pos"])

    def _many(self, name: str, params: list[dict[str, Any]]) -> None:
        if params:
            with self.conn.cursor() as cur:
                cur.executemany(self.q[name], params)  # named queries from storage/postgres/

    def now(self) -> float:
        """The database server's clock at the start of this transaction (one clock for every host)."""
        if self._now is None:
            row = self._execute(sql_files.queries("postgres", "sequencer.sql")["now"], {}).fetchone()
            assert row is not None
            self._now = float(row["t"])
        return self._now
