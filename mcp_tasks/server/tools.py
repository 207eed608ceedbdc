"""The agent tools: parse, call the registry, return a compact model. No SQL, no state rules."""

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from .. import limits, reports
from ..states import State
from . import views as V
from .tooling import make_tool, thin

# Argument types (module level: the SDK resolves annotations against module globals). Identifiers
# carry no length bounds in the schema (the registry checks them and says what is wrong); numbers,
# lists and free text do.
TaskId = str
Lease = str
RequestId = str | None  # the work-loop prompt and server instructions explain request_id
KeyedRequestId = Annotated[str | None, Field(description="Retry key: repeating it returns the first answer")]
Name = str
Names = list[str]
Text = Annotated[str, Field(max_length=limits.MAX_TEXT)]
Limit = Annotated[int, Field(ge=1, le=limits.MAX_PAGE)]
Version = Annotated[int | None, Field(description="Refuse if the task changed since")]
Cursor = str | None


class NewTaskIn(BaseModel):
    """One task to create."""

    model_config = ConfigDict(extra="forbid")
    key: Name | None = Field(None, description="Name for depends_on in this batch")
    title: str = Field(max_length=limits.MAX_TITLE)
    description: str = Field("", max_length=limits.MAX_DESCRIPTION)
    type: Name = Field("general", description="Capability needed")
    priority: int = Field(5, ge=limits.MIN_PRIORITY, le=limits.MAX_PRIORITY, description="10 first")
    tags: Names = []
    depends_on: list[str] = Field([], description="Task ids or batch keys")
    requires_review: bool = False
    max_retries: int = Field(3, ge=0, le=limits.MAX_RETRIES)


class UsageIn(BaseModel):
    """Resources spent on the task."""

    model_config = ConfigDict(extra="forbid")
    tokens: int = Field(0, ge=0)
    api_calls: int = Field(0, ge=0)
    cost: float = Field(0.0, ge=0)


READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
# readOnlyHint defaults to false, so writes leave it out; destructiveHint defaults to true, so writes say false.
WRITE = ToolAnnotations(destructive_hint=False, idempotent_hint=True, open_world_hint=False)
WRITE_NEW = ToolAnnotations(destructive_hint=False, idempotent_hint=False, open_world_hint=False)
DESTROY = ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=False)


def build_tools(app: Any) -> list[Tool]:
    """The 17 tools over `app.registry`; `app.caller(ctx)` names the caller and its client."""

    @thin
    async def list_available(
        ctx: Context, capabilities: Names = [], tags: Names = [], limit: Limit = 20, cursor: Cursor = None
    ) -> V.Available:
        """Ready tasks, best first. capabilities: task types you do; tags: all must match."""
        page = await app.registry.list_available(capabilities=capabilities, tags=tags, limit=limit, cursor=cursor)
        return V.Available(tasks=[V.brief(s) for s in page.items], next_cursor=page.next_cursor)

    @thin
    async def claim(
        ctx: Context,
        task_id: Annotated[str | None, Field(description="Omit for the best ready task")] = None,
        capabilities: Names = [],
        tags: Names = [],
        lease_seconds: Annotated[int | None, Field(ge=limits.MIN_LEASE_SECONDS, le=limits.MAX_LEASE_SECONDS)] = None,
        start: bool = False,
        request_id: KeyedRequestId = None,
    ) -> V.ClaimResult:
        """Claim a task atomically (start=true: start it too); returns it (with checkpoint) and a lease for every later call on it."""
        reg = app.registry
        got = await reg.claim(task_id, capabilities=capabilities, tags=tags, lease_seconds=lease_seconds, start=start,
                              actor=app.caller(ctx), request_id=request_id)
        if got is None:
            outlook = await reports.claim_outlook(reg)
            return V.nothing_to_claim(outlook, outlook.now, filtered=bool(capabilities or tags))
        app.logs.claimed(ctx.request_context, got)
        return V.ClaimResult(task=V.claimed(got.task), lease=got.lease, lease_expires_at=V.iso(got.lease_expires_at))

    @thin
    async def start(ctx: Context, task_id: TaskId, lease: Lease, request_id: RequestId = None) -> V.TaskStatus:
        """Begin work on a claimed task; renews the lease."""
        return V.status(await app.registry.start(task_id, lease, actor=app.caller(ctx), request_id=request_id))

    @thin
    async def checkpoint(
        ctx: Context,
        task_id: TaskId,
        lease: Lease,
        data: Annotated[Any, Field(description="JSON state to resume from")] = None,
        note: Text | None = None,
        progress: Annotated[int | None, Field(ge=0, le=100)] = None,
        request_id: RequestId = None,
    ) -> V.TaskStatus:
        """Save resumable state and renew the lease; call every few minutes."""
        t = await app.registry.checkpoint(task_id, lease, data, note, progress, actor=app.caller(ctx), request_id=request_id)
        return V.status(t)

    @thin
    async def complete(
        ctx: Context,
        task_id: TaskId,
        lease: Lease,
        result: Annotated[Any, Field(description="JSON result")] = None,
        artifacts: Annotated[list[str], Field(max_length=limits.MAX_ARTIFACTS)] = [],
        usage: UsageIn | None = None,
        request_id: RequestId = None,
    ) -> V.TaskStatus:
        """Finish: DONE, or REVIEW if required."""
        t = await app.registry.complete(task_id, lease, result, artifacts, usage and usage.model_dump(),
                                        actor=app.caller(ctx), request_id=request_id)
        return V.status(t)

    @thin
    async def fail(
        ctx: Context, task_id: TaskId, lease: Lease, error: Text, retryable: bool = True, request_id: RequestId = None
    ) -> V.TaskStatus:
        """Report failure; retryable ones are retried later."""
        t = await app.registry.fail(task_id, lease, error, retryable, actor=app.caller(ctx), request_id=request_id)
        return V.status(t)

    @thin
    async def pause(ctx: Context, task_id: TaskId, lease: Lease, reason: Text, request_id: RequestId = None) -> V.TaskStatus:
        """Pause an ACTIVE task; its lease stops running."""
        return V.status(await app.registry.pause(task_id, lease, reason, actor=app.caller(ctx), request_id=request_id))

    @thin
    async def resume(ctx: Context, task_id: TaskId, lease: Lease, request_id: RequestId = None) -> V.TaskStatus:
        """Resume a PAUSED task."""
        return V.status(await app.registry.resume(task_id, lease, actor=app.caller(ctx), request_id=request_id))

    @thin
    async def release(
        ctx: Context, task_id: TaskId, lease: Lease, reason: Text | None = None, request_id: RequestId = None
    ) -> V.TaskStatus:
        """Give back a claimed, unstarted task."""
        return V.status(await app.registry.release(task_id, lease, reason, actor=app.caller(ctx), request_id=request_id))

    @thin
    async def create_tasks(
        ctx: Context,
        tasks: Annotated[list[NewTaskIn], Field(min_length=1, max_length=limits.MAX_BATCH)],
        ready: Annotated[bool, Field(description="false: BACKLOG until scheduled")] = True,
        request_id: KeyedRequestId = None,
    ) -> V.CreatedResult:
        """Create tasks (all or none); depends_on may use batch keys."""
        created = await app.registry.create_tasks([t.model_dump() for t in tasks], ready=ready,
                                                  actor=app.caller(ctx), request_id=request_id)
        return V.CreatedResult(ids=created.ids, by_key=created.by_key or None)

    @thin
    async def update_task(
        ctx: Context,
        task_id: TaskId,
        expected_version: Version = None,
        title: Annotated[str | None, Field(max_length=limits.MAX_TITLE)] = None,
        description: Annotated[str | None, Field(max_length=limits.MAX_DESCRIPTION)] = None,
        type: Name | None = None,
        priority: Annotated[int | None, Field(ge=limits.MIN_PRIORITY, le=limits.MAX_PRIORITY)] = None,
        tags: Names | None = None,
        requires_review: bool | None = None,
        max_retries: Annotated[int | None, Field(ge=0, le=limits.MAX_RETRIES)] = None,
        add_depends_on: list[str] = [],
        remove_depends_on: list[str] = [],
        request_id: RequestId = None,
    ) -> V.TaskStatus:
        """Edit fields; rewire dependencies before work starts."""
        t = await app.registry.update(
            task_id, expected_version=expected_version, add_depends_on=add_depends_on,
            remove_depends_on=remove_depends_on, actor=app.caller(ctx), request_id=request_id, title=title,
            description=description, type=type, priority=priority, tags=tags, requires_review=requires_review,
            max_retries=max_retries,
        )
        return V.status(t)

    @thin
    async def cancel(
        ctx: Context, task_id: TaskId, reason: Text, expected_version: Version = None, request_id: RequestId = None
    ) -> V.TaskStatus:
        """Cancel work; started work (ACTIVE, PAUSED) needs admin."""
        t = await app.registry.cancel(task_id, reason, expected_version=expected_version, actor=app.caller(ctx),
                                      request_id=request_id)
        return V.status(t)

    @thin
    async def schedule(
        ctx: Context,
        task_ids: Annotated[list[str], Field(min_length=1, max_length=limits.MAX_BATCH)],
        request_id: RequestId = None,
    ) -> V.Scheduled:
        """Move BACKLOG tasks to PENDING."""
        moved = await app.registry.schedule(task_ids, actor=app.caller(ctx), request_id=request_id)
        return V.Scheduled(tasks=[V.status(t) for t in moved])

    @thin
    async def retry(ctx: Context, task_id: TaskId, request_id: RequestId = None) -> V.TaskStatus:
        """Requeue a dead-lettered (FAILED) task now."""
        return V.status(await app.registry.retry(task_id, actor=app.caller(ctx), request_id=request_id))

    @thin
    async def review(
        ctx: Context, task_id: TaskId, approve: bool, comment: Text | None = None, request_id: RequestId = None
    ) -> V.TaskStatus:
        """Approve (DONE) or send back (ACTIVE) someone else's task in REVIEW."""
        t = await app.registry.review(task_id, approve, comment, actor=app.caller(ctx), request_id=request_id)
        return V.status(t)

    @thin
    async def get_task(
        ctx: Context, task_id: TaskId,
        events: Annotated[int, Field(ge=0, le=limits.MAX_EVENT_PAGE, description="Latest events to include")] = 0,
        event_data: Annotated[bool, Field(description="Events with the fields they set")] = False,
    ) -> V.TaskWithEvents:
        """A task in full, its readiness and latest events."""
        task, ready, evs = await app.registry.get_with_context(task_id, events=events)
        return V.TaskWithEvents(task=V.detail(task, ready),
                                events=[V.dump(V.event(e, with_data=event_data)) for e in evs] or None)

    @thin
    async def find_tasks(
        ctx: Context,
        state: Literal[tuple(s.value for s in State)] | None = None,  # type: ignore[valid-type]
        assignee: str | None = None,
        tag: Name | None = None,
        text: Annotated[str | None, Field(max_length=limits.MAX_TITLE)] = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> V.Found:
        """Tasks matching all filters, newest first."""
        page = await app.registry.find(state=state, assignee=assignee, tag=tag, text=text, limit=limit, cursor=cursor)
        return V.Found(tasks=[V.row(t) for t in page.items], next_cursor=page.next_cursor)

    specs = [
        (list_available, READ), (claim, WRITE_NEW), (start, WRITE), (checkpoint, WRITE), (complete, WRITE),
        (fail, WRITE), (pause, WRITE), (resume, WRITE), (release, WRITE), (create_tasks, WRITE_NEW),
        (update_task, WRITE), (cancel, DESTROY), (schedule, WRITE), (retry, WRITE), (review, WRITE),
        (get_task, READ), (find_tasks, READ),
    ]
    return [make_tool(fn, annotations) for fn, annotations in specs]
