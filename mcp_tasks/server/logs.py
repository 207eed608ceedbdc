"""MCP logging for the people watching a client: `notifications/message` about the caller's own work.

A 2025-11-25 session sets its level with `logging/setLevel` (until then: "warning") and is told,
as logger "mcp-tasks", about the work it claimed and nothing else:
- warning: the lease of a task it claimed is running low (less than LOW_SHARE of its term left),
  once per term (a renewal starts a new term);
- error: that lease expired, or the task was taken from it (the reaper, an admin, a cancel);
- debug: why a tool call of its own was refused (on that call's own stream).

Each session gets at most LOG_BURST messages at once and LOG_RATE a second after that; the rest
are counted and reported in one "N messages dropped" message as soon as the bound allows. Messages
outside a request are sent by a task of their own with a timeout, so a slow or gone client never
holds up the server.

Leases are watched where they are cheapest to watch: a session remembers the leases it claimed
(task, lease digest, expiry), the change follower names the tasks that changed (in any process),
and one loop re-reads only those and compares expiries with the clock.

2026-07-28 clients have neither `logging/setLevel` nor a channel outside a request: a request that
asks for log messages (the `io.modelcontextprotocol/logLevel` _meta key) hears why it was refused;
lease messages are not sent to them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, get_args

import anyio
from anyio.abc import TaskGroup
from mcp import MCPError
from mcp.server.connection import Connection, allowed_log_levels
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import (INVALID_PARAMS, EmptyResult, LoggingLevel, LoggingMessageNotification,
                       LoggingMessageNotificationParams, SetLevelRequestParams)
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from ..display import iso
from ..health import run_forever
from ..ids import lease_hash
from ..limits import LOG_BURST, LOG_RATE
from ..models import Claim, Event, Task
from ..registry import Registry
from ..transactions import CANCELLED, EXPIRED, FORCED
from .auth import Bucket
from .tooling import refused

log = logging.getLogger(__name__)

LOGGER = "mcp-tasks"
LEVELS: tuple[LoggingLevel, ...] = get_args(LoggingLevel)  # least severe first
DEFAULT_LEVEL: LoggingLevel = "warning"
LOW_SHARE = 0.2  # a lease is running low with less than this share of its term left
SEND_TIMEOUT = 5.0  # seconds one message outside a request may take to leave; then the session's queue is dropped
MAX_MESSAGE = 500  # characters of a refusal's message repeated in a log message
WATCHED_PER_SESSION = 100  # leases one session is told about; it may hold more, unwatched
_STATE_KEY = "mcp_tasks.log"
# How a lease ended when someone other than its holder ended it: the message's event and text.
_TAKEN = {EXPIRED: ("reaped", "the reaper took it back after its lease expired"),
          FORCED: ("taken_back", "an admin took it back"), CANCELLED: ("cancelled", "it was cancelled")}


def _severity(level: str) -> int:
    return LEVELS.index(level)


@dataclass
class Held:
    """A lease a session claimed: which one (its digest), until when (None while PAUSED), its term."""

    lease: str
    expires_at: float | None
    term: float
    warned: bool = False  # told it is running low, this term
    expired: bool = False  # told it expired


class SessionLog:
    """One session's log: its level, its bound, the leases it claimed, and its outgoing queue."""

    def __init__(self, connection: Connection, clock: Callable[[], float]) -> None:
        self.connection = connection
        self.level: LoggingLevel = DEFAULT_LEVEL
        self.bucket = Bucket(float(LOG_BURST), clock=clock)
        self.dropped = 0
        self.dropped_level: LoggingLevel = "debug"
        self.held: dict[str, Held] = {}
        self.queue: deque[tuple[LoggingLevel, dict[str, Any]]] = deque()
        self.sending = False

    def wants(self, level: LoggingLevel) -> bool:
        """Whether the session's level lets `level` through."""
        return _severity(level) >= _severity(self.level)

    def admit(self, level: LoggingLevel, data: dict[str, Any]) -> list[tuple[LoggingLevel, dict[str, Any]]]:
        """What to send for one message: nothing (below the level, or over the bound: counted as
        dropped), the message, or first the count of those dropped before it."""
        if not self.wants(level):
            return []
        if self.bucket.take(LOG_RATE, LOG_BURST):
            self.drop(level)
            return []
        return [*self.dropped_notice(), (level, data)]

    def drop(self, level: LoggingLevel, count: int = 1) -> None:
        """Count messages not sent; the notice that reports them goes at the most severe of their levels."""
        self.dropped += count
        self.dropped_level = max(self.dropped_level, level, key=_severity)

    def dropped_notice(self) -> list[tuple[LoggingLevel, dict[str, Any]]]:
        """The one message that reports the messages dropped so far (none when none were)."""
        if not self.dropped:
            return []
        count, self.dropped = self.dropped, 0
        text = (f"{count} messages dropped: a session is sent at most {LOG_BURST} messages at once and "
                f"{LOG_RATE:g} a second after that")
        return [(self.dropped_level, {"event": "dropped", "count": count, "message": text})]


class CallerLogs:
    """The logs of every open 2025-11-25 session, the `logging/setLevel` handler, the middleware
    that reports refused tool calls, and the loop that watches the leases sessions claimed."""

    def __init__(self, clock: Callable[[], float] | None, interval: float, lease_seconds: float) -> None:
        self.clock = clock or time.time  # the registry's clock (tests: a fake one), for leases
        self.ticks = clock or time.monotonic  # for the bound
        self.interval = interval
        self.lease_seconds = lease_seconds  # the term of a lease claimed without lease_seconds
        self.sessions: dict[int, SessionLog] = {}
        self.by_task: dict[str, set[int]] = {}
        self.touched: set[str] = set()
        self._wake = anyio.Event()
        self._tg: TaskGroup | None = None

    # ------------------------------------------------------------ sessions
    def session(self, rc: ServerRequestContext[Any, Any]) -> SessionLog | None:
        """The log of the session making request `rc` (made on first use); None for a 2026-07-28
        request, which has no session."""
        connection = getattr(rc.session, "_connection", None)  # the SDK keeps the session's connection here
        if not isinstance(connection, Connection) or connection.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return None
        found = connection.state.get(_STATE_KEY)
        if isinstance(found, SessionLog):
            return found
        made = connection.state[_STATE_KEY] = SessionLog(connection, self.ticks)
        key = id(made)
        self.sessions[key] = made
        connection.exit_stack.callback(self._forget, key)
        return made

    def _forget(self, key: int) -> None:
        gone = self.sessions.pop(key, None)
        for task_id in gone.held if gone is not None else ():
            self._unhold(task_id, key)

    def _unhold(self, task_id: str, key: int) -> None:
        holders = self.by_task.get(task_id)
        if holders is not None:
            holders.discard(key)
            if not holders:
                del self.by_task[task_id]

    async def set_level(self, ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        """`logging/setLevel`: the least severe level this session is sent from now on."""
        session = self.session(ctx)
        if session is not None:
            session.level = params.level
        return EmptyResult()

    def claimed(self, rc: ServerRequestContext[Any, Any], claim: Claim) -> None:
        """The session making request `rc` holds `claim`'s lease: watch it."""
        session = self.session(rc)
        if session is None or (len(session.held) >= WATCHED_PER_SESSION and claim.task.id not in session.held):
            return
        task = claim.task
        session.held[task.id] = Held(lease_hash(claim.lease), claim.lease_expires_at,
                                     task.lease_seconds or self.lease_seconds)
        self.by_task.setdefault(task.id, set()).add(id(session))

    def saw(self, events: list[Event]) -> None:
        """The change follower read `events`: the watched tasks among them are read again soon."""
        touched = {e.task_id for e in events if e.task_id in self.by_task}
        if touched:
            self.touched |= touched
            self._wake.set()

    # ------------------------------------------------------------ sending
    def post(self, session: SessionLog, level: LoggingLevel, data: dict[str, Any]) -> None:
        """Queue a message outside any request (never waits: what the bound refuses is counted)."""
        self._queue(session, session.admit(level, self._stamped(data)))

    def _stamped(self, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "at": iso(self.clock())}

    def _queue(self, session: SessionLog, messages: list[tuple[LoggingLevel, dict[str, Any]]]) -> None:
        for message in messages:
            if len(session.queue) >= LOG_BURST:
                session.drop(message[0])
                continue
            session.queue.append(message)
        if session.queue and not session.sending and self._tg is not None:
            session.sending = True
            self._tg.start_soon(self._drain, session)

    async def _drain(self, session: SessionLog) -> None:
        try:
            while session.queue:
                level, data = session.queue.popleft()
                with anyio.move_on_after(SEND_TIMEOUT) as scope:
                    await session.connection.notify("notifications/message",
                                                    {"level": level, "logger": LOGGER, "data": data})
                if scope.cancelled_caught:  # the client does not read: what waits is dropped too
                    for unsent in [level, *(waiting for waiting, _ in session.queue)]:
                        session.drop(unsent)
                    session.queue.clear()
        finally:
            session.sending = False

    @staticmethod
    async def _send_in_request(ctx: ServerRequestContext[Any, Any],
                               messages: list[tuple[LoggingLevel, dict[str, Any]]]) -> None:
        for level, data in messages:
            params = LoggingMessageNotificationParams(level=level, logger=LOGGER, data=data)
            try:
                await ctx.session.send_notification(LoggingMessageNotification(params=params),
                                                    related_request_id=ctx.request_id)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):  # the client left mid-request
                return

    # ------------------------------------------------------------ middleware
    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """SDK server middleware: a clear error for a bad `logging/setLevel`; a refused tool call's
        reason to its caller at debug level."""
        if ctx.method == "logging/setLevel" and ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            level = ctx.params.get("level") if isinstance(ctx.params, Mapping) else None
            if level not in LEVELS:
                shown = "missing" if level is None else repr(level)[:40]
                raise MCPError(INVALID_PARAMS, f"logging/setLevel: level {shown} is not a log level; "
                               f"use one of: {', '.join(LEVELS)}")
        if ctx.method != "tools/call":
            return await call_next(ctx)
        tool = ctx.params.get("name") if isinstance(ctx.params, Mapping) else None
        try:
            result = await call_next(ctx)
        except MCPError as exc:
            await self._refused(ctx, tool, {"code": exc.error.code, "message": exc.error.message})
            raise
        error = refused(result)
        if error is not None:
            await self._refused(ctx, tool, error)
        return result

    async def _refused(self, ctx: ServerRequestContext[Any, Any], tool: Any, error: Mapping[str, Any]) -> None:
        data = {"event": "refused", "tool": str(tool)[:64], **error,
                "message": str(error.get("message", ""))[:MAX_MESSAGE]}
        session = self.session(ctx)
        if session is not None:
            messages = session.admit("debug", self._stamped(data))
        elif "debug" in allowed_log_levels(ctx.protocol_version, ctx.meta):
            messages = [("debug", self._stamped(data))]
        else:
            return
        await self._send_in_request(ctx, messages)

    # ------------------------------------------------------------ watching leases
    async def run(self, registry: Registry) -> None:
        """Watch the leases sessions claimed until cancelled (errors: logged, retried, in health)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await run_forever("lease messages", lambda: self.check(registry), self._wait, self.interval,
                                  registry.health, max_backoff=10.0)
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def _wait(self, delay: float) -> None:
        with anyio.move_on_after(delay):
            await self._wake.wait()
        self._wake = anyio.Event()

    async def check(self, registry: Registry) -> None:
        """Read the watched tasks that changed, then tell each session of its leases running low or
        expired, and of messages it was not sent while over its bound."""
        for task_id in list(self.touched):
            self.touched.discard(task_id)
            await self._read(registry, task_id)
        now = self.clock()
        # A deadline passed by what this server last heard: read the task first, since a renewal
        # may have committed before the follower tells of it (PostgreSQL numbers events later).
        for task_id in {t for s in self.sessions.values() for t, held in s.held.items() if _due(held, now)}:
            await self._read(registry, task_id)
        for session in self.sessions.values():
            for task_id, held in session.held.items():
                self._deadlines(session, task_id, held, now)
            if session.dropped and not session.queue and not session.bucket.take(LOG_RATE, LOG_BURST):
                self._queue(session, session.dropped_notice())

    async def _read(self, registry: Registry, task_id: str) -> None:
        """Read a watched task and take in what changed for each session holding it."""
        if task_id not in self.by_task:
            return
        try:
            task = await registry.get(task_id)
        except Exception:
            self.touched.add(task_id)  # read again on the next try
            raise
        for key in list(self.by_task.get(task_id, ())):
            session = self.sessions.get(key)
            if session is not None and task_id in session.held:
                self._changed(session, task)

    def _changed(self, session: SessionLog, task: Task) -> None:
        held = session.held[task.id]
        if task.lease_hash == held.lease and task.lease_end is None:
            if task.lease_expires_at != held.expires_at:  # renewed, paused or resumed: a new term
                held.expires_at, held.warned, held.expired = task.lease_expires_at, False, False
                held.term = task.lease_seconds or self.lease_seconds
            return
        del session.held[task.id]
        self._unhold(task.id, id(session))
        taken = _TAKEN.get(task.lease_end or "") if task.lease_hash == held.lease else None
        if taken is not None:
            event, how = taken
            self.post(session, "error", {"event": event, "task_id": task.id, "state": task.state.value,
                                         "message": f"task {task.id} is no longer yours: {how}; it is "
                                                    f"{task.state.value} now. Stop working on it"})

    def _deadlines(self, session: SessionLog, task_id: str, held: Held, now: float) -> None:
        if not _due(held, now):
            return
        assert held.expires_at is not None
        left = held.expires_at - now
        base = {"task_id": task_id, "lease_expires_at": iso(held.expires_at)}
        if left <= 0:
            held.expired = True
            self.post(session, "error", {**base, "event": "lease_expired", "message":
                      f"the lease on task {task_id} expired; the reaper will take the task back. Stop working on it"})
        elif not held.warned and left < LOW_SHARE * held.term:
            held.warned = True
            self.post(session, "warning", {**base, "event": "lease_low", "seconds_left": round(left, 1), "message":
                      f"the lease on task {task_id} ends in {left:.0f} s; checkpoint now to renew it"})


def _due(held: Held, now: float) -> bool:
    """Whether a lease has reached a message it has not been sent: running low, or expired."""
    if held.expires_at is None or held.expired:
        return False
    left = held.expires_at - now
    return left <= 0 or (not held.warned and left < LOW_SHARE * held.term)
