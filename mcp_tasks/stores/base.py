"""The store protocol: what the registry needs from a database, and nothing about SQL.

The registry owns the rules; a store owns the SQL. The registry writes each operation as a
short synchronous transaction script over `WriteTx` and hands it to `Store.write`, which runs it
in one database transaction on the store's own thread (one await per operation). Reads work the
same way with `ReadTx` on a consistent snapshot.

A new dialect implements `Store`, `ReadTx` and `WriteTx` with named queries in
`storage/<dialect>/` and passes the behaviour suite in tests/.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, TypeVar

from ..models import Event, Task, TaskSummary
from ..states import State

T = TypeVar("T")

# Cursor keys, decoded by the registry and handed to the store.
ReadyKey = tuple[int, float, int]  # priority, created_at, num
FindKey = tuple[float, int]  # created_at, num


class ReadTx(Protocol):
    """Queries available inside any transaction."""

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
    ) -> list[tuple[Task, FindKey]]: ...

    def events_of_task(self, task_id: str, after: int, limit: int) -> list[Event]: ...

    def latest_events_of_task(self, task_id: str, limit: int) -> list[Event]: ...

    def events_since(self, after: int, limit: int) -> list[Event]: ...

    def last_seq(self) -> int: ...

    def tasks_with_events(self, after_id: str, limit: int) -> list[tuple[Task, list[Event]]]: ...

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

    def done_rows(self) -> list[dict[str, Any]]:
        """assignee, type, wait/work/cycle_time, retry_count, usage_* of every DONE task."""
        ...

    def counts_by_type_state(self) -> list[tuple[str, State, int, int]]:
        """(type, state, tasks, retries) for every pair present."""
        ...

    def failure_counts(self) -> list[tuple[str, str, str | None, int]]:
        """(event type, actor, holder, count) for 'failed', 'lease_expired' and 'retried' events."""
        ...


class WriteTx(ReadTx, Protocol):
    """Changes, available inside `Store.write` only."""

    def next_ready(self, now: float, caps: list[str] | None, tags: list[str] | None) -> Task | None: ...

    def expired_leases(self, now: float, limit: int) -> list[Task]: ...

    def insert_task(self, task: Task) -> None:
        """Insert a new task row (edges go in with add_dep); raises IdCollision if the id exists."""
        ...

    def update_task(self, task: Task, expected_version: int, expected_state: State) -> bool:
        """Compare-and-set the whole row; False when version or state no longer match."""
        ...

    def add_dep(self, task_id: str, depends_on: str) -> None: ...

    def remove_dep(self, task_id: str, depends_on: str) -> None: ...

    def dependents(self, task_id: str) -> list[str]: ...

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

    def get_request(self, actor: str, request_id: str) -> tuple[str, str, str] | None:
        """(op, args_hash, response JSON) of an earlier request, or None."""
        ...

    def put_request(self, actor: str, request_id: str, op: str, args_hash: str, response: str, at: float) -> None: ...

    def prune_requests(self, before: float) -> int: ...


class IdCollision(Exception):
    """A generated task id already exists (astronomically rare; the registry draws again)."""


class Store(Protocol):
    """A database the registry can run transactions on."""

    dialect: str
    location: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, fn: Callable[[WriteTx], T]) -> T:
        """Run `fn` in one write transaction; commit if it returns, roll back if it raises."""
        ...

    async def read(self, fn: Callable[[ReadTx], T]) -> T:
        """Run `fn` on one consistent read snapshot."""
        ...
