"""The registry service: the async API that tools, CLI and dashboard call.

It validates arguments, runs one transaction script per call (transactions.py) on the store,
makes retries by request_id idempotent, and tells listeners which tasks changed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
import time
from typing import Any, Callable, TypeVar, cast

from . import arguments as A
from . import limits
from . import planning as P
from . import transactions as T
from .errors import IdempotencyConflict, InvalidInput, RoleRequired
from .health import Health, run_forever, sleep
from .ids import lease_hash, new_task_id
from .models import Caller, Claim, Created, NewTask, Page, Task, TaskSummary, Usage
from .overview import Overviews
from .rules import Policy
from .states import role_needed
from .stores.base import IdCollision, ReadTx, Store, WriteTx
from .telemetry import Telemetry, TracedStore

log = logging.getLogger(__name__)
R = TypeVar("R")
Listener = Callable[[set[str]], None]


F = TypeVar("F", bound=Callable[..., Any])


def requires(operation: str) -> Callable[[F], F]:
    """Refuse a caller whose role may not perform `operation` before anything else is looked at
    (`Registry.authorize`); `_write` checks again, for any write without this decorator."""

    def wrap(method: F) -> F:
        @functools.wraps(method)
        async def checked(self: Registry, *args: Any, **kwargs: Any) -> Any:
            self.authorize(kwargs.get("actor"), operation)
            return await method(self, *args, **kwargs)

        return cast(F, checked)

    return wrap


class Registry(Overviews):
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
        self.telemetry = Telemetry()  # traces; per-process metrics when a server attaches them (telemetry.py)
        self.store: Store = TracedStore(store, self.telemetry)
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
            return Caller(limits.agent(actor.agent), actor.client, actor.role)
        name = limits.agent(actor)
        return Caller(name, name)

    def authorize(self, actor: str | Caller | None, operation: str) -> Caller:
        """The caller, if its role may perform `operation` (the role table in states.py); else
        RoleRequired naming the role needed."""
        caller = self._caller(actor)
        if not caller.role.may(operation):
            needed = role_needed(operation)
            raise RoleRequired(
                f"{operation} needs the {needed} role; {caller.agent} has the {caller.role} role. "
                f"Ask an admin for a token with the {needed} role", role_needed=needed.value, role=caller.role.value,
            )
        return caller

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
        caller = self.authorize(actor, op)
        rid = None if request_id is None else limits.text("request_id", request_id, limits.MAX_REQUEST_ID, required=True)
        digest = ""
        if rid is not None:
            canon = json.dumps(args, sort_keys=True, separators=(",", ":"), default=A.canon)
            digest = hashlib.sha256(f"{op}\n{canon}".encode()).hexdigest()

        def run(tx: WriteTx) -> tuple[R, T.Tx | None]:
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
                        return (decode(value) if decode else value), None
            t = T.Tx(tx=tx, now=self.now(tx), actor=caller.agent, policy=self.policy, rng=self.rng)
            result = script(t)
            if rid is not None:  # even an answer that changed nothing is the answer to this request
                tx.put_request(caller.client, rid, caller.agent, op, digest, A.encode(result), t.now)
            return result, t

        result, t = await self.telemetry.write(op, caller, args.get("id"), self.store.write(run))
        if t is not None and t.changed:
            self._notify(t.changed)
        return result

    def _notify(self, changed: set[str]) -> None:
        for listener in list(self._listeners):
            try:
                listener(changed)
            except Exception:  # a broken listener must not fail the caller's committed change
                log.exception("change listener failed")

    # ------------------------------------------------------------ creating and planning
    @requires("create_tasks")
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

    @requires("schedule")
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

    @requires("update_task")
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

    @requires("cancel")
    async def cancel(
        self, task_id: str, reason: str, *, expected_version: int | None = None,
        actor: str | Caller | None = None, request_id: str | None = None,
    ) -> Task:
        """Cancel work (BACKLOG, PENDING, ASSIGNED, FAILED); work its holder has started (ACTIVE,
        PAUSED) only as admin ("cancel_held"): the holder's next call is refused with the reason."""
        tid = limits.task_id("task_id", task_id)
        why = limits.text("reason", reason, limits.MAX_TEXT, required=True) or ""
        if expected_version is not None:
            limits.integer("expected_version", expected_version, 1, 2**62)
        return await self._write(
            "cancel", actor, request_id, {"id": tid, "reason": why, "v": expected_version},
            lambda t: T.cancel(t, tid, why, expected_version, lambda: self.authorize(actor, "cancel_held")),
            Task.model_validate,
        )

    @requires("retry")
    async def retry(self, task_id: str, *, actor: str | Caller | None = None, request_id: str | None = None) -> Task:
        """Put a dead-lettered (FAILED) task back in the queue now."""
        tid = limits.task_id("task_id", task_id)
        return await self._write("retry", actor, request_id, {"id": tid}, lambda t: T.retry(t, tid), Task.model_validate)

    @requires("review")
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

    @requires("claim")
    async def claim(
        self,
        task_id: str | None = None,
        *,
        capabilities: list[str] | None = None,
        tags: list[str] | None = None,
        lease_seconds: float | None = None,
        start: bool = False,
        actor: str | Caller | None = None,
        request_id: str | None = None,
    ) -> Claim | None:
        """Claim the named task, or the best ready one matching the filters (None if none is ready);
        with `start`, start it in the same transaction, so the answer holds it ACTIVE."""
        if not isinstance(start, bool):
            raise InvalidInput("start must be true or false")
        if start:
            self.authorize(actor, "start")
        tid = None if task_id is None else limits.task_id("task_id", task_id)
        caps = limits.names("capabilities", capabilities, limits.MAX_TAGS) or None
        want = limits.names("tags", tags, limits.MAX_TAGS) or None
        length = None
        if lease_seconds is not None:
            length = limits.number("lease_seconds", lease_seconds, self.policy.lease_min, self.policy.lease_max)
        args: dict[str, Any] = {"id": tid, "caps": caps, "tags": want, "lease": length}
        if start:  # only then: a plain claim's request digest stays what it was
            args["start"] = True
        return await self._write(
            "claim", actor, request_id, args, lambda t: T.claim(t, tid, caps, want, length, start),
            lambda v: None if v is None else Claim.model_validate(v), _claim_still_held,
        )

    @requires("start")
    async def start(self, task_id: str, lease: str, *, actor: str | Caller | None = None, request_id: str | None = None) -> Task:
        """ASSIGNED -> ACTIVE; renews the lease."""
        tid, tok = limits.task_id("task_id", task_id), A.lease(lease)
        return await self._write("start", actor, request_id, {"id": tid, "lease": lease_hash(tok)}, lambda t: T.start(t, tid, tok), Task.model_validate)

    @requires("checkpoint")
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

    @requires("complete")
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

    @requires("fail")
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

    @requires("pause")
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

    @requires("resume")
    async def resume(self, task_id: str, lease: str, *, actor: str | Caller | None = None, request_id: str | None = None) -> Task:
        """PAUSED -> ACTIVE; the lease runs again."""
        tid, tok = limits.task_id("task_id", task_id), A.lease(lease)
        return await self._write("resume", actor, request_id, {"id": tid, "lease": lease_hash(tok)}, lambda t: T.resume(t, tid, tok), Task.model_validate)

    @requires("release")
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

    @requires("force_release")
    async def force_release(
        self, task_id: str, reason: str, *, actor: str | Caller | None = None, request_id: str | None = None
    ) -> Task:
        """Take held work back from its holder (admin): ASSIGNED -> PENDING, ACTIVE -> FAILED and the
        retry rule, as if its lease had expired now."""
        tid = limits.task_id("task_id", task_id)
        why = limits.text("reason", reason, limits.MAX_TEXT, required=True) or ""
        return await self._write(
            "force_release", actor, request_id, {"id": tid, "reason": why},
            lambda t: T.force_release(t, tid, why), Task.model_validate,
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


def _claim_still_held(tx: WriteTx, stored: Any) -> bool:
    """A stored claim answer is replayed only while its lease still holds the task; an answer that
    found nothing is never replayed (asking again is a new question)."""
    if not isinstance(stored, dict):
        return False
    task = tx.get_task(stored["task"]["id"])
    return task is not None and task.lease_end is None and task.lease_hash == lease_hash(stored["lease"])

