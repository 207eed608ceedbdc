"""The registry service: the async API that tools, CLI and dashboard call.

It validates arguments, runs one transaction script per call (transactions.py) on the store,
makes retries by request_id idempotent, and tells listeners which tasks changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any, Callable, TypeVar


from . import arguments as A
from . import limits
from . import planning as P
from . import transactions as T
from .errors import IdempotencyConflict, InvalidInput, TaskNotFound
from .health import Health, run_forever, sleep
from .ids import lease_hash, new_task_id
from .models import Caller, Claim, Created, Difference, Event, NewTask, Page, Readiness, Task, TaskSummary, Usage
from .replay import fold
from .rules import Policy, readiness
from .states import State
from .stores.base import IdCollision, ReadTx, Store, WriteTx
from .verification import PAGE, verify as verify_store

log = logging.getLogger(__name__)
R = TypeVar("R")
Listener = Callable[[set[str]], None]


class Registry:
    """One task registry over one store. Methods are safe to call concurrently."""

    def __init__(
        self,
        store: Store,
        *,
        agent: str = "local",
        policy: Policy | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        id_factory: Callable[[], str] = new_task_id,
    ) -> None:
        self.store = store
        self.agent = limits.agent(agent)
        self.policy = policy or Policy()
        self.clock = clock  # None: the store's clock (the database server's on PostgreSQL)
        self.rng = rng or random.Random()
        self.new_id = id_factory
        self._listeners: list[Listener] = []
        self._last_prune = -1e18
        self.health = Health()

    def now(self, tx: ReadTx) -> float:
        """The time inside transaction `tx`: the registry's own clock if it was given one (tests),
        else the store's, so every host of a shared database reads one clock."""
        return self.clock() if self.clock is not None else tx.now()

    async def __aenter__(self) -> Registry:
        await self.store.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(task_ids)` after every committed change made through this registry."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # ------------------------------------------------------------ plumbing
    def _caller(self, actor: str | Caller | None) -> Caller:
        """The caller; a bare name (library and CLI use) is its own client scope."""
        if actor is None:
            return Caller(self.agent, self.agent)
        if isinstance(actor, Caller):
            return Caller(limits.agent(actor.agent), actor.client)
        name = limits.agent(actor)
        return Caller(name, name)

    async def _write(
        self,
        op: str,
        actor: str | Caller | None,
        request_id: str | None,
        args: dict[str, Any],
        script: Callable[[T.Tx], R],
        decode: Callable[[Any], R] | None = None,
        current: Callable[[WriteTx, Any], bool] | None = None,
    ) -> R:
        """Run `script` in one write transaction as `actor`, remembering the answer under
        (client, request_id): a repeat returns the first answer and changes nothing. `current(tx,
        stored)` decides whether a stored answer may still be replayed; when it says no, the
        request id is free again and the call runs as new (a claim whose lease has ended)."""
        caller = self._caller(actor)
        rid = None if request_id is None else limits.text("request_id", request_id, limits.MAX_REQUEST_ID, required=True)
        digest = ""
        if rid is not None:
            canon = json.dumps(args, sort_keys=True, separators=(",", ":"), default=A.canon)
            digest = hashlib.sha256(f"{op}\n{canon}".encode()).hexdigest()

        def run(tx: WriteTx) -> tuple[R, set[str]]:
            if rid is not None:
                prior = tx.get_request(caller.client, rid)
                if prior is not None:
                    prior_op, prior_hash, response = prior
                    value = json.loads(response)
                    stale = prior_op == op and current is not None and not current(tx, value)
                    if not stale:
                        if prior_op != op or prior_hash != digest:
                            raise IdempotencyConflict(
                                f"request_id {rid!r} was already used for a different {prior_op} call; "
                                "use a new request_id for a new request",
                                request_id=rid,
                            )
                        return (decode(value) if decode else value), set()
            t = T.Tx(tx=tx, now=self.now(tx), actor=caller.agent, policy=self.policy, rng=self.rng)
            result = script(t)
            if rid is not None:  # even an answer that changed nothing is the answer to this request
                tx.put_request(caller.client, rid, caller.agent, op, digest, A.encode(result), t.now)
            return result, t.changed

        result, changed = await self.store.write(run)
        if changed:
            self._notify(changed)
        return result

    def _notify(self, changed: set[str]) -> None:
        for listener in list(self._listeners):
            try:
                listener(changed)
            except Exception:  # a broken listener must not fail the caller's committed change
                log.exception("change listener failed")

    # ------------------------------------------------------------ creating and planning
    async def create_tasks(
        self,
        tasks: list[NewTask | dict[str, Any]],
        *,
        ready: bool = True,
        actor: str | Caller | None = None,
        request_id: str | None = None,
    ) -> Created:
        """Create a batch; depends_on may name existing ids or keys of this batch. All or nothing."""
        specs = A.batch(tasks)
        args = {"tasks": [s.model_dump() for s in specs], "ready": bool(ready)}
        for _ in range(5):
            ids = [self.new_id() for _ in specs]
            try:
                return await self._write(
                    "create_tasks", actor, request_id, args,
                    lambda t: P.create_tasks(t, specs, ids, bool(ready)), Created.model_validate,
                )
            except IdCollision:
                continue
        raise RuntimeError("could not draw unique task ids")  # pragma: no cover

    async def schedule(self, task_ids: list[str], *, actor: str | Caller | None = None, request_id: str | None = None) -> list[Task]:
        """Move BACKLOG tasks to PENDING."""
        if not isinstance(task_ids, list) or not task_ids:
            raise InvalidInput("task_ids must be a non-empty list of task ids")
        if len(task_ids) > limits.MAX_BATCH:
            raise InvalidInput(f"task_ids has {len(task_ids)} items; at most {limits.MAX_BATCH} allowed")
        ids = list(dict.fromkeys(limits.task_id("task_ids item", i) for i in task_ids))
        return await self._write(
            "schedule", actor, request_id, {"ids": ids}, lambda t: P.schedule(t, ids), A.task_list
        )

    async def update(
        self,
        task_id: str,
        *,
        expected_version: int | None = None,
        add_depends_on: list[str] | None = None,
        remove_depends_on: list[str] | None = None,
        actor: str | Caller | None = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> Task:
        """Edit title, description, type, priority, tags, requires_review, max_retries; rewire deps."""
        tid = limits.task_id("task_id", task_id)
        unknown = sorted(set(fields) - set(A.UPDATABLE))
        if unknown:
            raise InvalidInput(f"cannot update {', '.join(unknown)}; updatable fields: {', '.join(A.UPDATABLE)}")
        clean = A.fields({k: v for k, v in fields.items() if v is not None})
        if expected_version is not None:
            limits.integer("expected_version", expected_version, 1, 2**62)
        add = [limits.task_id("add_depends_on item", d) for d in (add_depends_on or [])]
        remove = [limits.task_id("remove_depends_on item", d) for d in (remove_depends_on or [])]
        if len(add) > limits.MAX_DEPENDS or len(remove) > limits.MAX_DEPENDS:
            raise InvalidInput(f"at most {limits.MAX_DEPENDS} dependencies can be added or removed at once")
        args = {"id": tid, "v": expected_version, "fields": clean, "add": add, "remove": remove}
        return await self._write(
            "update_task", actor, request_id, args,
            lambda t: P.update(t, tid, expected_version, clean, add, remove), Task.model_validate,
        )

    async def cancel(
        self, task_id: str, reason: str, *, expected_version: int | None = None,
        actor: str | Caller | None = None, request_id: str | None = None,
    ) -> Task:
        """Cancel work that is not running (BACKLOG, PENDING, ASSIGNED, PAUSED, FAILED)."""
        tid = limits.task_id("task_id", task_id)
        why = limits.text("reason", reason, limits.MAX_TEXT, required=True)
        if expected_version is not None:
            limits.integer("expected_version", expected_version, 1, 2**62)
        return await self._write(
            "cancel", actor, request_id, {"id": tid, "reason": why, "v": expected_version},
            lambda t: T.cancel(t, tid, why, expected_version), Task.model_validate,  # type: ignore[arg-type]
        )

    async def retry(self, task_id: str, *, actor: str | Caller | None = None, request_id: str | None = None) -> Task:
        """Put a dead-lettered (FAILED) task back in the queue now."""
        tid = limits.task_id("task_id", task_id)
        return await self._write("retry", actor, request_id, {"id": tid}, lambda t: T.retry(t, tid), Task.model_validate)

    async def review(
        self, task_id: str, approve: bool, comment: str | None = None, *,
        actor: str | Caller | None = None, request_id: str | None = None,
    ) -> Task:
        """Approve a task in REVIEW (it becomes DONE) or send it back to its assignee."""
        tid = limits.task_id("task_id", task_id)
        if not isinstance(approve, bool):
            raise InvalidInput("approve must be true or false")
        text = limits.text("comment", comment, limits.MAX_TEXT)
        return await self._write(
            "review", actor, request_id, {"id": tid, "approve": approve, "comment": text},
            lambda t: T.review(t, tid, approve, text), Task.model_validate,
        )

    # ------------------------------------------------------------ agents
    async def list_available(
        self,
        *,
        capabilities: list[str] | None = None,
        tags: list[str] | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page[TaskSummary]:
        """Ready tasks in claim order (priority, then age), filtered by type and tags."""
        caps = limits.names("capabilities", capabilities, limits.MAX_TAGS) or None
        want = limits.names("tags", tags, limits.MAX_TAGS) or None
        n = limits.integer("limit", limit, 1, limits.MAX_PAGE)
        after = A.cursor_decode("r", cursor, 3)
        rows = await self.store.read(lambda tx: tx.list_ready(self.now(tx), caps, want, after, n + 1))
        items = [s for s, _ in rows[:n]]
        nxt = A.cursor_encode("r", rows[n - 1][1]) if len(rows) > n else None
        return Page[TaskSummary](items=items, next_cursor=nxt)

    async def claim(
        self,
        task_id: str | None = None,
        *,
        capabilities: list[str] | None = None,
        tags: list[str] | None = None,
        lease_seconds: float | None = None,
        actor: str | Caller | None = None,
        request_id: str | None = None,
    ) -> Claim | None:
        """Claim the named task, or the best ready one matching the filters (None if none is ready)."""
        tid = None if task_id is None else limits.task_id("task_id", task_id)
        caps = limits.names("capabilities", capabilities, limits.MAX_TAGS) or None
        want = limits.names("tags", tags, limits.MAX_TAGS) or None
        length = None
        if lease_seconds is not None:
            length = limits.number("lease_seconds", lease_seconds, self.policy.lease_min, self.policy.lease_max)
        args = {"id": tid, "caps": caps, "tags": want, "lease": length}
        return await self._write(
            "claim", actor, request_id, args, lambda t: T.claim(t, tid, caps, want, length),
            lambda v: None if v is None else Claim.model_validate(v), _claim_still_held,
        )

    async def start(self, task_id: str, lease: str, *, actor: str | Caller | None = None, request_id: str | None = None) -> Task:
        """ASSIGNED -> ACTIVE; renews the lease."""
        tid, tok = limits.task_id("task_id", task_id), A.lease(lease)
        return await self._write("start", actor, request_id, {"id": tid, "lease": lease_hash(tok)}, lambda t: T.start(t, tid, tok), Task.model_validate)

    async def checkpoint(
        self, task_id: str, lease: str, data: Any = None, note: str | None = None, progress: int | None = None,
        *, actor: str | Caller | None = None, request_id: str | None = None,
    ) -> Task:
        """Save resumable state and progress; renews the lease (use it as the heartbeat)."""
        tid, tok = limits.task_id("task_id", task_id), A.lease(lease)
        payload = limits.json_value("data", data)
        text = limits.text("note", note, limits.MAX_TEXT)
        pct = None if progress is None else limits.integer("progress", progress, 0, 100)
        args = {"id": tid, "lease": lease_hash(tok), "data": payload, "note": text, "progress": pct}
        return await self._write(
            "checkpoint", actor, request_id, args, lambda t: T.checkpoint(t, tid, tok, payload, text, pct),
            Task.model_validate,
        )

    async def complete(
        self, task_id: str, lease: str, result: Any = None, artifacts: list[str] | None = None,
        usage: Usage | dict[str, Any] | None = None, *, actor: str | Caller | None = None, request_id: str | None = None,
    ) -> Task:
        """ACTIVE -> DONE (or REVIEW when review is required), with result, artifacts and usage."""
        tid, tok = limits.task_id("task_id", task_id), A.lease(lease)
        res = limits.json_value("result", result)
        arts = limits.artifacts(artifacts)
        use = A.usage(usage)
        args = {"id": tid, "lease": lease_hash(tok), "result": res, "artifacts": arts,
                "usage": None if use is None else use.model_dump()}
        return await self._write(
            "complete", actor, request_id, args, lambda t: T.complete(t, tid, tok, res, arts, use), Task.model_validate
        )

    async def fail(
        self, task_id: str, lease: str, error: str, retryable: bool = True,
        *, actor: str | Caller | None = None, request_id: str | None = None,
    ) -> Task:
        """Report failure; retried after a backoff while retries are left, else dead-lettered."""
        tid, tok = limits.task_id("task_id", task_id), A.lease(lease)
        err = limits.text("error", error, limits.MAX_TEXT, required=True)
        if not isinstance(retryable, bool):
            raise InvalidInput("retryable must be true or false")
        return await self._write(
            "fail", actor, request_id, {"id": tid, "lease": lease_hash(tok), "error": err, "retryable": retryable},
            lambda t: T.fail(t, tid, tok, err, retryable), Task.model_validate,  # type: ignore[arg-type]
        )

    async def pause(
        self, task_id: str, lease: str, reason: str, *, actor: str | Caller | None = None, request_id: str | None = None
    ) -> Task:
        """ACTIVE -> PAUSED; the lease stops running until resume."""
        tid, tok = limits.task_id("task_id", task_id), A.lease(lease)
        why = limits.text("reason", reason, limits.MAX_TEXT, required=True)
        return await self._write(
            "pause", actor, request_id, {"id": tid, "lease": lease_hash(tok), "reason": why},
            lambda t: T.pause(t, tid, tok, why), Task.model_validate,  # type: ignore[arg-type]
        )

    async def resume(self, task_id: str, lease: str, *, actor: str | Caller | None = None, request_id: str | None = None) -> Task:
        """PAUSED -> ACTIVE; the lease runs again."""
        tid, tok = limits.task_id("task_id", task_id), A.lease(lease)
        return await self._write("resume", actor, request_id, {"id": tid, "lease": lease_hash(tok)}, lambda t: T.resume(t, tid, tok), Task.model_validate)

    async def release(
        self, task_id: str, lease: str, reason: str | None = None, *, actor: str | Caller | None = None, request_id: str | None = None
    ) -> Task:
        """ASSIGNED -> PENDING: give a claimed task back before starting it."""
        tid, tok = limits.task_id("task_id", task_id), A.lease(lease)
        why = limits.text("reason", reason, limits.MAX_TEXT)
        return await self._write(
            "release", actor, request_id, {"id": tid, "lease": lease_hash(tok), "reason": why},
            lambda t: T.release(t, tid, tok, why), Task.model_validate,
        )

    # ------------------------------------------------------------ maintenance
    async def reap(self) -> list[str]:
        """Expire leases that ran out now (the server also does this every few seconds)."""
        started = time.monotonic()
        prune = started - self._last_prune > 3600

        def run(tx: Any) -> tuple[list[str], set[str]]:
            t = T.Tx(tx=tx, now=self.now(tx), actor=T.REAPER, policy=self.policy, rng=self.rng)
            T.undo_clock_steps(t, self.policy.reap_batch)
            reaped = T.reap(t, self.policy.reap_batch)
            if prune:
                tx.prune_requests(t.now - self.policy.request_ttl)
            return reaped, t.changed

        reaped, changed = await self.store.write(run)
        if prune:
            self._last_prune = started
        if changed:
            self._notify(changed)
        return reaped

    async def run_reaper(self, interval: float = 5.0) -> None:
        """Reap every `interval` seconds until cancelled. Errors never end it: each is logged as one
        line and recorded in `health`, and reaping resumes by itself once the cause is gone."""
        if getattr(self.store, "read_only", False):
            self.health.note("reaper", "reaper off: the database is read-only, so this server does not expire leases")
            log.warning("the database is read-only: this server serves reads and does not reap expired leases")
            return

        async def sweep() -> None:
            while len(await self.reap()) >= self.policy.reap_batch:
                pass

        await run_forever("reaper", sweep, sleep, interval, self.health)

    # ------------------------------------------------------------ reading
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

    async def verify(self, *, batch: int = PAGE) -> list[Difference]:
        """Every problem with the stored tasks and the event log (empty when there is none): each
        row replayed from its events, rows and edges the log cannot explain, holes in the event
        sequence, unmet_deps counters (verification.py)."""
        return await verify_store(self.store, batch=batch)

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


def _claim_still_held(tx: WriteTx, stored: Any) -> bool:
    """A stored claim answer is replayed only while its lease still holds the task; an answer that
    found nothing is never replayed (asking again is a new question)."""
    if not isinstance(stored, dict):
        return False
    task = tx.get_task(stored["task"]["id"])
    return task is not None and task.lease_end is None and task.lease_hash == lease_hash(stored["lease"])

