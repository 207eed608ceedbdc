"""Task states and the transition table: defined once, checked at import, rendered for docs.

Every other module asks this one which moves are legal (`edge`, `allowed_actions`) instead of
keeping its own list of states.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum


class State(str, Enum):
    """The ten states a task can be in."""

    BACKLOG = "BACKLOG"
    PENDING = "PENDING"
    ASSIGNED = "ASSIGNED"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    REVIEW = "REVIEW"
    APPROVED = "APPROVED"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Edge:
    """One allowed move: `action` takes a task from `source` to `target`."""

    source: State
    target: State
    action: str
    note: str = ""


B, P, AS, AC, PA, R, AP, D, F, C = (
    State.BACKLOG, State.PENDING, State.ASSIGNED, State.ACTIVE, State.PAUSED,
    State.REVIEW, State.APPROVED, State.DONE, State.FAILED, State.CANCELLED,
)

# The source design's table, kept whole.
SOURCE_EDGES: tuple[Edge, ...] = (
    Edge(B, P, "schedule"),
    Edge(P, AS, "claim"),
    Edge(P, C, "cancel"),
    Edge(AS, AC, "start"),
    Edge(AS, C, "cancel"),
    Edge(AC, D, "complete"),
    Edge(AC, F, "fail", "also when an ACTIVE lease expires"),
    Edge(AC, PA, "pause"),
    Edge(PA, AC, "resume"),
    Edge(PA, C, "cancel"),
    Edge(F, P, "retry", "automatic while retries are left; by hand for dead letters"),
)

# Extensions, each needed by a real situation (DESIGN 2).
EXTENSION_EDGES: tuple[Edge, ...] = (
    Edge(AS, P, "release", "also when an ASSIGNED lease expires"),
    Edge(AC, R, "complete", "when the task requires review"),
    Edge(R, AP, "review", "approve; the reviewer is not the assignee"),
    Edge(AP, D, "review", "same step as the approval"),
    Edge(R, AC, "review", "changes requested; back to the assignee"),
    Edge(B, C, "cancel"),
    Edge(F, C, "cancel"),
    Edge(AC, C, "cancel", "by an admin, to stop running work; the holder's next call hears why"),
)

EDGES: tuple[Edge, ...] = SOURCE_EDGES + EXTENSION_EDGES

INITIAL_STATES = frozenset({State.BACKLOG, State.PENDING})
TERMINAL_STATES = frozenset({State.DONE, State.CANCELLED})
# States in which a claimer holds a running lease that the reaper watches.
LEASED_STATES = frozenset({State.ASSIGNED, State.ACTIVE})
# States of work not started yet, waiting for its dependencies: a dependency that failed or was
# cancelled (rules.FAILED_WORK) blocks it, and the board lists it as blocked by failed work.
WAITING_STATES = frozenset({State.BACKLOG, State.PENDING})
# States in which a task belongs to its assignee: the lease from the latest claim still identifies
# them, with or without a running expiry (APPROVED passes to DONE in the approving transaction).
HELD_STATES = frozenset({State.ASSIGNED, State.ACTIVE, State.PAUSED, State.REVIEW})

# Actions that are not moves but are legal only in some states.
STATE_BOUND_ACTIONS: dict[str, frozenset[State]] = {
    "checkpoint": frozenset({State.ACTIVE}),
    "update_task": frozenset(set(State) - TERMINAL_STATES),
}
# Cancelling work its holder has started needs the operation "cancel_held" (admin) besides "cancel".
CANCEL_HELD_STATES = frozenset({State.ACTIVE, State.PAUSED})
# Dependencies may be rewired only while the task has not started.
DEPENDENCY_EDIT_STATES = frozenset({State.BACKLOG, State.PENDING, State.FAILED})

_BY_SOURCE: dict[State, dict[str, tuple[State, ...]]] = {}
for _e in EDGES:
    _BY_SOURCE.setdefault(_e.source, {}).setdefault(_e.action, ())
    _BY_SOURCE[_e.source][_e.action] += (_e.target,)


def targets(source: State, action: str) -> tuple[State, ...]:
    """States that `action` may lead to from `source` (empty when the action is illegal there)."""
    return _BY_SOURCE.get(source, {}).get(action, ())


def is_edge(source: State, target: State) -> bool:
    """True when the table has a move from `source` to `target`."""
    return any(e.source == source and e.target == target for e in EDGES)


def allowed_actions(state: State) -> list[str]:
    """What a caller may do to a task in `state`, for error messages and views."""
    actions = set(_BY_SOURCE.get(state, {}))
    actions |= {a for a, states in STATE_BOUND_ACTIONS.items() if state in states}
    return sorted(actions)


def _reachable(starts: frozenset[State] | set[State]) -> set[State]:
    """Every state some path of edges leads to from `starts` (the starts included)."""
    seen = set(starts)
    queue = deque(starts)
    while queue:
        s = queue.popleft()
        for e in EDGES:
            if e.source == s and e.target not in seen:
                seen.add(e.target)
                queue.append(e.target)
    return seen


def _check_table() -> None:
    """Refuse to import a table with unreachable states or dead ends."""
    unreachable = set(State) - _reachable(INITIAL_STATES)
    if unreachable:
        raise AssertionError(f"unreachable states in the transition table: {sorted(unreachable)}")
    for s in set(State) - TERMINAL_STATES:
        if not _reachable({s}) & TERMINAL_STATES:
            raise AssertionError(f"dead end in the transition table: {s} never reaches a terminal state")
    for t in TERMINAL_STATES:
        if t in _BY_SOURCE:
            raise AssertionError(f"terminal state {t} has outgoing edges")
    if len(set(EDGES)) != len(EDGES):
        raise AssertionError("duplicate edge in the transition table")


_check_table()


def render_markdown() -> str:
    """The transition table as a Markdown table (README, dashboard)."""
    lines = ["| from | action | to | note |", "|---|---|---|---|"]
    order = {s: i for i, s in enumerate(State)}
    for e in sorted(EDGES, key=lambda e: (order[e.source], order[e.target])):
        lines.append(f"| {e.source} | {e.action} | {e.target} | {e.note} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- roles


class Role(str, Enum):
    """What a caller may do; cumulative: each role may do everything the ones before it may."""

    VIEWER = "viewer"
    AGENT = "agent"
    PLANNER = "planner"
    ADMIN = "admin"

    def __str__(self) -> str:
        return self.value

    def may(self, operation: str) -> bool:
        """Whether this role may perform `operation` (a key of ROLE_NEEDED)."""
        return _RANK[self] >= _RANK[role_needed(operation)]


_RANK = {role: rank for rank, role in enumerate(Role)}

# The least role each operation needs: the one table MCP, the CLI and the board are checked against.
# Reading (tasks, events, the board, metrics) needs only viewer. An agent works only its own
# leases: the lease token, not the role, decides whose task it is.
ROLE_NEEDED: dict[str, Role] = {
    **dict.fromkeys(("read", "list_available", "get_task", "find_tasks"), Role.VIEWER),
    **dict.fromkeys(("claim", "start", "checkpoint", "complete", "fail", "pause", "resume", "release",
                     "create_tasks"), Role.AGENT),
    **dict.fromkeys(("update_task", "schedule", "cancel", "retry", "review"), Role.PLANNER),
    **dict.fromkeys(("force_release", "cancel_held", "manage_tokens"), Role.ADMIN),
}

ROLE_DUTIES: dict[Role, str] = {
    Role.VIEWER: "read tasks, events, the board and metrics",
    Role.AGENT: "+ claim and work its own leases (start, checkpoint, complete, fail, pause, resume, release), "
                "create tasks",
    Role.PLANNER: "+ update, schedule, cancel, retry, review",
    Role.ADMIN: "+ force-release held work, cancel started (ACTIVE or PAUSED) work, manage tokens",
}


def role_needed(operation: str) -> Role:
    """The least role that may perform `operation`; an operation missing from the table needs admin."""
    return ROLE_NEEDED.get(operation, Role.ADMIN)


def render_roles_markdown() -> str:
    """The role table as Markdown (README)."""
    lines = ["| role | may |", "|---|---|"]
    lines += [f"| {role} | {ROLE_DUTIES[role]} |" for role in Role]
    return "\n".join(lines)
