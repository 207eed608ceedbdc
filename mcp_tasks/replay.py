"""Rebuilding tasks from their events, and checking the stored rows against that rebuild."""

from __future__ import annotations

from typing import Any, Iterable

from .models import REPLAYED_FIELDS, Difference, Event, Task


_FACTORIES = {name: f.default_factory for name, f in Task.model_fields.items() if f.default_factory is not None}
_VALUES = {name: f.default for name, f in Task.model_fields.items() if not f.is_required() and name not in _FACTORIES}


def _defaults() -> dict[str, Any]:
    """Field defaults: the created event leaves out fields that start at their default."""
    return {**_VALUES, **{name: make() for name, make in _FACTORIES.items()}}  # type: ignore[call-arg]


def fold(events: Iterable[Event]) -> Task | None:
    """The task as its events describe it; None when there are no events."""
    current: dict[str, Any] | None = None
    for ev in events:
        assigned = ev.data.get("set", {})
        if ev.type == "created":
            current = _defaults()
            current.update(assigned)
            current["state"] = ev.to_state
            current["updated_at"] = ev.at
            continue
        if current is None:
            raise ValueError(f"event {ev.seq} of {ev.task_id} comes before its 'created' event")
        current.update(assigned)
        current["version"] += 1
        current["updated_at"] = ev.at
        if ev.to_state is not None:
            current["state"] = ev.to_state
    if current is None:
        return None
    return Task.model_validate(current)


def differences(stored: Task, events: list[Event]) -> list[Difference]:
    """Fields where `stored` differs from the fold of `events` (empty when they agree)."""
    replayed = fold(events)
    if replayed is None:
        return [Difference(task_id=stored.id, field="events", stored="present", replayed="no events")]
    out = []
    for name in REPLAYED_FIELDS:
        a, b = getattr(stored, name), getattr(replayed, name)
        if hasattr(a, "model_dump"):
            a, b = a.model_dump(), b.model_dump()
        if a != b:
            out.append(Difference(task_id=stored.id, field=name, stored=a, replayed=b))
    return out
