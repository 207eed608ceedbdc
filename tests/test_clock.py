"""Wall-clock steps: when the clock steps back, recorded durations stay non-negative, a retry
backoff never waits longer than its cap, and an abandoned lease is not held for the length of the
step. (Every process on a host reads the same wall clock; the registry assumes that.)"""

from __future__ import annotations

from mcp_tasks import Policy, State

from .helpers import drive_to

HOUR = 3600.0


async def test_durations_are_never_negative_after_a_backward_step(registry, clock):
    tid = (await registry.create_tasks([{"title": "spans a step"}])).ids[0]
    clock.advance(30)
    claim = await registry.claim(tid)
    assert claim is not None
    await registry.start(tid, claim.lease)
    clock.advance(-HOUR)  # the host's clock is corrected by an hour while the work runs
    await registry.checkpoint(tid, claim.lease, data={"step": 1})
    done = await registry.complete(tid, claim.lease)
    assert done.state == State.DONE
    assert done.wait_time is not None and done.work_time is not None and done.cycle_time is not None
    assert done.wait_time >= 0 and done.work_time == 0 and done.cycle_time == 0
    assert await registry.verify() == []


async def test_a_retry_backoff_never_waits_longer_than_its_cap(make_registry, clock):
    policy = Policy(backoff_base=2.0, backoff_cap=300.0)
    reg = await make_registry(policy)
    tid, lease = await drive_to(reg, State.ACTIVE)
    await reg.fail(tid, lease, "flaky", retryable=True)  # back to PENDING after a backoff of 1-2 s
    clock.advance(-HOUR)
    _, ready, _ = await reg.get_with_context(tid)
    assert not ready.ready and "claimable in 36" in ready.reason  # the step shows until the reaper runs
    await reg.reap()
    task, ready, events = await reg.get_with_context(tid, events=1)
    assert task.not_before is not None and task.not_before - clock() <= policy.backoff_cap
    assert events[-1].type == "clock_corrected" and events[-1].actor == "reaper"
    clock.advance(policy.backoff_cap)
    claim = await reg.claim(tid)
    assert claim is not None and claim.task.id == tid
    assert await reg.verify() == []


async def test_an_abandoned_lease_is_not_held_for_the_length_of_a_step(registry, clock):
    tid = (await registry.create_tasks([{"title": "claimed, then its agent died"}])).ids[0]
    claim = await registry.claim(tid, lease_seconds=600)
    assert claim is not None
    clock.advance(-HOUR)
    assert await registry.reap() == []  # brought back to one lease length from now, not expired
    task = await registry.get(tid)
    assert task.state == State.ASSIGNED and task.lease_expires_at is not None
    assert task.lease_expires_at - clock() <= 600
    clock.advance(601)
    assert await registry.reap() == [tid]
    assert (await registry.get(tid)).state == State.PENDING
    assert await registry.verify() == []


async def test_a_live_agent_keeps_its_lease_through_a_step(registry, clock):
    tid, lease = await drive_to(registry, State.ACTIVE)
    clock.advance(-HOUR)
    await registry.reap()
    clock.advance(300)
    await registry.checkpoint(tid, lease, data={"still": "working"})  # the heartbeat renews as usual
    clock.advance(500)
    assert await registry.reap() == []
    assert (await registry.complete(tid, lease)).state == State.DONE
