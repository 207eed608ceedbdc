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

`verify --since SEQ` checks only what changed after event SEQ: every task an event after SEQ
names (whole: its row against all its events; a deleted row too), and the sequence after SEQ. It
reads those events on the seq index, so its cost follows the changes, not the size of the log.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from enum import Enum
from typing import Any, Sequence

from .errors import CorruptRow, DamagedHistory
from .models import Difference, Event, EventRecord, Task
from .replay import differences
from .stores.base import ReadTx, Store
from .stores.records import TaskHistory, TouchedTask

PAGE = 250  # tasks replayed per read (each read costs a hop to the store's thread and back)
LIMIT = 1000  # rows per read of the log-wide checks, and the most sequence breaks listed


class Findings(list[Difference]):
    """What verify found: the problems (the list itself: empty when there are none), and what it
    covered: `tasks` checked against their events; `since` None for the whole database, else the
    seq after which events were looked at (only the tasks they name, and the sequence after it);
    `jobs` the processes that replayed the tasks (1: the caller's alone)."""

    def __init__(self, problems: list[Difference], *, tasks: int, since: int | None, jobs: int = 1) -> None:
        super().__init__(problems)
        self.tasks = tasks
        self.since = since
        self.jobs = jobs


async def verify(store: Store, *, batch: int = PAGE, since: int | None = None, jobs: int | None = 1) -> Findings:
    """Every problem found in `store`, those of the event sequence first, then by task id. With
    `since`, only in the tasks that have an event numbered after it (each checked whole: its row
    against all its events) and in the sequence after it; the log-wide checks of rows and edges
    are left out.

    `jobs`: processes that replay the task rows of a whole check, each a slice of them, while
    this one makes the log-wide checks (None: one per core, at most MAX_JOBS, when the registry
    holds PARALLEL_FROM tasks or more; else 1). The answer is the same for every number; when no
    process can be started (a program that calls this without an `if __name__ == "__main__"` guard:
    processes are spawned), this one checks the rows itself.

    The cyclic garbage collector is paused meanwhile (in the whole process): verify makes
    millions of objects, none in a cycle, and the collector's passes over them cost a quarter of
    its time."""
    await store.settle()
    collecting = gc.isenabled()
    gc.disable()
    try:
        used = 1
        if since is not None:
            out, tasks = await _tasks_touched(store, batch, since)
        else:
            slices, used = await _slices(store, jobs)
            try:
                out, tasks = await (_every_task_in_processes(store, batch, slices, used) if slices
                                    else _every_task(store, batch))
            except (BrokenProcessPool, OSError):  # no process could start (e.g. a program without a main guard)
                if not slices:
                    raise
                used = 1
                out, tasks = await _every_task(store, batch)
        runs = await store.read(lambda tx: tx.event_seq_problems(LIMIT + 1, since))
    finally:
        if collecting:
            gc.enable()
    seq_problems = [sequence_problem(r.first, r.last, r.problem, r.size) for r in runs[:LIMIT]]
    if len(runs) > LIMIT:
        seq_problems.append(Difference(
            task_id=None, field="unlisted", seq=runs[LIMIT].first,
            problem=f"the sequence breaks more than {LIMIT} times; only the first {LIMIT} are listed",
        ))
    out.sort(key=lambda d: d.task_id or "")  # stable: each task's problems stay in check order
    return Findings(seq_problems + out, tasks=tasks, since=since, jobs=used)


async def _every_task(store: Store, batch: int) -> tuple[list[Difference], int]:
    """Problems of every task row, of event task ids without a row, of edges and of unmet_deps
    counters; and how many rows were checked."""
    out, tasks = await _task_rows(store, batch, 0, None)
    return out + await _log_wide(store), tasks


async def _task_rows(store: Store, batch: int, after: int, upto: int | None) -> tuple[list[Difference], int]:
    """Problems of the task rows at positions after `after`, up to `upto` (None: the last one);
    and how many rows were checked."""
    out: list[Difference] = []
    tasks = 0
    while True:
        page = await store.read(lambda tx: tx.tasks_with_events(after, batch))
        full = len(page) == batch
        if upto is not None and page and page[-1].num > upto:
            page, full = [item for item in page if item.num <= upto], False
        for item in page:
            out.extend(task_problems(item.task_id, item.task, item.events))
        tasks += len(page)
        if not full:
            return out, tasks
        after = page[-1].num


async def _log_wide(store: Store) -> list[Difference]:
    """Problems of event task ids without a row, of edges and of unmet_deps counters."""
    out: list[Difference] = []
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
    return out


# ---- the task rows in several processes

PARALLEL_FROM = 20_000  # tasks: below this, starting processes costs more than it saves
MAX_JOBS = 4
SLICES_PER_JOB = 4  # slices are handed out as processes finish, so an uneven slice delays less


async def _slices(store: Store, jobs: int | None) -> tuple[list[tuple[int, int | None]], int]:
    """The (after, upto] position ranges of the task rows, and how many processes check them;
    no ranges when they are to be checked here (one job, a registry too small for `jobs` None,
    or a database no other process can open)."""
    if jobs == 1 or store.reader_location() is None:
        return [], 1
    tasks = (await store.read(lambda tx: tx.registry_size())).tasks
    if jobs is None:
        jobs = min(os.cpu_count() or 1, MAX_JOBS) if tasks >= PARALLEL_FROM else 1
    if jobs <= 1:
        return [], 1
    every = max(1, -(-tasks // (jobs * SLICES_PER_JOB)))
    bounds = [0, *await store.read(lambda tx: tx.task_marks(every))]
    return [*zip(bounds, bounds[1:]), (bounds[-1], None)], jobs


async def _every_task_in_processes(
    store: Store, batch: int, slices: list[tuple[int, int | None]], jobs: int
) -> tuple[list[Difference], int]:
    """What _every_task finds, with the task rows replayed by `jobs` processes (a slice each at a
    time) while this one makes the log-wide checks."""
    location = store.reader_location()
    assert location is not None
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no store thread or lock copied
    with ProcessPoolExecutor(max_workers=min(jobs, len(slices)), mp_context=context) as pool:
        parts = [loop.run_in_executor(pool, _check_slice, location, batch, lo, hi) for lo, hi in slices]
        log_wide = await _log_wide(store)
        done = await asyncio.gather(*parts)
    out = [d for found, _ in done for d in found]
    return out + log_wide, sum(n for _, n in done)


def _check_slice(location: str, batch: int, after: int, upto: int | None) -> tuple[list[Difference], int]:
    """In a verify process: the problems of the task rows in (after, upto] at `location`."""
    from .stores import make_store

    async def check() -> tuple[list[Difference], int]:
        store = make_store(location, create=False)
        await store.open()
        try:
            return await _task_rows(store, batch, after, upto)
        finally:
            await store.close()

    gc.disable()
    return asyncio.run(check())


async def _tasks_touched(store: Store, batch: int, since: int) -> tuple[list[Difference], int]:
    """Problems of the tasks that events numbered after `since` name, rows or not, each read once
    with all its events; and how many such tasks there are."""
    out: list[Difference] = []
    seen: set[str] = set()
    after = since

    def page(tx: ReadTx) -> tuple[list[TouchedTask], list[TaskHistory]]:
        touched = tx.tasks_touched_after(after, batch)
        fresh = [t.task_id for t in touched if t.task_id not in seen]
        return touched, tx.task_histories(fresh) if fresh else []

    while True:
        touched, histories = await store.read(page)
        if not touched:
            return out, len(seen)
        seen.update(t.task_id for t in touched)
        for item in histories:
            out.extend(task_problems(item.task_id, item.task, item.events))
        after = max(t.last_seq for t in touched)


def task_problems(
    task_id: str, stored: Task | CorruptRow | None, events: Sequence[Event | EventRecord]
) -> list[Difference]:
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


def summary(found: Findings) -> str:
    """The line that ends `mcp-tasks verify`'s report: what was checked, and what was found."""
    s = "" if found.tasks == 1 else "s"
    if found.since is None:
        covered = f"{found.tasks} task{s}"
        if not found:
            return f"ok: {covered}, every stored task equals the replay of its events, and the event log is whole"
    else:
        covered = f"{found.tasks} task{s} touched after seq {found.since}"
        if not found:
            return (f"ok: {covered}, {'each' if found.tasks != 1 else 'it'} equals the replay of its events, "
                    f"and the event log after seq {found.since} is whole")
    tasks = len({d.task_id for d in found if d.task_id is not None})
    where = [f"{tasks} task{'s' if tasks != 1 else ''}"] if tasks else []
    where += ["the event sequence"] if any(d.task_id is None for d in found) else []
    return f"{len(found)} problem{'s' if len(found) != 1 else ''} found, in {' and '.join(where)} (checked: {covered})"


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
