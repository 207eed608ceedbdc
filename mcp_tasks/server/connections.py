"""HTTP connection limits below the ASGI app: slow and idle connections are closed, open ones bounded.

uvicorn closes a keep-alive connection only some time after a response, and receiving any byte
cancels even that timer, so a connection that never completes a request stays open for ever
(seen: 600 idle connections held indefinitely; 1,100 starved a normal agent and, past the limit
on open files, asyncio logged a traceback for every failed accept: 17.9 MB of stderr in 6 s).

`ConnectionPool.protocol()` wraps uvicorn's HTTP protocol. A connection must deliver a complete
request, head and body, within `idle_timeout` of opening or of its previous response; otherwise it
is closed. At `max_connections` a new connection first evicts the connection that has waited
longest for its client; only when every connection is busy serving a request is it refused with
503 and Retry-After. `RequestProgress`, an ASGI middleware, tells the connection's guard when a
request has fully arrived and when it is done. Every cause is logged once a minute at most.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..health import one_line

log = logging.getLogger(__name__)

# The ASGI scope key under which every request carries its connection's id: a sessionless MCP
# client is one connection, and stored answers to its repeated requests are scoped to it.
CONNECTION_KEY = "mcp_tasks.connection"
RESERVED_FILES = 100  # open files kept for the database, logs and refusals in progress
MAX_REFUSING = 32  # refused connections allowed to linger until their client has read the 503
LINGER = 2.0  # seconds a refused connection may take to read its 503 before it is closed

# The connection whose data is being parsed: uvicorn starts a request's ASGI task from inside
# data_received, so the task inherits this and RequestProgress finds its connection.
_CURRENT: ContextVar[GuardedConnection | None] = ContextVar("mcp_tasks_http_connection", default=None)


class Throttled:
    """One log line per cause per interval; the rest are counted into the next line."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self.logger, self.interval = logger, interval
        self._seen: dict[Any, tuple[float, int]] = {}

    def admit(self, cause: Any) -> int | None:
        """None to stay quiet; else how many lines of this cause were held back since the last one."""
        now = time.monotonic()
        last, held = self._seen.get(cause, (None, 0))
        if last is not None and now - last < self.interval:
            self._seen[cause] = (last, held + 1)
            return None
        self._seen[cause] = (now, 0)
        return held

    def log(self, level: int, cause: Any, text: str) -> None:
        """Log `text` unless `cause` was logged within the interval."""
        held = self.admit(cause)
        if held is not None:
            self.logger.log(level, "%s%s", text, f" ({held} more since the last report)" if held else "")


class OncePerInterval(logging.Filter):
    """A logging filter: one record per call site per interval (libraries log once per connection)."""

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self._throttle = Throttled(log, interval)

    def filter(self, record: logging.LogRecord) -> bool:
        held = self._throttle.admit((record.name, record.pathname, record.lineno))
        if held:
            record.msg, record.args = f"{record.getMessage()} ({held} more since the last report)", None
        return held is not None


def quiet_logs(names: Iterable[str], interval: float = 60.0) -> None:
    """Throttle the named loggers to one record per call site per interval."""
    throttle = OncePerInterval(interval)
    for name in names:
        logging.getLogger(name).addFilter(throttle)


def loop_error_handler(interval: float = 60.0) -> Any:
    """An event-loop exception handler: one line per kind of error per interval, no traceback.

    asyncio's default handler logs a traceback for each failed accept when open files run out,
    thousands a second.
    """
    throttle = Throttled(log, interval)

    def handle(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message") or "event loop error")
        exc = context.get("exception")
        throttle.log(logging.ERROR, message, f"{message}: {one_line(exc)}" if exc is not None else message)

    return handle


def raise_open_file_limit() -> int | None:
    """Raise the soft limit on open files towards the hard limit; returns the soft limit in force."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65_536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        for target in (wanted, 10_240):  # macOS refuses more than its per-process maximum
            if target <= soft:
                break
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                return target
            except (ValueError, OSError):
                continue
    return None if soft == resource.RLIM_INFINITY else soft


class ConnectionPool:
    """The open connections of one HTTP server and their limits."""

    def __init__(self, max_connections: int, idle_timeout: float, retry_after: int = 5) -> None:
        if max_connections < 1 or not idle_timeout > 0:
            raise ValueError("max_connections must be at least 1 and idle_timeout positive")
        self.max_connections, self.idle_timeout, self.retry_after = max_connections, idle_timeout, retry_after
        self.open: set[GuardedConnection] = set()
        self.waiting: dict[GuardedConnection, None] = {}  # in the order their deadlines fall
        self.refusing = 0
        self.notes = Throttled(log)
        body = (f"too many connections: all {max_connections} are busy serving requests; "
                f"retry in {retry_after} s\n").encode()
        self.refusal = (
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"retry-after: %d\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (retry_after, len(body), body))

    def admit(self, conn: GuardedConnection) -> bool:
        """Take `conn` in, evicting the connection that has waited longest for its client if full."""
        if len(self.open) >= self.max_connections:
            oldest = next(iter(self.waiting), None)
            if oldest is None:
                self.notes.log(logging.WARNING, "refused", f"refusing connections with 503: all {self.max_connections} "
                               "are busy serving requests (max_connections)")
                return False
            oldest.close()
            self.notes.log(logging.WARNING, "evicted", f"{self.max_connections} connections open (max_connections): "
                           "closing those that have waited longest for a request to admit new ones")
        self.open.add(conn)
        return True

    def forget(self, conn: GuardedConnection) -> None:
        """`conn` is closed."""
        self.open.discard(conn)
        self.waiting.pop(conn, None)

    def protocol(self) -> type[asyncio.Protocol]:
        """The protocol class to give uvicorn (`uvicorn.Config(http=...)`)."""
        return type("GuardedHTTP", (GuardedConnection,), {"pool": self})


class GuardedConnection(asyncio.Protocol):
    """uvicorn's HTTP protocol for one connection, with a deadline while it waits for its client."""

    pool: ConnectionPool

    def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        self.inner = AutoHTTPProtocol(config=config, server_state=server_state, app_state=app_state,  # type: ignore[call-arg]
                                      _loop=_loop)
        self.loop = _loop or asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.admitted = False
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        self.requests = 0  # in progress
        self.arriving = 0  # in progress and still receiving their body
        self.completed = 0
        self.partial = False  # bytes arrived since the deadline was set
        self.id = secrets.token_hex(8)  # names the connection to the app (CONNECTION_KEY)

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.pool.admit(self):
            self._refuse(transport)
            return
        self.admitted = True
        self._set_deadline()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return  # a refused client's request: read and dropped
        if self.timer is not None:
            self.partial = True
        token = _CURRENT.set(self)
        try:
            self.inner.data_received(data)
        finally:
            _CURRENT.reset(token)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._clear_deadline()
        if self.admitted:
            self.pool.forget(self)
            self.inner.connection_lost(exc)
        else:
            self.pool.refusing -= 1

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()

    # ------------------------------------------------------------------ limits

    def _refuse(self, transport: asyncio.Transport) -> None:
        """Answer 503 and close once the client has read it (or at once when too many linger)."""
        self.pool.refusing += 1
        transport.write(self.pool.refusal)
        if self.pool.refusing > MAX_REFUSING or not transport.can_write_eof():
            transport.abort()
            return
        transport.write_eof()  # the client reads the 503, then end of stream; closed on its EOF
        self.timer = self.loop.call_later(LINGER, transport.abort)

    def _set_deadline(self) -> None:
        self.partial = False
        self.timer = self.loop.call_later(self.pool.idle_timeout, self._expire)
        self.pool.waiting[self] = None

    def _clear_deadline(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pool.waiting.pop(self, None)

    def _expire(self) -> None:
        self.timer = None
        if not self.completed or self.partial:  # not a keep-alive connection left idle after its requests
            self.pool.notes.log(logging.WARNING, "slow", "closing connections that sent no complete request "
                                f"within {self.pool.idle_timeout:g} s (idle_timeout)")
        self.close()

    def close(self) -> None:
        """Close the connection now (timed out or evicted)."""
        self.closed = True
        self._clear_deadline()
        self.pool.forget(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _update(self) -> None:
        waiting = self.requests == 0 or self.arriving > 0
        if self.closed:
            return
        if waiting and self.timer is None:
            self._set_deadline()
        elif not waiting:
            self._clear_deadline()

    def request_started(self, has_body: bool) -> None:
        """A request head has arrived (its body may still be on its way)."""
        self.requests += 1
        self.arriving += has_body
        self._update()

    def body_arrived(self) -> None:
        """The body of a request in progress has fully arrived."""
        self.arriving -= 1
        self._update()

    def request_done(self, body_arriving: bool) -> None:
        """A request has been answered (or abandoned)."""
        self.requests -= 1
        self.arriving -= body_arriving
        self.completed += 1
        self._update()


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"", b"0")):
            return True
    return False


async def _read_body(receive: Receive, max_bytes: int) -> list[Message] | None:
    """The request's body messages, read ahead up to `max_bytes`; None if the client left first."""
    messages: list[Message] = []
    size = 0
    while size <= max_bytes:
        message = await receive()
        if message["type"] != "http.request":
            return None
        messages.append(message)
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return messages


class RequestProgress:
    """ASGI middleware telling a connection's guard when its request has arrived and when it is done.

    A body is read ahead (up to `max_body_bytes`; the app refuses larger ones) before the app runs,
    so a client that leaves or is timed out mid-body ends here, not as a traceback in the app.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        conn = _CURRENT.get()
        if conn is None or scope["type"] != "http":  # not served by a ConnectionPool
            await self.app(scope, receive, send)
            return
        scope[CONNECTION_KEY] = conn.id
        arriving = _has_body(scope)
        conn.request_started(arriving)
        try:
            if arriving:
                body = await _read_body(receive, self.max_body_bytes)
                arriving = False
                conn.body_arrived()
                if body is None:
                    return  # nobody is left to answer
                receive = _replay(body, receive)
            await self.app(scope, receive, send)
        finally:
            conn.request_done(arriving)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay
