"""The aggregates that stats, metrics://summary, /metrics and the board read equal a full count of
the task rows and the event log, on every store: after a random run of everything agents and
planners do (failures and retries, expired leases, reviews, cancels, edits, dead letters), and after
the migration that brings them to a database that already holds work.

The recount below reads every task and every event through the registry and counts them plainly;
times go into histogram buckets with the same formula as the stores' triggers
(`aggregates.bucket_of`), so the percentiles match exactly, and each lies within the documented
ESTIMATE_ERROR of the exact percentile of the raw times.
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter, defaultdict
from typing import Any

import anyio

from mcp_tasks import Registry, State, reports
from mcp_tasks.aggregates import ESTIMATE_ERROR, MIN_TIME, bucket_of, histogram_quantile
from mcp_tasks.charts import quantile
from mcp_tasks.errors import LeaseError, TaskError
from mcp_tasks.models import Event, Task
from mcp_tasks.rules import Policy
from mcp_tasks.stores.records import EventCount, TaskTotal, TimeBucket

from .databases import TestDatabase
from .helpers import FakeClock

STEPS = int(os.environ.get("MCP_TASKS_AGGREGATE_STEPS", "300"))
POLICY = Policy(lease_seconds=30.0, lease_min=5.0, lease_max=600.0, backoff_base=1.0, backoff_cap=4.0)
AGENTS = ("ann", "bob", "cyd")
TYPES = ("general", "code", "docs")
COUNTED = ("failed", "lease_expired", "retried")  # the events also counted by actor and holder


async def random_run(reg: Registry, clock: FakeClock, rng: random.Random, steps: int) -> None:
    """`steps` random operations by three agents and a planner; refusals are part of the run."""
    ids: list[str] = []
    leases: dict[str, str] = {}

    async def op(step: int) -> None:
        kind = rng.choices(["create", "claim", "work", "clock", "reap", "review", "edit", "cancel", "retry",
                            "release"], [1, 6, 10, 1, 1, 3, 1, 1, 1, 1])[0]
        tid = rng.choice(ids) if ids else None
        if kind in ("work", "release") and leases:
            tid = rng.choice(list(leases))
        elif kind in ("review", "retry"):  # one of the tasks waiting for it, if any
            waiting = (await reg.find(state=State.REVIEW if kind == "review" else State.FAILED, limit=3)).items
            tid = rng.choice(waiting).id if waiting else tid
        lease = leases.get(tid or "")
        agent = rng.choice(AGENTS)
        if kind == "create" or tid is None:
            deps = rng.sample(ids, min(len(ids), rng.choice([0, 0, 1]))) if ids else []
            ids.extend((await reg.create_tasks([
                {"title": f"task {step}.{i}", "type": rng.choice(TYPES), "priority": rng.randint(1, 10),
                 "requires_review": rng.random() < 0.5, "max_retries": rng.randint(0, 2), "depends_on": deps}
                for i in range(rng.randint(1, 3))], actor="planner")).ids)
        elif kind == "claim":
            claim = await reg.claim(tid if rng.random() < 0.3 else None, actor=agent,
                                    lease_seconds=rng.choice([5.0, 30.0]))
            if claim is not None:
                leases[claim.task.id] = claim.lease
        elif kind == "work" and lease is not None:
            task = await reg.get(tid)
            holder, choice = task.assignee, rng.random()
            if task.state == State.ASSIGNED:
                await reg.start(tid, lease, actor=holder)
            elif task.state == State.PAUSED:
                await reg.resume(tid, lease, actor=holder)
            elif task.state in (State.REVIEW, State.APPROVED):
                pass  # the reviewer's turn; changes requested give it back to this lease
            elif task.state != State.ACTIVE:
                del leases[tid]  # it moved on without this lease
            elif choice < 0.1:
                await reg.checkpoint(tid, lease, {"step": step}, actor=holder)
            elif choice < 0.6:
                await reg.complete(tid, lease, {"ok": step}, usage={
                    "tokens": rng.randint(0, 5000), "api_calls": rng.randint(0, 9), "cost": rng.random() / 7},
                    actor=holder)
            elif choice < 0.9:
                await reg.fail(tid, lease, f"broke at {step}", retryable=rng.random() < 0.5, actor=holder)
            else:
                await reg.pause(tid, lease, "waiting", actor=holder)
        elif kind == "clock":
            clock.advance(rng.choice([0.0004, 0.05, 0.7, 3.0, 12.0, 40.0]))
        elif kind == "reap":
            clock.advance(rng.choice([1.0, 31.0]))
            await reg.reap()
        elif kind == "review":
            await reg.review(tid, rng.random() < 0.6, "looked", actor="planner")
        elif kind == "edit":
            await reg.update(tid, type=rng.choice(TYPES), priority=rng.randint(1, 10), actor="planner")
        elif kind == "cancel" and rng.random() < 0.3:
            await reg.cancel(tid, "not needed", actor="planner")
        elif kind == "retry" and rng.random() < 0.3:
            await reg.retry(tid, actor="planner")
        elif kind == "release" and lease is not None:
            await reg.release(tid, lease, actor=(await reg.get(tid)).assignee)

    for step in range(steps):
        try:
            await op(step)
        except LeaseError as exc:  # that lease has ended: forget it
            leases.pop(exc.task_id or "", None)
        except TaskError:
            pass  # a refused operation changes nothing: the aggregates must not move either
        clock.advance(rng.random())


async def everything(reg: Registry) -> tuple[list[Task], list[Event]]:
    """Every task row and every event, read through the registry."""
    tasks: list[Task] = []
    cursor = None
    while True:
        page = await reg.find(limit=100, cursor=cursor)
        tasks += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    # Every change is one event (a task's version counts its events). On PostgreSQL an event is
    # numbered, and so readable by seq, once no transaction older than its own runs: wait for all.
    events: list[Event] = []
    with anyio.fail_after(60):
        while len(events) < sum(t.version for t in tasks):
            batch = await reg.events_since(events[-1].seq if events else 0, limit=500)
            if not batch:
                await anyio.sleep(0.05)
            events += batch
    return tasks, events


def micros(cost: float) -> int:
    return math.floor(cost * 1_000_000 + 0.5)


def recount(tasks: list[Task], events: list[Event], now: float) -> dict[str, Any]:
    """Every aggregate, counted from the rows and the events."""
    totals: dict[tuple[str, str | None, State], list[int]] = defaultdict(lambda: [0] * 6)
    times: Counter[tuple[str, str, str, int]] = Counter()
    for t in tasks:
        row = totals[(t.type, t.assignee, t.state)]
        for i, n in enumerate((1, t.unmet_deps == 0, t.retry_count, t.usage.tokens, t.usage.api_calls,
                               micros(t.usage.cost))):
            row[i] += n
        if t.state == State.DONE:
            for dimension, name in (("type", t.type), ("agent", t.assignee or "")):
                for measure, value in (("cycle", t.cycle_time), ("work", t.work_time)):
                    if value is not None:
                        times[(dimension, name, measure, bucket_of(value))] += 1
    moves = Counter((e.type, e.from_state and e.from_state.value, e.to_state and e.to_state.value) for e in events)
    failures = Counter((e.type, e.actor, e.data.get("holder")) for e in events if e.type in COUNTED)
    ready = [t for t in tasks if t.state == State.PENDING and t.unmet_deps == 0
             and (t.not_before is None or t.not_before <= now)]
    return {
        "task_totals": sorted((TaskTotal(*key, *row) for key, row in totals.items()), key=str),
        "time_histogram": sorted(TimeBucket(*key, n) for key, n in times.items()),
        "event_totals": sorted((EventCount(*key, n) for key, n in moves.items()), key=str),
        "failure_counts": sorted(((*key, n) for key, n in failures.items()), key=str),
        "count_by_state": dict(Counter(t.state for t in tasks)),
        "agent_states": sorted(Counter((t.assignee, t.state.value) for t in tasks if t.assignee).items()),
        "count_ready": len(ready),
        "oldest_ready": min((t.created_at for t in ready), default=None),
    }


async def stored(reg: Registry, now: float) -> dict[str, Any]:
    """Every aggregate as the store serves it, from one snapshot."""
    def read(tx: Any) -> dict[str, Any]:
        return {
            "task_totals": sorted(tx.task_totals(), key=str), "time_histogram": sorted(tx.time_histogram()),
            "event_totals": sorted(tx.event_totals(), key=str), "failure_counts": sorted(tx.failure_counts(), key=str),
            "count_by_state": tx.count_by_state(),
            "agent_states": sorted(((a, s), n) for a, s, n in tx.agent_states()),
            "count_ready": tx.count_ready(now), "oldest_ready": tx.oldest_ready(now),
        }

    return await reg.store.read(read)


async def assert_aggregates_match(reg: Registry, clock: FakeClock) -> None:
    tasks, events = await everything(reg)
    expected = recount(tasks, events, clock.t)
    assert await stored(reg, clock.t) == expected

    # metrics://summary: the same numbers as counting the DONE tasks, percentiles from their buckets
    summary = await reports.metrics(reg)
    for name, group in summary.by_type.items():
        done = [t for t in tasks if t.state == State.DONE and t.type == name]
        assert group["done"] == len(done)
        assert group["failed"] == sum(1 for t in tasks if t.state == State.FAILED and t.type == name)
        assert group["retries"] == sum(t.retry_count for t in tasks if t.type == name)
        assert group["tokens"] == sum(t.usage.tokens for t in done)
        assert group["cost"] == round(sum(micros(t.usage.cost) for t in done) / 1e6, 6)
        for measure in ("cycle", "work"):
            raw = [getattr(t, f"{measure}_time") for t in done if getattr(t, f"{measure}_time") is not None]
            for q in (0.5, 0.95):
                estimate = histogram_quantile(Counter(bucket_of(x) for x in raw), q)
                assert group[f"{measure}_p{round(q * 100)}"] == (None if estimate is None else round(estimate, 3))
                exact = quantile([max(x, MIN_TIME) for x in raw], q)
                if estimate is not None and exact is not None:
                    assert abs(estimate - exact) <= exact * ESTIMATE_ERROR * 1.000001
    assert summary.queue == {s.value: expected["count_by_state"].get(s, 0) for s in State}


async def test_aggregates_equal_a_full_recount_after_a_random_run(db: TestDatabase):
    clock = FakeClock()
    async with Registry(db.store(), agent="planner", clock=clock, policy=POLICY, rng=random.Random(3)) as reg:
        await random_run(reg, clock, random.Random(11), STEPS)
        tasks, events = await everything(reg)
        states = Counter(t.state for t in tasks)
        kinds = Counter(e.type for e in events)
        # the run reached what the aggregates must follow
        assert states[State.DONE] and states[State.FAILED] and states[State.CANCELLED], states
        assert all(kinds[k] for k in ("completed", "failed", "lease_expired", "retried", "approved", "changes_requested",
                                         "updated")), kinds
        await assert_aggregates_match(reg, clock)
    if db.kind == "postgres":  # the sequencer's passes moved every delta into the totals
        assert db.sql("SELECT (SELECT COUNT(*) FROM task_deltas) + (SELECT COUNT(*) FROM time_deltas)"
                      " + (SELECT COUNT(*) FROM event_deltas)")[0] == [(0,)]


# What the aggregates' migration adds, dropped again: the database as the version before left it.
DOWNGRADE = {
    "sqlite": ["DROP TABLE task_totals", "DROP TABLE time_histogram", "DROP TABLE event_totals",
               "DROP TRIGGER task_totals_insert", "DROP TRIGGER task_totals_update", "DROP TRIGGER task_totals_delete",
               "DROP TRIGGER event_totals_insert", "DELETE FROM schema_migrations WHERE version = 6"],
    "postgres": ["DROP TABLE task_totals, task_deltas, time_histogram, time_deltas, event_totals, event_deltas CASCADE",
                 "DROP FUNCTION tasks_count, events_count, task_part CASCADE",
                 "DELETE FROM schema_migrations WHERE version = 4"],
}


async def test_the_migration_counts_the_work_already_in_a_database(db: TestDatabase):
    clock = FakeClock()
    async with Registry(db.store(), agent="planner", clock=clock, policy=POLICY, rng=random.Random(5)) as reg:
        await random_run(reg, clock, random.Random(23), STEPS // 3)
    db.sql(*DOWNGRADE[db.kind], bypass=False)
    async with Registry(db.store(), agent="planner", clock=clock, policy=POLICY) as reg:
        assert sum((await reg.counts()).values()) > 0
        await assert_aggregates_match(reg, clock)
        await random_run(reg, clock, random.Random(29), STEPS // 3)  # and the triggers go on from there
        await assert_aggregates_match(reg, clock)


def test_where_sqlite_lacks_ln_and_floor_the_stand_ins_give_the_same_buckets():
    import sqlite3

    from mcp_tasks.stores.sqlite_file import _floor, _ln

    conn = sqlite3.connect(":memory:")
    for x in (0.0004, 0.001, 0.05, 1.0, 1.05, 3.7, 59.99, 86400.0, 0.0, -1.0, None):
        assert conn.execute("SELECT ln(?), floor(?)", (x, x)).fetchone() == (_ln(x), _floor(x)), x
