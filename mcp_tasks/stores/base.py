"""The store protocol: what the registry needs from a database, and nothing about SQL.

The registry owns the rules; a store owns the SQL. The registry writes each operation as a
short synchronous transaction script over `WriteTx` and hands it to `Store.write`, which runs it
in one database transaction on the store's own thread (one await per operation). Reads work the
same way with `ReadTx` on a consistent snapshot.

A new dialect implements `Store`, `ReadTx` and `WriteTx` with named queries in
`storage/<dialect>/` and passes the behaviour suite in tests/.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol, TypeVar

from ..errors import CorruptRow
from ..models import Event, EventRecord, Task, TaskSummary, TokenEvent, TokenInfo
from ..states import State

T = TypeVar("T")

# Cursor keys, decoded by the registry and handed to the store.
ReadyKey = tuple[int, float, int]  # priority, created_at, num
FindKey = tuple[float, int]  # created_at, num


class TaskHistory(NamedTuple):
    """A task row with its events, as verify reads them. `task` is the CorruptRow raised reading
    the row when it cannot be read, None when there is no row; `num` is the row's place in
    insertion order (0 without a row)."""

    num: int
    task_id: str
    task: Task | CorruptRow | None
    events: list[EventRecord]


class TouchedTask(NamedTuple):
    """A task id that events name, and the highest seq among those events."""

    task_id: str
    last_seq: int


class SeqRun(NamedTuple):
    """Event sequence numbers `first`..`last` that are wrong: `missing` (no event has them),
    `repeated` (`size` events share the number) or `unexpected` (below 1). `size` of a missing
    run: how many numbers it spans."""

    first: int
    last: int
    problem: str
    size: int


class OrphanEvents(NamedTuple):
    """The events of a task id that has no row: how many, and the first and last seq."""

    task_id: str
    events: int
    first_seq: int
    last_seq: int


class OrphanEdge(NamedTuple):
    """A dependency edge `task_id` -> `depends_on` where one or both ends have no task row."""

    task_id: str
    depends_on: str
    task_has_row: bool
    dependency_has_row: bool


class EventCount(NamedTuple):
    """How many events of one `type` moved a task from `from_state` to `to_state` (None: created,
    and unchanged, respectively). States as stored: an unreadable one comes back as it is."""

    type: str
    from_state: str | None
    to_state: str | None
    n: int


class BucketCount(NamedTuple):
    """`n` events of `type` from `from_state` to `to_state` in the time bucket starting at `bucket`."""

    bucket: float
    type: str
    from_state: str | None
    to_state: str | None
    n: int


class BucketTimes(NamedTuple):
    """The wait and work time of one task finished in the time bucket starting at `bucket`."""

    bucket: float
    wait_time: float | None
    work_time: float | None


class ReadTx(Protocol):
    """Queries available inside any transaction."""

    def now(self) -> float:
        """This transaction's time by the store's clock, epoch seconds (the database server's on
        PostgreSQL, so hosts with skewed clocks agree; the host's wall clock on SQLite)."""
        ...

    def get_task(self, task_id: str, *, with_blocks: bool = False) -> Task | None: ...

    def dependency_states(self, task_id: str) -> dict[str, State]: ...

    def states_of(self, ids: list[str]) -> dict[str, State]: ...

    def depends_on_many(self, ids: list[str]) -> dict[str, list[str]]: ...

    def list_ready(
        self, now: float, caps: list[str] | None, tags: list[str] | None, after: ReadyKey | None, limit: int
    ) -> list[tuple[TaskSummary, ReadyKey]]: ...

    def find_tasks(
        self,
        state: State | None,
        assignee: str | None,
        tag: str | None,
        text: str | None,
        after: FindKey | None,
        limit: int,
        types: list[str] | None = None,
    ) -> list[tuple[Task, FindKey]]:
        """Tasks matching every given filter (`types`: any of them), newest first, after the cursor key."""
        ...

    def events_of_task(self, task_id: str, after: int, limit: int) -> list[Event]: ...

    def latest_events_of_task(self, task_id: str, limit: int) -> list[Event]: ...

    def events_since(self, after: int, limit: int) -> list[Event]: ...

    def last_seq(self) -> int: ...

    def event_counts(self, after: int, upto: int) -> list[EventCount]:
        """Events numbered after `after` up to `upto`, counted by type and by the states they moved
        between: one grouped range read on the seq index (the metrics' fold of the log)."""
        ...

    def count_by_state(self) -> dict[State, int]: ...

    def blocked_by_failed(self, limit: int) -> list[tuple[str, str, State]]: ...

    def unmet_mismatches(self) -> list[tuple[str, int, int]]: ...

    def task_ids_with_prefix(self, prefix: str, limit: int) -> list[str]: ...

    def assignees_with_prefix(self, prefix: str, limit: int) -> list[str]: ...

    def tasks_in_state(self, state: State, limit: int) -> list[Task]: ...

    def oldest_ready(self, now: float) -> float | None: ...

    def next_backoff_end(self, now: float) -> float | None:
        """When the first task now waiting out a retry backoff becomes claimable."""
        ...

    def count_ready(self, now: float) -> int:
        """How many tasks are ready (claimable) at `now`."""
        ...

    def ready_types(self, now: float, limit: int) -> dict[str, int]:
        """Ready tasks by type, counting at most `limit` tasks in all."""
        ...

    def pending_outlook(self, now: float) -> tuple[int, int, int]:
        """PENDING tasks that are not ready: (in a retry backoff, waiting for dependencies in
        progress, blocked by a CANCELLED or dead-lettered dependency)."""
        ...

    def done_rows(self) -> list[dict[str, Any]]:
        """assignee, type, wait/work/cycle_time, retry_count, usage_* of every DONE task."""
        ...

    def counts_by_type_state(self) -> list[tuple[str, State, int, int]]:
        """(type, state, tasks, retries) for every pair present."""
        ...

    def failure_counts(self) -> list[tuple[str, str, str | None, int]]:
        """(event type, actor, holder, count) for 'failed', 'lease_expired' and 'retried' events."""
        ...

    # ---- the board's reads (overview.py): each bounded, each on an index

    def dependents_many(self, ids: list[str], limit: int) -> dict[str, list[str]]:
        """The tasks that depend on each of `ids` (id -> dependents; ids without any are absent),
        at most `limit` in all."""
        ...

    def count_dependents(self, task_id: str) -> int:
        """How many tasks depend on `task_id`."""
        ...

    def task_nodes(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        """(title, state as stored) of each existing task among `ids`."""
        ...

    def count_tasks(
        self, state: State | None, assignee: str | None, tag: str | None, text: str | None,
        types: list[str] | None, cap: int,
    ) -> int:
        """How many tasks find_tasks' filters match, counting at most `cap`."""
        ...

    def events_page(
        self, before: int, task_id: str | None, actor: str | None, type: str | None, limit: int
    ) -> list[Event]:
        """Up to `limit` events numbered below `before`, newest first, of task `task_id`, by `actor`
        and of `type` where given."""
        ...

    def agent_states(self) -> list[tuple[str, str, int]]:
        """(assignee, state as stored, tasks) for every pair present."""
        ...

    def actor_last_seen(self, actor: str) -> float | None:
        """When `actor` last recorded an event."""
        ...

    def recent_done_times(self, limit: int) -> list[tuple[str | None, float | None, float | None]]:
        """(assignee, wait_time, work_time) of the newest `limit` DONE tasks."""
        ...

    def event_time(self, seq: int) -> float | None:
        """When event `seq` was recorded (None: no such event)."""
        ...

    def chart_rows(self, after: int, upto: int, bucket: float) -> tuple[list[BucketCount], list[BucketTimes]]:
        """Events numbered after `after` up to `upto`, by time bucket (`bucket` seconds wide): counted
        by type and states moved between, and the wait and work times of those that finished a task."""
        ...

    # ---- verification: finding what the event log cannot explain. Each returns a bounded page
    # (or a summary) so that verify's memory does not grow with the log.

    def tasks_with_events(self, after: int, limit: int) -> list[TaskHistory]:
        """Up to `limit` task rows after position `after` (`TaskHistory.num`), in insertion order,
        each with all its events in seq order. A row that cannot be read is returned as the
        CorruptRow it raised, never raised: one damaged row must not stop verify."""
        ...

    def task_histories(self, ids: list[str]) -> list[TaskHistory]:
        """The rows of the tasks `ids`, in insertion order, each with all its events in seq order
        (as tasks_with_events reads them), then the ids that have events but no row (`task` None)."""
        ...

    def tasks_touched_after(self, after: int, limit: int) -> list[TouchedTask]:
        """The task ids that the first `limit` events numbered after `after` name, each once, in id
        order, with the highest seq each has among them. The next page starts after the highest
        of those; an empty page: no event is numbered after `after`. Read on the seq index."""
        ...

    def event_seq_problems(self, limit: int, after: int | None = None) -> list[SeqRun]:
        """Holes and repeats in the event sequence, which must run 1, 2, 3 ... up to the highest
        number the store has ever handed out (events are append-only, so a hole means deleted
        events: in the middle, at the start, or at the end, which only the high-water mark of the
        store's sequence reveals). Only numbers after `after` when given. The first `limit` runs
        in seq order; cheap when there are none."""
        ...

    def event_tasks_without_row(self, after: str, limit: int) -> list[OrphanEvents]:
        """Task ids after `after` (in id order) that have events but no task row, up to `limit`."""
        ...

    def deps_without_rows(self, after: tuple[str, str], limit: int) -> list[OrphanEdge]:
        """Dependency edges after (task_id, depends_on) `after`, in that order, whose task or
        dependency has no row, up to `limit`. (Edges of existing tasks that no event explains show
        up when verify compares the task's depends_on with its replay.)"""
        ...

    # ---- bearer tokens (the HTTP service's identities); only SHA-256 hashes are stored

    def token_by_hash(self, token_hash: str) -> TokenInfo | None:
        """The token whose SHA-256 is `token_hash` (revoked and expired ones too), or None."""
        ...

    def list_tokens(self) -> list[TokenInfo]:
        """Every token, by name."""
        ...

    def live_tokens(self, now: float) -> int:
        """How many tokens are neither revoked nor expired at `now`."""
        ...

    def token_events(self, limit: int) -> list[TokenEvent]:
        """The latest `limit` entries of the token log, newest first."""
        ...


class WriteTx(ReadTx, Protocol):
    """Changes, available inside `Store.write` only."""

    def next_ready(self, now: float, caps: list[str] | None, tags: list[str] | None) -> Task | None: ...

    def expired_leases(self, now: float, limit: int) -> list[Task]:
        """ASSIGNED or ACTIVE tasks whose lease expired at or before `now`, earliest first."""
        ...

    def leases_from_the_future(self, now: float, shortest: float, default_length: float, limit: int) -> list[Task]:
        """ASSIGNED or ACTIVE tasks whose lease expires later than `now` plus its own length
        (`default_length` when unknown; `shortest` bounds the index scan): the clock stepped back since."""
        ...

    def backoffs_from_the_future(self, now: float, cap: float, limit: int) -> list[Task]:
        """PENDING tasks whose retry backoff ends later than `now + cap` (the clock stepped back)."""
        ...

    def insert_task(self, task: Task) -> None:
        """Insert a new task row (edges go in with add_dep); raises IdCollision if the id exists."""
        ...

    def update_task(self, task: Task, expected_version: int, expected_state: State) -> bool:
        """Compare-and-set the whole row; False when version or state no longer match."""
        ...

    def add_dep(self, task_id: str, depends_on: str) -> None: ...

    def remove_dep(self, task_id: str, depends_on: str) -> None: ...

    def dependents(self, task_id: str) -> list[str]: ...

    def lock_dependency_graph(self) -> None:
        """Hold every other transaction that adds dependency edges until this one ends, so that a
        cycle check sees the edges they add (a no-op where writers are serialised anyway)."""
        ...

    def append_event(
        self,
        task_id: str,
        type: str,
        from_state: State | None,
        to_state: State | None,
        actor: str,
        at: float,
        data: dict[str, Any],
    ) -> int: ...

    def get_request(self, client: str, request_id: str) -> tuple[str, str, str] | None:
        """(op, args_hash, response JSON) of `client`'s earlier request `request_id`, or None."""
        ...

    def put_request(
        self, client: str, request_id: str, actor: str, op: str, args_hash: str, response: str, at: float
    ) -> None:
        """Remember the answer to `client`'s request (replacing an earlier one under the same id)."""
        ...

    def prune_requests(self, before: float) -> int: ...

    def create_token(self, token: TokenInfo, now: float) -> bool:
        """Store `token`, replacing a revoked or expired token of the same name; False (and no
        change) when a live token has that name."""
        ...

    def revoke_token(self, name: str, actor: str, now: float) -> bool:
        """Mark the live or expired token `name` revoked; False when there is none to revoke."""
        ...

    def touch_token(self, name: str, at: float) -> None:
        """Record that token `name` was used at `at` (never moves last_used_at back)."""
        ...

    def append_token_event(self, name: str, type: str, actor: str, at: float, data: dict[str, Any]) -> None:
        """Add an entry to the append-only token log ('created' or 'revoked')."""
        ...


class IdCollision(Exception):
    """A generated task id already exists (astronomically rare; the registry draws again)."""


class Store(Protocol):
    """A database the registry can run transactions on."""

    dialect: str
    location: str
    read_only: bool
    """True when `open()` found that the database can only be read (file permissions, a read-only
    directory or mount, or a read-only open was asked for). Reads work as usual; every `write`
    raises StoreReadOnly and changes nothing. Background writers (the lease reaper) stay idle."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, fn: Callable[[WriteTx], T]) -> T:
        """Run `fn` in one write transaction; commit if it returns, roll back if it raises."""
        ...

    async def read(self, fn: Callable[[ReadTx], T]) -> T:
        """Run `fn` on one consistent read snapshot."""
        ...

    async def settle(self) -> None:
        """Give every committed event its place in the log's order (`seq`) that can have one now.
        Stores whose writers commit one at a time (SQLite) number events as they are written and
        have nothing to do; readers of the log by seq call this first."""
        ...

    async def watch(self, wake: Callable[[], None]) -> None:
        """Call `wake()` whenever another process may have added events, until cancelled. Returns at
        once for a store with no such signal (SQLite: followers poll)."""
        ...
