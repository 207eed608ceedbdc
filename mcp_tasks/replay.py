"""Rebuilding tasks from their events, and checking the stored rows against that rebuild."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from pydantic import ValidationError

from .errors import DamagedHistory
from .models import REPLAYED_FIELDS, Difference, Event, EventRecord, Task


_FACTORIES = {name: f.default_factory for name, f in Task.model_fields.items() if f.default_factory is not None}
_VALUES = {name: f.default for name, f in Task.model_fields.items() if not f.is_required() and name not in _FACTORIES}


_NOTHING: dict[str, Any] = {}  # what an event without `set` assigns (never changed)


def _defaults() -> dict[str, Any]:
    """Field defaults: the created event leaves out fields that start at their default."""
    return {**_VALUES, **{name: make() for name, make in _FACTORIES.items()}}  # type: ignore[call-arg]


def _damaged(ev: Event | EventRecord, detail: str) -> DamagedHistory:
    return DamagedHistory(
        f"the events of task {ev.task_id} cannot rebuild it: {detail}; `mcp-tasks verify` lists every problem",
        task_id=ev.task_id, seq=ev.seq, detail=detail,
    )


def fold(events: Iterable[Event | EventRecord]) -> Task | None:
    """The task as its events describe it; None when there are no events.

    DamagedHistory when they cannot describe it: an event that cannot be read, a first event
    that is not `created` (earlier ones are missing), a second `created`, or assignments that no
    task can hold."""
    folded = _assigned(events)
    return None if folded is None else _task(*folded)


def _assigned(events: Iterable[Event | EventRecord]) -> tuple[dict[str, Any], Event | EventRecord] | None:
    """The fields the events assign, in order, before the model checks them, and the last event."""
    current: dict[str, Any] | None = None
    last: Event | EventRecord | None = None
    for ev in events:
        last = ev
        if ev.error:
            raise _damaged(ev, f"event {ev.seq} cannot be read ({ev.error})")
        assigned = ev.data.get("set", _NOTHING)
        if not isinstance(assigned, dict):
            raise _damaged(ev, f"event {ev.seq} ({ev.type}) assigns {type(assigned).__name__}, not fields")
        if ev.type == "created":
            if current is not None:
                raise _damaged(ev, f"event {ev.seq} is a second 'created' event")
            current = _defaults()
            current.update(assigned)
            current["state"] = ev.to_state
            current["updated_at"] = ev.at
            continue
        if current is None:
            raise _damaged(ev, f"its first event, {ev.seq} ({ev.type}), is not 'created': earlier events are missing")
        current.update(assigned)
        if not isinstance(current["version"], int):
            raise _damaged(ev, f"event {ev.seq} ({ev.type}) assigns a version that is not a number")
        current["version"] += 1
        current["updated_at"] = ev.at
        if ev.to_state is not None:
            current["state"] = ev.to_state
    if current is None or last is None:
        return None
    return current, last


def _task(fields: dict[str, Any], last: Event | EventRecord) -> Task:
    try:
        return Task.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the task"
        raise _damaged(last, f"they assign {where} a value no task can hold ({first['msg']})") from None


def differences(stored: Task, events: Sequence[Event | EventRecord]) -> list[Difference]:
    """Fields where `stored` differs from the fold of `events` (empty when they agree)."""
    folded = _assigned(events)
    if folded is None:
        return [Difference(task_id=stored.id, field="created", problem="the row has no events at all")]
    if _agrees(stored, folded[0]):
        return []  # what the model would accept and hold unchanged: no need to build it
    replayed = _task(*folded)
    out = []
    for name in REPLAYED_FIELDS:
        a, b = getattr(stored, name), getattr(replayed, name)
        if hasattr(a, "model_dump"):
            a, b = a.model_dump(), b.model_dump()
        if a != b:
            out.append(Difference(task_id=stored.id, field=name, stored=a, replayed=b))
    return out


def _agrees(stored: Task, fields: dict[str, Any]) -> bool:
    """True when the fields the events assign equal every field of `stored`: the model would
    accept each such value and hold it equal, so the replay needs no building."""
    held = vars(stored)
    usage = fields.get("usage")
    if isinstance(usage, dict) and usage == vars(held["usage"]):  # as events assign it: the model's fields
        fields = {**fields, "usage": held["usage"]}
    return held == fields
