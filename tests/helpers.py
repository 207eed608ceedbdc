"""Test helpers: a controllable clock and a way to put a task into any state."""

from __future__ import annotations

from mcp_tasks import Registry, State


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


async def drive_to(reg: Registry, state: State, *, review: bool = False, title: str = "task") -> tuple[str, str | None]:
    """Create a task and move it into `state` through the public API. Returns (id, lease)."""
    if state == State.REVIEW:
        review = True
    spec = {"title": title, "requires_review": review, "max_retries": 0 if state == State.FAILED else 3}
    created = await reg.create_tasks([spec], ready=state != State.BACKLOG)
    tid = created.ids[0]
    if state in (State.BACKLOG, State.PENDING):
        return tid, None
    if state == State.CANCELLED:
        await reg.cancel(tid, "not needed")
        return tid, None
    claim = await reg.claim(tid)
    assert claim is not None
    lease = claim.lease
    if state == State.ASSIGNED:
        return tid, lease
    await reg.start(tid, lease)
    if state == State.ACTIVE:
        return tid, lease
    if state == State.PAUSED:
        await reg.pause(tid, lease, "waiting for input")
    elif state == State.REVIEW:
        await reg.complete(tid, lease, result="draft")
    elif state == State.DONE:
        await reg.complete(tid, lease, result="done")
    elif state == State.FAILED:
        await reg.fail(tid, lease, "broken", retryable=False)
    else:
        raise AssertionError(f"cannot drive a task to {state}")
    assert (await reg.get(tid)).state == state
    return tid, lease
