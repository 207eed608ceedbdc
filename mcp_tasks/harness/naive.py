"""The naive ready-list of the bench's list_available reference, for every dialect: PENDING tasks
in claim order, each one's dependencies asked for with one query, kept when all are DONE."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


def first_ready(batches: Iterable[list[Mapping[str, Any]]], dependency_states: Callable[[str], list[Mapping[str, Any]]],
                limit: int) -> list[str]:
    """Ids of the first `limit` candidates (rows with an `id`, in batches) whose dependencies
    (rows with a `state`, one query per candidate) are all DONE."""
    found: list[str] = []
    for rows in batches:
        for r in rows:
            if all(d["state"] == "DONE" for d in dependency_states(r["id"])):
                found.append(r["id"])
                if len(found) == limit:
                    return found
    return found


def fetch_batches(cursor: Any, size: int = 256) -> Iterable[list[Any]]:
    """The cursor's rows, `size` at a time, until it has none left."""
    while rows := cursor.fetchmany(size):
        yield rows
