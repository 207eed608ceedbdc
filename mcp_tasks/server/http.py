"""Streamable HTTP: MCP at /mcp and a health check at /healthz, loopback only until token auth."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from .. import __version__
from ..health import one_line
from .app import state_of


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
    """The normalized host; refuses any other than loopback: there is no authentication yet."""
    if not is_loopback(host):
        raise SystemExit(
            f"refusing to listen on {host}: HTTP has no token authentication yet, so mcp-tasks only binds "
            "loopback addresses (127.0.0.1, ::1, localhost). Put an authenticating proxy in front, or use stdio."
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


def build_http_app(mcp: MCPServer, host: str = "127.0.0.1") -> Starlette:
    """The ASGI app: /mcp (Streamable HTTP, both protocol eras) and /healthz."""
    mcp_app = mcp.streamable_http_app(streamable_http_path="/mcp", transport_security=loopback_security(host))
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

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with mcp.session_manager.run():  # also enters the MCP lifespan (opens the registry)
            yield

    return Starlette(routes=[Route("/healthz", healthz), Mount("/", app=mcp_app)], lifespan=lifespan)


def serve_http(mcp: MCPServer, host: str, port: int) -> None:
    """Run the HTTP server until interrupted."""
    import uvicorn

    bound = require_loopback(host)
    uvicorn.run(build_http_app(mcp, bound), host=bound, port=port, log_level="warning")
