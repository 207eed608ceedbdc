"""Mapping between database rows and domain models, shared by the SQL stores (no SQL here)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from ..models import Event, Task, Usage
from ..states import State

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_loads = json.loads

# Task columns holding JSON text.
JSON_LIST_COLUMNS = ("tags", "error_log", "artifacts")
JSON_VALUE_COLUMNS = ("checkpoint_data", "result")
_STATES = {s.value: s for s in State}


class Row(Protocol):
    """A database row: values by column name (sqlite3.Row, a psycopg dict row, a dict)."""

    def keys(self) -> Any: ...

    def __getitem__(self, key: Any, /) -> Any: ...


def dumps(value: Any) -> str:
    """Compact JSON text as the stores keep it."""
    return _dumps(value)


def task_from_row(row: Row, depends_on: list[str], blocks: list[str] | None = None) -> Task:
    """A Task from a `tasks` row (any mapping of column -> value) and its dependency lists."""
    d = dict(row)
    d.pop("num", None)
    for col in JSON_LIST_COLUMNS:
        d[col] = _loads(d[col])
    for col in JSON_VALUE_COLUMNS:
        v = d[col]
        d[col] = None if v is None else _loads(v)
    d["state"] = _STATES[d["state"]]
    d["requires_review"] = bool(d["requires_review"])
    d["usage"] = Usage.model_construct(
        tokens=d.pop("usage_tokens"), api_calls=d.pop("usage_api_calls"), cost=d.pop("usage_cost")
    )
    d["depends_on"] = depends_on
    d["blocks"] = blocks or []
    return Task.model_construct(**d)


def task_params(task: Task) -> dict[str, Any]:
    """Named parameters for insert_task / update_task."""
    return {
        "id": task.id,
        "title": task.title,
        "description": task.description,
        "type": task.type,
        "priority": task.priority,
        "tags": _dumps(task.tags),
        "state": task.state.value,
        "assignee": task.assignee,
        "created_at": task.created_at,
        "assigned_at": task.assigned_at,
        "started_at": task.started_at,
        "completed_at": task.completed_at,
        "retry_count": task.retry_count,
        "max_retries": task.max_retries,
        "error_log": _dumps(task.error_log),
        "checkpoint_data": None if task.checkpoint_data is None else _dumps(task.checkpoint_data),
        "checkpoint_note": task.checkpoint_note,
        "progress": task.progress,
        "checkpoint_timestamp": task.checkpoint_timestamp,
        "cycle_time": task.cycle_time,
        "wait_time": task.wait_time,
        "work_time": task.work_time,
        "result": None if task.result is None else _dumps(task.result),
        "artifacts": _dumps(task.artifacts),
        "version": task.version,
        "schema_version": task.schema_version,
        "created_by": task.created_by,
        "requires_review": int(task.requires_review),
        "reviewer": task.reviewer,
        "lease_hash": task.lease_hash,
        "lease_expires_at": task.lease_expires_at,
        "lease_seconds": task.lease_seconds,
        "not_before": task.not_before,
        "unmet_deps": task.unmet_deps,
        "usage_tokens": task.usage.tokens,
        "usage_api_calls": task.usage.api_calls,
        "usage_cost": task.usage.cost,
        "updated_at": task.updated_at,
    }


def event_from_row(row: Row) -> Event:
    """An Event from an `events` row."""
    fs, ts = row["from_state"], row["to_state"]
    return Event.model_construct(
        seq=row["seq"],
        task_id=row["task_id"],
        type=row["type"],
        from_state=None if fs is None else _STATES[fs],
        to_state=None if ts is None else _STATES[ts],
        actor=row["actor"],
        at=row["at"],
        data=_loads(row["data"]),
    )
