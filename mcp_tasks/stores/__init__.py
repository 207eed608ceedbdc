"""Stores: where tasks and events live. `make_store` picks one from a location string."""

from __future__ import annotations

import re

from ..errors import StoreUnavailable
from .base import IdCollision, ReadTx, Store, WriteTx
from .sqlite import SqliteStore

__all__ = ["IdCollision", "ReadTx", "Store", "WriteTx", "SqliteStore", "make_store"]


def make_store(
    location: str, *, synchronous: str = "FULL", create: bool = True, must_write: bool = False,
    pool_max: int | None = None,
) -> Store:
    """A store for `location`: a SQLite file path, sqlite:///PATH (sqlite:///PATH?mode=ro opens it
    read-only), or a postgresql:// URL (?schema=NAME names the schema the registry lives in).
    Nothing is opened until `open()`.

    create: make the database when there is none (else opening refuses with StoreUnavailable);
    must_write: refuse a database that can only be read (StoreReadOnly) instead of opening it
    read-only; pool_max: connections of a PostgreSQL store's pool. Raises StoreUnavailable for a
    kind of database this version cannot use.
    """
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", location)
    read_only = False
    if scheme and scheme.group(1).lower() == "sqlite" and location[len(scheme.group(0)):].startswith("/"):
        location, _, options = location[len("sqlite:///"):].partition("?")
        if options not in ("", "mode=ro") or (options and not location):
            raise StoreUnavailable(f"unknown option {options!r} in a sqlite:/// location; the only one is ?mode=ro "
                                   "after a file path")
        location, read_only = location or ":memory:", options == "mode=ro"
    elif scheme and scheme.group(1).lower() in ("postgres", "postgresql"):
        from .postgres import PostgresStore

        return PostgresStore(location, create=create, **({} if pool_max is None else {"pool_max": pool_max}))
    elif scheme:
        raise StoreUnavailable(
            f"{scheme.group(1)}:// databases are not supported: use a SQLite file (--db PATH) or a "
            "postgresql://USER@HOST:PORT/DBNAME URL"
        )
    return SqliteStore(location, synchronous=synchronous, create=create, must_write=must_write, read_only=read_only)
