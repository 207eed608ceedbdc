"""Readiness, claim order, filters, dependencies and cycles; claim with start."""

from __future__ import annotations

import pytest

from mcp_tasks import State, reports
from mcp_tasks.errors import DependencyError, InvalidInput, NotReady, RoleRequired, TaskNotFound
from mcp_tasks.models import Caller
from mcp_tasks.states import ROLE_NEEDED, Role


async def finish(reg, tid: str, actor: str = "agent-a") -> None:
    claim = await reg.claim(tid, actor=actor)
    await reg.start(tid, claim.lease, actor=actor)
    await reg.complete(tid, claim.lease, result="ok", actor=actor)


async def test_claim_order_is_priority_then_age_then_creation(registry, clock):
    old_low = (await registry.create_tasks([{"title": "old low", "priority": 2}])).ids[0]
    clock.advance(10)
    new_high = (await registry.create_tasks([{"title": "new high", "priority": 9}])).ids[0]
    clock.advance(10)
    batch = (await registry.create_tasks([{"title": f"mid {i}", "priority": 5} for i in range(3)])).ids
    clock.advance(10)
    newer_mid = (await registry.create_tasks([{"title": "newer mid", "priority": 5}])).ids[0]
    expected = [new_high, *batch, newer_mid, old_low]
    listed = [t.id for t in (await registry.list_available(limit=50)).items]
    assert listed == expected
    claimed = []
    while (c := await registry.claim()) is not None:
        claimed.append(c.task.id)
    assert claimed == expected


async def test_list_available_pages_with_a_cursor(registry):
    ids = (await registry.create_tasks([{"title": f"t{i}", "priority": 1 + i % 10} for i in range(25)])).ids
    seen, cursor = [], None
    while True:
        page = await registry.list_available(limit=7, cursor=cursor)
        seen += [t.id for t in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(ids) and len(seen) == 25
    full = [t.id for t in (await registry.list_available(limit=100)).items]
    assert seen == full
    with pytest.raises(InvalidInput, match="cursor"):
        await registry.list_available(cursor="not-a-cursor")


async def test_capability_and_tag_filters(registry):
    created = await registry.create_tasks([
        {"key": "py", "title": "python fix", "type": "code", "tags": ["python", "backend"], "priority": 3},
        {"key": "doc", "title": "write docs", "type": "docs", "tags": ["python"], "priority": 9},
        {"key": "js", "title": "js fix", "type": "code", "tags": ["js", "frontend"], "priority": 5},
    ])
    k = created.by_key
    code = await registry.list_available(capabilities=["code"])
    assert [t.id for t in code.items] == [k["js"], k["py"]]
    both = await registry.list_available(tags=["python", "backend"])
    assert [t.id for t in both.items] == [k["py"]]
    assert (await registry.list_available(capabilities=["code", "docs"], tags=["python"])).items[0].id == k["doc"]
    assert (await registry.list_available(capabilities=["ops"])).items == []
    claim = await registry.claim(capabilities=["code"], tags=["python"])
    assert claim.task.id == k["py"]
    assert await registry.claim(capabilities=["ops"]) is None


async def test_dependencies_unblock_through_a_chain_of_levels(registry):
    plan = [{"key": "l0", "title": "level 0"}]
    plan += [{"key": f"l{i}", "title": f"level {i}", "depends_on": [f"l{i-1}"]} for i in range(1, 5)]
    plan += [{"key": "join", "title": "join", "depends_on": ["l2", "l4"]}]
    k = (await registry.create_tasks(plan)).by_key
    for i in range(5):
        ready = [t.id for t in (await registry.list_available()).items]
        assert ready == [k[f"l{i}"]], f"only level {i} should be ready"
        with pytest.raises(NotReady) as info:
            await registry.claim(k["join"])
        assert k["l4"] in info.value.data["waiting_on"]
        await finish(registry, k[f"l{i}"])
    join = await registry.get(k["join"])
    assert join.unmet_deps == 0
    assert [t.id for t in (await registry.list_available()).items] == [k["join"]]
    assert (await registry.get(k["l2"])).blocks == sorted([k["l3"], k["join"]])


async def test_dependencies_on_existing_ids_and_done_tasks(registry):
    done = (await registry.create_tasks([{"title": "done already"}])).ids[0]
    await finish(registry, done)
    open_ = (await registry.create_tasks([{"title": "still open"}])).ids[0]
    created = await registry.create_tasks([{"title": "needs both", "depends_on": [done, open_]}])
    task = await registry.get(created.ids[0])
    assert task.depends_on == sorted([done, open_]) and task.unmet_deps == 1


async def test_unknown_dependencies_are_refused_and_nothing_is_created(registry):
    with pytest.raises(DependencyError, match="t-doesnotexist"):
        await registry.create_tasks([{"title": "a"}, {"title": "b", "depends_on": ["t-doesnotexist"]}])
    assert sum((await registry.counts()).values()) == 0
    with pytest.raises(InvalidInput, match="neither a key of this batch nor a task id"):
        await registry.create_tasks([{"title": "b", "depends_on": ["nokey"]}])


async def test_cycles_in_a_batch_are_refused_with_the_path(registry):
    with pytest.raises(DependencyError) as info:
        await registry.create_tasks([
            {"key": "a", "title": "a", "depends_on": ["c"]},
            {"key": "b", "title": "b", "depends_on": ["a"]},
            {"key": "c", "title": "c", "depends_on": ["b"]},
        ])
    assert info.value.data["path"] in (["a", "c", "b", "a"], ["b", "a", "c", "b"], ["c", "b", "a", "c"])
    assert "dependency cycle" in info.value.message
    with pytest.raises(DependencyError, match="s -> s"):
        await registry.create_tasks([{"key": "s", "title": "self", "depends_on": ["s"]}])
    assert sum((await registry.counts()).values()) == 0


async def test_cycles_added_later_are_refused_with_the_path(registry):
    k = (await registry.create_tasks([
        {"key": "a", "title": "a"},
        {"key": "b", "title": "b", "depends_on": ["a"]},
        {"key": "c", "title": "c", "depends_on": ["b"]},
    ])).by_key
    with pytest.raises(DependencyError) as info:
        await registry.update(k["a"], add_depends_on=[k["c"]])
    assert info.value.data["path"] == [k["a"], k["c"], k["b"], k["a"]]
    with pytest.raises(DependencyError):
        await registry.update(k["a"], add_depends_on=[k["a"]])
    a = await registry.get(k["a"])
    assert a.depends_on == [] and a.version == 1


async def test_rewiring_dependencies_keeps_the_counter(registry):
    k = (await registry.create_tasks([
        {"key": "a", "title": "a"}, {"key": "b", "title": "b"}, {"key": "c", "title": "c", "depends_on": ["a"]},
    ])).by_key
    await finish(registry, k["a"])
    assert (await registry.get(k["c"])).unmet_deps == 0
    c = await registry.update(k["c"], add_depends_on=[k["b"]])
    assert c.unmet_deps == 1 and c.depends_on == sorted([k["a"], k["b"]])
    assert [t.id for t in (await registry.list_available()).items] == [k["b"]]
    c = await registry.update(k["c"], remove_depends_on=[k["b"]])
    assert c.unmet_deps == 0
    with pytest.raises(InvalidInput, match="does not depend on"):
        await registry.update(k["c"], remove_depends_on=[k["b"]])
    assert await registry.verify() == []


async def blocked_by_failed(reg) -> list[tuple[str, str, State]]:
    """(task, dependency, its state) as the board lists work blocked by failed dependencies."""
    return [(b["id"], b["dependency"], State(b["dependency_state"])) for b in (await reports.board(reg)).blocked_by_failed]


async def test_a_cancelled_dependency_reports_dependents_blocked_by_failed_work(registry):
    k = (await registry.create_tasks([
        {"key": "a", "title": "a"},
        {"key": "b", "title": "b", "depends_on": ["a"]},
        {"key": "c", "title": "c", "depends_on": ["b"]},
    ])).by_key
    await registry.cancel(k["a"], "scope changed")
    blocked = await blocked_by_failed(registry)
    assert blocked == [(k["b"], k["a"], State.CANCELLED)]
    _, ready, _ = await registry.get_with_context(k["b"])
    assert not ready.ready and ready.failed_deps == [k["a"]]
    assert "blocked by failed work" in ready.reason
    with pytest.raises(NotReady, match="blocked by failed work"):
        await registry.claim(k["b"])
    with pytest.raises(DependencyError, match="cancelled"):
        await registry.create_tasks([{"title": "d", "depends_on": [k["a"]]}])
    # the planner rewires b and the chain flows again
    await registry.update(k["b"], remove_depends_on=[k["a"]])
    assert await blocked_by_failed(registry) == []
    assert [t.id for t in (await registry.list_available()).items] == [k["b"]]


async def test_a_dead_lettered_dependency_blocks_too(registry):
    k = (await registry.create_tasks([
        {"key": "a", "title": "a", "max_retries": 0}, {"key": "b", "title": "b", "depends_on": ["a"]},
    ])).by_key
    claim = await registry.claim(k["a"])
    await registry.start(k["a"], claim.lease)
    await registry.fail(k["a"], claim.lease, "cannot be done")
    assert await blocked_by_failed(registry) == [(k["b"], k["a"], State.FAILED)]


async def test_backlog_tasks_wait_for_schedule(registry):
    ids = (await registry.create_tasks([{"title": "later"}, {"title": "later too"}], ready=False)).ids
    assert (await registry.list_available()).items == []
    assert await registry.claim() is None
    moved = await registry.schedule(ids)
    assert [t.state for t in moved] == [State.PENDING, State.PENDING]
    assert len((await registry.list_available()).items) == 2


async def test_schedule_is_all_or_nothing(registry):
    backlog = (await registry.create_tasks([{"title": "b"}], ready=False)).ids[0]
    pending = (await registry.create_tasks([{"title": "p"}])).ids[0]
    with pytest.raises(Exception):
        await registry.schedule([backlog, pending])
    assert (await registry.get(backlog)).state == State.BACKLOG


async def test_unknown_task_ids_are_reported(registry):
    with pytest.raises(TaskNotFound, match="t-0000000000"):
        await registry.claim("t-0000000000")
    with pytest.raises(InvalidInput, match="not a task id"):
        await registry.get("DROP TABLE tasks")


# ---------------------------------------------------------------- claim(start=True)


@pytest.mark.parametrize("named", [True, False], ids=["named", "best-ready"])
async def test_claim_with_start_claims_and_starts_in_one_transaction(registry, clock, named):
    """The task comes back ACTIVE with its lease; the log has claimed then started, back to back,
    committed together (one change notice); claim + complete is then the whole lifecycle."""
    other, tid = (await registry.create_tasks([{"title": "lower", "priority": 1}, {"title": "work", "priority": 9}])).ids
    commits: list[set[str]] = []
    registry.add_listener(commits.append)
    got = await registry.claim(tid if named else None, lease_seconds=120, start=True)
    assert got is not None and got.task.id == tid and got.task.state == State.ACTIVE
    assert got.lease_expires_at == clock() + 120 == got.task.lease_expires_at
    stored = await registry.get(tid)
    assert stored.model_dump() == got.task.model_dump()
    assert stored.assignee == "agent-a" and stored.started_at == stored.assigned_at == clock()
    claimed, started = (await registry.events(tid))[-2:]
    assert [(e.type, e.from_state, e.to_state) for e in (claimed, started)] == [
        ("claimed", State.PENDING, State.ASSIGNED), ("started", State.ASSIGNED, State.ACTIVE)]
    assert started.seq == claimed.seq + 1 == await registry.last_seq()
    assert commits == [{tid}]
    assert (await registry.get(other)).state == State.PENDING
    clock.advance(30)
    done = await registry.complete(tid, got.lease, result="ok")
    assert done.state == State.DONE and done.work_time == 30
    assert await registry.verify() == []


async def test_claim_with_start_is_a_repeatable_start_for_its_lease(registry):
    """The lease it returns is the task's lease as after any start: a repeated start answers as
    the first did, and release (for tasks not started) is refused."""
    tid = (await registry.create_tasks([{"title": "a"}])).ids[0]
    got = await registry.claim(tid, start=True)
    again = await registry.start(tid, got.lease)
    assert again.version == got.task.version and again.state == State.ACTIVE
    with pytest.raises(Exception, match="cannot release"):
        await registry.release(tid, got.lease)


async def test_claim_with_start_and_nothing_ready_answers_as_claim_does(registry):
    assert await registry.claim(start=True) is None
    await registry.create_tasks([{"title": "later"}], ready=False)
    assert await registry.claim(start=True) is None and await registry.claim() is None
    assert await registry.last_seq() == 1  # only the creation


async def test_a_role_that_may_claim_but_not_start_is_refused_and_nothing_is_claimed(registry, monkeypatch):
    tid = (await registry.create_tasks([{"title": "a"}])).ids[0]
    before, seq = await registry.get(tid), await registry.last_seq()
    monkeypatch.setitem(ROLE_NEEDED, "start", Role.PLANNER)  # a table where agents may claim, not start
    agent = Caller("al", "al", Role.AGENT)
    with pytest.raises(RoleRequired) as info:
        await registry.claim(tid, start=True, actor=agent)
    assert info.value.message.startswith("start needs the planner role; al has the agent role")
    assert "\n" not in info.value.message and info.value.data["role_needed"] == "planner"
    assert (await registry.get(tid)).model_dump() == before.model_dump() and await registry.last_seq() == seq
    assert (await registry.claim(tid, actor=agent)).task.state == State.ASSIGNED  # claim alone is allowed


REFUSE_STARTED = {
    "sqlite": ["CREATE TRIGGER refuse_started BEFORE INSERT ON events WHEN NEW.type = 'started' "
               "BEGIN SELECT RAISE(ABORT, 'no starting here'); END"],
    "postgres": ["CREATE FUNCTION refuse_started() RETURNS trigger LANGUAGE plpgsql AS "
                 "$$ BEGIN RAISE EXCEPTION 'no starting here'; END $$",
                 "CREATE TRIGGER refuse_started BEFORE INSERT ON events FOR EACH ROW "
                 "WHEN (NEW.type = 'started') EXECUTE FUNCTION refuse_started()"],
}


@pytest.mark.parametrize("named", [True, False], ids=["named", "best-ready"])
async def test_a_start_the_database_refuses_leaves_nothing_claimed(registry, db, named):
    """The database refuses the start's event after the claim's row and event were written in the
    same transaction: all of it rolls back, and the task is still ready for the next claimer."""
    tid = (await registry.create_tasks([{"title": "a"}])).ids[0]
    before, seq = await registry.get(tid), await registry.last_seq()
    db.sql(*REFUSE_STARTED[db.kind], bypass=False)
    with pytest.raises(Exception, match="no starting here"):  # as each store reports a database error
        await registry.claim(tid if named else None, start=True, request_id="cs-1")
    assert (await registry.get(tid)).model_dump() == before.model_dump()
    assert await registry.last_seq() == seq and [t.id for t in (await registry.list_available()).items] == [tid]
    db.sql("DROP TRIGGER refuse_started" + (" ON events" if db.kind == "postgres" else ""), bypass=False)
    got = await registry.claim(tid if named else None, start=True, request_id="cs-1")  # the id was not burnt
    assert got.task.id == tid and got.task.state == State.ACTIVE
    assert await registry.verify() == []


async def test_start_must_be_a_boolean(registry):
    tid = (await registry.create_tasks([{"title": "a"}])).ids[0]
    with pytest.raises(InvalidInput, match="start must be true or false"):
        await registry.claim(tid, start="yes")
    assert (await registry.get(tid)).state == State.PENDING
