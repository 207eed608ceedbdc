"""The transition table: exactly the designed edges, each one usable, every other move refused."""

from __future__ import annotations

import pytest

from mcp_tasks import State
from mcp_tasks.errors import InvalidTransition, LeaseError, RoleRequired, TaskError
from mcp_tasks.models import Caller, Task
from mcp_tasks.states import EDGES, Role, State as S, allowed_actions, render_markdown
from mcp_tasks.transactions import Tx

from .helpers import drive_to

# DESIGN 2: the source table kept whole, plus exactly the listed extensions.
DESIGNED = {
    (S.BACKLOG, S.PENDING), (S.PENDING, S.ASSIGNED), (S.PENDING, S.CANCELLED),
    (S.ASSIGNED, S.ACTIVE), (S.ASSIGNED, S.CANCELLED), (S.ACTIVE, S.DONE), (S.ACTIVE, S.FAILED),
    (S.ACTIVE, S.PAUSED), (S.PAUSED, S.ACTIVE), (S.PAUSED, S.CANCELLED), (S.FAILED, S.PENDING),
    # extensions
    (S.ASSIGNED, S.PENDING), (S.ACTIVE, S.REVIEW), (S.REVIEW, S.APPROVED), (S.APPROVED, S.DONE),
    (S.REVIEW, S.ACTIVE), (S.BACKLOG, S.CANCELLED), (S.FAILED, S.CANCELLED), (S.ACTIVE, S.CANCELLED),
}

ACTIONS = {
    "schedule": lambda reg, tid, lease: reg.schedule([tid]),
    "claim": lambda reg, tid, lease: reg.claim(tid, actor="agent-b"),
    "start": lambda reg, tid, lease: reg.start(tid, lease or "no-lease"),
    "checkpoint": lambda reg, tid, lease: reg.checkpoint(tid, lease or "no-lease", data={"step": 1}),
    "complete": lambda reg, tid, lease: reg.complete(tid, lease or "no-lease", result="r"),
    "fail": lambda reg, tid, lease: reg.fail(tid, lease or "no-lease", "boom"),
    "pause": lambda reg, tid, lease: reg.pause(tid, lease or "no-lease", "waiting"),
    "resume": lambda reg, tid, lease: reg.resume(tid, lease or "no-lease"),
    "release": lambda reg, tid, lease: reg.release(tid, lease or "no-lease"),
    "cancel": lambda reg, tid, lease: reg.cancel(tid, "not needed"),
    "retry": lambda reg, tid, lease: reg.retry(tid),
    "review": lambda reg, tid, lease: reg.review(tid, True, actor="reviewer"),
    "update_task": lambda reg, tid, lease: reg.update(tid, title="renamed"),
}
OBSERVABLE = [s for s in State if s != State.APPROVED]  # approval moves straight on to DONE


def test_table_is_exactly_the_design():
    assert {(e.source, e.target) for e in EDGES} == DESIGNED
    assert len(EDGES) == len(DESIGNED)


def test_table_renders_every_edge():
    text = render_markdown()
    for e in EDGES:
        assert f"| {e.source} | {e.action} | {e.target} |" in text


@pytest.mark.parametrize(
    ("start_state", "action", "review", "expected"),
    [
        (S.BACKLOG, "schedule", False, S.PENDING),
        (S.BACKLOG, "cancel", False, S.CANCELLED),
        (S.PENDING, "claim", False, S.ASSIGNED),
        (S.PENDING, "cancel", False, S.CANCELLED),
        (S.ASSIGNED, "start", False, S.ACTIVE),
        (S.ASSIGNED, "cancel", False, S.CANCELLED),
        (S.ASSIGNED, "release", False, S.PENDING),
        (S.ACTIVE, "complete", False, S.DONE),
        (S.ACTIVE, "complete", True, S.REVIEW),
        (S.ACTIVE, "pause", False, S.PAUSED),
        (S.ACTIVE, "cancel", False, S.CANCELLED),
        (S.PAUSED, "resume", False, S.ACTIVE),
        (S.PAUSED, "cancel", False, S.CANCELLED),
        (S.FAILED, "retry", False, S.PENDING),
        (S.FAILED, "cancel", False, S.CANCELLED),
        (S.REVIEW, "review", True, S.DONE),
    ],
)
async def test_every_allowed_action_moves_along_its_edge(registry, start_state, action, review, expected):
    tid, lease = await drive_to(registry, start_state, review=review)
    await ACTIONS[action](registry, tid, lease)
    assert (await registry.get(tid)).state == expected


async def test_fail_edge_then_automatic_retry_edge(registry):
    tid, lease = await drive_to(registry, S.ACTIVE)
    task = await registry.fail(tid, lease, "flaky network", retryable=True)
    assert task.state == S.PENDING and task.retry_count == 1
    moves = [(e.from_state, e.to_state) for e in await registry.events(tid) if e.to_state]
    assert moves[-2:] == [(S.ACTIVE, S.FAILED), (S.FAILED, S.PENDING)]


async def test_request_changes_returns_work_to_the_assignee(registry):
    tid, lease = await drive_to(registry, S.REVIEW)
    task = await registry.review(tid, False, "add tests", actor="reviewer")
    assert task.state == S.ACTIVE and task.reviewer == "reviewer"
    # the assignee continues with the same lease
    assert (await registry.complete(tid, lease, result="v2")).state == S.REVIEW


async def test_approval_passes_through_approved(registry):
    tid, _ = await drive_to(registry, S.REVIEW)
    await registry.review(tid, True, "looks right", actor="reviewer")
    moves = [(e.type, e.from_state, e.to_state) for e in await registry.events(tid)][-2:]
    assert moves == [("approved", S.REVIEW, S.APPROVED), ("completed", S.APPROVED, S.DONE)]


async def test_every_edge_is_exercised_by_the_api(registry):
    """Drive tasks through every edge and read the moves back from the event log."""
    seen: set[tuple[State, State]] = set()

    async def collect(tid: str) -> None:
        seen.update((e.from_state, e.to_state) for e in await registry.events(tid) if e.to_state and e.from_state)

    for state in OBSERVABLE:
        tid, _ = await drive_to(registry, state)
        await collect(tid)
    for action, state in [("schedule", S.BACKLOG), ("cancel", S.BACKLOG), ("cancel", S.PENDING),
                          ("cancel", S.ASSIGNED), ("release", S.ASSIGNED), ("resume", S.PAUSED),
                          ("cancel", S.PAUSED), ("retry", S.FAILED), ("cancel", S.FAILED), ("cancel", S.ACTIVE)]:
        tid, lease = await drive_to(registry, state)
        await ACTIONS[action](registry, tid, lease)
        await collect(tid)
    tid, lease = await drive_to(registry, S.REVIEW)
    await registry.review(tid, False, actor="reviewer")
    await registry.complete(tid, lease)
    await registry.review(tid, True, actor="reviewer")
    await collect(tid)
    tid, lease = await drive_to(registry, S.ACTIVE)
    await registry.fail(tid, lease, "x")
    await collect(tid)
    assert seen == DESIGNED


@pytest.mark.parametrize("state", [S.ACTIVE, S.PAUSED])
async def test_an_admin_stops_started_work_and_its_holder_hears_why(registry, state):
    """A planner may not cancel work its holder has started (the refusal names the admin role and
    changes nothing); an admin may, and the holder's next call is refused with who and why."""
    tid, lease = await drive_to(registry, state)
    planner = Caller("pat", "pat", Role.PLANNER)
    with pytest.raises(RoleRequired) as info:
        await registry.cancel(tid, "scope changed", actor=planner)
    assert info.value.data["role_needed"] == "admin" and "cancel_held needs the admin role" in info.value.message
    assert (await registry.get(tid)).state == state
    done = await registry.cancel(tid, "the customer withdrew", actor=Caller("ada", "ada", Role.ADMIN))
    assert done.state == S.CANCELLED
    with pytest.raises(LeaseError) as late:
        await registry.checkpoint(tid, lease, data={"step": 2})
    assert "has ended: ada cancelled the task (the customer withdrew)" in late.value.message
    assert late.value.state == S.CANCELLED and done.error_log[-1]["by"] == "ada"


async def test_a_planner_still_cancels_claimed_work_nobody_has_started(registry):
    tid, lease = await drive_to(registry, S.ASSIGNED)
    cancelled = await registry.cancel(tid, "wrong queue", actor=Caller("pat", "pat", Role.PLANNER))
    assert cancelled.state == S.CANCELLED
    with pytest.raises(LeaseError, match="has ended: the task was cancelled"):
        await registry.start(tid, lease)


LEASED = {"start", "checkpoint", "complete", "fail", "pause", "resume", "release"}
# drive_to gets a task into these states with the lease's own last action; repeating that action by
# the same lease (an agent that lost the first answer) answers with the task as it is.
REPEATS = {(S.ACTIVE, "start"), (S.ACTIVE, "resume"), (S.PAUSED, "pause"), (S.REVIEW, "complete"),
           (S.DONE, "complete"), (S.FAILED, "fail")}
# In these states the lease that brought the task there has ended (completed, failed).
ENDED = {S.DONE, S.FAILED}
NON_EDGES = [(s, a) for s in OBSERVABLE for a in ACTIONS if a not in allowed_actions(s) and (s, a) not in REPEATS]


@pytest.mark.parametrize(("state", "action"), NON_EDGES, ids=[f"{s.value}-{a}" for s, a in NON_EDGES])
async def test_every_other_action_is_refused_and_changes_nothing(registry, state, action):
    """Refused as an invalid transition; lease-bound actions by a caller without the current lease
    are refused as a lease error first (the task is not theirs), and so are calls by a lease that
    has ended (saying how it ended), naming the state all the same."""
    tid, lease = await drive_to(registry, state)
    before = await registry.get(tid)
    expected = LeaseError if action in LEASED and (lease is None or state in ENDED) else InvalidTransition
    with pytest.raises(expected) as info:
        await ACTIONS[action](registry, tid, lease)
    err = info.value
    if action in LEASED and state in ENDED:
        assert "has ended" in err.message
    assert err.task_id == tid and err.state == state
    assert err.allowed == allowed_actions(state)
    assert f"Task {tid} is {state.value}" in err.message
    if err.allowed:
        assert "allowed now: " + ", ".join(err.allowed) in err.message
    after = await registry.get(tid)
    assert after.version == before.version and after.state == state


@pytest.mark.parametrize(("state", "action"), sorted(REPEATS), ids=[f"{s.value}-{a}" for s, a in sorted(REPEATS)])
async def test_repeating_the_leases_own_last_action_answers_and_changes_nothing(registry, state, action):
    tid, lease = await drive_to(registry, state)
    before, logged = await registry.get(tid), len(await registry.events(tid))
    again = await ACTIONS[action](registry, tid, lease)
    assert again.state == state and again.version == before.version
    after = await registry.get(tid)
    assert after.version == before.version and len(await registry.events(tid)) == logged


@pytest.mark.parametrize("action", [a for a in ACTIONS if a not in allowed_actions(S.APPROVED)])
def test_guard_refuses_actions_on_approved(action):
    """APPROVED is never at rest (approval goes on to DONE); the guard still refuses its non-edges."""
    task = Task(id="t-approved01", title="x", state=S.APPROVED, created_at=0.0, created_by="a", updated_at=0.0)
    t = Tx(tx=None, now=0.0, actor="a", policy=None, rng=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidTransition) as info:
        t.require(task, action)
    assert info.value.state == S.APPROVED


def test_errors_share_one_root():
    assert issubclass(InvalidTransition, TaskError)
