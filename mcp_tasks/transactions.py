"""The agents' and reviewers' operations as synchronous transaction scripts over `WriteTx` (the
planners' are in planning.py).

Each script runs inside one database transaction (Store.write) on the store's thread: it reads
what it needs, decides by the rules, writes each change as a compare-and-set of the row plus
its event, and returns. Raising anywhere rolls the whole transaction back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel

from .errors import (
    Forbidden,
    InvalidTransition,
    LeaseError,
    NotReady,
    TaskNotFound,
    VersionConflict,
)
from .ids import lease_hash, new_lease_token
from .models import Claim, Task, Usage
from .rules import Policy, append_error, backoff, done_times, error_entry, readiness
from .states import (
    CANCEL_HELD_STATES,
    HELD_STATES,
    LEASED_STATES,
    STATE_BOUND_ACTIONS,
    State,
    is_edge,
    targets,
)
from .stores.base import WriteTx
from .telemetry import Appended

REAPER = "reaper"

# How a lease ends (Task.lease_end), by the action or event that ended it.
COMPLETED, FAILED, RELEASED, EXPIRED, CANCELLED, FORCED = (
    "completed", "failed", "released", "expired", "cancelled", "forced")
# A lease that ended by this action answers a repeat of the action as the first call did.
LEASE_ENDED_BY = {"complete": COMPLETED, "fail": FAILED, "release": RELEASED}
# A holding lease whose task is already where this action leads answers a repeat of it likewise.
REPEATED_INTO: dict[str, tuple[State, ...]] = {
    "start": (State.ACTIVE,), "resume": (State.ACTIVE,), "pause": (State.PAUSED,),
    "complete": (State.REVIEW, State.APPROVED),
}


def _ended(task: Task) -> str:
    """Why a late call by the task's ended lease is refused, and what to do instead."""
    cancelled = "the task was cancelled"
    if task.error_log and task.error_log[-1].get("cancelled"):  # started work, cancelled by an admin
        cancelled = task.error_log[-1]["error"]
    how = {
        COMPLETED: f"you completed it; it is {task.state.value} now, so there is nothing more to do with it",
        FAILED: f"it was failed with that lease; it is {task.state.value} now",
        RELEASED: f"it was released; it is {task.state.value} now",
        EXPIRED: f"it expired without a heartbeat and the task went back to the queue; it is {task.state.value} now",
        CANCELLED: cancelled,
        FORCED: f"an admin took the task back from you; it is {task.state.value} now",
    }.get(task.lease_end or "", f"it ended ({task.lease_end})")
    return f"your lease on {task.id} has ended: {how}. Stop working on it; claim again for more work"


def _jsonable(value: Any) -> Any:
    if isinstance(value, State):
        return value.value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


@dataclass
class Tx:
    """One running transaction: the store handle plus who acts, when, and what changed."""

    tx: WriteTx
    now: float
    actor: str
    policy: Policy
    rng: random.Random
    changed: set[str] = field(default_factory=set)
    appended: list[Appended] = field(default_factory=list)  # this call's events, for its trace and metrics

    def append(
        self, task_id: str, event: str, from_state: State | None, to_state: State | None, data: dict[str, Any],
        actor: str | None = None,
    ) -> None:
        """Append one event to the log (the one place events are written) and note the task as changed."""
        self.tx.append_event(task_id, event, from_state, to_state, actor or self.actor, self.now, data)
        self.appended.append(Appended(task_id, event, from_state, to_state, data))
        self.changed.add(task_id)

    # ---- the one way any task changes
    def change(
        self,
        task: Task,
        to_state: State | None,
        event: str,
        fields: dict[str, Any],
        info: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> Task:
        """Apply `fields` (and a move to `to_state`) as a compare-and-set plus one event."""
        if to_state is not None and not is_edge(task.state, to_state):
            raise AssertionError(f"{task.state} -> {to_state} is not in the transition table")
        new_state = task.state if to_state is None else to_state
        new = task.model_copy(
            update={**fields, "state": new_state, "version": task.version + 1, "updated_at": self.now}
        )
        if not self.tx.update_task(new, task.version, task.state):
            current = self.tx.get_task(task.id)
            raise VersionConflict(
                "the task changed while this call ran; read it again and retry",
                task_id=task.id,
                state=current.state if current else None,
                current_version=current.version if current else None,
            )
        data: dict[str, Any] = {"set": {k: _jsonable(v) for k, v in fields.items()}}
        if info:
            data.update(info)
        self.append(task.id, event, task.state, to_state, data, actor)
        if new_state == State.DONE:
            self._unblock_dependents(task.id)
        return new

    def _unblock_dependents(self, done_id: str) -> None:
        for dep_id in self.tx.dependents(done_id):
            dependent = self.tx.get_task(dep_id)
            if dependent is None:  # pragma: no cover - foreign keys prevent it
                continue
            self.change(
                dependent, None, "dependency_done",
                {"unmet_deps": dependent.unmet_deps - 1}, {"dependency": done_id},
            )

    # ---- lookups and guards
    def load(self, task_id: str) -> Task:
        task = self.tx.get_task(task_id)
        if task is None:
            raise TaskNotFound(f"no task has id {task_id}; find_tasks or list_available show existing ids")
        return task

    def require(self, task: Task, action: str) -> None:
        """Refuse `action` unless the table (or a state-bound action) allows it now."""
        bound = STATE_BOUND_ACTIONS.get(action)
        ok = task.state in bound if bound is not None else bool(targets(task.state, action))
        if not ok:
            raise InvalidTransition(f"cannot {action} {task.id}", task_id=task.id, state=task.state)

    def check_lease(self, task: Task, action: str, lease: str) -> bool:
        """Fencing: `lease` must be the task's latest lease, still holding, and the state must allow
        `action`. Returns True when this lease already did `action` (a repeat after a lost answer):
        the caller then answers with the task as it is and changes nothing.

        The lease is checked first: a caller whose lease is not current has lost the task, and
        needs to hear that rather than which moves the task's new holder could make.
        """
        if task.lease_hash is None or lease_hash(lease) != task.lease_hash:
            holder = f", held by {task.assignee}" if task.assignee and task.state in HELD_STATES else ""
            raise LeaseError(
                f"the lease token is not the current lease on {task.id} (it is {task.state.value} now{holder}); "
                "only the lease from the latest claim counts. If it was yours, the task is no longer yours: "
                "stop working on it and claim again",
                task_id=task.id, state=task.state,
            )
        if task.lease_end is not None:
            if LEASE_ENDED_BY.get(action) == task.lease_end:
                return True
            raise LeaseError(_ended(task), task_id=task.id, state=task.state, lease_end=task.lease_end)
        if task.state in REPEATED_INTO.get(action, ()):
            return True
        self.require(task, action)
        if task.state in LEASED_STATES and task.lease_expires_at is not None and task.lease_expires_at <= self.now:
            raise LeaseError(
                f"your lease on {task.id} expired {self.now - task.lease_expires_at:.0f}s ago; the task goes "
                "back to the queue. Claim it again (its checkpoint is kept) and checkpoint more often",
                task_id=task.id, state=task.state,
            )
        return False

    def lease_length(self, task: Task) -> float:
        return task.lease_seconds or self.policy.lease_seconds


# ---------------------------------------------------------------- claiming and working


def undo_clock_steps(t: Tx, limit: int) -> list[str]:
    """Times set by a clock that has since stepped back lie too far ahead: a lease that expires
    later than its length from now, a retry backoff that ends later than the longest backoff. Bring
    them back to at most that, so an abandoned lease or a backoff never waits out the step too."""
    p = t.policy
    fixed = []
    for task in t.tx.leases_from_the_future(t.now, p.lease_min, p.lease_seconds, limit):
        new = t.now + t.lease_length(task)
        info = {"clock_stepped_back": True, "was": task.lease_expires_at}
        t.change(task, None, "clock_corrected", {"lease_expires_at": new}, info, actor=REAPER)
        fixed.append(task.id)
    for task in t.tx.backoffs_from_the_future(t.now, p.backoff_cap, limit):
        info = {"clock_stepped_back": True, "was": task.not_before}
        t.change(task, None, "clock_corrected", {"not_before": t.now + p.backoff_cap}, info, actor=REAPER)
        fixed.append(task.id)
    return fixed


def reap(t: Tx, limit: int) -> list[str]:
    """Expire leases that ran out: ASSIGNED -> PENDING; ACTIVE -> FAILED, then the retry rule."""
    reaped = []
    for task in t.tx.expired_leases(t.now, limit):
        holder = task.assignee
        info = {"holder": holder, "lease_expires_at": task.lease_expires_at}
        if task.state == State.ASSIGNED:
            t.change(task, State.PENDING, "lease_expired", {**_unassigned(), "lease_end": EXPIRED}, info, actor=REAPER)
        else:
            entry = error_entry(t.now, f"lease expired (held by {holder})", task.retry_count + 1, True, REAPER)
            failed = t.change(
                task, State.FAILED, "lease_expired",
                {"error_log": append_error(task.error_log, entry), "lease_expires_at": None, "lease_end": EXPIRED},
                info, actor=REAPER,
            )
            _retry_or_dead_letter(t, failed, retryable=True, actor=REAPER, holder=holder)
        reaped.append(task.id)
    return reaped


def force_release(t: Tx, task_id: str, reason: str) -> Task:
    """An admin takes held work back (from a dead agent, say): ASSIGNED -> PENDING; ACTIVE -> FAILED,
    then the retry rule, as when its lease expires. The holder's next call hears who ended its lease."""
    task = t.load(task_id)
    if task.state not in LEASED_STATES:
        raise InvalidTransition(f"cannot force-release {task.id}: only ASSIGNED or ACTIVE work is held by a running "
                                "lease", task_id=task.id, state=task.state)
    holder = task.assignee
    info = {"holder": holder, "reason": reason}
    if task.state == State.ASSIGNED:
        return t.change(task, State.PENDING, "force_released", {**_unassigned(), "lease_end": FORCED}, info)
    entry = error_entry(t.now, f"taken back by {t.actor}: {reason}", task.retry_count + 1, True, t.actor)
    failed = t.change(
        task, State.FAILED, "force_released",
        {"error_log": append_error(task.error_log, entry), "lease_expires_at": None, "lease_end": FORCED}, info,
    )
    return _retry_or_dead_letter(t, failed, retryable=True, holder=holder)


def _unassigned() -> dict[str, Any]:
    """The task belongs to nobody; its latest lease_hash stays, to recognise that lease's late calls."""
    return {"assignee": None, "lease_expires_at": None, "lease_seconds": None}


def _retry_or_dead_letter(
    t: Tx, task: Task, retryable: bool, actor: str | None = None, holder: str | None = None
) -> Task:
    """Requeue after a backoff while retries are left; `holder` is whose attempt failed (metrics)."""
    if not retryable or task.retry_count >= task.max_retries:
        return task  # stays FAILED: a dead letter
    count = task.retry_count + 1
    delay = backoff(count, t.policy, t.rng)
    fields = {"retry_count": count, "not_before": t.now + delay, **_unassigned()}
    info = {"auto": True, "backoff": delay, "holder": holder or actor or t.actor}
    return t.change(task, State.PENDING, "retried", fields, info, actor=actor)


def claim(
    t: Tx, task_id: str | None, caps: list[str] | None, tags: list[str] | None, lease_seconds: float | None,
    and_start: bool = False,
) -> Claim | None:
    """Claim a named task, or the best ready one matching the filters; None when nothing is ready.
    `and_start`: start it too, as `start` would with the new lease (events claimed, then started)."""
    reap(t, t.policy.reap_batch)
    if task_id is not None:
        task = t.load(task_id)
        t.require(task, "claim")
        ready = readiness(task, t.tx.dependency_states(task.id), t.now)
        if not ready.ready:
            raise NotReady(
                f"cannot claim {task.id} yet: {ready.reason}", task_id=task.id, state=task.state,
                allowed=["list_available"], waiting_on=ready.waiting_on, failed_deps=ready.failed_deps,
            )
    else:
        best = t.tx.next_ready(t.now, caps, tags)
        if best is None:
            return None
        task = best
    length = lease_seconds or t.policy.lease_seconds
    token = new_lease_token()
    expires = t.now + length
    fields = {
        "assignee": t.actor, "assigned_at": t.now, "lease_hash": lease_hash(token),
        "lease_expires_at": expires, "lease_seconds": length, "not_before": None, "lease_end": None,
    }
    new = t.change(task, State.ASSIGNED, "claimed", fields, {"lease_seconds": length})
    if and_start:
        new = _start(t, new, token)
    return Claim(task=new, lease=token, lease_expires_at=expires)


def start(t: Tx, task_id: str, lease: str) -> Task:
    """ASSIGNED -> ACTIVE by the task's current lease; renews the lease."""
    return _start(t, t.load(task_id), lease)


def _start(t: Tx, task: Task, lease: str) -> Task:
    if t.check_lease(task, "start", lease):
        return task
    fields = {"started_at": task.started_at or t.now, "lease_expires_at": t.now + t.lease_length(task)}
    return t.change(task, State.ACTIVE, "started", fields)


def checkpoint(t: Tx, task_id: str, lease: str, data: Any, note: str | None, progress: int | None) -> Task:
    """Save progress and renew the lease (a checkpoint is also the heartbeat)."""
    task = t.load(task_id)
    t.check_lease(task, "checkpoint", lease)
    fields: dict[str, Any] = {"checkpoint_timestamp": t.now, "lease_expires_at": t.now + t.lease_length(task)}
    if data is not None:
        fields["checkpoint_data"] = data
    if note is not None:
        fields["checkpoint_note"] = note
    if progress is not None:
        fields["progress"] = progress
    return t.change(task, None, "checkpoint", fields)


def complete(t: Tx, task_id: str, lease: str, result: Any, artifacts: list[str], usage: Usage | None) -> Task:
    """Finish the work: DONE, or REVIEW when the task requires review."""
    task = t.load(task_id)
    if t.check_lease(task, "complete", lease):
        return task
    fields: dict[str, Any] = {
        "result": result, "artifacts": artifacts, "completed_at": t.now, "lease_expires_at": None,
    }
    if usage is not None:
        fields["usage"] = Usage(
            tokens=task.usage.tokens + usage.tokens,
            api_calls=task.usage.api_calls + usage.api_calls,
            cost=task.usage.cost + usage.cost,
        )
    if task.requires_review:
        return t.change(task, State.REVIEW, "completed", fields, {"review": True})
    fields.update(done_times(task, t.now), lease_end=COMPLETED)
    return t.change(task, State.DONE, "completed", fields)


def fail(t: Tx, task_id: str, lease: str, error: str, retryable: bool) -> Task:
    """Record a failure; retry after a backoff while retries are left, else dead-letter."""
    task = t.load(task_id)
    if t.check_lease(task, "fail", lease):
        return task
    entry = error_entry(t.now, error, task.retry_count + 1, retryable, t.actor)
    fields = {"error_log": append_error(task.error_log, entry), "lease_expires_at": None, "lease_end": FAILED}
    failed = t.change(task, State.FAILED, "failed", fields, {"retryable": retryable})
    return _retry_or_dead_letter(t, failed, retryable)


def pause(t: Tx, task_id: str, lease: str, reason: str) -> Task:
    task = t.load(task_id)
    if t.check_lease(task, "pause", lease):
        return task
    return t.change(task, State.PAUSED, "paused", {"lease_expires_at": None}, {"reason": reason})


def resume(t: Tx, task_id: str, lease: str) -> Task:
    task = t.load(task_id)
    if t.check_lease(task, "resume", lease):
        return task
    return t.change(task, State.ACTIVE, "resumed", {"lease_expires_at": t.now + t.lease_length(task)})


def release(t: Tx, task_id: str, lease: str, reason: str | None) -> Task:
    task = t.load(task_id)
    if t.check_lease(task, "release", lease):
        return task
    fields = {**_unassigned(), "lease_end": RELEASED}
    return t.change(task, State.PENDING, "released", fields, {"reason": reason} if reason else None)


# ---------------------------------------------------------------- people and planners


def review(t: Tx, task_id: str, approve: bool, comment: str | None) -> Task:
    """Approve (REVIEW -> APPROVED -> DONE) or request changes (REVIEW -> ACTIVE, same lease)."""
    task = t.load(task_id)
    t.require(task, "review")
    if task.assignee == t.actor:
        raise Forbidden(
            f"{t.actor} did the work on {task.id} and cannot review it; another agent or a person must",
            task_id=task.id, state=task.state,
        )
    info = {"comment": comment} if comment else None
    if not approve:
        fields = {"reviewer": t.actor, "completed_at": None, "lease_expires_at": t.now + t.lease_length(task)}
        return t.change(task, State.ACTIVE, "changes_requested", fields, info)
    approved = t.change(task, State.APPROVED, "approved", {"reviewer": t.actor}, info)
    done_at = approved.completed_at or t.now
    fields = {**done_times(approved, done_at), "lease_end": COMPLETED}
    return t.change(approved, State.DONE, "completed", fields)


def cancel(t: Tx, task_id: str, reason: str, expected_version: int | None, authorize_held: Callable[[], object]) -> Task:
    """Cancel the task; `authorize_held()` refuses a caller who may not cancel work its holder has
    started (CANCEL_HELD_STATES). The holder's next call hears who cancelled it and why."""
    task = t.load(task_id)
    check_version(task, expected_version)
    t.require(task, "cancel")
    fields: dict[str, Any] = {"lease_expires_at": None}
    if task.state in CANCEL_HELD_STATES:
        authorize_held()
        entry = {**error_entry(t.now, f"{t.actor} cancelled the task ({reason})", task.retry_count + 1, False, t.actor),
                 "cancelled": True}
        fields["error_log"] = append_error(task.error_log, entry)
    if task.lease_hash is not None and task.lease_end is None:
        fields["lease_end"] = CANCELLED
    return t.change(task, State.CANCELLED, "cancelled", fields, {"reason": reason})


def retry(t: Tx, task_id: str) -> Task:
    """Put a dead-lettered task back in the queue for one more attempt, now."""
    task = t.load(task_id)
    t.require(task, "retry")
    fields = {"retry_count": task.retry_count + 1, "not_before": None, **_unassigned()}
    return t.change(task, State.PENDING, "retried", fields, {"auto": False})


def check_version(task: Task, expected: int | None) -> None:
    """Refuse when the caller's expected_version is not the task's version (compare-and-set edits)."""
    if expected is not None and expected != task.version:
        raise VersionConflict(
            f"expected version {expected} but {task.id} is at version {task.version}; "
            "someone changed it first. Read it again, then decide",
            task_id=task.id, state=task.state, current_version=task.version,
        )


