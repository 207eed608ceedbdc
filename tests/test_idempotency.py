"""Safe retries by request_id and compare-and-set edits by expected_version."""

from __future__ import annotations

import pytest

from mcp_tasks import State
from mcp_tasks.errors import IdempotencyConflict, VersionConflict

from .helpers import drive_to


async def _setup(reg, state: State, review: bool = False):
    tid, lease = await drive_to(reg, state, review=review)
    return tid, lease


# op name -> (state to start from, call with args variant 0 or 1)
OPS = {
    "create_tasks": (None, lambda r, tid, lease, v, rid: r.create_tasks([{"title": f"new {v}"}], request_id=rid)),
    "schedule": (State.BACKLOG, lambda r, tid, lease, v, rid: r.schedule([tid] if v == 0 else [tid, "t-0000000000"], request_id=rid)),
    "claim": (State.PENDING, lambda r, tid, lease, v, rid: r.claim(tid, lease_seconds=60 + v, request_id=rid)),
    "claim_start": (State.PENDING, lambda r, tid, lease, v, rid: r.claim(tid, lease_seconds=60 + v, start=True, request_id=rid)),
    "start": (State.ASSIGNED, lambda r, tid, lease, v, rid: r.start(tid if v == 0 else "t-0000000000", lease, request_id=rid)),
    "checkpoint": (State.ACTIVE, lambda r, tid, lease, v, rid: r.checkpoint(tid, lease, data={"v": v}, request_id=rid)),
    "complete": (State.ACTIVE, lambda r, tid, lease, v, rid: r.complete(tid, lease, result=f"r{v}", request_id=rid)),
    "fail": (State.ACTIVE, lambda r, tid, lease, v, rid: r.fail(tid, lease, f"e{v}", request_id=rid)),
    "pause": (State.ACTIVE, lambda r, tid, lease, v, rid: r.pause(tid, lease, f"p{v}", request_id=rid)),
    "resume": (State.PAUSED, lambda r, tid, lease, v, rid: r.resume(tid if v == 0 else "t-0000000000", lease, request_id=rid)),
    "release": (State.ASSIGNED, lambda r, tid, lease, v, rid: r.release(tid, lease, f"r{v}", request_id=rid)),
    "review": (State.REVIEW, lambda r, tid, lease, v, rid: r.review(tid, v == 0, actor="reviewer", request_id=rid)),
    "cancel": (State.PENDING, lambda r, tid, lease, v, rid: r.cancel(tid, f"c{v}", request_id=rid)),
    "retry": (State.FAILED, lambda r, tid, lease, v, rid: r.retry(tid if v == 0 else "t-0000000000", request_id=rid)),
    "update": (State.PENDING, lambda r, tid, lease, v, rid: r.update(tid, title=f"renamed {v}", request_id=rid)),
}


def _dump(result):
    if result is None:
        return None
    if isinstance(result, list):
        return [x.model_dump() for x in result]
    return result.model_dump()


@pytest.mark.parametrize("op", list(OPS))
async def test_replaying_a_request_id_returns_the_first_answer_without_a_second_effect(registry, op):
    state, call = OPS[op]
    tid, lease = (None, None) if state is None else await drive_to(registry, state)
    first = await call(registry, tid, lease, 0, "req-1")
    seq = await registry.last_seq()
    counts = await registry.counts()
    again = await call(registry, tid, lease, 0, "req-1")
    assert _dump(again) == _dump(first)
    assert await registry.last_seq() == seq, "a replayed request must not append events"
    assert await registry.counts() == counts
    with pytest.raises(IdempotencyConflict, match="req-1"):
        await call(registry, tid, lease, 1, "req-1")
    assert await registry.last_seq() == seq
    assert await registry.verify() == []


async def test_claim_replay_returns_the_same_lease(registry):
    await registry.create_tasks([{"title": "a"}, {"title": "b"}])
    first = await registry.claim(request_id="c-1")
    again = await registry.claim(request_id="c-1")  # e.g. the answer was lost in a timeout
    assert again.lease == first.lease and again.task.id == first.task.id
    other = await registry.claim(request_id="c-2")
    assert other.task.id != first.task.id
    await registry.start(first.task.id, again.lease)


async def test_claim_with_start_replays_its_answer_and_differs_from_a_plain_claim(registry):
    """A repeated claim(start=True) gets the same task, lease and ACTIVE state and appends nothing;
    the same request_id for a claim without start is another request, refused; once the lease has
    ended (completed), the request_id claims anew."""
    tid, nxt = (await registry.create_tasks([{"title": "a", "priority": 9}, {"title": "b"}])).ids
    first = await registry.claim(start=True, request_id="cs-1")
    seq = await registry.last_seq()
    again = await registry.claim(start=True, request_id="cs-1")
    assert again.model_dump() == first.model_dump() and again.task.state == State.ACTIVE
    assert await registry.last_seq() == seq
    with pytest.raises(IdempotencyConflict, match="cs-1"):
        await registry.claim(request_id="cs-1")
    await registry.complete(tid, first.lease, result="ok")
    later = await registry.claim(start=True, request_id="cs-1")
    assert later.task.id == nxt and later.task.state == State.ACTIVE and later.lease != first.lease
    assert await registry.verify() == []


async def test_request_ids_are_scoped_to_the_agent(registry):
    await registry.create_tasks([{"title": "a"}, {"title": "b"}])
    a = await registry.claim(actor="agent-a", request_id="same")
    b = await registry.claim(actor="agent-b", request_id="same")
    assert a.task.id != b.task.id


async def test_the_same_request_id_for_another_operation_is_refused(registry):
    tid, lease = await drive_to(registry, State.ASSIGNED)
    await registry.start(tid, lease, request_id="shared")
    with pytest.raises(IdempotencyConflict, match="different start call"):
        await registry.checkpoint(tid, lease, note="x", request_id="shared")


async def test_a_refused_call_does_not_burn_its_request_id(registry):
    tid, lease = await drive_to(registry, State.ASSIGNED)
    with pytest.raises(Exception):
        await registry.complete(tid, lease, result="too early", request_id="r")
    await registry.start(tid, lease)
    done = await registry.complete(tid, lease, result="now", request_id="r")
    assert done.state == State.DONE


async def test_stale_expected_version_is_refused_naming_the_current_one(registry):
    tid, _ = await drive_to(registry, State.PENDING)
    task = await registry.get(tid)
    await registry.update(tid, expected_version=task.version, priority=8)
    with pytest.raises(VersionConflict) as info:
        await registry.update(tid, expected_version=task.version, title="overwrite")
    err = info.value
    assert err.data["current_version"] == task.version + 1 and err.state == State.PENDING
    assert f"is at version {task.version + 1}" in err.message
    with pytest.raises(VersionConflict):
        await registry.cancel(tid, "stale view", expected_version=task.version)
    now = await registry.get(tid)
    assert now.title == task.title and now.priority == 8 and now.state == State.PENDING


async def test_every_change_bumps_the_version(registry):
    tid, lease = await drive_to(registry, State.ACTIVE)
    versions = [(await registry.get(tid)).version]
    for _ in range(3):
        versions.append((await registry.checkpoint(tid, lease, note="tick")).version)
    assert versions == sorted(set(versions)) and versions[-1] - versions[0] == 3
    events = await registry.events(tid)
    assert len(events) == versions[-1]  # one event per version


async def test_a_replay_does_not_vouch_for_another_lease(registry):
    tid, lease = await drive_to(registry, State.ASSIGNED)
    await registry.start(tid, lease, request_id="s-1")
    with pytest.raises(IdempotencyConflict):
        await registry.start(tid, "forged-token", request_id="s-1")


async def test_an_answer_that_changed_nothing_is_remembered_too(registry):
    tid = (await registry.create_tasks([{"title": "same"}])).ids[0]
    first = await registry.update(tid, title="same", request_id="u-1")  # nothing to change
    await registry.update(tid, title="changed")
    assert (await registry.update(tid, title="same", request_id="u-1")).model_dump() == first.model_dump()
    assert (await registry.get(tid)).title == "changed"


async def test_a_claim_that_found_nothing_is_asked_again(registry):
    assert await registry.claim(request_id="c-empty") is None
    await registry.create_tasks([{"title": "arrives later"}])
    got = await registry.claim(request_id="c-empty")  # never yesterday's "nothing"
    assert got is not None and got.task.title == "arrives later"
