"""What people look at: the board's views, each read in one transaction from indexed queries.

`Overviews` is a base of Registry, beside `Reads`: the web board (mcp_tasks/board) asks these
methods and renders what they return. Every list is bounded; nothing loads every task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from . import limits
from .charts import ChartFold, Charts, quantile
from .errors import InvalidInput, TaskNotFound
from .models import Event, Readiness, Task, TaskSummary
from .reading import Reads
from .rules import readiness
from .states import LEASED_STATES, State
from .stores.base import ReadTx

BOARD_LIST = 50  # rows in each of the board's lists
TIMELINE = 300  # a task page's latest events
GRAPH_HOPS = 2  # dependency neighbourhood, each way
GRAPH_WIDTH = 12  # tasks shown per hop and direction
COUNT_CAP = 10_000  # a search counts its matches up to this
AGENT_SAMPLE = 5_000  # finished tasks the agents page's percentiles are taken from
WORKING = (State.ACTIVE, State.ASSIGNED, State.PAUSED)  # held work; REVIEW has a list of its own


@dataclass
class BoardView:
    """The board: counts, the ready queue, held work by agent, review, dead letters, blocked work, news."""

    now: float
    last_seq: int
    counts: dict[State, int]
    ready: list[TaskSummary]
    ready_total: int
    oldest_ready: float | None
    held: dict[str, list[Task]]
    review: list[Task]
    dead: list[Task]
    blocked: list[tuple[str, str, State]]
    recent: list[Event]


@dataclass
class GraphView:
    """A task's dependency neighbourhood: (id, title, state, depth) nodes, (task, dependency) edges,
    and how many tasks each depth leaves out."""

    nodes: list[tuple[str, str, str, int]]
    edges: list[tuple[str, str]]
    more: dict[int, int]


@dataclass
class TaskView:
    """One task with why it is or is not ready, its latest events (oldest first) and its graph."""

    now: float
    last_seq: int
    task: Task
    readiness: Readiness
    events: list[Event]
    earlier_events: bool
    graph: GraphView
    needed_by: int  # how many tasks depend on it (the graph shows GRAPH_WIDTH of them)


@dataclass
class AgentRow:
    """One agent: what it holds, what it finished, failed and how fast, and when it last acted."""

    name: str
    holding: dict[State, int] = field(default_factory=dict)
    done: int = 0
    failed: int = 0
    expired: int = 0
    wait_p50: float | None = None
    wait_p95: float | None = None
    work_p50: float | None = None
    work_p95: float | None = None
    last_seen: float | None = None

    @property
    def held(self) -> int:
        """Tasks it holds now."""
        return sum(self.holding.get(s, 0) for s in WORKING)

    @property
    def success_rate(self) -> float | None:
        """Finished attempts over finished plus failed and expired ones."""
        attempts = self.done + self.failed + self.expired
        return None if attempts == 0 else self.done / attempts


@dataclass
class EventsView:
    """A page of the event log, newest first; `before` continues it (None: no older events)."""

    events: list[Event]
    before: int | None
    last_seq: int


@dataclass
class SearchView:
    """A page of tasks matching a search, with how many match (counted up to `cap`)."""

    tasks: list[Task]
    total: int
    capped: bool
    next_cursor: str | None


class Overviews(Reads):
    """The board's reads (a base of Registry)."""

    charts_fold: ChartFold | None = None

    async def board(self) -> BoardView:
        """Everything the board's front page shows, from one snapshot."""
        await self.store.settle()

        def run(tx: ReadTx) -> BoardView:
            now = self.now(tx)
            held: dict[str, list[Task]] = {}
            for state in WORKING:
                for t in tx.tasks_in_state(state, BOARD_LIST):
                    held.setdefault(t.assignee or "?", []).append(t)
            last = tx.last_seq()
            tx_counts = tx.count_by_state()
            return BoardView(
                now=now, last_seq=last, counts={s: tx_counts.get(s, 0) for s in State},
                ready=[s for s, _ in tx.list_ready(now, None, None, None, BOARD_LIST // 2)],
                ready_total=tx.count_ready(now), oldest_ready=tx.oldest_ready(now),
                held=dict(sorted(held.items())), review=tx.tasks_in_state(State.REVIEW, BOARD_LIST),
                dead=tx.tasks_in_state(State.FAILED, BOARD_LIST), blocked=tx.blocked_by_failed(BOARD_LIST),
                recent=tx.events_page(last + 1, None, None, None, 15),
            )

        return await self.store.read(run)

    async def task_view(self, task_id: str) -> TaskView:
        """One task's page: the task, its readiness, latest events and dependency neighbourhood."""
        tid = limits.task_id("task id", task_id)
        await self.store.settle()

        def run(tx: ReadTx) -> TaskView | None:
            task = tx.get_task(tid)  # its dependents come bounded, with the graph
            if task is None:
                return None
            now = self.now(tx)
            events = tx.latest_events_of_task(tid, TIMELINE + 1)
            return TaskView(now=now, last_seq=tx.last_seq(), task=task, readiness=readiness(task, tx.dependency_states(tid), now),
                            events=events[-TIMELINE:], earlier_events=len(events) > TIMELINE,
                            graph=_neighbourhood(tx, task), needed_by=tx.count_dependents(tid))

        found = await self.store.read(run)
        if found is None:
            raise TaskNotFound(f"no task has id {tid}")
        return found

    async def search(
        self, *, state: str | None = None, agent: str | None = None, type: str | None = None,
        tag: str | None = None, text: str | None = None, cursor: str | None = None, limit: int = 50,
        types: list[str] | None = None,
    ) -> SearchView:
        """Tasks matching every filter given, newest first, with their number; `types` (any of
        them) instead of one `type`."""
        kinds = types or ([type] if type else None)
        page = await self.find(state=state, assignee=agent, tag=tag, text=text, types=kinds, limit=limit, cursor=cursor)
        st = State(state.upper()) if state else None
        who = None if agent is None else limits.agent(agent, "agent")
        total = await self.store.read(lambda tx: tx.count_tasks(st, who, tag, text or None, kinds, COUNT_CAP + 1))
        return SearchView(tasks=page.items, total=min(total, COUNT_CAP), capped=total > COUNT_CAP,
                          next_cursor=page.next_cursor)

    async def event_log(
        self, *, task_id: str | None = None, agent: str | None = None, type: str | None = None,
        before: int | None = None, limit: int = 100,
    ) -> EventsView:
        """A page of the event log, newest first, filtered by task, agent (actor) and type."""
        tid = None if not task_id else limits.task_id("task", task_id)
        who = None if not agent else limits.agent(agent, "agent")
        kind = None if not type else limits.name("type", type)
        upto = None if before is None else limits.integer("before", before, 1, 2**62)
        n = limits.integer("limit", limit, 1, limits.MAX_EVENT_PAGE)
        await self.store.settle()

        def run(tx: ReadTx) -> EventsView:
            last = tx.last_seq()
            events = tx.events_page(upto or last + 1, tid, who, kind, n + 1)
            more = len(events) > n
            return EventsView(events=events[:n], before=events[n - 1].seq if more else None, last_seq=last)

        return await self.store.read(run)

    async def agents(self) -> list[AgentRow]:
        """Every agent that has held a task, busiest first."""
        rows = await self.store.read(_agent_rows)
        return sorted(rows.values(), key=lambda r: (-r.held, -r.done, r.name))

    async def agent_view(self, name: str) -> tuple[AgentRow, list[Task], EventsView]:
        """One agent: its row, the tasks it holds or held last (newest first) and its latest events."""
        who = limits.agent(name, "agent")
        rows = await self.store.read(lambda tx: _agent_rows(tx, only=who))
        tasks = await self.find(assignee=who, limit=50)
        events = await self.event_log(agent=who, limit=50)
        row = rows.get(who)
        if row is None and not tasks.items and not events.events:
            raise InvalidInput(f"no agent named {who!r} has held a task or recorded an event")
        return row or AgentRow(name=who), tasks.items, events

    async def charts(self, hours: int = 24) -> Charts:
        """Throughput, wait and work percentiles and queue depth by state, per hour, from the log."""
        n = limits.integer("hours", hours, 1, 24 * 14)
        if self.charts_fold is None:
            self.charts_fold = ChartFold()
        return await self.charts_fold.read(self.store, n, self.now)


def _agent_rows(tx: ReadTx, only: str | None = None) -> dict[str, AgentRow]:
    rows: dict[str, AgentRow] = {}

    def row(name: str) -> AgentRow:
        found = rows.get(name)
        if found is None:
            found = rows[name] = AgentRow(name=name)
        return found

    for agent, state, n in tx.agent_states():
        if only is not None and agent != only:
            continue
        try:
            st = State(state)
        except ValueError:
            continue  # an unreadable row: verify reports it
        row(agent).holding[st] = n
        if st is State.DONE:
            row(agent).done = n
    for kind, actor, holder, n in tx.failure_counts():
        who = holder if isinstance(holder, str) else actor
        if not isinstance(who, str) or (only is not None and who != only) or who not in rows:
            continue
        if kind == "failed":
            rows[who].failed += n
        elif kind == "lease_expired":
            rows[who].expired += n
    times: dict[str, tuple[list[float], list[float]]] = {}
    for holder, wait, work in tx.recent_done_times(AGENT_SAMPLE):
        if holder is not None and holder in rows:
            w = times.setdefault(holder, ([], []))
            if wait is not None:
                w[0].append(wait)
            if work is not None:
                w[1].append(work)
    for name, (waits, works) in times.items():
        r = rows[name]
        r.wait_p50, r.wait_p95 = quantile(waits, 0.5), quantile(waits, 0.95)
        r.work_p50, r.work_p95 = quantile(works, 0.5), quantile(works, 0.95)
    for name in sorted(rows)[:500]:
        rows[name].last_seen = tx.actor_last_seen(name)
    return rows


def _neighbourhood(tx: ReadTx, task: Task) -> GraphView:
    """Up to GRAPH_HOPS hops of dependencies and dependents, GRAPH_WIDTH tasks per hop and way."""
    depth: dict[str, int] = {task.id: 0}
    edges: set[tuple[str, str]] = set()
    more: dict[int, int] = {}
    for sign in (-1, 1):
        frontier = [task.id]
        for hop in range(1, GRAPH_HOPS + 1):
            links = tx.depends_on_many(frontier) if sign < 0 else tx.dependents_many(frontier, GRAPH_WIDTH * 4)
            found: list[str] = []
            for src in frontier:
                for other in links.get(src, []):
                    edges.add((src, other) if sign < 0 else (other, src))
                    if other not in depth and other not in found:
                        found.append(other)
            shown = found[:GRAPH_WIDTH]
            total = tx.count_dependents(task.id) if (sign, hop) == (1, 1) else len(found)
            if total > len(shown):
                more[sign * hop] = total - len(shown)
            for other in shown:
                depth[other] = sign * hop
            frontier = shown
            if not frontier:
                break
    labels = tx.task_nodes(list(depth))
    nodes = [(i, labels.get(i, ("?", "?"))[0], labels.get(i, ("?", "?"))[1], d)
             for i, d in sorted(depth.items(), key=lambda x: (x[1], x[0]))]
    kept = {(a, b) for a, b in edges if a in depth and b in depth}
    return GraphView(nodes=nodes, edges=sorted(kept), more=more)


def lease_left(task: Task, now: float) -> float | None:
    """Seconds left on a held task's lease (None when it holds none)."""
    if task.state not in LEASED_STATES or task.lease_expires_at is None:
        return None
    return max(0.0, task.lease_expires_at - now)
