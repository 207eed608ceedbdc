"""The embedded SQLite store: one file, WAL, BEGIN IMMEDIATE writes, safe across processes.

Durability: synchronous=FULL by default, so an acknowledged change survives power loss.
synchronous=NORMAL (`--sync normal`, MCP_TASKS_SYNC=normal) is several times faster per write
but may lose the last transactions on power loss (never on a process crash).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..errors import (
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreReadOnly,
    StoreUnavailable,
)
from . import sql_files, sqlite_file
from .sqlite_tx import SqliteTx
from .worker import ThreadWorker

T = TypeVar("T")
SYNC_MODES = ("FULL", "NORMAL", "EXTRA", "OFF")
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB, _PERM = 5, 6, 8, 10, 11, 13, 14, 26, 3


def store_error(exc: sqlite3.Error, *, writing: bool) -> StoreError:
    """The one translation of a sqlite3 error into the registry's store errors."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    text = str(exc)
    unchanged = "nothing was changed" if writing else "nothing was read"
    if code in (_BUSY, _LOCKED) or "locked" in text:
        return StoreBusy(f"the database stayed locked by other writers: {unchanged}; retry shortly")
    if code == _FULL:
        return StoreFull(f"database or disk is full: {unchanged}")
    if code == _READONLY:
        return StoreReadOnly(f"the database is read-only (file permissions or a read-only mount): {unchanged}")
    if code in (_CORRUPT, _NOTADB):
        return StoreCorrupt(f"the database file is damaged or not a database ({text}): {unchanged}")
    if code in (_CANTOPEN, _IOERR, _PERM):
        return StoreUnavailable(f"cannot use the database file ({text}): {unchanged}")
    return StoreError(f"the database refused the operation ({text}): {unchanged}")


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open (SQLite rolls some back itself, e.g. when full)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:  # already rolled back by the error that brought us here
            pass


class SqliteStore:
    """Store over one SQLite file, shared safely by any number of processes."""

    dialect = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 30.0,
        create: bool = True,
        must_write: bool = False,
        read_only: bool = False,
    ) -> None:
        """A store over the SQLite file `path`, opened by `open()`.

        create: make the database when there is none (else opening refuses); must_write: refuse a
        database that can only be read instead of opening it read-only; read_only: open it
        read-only even when it could be written.
        """
        sync = synchronous.upper()
        if sync not in SYNC_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNC_MODES)}, not {synchronous!r}")
        self.path = str(path)
        self.location = self.path
        self.synchronous = sync
        self.busy_timeout = busy_timeout
        self.create = create
        self.must_write = must_write
        self.read_only = read_only
        self._read_only_reason = "it was opened read-only" if read_only else None
        self._writer: ThreadWorker | None = None
        self._reader: ThreadWorker | None = None

    # ---- lifecycle
    def _connect(self, read_only: bool = False) -> tuple[sqlite3.Connection, SqliteTx]:
        conn = sqlite_file.connect(self.path, read_only=read_only, timeout=self.busy_timeout)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        return conn, SqliteTx(conn)

    @staticmethod
    def _close(res: tuple[sqlite3.Connection, SqliteTx]) -> None:
        res[0].close()

    def _retry_busy(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise StoreBusy("the database stayed locked by other writers: nothing was changed; retry shortly") from None
                time.sleep(0.01)

    async def open(self) -> None:
        """Open the connections and bring the schema up to date, writing nothing that is already
        there. A database that can only be read is opened read-only and `read_only` set."""
        try:
            if self.path != ":memory:":
                self._read_only_reason = await asyncio.to_thread(
                    sqlite_file.prepare, self.path, create=self.create, must_write=self.must_write,
                    read_only_reason=self._read_only_reason,
                )
                self.read_only = self._read_only_reason is not None
            if self.read_only:
                self._reader = ThreadWorker("mcp-tasks-sqlite-reader", partial(self._connect, True), self._close)
                self._reader.start()
                return
            self._writer = ThreadWorker("mcp-tasks-sqlite-writer", self._connect, self._close)
            self._writer.start()
            await self._writer.run(lambda res: sqlite_file.migrate(res[0], self.path, self._retry_busy))
            if self.path == ":memory:":
                self._reader = self._writer  # a second connection would see another database
            else:
                self._reader = ThreadWorker("mcp-tasks-sqlite-reader", self._connect, self._close)
                self._reader.start()
        except sqlite3.Error as exc:
            await self.close()
            err = store_error(exc, writing=False)
            raise type(err)(f"{self.path}: {err.problem}") from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Finish queued work and close the connections (safe to call twice)."""
        for w in {id(w): w for w in (self._reader, self._writer) if w is not None}.values():
            w.stop()
        self._reader = self._writer = None

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- transactions
    def _write_tx(self, fn: Callable[[SqliteTx], T], res: tuple[sqlite3.Connection, SqliteTx]) -> T:
        conn, tx = res
        try:
            self._retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                result = fn(tx)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            return result
        except sqlite3.ProgrammingError:
            raise  # a bug in the caller, not the database
        except sqlite3.Error as exc:
            raise store_error(exc, writing=True) from exc

    def _read_tx(self, fn: Callable[[SqliteTx], T], res: tuple[sqlite3.Connection, SqliteTx]) -> T:
        conn, tx = res
        try:
            conn.execute("BEGIN")
            try:
                return fn(tx)
            finally:
                _rollback(conn)  # a read changes nothing: ending it either way is the same
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.Error as exc:
            raise store_error(exc, writing=False) from exc

    async def write(self, fn: Callable[[Any], T]) -> T:
        if self.read_only:
            raise sqlite_file.read_only_error(self.path, self._read_only_reason or "it was opened read-only")
        if self._writer is None:
            raise StoreUnavailable("the database is not open (the server is starting or stopping)")
        return await self._writer.run(partial(self._write_tx, fn))

    async def read(self, fn: Callable[[Any], T]) -> T:
        if self._reader is None:
            raise StoreUnavailable("the database is not open (the server is starting or stopping)")
        return await self._reader.run(partial(self._read_tx, fn))

    def reader_location(self) -> str | None:
        if self.path in ("", ":memory:") or self.path.startswith("file:"):
            return None
        path = os.path.abspath(self.path)
        return path if "?" in path else f"sqlite:///{path}?mode=ro"

    async def settle(self) -> None:
        """SQLite's single writer numbers events as it writes them: nothing to do."""

    async def watch(self, wake: Callable[[], None]) -> None:
        """No signal crosses processes on SQLite: followers poll."""

    # ---- copies
    async def integrity_problems(self) -> list[str]:
        """What SQLite's integrity check finds wrong with the file's pages, indexes and constraints
        (empty: nothing)."""
        if self._reader is None:
            raise StoreUnavailable("the database is not open (the server is starting or stopping)")
        query = sql_files.queries("sqlite", "backup.sql")["integrity_check"]
        rows = await self._reader.run(lambda res: res[0].execute(query).fetchall())
        return [str(r[0]) for r in rows if str(r[0]) != "ok"]

    async def copy_to(self, dest: str | Path) -> None:
        """Write a consistent copy of the whole database to `dest` without ever writing to this one.

        Works whether or not this store is open, and while other processes write: a database
        nobody has open (no -wal or -journal file beside it) is copied as a plain file, checked
        unchanged afterwards; a live one is copied with SQLite's online backup API from a
        read-only connection, which sees committed transactions only. A new `dest` is made
        readable by its owner only.
        """
        await asyncio.to_thread(sqlite_file.create_file, str(dest))  # owner-only, like the database
        await asyncio.to_thread(_copy_database, Path(self.path), Path(dest))


def _copy_database(src: Path, dst: Path) -> None:
    side = [src.with_name(src.name + suffix) for suffix in ("-wal", "-journal")]
    if not any(p.exists() for p in side):
        before = src.stat()
        shutil.copyfile(src, dst)
        after = src.stat()
        if (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns) and not any(
            p.exists() for p in side
        ):
            return
        dst.unlink()
    source = sqlite3.connect(src.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        target = sqlite3.connect(str(dst))
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
