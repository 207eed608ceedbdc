"""What tools and resources return: compact views of domain objects (None fields are dropped).

Times are ISO 8601 UTC strings; lease tokens appear only in ClaimResult.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..models import Event, Readiness, Task, TaskSummary
from ..reports import ClaimOutlook
from ..states import State, allowed_actions
from ..display import iso


class TaskBrief(BaseModel):
    """A ready task as list_available shows it."""

    id: str
    title: str
    type: str
    priority: int
    tags: list[str] | None = None
    retry_count: int | None = None
    has_checkpoint: bool | None = None


class Available(BaseModel):
    """Ready tasks in claim order."""

    tasks: list[TaskBrief]
    next_cursor: str | None = None


class TaskRow(BaseModel):
    """One line of find_tasks."""

    id: str
    title: str
    state: str
    priority: int
    type: str
    assignee: str | None = None
    updated_at: str


class Found(BaseModel):
    """Tasks matching find_tasks filters, newest first."""

    tasks: list[TaskRow]
    next_cursor: str | None = None


class TaskStatus(BaseModel):
    """A task after a change: its state, version, and what to do next."""

    id: str
    state: str
    version: int
    lease_expires_at: str | None = None
    next: str | None = Field(None, description="What can happen to the task now")


class TaskDetail(BaseModel):
    """A whole task, as get_task and the task resource return it."""

    id: str
    title: str
    description: str | None = None
    state: str
    type: str
    priority: int
    tags: list[str] | None = None
    assignee: str | None = None
    depends_on: list[str] | None = None
    blocks: list[str] | None = None
    readiness: str | None = None
    retry_count: int
    max_retries: int
    checkpoint_data: Any = None
    checkpoint_note: str | None = None
    progress: int | None = None
    checkpoint_timestamp: str | None = None
    result: Any = None
    artifacts: list[str] | None = None
    errors: list[str] | None = Field(None, description="Latest errors, newest last")
    requires_review: bool | None = None
    reviewer: str | None = None
    lease_expires_at: str | None = None
    not_before: str | None = None
    created_at: str
    created_by: str
    updated_at: str
    wait_time: float | None = None
    work_time: float | None = None
    cycle_time: float | None = None
    usage: dict[str, int | float] | None = Field(None, description="tokens and api_calls (whole numbers), cost")
    version: int


class ClaimedTask(BaseModel):
    """What an agent needs to work on the task it claimed (get_task has the rest)."""

    id: str
    title: str
    description: str | None = None
    type: str
    tags: list[str] | None = None
    state: str
    version: int
    retry_count: int = Field(description="Earlier attempts that failed")
    errors: list[str] | None = Field(None, description="Their latest errors, newest last")
    checkpoint_data: Any = None
    checkpoint_note: str | None = None
    progress: int | None = None


class ClaimResult(BaseModel):
    """The claimed task and its lease; pass `lease` to every later call on the task."""

    task: ClaimedTask | None = None
    lease: str | None = None
    lease_expires_at: str | None = None
    message: str | None = None
    retry_after_s: float | None = None


class EventView(BaseModel):
    """One event of the log."""

    seq: int
    at: str
    task_id: str
    type: str
    actor: str
    from_state: str | None = None
    to_state: str | None = None
    data: dict[str, Any] | None = None
    error: str | None = Field(None, description="Set when the stored event cannot be read")


class TaskWithEvents(BaseModel):
    """get_task: the task and, when asked, its latest events (EventView objects)."""

    task: TaskDetail
    events: list[dict[str, Any]] | None = None


class CreatedResult(BaseModel):
    """Ids of the new tasks, in batch order and by key."""

    ids: list[str]
    by_key: dict[str, str] | None = None


class Scheduled(BaseModel):
    """Tasks moved from BACKLOG to PENDING."""

    tasks: list[TaskStatus]


# ---------------------------------------------------------------- converters


def nothing_to_claim(o: ClaimOutlook, now: float, filtered: bool) -> ClaimResult:
    """Why a claim found nothing, each reason true of the queue as it is, and when to try again."""
    parts = []
    wait = None if o.next_backoff_end is None else round(max(0.0, o.next_backoff_end - now), 3)
    ready = sum(o.ready_elsewhere.values())
    if ready and filtered:
        types = ", ".join(f"{t} {n}" for t, n in list(o.ready_elsewhere.items())[:5])
        verb = "needs" if ready == 1 else "need"
        parts.append(f"{ready} ready {_tasks(ready)} {verb} other capabilities or tags (by type: {types})")
    elif ready and o.ready_readable:  # made ready by someone else after this claim looked
        parts.append(f"{ready} {_tasks(ready)} became ready just now; claim again")
        wait = 0.0
    elif ready:
        parts.append(f"{ready} ready {_tasks(ready)} cannot be read (damaged rows: `mcp-tasks verify` names them)")
    if o.backoff:
        first = f"a retried task becomes ready in {wait:.1f}s" if wait is not None else "a retried task waits"
        parts.append(first + (f" ({o.backoff} waiting out a retry backoff)" if o.backoff > 1 else ""))
    if o.waiting:
        parts.append(f"{o.waiting} waiting for dependencies still in progress")
    held = sum(o.counts[s] for s in (State.ASSIGNED, State.ACTIVE, State.PAUSED))
    if held:
        parts.append(f"{held} in progress")
    if o.counts[State.REVIEW]:
        parts.append(f"{o.counts[State.REVIEW]} in REVIEW waiting for a reviewer")
    if o.blocked:
        parts.append(f"{o.blocked} blocked by failed or cancelled work (a planner must retry, cancel or rewire it)")
    if o.counts[State.BACKLOG]:
        parts.append(f"{o.counts[State.BACKLOG]} in BACKLOG until scheduled")
    if not parts:
        parts.append("no open work at all")
    lead = "No ready task matches your filters" if filtered else "No ready task"
    return ClaimResult(message=f"{lead}: " + "; ".join(parts) + ".", retry_after_s=wait)


def _tasks(n: int) -> str:
    return "task" if n == 1 else "tasks"


def brief(s: TaskSummary) -> TaskBrief:
    return TaskBrief(
        id=s.id, title=s.title, type=s.type, priority=s.priority, tags=s.tags or None,
        retry_count=s.retry_count or None, has_checkpoint=s.has_checkpoint or None,
    )


def row(t: Task) -> TaskRow:
    return TaskRow(id=t.id, title=t.title, state=t.state, priority=t.priority, type=t.type,
                   assignee=t.assignee, updated_at=iso(t.updated_at) or "")


def _next(t: Task) -> str:
    if t.state == State.PENDING and t.not_before is not None and t.retry_count:
        return f"queued for retry {t.retry_count}/{t.max_retries} (not before {iso(t.not_before)})"
    if t.state == State.FAILED:
        return "dead letter: no retries left; retry or cancel it by hand"
    if t.state == State.REVIEW:
        return "waiting for review by someone other than the assignee"
    acts = allowed_actions(t.state)
    return "allowed: " + ", ".join(acts) if acts else "finished"


def status(t: Task) -> TaskStatus:
    return TaskStatus(
        id=t.id, state=t.state, version=t.version, lease_expires_at=iso(t.lease_expires_at), next=_next(t),
    )


def _errors(t: Task) -> list[str] | None:
    return [e["error"] for e in t.error_log[-3:]] or None


def claimed(t: Task) -> ClaimedTask:
    return ClaimedTask(
        id=t.id, title=t.title, description=t.description or None, type=t.type, tags=t.tags or None, state=t.state,
        version=t.version, retry_count=t.retry_count, errors=_errors(t), checkpoint_data=t.checkpoint_data,
        checkpoint_note=t.checkpoint_note, progress=t.progress,
    )


def _seconds(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def detail(t: Task, ready: Readiness | None = None) -> TaskDetail:
    usage = None
    if t.usage.tokens or t.usage.api_calls or t.usage.cost:
        usage = {"tokens": t.usage.tokens, "api_calls": t.usage.api_calls, "cost": t.usage.cost}
    return TaskDetail(
        id=t.id, title=t.title, description=t.description or None, state=t.state, type=t.type,
        priority=t.priority, tags=t.tags or None, assignee=t.assignee, depends_on=t.depends_on or None,
        blocks=t.blocks or None, readiness=None if ready is None or t.state != State.PENDING else ready.reason,
        retry_count=t.retry_count, max_retries=t.max_retries, checkpoint_data=t.checkpoint_data,
        checkpoint_note=t.checkpoint_note, progress=t.progress, checkpoint_timestamp=iso(t.checkpoint_timestamp),
        result=t.result, artifacts=t.artifacts or None, errors=_errors(t),
        requires_review=t.requires_review or None, reviewer=t.reviewer,
        lease_expires_at=iso(t.lease_expires_at), not_before=iso(t.not_before),
        created_at=iso(t.created_at) or "", created_by=t.created_by, updated_at=iso(t.updated_at) or "",
        wait_time=_seconds(t.wait_time), work_time=_seconds(t.work_time), cycle_time=_seconds(t.cycle_time),
        usage=usage, version=t.version,
    )


def event(e: Event, *, with_data: bool = True) -> EventView:
    """An event as tools and resources show it: why it happened (a reason, an error), and the
    fields it set only `with_data`."""
    data = {k: v for k, v in e.data.items() if k != "set"}
    fields = {k: v for k, v in e.data.get("set", {}).items() if k != "lease_hash"} if with_data else {}
    if fields and e.type != "created":
        data["set"] = fields
    return EventView(
        seq=e.seq, at=iso(e.at) or "", task_id=e.task_id, type=e.type, actor=e.actor,
        from_state=e.from_state, to_state=e.to_state, data=data or None, error=e.error,
    )


def dump(model: BaseModel) -> dict[str, Any]:
    """JSON-ready dict without None fields."""
    return model.model_dump(mode="json", exclude_none=True)
