"""The store protocol: what the registry needs from a database, and nothing about SQL.

The registry owns the rules; a store owns the SQL. The registry writes each operation as a
short synchronous transaction script over `WriteTx` and hands it to `Store.write`, which runs it
in one database transaction on the store's own thread (one await per operation). Reads work the
same way with `ReadTx` on a consistent snapshot.

A new dialect implements `Store`, `ReadTx` and `WriteTx` with named queries in
`storage/<dialect>/` and passes the behaviour suite in tests/. The records reads return beyond
tasks and events are in records.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Protocol, TypeVar

from ..models import Event, Task, TaskSummary, TokenEvent, TokenInfo
from ..states import State
from .records import (
    BucketCount, BucketTimes, EventCount, OrphanEdge, OrphanEvents, RegistrySize, SeqRun, TaskHistory, TaskTotal,
    TimeBucket, TouchedTask,
)

T = TypeVar("T")

# Cursor keys, decoded by the registry and handed to the store.
ReadyKey = tuple[int, float, int]  # priority, created_at, num
FindKey = tuple[float, int]  # created_at, num


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

    # ---- the aggregates: maintained in the transaction of every change (a store keeps them with
    # triggers on tasks and events), so each read costs the same at any number of tasks and events,
    # and equals a full count of the rows and events it stands for.

    def event_totals(self) -> list[EventCount]:
        """Every event in the log (numbered or not), counted by type and by the states it moved between."""
        ...

    def count_by_state(self) -> dict[State, int]:
        """Tasks by state (states without tasks are absent)."""
        ...

    def task_totals(self) -> list[TaskTotal]:
        """The tasks by type, assignee and state, with their retries and usage (groups without
        tasks are absent)."""
        ...

    def time_histogram(self) -> list[TimeBucket]:
        """The cycle and work times of DONE tasks by type and by agent, counted in log-scale
        buckets (buckets without tasks are absent)."""
        ...

    def failure_counts(self) -> list[tuple[str, str, str | None, int]]:
        """(event type, actor, holder, count) for 'failed', 'lease_expired' and 'retried' events
        (holder: the event's data.holder, None when it has none)."""
        ...

    def agent_states(self) -> list[tuple[str, str, int]]:
        """(assignee, state as stored, tasks) for every pair present."""
        ...

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
        """How many tasks are ready (claimable) at `now`: the aggregates' PENDING tasks no dependency
        holds back, less those still in a retry backoff (an index range)."""
        ...

    def ready_types(self, now: float, limit: int) -> dict[str, int]:
        """Ready tasks by type, counting at most `limit` tasks in all."""
        ...

    def pending_outlook(self, now: float) -> tuple[int, int, int]:
        """PENDING tasks that are not ready: (in a retry backoff, waiting for dependencies in
        progress, blocked by a CANCELLED or dead-lettered dependency)."""
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

    def task_marks(self, every: int) -> list[int]:
        """The position (`TaskHistory.num`) of every `every`-th task row in insertion order: the
        bounds of slices of the rows of equal size (verify checks them in separate processes)."""
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

    # ---- export (transfer.py): the whole registry, paged, on one snapshot

    def registry_size(self) -> RegistrySize:
        """Counts of what the registry holds (one aggregate read)."""
        ...

    def tasks_by_id(self, after: str, limit: int) -> list[Task]:
        """Up to `limit` tasks with ids after `after`, in id order, each with its depends_on and
        lease_hash (not `blocks`). CorruptRow when a row cannot be read."""
        ...

    def unnumbered_events(self, after: int, limit: int) -> list[tuple[int, Event]]:
        """Committed events that have no seq yet (their `seq` is None), with their position in the
        order the store will number them, after position `after`, up to `limit`. Stores that number
        events as they write them (SQLite) never have any."""
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

    # ---- import (transfer.py): into an empty registry, keeping ids, seq numbers and times

    def import_tasks(self, rows: list[tuple[int, Task]]) -> None:
        """Insert task rows as they are, lease_hash included, each at place `num` in insertion order
        (the tie-break of claim order; any unused number, import_places moves it); edges go in with
        import_deps."""
        ...

    def import_places(self, places: Sequence[tuple[str, int]]) -> None:
        """Move each imported task (id, num) to its place in insertion order; no two share one."""
        ...

    def import_deps(self, edges: Sequence[tuple[str, str]]) -> None:
        """Insert dependency edges (task_id, depends_on) between imported tasks."""
        ...

    def import_events(self, events: list[Event]) -> None:
        """Append events keeping their seq and time (`at`), numbered as given."""
        ...

    def import_counters(self, last_seq: int) -> None:
        """After importing: new events are numbered after `last_seq`, new tasks placed after the
        imported ones."""
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

    def reader_location(self) -> str | None:
        """Where another process can open this same database only to read it (a location
        make_store takes); None when no other process can (an in-memory database)."""
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
