"""One error root for everything the registry refuses.

Each error carries data (task id, current state, actions allowed now) and renders a message an
LLM can act on. The MCP layer maps these to tool errors in one place.
"""

from __future__ import annotations

import json
from typing import Any

from .states import State, allowed_actions


class TaskError(Exception):
    """Root of every refusal. `code` is stable and machine-readable."""

    code = "error"

    def __init__(
        self,
        problem: str,
        *,
        task_id: str | None = None,
        state: State | None = None,
        allowed: list[str] | None = None,
        **data: Any,
    ) -> None:
        self.problem = problem
        self.task_id = task_id
        self.state = state
        if allowed is None and state is not None:
            allowed = allowed_actions(state)
        self.allowed = allowed
        self.data = data
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = self.problem.rstrip(".") + "."
        if self.task_id is not None and self.state is not None:
            text += f" Task {self.task_id} is {self.state.value}"
            text += f"; allowed now: {', '.join(self.allowed)}." if self.allowed else "; nothing more can be done with it."
        return text

    def to_dict(self) -> dict[str, Any]:
        """Structured form for clients and logs: code, message, task_id, state, allowed, then the data."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.task_id is not None:
            out["task_id"] = self.task_id
        if self.state is not None:
            out["state"] = self.state.value
            out["allowed"] = self.allowed
        for key, value in self.data.items():
            out.setdefault(key, json.loads(json.dumps(value, default=str)))
        return out


class InvalidInput(TaskError):
    """An argument is malformed or out of bounds; nothing was changed."""

    code = "invalid_input"


class TaskNotFound(TaskError):
    """No task has this id."""

    code = "not_found"


class InvalidTransition(TaskError):
    """The action is not allowed from the task's current state."""

    code = "invalid_transition"


class NotReady(TaskError):
    """The task is PENDING but cannot be claimed yet (dependencies or retry backoff)."""

    code = "not_ready"


class LeaseError(TaskError):
    """The caller's lease token is missing, stale, foreign or expired (fencing)."""

    code = "lease"


class VersionConflict(TaskError):
    """expected_version does not match; someone else changed the task first."""

    code = "version_conflict"


class DependencyError(TaskError):
    """Unknown dependency ids or a dependency cycle; `path` names the offending chain."""

    code = "dependency"


class IdempotencyConflict(TaskError):
    """A request_id was reused with different arguments."""

    code = "idempotency_conflict"


class Forbidden(TaskError):
    """The caller may not do this (e.g. reviewing their own work)."""

    code = "forbidden"


class RoleRequired(Forbidden):
    """The caller's role is too small for the operation; `role_needed` names the least role that may."""

    code = "role_required"


class RateLimited(TaskError):
    """Too many requests for one token; `retry_after` says in how many seconds to try again."""

    code = "rate_limited"


class TokenError(TaskError):
    """A token operation was refused (a live token of that name exists, no such token...)."""

    code = "token"


class ImportRefused(InvalidInput):
    """An export file cannot be imported (`line` names the offending line, None when the target
    registry is the problem); nothing was changed."""

    code = "import_refused"


class StoreError(TaskError):
    """The database failed, not the request: nothing was changed. Drivers' errors become one of
    the subclasses below, once, in the store; nothing above the store sees a driver exception."""

    code = "store"
    retryable = False


class StoreBusy(StoreError):
    """The database stayed locked or kept conflicting with other writers; retry shortly."""

    code = "busy"
    retryable = True


class StoreFull(StoreError):
    """The database or its disk is full; writes are refused until space returns, reads still work."""

    code = "full"
    retryable = True


class StoreReadOnly(StoreError):
    """The database can be read but not written (file permissions, a read-only mount)."""

    code = "read_only"


class StoreUnavailable(StoreError):
    """The database cannot be opened or reached (missing, not a database, permissions, I/O)."""

    code = "unavailable"
    retryable = True


class StoreCorrupt(StoreError):
    """The database file is damaged, or holds something this version cannot read."""

    code = "corrupt"


class CorruptRow(StoreCorrupt):
    """One stored task or event cannot be read (`column` names the field); other tasks are unharmed."""

    code = "corrupt_row"


class DamagedHistory(TaskError):
    """A task's events cannot rebuild it: one cannot be read, or some are missing or out of place
    (`seq` names the event where replay stopped). `mcp-tasks verify` lists every such problem."""

    code = "damaged_history"
