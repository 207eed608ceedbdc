"""The registry's reads: tasks, the event log, counts and verification (a base of Registry).

Every read runs as one store read transaction; readers of the log by seq settle the store first
(on PostgreSQL, events get their place in the log's order after they commit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from . import arguments as A
from . import limits
from .errors import InvalidInput, TaskNotFound
from .models import Event, Page, Readiness, Task
from .replay import fold
from .rules import readiness
from .states import State
from .stores.base import ReadTx, Store
from .verification import PAGE, Findings, verify as verify_store


class Reads:
    """What every caller may read (the viewer role): Registry's read methods."""

    store: Store

    def now(self, tx: ReadTx) -> float:
        """The time inside transaction `tx` (Registry.now)."""
        raise NotImplementedError

    async def get(self, task_id: str) -> Task:
        """One task with its dependencies and the tasks it blocks."""
        tid = limits.task_id("task_id", task_id)
        task = await self.store.read(lambda tx: tx.get_task(tid, with_blocks=True))
        if task is None:
            raise TaskNotFound(f"no task has id {tid}")
        return task

    async def get_with_context(self, task_id: str, events: int = 0) -> tuple[Task, Readiness, list[Event]]:
        """A task, why it is or is not claimable, and its latest `events` events, in one read."""
        tid = limits.task_id("task_id", task_id)
        n = limits.integer("events", events, 0, limits.MAX_EVENT_PAGE)
        if n:
            await self.store.settle()

        def run(tx: ReadTx) -> tuple[Task, Readiness, list[Event]] | None:
            task = tx.get_task(tid, with_blocks=True)
            if task is None:
                return None
            ready = readiness(task, tx.dependency_states(tid), self.now(tx))
            return task, ready, tx.latest_events_of_task(tid, n) if n else []

        found = await self.store.read(run)
        if found is None:
            raise TaskNotFound(f"no task has id {tid}")
        return found

    async def find(
        self,
        *,
        state: State | str | None = None,
        assignee: str | None = None,
        tag: str | None = None,
        text: str | None = None,
        types: list[str] | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page[Task]:
        """Tasks matching all the given filters, newest first."""
        st = None
        if state is not None:
            try:
                st = State(state.upper() if isinstance(state, str) else state)
            except ValueError:
                raise InvalidInput(f"state {state!r} is not a state; states: {', '.join(s.value for s in State)}") from None
        who = None if assignee is None else limits.agent(assignee, "assignee")
        tg = None if tag is None else limits.name("tag", tag)
        q = limits.text("text", text, limits.MAX_TITLE) or None
        kinds = limits.names("types", types, limits.MAX_TAGS) or None
        n = limits.integer("limit", limit, 1, limits.MAX_PAGE)
        after = A.cursor_decode("f", cursor, 2)
        rows = await self.store.read(lambda tx: tx.find_tasks(st, who, tg, q, after, n + 1, kinds))
        nxt = A.cursor_encode("f", rows[n - 1][1]) if len(rows) > n else None
        return Page[Task](items=[t for t, _ in rows[:n]], next_cursor=nxt)

    async def events(self, task_id: str, *, after: int = 0, limit: int = 100) -> list[Event]:
        """A task's events in order, after sequence number `after`."""
        tid = limits.task_id("task_id", task_id)
        a = limits.integer("after", after, 0, 2**62)
        n = limits.integer("limit", limit, 1, limits.MAX_EVENT_PAGE)
        await self.store.settle()
        return await self.store.read(lambda tx: tx.events_of_task(tid, a, n))

    async def events_since(self, seq: int = 0, *, limit: int = 100) -> list[Event]:
        """Events of all tasks with sequence number greater than `seq`, oldest first."""
        a = limits.integer("seq", seq, 0, 2**62)
        n = limits.integer("limit", limit, 1, limits.MAX_EVENT_PAGE)
        await self.store.settle()
        return await self.store.read(lambda tx: tx.events_since(a, n))

    async def event_pages(
        self, after: int = 0, *, task_id: str | None = None, page: int = limits.MAX_EVENT_PAGE
    ) -> AsyncIterator[list[Event]]:
        """Every event after sequence number `after` (only `task_id`'s when given), page by page in
        order, until the log as it is now has been read."""
        tid = None if task_id is None else limits.task_id("task_id", task_id)
        seq = limits.integer("after", after, 0, 2**62)
        n = limits.integer("page", page, 1, limits.MAX_EVENT_PAGE)
        await self.store.settle()
        while True:
            if tid is None:
                events = await self.store.read(lambda tx: tx.events_since(seq, n))
            else:
                events = await self.store.read(lambda tx: tx.events_of_task(tid, seq, n))
            if events:
                yield events
                seq = events[-1].seq
            if len(events) < n:
                return

    async def last_seq(self) -> int:
        """Sequence number of the newest event (0 when there are none)."""
        await self.store.settle()
        return await self.store.read(lambda tx: tx.last_seq())

    async def replay(self, task_id: str) -> Task:
        """The task rebuilt from its events alone: TaskNotFound when it has none, DamagedHistory
        when they cannot rebuild it (an unreadable event, earlier events missing)."""
        tid = limits.task_id("task_id", task_id)
        task = fold([e async for page in self.event_pages(task_id=tid) for e in page])
        if task is None:
            raise TaskNotFound(f"no events for task {tid}")
        return task

    async def verify(self, *, batch: int = PAGE, since: int | None = None, jobs: int | None = 1) -> Findings:
        """Every problem with the stored tasks and the event log (empty when there is none): each
        row replayed from its events, rows and edges the log cannot explain, holes in the event
        sequence, unmet_deps counters (verification.py). With `since` (a seq), only the tasks that
        events numbered after it name, each whole, and the sequence after it. `jobs`: processes
        that replay the rows of a whole check (None: one per core on a large registry)."""
        after = None if since is None else limits.integer("since", since, 0, 2**62)
        count = None if jobs is None else limits.integer("jobs", jobs, 1, 64)
        return await verify_store(self.store, batch=batch, since=after, jobs=count)

    async def counts(self) -> dict[State, int]:
        """Number of tasks in each state (every state present, zero included)."""
        found = await self.store.read(lambda tx: tx.count_by_state())
        return {s: found.get(s, 0) for s in State}

    async def complete_ids(self, prefix: str, limit: int = 50) -> list[str]:
        """Task ids starting with `prefix` (for completions). No id holds a NUL, which PostgreSQL
        cannot take in a text parameter: such a prefix completes to nothing."""
        if not isinstance(prefix, str) or len(prefix) > 40 or "\x00" in prefix:
            return []
        return await self.store.read(lambda tx: tx.task_ids_with_prefix(prefix, limit))

    async def complete_agents(self, prefix: str, limit: int = 50) -> list[str]:
        """Agent names (assignees) starting with `prefix` (for completions; none holds a NUL)."""
        if not isinstance(prefix, str) or len(prefix) > limits.MAX_AGENT or "\x00" in prefix:
            return []
        return await self.store.read(lambda tx: tx.assignees_with_prefix(prefix, limit))
