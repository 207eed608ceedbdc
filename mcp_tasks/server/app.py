"""The server factory: an MCPServer over one registry, with its reaper and change follower."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.types import SetLevelRequestParams

from .. import __version__, limits
from ..models import Caller
from ..registry import Registry
from ..rules import Policy
from ..states import Role
from ..stores import make_store
from ..telemetry import flush_traces
from ..tokens import Tokens
from .auth import RegistryTokens, RoleTools, auth_settings, caller_of
from .connections import CONNECTION_KEY
from .logs import CallerLogs
from .metrics import OperationTimer, ServerMetrics
from .notify import ChangeFollower, LegacySubscriptions, publisher
from .prompts import build_prompts
from .resources import register_resources
from .tools import build_tools

AGENT_HEADER = "x-mcp-tasks-agent"
INSTRUCTIONS = (
    "Shared task registry. Claim a task before working on it (start=true starts it too) and pass the lease "
    "token from claim to start, checkpoint, complete, fail, pause, resume and release. Checkpoint every few "
    "minutes (it renews the lease); a lost lease means someone else may take the task. On failure call fail "
    "with a clear error. "
    "The work-loop prompt explains the whole cycle."
)


@dataclass
class AppState:
    """What the tools, resources and prompts share; filled by the lifespan."""

    db: str
    agent: str
    policy: Policy
    synchronous: str = "FULL"
    trust_agent_header: bool = False
    role: Role = Role.ADMIN  # of every caller without a token (stdio, loopback HTTP without tokens)
    public_url: str | None = None  # set: every HTTP caller is identified by a bearer token
    reaper_interval: float = 5.0
    poll_interval: float = 0.5
    clock: Callable[[], float] | None = None  # None: the store's clock
    pool_size: int | None = None  # PostgreSQL connections (None: the store's default)
    registry: Registry = field(default=None)  # type: ignore[assignment]
    tokens: Tokens | None = None
    follower: ChangeFollower | None = None
    logs: CallerLogs = field(default=None)  # type: ignore[assignment]  # MCP logging to sessions (logs.py)
    metrics: ServerMetrics = field(default_factory=ServerMetrics)  # /metrics (metrics.py)
    users: int = 0
    # Distinguishes this server process from every other (and from its own earlier runs).
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))

    def caller(self, ctx: Context) -> Caller:
        """Who is calling (see `caller_of_request`)."""
        return self.caller_of_request(ctx.request_context)

    def caller_of_request(self, rc: Any) -> Caller:
        """Who is calling, with which role, and which client: stored answers to repeated requests
        are scoped to it.

        With tokens on (HTTP for several hosts), the verified bearer token alone: its name, its
        role, and the token as the client. stdio (and in-process clients): this server process
        serves one client. HTTP without tokens (loopback only): a 2025-11-25 client's MCP session,
        or for a sessionless 2026-07-28 client its TCP connection; the agent name is the
        X-MCP-Tasks-Agent header where trusted, else the server's name with a suffix of the client's
        own, so two such clients are two agents.
        """
        request = rc.request
        if request is None:
            return Caller(self.agent, f"process:{self.nonce}", self.role)
        if self.public_url is not None:
            found = caller_of(request.scope.get("user"))
            return found if found is not None else Caller("anonymous", f"process:{self.nonce}", Role.VIEWER)
        headers = request.headers
        session = headers.get("mcp-session-id")
        connection = request.scope.get(CONNECTION_KEY)
        if session:
            client = f"session:{self.nonce}:{session}"
        elif connection:
            client = f"connection:{self.nonce}:{connection}"
        else:  # an app served without our connection guard: the peer's address stands for the connection
            peer = request.client
            client = f"connection:{self.nonce}:{peer.host if peer else '-'}:{peer.port if peer else '-'}"
        name = headers.get(AGENT_HEADER) if self.trust_agent_header else None
        if name:
            return Caller(limits.agent(name, "X-MCP-Tasks-Agent header"), client, self.role)
        return Caller(f"{self.agent}-{hashlib.sha256(client.encode()).hexdigest()[:6]}", client, self.role)


def create_server(
    db: str,
    *,
    agent: str = "agent",
    policy: Policy | None = None,
    synchronous: str = "FULL",
    trust_agent_header: bool = False,
    reaper_interval: float = 5.0,
    poll_interval: float = 0.5,
    clock: Callable[[], float] | None = None,
    log_level: str = "WARNING",
    pool_size: int | None = None,
    role: Role = Role.ADMIN,
    public_url: str | None = None,
) -> MCPServer:
    """An MCP server over the registry in `db` (a SQLite file or a postgresql:// URL).

    `role`: the role of callers without a token (stdio; loopback HTTP without tokens). `public_url`
    (HTTP only): the server's address as clients reach it; given, every HTTP caller must present a
    bearer token (`mcp-tasks token create`), which alone names the caller and its role.
    """
    app = AppState(
        db=db, agent=limits.agent(agent), policy=policy or Policy(), synchronous=synchronous,
        trust_agent_header=trust_agent_header and public_url is None, role=role, public_url=public_url,
        reaper_interval=reaper_interval, poll_interval=poll_interval, clock=clock, pool_size=pool_size,
    )
    app.logs = CallerLogs(clock, poll_interval, app.policy.lease_seconds)
    bus = InMemorySubscriptionBus()

    @asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[AppState]:
        # The in-memory test client enters the lifespan once per connection: share one registry.
        if app.users:
            app.users += 1
            try:
                yield app
            finally:
                app.users -= 1
            return
        store = make_store(app.db, synchronous=app.synchronous, pool_max=app.pool_size)
        registry = Registry(store, agent=app.agent, policy=app.policy, clock=app.clock)
        async with registry:
            follower = ChangeFollower(registry, publisher(bus, legacy), app.poll_interval)
            follower.pages.append(app.logs.saw)
            stop_listening = registry.add_listener(follower.poke)
            registry.telemetry.sink = app.metrics
            app.registry, app.follower, app.tokens, app.users = registry, follower, Tokens(registry), 1
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(registry.run_reaper, app.reaper_interval)
                    tg.start_soon(follower.run)
                    tg.start_soon(app.logs.run, registry)
                    tg.start_soon(registry.store.watch, follower.poke)  # other hosts' changes (PostgreSQL)
                    try:
                        yield app
                    finally:
                        tg.cancel_scope.cancel()
            finally:
                stop_listening()
                app.users = 0
                app.registry = None  # type: ignore[assignment]
                app.follower = None
                app.tokens = None
                flush_traces()  # SIGTERM ends the process without atexit: send buffered spans now

    tools = build_tools(app)
    mcp: MCPServer = MCPServer(
        "mcp-tasks",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        subscriptions=bus,
        tools=tools,
        log_level=log_level,  # type: ignore[arg-type]
        middleware=[OperationTimer(app.metrics, [t.name for t in tools]),
                    RoleTools(lambda rc: app.caller_of_request(rc).role), app.logs],
        token_verifier=None if public_url is None else RegistryTokens(lambda: app.tokens),
        auth=None if public_url is None else auth_settings(public_url),
    )
    legacy = LegacySubscriptions(mcp)
    mcp._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, app.logs.set_level)
    register_resources(mcp, app)
    for prompt in build_prompts(app):
        mcp.add_prompt(prompt)
    mcp.app_state = app  # type: ignore[attr-defined]  # for the CLI, dashboard and tests
    mcp.legacy_subscriptions = legacy  # type: ignore[attr-defined]
    return mcp


def state_of(mcp: MCPServer) -> AppState:
    """The AppState of a server made by create_server."""
    return mcp.app_state  # type: ignore[attr-defined]
