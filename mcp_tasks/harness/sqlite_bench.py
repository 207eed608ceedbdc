"""The registry's SQL on a bare sqlite3 connection: the references and bulk paths of `mcp-tasks bench`.

`claim_loop` runs exactly the statements a registry claim runs (reap scan, pick, dependencies,
compare-and-set update, event insert) inside BEGIN IMMEDIATE ... COMMIT, with no threads, no
models and no rules, so the bench can report what the registry costs on top of the database.
`naive_list_ready` is what listing ready work costs without the maintained unmet_deps counter.
`append_history` builds large benchmark databases quickly; the rows and events it writes are the
ones the registry would write, so `Registry.verify()` passes on them. The bench's own queries are
in storage/sqlite/bench.sql.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from ..ids import lease_hash, new_lease_token
from ..stores import sql_files
from ..stores.rows import dumps
from ..stores.sqlite_file import with_math
from .naive import fetch_batches, first_ready

LEASE_SECONDS = 600.0


def connect(path: str, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection configured like the store's."""
    conn = with_math(sqlite3.connect(path, isolation_level=None, timeout=30, cached_statements=256))
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def claim_loop(conn: sqlite3.Connection, count: int, agent: str = "raw") -> int:
    """Claim up to `count` ready tasks one transaction each; returns how many were claimed."""
    q = sql_files.queries("sqlite")
    claimed = 0
    for _ in range(count):
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(q["expired_leases"], {"now": now, "limit": 100}).fetchall()
        row = conn.execute(q["next_ready"], {"now": now, "caps": None, "tags": None, "skip": "[]"}).fetchone()
        if row is None:
            conn.execute("COMMIT")
            break
        conn.execute(q["task_depends_on"], {"id": row["id"]}).fetchall()
        params = dict(row)
        del params["num"], params["created_at"], params["created_by"]
        lease = lease_hash(new_lease_token())
        params.update(
            state="ASSIGNED", assignee=agent, assigned_at=now, lease_hash=lease, lease_expires_at=now + LEASE_SECONDS,
            lease_seconds=LEASE_SECONDS, not_before=None, version=row["version"] + 1, updated_at=now,
            expected_version=row["version"], expected_state=row["state"],
        )
        conn.execute(q["update_task"], params)
        data = {"set": {"assignee": agent, "assigned_at": now, "lease_hash": lease,
                        "lease_expires_at": now + LEASE_SECONDS, "lease_seconds": LEASE_SECONDS, "not_before": None},
                "lease_seconds": LEASE_SECONDS}
        conn.execute(q["insert_event"], {
            "task_id": row["id"], "type": "claimed", "from_state": "PENDING", "to_state": "ASSIGNED",
            "actor": agent, "at": now, "data": json.dumps(data),
        })
        conn.execute("COMMIT")
        claimed += 1
    return claimed


def naive_list_ready(conn: sqlite3.Connection, now: float, limit: int) -> list[str]:
    """Ids of the first `limit` ready tasks, found without the unmet_deps counter.

    Walks PENDING tasks in claim order and asks for each one's dependency states (one query
    per task) until `limit` tasks have every dependency DONE: what list_available would cost
    in a store that does not maintain the counter.
    """
    q = sql_files.queries("sqlite")
    candidates = conn.cursor().execute(sql_files.queries("sqlite", "bench.sql")["bench_naive_pending"], {"now": now})
    try:
        return first_ready(fetch_batches(candidates),
                           lambda tid: conn.execute(q["dependency_states"], {"id": tid}).fetchall(), limit)
    finally:
        candidates.close()


def _history(row: sqlite3.Row, checkpoints: int, agent: str, step: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The update_task parameters and events of one task claimed, started, checkpointed and completed.

    The `set` of each event lists the fields the registry's transaction scripts assign, in their
    order, so replaying the events gives the row written here.
    """
    tid, t = row["id"], row["created_at"]
    events: list[dict[str, Any]] = []
    state = row["state"]
    task = dict(row)

    def emit(kind: str, to_state: str | None, fields: dict[str, Any], info: dict[str, Any] | None = None) -> None:
        nonlocal state
        task.update(fields)
        data = {"set": fields, **(info or {})}
        events.append({"task_id": tid, "type": kind, "from_state": state, "to_state": to_state,
                       "actor": agent, "at": t, "data": dumps(data)})
        state = to_state or state

    t += step
    lease = lease_hash(new_lease_token())
    emit("claimed", "ASSIGNED", {"assignee": agent, "assigned_at": t, "lease_hash": lease,
                                 "lease_expires_at": t + LEASE_SECONDS, "lease_seconds": LEASE_SECONDS,
                                 "not_before": None}, {"lease_seconds": LEASE_SECONDS})
    t += step
    started = t
    emit("started", "ACTIVE", {"started_at": started, "lease_expires_at": t + LEASE_SECONDS})
    for i in range(checkpoints):
        t += step
        progress = min(99, (i + 1) * 100 // (checkpoints + 1))
        emit("checkpoint", None, {
            "checkpoint_timestamp": t, "lease_expires_at": t + LEASE_SECONDS,
            "checkpoint_data": {"step": i + 1, "of": checkpoints, "cursor": f"{tid}/{i + 1}", "files": ["src/a.py"]},
            "checkpoint_note": f"step {i + 1} of {checkpoints} done", "progress": progress,
        })
    t += step
    emit("completed", "DONE", {
        "result": {"summary": f"finished {row['title']}", "steps": checkpoints}, "artifacts": [],
        "completed_at": t, "lease_expires_at": None, "wait_time": started - row["created_at"],
        "work_time": t - started, "cycle_time": t - row["created_at"], "lease_hash": None,
    })
    params = {k: v for k, v in task.items() if k not in ("num", "created_at", "created_by")}
    for col in ("checkpoint_data", "result"):
        params[col] = None if params[col] is None else dumps(params[col])
    params["artifacts"] = dumps(params["artifacts"]) if isinstance(params["artifacts"], list) else params["artifacts"]
    params.update(state="DONE", version=row["version"] + len(events), updated_at=t,
                  expected_version=row["version"], expected_state=row["state"])
    return params, events


def append_history(conn: sqlite3.Connection, events: int, per_task: int = 20, agent: str = "bench-agent") -> int:
    """Give ready tasks that nobody depends on a finished history until `events` events are added.

    Each task gets claimed, started, `per_task - 3` checkpoints and completed (DONE), written in
    large transactions. Returns how many events were written (fewer if tasks ran out).
    """
    q = sql_files.queries("sqlite")
    per_task = max(3, per_task)
    wanted = -(-events // per_task)
    rows = conn.execute(sql_files.queries("sqlite", "bench.sql")["bench_history_candidates"], {"limit": wanted}).fetchall()
    written = 0
    for start in range(0, len(rows), 2000):
        conn.execute("BEGIN IMMEDIATE")
        try:
            updates, inserts = [], []
            for row in rows[start:start + 2000]:
                left = events - written
                if left < 3:
                    break
                params, evs = _history(row, min(per_task, left) - 3, agent, 0.01)
                updates.append(params)
                inserts.extend(evs)
                written += len(evs)
            conn.executemany(q["update_task"], updates)
            conn.executemany(q["insert_event"], inserts)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return written


def counts(conn: sqlite3.Connection) -> tuple[int, int]:
    """(tasks, events) in the database."""
    q = sql_files.queries("sqlite", "bench.sql")
    return conn.execute(q["bench_count_tasks"]).fetchone()[0], conn.execute(q["bench_count_events"]).fetchone()[0]
