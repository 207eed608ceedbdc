"""Token authentication and per-token limits for the HTTP service.

Authentication is the SDK's own resource-server support: `RegistryTokens` is the `TokenVerifier`
the SDK's bearer middleware asks on every /mcp request (401 with WWW-Authenticate when it says
no, and the protected-resource metadata document), backed by the registry's token table
(tokens.py). `TokenGate` sits in front of every route and adds what the SDK does not: a request
rate per token (a token bucket, answered 429 with Retry-After), a bound on each token's open MCP
sessions, and the same bearer check for the other protected routes (/metrics).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from pydantic import AnyHttpUrl
from starlette.types import ASGIApp, Receive, Scope, Send

from ..limits import SESSIONS_PER_TOKEN, TOKEN_BURST, TOKEN_RATE
from ..models import Caller
from ..states import Role
from ..tokens import Tokens

PROTECTED_PATHS = ("/metrics",)  # besides /mcp, which the SDK guards itself


def caller_of(user: Any, client_suffix: str = "") -> Caller | None:
    """The caller a verified token stands for (None when `user` is not an authenticated token).
    Stored answers are scoped to the token, so a client that reconnects with it finds them."""
    if not isinstance(user, AuthenticatedUser):
        return None
    token: AccessToken = user.access_token
    return Caller(token.client_id, f"token:{token.token}{client_suffix}", Role(token.scopes[0]))


class RegistryTokens(TokenVerifier):
    """The SDK's TokenVerifier over the registry's tokens: a live token becomes an AccessToken whose
    client_id is its name and whose one scope is its role. The AccessToken carries the token's
    hash, never the token."""

    def __init__(self, tokens: Callable[[], Tokens | None]) -> None:
        self.tokens = tokens

    async def verify_token(self, token: str) -> AccessToken | None:
        """The AccessToken of a live token, or None (the SDK then answers 401)."""
        tokens = self.tokens()
        info = None if tokens is None else await tokens.verify(token)
        if info is None:
            return None
        return AccessToken(token=info.token_hash, client_id=info.name, subject=info.name, scopes=[info.role.value])


def auth_settings(public_url: str) -> AuthSettings:
    """The resource-server settings: tokens are issued by `mcp-tasks token create`, so this server
    names itself as the issuer in its protected-resource metadata."""
    base = public_url.rstrip("/")
    return AuthSettings(issuer_url=AnyHttpUrl(base), resource_server_url=AnyHttpUrl(f"{base}/mcp"),
                        validate_token_resource=False)


@dataclass
class Limits:
    """Per-token limits of the HTTP service (README, "Limits")."""

    rate: float = TOKEN_RATE
    burst: int = TOKEN_BURST
    sessions: int = SESSIONS_PER_TOKEN


@dataclass
class Bucket:
    """A token bucket: `level` requests may be made now; it refills at the rate up to the burst,
    by `clock` (seconds)."""

    level: float
    clock: Callable[[], float] = time.monotonic
    at: float | None = None  # the last take

    def take(self, rate: float, burst: int) -> float:
        """0 when a request may go ahead now (and takes it), else seconds until one may."""
        now = self.clock()
        if self.at is not None:
            self.level = min(float(burst), self.level + (now - self.at) * rate)
        self.at = now
        if self.level >= 1:
            self.level -= 1
            return 0.0
        return (1 - self.level) / rate


class TokenGate:
    """ASGI middleware in front of every route when tokens are on: refuses protected routes
    without a live token (401), and applies each token's request rate and session bound (429 with
    Retry-After). Requests without a valid token go on to /mcp, whose own middleware answers 401."""

    def __init__(self, app: ASGIApp, tokens: Callable[[], Tokens | None], limits: Limits,
                 open_sessions: Callable[[str], int], resource_metadata: str) -> None:
        self.app = app
        self.tokens = tokens
        self.limits = limits
        self.open_sessions = open_sessions
        self.resource_metadata = resource_metadata
        self.buckets: dict[str, Bucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/") or "/"
        token = bearer(scope)
        tokens = self.tokens()
        info = None if token is None or tokens is None else await tokens.verify(token)
        if info is None:
            if path in PROTECTED_PATHS:
                await self._refuse(send, 401, "invalid_token", "a bearer token is required (mcp-tasks token create)")
                return
            await self.app(scope, receive, send)
            return
        bucket = self.buckets.setdefault(info.name, Bucket(float(self.limits.burst)))
        wait = bucket.take(self.limits.rate, self.limits.burst)
        if wait:
            await self._refuse(send, 429, "rate_limited",
                               f"token {info.name} made more than {self.limits.rate:g} requests per second "
                               f"(bursts up to {self.limits.burst}); retry after {wait:.2f} s", wait)
            return
        if path == "/mcp" and scope["method"] == "POST" and not header(scope, b"mcp-session-id"):
            if self.open_sessions(info.name) >= self.limits.sessions:
                await self._refuse(send, 429, "too_many_sessions",
                                   f"token {info.name} has {self.limits.sessions} open MCP sessions, the most "
                                   "allowed; close one (DELETE /mcp) or wait for an idle one to expire", 5.0)
                return
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, status: int, error: str, description: str, retry: float = 0.0) -> None:
        body = json.dumps({"error": error, "error_description": description}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 401:
            value = f'Bearer error="{error}", error_description="{description}", resource_metadata="{self.resource_metadata}"'
            headers.append((b"www-authenticate", value.encode()))
        if retry:
            headers.append((b"retry-after", str(max(1, math.ceil(retry))).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower case), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def bearer(scope: Scope) -> str | None:
    """The bearer token of a request, or None."""
    value = header(scope, b"authorization")
    if value is None or value[:7].lower() != "bearer ":
        return None
    return value[7:].strip() or None


class RoleTools:
    """SDK server middleware: a caller's tools/list holds only the tools its role may call."""

    def __init__(self, role_of: Callable[[ServerRequestContext[Any, Any]], Role]) -> None:
        self.role_of = role_of

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Filter the answer to tools/list; pass everything else through."""
        result = await call_next(ctx)
        if ctx.method == "tools/list" and isinstance(result, dict) and isinstance(result.get("tools"), list):
            role = self.role_of(ctx)  # the answer is already in wire form: a dict
            if role is not Role.ADMIN:
                result = {**result, "tools": [t for t in result["tools"] if role.may(t.get("name", ""))]}
        return result
