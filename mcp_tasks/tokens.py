"""Bearer tokens: the identities of the HTTP service.

A token is shown once, when it is created; the registry's database keeps only its SHA-256, its
name (the agent name of every call made with it), its role and its lifecycle, and logs who
created or revoked which name. Tokens carry 256 random bits, so a plain SHA-256 is as strong as a
slow password hash would be, and a lookup by hash compares nothing secret character by character.

`Tokens.verify` is what every HTTP request goes through: it remembers an answer for
`CACHE_SECONDS`, so a revocation reaches every server process, on every host, within about that.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from typing import Any

from . import limits
from .errors import InvalidInput, TaskError, TokenError
from .models import Caller, TokenEvent, TokenInfo
from .registry import Registry
from .states import Role
from .stores.base import WriteTx

log = logging.getLogger(__name__)

PREFIX = "mcpt_"
CACHE_SECONDS = 1.0  # how long a verification is remembered: the longest a revocation takes to bite
TOUCH_SECONDS = 60.0  # last_used_at is written at most this often per token and process
MAX_TOKEN = 200  # longer bearer strings are refused without a lookup
MAX_CACHE = 10_000
_SHAPE = re.compile(r"^[A-Za-z0-9_\-]+$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_LIFETIME = 10 * 365 * 86400.0


def new_token() -> str:
    """A fresh bearer token: the prefix (so secret scanners recognise it) and 256 random bits."""
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What is stored and looked up in place of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_duration(text: str) -> float:
    """'90s', '30m', '12h', '7d', '2w' or plain seconds -> seconds."""
    m = _DURATION.match(text.strip().lower()) if isinstance(text, str) else None
    if m is None:
        raise InvalidInput(f"--expires {text!r} is not a duration; use a number with s, m, h, d or w (e.g. 30d)")
    seconds = float(m.group(1)) * _UNIT[m.group(2)]
    if not 1 <= seconds <= MAX_LIFETIME:
        raise InvalidInput(f"--expires {text!r} is out of range; a token lives from 1 second to 10 years")
    return seconds


def parse_role(text: str) -> Role:
    """A role by name, or InvalidInput listing the roles."""
    try:
        return Role(str(text).strip().lower())
    except ValueError:
        raise InvalidInput(f"role {text!r} is not a role; roles: {', '.join(r.value for r in Role)}") from None


class Tokens:
    """Creating, listing, revoking and verifying the bearer tokens of one registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._seen: dict[str, tuple[float, float, TokenInfo | None]] = {}  # hash -> (monotonic, db time, token)
        self._touched: dict[str, float] = {}  # name -> monotonic time of the last last_used_at write

    async def create(
        self, name: str, role: Role | str, *, expires_in: float | None = None, actor: str | Caller | None = None
    ) -> tuple[TokenInfo, str]:
        """A new token named `name` with `role`; returns what is stored and the token, which is never
        stored and cannot be shown again. Refused while a live token has that name."""
        caller = self.registry.authorize(actor, "manage_tokens")
        who = limits.agent(name, "token name")
        kind = parse_role(role) if isinstance(role, str) else role
        secret = new_token()

        def run(tx: WriteTx) -> Any:
            now = self.registry.now(tx)
            info = TokenInfo(name=who, role=kind, token_hash=token_hash(secret), created_at=now,
                             created_by=caller.agent, expires_at=None if expires_in is None else now + expires_in)
            if not tx.create_token(info, now):
                raise TokenError(f"a live token named {who} exists; revoke it first (mcp-tasks token revoke {who}) "
                                 "or choose another name")
            tx.append_token_event(who, "created", caller.agent, now, {"role": kind.value, "expires_at": info.expires_at})
            return info

        return await self.registry.store.write(run), secret

    async def revoke(self, name: str, *, actor: str | Caller | None = None) -> None:
        """Revoke token `name`: every server refuses it within CACHE_SECONDS."""
        caller = self.registry.authorize(actor, "manage_tokens")
        who = limits.agent(name, "token name")

        def run(tx: WriteTx) -> Any:
            now = self.registry.now(tx)
            if not tx.revoke_token(who, caller.agent, now):
                raise TokenError(f"no token named {who} is left to revoke; mcp-tasks token list shows the tokens")
            tx.append_token_event(who, "revoked", caller.agent, now, {})

        await self.registry.store.write(run)

    async def all(self, *, actor: str | Caller | None = None) -> tuple[float, list[TokenInfo]]:
        """(the store's time now, every token by name): revoked and expired ones included."""
        self.registry.authorize(actor, "manage_tokens")
        return await self.registry.store.read(lambda tx: (self.registry.now(tx), tx.list_tokens()))

    async def history(self, limit: int = 100, *, actor: str | Caller | None = None) -> list[TokenEvent]:
        """The latest entries of the token log, newest first."""
        self.registry.authorize(actor, "manage_tokens")
        n = limits.integer("limit", limit, 1, 10_000)
        return await self.registry.store.read(lambda tx: tx.token_events(n))

    async def live(self) -> int:
        """How many tokens can be used now (a server with none serves loopback only, without auth)."""
        return await self.registry.store.read(lambda tx: tx.live_tokens(self.registry.now(tx)))

    async def verify(self, token: str) -> TokenInfo | None:
        """The live token `token` is, or None (unknown, malformed, expired or revoked)."""
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN or not _SHAPE.match(token):
            return None
        digest = token_hash(token)
        mono = time.monotonic()
        seen = self._seen.get(digest)
        if seen is None or mono - seen[0] >= CACHE_SECONDS:
            found = await self.registry.store.read(lambda tx: (self.registry.now(tx), tx.token_by_hash(digest)))
            if len(self._seen) >= MAX_CACHE:
                self._seen.clear()
            seen = self._seen[digest] = (mono, found[0], found[1])
        read_at, db_now, info = seen
        if info is None or not hmac.compare_digest(info.token_hash, digest):
            return None
        if not info.live(db_now + (mono - read_at)):
            return None
        await self._touch(info, mono)
        return info

    async def _touch(self, info: TokenInfo, mono: float) -> None:
        """Record the use, at most once per TOUCH_SECONDS per token; a failure only logs (a full
        disk must not lock every caller out)."""
        last = self._touched.get(info.name)
        if (last is not None and mono - last < TOUCH_SECONDS) or self.registry.store.read_only:
            return
        self._touched[info.name] = mono
        try:
            await self.registry.store.write(lambda tx: tx.touch_token(info.name, self.registry.now(tx)))
        except TaskError as exc:
            log.warning("could not record the use of token %s: %s", info.name, exc.message)
