"""Domain models: the task, its events, and what registry calls take and return.

Timestamps are float seconds since the Unix epoch (UTC); views for people and agents render
them as ISO 8601.
"""

from __future__ import annotations

from typing import Any, Generic, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from .states import Role, State

SCHEMA_VERSION = 1


class Caller(NamedTuple):
    """Who is calling. `agent` is the name recorded on tasks and events; `client` scopes the stored
    answers to repeated requests: one connection, server process or token, never just a name,
    since several clients may share one agent name."""

    agent: str
    client: str
    role: Role = Role.ADMIN  # the CLI and library calls on a local database act as admin


class TokenInfo(BaseModel):
    """A bearer token as stored: its name (the caller's identity), role and lifecycle, never the
    token itself (only its SHA-256, `token_hash`, is stored)."""

    name: str
    role: Role
    token_hash: str
    created_at: float
    created_by: str
    expires_at: float | None = None
    revoked_at: float | None = None
    revoked_by: str | None = None
    last_used_at: float | None = None

    def live(self, now: float) -> bool:
        """Not revoked and not expired at `now`."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class TokenEvent(BaseModel):
    """One entry of the token log: who created or revoked which name, when (never the secret)."""

    id: int
    name: str
    type: str
    actor: str
    at: float
    data: dict[str, Any] = {}


class Usage(BaseModel):
    """Resources an agent reports having spent on a task (totals over all attempts)."""

    tokens: int = 0
    api_calls: int = 0
    cost: float = 0.0


class Task(BaseModel):
    """A unit of work and everything the registry knows about it."""

    model_config = ConfigDict(use_enum_values=False)

    id: str
    title: str
    description: str = ""
    type: str = "general"
    priority: int = 5
    tags: list[str] = Field(default_factory=list)
    state: State
    assignee: str | None = None
    created_at: float
    assigned_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    depends_on: list[str] = Field(default_factory=list)
    blocks: list[str] = Field(default_factory=list, description="Derived: tasks that depend on this one")
    retry_count: int = 0
    max_retries: int = 3
    error_log: list[dict[str, Any]] = Field(default_factory=list)
    checkpoint_data: Any = None
    checkpoint_note: str | None = None
    progress: int | None = None
    checkpoint_timestamp: float | None = None
    cycle_time: float | None = None
    wait_time: float | None = None
    work_time: float | None = None
    result: Any = None
    artifacts: list[str] = Field(default_factory=list)
    version: int = 1
    schema_version: int = SCHEMA_VERSION
    created_by: str
    requires_review: bool = False
    reviewer: str | None = None
    lease_expires_at: float | None = None
    lease_seconds: float | None = None
    not_before: float | None = None
    unmet_deps: int = 0
    usage: Usage = Field(default_factory=Usage)
    updated_at: float
    lease_hash: str | None = Field(default=None, exclude=True, repr=False)
    lease_end: str | None = Field(default=None, description="How the latest lease ended; None while it holds")


# Fields that the event log rebuilds; `blocks` is derived from other tasks' depends_on.
REPLAYED_FIELDS: tuple[str, ...] = tuple(f for f in Task.model_fields if f != "blocks")


class TaskSummary(BaseModel):
    """The compact view of a ready task used by list_available."""

    id: str
    title: str
    type: str
    priority: int
    tags: list[str]
    created_at: float
    retry_count: int
    has_checkpoint: bool


class Event(BaseModel):
    """One appended change. `data["set"]` holds the task fields the change assigned."""

    seq: int
    task_id: str
    type: str
    from_state: State | None
    to_state: State | None
    actor: str
    at: float
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = Field(default=None, description="Set when the stored event cannot be read: which column and why")


class EventRecord(NamedTuple):
    """An Event's fields in a plain tuple: what verify reads and replays by the million, where
    building a model per event would cost most of its time. `replay.fold` takes either."""

    seq: int
    task_id: str
    type: str
    from_state: State | None
    to_state: State | None
    actor: str
    at: float
    data: dict[str, Any]
    error: str | None


class NewTask(BaseModel):
    """One task in a create_tasks batch. depends_on names task ids or keys of this batch."""

    key: str | None = None
    title: str
    description: str = ""
    type: str = "general"
    priority: int = 5
    tags: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    requires_review: bool = False
    max_retries: int = 3


class Claim(BaseModel):
    """What a successful claim returns. `lease` is the fencing token; only the claimer sees it."""

    task: Task
    lease: str
    lease_expires_at: float


class Created(BaseModel):
    """Result of create_tasks: the new ids in batch order and by key."""

    ids: list[str]
    by_key: dict[str, str] = Field(default_factory=dict)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A bounded slice of a longer list; pass next_cursor back to continue."""

    items: list[T]
    next_cursor: str | None = None


class Readiness(BaseModel):
    """Why a task can or cannot be claimed now (one rule, used by tools, CLI and dashboard)."""

    ready: bool
    reason: str
    waiting_on: list[str] = Field(default_factory=list, description="Dependencies not DONE yet")
    failed_deps: list[str] = Field(default_factory=list, description="Dependencies CANCELLED or dead-lettered")
    not_before: float | None = None


class Difference(BaseModel):
    """One thing verify found wrong. Either a task field whose stored value differs from the
    replay of its events (`field` names it; `stored` and `replayed` hold both values), or a
    problem with a task's row, events or dependency edges (`field` names the check: row,
    created, event, replay, depends_on; `problem` says what was found). A hole or a repeat in
    the event sequence belongs to no task: `task_id` is None, `field` is missing, repeated,
    unexpected (below 1) or unlisted (more breaks than verify lists), and `seq`..`seq_last` name
    the numbers."""

    task_id: str | None
    field: str
    stored: Any = None
    replayed: Any = None
    problem: str | None = None
    seq: int | None = None
    seq_last: int | None = None
