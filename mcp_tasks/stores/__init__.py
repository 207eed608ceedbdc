"""Stores: where tasks and events live. `open_store` picks one from a location string."""

from __future__ import annotations

from .base import IdCollision, ReadTx, Store, WriteTx
from .sqlite import SqliteStore

__all__ = ["IdCollision", "ReadTx", "Store", "WriteTx", "SqliteStore", "make_store"]


def make_store(location: str, *, synchronous: str = "FULL") -> Store:
    """A store for `location`: a SQLite file path (or sqlite:///path)."""
    if location.startswith(("postgres://", "postgresql://")):
        raise ValueError("PostgreSQL is not supported yet; give a SQLite file path")
    if location.startswith("sqlite:///"):
        location = location[len("sqlite:///"):] or ":memory:"
    return SqliteStore(location, synchronous=synchronous)
