"""Read-side summaries for people: the board and the metrics (DESIGN 3.6).

Used by the MCP resources, the CLI `stats` command and the dashboard alike.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pydantic import BaseModel

from .registry import Registry
from .states import HELD_STATES, State
from .aggregates import histogram_quantile
from .display import iso


class Board(BaseModel):
    """Who holds what, what is stuck, and how much is queued."""

    counts: dict[str, int]
    ready: int
    oldest_ready_age_s: float | None
    held: dict[str, list[dict[str, Any]]]
    dead_letters: list[dict[str, Any]]
    blocked_by_failed: list[dict[str, Any]]


async def board(reg: Registry, limit: int = 100) -> Board:
    """The board: counts by state, held work by agent, dead letters, work blocked by failures."""
    def read(tx: Any) -> tuple[Any, ...]:
        now = reg.now(tx)
        held = [t for s in sorted(HELD_STATES, key=list(State).index) for t in tx.tasks_in_state(s, limit)]
        dead = tx.tasks_in_state(State.FAILED, limit)
        return (now, tx.count_by_state(), held, dead, tx.blocked_by_failed(limit), tx.oldest_ready(now),
                tx.count_ready(now))

    now, counts, held, dead, blocked, oldest, ready = await reg.store.read(read)
    by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in held:
        by_agent[t.assignee or "-"].append({"id": t.id, "title": t.title, "state": t.state.value,
                                             "lease_expires_at": iso(t.lease_expires_at)})
    return Board(
        counts={s.value: counts.get(s, 0) for s in State},
        ready=ready,
        oldest_ready_age_s=None if oldest is None else round(max(0.0, now - oldest), 3),
        held=dict(sorted(by_agent.items())),
        dead_letters=[{"id": t.id, "title": t.title, "retry_count": t.retry_count,
                       "last_error": t.error_log[-1]["error"] if t.error_log else None} for t in dead],
        blocked_by_failed=[{"id": tid, "dependency": dep, "dependency_state": st.value} for tid, dep, st in blocked],
    )


class ClaimOutlook(BaseModel):
    """What the open work waits for, when a claim found nothing ready for the caller."""

    counts: dict[State, int]
    now: float  # when the queue was looked at, by the registry's clock
    ready_elsewhere: dict[str, int]  # ready tasks by type (all of them outside the caller's filters)
    ready_readable: bool  # whether any ready task can be read at all (damaged rows are stepped over)
    backoff: int  # PENDING, waiting out a retry backoff
    next_backoff_end: float | None
    waiting: int  # PENDING, waiting for dependencies still in progress
    blocked: int  # PENDING, blocked by a CANCELLED or dead-lettered dependency


async def claim_outlook(reg: Registry, limit: int = 1000) -> ClaimOutlook:
    """Why nothing was ready: counts by state, ready work by type, and what PENDING work waits for."""
    def read(tx: Any) -> tuple[Any, ...]:
        now = reg.now(tx)
        readable = bool(tx.list_ready(now, None, None, None, 1))
        return (now, tx.count_by_state(), tx.ready_types(now, limit), readable, tx.pending_outlook(now),
                tx.next_backoff_end(now))

    now, counts, ready, readable, (backoff, waiting, blocked), backoff_end = await reg.store.read(read)
    return ClaimOutlook(now=now, counts={s: counts.get(s, 0) for s in State}, ready_elsewhere=ready,
                        ready_readable=readable,
                        backoff=backoff, next_backoff_end=backoff_end, waiting=waiting, blocked=blocked)


class Metrics(BaseModel):
    """Aggregates by agent and by type, queue depth by state, and the oldest ready task's age."""

    by_agent: dict[str, dict[str, Any]]
    by_type: dict[str, dict[str, Any]]
    queue: dict[str, int]
    oldest_ready_age_s: float | None


def _group() -> dict[str, Any]:
    return {"done": 0, "failed": 0, "lease_expiries": 0, "retries": 0, "times": defaultdict(dict),
            "tokens": 0, "api_calls": 0, "cost": 0}  # cost in millionths until finished


def _pct(buckets: dict[int, int], q: float) -> float | None:
    found = histogram_quantile(buckets, q)
    return None if found is None else round(found, 3)


async def metrics(reg: Registry) -> Metrics:
    """Done, failed, success rate, p50/p95 times, retries, lease expiries and usage, from the
    store's aggregates (the same few hundred rows at any size); the times' percentiles are the
    histograms' estimates (mcp_tasks/aggregates.py)."""
    def read(tx: Any) -> tuple[Any, ...]:
        now = reg.now(tx)
        return (now, tx.task_totals(), tx.time_histogram(), tx.failure_counts(), tx.count_by_state(),
                tx.oldest_ready(now))

    now, totals, histogram, failures, counts, oldest = await reg.store.read(read)
    agents: dict[str, dict[str, Any]] = defaultdict(_group)
    types: dict[str, dict[str, Any]] = defaultdict(_group)
    for t in totals:
        if t.state == State.DONE:
            for g in (agents[t.assignee or "-"], types[t.type]):
                g["done"] += t.tasks
                g["tokens"] += t.tokens
                g["api_calls"] += t.api_calls
                g["cost"] += t.cost_micros
        types[t.type]["retries"] += t.retries
        if t.state == State.FAILED:
            types[t.type]["failed"] += t.tasks
    for b in histogram:
        group = agents[b.name or "-"] if b.dimension == "agent" else types[b.name]
        group["times"][b.measure][b.bucket] = b.tasks
    for kind, actor, holder, n in failures:
        if kind == "failed":
            agents[actor]["failed"] += n
        elif kind == "lease_expired":
            agents[holder or "-"]["lease_expiries"] += n
        elif holder is not None:  # a retry after this agent's attempt failed or its lease expired
            agents[holder]["retries"] += n

    def finish(g: dict[str, Any], attempts: int) -> dict[str, Any]:
        times = g.pop("times")
        g["success_rate"] = None if attempts == 0 else round(g["done"] / attempts, 4)
        g["cycle_p50"], g["cycle_p95"] = _pct(times["cycle"], 0.5), _pct(times["cycle"], 0.95)
        g["work_p50"], g["work_p95"] = _pct(times["work"], 0.5), _pct(times["work"], 0.95)
        g["cost"] = round(g["cost"] / 1e6, 6)
        return g

    return Metrics(
        by_agent={a: finish(g, g["done"] + g["failed"] + g["lease_expiries"]) for a, g in sorted(agents.items())},
        by_type={t: finish(g, g["done"] + g["failed"]) for t, g in sorted(types.items())},
        queue={s.value: counts.get(s, 0) for s in State},
        oldest_ready_age_s=None if oldest is None else round(max(0.0, now - oldest), 3),
    )
