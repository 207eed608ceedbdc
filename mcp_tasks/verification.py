"""Checking the stored tasks against the event log: what `mcp-tasks verify` runs.

The event log must explain every row, and the log itself must be whole:
- every task row can be read, starts with a `created` event, has only readable events, and
  replays from them to the same fields, dependency edges included;
- no task id has events but no row (a deleted row), and no dependency edge lacks its task or
  its dependency;
- the event sequence runs 1, 2, 3 ... up to the highest number ever handed out, with no hole
  (deleted events) and no repeat;
- every unmet_deps counter equals the count it stands for.

Each check is a paged or aggregate read on its own snapshot, so memory does not grow with the
log and verify can run beside a live server: a row and its events are committed together.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from .errors import CorruptRow, DamagedHistory
from .models import Difference, Event, Task
from .replay import differences
from .stores.base import Store

PAGE = 100  # tasks replayed per read (larger pages of long histories cost more in garbage collection)
LIMIT = 1000  # rows per read of the log-wide checks, and the most sequence breaks listed


async def verify(store: Store, *, batch: int = PAGE) -> list[Difference]:
    """Every problem found in `store`, those of the event sequence first, then by task id."""
    out: list[Difference] = []
    await store.settle()
    after = 0
    while True:
        page = await store.read(lambda tx: tx.tasks_with_events(after, batch))
        for item in page:
            out.extend(task_problems(item.task_id, item.task, item.events))
        if len(page) < batch:
            break
        after = page[-1].num

    last_id = ""
    while True:
        orphans = await store.read(lambda tx: tx.event_tasks_without_row(last_id, LIMIT))
        for o in orphans:
            out.append(missing_row(o.task_id, o.events, o.first_seq, o.last_seq))
        if len(orphans) < LIMIT or orphans[-1].task_id <= last_id:
            break
        last_id = orphans[-1].task_id

    edge = ("", "")
    while True:
        edges = await store.read(lambda tx: tx.deps_without_rows(edge, LIMIT))
        for e in edges:
            whose = "its dependency has no row" if e.task_has_row else "this task has no row"
            if not e.task_has_row and not e.dependency_has_row:
                whose = "neither task has a row"
            out.append(Difference(task_id=e.task_id, field="depends_on", problem=f"edge to {e.depends_on}, but {whose}"))
        if len(edges) < LIMIT or (edges[-1].task_id, edges[-1].depends_on) <= edge:
            break
        edge = (edges[-1].task_id, edges[-1].depends_on)

    for tid, stored, actual in await store.read(lambda tx: tx.unmet_mismatches()):
        out.append(Difference(task_id=tid, field="unmet_deps(counted)", stored=stored, replayed=actual))

    runs = await store.read(lambda tx: tx.event_seq_problems(LIMIT + 1))
    seq_problems = [sequence_problem(r.first, r.last, r.problem, r.size) for r in runs[:LIMIT]]
    if len(runs) > LIMIT:
        seq_problems.append(Difference(
            task_id=None, field="unlisted", seq=runs[LIMIT].first,
            problem=f"the sequence breaks more than {LIMIT} times; only the first {LIMIT} are listed",
        ))
    out.sort(key=lambda d: d.task_id or "")  # stable: each task's problems stay in check order
    return seq_problems + out


def task_problems(task_id: str, stored: Task | CorruptRow | None, events: list[Event]) -> list[Difference]:
    """Everything wrong with one task: its row (None: there is none) against its events."""
    out = [
        Difference(task_id=task_id, field="event", seq=e.seq, problem=f"seq {e.seq} cannot be read: {e.error}")
        for e in events if e.error
    ]
    if isinstance(stored, CorruptRow):
        column = stored.data.get("column", "?")
        reason = stored.data.get("reason", "cannot be read")
        out.append(Difference(task_id=task_id, field="row", problem=f"cannot be read: column {column} {reason}"))
        return out
    if stored is None:
        if events:
            out.append(missing_row(task_id, len(events), events[0].seq, events[-1].seq))
        return out
    if out:
        return out  # no replay without every event
    if not events:
        out.append(Difference(task_id=task_id, field="created", problem="the row has no events at all"))
    elif events[0].type != "created":
        first = events[0]
        out.append(Difference(
            task_id=task_id, field="created", seq=first.seq,
            problem=f"no 'created' event: the first is seq {first.seq} ({first.type}); earlier events are missing",
        ))
    else:
        try:
            out.extend(differences(stored, events))
        except DamagedHistory as exc:
            out.append(Difference(task_id=task_id, field="replay", seq=exc.data.get("seq"),
                                  problem=str(exc.data.get("detail", exc.problem))))
    return out


def missing_row(task_id: str, count: int, first_seq: int, last_seq: int) -> Difference:
    """A task id whose events remain but whose row is gone."""
    span = f"seq {first_seq}" if first_seq == last_seq else f"seq {first_seq}..{last_seq}"
    return Difference(
        task_id=task_id, field="row", seq=first_seq, seq_last=last_seq,
        problem=f"no task row, but {count} event{'s' if count != 1 else ''} ({span}): the row was deleted",
    )


def sequence_problem(first: int, last: int, problem: str, count: int) -> Difference:
    """A run of wrong sequence numbers as a problem of no task."""
    if problem == "missing":
        text = f"no event has {'this number' if count == 1 else f'these {count} numbers'}: events were deleted"
    elif problem == "repeated":
        text = f"{count} events share this number"
    else:
        text = "sequence numbers start at 1"
    return Difference(task_id=None, field=problem, seq=first, seq_last=last, problem=text)


def describe(d: Difference) -> str:
    """One line for people: `TASK_ID  what: ...`, or `seq N..M  what: ...` for the sequence."""
    if d.task_id is None:
        where = f"seq {d.seq}" if d.seq_last in (None, d.seq) else f"seq {d.seq}..{d.seq_last}"
    else:
        where = d.task_id
    text = d.problem if d.problem is not None else f"stored={_shown(d.stored)!r} replayed={_shown(d.replayed)!r}"
    return f"{where}  {d.field}: {text}"


def _shown(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value
