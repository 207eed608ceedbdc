"""`mcp-tasks token ...`: create, list, revoke and audit the HTTP service's bearer tokens.

The CLI acts as admin on the local database; the token itself is printed once, on the last line
of stdout, and only its hash is stored.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from .cli_options import open_registry
from .display import local as _when, print_json, table
from .models import TokenInfo
from .states import Role
from .tokens import Tokens, parse_duration


def _shown(token: TokenInfo, now: float) -> dict[str, Any]:
    """A token as --json prints it: what is stored but its hash, and its status."""
    return {**token.model_dump(mode="json", exclude={"token_hash"}), "status": _status(token, now)}


def _status(token: TokenInfo, now: float) -> str:
    if token.revoked_at is not None:
        return "revoked"
    return "live" if token.live(now) else "expired"


async def cmd_create(args: argparse.Namespace) -> int:
    expires = None if args.expires is None else parse_duration(args.expires)
    async with open_registry(args) as reg:
        info, secret = await Tokens(reg).create(args.name, args.role, expires_in=expires)
    if args.json:
        print_json({**_shown(info, info.created_at), "token": secret})
        return 0
    until = f", expires {_when(info.expires_at)}" if info.expires_at else ""
    print(f"token {info.name} ({info.role}{until}); it is shown only now, keep it secret:", file=sys.stderr)
    print(secret)
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        now, tokens = await Tokens(reg).all()
    if args.json:
        print_json([_shown(t, now) for t in tokens])
        return 0
    rows = [[t.name, t.role.value, _status(t, now), _when(t.created_at), t.created_by, _when(t.expires_at),
             _when(t.last_used_at)] for t in tokens]
    headers = ["name", "role", "status", "created", "by", "expires", "last used"]
    print(table(rows, headers) if rows else "no tokens (HTTP serves loopback only, without authentication)")
    return 0


async def cmd_revoke(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        await Tokens(reg).revoke(args.name)
    if args.json:
        print_json({"name": args.name, "revoked": True})
        return 0
    print(f"token {args.name} revoked; servers refuse it within a few seconds")
    return 0


async def cmd_history(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        events = await Tokens(reg).history(args.limit)
    if args.json:
        print_json(events)
        return 0
    rows = [[e.id, _when(e.at), e.type, e.name, e.actor, json.dumps(e.data) if e.data else ""] for e in events]
    print(table(rows, ["#", "at", "event", "name", "by", "details"]) if rows else "no token events")
    return 0


def add_parser(sub: Any, common: argparse.ArgumentParser, output: argparse.ArgumentParser,
               bounded: Callable[..., Any]) -> None:
    """`token` and its subcommands."""
    parser = sub.add_parser("token", help="bearer tokens for the HTTP service (create, list, revoke, history)")
    tsub = parser.add_subparsers(dest="token_command", required=True, metavar="ACTION")

    s = tsub.add_parser("create", parents=[common, output], help="create a token; prints it once, on the last line")
    s.add_argument("name", help="the agent or person the token identifies (its calls are recorded under it)")
    s.add_argument("--role", required=True, choices=[r.value for r in Role], type=str.lower)
    s.add_argument("--expires", metavar="DURATION", help="lifetime such as 12h, 30d or 2w (default: never)")
    s.add_argument("--agent", help="recorded as the token's creator (default: cli)")
    s.set_defaults(run=cmd_create)

    s = tsub.add_parser("list", parents=[common, output], help="names, roles, created, expires, last used (never the token)")
    s.set_defaults(run=cmd_list, reads=True)

    s = tsub.add_parser("revoke", parents=[common, output], help="revoke a token: every server refuses it within seconds")
    s.add_argument("name")
    s.add_argument("--agent", help="recorded as who revoked it (default: cli)")
    s.set_defaults(run=cmd_revoke)

    s = tsub.add_parser("history", parents=[common, output], help="who created or revoked which token, newest first")
    s.add_argument("-n", "--limit", type=bounded(int, 1, 10_000), default=50)
    s.set_defaults(run=cmd_history, reads=True)
