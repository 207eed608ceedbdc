"""SqlTx: the store protocol's ReadTx and WriteTx over one DB-API connection, for every SQL dialect.

Each method runs one or a few named queries from storage/<dialect>/queries.sql (the same names in
every dialect) and turns rows into models. A dialect subclass (SqliteTx, PostgresTx) supplies how
to run a statement, how to pass a list, and the few steps that differ (an inserted row's id, an id
collision, the clock). JSON values travel as text in both. Inside a write transaction the reads a decision rests on lock what they
read (`get_task_for_update`, `states_of_for_share`; the same query where a dialect has a single
writer), so no other writer can change it before this transaction commits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any, Callable, TypeVar

from ..errors import CorruptRow
from ..models import Event, EventRecord, Task, TaskSummary, TokenEvent, TokenInfo
from ..states import State
from .base import FindKey, ReadyKey
from .records import (
    BucketCount, BucketTimes, EventCount, OrphanEdge, OrphanEvents, RegistrySize, SeqRun, TaskHistory, TaskTotal,
    TimeBucket, TouchedTask,
)
from .rows import EVENT_COLUMNS, Row, dumps, event_from_row, event_records, read_column, seq_runs, task_from_row, task_params

log = logging.getLogger(__name__)
T = TypeVar("T")
_reported: set[tuple[str | None, str]] = set()
_TASK_ID = itemgetter(EVENT_COLUMNS.index("task_id"))  # in events_of_tasks' tuples
_FIRST, _SECOND = itemgetter(0), itemgetter(1)


def readable(rows: Iterable[Row], read: Callable[[Row], T]) -> Iterator[T]:
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


class SqlTx:
    """ReadTx and WriteTx over one connection inside one transaction; `writing` locks what it reads."""

    def __init__(self, queries: Mapping[str, str], writing: bool) -> None:
        self.q = queries
        self.writing = writing

    # ---- what a dialect supplies
    def _rows(self, name: str, params: dict[str, Any]) -> list[Row]:
        """All rows of named query `name`."""
        raise NotImplementedError

    def _tuples(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """All rows of named query `name` as plain tuples, in its column order (no names to
        look up: for reads by the million)."""
        raise NotImplementedError

    def _count(self, name: str, params: dict[str, Any]) -> int:
        """Run a changing statement; how many rows it changed."""
        raise NotImplementedError

    def _list(self, values: list[str]) -> Any:
        """A list parameter as the dialect's queries take it."""
        raise NotImplementedError

    def _insert_task(self, params: dict[str, Any]) -> None:
        """Insert a task row; IdCollision when its id exists."""
        raise NotImplementedError

    def _insert_event(self, params: dict[str, Any]) -> int:
        """Insert an event; its position in the log as written."""
        raise NotImplementedError

    def _many(self, name: str, params: list[dict[str, Any]]) -> None:
        """Run changing statement `name` once for each parameter set, in one round trip where the
        driver can."""
        raise NotImplementedError

    def now(self) -> float:
        """The time of this transaction (epoch seconds) by the store's clock."""
        raise NotImplementedError

    # ---- plumbing
    def _row(self, name: str, params: dict[str, Any] | None = None) -> Row | None:
        rows = self._rows(name, params or {})
        return rows[0] if rows else None

    def _all(self, name: str, params: dict[str, Any] | None = None) -> list[Row]:
        return self._rows(name, params or {})

    def _opt_list(self, values: list[str] | None) -> Any:
        return None if values is None else self._list(values)

    def _task(self, row: Row, with_blocks: bool = False) -> Task:
        tid = row["id"]
        deps = [r["depends_on"] for r in self._all("task_depends_on", {"id": tid})]
        blocks = [r["task_id"] for r in self._all("dependents", {"id": tid})] if with_blocks else None
        return task_from_row(row, deps, blocks)

    def _tasks(self, name: str, params: dict[str, Any]) -> list[Task]:
        return list(readable(self._all(name, params), self._task))

    # ---- reads
    def get_task(self, task_id: str, *, with_blocks: bool = False) -> Task | None:
        row = self._row("get_task_for_update" if self.writing else "get_task", {"id": task_id})
        return None if row is None else self._task(row, with_blocks)

    def dependency_states(self, task_id: str) -> dict[str, State]:
        return {r["id"]: read_column(r, "state", r["id"]) for r in self._all("dependency_states", {"id": task_id})}

    def states_of(self, ids: list[str]) -> dict[str, State]:
        name = "states_of_for_share" if self.writing else "states_of"
        return {r["id"]: read_column(r, "state", r["id"]) for r in self._all(name, {"ids": self._list(ids)})}

    def depends_on_many(self, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self._all("depends_on_many", {"ids": self._list(ids)}):
            out.setdefault(r["task_id"], []).append(r["depends_on"])
        return out

    def list_ready(
        self, now: float, caps: list[str] | None, tags: list[str] | None, after: ReadyKey | None, limit: int
    ) -> list[tuple[TaskSummary, ReadyKey]]:
        p, c, n = after if after else (None, None, None)
        rows = self._all("list_ready", {
            "now": now, "caps": self._opt_list(caps), "tags": self._opt_list(tags),
            "after_priority": p, "after_created": c, "after_num": n, "limit": limit,
        })
        return list(readable(rows, _summary))

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
        rows = self._all("find_tasks", {
            "state": None if state is None else state.value, "assignee": assignee, "tag": tag, "text": text,
            "types": self._opt_list(types), "after_created": c, "after_num": n, "limit": limit,
        })
        return list(readable(rows, lambda r: (self._task(r), (r["created_at"], r["num"]))))

    def events_of_task(self, task_id: str, after: int, limit: int) -> list[Event]:
        rows = self._all("events_of_task", {"id": task_id, "after": after, "limit": limit})
        return [event_from_row(r) for r in rows]

    def latest_events_of_task(self, task_id: str, limit: int) -> list[Event]:
        return [event_from_row(r) for r in self._all("events_of_task_latest", {"id": task_id, "limit": limit})]

    def events_since(self, after: int, limit: int) -> list[Event]:
        return [event_from_row(r) for r in self._all("events_since", {"after": after, "limit": limit})]

    def last_seq(self) -> int:
        row = self._row("last_seq")
        return int(row["seq"]) if row and row["seq"] is not None else 0

    # ---- the aggregates
    def event_totals(self) -> list[EventCount]:
        return [EventCount(r["type"], r["from_state"], r["to_state"], int(r["n"])) for r in self._all("event_totals")]

    def task_totals(self) -> list[TaskTotal]:
        return [TaskTotal(r["type"], r["assignee"] or None, read_column(r, "state"), int(r["tasks"]), int(r["unblocked"]),
                          int(r["retries"]), int(r["tokens"]), int(r["api_calls"]), int(r["cost_micros"]))
                for r in self._all("task_totals")]

    def time_histogram(self) -> list[TimeBucket]:
        return [TimeBucket(r["dimension"], r["name"], r["measure"], int(r["bucket"]), int(r["tasks"]))
                for r in self._all("time_histogram")]

    def count_by_state(self) -> dict[State, int]:
        return {read_column(r, "state"): int(r["n"]) for r in self._all("count_by_state")}

    def failure_counts(self) -> list[tuple[str, str, str | None, int]]:
        return [(r["type"], r["actor"], r["holder"], int(r["n"])) for r in self._all("failure_counts")]

    def agent_states(self) -> list[tuple[str, str, int]]:
        return [(r["assignee"], str(r["state"]), int(r["n"])) for r in self._all("agent_states")]

    # ---- the board's reads
    def dependents_many(self, ids: list[str], limit: int) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self._all("dependents_many", {"ids": self._list(ids), "limit": limit}):
            out.setdefault(r["depends_on"], []).append(r["task_id"])
        return out

    def count_dependents(self, task_id: str) -> int:
        row = self._row("count_dependents", {"id": task_id})
        return int(row["n"]) if row else 0

    def task_nodes(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        return {r["id"]: (str(r["title"]), str(r["state"])) for r in self._all("task_nodes", {"ids": self._list(ids)})}

    def count_tasks(
        self, state: State | None, assignee: str | None, tag: str | None, text: str | None,
        types: list[str] | None, cap: int,
    ) -> int:
        row = self._row("count_tasks", {
            "state": None if state is None else state.value, "assignee": assignee, "tag": tag, "text": text,
            "types": self._opt_list(types), "cap": cap,
        })
        return int(row["n"]) if row else 0

    def events_page(
        self, before: int, task_id: str | None, actor: str | None, type: str | None, limit: int
    ) -> list[Event]:
        name = "events_page_of_task" if task_id else "events_page_of_actor" if actor else "events_page"
        rows = self._all(name, {"before": before, "task": task_id, "actor": actor, "type": type, "limit": limit})
        return [event_from_row(r) for r in rows]

    def actor_last_seen(self, actor: str) -> float | None:
        row = self._row("actor_last_seen", {"actor": actor})
        return None if row is None else float(row["at"])

    def recent_done_times(self, limit: int) -> list[tuple[str | None, float | None, float | None]]:
        return [(r["assignee"], r["wait_time"], r["work_time"]) for r in self._all("recent_done_times", {"limit": limit})]

    def event_time(self, seq: int) -> float | None:
        row = self._row("event_time", {"seq": seq})
        return None if row is None else float(row["at"])

    def chart_rows(self, after: int, upto: int, bucket: float) -> tuple[list[BucketCount], list[BucketTimes]]:
        p = {"after": after, "upto": upto, "bucket": bucket}
        counts = [BucketCount(float(r["bucket"]), r["type"], r["from_state"], r["to_state"], int(r["n"]))
                  for r in self._all("chart_transitions", p)]
        times = [BucketTimes(float(r["bucket"]), _number(r["wait_time"]), _number(r["work_time"]))
                 for r in self._all("chart_times", p)]
        return counts, times

    def blocked_by_failed(self, limit: int) -> list[tuple[str, str, State]]:
        rows = self._all("blocked_by_failed", {"limit": limit})
        return [(r["id"], r["dep"], read_column(r, "dep_state", r["dep"], "state")) for r in rows]

    def unmet_mismatches(self) -> list[tuple[str, int, int]]:
        return [(r["id"], r["unmet_deps"], r["actual"]) for r in self._all("unmet_mismatches")]

    def task_ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        return [r["id"] for r in self._all("task_ids_with_prefix", {"prefix": prefix, "limit": limit})]

    def assignees_with_prefix(self, prefix: str, limit: int) -> list[str]:
        return [r["assignee"] for r in self._all("assignees_with_prefix", {"prefix": prefix, "limit": limit})]

    def tasks_in_state(self, state: State, limit: int) -> list[Task]:
        return self._tasks("tasks_in_state", {"state": state.value, "limit": limit})

    def oldest_ready(self, now: float) -> float | None:
        row = self._row("oldest_ready", {"now": now})
        return None if row is None else row["created_at"]

    def next_backoff_end(self, now: float) -> float | None:
        row = self._row("next_backoff_end", {"now": now})
        return None if row is None else row["at"]

    def count_ready(self, now: float) -> int:
        row = self._row("count_ready", {"now": now})
        return 0 if row is None else int(row["n"])

    def ready_types(self, now: float, limit: int) -> dict[str, int]:
        return {r["type"]: int(r["n"]) for r in self._all("ready_types", {"now": now, "limit": limit})}

    def pending_outlook(self, now: float) -> tuple[int, int, int]:
        row = self._row("pending_outlook", {"now": now})
        return (0, 0, 0) if row is None else (int(row["backoff"]), int(row["waiting"]), int(row["blocked"]))

    # ---- writes
    def next_ready(self, now: float, caps: list[str] | None, tags: list[str] | None) -> Task | None:
        skipped: list[str] = []  # damaged rows: stepped over, each once
        while True:
            row = self._row("next_ready", {"now": now, "caps": self._opt_list(caps), "tags": self._opt_list(tags),
                                           "skip": self._list(skipped)})
            if row is None:
                return None
            found = list(readable([row], self._task))
            if found:
                return found[0]
            skipped.append(row["id"])

    def expired_leases(self, now: float, limit: int) -> list[Task]:
        return self._tasks("expired_leases", {"now": now, "limit": limit})

    def leases_from_the_future(self, now: float, shortest: float, default_length: float, limit: int) -> list[Task]:
        return self._tasks("leases_from_the_future",
                           {"now": now, "shortest": shortest, "default_length": default_length, "limit": limit})

    def backoffs_from_the_future(self, now: float, cap: float, limit: int) -> list[Task]:
        return self._tasks("backoffs_from_the_future", {"now": now, "cap": cap, "limit": limit})

    def insert_task(self, task: Task) -> None:
        self._insert_task(task_params(task))

    def update_task(self, task: Task, expected_version: int, expected_state: State) -> bool:
        params = task_params(task)
        params["expected_version"] = expected_version
        params["expected_state"] = expected_state.value
        del params["created_at"], params["created_by"]
        return self._count("update_task", params) == 1

    def add_dep(self, task_id: str, depends_on: str) -> None:
        self._count("insert_dep", {"task_id": task_id, "depends_on": depends_on})

    def remove_dep(self, task_id: str, depends_on: str) -> None:
        self._count("delete_dep", {"task_id": task_id, "depends_on": depends_on})

    def dependents(self, task_id: str) -> list[str]:
        return [r["task_id"] for r in self._all("dependents", {"id": task_id})]

    def lock_dependency_graph(self) -> None:
        self._all("lock_dependency_graph")

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
        return self._insert_event({
            "task_id": task_id, "type": type, "from_state": None if from_state is None else from_state.value,
            "to_state": None if to_state is None else to_state.value, "actor": actor, "at": at,
            "data": dumps(data),
        })

    def get_request(self, client: str, request_id: str) -> tuple[str, str, str] | None:
        row = self._row("get_request", {"client": client, "request_id": request_id})
        return None if row is None else (row["op"], row["args_hash"], row["response"])

    def put_request(
        self, client: str, request_id: str, actor: str, op: str, args_hash: str, response: str, at: float
    ) -> None:
        self._count("put_request", {
            "client": client, "request_id": request_id, "actor": actor, "op": op, "args_hash": args_hash,
            "response": response, "at": at,
        })

    def prune_requests(self, before: float) -> int:
        return self._count("prune_requests", {"before": before})

    # ---- verification
    # ---- bearer tokens
    def token_by_hash(self, token_hash: str) -> TokenInfo | None:
        row = self._row("token_by_hash", {"token_hash": token_hash})
        return None if row is None else _token(row)

    def list_tokens(self) -> list[TokenInfo]:
        return [_token(r) for r in self._all("token_list")]

    def live_tokens(self, now: float) -> int:
        row = self._row("tokens_live", {"now": now})
        return int(row["n"]) if row else 0

    def token_events(self, limit: int) -> list[TokenEvent]:
        out = []
        for r in self._all("token_events_latest", {"limit": limit}):
            data = r["data"]
            out.append(TokenEvent(id=r["id"], name=r["name"], type=r["type"], actor=r["actor"], at=r["at"],
                                  data=json.loads(data) if isinstance(data, str) else data))
        return out

    def create_token(self, token: TokenInfo, now: float) -> bool:
        params = {"name": token.name, "role": token.role.value, "token_hash": token.token_hash, "now": now,
                  "actor": token.created_by, "expires_at": token.expires_at}
        return self._count("token_create", params) > 0

    def revoke_token(self, name: str, actor: str, now: float) -> bool:
        return self._count("token_revoke", {"name": name, "actor": actor, "now": now}) > 0

    def touch_token(self, name: str, at: float) -> None:
        self._count("token_touch", {"name": name, "at": at})

    def append_token_event(self, name: str, type: str, actor: str, at: float, data: dict[str, Any]) -> None:
        self._count("token_event_insert", {"name": name, "type": type, "actor": actor, "at": at, "data": dumps(data)})

    # ---- export and import
    def registry_size(self) -> RegistrySize:
        r = self._row("registry_size")
        assert r is not None
        return RegistrySize(int(r["tasks"]), int(r["deps"]), int(r["events"]), int(r["unnumbered"]),
                            int(r["last_seq"]), int(r["high_water"] or 0), _number(r["last_at"]))

    def tasks_by_id(self, after: str, limit: int) -> list[Task]:
        rows = self._all("tasks_by_id", {"after": after, "limit": limit})
        deps = self._deps_of([r["id"] for r in rows])
        return [task_from_row(r, deps.get(r["id"], [])) for r in rows]

    def unnumbered_events(self, after: int, limit: int) -> list[tuple[int, Event]]:
        return [(int(r["pos"]), event_from_row(r)) for r in self._all("unnumbered_events", {"after": after, "limit": limit})]

    def import_tasks(self, rows: list[tuple[int, Task]]) -> None:
        self._many("import_task", [{**task_params(task), "num": num} for num, task in rows])

    def import_places(self, places: Sequence[tuple[str, int]]) -> None:
        self._many("import_place", [{"id": task_id, "num": num} for task_id, num in places])

    def import_deps(self, edges: Sequence[tuple[str, str]]) -> None:
        self._many("insert_dep", [{"task_id": t, "depends_on": d} for t, d in edges])

    def import_events(self, events: list[Event]) -> None:
        self._many("import_event", [{
            "seq": e.seq, "task_id": e.task_id, "type": e.type,
            "from_state": None if e.from_state is None else e.from_state.value,
            "to_state": None if e.to_state is None else e.to_state.value, "actor": e.actor, "at": e.at,
            "data": dumps(e.data),
        } for e in events])

    def import_counters(self, last_seq: int) -> None:
        self._all("import_counters", {"seq": last_seq})

    def _deps_of(self, ids: list[Any]) -> dict[str, list[str]]:
        deps: dict[str, list[str]] = {}
        for r in self._all("depends_on_of_tasks", {"ids": self._list([i for i in ids if isinstance(i, str)])}):
            deps.setdefault(r["task_id"], []).append(r["depends_on"])
        return deps

    def tasks_with_events(self, after: int, limit: int) -> list[TaskHistory]:
        return self._histories(self._all("tasks_page", {"after": after, "limit": limit}), [])

    def task_marks(self, every: int) -> list[int]:
        return [int(r["num"]) for r in self._all("task_marks", {"every": every})]

    def task_histories(self, ids: list[str]) -> list[TaskHistory]:
        return self._histories(self._all("tasks_of_ids", {"ids": self._list(ids)}), ids)

    def _histories(self, rows: list[Row], ids: list[str]) -> list[TaskHistory]:
        """`rows` with their dependencies and events, then the `ids` without a row, with their events."""
        found = [r["id"] for r in rows if isinstance(r["id"], str)]
        unfound = sorted(set(ids).difference(found))
        if not found and not unfound:
            return []
        wanted = self._list(found + unfound)
        deps = self._deps_of(found + unfound)
        events: dict[str, list[EventRecord]] = {}
        rows_of_events = self._tuples("events_of_tasks", {"ids": wanted})
        read = zip(map(_TASK_ID, rows_of_events), event_records(rows_of_events))
        for tid, group in groupby(read, key=_FIRST):  # by the task_id column as stored, read or not
            events.setdefault(tid, []).extend(map(_SECOND, group))
        out = []
        for r in rows:
            tid = r["id"] if isinstance(r["id"], str) else repr(r["id"])
            task: Task | CorruptRow
            try:
                task = task_from_row(r, deps.get(tid, []))
            except CorruptRow as exc:
                task = exc
            out.append(TaskHistory(r["num"], tid, task, events.get(tid, [])))
        return out + [TaskHistory(0, tid, None, events[tid]) for tid in unfound if tid in events]

    def tasks_touched_after(self, after: int, limit: int) -> list[TouchedTask]:
        rows = self._all("tasks_touched_after", {"after": after, "limit": limit})
        return [TouchedTask(str(r["task_id"]), int(r["last_seq"])) for r in rows]

    def event_seq_problems(self, limit: int, after: int | None = None) -> list[SeqRun]:
        head = self._row("event_seq_summary")
        count, first, last = (head["n"], head["first"], head["last"] or 0) if head else (0, None, 0)
        breaks: list[Row] = []
        if count != last or first not in (None, 1) or not (head and head["seq_is_key"]):
            span = {"first": -(2**63), "prev": 0} if after is None else {"first": after + 1, "prev": after}
            breaks = self._all("event_seq_breaks", {**span, "limit": limit})
        mark = self._row("event_seq_high_water")
        high = mark["seq"] if mark is not None and isinstance(mark["seq"], int) else 0
        return seq_runs(((r["prev"], r["seq"]) for r in breaks), last if after is None else max(last, after), high, limit)

    def event_tasks_without_row(self, after: str, limit: int) -> list[OrphanEvents]:
        rows = self._all("event_tasks_without_row", {"after": after, "limit": limit})
        return [OrphanEvents(str(r["task_id"]), int(r["n"]), r["first_seq"], r["last_seq"]) for r in rows]

    def deps_without_rows(self, after: tuple[str, str], limit: int) -> list[OrphanEdge]:
        rows = self._all("deps_without_rows", {"after_task": after[0], "after_dep": after[1], "limit": limit})
        return [
            OrphanEdge(str(r["task_id"]), str(r["depends_on"]), bool(r["task_has_row"]), bool(r["dependency_has_row"]))
            for r in rows
        ]


def _token(r: Row) -> TokenInfo:
    return TokenInfo.model_validate({k: r[k] for k in r.keys()})


def _summary(r: Row) -> tuple[TaskSummary, ReadyKey]:
    summary = TaskSummary.model_construct(
        id=r["id"], title=r["title"], type=r["type"], priority=r["priority"], tags=read_column(r, "tags"),
        created_at=r["created_at"], retry_count=r["retry_count"], has_checkpoint=bool(r["has_checkpoint"]),
    )
    return summary, (r["priority"], r["created_at"], r["num"])


def _number(value: Any) -> float | None:
    """A number read from an event's JSON, or None when it is missing or not a number."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
