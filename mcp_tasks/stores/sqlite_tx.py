"""SqliteTx: SqlTx on one sqlite3 connection. SQLite has a single writer, so the locking reads of
a write transaction are the plain queries, and lists travel as JSON arrays (`json_each`)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from . import sql_files
from .base import IdCollision
from .rows import Row, dumps
from .sql_tx import SqlTx


class SqliteTx(SqlTx):
    """ReadTx and WriteTx over one sqlite3 connection; used only on the store's threads."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(sql_files.queries("sqlite"), writing=True)
        self.conn = conn

    def _rows(self, name: str, params: dict[str, Any]) -> list[Row]:
        return self.conn.execute(self.q[name], params).fetchall()

    def _tuples(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.row_factory = None
        return cur.execute(self.q[name], params).fetchall()

    def _count(self, name: str, params: dict[str, Any]) -> int:
        return self.conn.execute(self.q[name], params).rowcount

    def _list(self, values: list[str]) -> str:
        return dumps(values)

    def _insert_task(self, params: dict[str, Any]) -> None:
        try:
            self.conn.execute(self.q["insert_task"], params)
        except sqlite3.IntegrityError as exc:
            if "tasks.id" in str(exc):
                raise IdCollision(params["id"]) from None
            raise

    def _insert_event(self, params: dict[str, Any]) -> int:
        return int(self.conn.execute(self.q["insert_event"], params).lastrowid or 0)

    def _many(self, name: str, params: list[dict[str, Any]]) -> None:
        self.conn.executemany(self.q[name], params)

    def now(self) -> float:
        return time.time()
