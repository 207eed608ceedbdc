"""The store contract: the methods of the Store, ReadTx and WriteTx protocols (stores/base.py), one
by one, on every store, through `store.write` / `store.read` directly (no registry in between).

Each test writes rows with the protocol's own methods and checks what the others return: what
the method's docstring promises, and where it has none, what its name and the registry's use of
it say (claim order, filters, cursors, compare-and-set). Events are read by seq after
`settle()`, as every reader of the log does. Times are fixed epoch values passed as `now`, so
nothing depends on the clock except `now()` itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from mcp_tasks.aggregates import bucket_of
from mcp_tasks.errors import CorruptRow, StoreReadOnly
from mcp_tasks.models import Task, Usage
from mcp_tasks.states import State
from mcp_tasks.stores import IdCollision, Store, make_store
from mcp_tasks.stores.records import OrphanEvents, TaskTotal, TimeBucket, TouchedTask

from .databases import TestDatabase

NOW = 1_800_000_000.0
B, P, AS, AC, PA, D, F, C = (State.BACKLOG, State.PENDING, State.ASSIGNED, State.ACTIVE, State.PAUSED, State.DONE,
                             State.FAILED, State.CANCELLED)


class Boom(Exception):
    """Raised inside a transaction script to roll it back."""


def task(tid: str, **fields: Any) -> Task:
    """A task row with everything not given at its default: PENDING, created at NOW."""
    return Task(**{"id": tid, "title": f"title of {tid}", "state": P, "created_at": NOW, "created_by": "maker",
                   "updated_at": NOW, **fields})


@pytest.fixture
async def store(db: TestDatabase) -> AsyncIterator[Store]:
    s = db.store()
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def put(store: Store, *tasks: Task, deps: tuple[tuple[str, str], ...] = ()) -> None:
    """Insert `tasks` and the dependency edges (task, dependency) in one write."""
    def fn(tx: Any) -> None:
        for t in tasks:
            tx.insert_task(t)
        for edge in deps:
            tx.add_dep(*edge)

    await store.write(fn)


async def get(store: Store, tid: str) -> Task | None:
    return await store.read(lambda tx: tx.get_task(tid))


def damage(db: TestDatabase, tid: str) -> None:
    """Make a task row unreadable, as its column types allow (jsonb holds only JSON)."""
    if db.kind == "sqlite":
        db.sql(("UPDATE tasks SET tags = 'x' WHERE id = ?", (tid,)))
    else:
        db.sql(("UPDATE tasks SET tags = '[1]' WHERE id = %s", (tid,)))


async def until(check: Callable[[], bool], seconds: float = 30) -> None:
    """Poll `check` until it holds (a guard against hanging, not a measurement)."""
    with anyio.fail_after(seconds):
        while not check():
            await anyio.sleep(0.02)


# ---------------------------------------------------------------- task rows


async def test_a_task_round_trips_and_an_existing_id_is_an_id_collision(store):
    full = task("t-full", description="d", type="code", priority=9, tags=["x", "y"], state=AC, assignee="ann",
                assigned_at=NOW + 1, started_at=NOW + 2, retry_count=1, max_retries=5,
                error_log=[{"at": NOW, "error": "e"}], checkpoint_data={"step": 3, "list": [1, "two", None, 2.5]},
                checkpoint_note="note", progress=40, checkpoint_timestamp=NOW + 3, result={"ok": True},
                artifacts=["a.txt"], version=4, requires_review=True, lease_hash="hash", lease_expires_at=NOW + 60,
                lease_seconds=60.0, usage=Usage(tokens=10, api_calls=2, cost=0.5), updated_at=NOW + 3,
                lease_end="released")
    await put(store, full)
    assert await get(store, "t-full") == full
    assert await store.write(lambda tx: tx.get_task("t-full")) == full  # the locking read of a write
    assert await get(store, "t-none") is None

    def collide(tx: Any) -> None:
        tx.insert_task(task("t-new"))
        tx.insert_task(task("t-full"))

    with pytest.raises(IdCollision):
        await store.write(collide)
    assert await get(store, "t-new") is None  # the whole transaction was rolled back


async def test_json_values_come_back_as_they_went_in_numbers_of_every_size_too(store):
    values = {"big": 1e16, "huge": -1.5e300, "tiny": 1e-7, "whole": 2**70, "plain": 0.1, "text": "1e+16",
              "nested": [{"f": 3.25e20}, 12]}
    await put(store, task("t-json", checkpoint_data=values, result=[1e17, "x"]))
    stored = await get(store, "t-json")
    assert stored is not None and stored.checkpoint_data == values and stored.result == [1e17, "x"]
    assert type(stored.checkpoint_data["big"]) is float and type(stored.checkpoint_data["whole"]) is int
    await store.write(lambda tx: tx.append_event("t-json", "created", None, P, "maker", NOW, {"set": values}))
    await store.settle()
    history = (await store.read(lambda tx: tx.task_histories(["t-json"])))[0]
    assert history.events[0].data == {"set": values} and type(history.events[0].data["set"]["huge"]) is float


async def test_write_returns_what_the_script_returns_and_a_raising_script_changes_nothing(store):
    assert await store.write(lambda tx: tx.insert_task(task("t-a")) or "done") == "done"

    def fails(tx: Any) -> None:
        tx.insert_task(task("t-b"))
        tx.append_event("t-b", "created", None, P, "ann", NOW, {})
        raise Boom

    with pytest.raises(Boom):
        await store.write(fails)
    await store.settle()
    assert await get(store, "t-b") is None
    assert await store.read(lambda tx: (tx.last_seq(), tx.events_since(0, 10))) == (0, [])


async def test_update_task_is_a_compare_and_set_on_version_and_state(store):
    await put(store, task("t-a"))
    moved = task("t-a", state=AS, assignee="ann", version=2, title="renamed", updated_at=NOW + 5)
    assert await store.write(lambda tx: tx.update_task(moved, 1, P)) is True
    assert await get(store, "t-a") == moved
    later = task("t-a", state=AC, version=3, updated_at=NOW + 9)
    assert await store.write(lambda tx: tx.update_task(later, 1, AS)) is False  # a stale version
    assert await store.write(lambda tx: tx.update_task(later, 2, P)) is False  # a stale state
    assert await store.write(lambda tx: tx.update_task(task("t-none", version=2), 1, P)) is False
    assert await get(store, "t-a") == moved


async def test_dependency_edges_both_ways(store):
    await put(store, task("t-a", state=D), task("t-b"), task("t-c", unmet_deps=1), task("t-d", unmet_deps=1),
              deps=(("t-c", "t-a"), ("t-c", "t-b"), ("t-d", "t-b")))

    def look(tx: Any) -> tuple[Any, ...]:
        many = tx.depends_on_many(["t-c", "t-d", "t-a"])
        return (tx.get_task("t-c").depends_on, tx.get_task("t-b", with_blocks=True).blocks, tx.get_task("t-b").blocks,
                tx.dependency_states("t-c"), tx.states_of(["t-a", "t-b", "t-none"]),
                {k: sorted(v) for k, v in many.items()})

    expected = (["t-a", "t-b"], ["t-c", "t-d"], [], {"t-a": D, "t-b": P}, {"t-a": D, "t-b": P},
                {"t-c": ["t-a", "t-b"], "t-d": ["t-b"]})
    assert await store.read(look) == expected
    assert await store.write(look) == expected  # a write's reads lock what they read, and answer the same
    assert await store.write(lambda tx: tx.dependents("t-b")) == ["t-c", "t-d"]
    await store.write(lambda tx: tx.remove_dep("t-c", "t-a"))
    assert await store.write(lambda tx: (tx.get_task("t-c").depends_on, tx.dependents("t-a"))) == (["t-b"], [])


async def test_lock_dependency_graph_holds_other_lockers_until_commit(store, db):
    locked, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first(tx: Any) -> None:
        tx.lock_dependency_graph()
        locked.set()
        assert release.wait(30)

    def second(tx: Any) -> None:
        tx.lock_dependency_graph()
        seen.append(release.is_set())  # only after `first` committed, so after the release

    async with anyio.create_task_group() as tg:
        tg.start_soon(store.write, first)
        assert await anyio.to_thread.run_sync(locked.wait, 30)
        tg.start_soon(store.write, second)
        if db.kind == "postgres":  # wait until the second locker waits (SQLite: its one writer runs them in turn)
            await until(lambda: db.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                                       bypass=False)[0][0][0] > 0)
        release.set()
    assert seen == [True]


# ---------------------------------------------------------------- the event log and stored answers


async def test_events_get_gapless_seq_in_the_order_written(store):
    first = await store.write(lambda tx: [
        tx.append_event("t-a", "created", None, P, "ann", NOW, {"set": {"title": "x"}}),
        tx.append_event("t-b", "created", None, B, "bob", NOW + 1, {}),
    ])
    data = {"set": {"assignee": "cy"}, "odd": [1, 2.5, None, "é", {"deep": True}]}
    second = await store.write(lambda tx: tx.append_event("t-a", "claimed", P, AS, "cy", NOW + 2, data))

    def lost(tx: Any) -> None:
        tx.append_event("t-a", "lost", AS, AC, "cy", NOW + 3, {})
        raise Boom

    with pytest.raises(Boom):
        await store.write(lost)
    third = await store.write(lambda tx: tx.append_event("t-a", "started", AS, AC, "cy", NOW + 4, {}))
    assert first[0] < first[1] < second < third  # positions as written
    await store.settle()
    events = await store.read(lambda tx: tx.events_since(0, 100))
    assert [(e.seq, e.task_id, e.type, e.from_state, e.to_state, e.actor, e.at, e.data, e.error) for e in events] == [
        (1, "t-a", "created", None, P, "ann", NOW, {"set": {"title": "x"}}, None),
        (2, "t-b", "created", None, B, "bob", NOW + 1, {}, None),
        (3, "t-a", "claimed", P, AS, "cy", NOW + 2, data, None),
        (4, "t-a", "started", AS, AC, "cy", NOW + 4, {}, None),
    ]

    def pages(tx: Any) -> list[list[int]]:
        return [[e.seq for e in got] for got in (
            tx.events_since(1, 2), tx.events_since(4, 10), tx.events_of_task("t-a", 0, 100),
            tx.events_of_task("t-a", 1, 1), tx.latest_events_of_task("t-a", 2), tx.events_of_task("t-none", 0, 9))]

    assert await store.read(pages) == [[2, 3], [], [1, 3, 4], [3], [3, 4], []]
    assert await store.read(lambda tx: tx.last_seq()) == 4


async def test_stored_answers_are_per_client_replaced_and_pruned(store):
    await store.write(lambda tx: tx.put_request("c1", "r1", "ann", "claim", "h1", '{"a":1}', NOW))
    await store.write(lambda tx: tx.put_request("c2", "r1", "bob", "claim", "h3", "{}", NOW + 5))
    got = await store.write(lambda tx: [tx.get_request(c, r) for c, r in (("c1", "r1"), ("c1", "r2"), ("c3", "r1"))])
    assert got == [("claim", "h1", '{"a":1}'), None, None]
    await store.write(lambda tx: tx.put_request("c1", "r1", "ann", "start", "h2", '{"b":2}', NOW + 10))  # replaced
    assert await store.write(lambda tx: tx.get_request("c1", "r1")) == ("start", "h2", '{"b":2}')
    assert await store.write(lambda tx: tx.prune_requests(NOW + 6)) == 1  # c2's, older than NOW + 6
    assert await store.write(lambda tx: (tx.get_request("c1", "r1"), tx.get_request("c2", "r1"))) == (
        ("start", "h2", '{"b":2}'), None)


# ---------------------------------------------------------------- ready work


READY = (  # in claim order: priority desc, then created_at, then insertion
    task("t-hi", priority=9, created_at=NOW + 5, type="code", tags=["x"]),
    task("t-old", priority=5, created_at=NOW, type="docs", tags=["x", "y"], checkpoint_data={"step": 1}),
    task("t-new", priority=5, created_at=NOW + 1, type="code"),
    task("t-tie", priority=5, created_at=NOW + 1, retry_count=2),
    task("t-due", priority=1, not_before=NOW - 1),
)
NOT_READY = (
    task("t-blocked", priority=10, unmet_deps=1),
    task("t-backoff", priority=10, not_before=NOW + 100, type="code"),
    task("t-held", priority=10, state=AS),
    task("t-later", priority=10, state=B),
)


async def test_ready_work_in_claim_order_with_filters_and_a_cursor(store):
    await put(store, *READY, *NOT_READY)

    def ids(caps: list[str] | None = None, tags: list[str] | None = None, after: Any = None, limit: int = 10,
            now: float = NOW) -> Callable[[Any], list[str]]:
        return lambda tx: [s.id for s, _ in tx.list_ready(now, caps, tags, after, limit)]

    assert await store.read(ids()) == ["t-hi", "t-old", "t-new", "t-tie", "t-due"]
    page = await store.read(lambda tx: tx.list_ready(NOW, None, None, None, 2))
    assert [s.id for s, _ in page] == ["t-hi", "t-old"] and page[1][1][:2] == (5, NOW)
    assert page[1][0].has_checkpoint and not page[0][0].has_checkpoint and page[0][0].tags == ["x"]
    assert await store.read(ids(after=page[1][1])) == ["t-new", "t-tie", "t-due"]
    assert await store.read(ids(caps=["code"])) == ["t-hi", "t-new"]
    assert await store.read(ids(caps=["docs", "general"])) == ["t-old", "t-tie", "t-due"]
    assert await store.read(ids(tags=["x"])) == ["t-hi", "t-old"]
    assert await store.read(ids(tags=["y", "x"])) == ["t-old"]  # every tag must match
    assert await store.read(ids(tags=[])) == await store.read(ids())
    assert (await store.read(ids(now=NOW + 100)))[0] == "t-backoff"  # its backoff has ended

    def nexts(tx: Any) -> list[str | None]:
        picks = [tx.next_ready(NOW, None, None), tx.next_ready(NOW, ["docs"], None), tx.next_ready(NOW, None, ["y"]),
                 tx.next_ready(NOW, ["none"], None), tx.next_ready(NOW + 100, ["code"], None)]
        return [None if t is None else t.id for t in picks]

    assert await store.write(nexts) == ["t-hi", "t-old", "t-old", None, "t-backoff"]
    assert await store.write(lambda tx: tx.next_ready(NOW, None, None)) == READY[0]  # the whole task

    def outlook(tx: Any) -> tuple[Any, ...]:
        return (tx.count_ready(NOW), tx.oldest_ready(NOW), tx.next_backoff_end(NOW), tx.ready_types(NOW, 100),
                sum(tx.ready_types(NOW, 2).values()), tx.next_backoff_end(NOW + 100))

    assert await store.read(outlook) == (5, NOW, NOW + 100, {"code": 2, "docs": 1, "general": 2}, 2, None)


async def test_damaged_rows_are_stepped_over_by_lists_and_claims(store, db):
    await put(store, *READY[:3])
    damage(db, "t-hi")
    assert [s.id for s, _ in await store.read(lambda tx: tx.list_ready(NOW, None, None, None, 10))] == ["t-old", "t-new"]
    assert (await store.write(lambda tx: tx.next_ready(NOW, None, None))).id == "t-old"
    with pytest.raises(CorruptRow) as info:
        await get(store, "t-hi")
    assert info.value.task_id == "t-hi" and info.value.data["column"] == "tags"
    damage(db, "t-old")
    damage(db, "t-new")
    assert await store.write(lambda tx: tx.next_ready(NOW, None, None)) is None
    assert await store.read(lambda tx: tx.count_ready(NOW)) == 3  # counted, though none can be read


# ---------------------------------------------------------------- what the reaper looks for


async def test_expired_leases_and_clock_steps_the_reaper_looks_for(store):
    await put(store,
              task("t-exp1", state=AS, lease_expires_at=NOW - 10, lease_seconds=60.0),
              task("t-exp2", state=AC, lease_expires_at=NOW - 20, lease_seconds=60.0),
              task("t-exp3", state=AC, lease_expires_at=NOW, lease_seconds=60.0),
              task("t-live", state=AC, lease_expires_at=NOW + 30, lease_seconds=60.0),
              task("t-paused", state=PA, lease_expires_at=NOW - 100),
              task("t-ahead", state=AS, lease_expires_at=NOW + 1000, lease_seconds=60.0),
              task("t-ahead-default", state=AC, lease_expires_at=NOW + 700),
              task("t-backoff-far", not_before=NOW + 1000),
              task("t-backoff-near", not_before=NOW + 10))

    def names(tasks: list[Task]) -> list[str]:
        return [t.id for t in tasks]

    def look(tx: Any) -> tuple[Any, ...]:
        return (names(tx.expired_leases(NOW, 10)), names(tx.expired_leases(NOW, 2)),
                sorted(names(tx.leases_from_the_future(NOW, 5, 600, 10))),
                names(tx.leases_from_the_future(NOW, 5, 800, 10)), names(tx.backoffs_from_the_future(NOW, 300, 10)))

    assert await store.write(look) == (["t-exp2", "t-exp1", "t-exp3"], ["t-exp2", "t-exp1"],
                                       ["t-ahead", "t-ahead-default"], ["t-ahead"], ["t-backoff-far"])


# ---------------------------------------------------------------- counts, outlook, lookups


async def test_counts_outlook_and_lookups(store, db):
    await put(store,
              task("t-done", state=D, assignee="ann", type="code", wait_time=1.0, work_time=2.0, cycle_time=3.0,
                   retry_count=1, usage=Usage(tokens=5, api_calls=2, cost=0.25), updated_at=NOW + 1),
              task("t-dead", state=F, type="code", retry_count=2, updated_at=NOW + 2),
              task("t-dropped", state=C, updated_at=NOW + 3),
              task("t-run", state=AC, assignee="bob", tags=["x"], updated_at=NOW + 4),
              task("t-blocked", title="Blocked by the dead one", unmet_deps=1, updated_at=NOW + 5),
              task("t-backlogged", state=B, unmet_deps=1, updated_at=NOW + 6),
              task("t-waiting", unmet_deps=1, updated_at=NOW + 7),
              task("t-backoff", not_before=NOW + 50, updated_at=NOW + 8),
              task("t-ready", updated_at=NOW + 9),
              deps=(("t-blocked", "t-dead"), ("t-backlogged", "t-dropped"), ("t-waiting", "t-run")))

    def counts(tx: Any) -> tuple[Any, ...]:
        return (tx.count_by_state(), sorted(tx.task_totals(), key=str), tx.pending_outlook(NOW),
                tx.blocked_by_failed(10), tx.blocked_by_failed(1), sorted(tx.time_histogram()),
                sorted(tx.agent_states()))

    assert await store.read(counts) == (
        {D: 1, F: 1, C: 1, AC: 1, P: 4, B: 1},
        sorted([TaskTotal("code", "ann", D, 1, 1, 1, 5, 2, 250_000), TaskTotal("code", None, F, 1, 1, 2, 0, 0, 0),
                TaskTotal("general", None, C, 1, 1, 0, 0, 0, 0), TaskTotal("general", "bob", AC, 1, 1, 0, 0, 0, 0),
                TaskTotal("general", None, P, 4, 2, 0, 0, 0, 0), TaskTotal("general", None, B, 1, 0, 0, 0, 0, 0)],
               key=str),
        (1, 1, 1),  # in a backoff, waiting for work in progress, blocked by failed work
        [("t-backlogged", "t-dropped", C), ("t-blocked", "t-dead", F)], [("t-backlogged", "t-dropped", C)],
        sorted(TimeBucket(dim, name, measure, bucket_of(t), 1)
               for dim, name in (("type", "code"), ("agent", "ann")) for measure, t in (("cycle", 3.0), ("work", 2.0))),
        [("ann", "DONE", 1), ("bob", "ACTIVE", 1)],
    )

    def lookups(tx: Any) -> tuple[Any, ...]:
        return ([t.id for t in tx.tasks_in_state(P, 10)], [t.id for t in tx.tasks_in_state(P, 1)],
                tx.task_ids_with_prefix("t-b", 10), tx.task_ids_with_prefix("t-b", 2), tx.task_ids_with_prefix("x", 9),
                tx.assignees_with_prefix("b", 10), tx.assignees_with_prefix("", 10))

    assert await store.read(lookups) == (
        ["t-ready", "t-backoff", "t-waiting", "t-blocked"], ["t-ready"],  # the latest changed first
        ["t-backlogged", "t-backoff", "t-blocked"], ["t-backlogged", "t-backoff"], [], ["bob"], ["ann", "bob"])

    def found(state: State | None = None, assignee: str | None = None, tag: str | None = None,
              text: str | None = None, after: Any = None, limit: int = 100,
              types: list[str] | None = None) -> Callable[[Any], list[str]]:
        return lambda tx: [t.id for t, _ in tx.find_tasks(state, assignee, tag, text, after, limit, types)]

    newest_first = ["t-ready", "t-backoff", "t-waiting", "t-backlogged", "t-blocked", "t-run", "t-dropped", "t-dead",
                    "t-done"]  # one created_at: the latest inserted first
    assert await store.read(found()) == newest_first
    page = await store.read(lambda tx: tx.find_tasks(None, None, None, None, None, 2))
    assert await store.read(found(after=page[-1][1])) == newest_first[2:]
    assert await store.read(found(state=D)) == ["t-done"]
    assert await store.read(found(assignee="bob")) == ["t-run"]
    assert await store.read(found(tag="x")) == ["t-run"]
    assert await store.read(found(text="bLOCKED BY")) == ["t-blocked"]  # any case, in title or description
    assert await store.read(found(types=["code", "docs"])) == ["t-dead", "t-done"]
    assert await store.read(found(state=P, types=["code"])) == []

    assert await store.read(lambda tx: tx.unmet_mismatches()) == []
    db.sql(("UPDATE tasks SET unmet_deps = 2 WHERE id = " + ("?" if db.kind == "sqlite" else "%s"), ("t-ready",)))
    assert await store.read(lambda tx: tx.unmet_mismatches()) == [("t-ready", 2, 0)]


async def test_failure_counts_by_event_type_actor_and_holder(store):
    await store.write(lambda tx: [
        tx.append_event("t-a", "failed", AC, F, "ann", NOW, {}),
        tx.append_event("t-a", "lease_expired", AC, F, "reaper", NOW, {"holder": "bob"}),
        tx.append_event("t-b", "lease_expired", AS, P, "reaper", NOW, {"holder": "bob"}),
        tx.append_event("t-a", "retried", F, P, "reaper", NOW, {}),
        tx.append_event("t-a", "claimed", P, AS, "ann", NOW, {}),
    ])
    assert sorted(await store.read(lambda tx: tx.failure_counts()), key=str) == sorted(
        [("failed", "ann", None, 1), ("lease_expired", "reaper", "bob", 2), ("retried", "reaper", None, 1)], key=str)


# ---------------------------------------------------------------- verification, clock, modes


async def test_verification_queries_on_a_clean_database(store):
    await put(store, task("t-a"), task("t-b", unmet_deps=1), deps=(("t-b", "t-a"),))
    await store.write(lambda tx: [tx.append_event(tid, "created", None, P, "maker", NOW, {}) for tid in ("t-a", "t-b")])
    await store.settle()

    def check(tx: Any) -> tuple[Any, ...]:
        first = tx.tasks_with_events(0, 1)
        return (first, tx.tasks_with_events(first[0].num, 10), tx.event_seq_problems(10),
                tx.event_tasks_without_row("", 10), tx.deps_without_rows(("", ""), 10), tx.unmet_mismatches())

    first, rest, problems, orphans, edges, mismatches = await store.read(check)
    assert [(h.task_id, h.task.id, [e.seq for e in h.events]) for h in first + rest] == [
        ("t-a", "t-a", [1]), ("t-b", "t-b", [2])]
    assert rest[0].task.depends_on == ["t-a"]
    assert (problems, orphans, edges, mismatches) == ([], [], [], [])
    await store.write(lambda tx: tx.append_event("t-ghost", "created", None, P, "maker", NOW, {}))
    await store.settle()
    assert await store.read(lambda tx: tx.event_tasks_without_row("", 10)) == [OrphanEvents("t-ghost", 1, 3, 3)]
    touched = await store.read(lambda tx: (tx.tasks_touched_after(0, 1), tx.tasks_touched_after(1, 5)))
    assert touched == ([TouchedTask("t-a", 1)], [TouchedTask("t-b", 2), TouchedTask("t-ghost", 3)])
    histories = await store.read(lambda tx: tx.task_histories(["t-ghost", "t-b", "t-none"]))
    assert [(h.task_id, h.task and h.task.id, [e.seq for e in h.events]) for h in histories] == [
        ("t-b", "t-b", [2]), ("t-ghost", None, [3])]
    assert histories[0].task.depends_on == ["t-a"]


async def test_task_marks_slice_the_rows_and_another_process_can_read_the_same_database(store):
    await put(store, *(task(f"t-{i:02d}") for i in range(7)))
    nums = [h.num for h in await store.read(lambda tx: tx.tasks_with_events(0, 100))]
    assert len(nums) == 7 and nums == sorted(nums)
    assert await store.read(lambda tx: tx.task_marks(3)) == [nums[2], nums[5]]
    assert await store.read(lambda tx: tx.task_marks(1)) == nums
    assert await store.read(lambda tx: tx.task_marks(8)) == []
    location = store.reader_location()
    assert location is not None
    reader = make_store(location, create=False)
    await reader.open()
    try:
        assert [h.task_id for h in await reader.read(lambda tx: tx.tasks_with_events(0, 100))] == [
            f"t-{i:02d}" for i in range(7)]
    finally:
        await reader.close()
    assert make_store(":memory:").reader_location() is None


async def test_now_is_the_stores_clock_in_every_transaction(store):
    wall = time.time()
    read_now, write_now = await store.read(lambda tx: tx.now()), await store.write(lambda tx: tx.now())
    for now in (read_now, write_now):  # the host's clock, or the database server's on this machine
        assert isinstance(now, float) and abs(now - wall) < 300


async def test_read_only_stores_refuse_writes_and_answer_reads(store, db):
    assert store.read_only is False
    await put(store, task("t-a"))
    if db.kind != "sqlite":
        return  # PostgreSQL has no read-only open: a role without write rights is refused per statement
    ro = make_store(f"sqlite:///{db.path}?mode=ro")
    await ro.open()
    try:
        assert ro.read_only is True
        assert (await ro.read(lambda tx: tx.get_task("t-a"))).id == "t-a"
        with pytest.raises(StoreReadOnly):
            await ro.write(lambda tx: tx.insert_task(task("t-b")))
    finally:
        await ro.close()
    assert await get(store, "t-b") is None


async def test_settle_numbers_what_committed_and_watch_wakes_followers(store, db):
    await store.write(lambda tx: tx.append_event("t-a", "created", None, P, "maker", NOW, {}))
    await store.settle()
    assert await store.read(lambda tx: tx.last_seq()) == 1
    woken = [anyio.Event()]

    def wake() -> None:
        woken[-1].set()

    if db.kind == "sqlite":  # no signal between processes: followers poll, and watch returns at once
        with anyio.fail_after(10):
            await store.watch(wake)
        return
    other = db.store()  # another process's store on the same database
    await other.open()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.watch, wake)
            with anyio.fail_after(30):
                await woken[-1].wait()  # once it listens: anything announced before is read by seq anyway
            woken.append(anyio.Event())
            await other.write(lambda tx: tx.append_event("t-a", "started", P, AC, "maker", NOW, {}))
            await other.settle()
            with anyio.fail_after(30):
                await woken[-1].wait()
            tg.cancel_scope.cancel()
    finally:
        await other.close()
