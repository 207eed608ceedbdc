"""`mcp-tasks serve`: the MCP server on stdio, or on Streamable HTTP with tokens, roles, limits and
the web board; `mcp-tasks web`: the board alone, for people whose agents use stdio."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from typing import Any, Callable

from . import config, limits
from .config import ConfigError
from .limits import SESSIONS_PER_TOKEN, TOKEN_BURST as BURST, TOKEN_RATE as RATE
from .registry import Registry
from .rules import Policy
from .states import Role
from .stores import make_store


async def check_database(db: str, synchronous: str) -> tuple[bool, int]:
    """Open the database `serve` will use once, as its server will (creating it if missing), so that
    a path it cannot use fails here in one line: (whether it can only be read, its live tokens)."""
    from .tokens import Tokens

    async with Registry(make_store(db, synchronous=synchronous)) as reg:
        return reg.store.read_only, await Tokens(reg).live()


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import create_server, serve_http, serve_stdio
    from .server.http import require_loopback
    from .telemetry import configure_export

    from .server.auth import Limits

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    traces = configure_export(os.environ)  # OpenTelemetry, when the OTEL_* variables ask for it
    if traces:
        print(f"mcp-tasks: {traces}", file=sys.stderr)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together: give both (a PEM certificate and its key) or neither")
    for path in (args.tls_cert, args.tls_key):
        if path and not os.access(path, os.R_OK):
            raise ConfigError(f"cannot read {path}: --tls-cert and --tls-key must name readable PEM files")
    db, synchronous = config.resolve_db(args.db), config.resolve_sync(args.sync)
    read_only, tokens = asyncio.run(check_database(db, synchronous))
    if read_only:
        print(f"mcp-tasks: {db} can only be read: serving reads, refusing writes", file=sys.stderr)
    public_url = None
    if args.http:
        if not tokens:
            try:
                require_loopback(args.host)
            except SystemExit as exc:
                raise ConfigError(str(exc.code)) from None
        scheme = "https" if args.tls_cert else "http"
        host = args.host if args.host.strip("[]") not in ("0.0.0.0", "::") else socket.getfqdn()
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        base = (args.public_url or f"{scheme}://{host}:{args.port}").rstrip("/")
        public_url = base if tokens else None
    policy = Policy(lease_seconds=args.lease_seconds) if args.lease_seconds is not None else None
    mcp = create_server(
        db, agent=args.agent or config.default_agent(), policy=policy,
        synchronous=synchronous, trust_agent_header=args.http,
        reaper_interval=args.reaper_interval, log_level=args.log_level.upper(), pool_size=args.pool_size,
        role=Role(args.role), public_url=public_url,
    )
    if args.http:
        board_only = getattr(args, "board_only", False)
        if board_only:
            how = f"sign in with a token ({tokens} live)" if tokens else "no tokens: loopback only, the local user"
            print(f"mcp-tasks: the board is at {base}/ ; authentication: {how}", file=sys.stderr)
        else:
            how = f"bearer tokens ({tokens} live)" if tokens else "no tokens: loopback only, X-MCP-Tasks-Agent names the caller"
            print(f"mcp-tasks: serving {base}/mcp and the board at {base}/ (health: /healthz, metrics: /metrics); "
                  f"authentication: {how}", file=sys.stderr)
        serve_http(mcp, args.host, args.port, limits=Limits(args.rate, args.burst, args.sessions_per_token),
                   tls_cert=args.tls_cert, tls_key=args.tls_key, serve_mcp=not board_only)
    else:
        serve_stdio(mcp)
    return 0


def add_web_parser(sub: Any, common: argparse.ArgumentParser, bounded: Callable[..., Any]) -> None:
    """`web`: the board alone (the same server as `serve --http`, without /mcp)."""
    w = sub.add_parser("web", parents=[common], help="serve the web board alone (agents use stdio)")
    w.add_argument("--host", default="127.0.0.1",
                   help="address (default 127.0.0.1); other than loopback only once tokens exist")
    w.add_argument("--port", type=bounded(int, 1, 65535), default=8766, help="port (default 8766)")
    w.add_argument("--public-url", help="the board's URL as people reach it (behind a proxy)")
    w.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (chain)")
    w.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    w.add_argument("--role", choices=[r.value for r in Role], default=Role.ADMIN.value, type=str.lower,
                   help="role of the local user while no token exists (default admin; viewer for a read-only board)")
    w.add_argument("--pool-size", type=bounded(int, 1, 100), default=None,
                   help="PostgreSQL: database connections, 1 to 100 (default 8)")
    w.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    w.set_defaults(run=cmd_serve, sync_command=True, http=True, board_only=True, agent=None, rate=RATE, burst=BURST,
                   sessions_per_token=SESSIONS_PER_TOKEN, lease_seconds=None, reaper_interval=5.0)


def add_parser(sub: Any, common: argparse.ArgumentParser, bounded: Callable[..., Any]) -> None:
    """`serve` and its options."""
    s = sub.add_parser("serve", parents=[common], help="run the MCP server (stdio, or --http)")
    s.add_argument("--agent", help=f"agent name on stdio (default: ${config.ENV_AGENT} or USER-PID)")
    s.add_argument("--http", action="store_true", help="serve Streamable HTTP at /mcp instead of stdio")
    s.add_argument("--host", default="127.0.0.1",
                   help="HTTP address (default 127.0.0.1); other than loopback only once tokens exist")
    s.add_argument("--port", type=bounded(int, 1, 65535), default=8765)
    s.add_argument("--public-url", help="the server's URL as clients reach it, e.g. behind a proxy (default: "
                                        "from --host and --port); named in the token metadata document")
    s.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (chain)")
    s.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    s.add_argument("--rate", type=bounded(float, 0.1, 100_000), default=RATE,
                   help=f"requests per second per token (default {RATE:g})")
    s.add_argument("--burst", type=bounded(int, 1, 1_000_000), default=BURST,
                   help=f"requests a token may make at once before --rate applies (default {BURST})")
    s.add_argument("--sessions-per-token", type=bounded(int, 1, 100_000), default=SESSIONS_PER_TOKEN,
                   help=f"open MCP sessions per token (default {SESSIONS_PER_TOKEN})")
    s.add_argument("--role", choices=[r.value for r in Role], default=Role.ADMIN.value, type=str.lower,
                   help="role of callers without a token: stdio, and loopback HTTP while no token exists "
                        "(default admin); narrows their tools")
    s.add_argument("--lease-seconds", type=bounded(float, limits.MIN_LEASE_SECONDS, limits.MAX_LEASE_SECONDS),
                   help=f"default lease length (default {Policy.lease_seconds:g})")
    s.add_argument("--reaper-interval", type=bounded(float, 0.1, 3600), default=5.0,
                   help="seconds between lease sweeps, 0.1 to 3600 (default 5)")
    s.add_argument("--pool-size", type=bounded(int, 1, 100), default=None,
                   help="PostgreSQL: database connections of this server, 1 to 100 (default 8)")
    s.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    s.set_defaults(run=cmd_serve, sync_command=True)
