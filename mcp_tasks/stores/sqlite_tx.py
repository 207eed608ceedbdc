"""SqliteTx: the store protocol's ReadTx and WriteTx on one sqlite3 connection, each method one or
a few named queries from storage/sqlite/queries.sql. Used only on the store's worker threads, inside
the transaction SqliteStore opened."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any, Callable, TypeVar

from ..errors import CorruptRow
from ..models import Event, Task, TaskSummary
from ..states import State
from . import sql_files
from .base import FindKey, IdCollision, OrphanEdge, OrphanEvents, ReadyKey, SeqRun, TaskHistory
from .rows import dumps, event_from_row, read_column, seq_runs, task_from_row, task_params

log = logging.getLogger(__name__)
T = TypeVar("T")

_reported: set[tuple[str | None, str]] = set()


def _readable(rows: Iterable[sqlite3.Row], read: Callable[[sqlite3.Row], T]) -> Iterator[T]:
    """`read(row)` for every row that can be read; a corrupt row is logged once and left out, so
    listing, claiming and reaping go on around it (verify reports it)."""
    for row in rows:
        try:
            yield read(row)
        except CorruptRow as exc:
            key = (exc.task_id, exc.data.get("column", ""))
            if key not in _reported and len(_reported) < 10_000:
                _reported.add(key)
                log.warning("skipping an unreadable row: %s", exc.problem)


class SqliteTx:
    """ReadTx and WriteTx over one sqlite3 connection; used only on the store's threads."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.q = sql_files.queries("sqlite")

    def _all(self, name: str, params: dict[str, Any] | None = None) -> list[sqlite3.Row]:
        return self.conn.execute(self.q[name], params or {}).fetchall()

    def _one(self, name: str, params: dict[str, Any] | None = None) -> sqlite3.Row | None:
        return self.conn.execute(self.q[name], params or {}).fetchone()

    def _task(self, row: sqlite3.Row, with_blocks: bool = False) -> Task:
        tid = row["id"]
        deps = [r[0] for r in self._all("task_depends_on", {"id": tid})]
        blocks = [r[0] for r in self._all("dependents", {"id": tid})] if with_blocks else None
        return task_from_row(row, deps, blocks)

    # ---- reads
    def get_task(self, task_id: str, *, with_blocks: bool = False) -> Task | None:
        row = self._one("get_task", {"id": task_id})
        return None if row is None else self._task(row, with_blocks)

    def dependency_states(self, task_id: str) -> dict[str, State]:
        return {r["id"]: read_column(r, "state", r["id"]) for r in self._all("dependency_states", {"id": task_id})}

    def states_of(self, ids: list[str]) -> dict[str, State]:
        return {r["id"]: read_column(r, "state", r["id"]) for r in self._all("states_of", {"ids": dumps(ids)})}

    def depends_on_many(self, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self._all("depends_on_many", {"ids": dumps(ids)}):
            out.setdefault(r["task_id"], []).append(r["depends_on"])
        return out

    def list_ready(
        self, now: float, caps: list[str] | None, tags: list[str] | None, after: ReadyKey | None, limit: int
    ) -> list[tuple[TaskSummary, ReadyKey]]:
        p, c, n = after if after else (None, None, None)
        rows = self._all(
            "list_ready",
            {
                "now": now,
                "caps": None if caps is None else dumps(caps),
                "tags": None if tags is None else dumps(tags),
                "after_priority": p,
                "after_created": c,
                "after_num": n,
                "limit": limit,
            },
        )
        return list(_readable(rows, _summary))

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
        c, n = after if after else (None, None)
        rows = self._all(
            "find_tasks",
            {
                "state": None if state is None else state.value,
                "assignee": assignee,
                "tag": tag,
                "text": text,
                "types": None if types is None else dumps(types),
                "after_created": c,
                "after_num": n,
                "limit": limit,
            },
        )
        return list(_readable(rows, lambda r: (self._task(r), (r["created_at"], r["num"]))))

    def events_of_task(self, task_id: str, after: int, limit: int) -> list[Event]:
        rows = self._all("events_of_task", {"id": task_id, "after": after, "limit": limit})
        return [event_from_row(r) for r in rows]

    def latest_events_of_task(self, task_id: str, limit: int) -> list[Event]:
        return [event_from_row(r) for r in self._all("events_of_task_latest", {"id": task_id, "limit": limit})]

    def events_since(self, after: int, limit: int) -> list[Event]:
        return [event_from_row(r) for r in self._all("events_since", {"after": after, "limit": limit})]

    def last_seq(self) -> int:
        row = self._one("last_seq")
        return int(row["seq"]) if row else 0

    def count_by_state(self) -> dict[State, int]:
        return {read_column(r, "state"): r["n"] for r in self._all("count_by_state")}

    def blocked_by_failed(self, limit: int) -> list[tuple[str, str, State]]:
        rows = self._all("blocked_by_failed", {"limit": limit})
        return [(r["id"], r["dep"], read_column(r, "dep_state", r["dep"], "state")) for r in rows]

    def unmet_mismatches(self) -> list[tuple[str, int, int]]:
        return [(r["id"], r["unmet_deps"], r["actual"]) for r in self._all("unmet_mismatches")]

    def task_ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        return [r[0] for r in self._all("task_ids_with_prefix", {"prefix": prefix, "limit": limit})]

    def assignees_with_prefix(self, prefix: str, limit: int) -> list[str]:
        return [r[0] for r in self._all("assignees_with_prefix", {"prefix": prefix, "limit": limit})]

    def tasks_in_state(self, state: State, limit: int) -> list[Task]:
        return list(_readable(self._all("tasks_in_state", {"state": state.value, "limit": limit}), self._task))

    def oldest_ready(self, now: float) -> float | None:
        row = self._one("oldest_ready", {"now": now})
        return None if row is None else row["created_at"]

    def next_backoff_end(self, now: float) -> float | None:
        row = self._one("next_backoff_end", {"now": now})
        return None if row is None else row["at"]

    def count_ready(self, now: float) -> int:
        row = self._one("count_ready", {"now": now})
        return 0 if row is None else int(row["n"])

    def ready_types(self, now: float, limit: int) -> dict[str, int]:
        return {r["type"]: r["n"] for r in self._all("ready_types", {"now": now, "limit": limit})}

    def pending_outlook(self, now: float) -> tuple[int, int, int]:
        row = self._one("pending_outlook", {"now": now})
        return (0, 0, 0) if row is None else (int(row["backoff"]), int(row["waiting"]), int(row["blocked"]))

    def done_rows(self) -> list[dict[str, Any]]:
        return list(_readable(self._all("done_rows"), _done_row))

    def counts_by_type_state(self) -> list[tuple[str, State, int, int]]:
        rows = self._all("counts_by_type_state")
        return [(r["type"], read_column(r, "state"), r["n"], r["retries"] or 0) for r in rows]

    def failure_counts(self) -> list[tuple[str, str, str | None, int]]:
        return [(r["type"], r["actor"], r["holder"], r["n"]) for r in self._all("failure_counts")]

    # ---- writes
    def next_ready(self, now: float, caps: list[str] | None, tags: list[str] | None) -> Task | None:
        params = {"now": now, "caps": None if caps is None else dumps(caps), "tags": None if tags is None else dumps(tags)}
        cursor = self.conn.execute(self.q["next_ready"], params)  # rows come one by one, in claim order
        try:
            return next(_readable(cursor, self._task), None)
        finally:
            cursor.close()

    def expired_leases(self, now: float, limit: int) -> list[Task]:
        return list(_readable(self._all("expired_leases", {"now": now, "limit": limit}), self._task))

    def leases_from_the_future(self, now: float, shortest: float, default_length: float, limit: int) -> list[Task]:
        params = {"now": now, "shortest": shortest, "default_length": default_length, "limit": limit}
        return list(_readable(self._all("leases_from_the_future", params), self._task))

    def backoffs_from_the_future(self, now: float, cap: float, limit: int) -> list[Task]:
        params = {"now": now, "cap": cap, "limit": limit}
        return list(_readable(self._all("backoffs_from_the_future", params), self._task))

    def insert_task(self, task: Task) -> None:
        try:
            self.conn.execute(self.q["insert_task"], task_params(task))
        except sqlite3.IntegrityError as exc:
            if "tasks.id" in str(exc):
                raise IdCollision(task.id) from None
            raise

    def update_task(self, task: Task, expected_version: int, expected_state: State) -> bool:
        params = task_params(task)
        params["expected_version"] = expected_version
        params["expected_state"] = expected_state.value
        del params["created_at"], params["created_by"]
        return self.conn.execute(self.q["update_task"], params).rowcount == 1

    def add_dep(self, task_id: str, depends_on: str) -> None:
        self.conn.execute(self.q["insert_dep"], {"task_id": task_id, "depends_on": depends_on})

    def remove_dep(self, task_id: str, depends_on: str) -> None:
        self.conn.execute(self.q["delete_dep"], {"task_id": task_id, "depends_on": depends_on})

    def dependents(self, task_id: str) -> list[str]:
        return [r[0] for r in self._all("dependents", {"id": task_id})]

    def append_event(
        self,
        task_id: str,
        type: str,
        from_state: State | None,
        to_state: State | None,
        actor: str,
        at: float,
        data: dict[str, Any],
    ) -> int:
        cur = self.conn.execute(
            self.q["insert_event"],
            {
                "task_id": task_id,
                "type": type,
                "from_state": None if from_state is None else from_state.value,
                "to_state": None if to_state is None else to_state.value,
                "actor": actor,
                "at": at,
                "data": dumps(data),
            },
        )
        return int(cur.lastrowid or 0)

    def get_request(self, client: str, request_id: str) -> tuple[str, str, str] | None:
        row = self._one("get_request", {"client": client, "request_id": request_id})
        return None if row is None else (row["op"], row["args_hash"], row["response"])

    def put_request(
        self, client: str, request_id: str, actor: str, op: str, args_hash: str, response: str, at: float
    ) -> None:
        self.conn.execute(self.q["put_request"], {
            "client": client, "request_id": request_id, "actor": actor, "op": op, "args_hash": args_hash,
            "response": response, "at": at,
        })

    def prune_requests(self, before: float) -> int:
        return self.conn.execute(self.q["prune_requests"], {"before": before}).rowcount

    # ---- verification
    def tasks_with_events(self, after: int, limit: int) -> list[TaskHistory]:
        rows = self._all("tasks_page", {"after": after, "limit": limit})
        if not rows:
            return []
        ids = dumps([r["id"] for r in rows if isinstance(r["id"], str)])
        deps: dict[str, list[str]] = {}
        for r in self._all("depends_on_of_tasks", {"ids": ids}):
            deps.setdefault(r["task_id"], []).append(r["depends_on"])
        events: dict[str, list[Event]] = {}
        for r in self._all("events_of_tasks", {"ids": ids}):
            events.setdefault(r["task_id"], []).append(event_from_row(r))
        out = []
        for r in rows:
            tid = r["id"] if isinstance(r["id"], str) else repr(r["id"])
            task: Task | CorruptRow
            try:
                task = task_from_row(r, deps.get(tid, []))
            except CorruptRow as exc:
                task = exc
            out.append(TaskHistory(r["num"], tid, task, events.get(tid, [])))
        return out

    def event_seq_problems(self, limit: int) -> list[SeqRun]:
        head = self._one("event_seq_summary")
        count, first, last = (head["n"], head["first"], head["last"] or 0) if head else (0, None, 0)
        breaks: list[sqlite3.Row] = []
        if count != last or first not in (None, 1) or not (head and head["seq_is_key"]):
            breaks = self._all("event_seq_breaks", {"limit": limit})
        mark = self._one("event_seq_high_water")
        high = mark["seq"] if mark is not None and isinstance(mark["seq"], int) else 0
        return seq_runs(((r["prev"], r["seq"]) for r in breaks), last, high, limit)

    def event_tasks_without_row(self, after: str, limit: int) -> list[OrphanEvents]:
        rows = self._all("event_tasks_without_row", {"after": after, "limit": limit})
        return [OrphanEvents(str(r["task_id"]), r["n"], r["first_seq"], r["last_seq"]) for r in rows]

    def deps_without_rows(self, after: tuple[str, str], limit: int) -> list[OrphanEdge]:
        rows = self._all("deps_without_rows", {"after_task": after[0], "after_dep": after[1], "limit": limit})
        return [
            OrphanEdge(str(r["task_id"]), str(r["depends_on"]), bool(r["task_has_row"]), bool(r["dependency_has_row"]))
            for r in rows
        ]


def _summary(r: sqlite3.Row) -> tuple[TaskSummary, ReadyKey]:
    summary = TaskSummary.model_construct(
        id=r["id"], title=r["title"], type=r["type"], priority=r["priority"], tags=read_column(r, "tags"),
        created_at=r["created_at"], retry_count=r["retry_count"], has_checkpoint=bool(r["has_checkpoint"]),
    )
    return summary, (r["priority"], r["created_at"], r["num"])


def _done_row(r: sqlite3.Row) -> dict[str, Any]:
    return {k: read_column(r, k, r["id"]) for k in r.keys()}
