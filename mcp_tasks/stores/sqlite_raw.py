"""The registry's claim SQL on a bare sqlite3 connection: the reference for benchmarks.

It runs exactly the statements a registry claim runs (reap scan, pick, dependencies, compare-
and-set update, event insert) inside BEGIN IMMEDIATE ... COMMIT, with no threads, no models
and no rules, so `mcp-tasks bench` can report what the registry costs on top of the database.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time

from . import sql_files


def connect(path: str, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection configured like the store's."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30, cached_statements=256)
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
        row = conn.execute(q["next_ready"], {"now": now, "caps": None, "tags": None}).fetchone()
        if row is None:
            conn.execute("COMMIT")
            break
        conn.execute(q["task_depends_on"], {"id": row["id"]}).fetchall()
        params = dict(row)
        del params["num"], params["created_at"], params["created_by"]
        token = secrets.token_urlsafe(18)
        params.update(
            state="ASSIGNED", assignee=agent, assigned_at=now, lease_hash=token, lease_expires_at=now + 600,
            lease_seconds=600.0, version=row["version"] + 1, updated_at=now,
            expected_version=row["version"], expected_state=row["state"],
        )
        conn.execute(q["update_task"], params)
        data = {"set": {"assignee": agent, "assigned_at": now, "lease_hash": token,
                        "lease_expires_at": now + 600, "lease_seconds": 600.0, "not_before": None}}
        conn.execute(q["insert_event"], {
            "task_id": row["id"], "type": "claimed", "from_state": "PENDING", "to_state": "ASSIGNED",
            "actor": agent, "at": now, "data": json.dumps(data),
        })
        conn.execute("COMMIT")
        claimed += 1
    return claimed
