"""The event log: complete, append-only, replayable; time metrics at DONE."""

from __future__ import annotations

import random

import pytest

from mcp_tasks import State
from mcp_tasks.errors import TaskError
from mcp_tasks.replay import fold


async def test_wait_work_and_cycle_times_at_done(registry, clock):
    tid = (await registry.create_tasks([{"title": "timed"}])).ids[0]
    clock.advance(30)
    claim = await registry.claim(tid)
    clock.advance(10)
    await registry.start(tid, claim.lease)
    clock.advance(100)
    await registry.checkpoint(tid, claim.lease, progress=50)
    clock.advance(20)
    done = await registry.complete(tid, claim.lease, result={"ok": True}, usage={"tokens": 1200, "api_calls": 3, "cost": 0.02})
    assert done.wait_time == pytest.approx(40)
    assert done.work_time == pytest.approx(120)
    assert done.cycle_time == pytest.approx(160)
    assert done.usage.tokens == 1200 and done.usage.api_calls == 3


async def test_review_times_count_until_the_work_was_completed(registry, clock):
    tid = (await registry.create_tasks([{"title": "reviewed", "requires_review": True}])).ids[0]
    claim = await registry.claim(tid)
    await registry.start(tid, claim.lease)
    clock.advance(50)
    await registry.complete(tid, claim.lease, result="draft")
    clock.advance(500)  # review takes a while
    done = await registry.review(tid, True, actor="reviewer")
    assert done.state == State.DONE and done.work_time == pytest.approx(50) and done.cycle_time == pytest.approx(50)


async def test_events_are_append_only_in_the_database(registry, db):
    await registry.create_tasks([{"title": "x"}])
    await registry.last_seq()  # every event numbered (on PostgreSQL, numbering is the one update allowed)
    for statement in ("UPDATE events SET actor = 'forged'", "DELETE FROM events"):
        with pytest.raises(Exception, match="append-only"):
            db.sql(statement, bypass=False)
    assert [e.actor for e in await registry.events_since(0)] == ["agent-a"]


async def test_events_since_pages_through_the_whole_log(registry):
    await registry.create_tasks([{"title": f"t{i}"} for i in range(30)])
    for _ in range(10):
        c = await registry.claim()
        await registry.start(c.task.id, c.lease)
    seen, seq = [], 0
    while page := await registry.events_since(seq, limit=7):
        seen += page
        seq = page[-1].seq
    assert [e.seq for e in seen] == sorted({e.seq for e in seen})
    assert len(seen) == 30 + 20 and seq == await registry.last_seq()


async def test_replay_rebuilds_every_field(registry, clock):
    k = (await registry.create_tasks([
        {"key": "dep", "title": "dependency"},
        {"key": "main", "title": "main", "tags": ["a", "b"], "priority": 8, "depends_on": ["dep"], "requires_review": True},
    ])).by_key
    c = await registry.claim(k["dep"])
    await registry.start(k["dep"], c.lease)
    await registry.complete(k["dep"], c.lease, result=[1, 2, 3], artifacts=["out.txt"])
    await registry.update(k["main"], title="main, renamed", tags=["c"])
    c = await registry.claim(k["main"])
    await registry.start(k["main"], c.lease)
    await registry.checkpoint(k["main"], c.lease, data={"nested": {"x": [1, None, "é"]}}, note="n", progress=10)
    await registry.fail(k["main"], c.lease, "transient")
    clock.advance(1000)
    c = await registry.claim(k["main"], start=True)
    await registry.complete(k["main"], c.lease, result="v1", usage={"tokens": 5, "api_calls": 1, "cost": 0.5})
    await registry.review(k["main"], False, "more", actor="reviewer")
    await registry.complete(k["main"], c.lease, result="v2", usage={"tokens": 7, "api_calls": 2, "cost": 0.25})
    await registry.review(k["main"], True, actor="reviewer")
    for key in ("dep", "main"):
        stored = await registry.get(k[key])
        replayed = await registry.replay(k[key])
        assert replayed.model_dump(exclude={"blocks"}) == stored.model_dump(exclude={"blocks"})
        assert replayed.lease_hash == stored.lease_hash
    main = await registry.get(k["main"])
    assert main.usage.tokens == 12 and main.usage.cost == 0.75 and main.retry_count == 1


async def test_a_long_random_run_verifies_clean(make_registry, clock):
    """Many agents doing random legal and illegal things; afterwards replay equals every row."""
    from mcp_tasks import Policy

    reg = await make_registry(Policy(lease_seconds=120, backoff_base=1, backoff_cap=30))
    rng = random.Random(2026)
    agents = [f"agent-{i}" for i in range(5)]
    ids: list[str] = []
    held: dict[str, tuple[str, str]] = {}  # task -> (agent, lease)
    refusals: dict[str, int] = {}
    for step in range(3000):
        clock.advance(rng.choice([0.1, 1, 2, 5, 10, 200]))
        who = rng.choice(agents)
        roll = rng.random()
        try:
            if roll < 0.05 or not ids:
                specs = [{"key": f"k{j}", "title": f"s{step}-{j}", "priority": rng.randint(1, 10),
                          "type": rng.choice(["code", "docs"]), "requires_review": rng.random() < 0.2,
                          "max_retries": rng.randint(0, 3),
                          "depends_on": [f"k{x}" for x in range(j) if rng.random() < 0.3]
                          + rng.sample(ids, min(len(ids), rng.randint(0, 1)))}
                         for j in range(rng.randint(1, 4))]
                ids += (await reg.create_tasks(specs, ready=rng.random() < 0.9, actor=who)).ids
            elif roll < 0.3:
                c = await reg.claim(capabilities=rng.choice([None, ["code"], ["docs"]]), actor=who,
                                    lease_seconds=rng.choice([None, 60]), start=rng.random() < 0.5)
                if c:
                    held[c.task.id] = (who, c.lease)
            elif roll < 0.85 and held:
                tid = rng.choice(list(held))
                owner, lease = held[tid]
                if rng.random() < 0.05:
                    owner = rng.choice(agents)  # sometimes somebody else tries
                state = (await reg.get(tid)).state
                if state not in (State.ASSIGNED, State.ACTIVE, State.PAUSED) and rng.random() < 0.8:
                    del held[tid]
                    continue
                if state not in (State.ASSIGNED, State.ACTIVE, State.PAUSED) or rng.random() < 0.1:
                    op = rng.choice(["start", "checkpoint", "complete", "fail", "pause", "resume", "release"])
                elif state == State.ASSIGNED:
                    op = rng.choice(["start"] * 6 + ["release"])
                elif state == State.ACTIVE:
                    op = rng.choice(["checkpoint", "checkpoint", "complete", "complete", "complete", "fail", "pause"])
                else:
                    op = "resume"
                if op == "start":
                    await reg.start(tid, lease, actor=owner)
                elif op == "checkpoint":
                    await reg.checkpoint(tid, lease, data={"step": step}, progress=rng.randint(0, 100), actor=owner)
                elif op == "complete":
                    await reg.complete(tid, lease, result=step, actor=owner)
                elif op == "fail":
                    await reg.fail(tid, lease, f"error {step}", retryable=rng.random() < 0.8, actor=owner)
                elif op == "pause":
                    await reg.pause(tid, lease, "hold", actor=owner)
                elif op == "resume":
                    await reg.resume(tid, lease, actor=owner)
                else:
                    await reg.release(tid, lease, actor=owner)
            elif ids:
                tid = rng.choice(ids)
                op = rng.choice(["review", "cancel", "retry", "update", "schedule", "reap"])
                if op == "review":
                    await reg.review(tid, rng.random() < 0.7, actor=who)
                elif op == "cancel":
                    await reg.cancel(tid, "random", actor=who)
                elif op == "retry":
                    await reg.retry(tid, actor=who)
                elif op == "update":
                    await reg.update(tid, priority=rng.randint(1, 10), add_depends_on=rng.sample(ids, 1), actor=who)
                elif op == "schedule":
                    await reg.schedule([tid], actor=who)
                else:
                    await reg.reap()
        except TaskError as exc:
            refusals[type(exc).__name__] = refusals.get(type(exc).__name__, 0) + 1
    counts = await reg.counts()
    assert sum(counts.values()) == len(ids)
    assert counts[State.DONE] > 50 and counts[State.FAILED] + counts[State.CANCELLED] > 5, counts
    assert {"InvalidTransition", "LeaseError"} <= set(refusals), refusals
    assert await reg.verify() == []
    for tid in rng.sample(ids, 20):
        events = await reg.events(tid, limit=500)
        assert fold(events).model_dump(exclude={"blocks"}) == (await reg.get(tid)).model_dump(exclude={"blocks"})
