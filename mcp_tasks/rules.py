"""Pure rules shared by the registry, replay and every view: no I/O, no SQL.

Readiness is defined here once; tools, CLI and dashboard all ask `readiness`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Mapping

from .limits import MAX_ERROR_LOG, MAX_LEASE_SECONDS, MIN_LEASE_SECONDS
from .models import Readiness, Task
from .states import State

FAILED_WORK = frozenset({State.CANCELLED, State.FAILED})


@dataclass(frozen=True)
class Policy:
    """Tunable timings of leases, retries and the reaper."""

    lease_seconds: float = 600.0
    lease_min: float = MIN_LEASE_SECONDS
    lease_max: float = MAX_LEASE_SECONDS
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    reap_batch: int = 100
    request_ttl: float = 48 * 3600.0  # request_ids are kept at least this long

    def __post_init__(self) -> None:
        if not MIN_LEASE_SECONDS <= self.lease_min <= self.lease_seconds <= self.lease_max <= MAX_LEASE_SECONDS:
            raise ValueError(
                f"lease lengths must satisfy {MIN_LEASE_SECONDS} <= lease_min <= lease_seconds <= lease_max <= "
                f"{MAX_LEASE_SECONDS}; got {self.lease_min}, {self.lease_seconds}, {self.lease_max}"
            )


def backoff(retry_count: int, policy: Policy, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `retry_count` (1-based): capped exponential, jittered."""
    exp = min(retry_count - 1, 60)
    delay = min(policy.backoff_cap, policy.backoff_base * (2.0**exp))
    r = (rng or random).random()
    return delay * (0.5 + 0.5 * r)  # "equal jitter": never less than half the step


def readiness(task: Task, dep_states: Mapping[str, State], now: float) -> Readiness:
    """Whether `task` can be claimed now, and if not, what it waits for."""
    waiting = sorted(d for d, s in dep_states.items() if s != State.DONE)
    failed = sorted(d for d, s in dep_states.items() if s in FAILED_WORK)
    if task.state != State.PENDING:
        reason = f"task is {task.state.value}, only PENDING tasks can be claimed"
        return Readiness(ready=False, reason=reason, waiting_on=waiting, failed_deps=failed)
    if failed:
        reason = "blocked by failed work: " + ", ".join(f"{d} ({dep_states[d].value})" for d in failed)
        return Readiness(ready=False, reason=reason, waiting_on=waiting, failed_deps=failed)
    if task.unmet_deps > 0:
        shown = ", ".join(f"{d} ({dep_states[d].value})" for d in waiting[:10]) or "unknown"
        reason = f"waiting for {task.unmet_deps} dependencies: {shown}"
        return Readiness(ready=False, reason=reason, waiting_on=waiting)
    if task.not_before is not None and task.not_before > now:
        reason = f"retry backoff: claimable in {task.not_before - now:.1f}s"
        return Readiness(ready=False, reason=reason, not_before=task.not_before)
    return Readiness(ready=True, reason="ready")


def done_times(task: Task, completed_at: float) -> dict[str, float | None]:
    """wait/work/cycle times recorded when a task reaches DONE (DESIGN 3.6); never negative, even
    when the wall clock stepped back between the moments they span."""
    started = task.started_at
    return {
        "wait_time": None if started is None else max(0.0, started - task.created_at),
        "work_time": None if started is None else max(0.0, completed_at - started),
        "cycle_time": max(0.0, completed_at - task.created_at),
    }


def error_entry(at: float, error: str, attempt: int, retryable: bool, by: str) -> dict[str, Any]:
    """One entry of a task's error_log."""
    return {"at": at, "error": error, "attempt": attempt, "retryable": retryable, "by": by}


def append_error(log: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The error_log with `entry` added, keeping the newest MAX_ERROR_LOG entries."""
    return [*log, entry][-MAX_ERROR_LOG:]
