"""Streamable HTTP: MCP at /mcp, the web board at / (mcp_tasks/board), /healthz and /metrics.

Without tokens only loopback addresses are served, and the X-MCP-Tasks-Agent header names the
caller. With tokens (server made with `public_url`), any address may be bound and every caller
is identified by its bearer token (auth.py), with per-token limits.

Limits (keyword arguments of `build_http_app` and `serve_http`; README "HTTP limits"): open
connections, how long a connection may take to deliver a request, open MCP sessions and how long
an idle one is kept, request body size. Excess is refused with 503 and Retry-After.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.mcpserver import MCPServer
from pydantic import AnyHttpUrl
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..health import one_line
from .app import state_of
from .auth import Limits, TokenGate
from .connections import (RESERVED_FILES, ConnectionPool, RequestProgress, loop_error_handler, quiet_logs,
                          raise_open_file_limit)

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
MAX_CONNECTIONS = 1000  # open connections; more wait for an idle one to be evicted, else get 503
IDLE_TIMEOUT = 10.0  # seconds a connection may take to deliver a complete request
MAX_SESSIONS = 1000  # open MCP sessions (2025-11-25 clients); more get 503
SESSION_IDLE_TIMEOUT = 1800.0  # seconds an MCP session may stay without any request or open stream
MAX_BODY_BYTES = 4 * 1024 * 1024  # one request body
RETRY_AFTER = 5  # seconds, in every 503
GRACEFUL_SHUTDOWN = 3  # seconds open streams (board pages, MCP listeners) get to end on shutdown
# Loggers that write a line (or a traceback) per refused or broken connection: throttled to one
# line per cause and minute while serving.
CHATTY_LOGGERS = ("uvicorn.error", "mcp.server.streamable_http_manager", "mcp.server.streamable_http",
                  "mcp.server.transport_security", "sse_starlette.sse")


def normalize_host(host: str) -> str:
    """`host` as it is bound: lower case, IPv6 without brackets."""
    return host.strip().lower().strip("[]")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    host = normalize_host(host)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_loopback(host: str) -> str:
    """The normalized host; refuses any other than loopback (for a server without tokens)."""
    if not is_loopback(host):
        raise SystemExit(
            f"refusing to listen on {host}: this registry has no tokens, so HTTP serves loopback addresses only "
            "(127.0.0.1, ::1, localhost). Create one with `mcp-tasks token create NAME --role agent` to serve "
            "other hosts with authentication, or use stdio."
        )
    return normalize_host(host)


def loopback_security(host: str) -> TransportSecuritySettings:
    """DNS-rebinding protection: only loopback Host and Origin headers (for any port) are accepted."""
    bound = normalize_host(host)
    names = ["127.0.0.1", "localhost", "[::1]"]
    extra = f"[{bound}]" if ":" in bound else bound
    if extra not in names:
        names.append(extra)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{n}:*" for n in names] + names,
        allowed_origins=[f"{scheme}://{n}:*" for n in names for scheme in ("http", "https")]
        + [f"{scheme}://{n}" for n in names for scheme in ("http", "https")],
    )


class LoopbackOnly:
    """ASGI middleware: the Host/Origin rule of /mcp for every other route (421 for a foreign Host,
    403 for a foreign Origin), with the SDK's own check; /mcp checks for itself."""

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings) -> None:
        self.app = app
        self.check = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") != MCP_PATH:
            refusal = await self.check.validate_request(Request(scope))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RetryAfter:
    """ASGI middleware: every 503 says when to try again (the SDK's "Too many open sessions" does not)."""

    def __init__(self, app: ASGIApp, seconds: int = RETRY_AFTER) -> None:
        self.app = app
        self.header = (b"retry-after", str(seconds).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_retry_after(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 503:
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"retry-after" for name, _ in headers):
                    message = {**message, "headers": [*headers, self.header]}
            await send(message)

        await self.app(scope, receive, send_with_retry_after if scope["type"] == "http" else send)


def build_http_app(
    mcp: MCPServer,
    host: str = "127.0.0.1",
    *,
    max_sessions: int = MAX_SESSIONS,
    session_idle_timeout: float = SESSION_IDLE_TIMEOUT,
    max_body_bytes: int = MAX_BODY_BYTES,
    limits: Limits | None = None,
    serve_mcp: bool = True,
) -> Starlette:
    """The ASGI app: /mcp (Streamable HTTP, both protocol eras; left out when `serve_mcp` is False:
    the board alone), the board, /healthz and /metrics; with tokens on, the protected-resource
    metadata and per-token `limits` too."""
    from ..board.web import Board

    security = loopback_security(host) if is_loopback(host) else TransportSecuritySettings(
        enable_dns_rebinding_protection=False)
    mcp_app = mcp.streamable_http_app(
        streamable_http_path=MCP_PATH, transport_security=security, max_sessions=max_sessions,
        session_idle_timeout=session_idle_timeout, max_request_body_size=max_body_bytes,
    )
    app_state = state_of(mcp)

    async def healthz(request: Request) -> JSONResponse:
        """ok, degraded (with one line per problem) or error; 503 only when the database cannot be read."""
        reg = app_state.registry
        if reg is None:
            return JSONResponse({"status": "starting", "version": __version__}, status_code=503)
        try:
            seq = await reg.last_seq()
        except Exception as exc:  # noqa: BLE001 - the database is unreadable: say so, never crash
            body = {"status": "error", "version": __version__, "problems": [f"database unreadable: {one_line(exc)}"]}
            return JSONResponse(body, status_code=503)
        return JSONResponse({**reg.health.snapshot(), "version": __version__, "last_event": seq})

    async def metrics(request: Request) -> Response:
        """Prometheus metrics (server/metrics.py)."""
        follower = app_state.follower
        body, content_type = await app_state.metrics.render(
            app_state.registry, None if follower is None else follower.last_seq, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    board = Board(app_state)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with mcp.session_manager.run():  # also enters the MCP lifespan (opens the registry)
            board.attach()
            yield

    middleware = [Middleware(RequestProgress, max_body_bytes=max_body_bytes), Middleware(RetryAfter),
                  Middleware(LoopbackOnly, security=security)]
    if app_state.public_url is not None:
        middleware.append(Middleware(
            TokenGate, tokens=lambda: app_state.tokens, limits=limits or Limits(),
            open_sessions=lambda name: open_sessions(mcp, name),
            resource_metadata=str(build_resource_metadata_url(AnyHttpUrl(f"{app_state.public_url.rstrip('/')}{MCP_PATH}"))),
        ))
    routes = [Route("/healthz", healthz), Route("/metrics", metrics), *board.routes()]
    if serve_mcp:
        routes.append(Mount("/", app=mcp_app))
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def open_sessions(mcp: MCPServer, name: str) -> int:
    """How many open MCP sessions were opened with token `name` (the SDK records each session's owner)."""
    owners = getattr(mcp.session_manager, "_session_owners", {})
    return sum(1 for owner in owners.values() if owner.get("client_id") == name)


def serve_http(
    mcp: MCPServer,
    host: str,
    port: int,
    *,
    max_connections: int = MAX_CONNECTIONS,
    idle_timeout: float = IDLE_TIMEOUT,
    max_sessions: int = MAX_SESSIONS,
    session_idle_timeout: float = SESSION_IDLE_TIMEOUT,
    max_body_bytes: int = MAX_BODY_BYTES,
    limits: Limits | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    serve_mcp: bool = True,
) -> None:
    """Run the HTTP server until interrupted, within the given limits (see the module docstring);
    HTTPS when `tls_cert` and `tls_key` name a PEM certificate (chain) and its key; the board
    alone when `serve_mcp` is False."""
    import uvicorn

    bound = require_loopback(host) if state_of(mcp).public_url is None else normalize_host(host)
    app = build_http_app(mcp, bound, max_sessions=max_sessions, session_idle_timeout=session_idle_timeout,
                         max_body_bytes=max_body_bytes, limits=limits, serve_mcp=serve_mcp)
    files = raise_open_file_limit()
    if files is not None and max_connections > files - RESERVED_FILES:
        max_connections = max(1, files - RESERVED_FILES)
        log.warning("only %d open files are allowed: serving at most %d connections at once", files, max_connections)
    pool = ConnectionPool(max_connections, idle_timeout, RETRY_AFTER)
    config = uvicorn.Config(app, host=bound, port=port, log_level="warning", http=pool.protocol(),
                            timeout_keep_alive=max(1, math.ceil(idle_timeout)), ssl_certfile=tls_cert,
                            ssl_keyfile=tls_key, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN)
    server = uvicorn.Server(config)
    quiet_logs(CHATTY_LOGGERS)
    # What exists now (modules, the app, its schemas) lives as long as the process: keep it out of
    # the collector's full passes, which otherwise stop every request for 30-65 ms every few seconds.
    gc.collect()
    gc.freeze()

    async def serve() -> None:
        asyncio.get_running_loop().set_exception_handler(loop_error_handler())
        await server.serve()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
