"""Leases, fencing, the reaper, retries with backoff, dead letters and checkpoint hand-over."""

from __future__ import annotations

import asyncio
import random

import pytest

from mcp_tasks import Policy, State
from mcp_tasks.errors import InvalidInput, LeaseError
from mcp_tasks.rules import backoff


async def test_expired_assigned_lease_returns_the_task_to_pending(registry, clock):
    tid = (await registry.create_tasks([{"title": "claimed then forgotten"}])).ids[0]
    claim = await registry.claim(tid, lease_seconds=60)
    clock.advance(59)
    assert await registry.reap() == []
    clock.advance(2)
    assert await registry.reap() == [tid]
    task = await registry.get(tid)
    assert task.state == State.PENDING and task.assignee is None and task.retry_count == 0
    last = (await registry.events(tid))[-1]
    assert (last.type, last.from_state, last.to_state, last.actor) == ("lease_expired", State.ASSIGNED, State.PENDING, "reaper")
    with pytest.raises(LeaseError, match="has ended: it expired") as info:
        await registry.start(tid, claim.lease)
    assert info.value.state == State.PENDING


async def test_expired_active_lease_fails_then_retries_and_hands_over_the_checkpoint(registry, clock):
    tid = (await registry.create_tasks([{"title": "long job"}])).ids[0]
    first = await registry.claim(tid, lease_seconds=60, actor="agent-a")
    await registry.start(tid, first.lease, actor="agent-a")
    await registry.checkpoint(tid, first.lease, data={"done_pages": 40}, note="half way", progress=50, actor="agent-a")
    clock.advance(61)  # agent-a died
    assert await registry.reap() == [tid]
    task = await registry.get(tid)
    assert task.state == State.PENDING and task.retry_count == 1
    assert task.error_log[-1]["error"].startswith("lease expired")
    types = [(e.type, e.from_state, e.to_state) for e in await registry.events(tid)][-2:]
    assert types == [("lease_expired", State.ACTIVE, State.FAILED), ("retried", State.FAILED, State.PENDING)]
    # backoff: not claimable until not_before
    assert await registry.claim(actor="agent-b") is None
    clock.advance(task.not_before - clock() + 0.001)
    second = await registry.claim(actor="agent-b")
    assert second.task.id == tid
    assert second.task.checkpoint_data == {"done_pages": 40}
    assert second.task.checkpoint_note == "half way" and second.task.progress == 50
    await registry.start(tid, second.lease, actor="agent-b")
    done = await registry.complete(tid, second.lease, result="all pages", actor="agent-b")
    assert done.state == State.DONE and done.assignee == "agent-b"


async def test_claim_reaps_before_choosing(registry, clock):
    tid = (await registry.create_tasks([{"title": "x"}])).ids[0]
    await registry.claim(tid, lease_seconds=30, actor="agent-a")
    clock.advance(31)
    claim = await registry.claim(actor="agent-b")  # no explicit reap
    assert claim is not None and claim.task.id == tid and claim.task.assignee == "agent-b"


async def test_stale_lease_is_refused_even_under_the_same_agent_name(registry, clock):
    tid = (await registry.create_tasks([{"title": "x"}])).ids[0]
    old = await registry.claim(tid, lease_seconds=30, actor="worker")
    clock.advance(31)
    await registry.reap()
    new = await registry.claim(tid, actor="worker")  # same name, e.g. a second process
    assert new.lease != old.lease
    for call in (
        lambda: registry.start(tid, old.lease, actor="worker"),
        lambda: registry.release(tid, old.lease, actor="worker"),
    ):
        with pytest.raises(LeaseError, match="not the current lease") as info:
            await call()
        assert info.value.state == State.ASSIGNED
    await registry.start(tid, new.lease, actor="worker")
    for call in (
        lambda: registry.checkpoint(tid, old.lease, data={"x": 1}, actor="worker"),
        lambda: registry.complete(tid, old.lease, result="stale", actor="worker"),
        lambda: registry.fail(tid, old.lease, "stale", actor="worker"),
        lambda: registry.pause(tid, old.lease, "stale", actor="worker"),
    ):
        with pytest.raises(LeaseError):
            await call()
    task = await registry.get(tid)
    assert task.state == State.ACTIVE and task.checkpoint_data is None and task.result is None


async def test_foreign_and_missing_tokens_are_refused(registry):
    a, b = (await registry.create_tasks([{"title": "a"}, {"title": "b"}])).ids
    la = await registry.claim(a, actor="agent-a")
    lb = await registry.claim(b, actor="agent-b")
    with pytest.raises(LeaseError, match="held by agent-a"):
        await registry.start(a, lb.lease, actor="agent-b")
    with pytest.raises(InvalidInput, match="lease"):
        await registry.start(a, "", actor="agent-a")
    await registry.start(a, la.lease, actor="agent-a")


async def test_expired_but_unreaped_lease_is_refused(registry, clock):
    tid = (await registry.create_tasks([{"title": "x"}])).ids[0]
    claim = await registry.claim(tid, lease_seconds=30)
    await registry.start(tid, claim.lease)
    clock.advance(31)
    with pytest.raises(LeaseError, match="expired"):
        await registry.complete(tid, claim.lease, result="late")
    assert (await registry.get(tid)).state == State.ACTIVE  # nothing changed; the reaper will act


async def test_checkpoint_and_start_renew_the_lease(registry, clock):
    tid = (await registry.create_tasks([{"title": "x"}])).ids[0]
    claim = await registry.claim(tid, lease_seconds=60)
    clock.advance(50)
    task = await registry.start(tid, claim.lease)
    assert task.lease_expires_at == clock() + 60
    for _ in range(5):
        clock.advance(50)
        await registry.checkpoint(tid, claim.lease, note="still here")
        assert await registry.reap() == []
    clock.advance(61)
    assert await registry.reap() == [tid]


async def test_paused_tasks_hold_no_running_lease(registry, clock):
    tid = (await registry.create_tasks([{"title": "x"}])).ids[0]
    claim = await registry.claim(tid, lease_seconds=30)
    await registry.start(tid, claim.lease)
    paused = await registry.pause(tid, claim.lease, "waiting for a human")
    assert paused.lease_expires_at is None
    clock.advance(10_000)
    assert await registry.reap() == []
    resumed = await registry.resume(tid, claim.lease)
    assert resumed.state == State.ACTIVE and resumed.lease_expires_at == clock() + 30


async def test_retries_run_out_into_the_dead_letter_set(registry, clock):
    tid = (await registry.create_tasks([{"title": "x", "max_retries": 2}])).ids[0]
    for attempt in range(3):
        clock.advance(1000)  # past any backoff
        claim = await registry.claim(tid)
        await registry.start(tid, claim.lease)
        task = await registry.fail(tid, claim.lease, f"attempt {attempt} failed")
    assert task.state == State.FAILED and task.retry_count == 2
    assert [e["attempt"] for e in task.error_log] == [1, 2, 3]
    clock.advance(1000)
    assert await registry.claim() is None
    # by hand: one more attempt, immediately
    again = await registry.retry(tid)
    assert again.state == State.PENDING and again.not_before is None
    assert (await registry.claim()).task.id == tid


async def test_non_retryable_failure_dead_letters_at_once(registry):
    tid = (await registry.create_tasks([{"title": "x"}])).ids[0]
    claim = await registry.claim(tid)
    await registry.start(tid, claim.lease)
    task = await registry.fail(tid, claim.lease, "input is invalid", retryable=False)
    assert task.state == State.FAILED and task.retry_count == 0


def test_backoff_is_capped_exponential_with_jitter():
    policy = Policy(backoff_base=2.0, backoff_cap=20.0)
    rng = random.Random(1)
    for n in range(1, 12):
        step = min(20.0, 2.0 * 2 ** (n - 1))
        delays = [backoff(n, policy, rng) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert max(delays) - min(delays) > step / 4  # jitter spreads retries


async def test_lease_length_bounds(registry):
    tid = (await registry.create_tasks([{"title": "x"}])).ids[0]
    with pytest.raises(InvalidInput, match="lease_seconds"):
        await registry.claim(tid, lease_seconds=1)
    with pytest.raises(InvalidInput, match="lease_seconds"):
        await registry.claim(tid, lease_seconds=10**9)
    claim = await registry.claim(tid)
    assert claim.lease_expires_at - claim.task.assigned_at == registry.policy.lease_seconds


async def test_concurrent_reapers_reap_each_task_once(make_registry, clock):
    regs = [await make_registry() for _ in range(3)]
    ids = (await regs[0].create_tasks([{"title": f"t{i}"} for i in range(30)])).ids
    for tid in ids:
        await regs[0].claim(tid, lease_seconds=10)
    clock.advance(11)
    results = await asyncio.gather(*(r.reap() for r in regs))
    reaped = [tid for res in results for tid in res]
    assert sorted(reaped) == sorted(ids)
    for tid in ids:
        expiries = [e for e in await regs[0].events(tid) if e.type == "lease_expired"]
        assert len(expiries) == 1
