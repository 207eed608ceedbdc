"""Who is looking at the board, and whether a form really came from it.

Without tokens (loopback only) the person is the local user with the server's role. With tokens,
a person signs in with a token, kept in an HttpOnly, SameSite=Strict cookie and verified on every
request like a bearer token (a revocation takes effect within a second); its name and role are
the person's. Every POST carries a CSRF token bound to the person, and a cross-site Origin or
Sec-Fetch-Site is refused.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

from .. import limits
from ..errors import InvalidInput
from ..models import Caller
from ..server.app import AppState

COOKIE = "mcp_tasks_session"
COOKIE_DAYS = 30  # at most; never beyond the token's own expiry
_PROCESS_SECRET = secrets.token_bytes(32)


@dataclass(frozen=True)
class Person:
    """A signed-in (or local) person: the caller their actions are recorded as, and their CSRF token."""

    caller: Caller
    csrf: str
    signed_in: bool  # with a token (False: the local user, no tokens)

    def may(self, operation: str) -> bool:
        """Whether their role allows `operation` (states.ROLE_NEEDED)."""
        return self.caller.role.may(operation)


def local_name() -> str:
    """The local user's name as recorded on events (the OS login name)."""
    try:
        name = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in this environment
        name = "local-user"
    try:
        return limits.agent(name)
    except InvalidInput:
        return "local-user"


def _csrf(key: bytes) -> str:
    return hmac.new(key, b"mcp-tasks board form", hashlib.sha256).hexdigest()[:32]


async def person_of(request: Request, app: AppState) -> Person | None:
    """The person making `request`; None when tokens are on and no live token is signed in."""
    if app.public_url is None:
        caller = Caller(local_name(), f"board:{app.nonce}", app.role)
        return Person(caller, _csrf(_PROCESS_SECRET), signed_in=False)
    token = request.cookies.get(COOKIE)
    info = None if not token or app.tokens is None else await app.tokens.verify(token)
    if info is None:
        return None
    # The token's hash is known only to the database and the holder of the token: a form secret
    # derived from it holds across every server process of the registry.
    return Person(Caller(info.name, f"token:{info.token_hash}", info.role), _csrf(info.token_hash.encode()),
                  signed_in=True)


def same_origin(request: Request) -> str | None:
    """Why a state-changing request is refused as cross-site (None: it is not)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"a {site} request cannot change anything here"
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        host = request.headers.get("host", "")
        if urlsplit(origin).netloc.lower() != host.lower():
            return f"a request from {origin} cannot change anything here"
    elif origin == "null":
        return "a request from an opaque origin cannot change anything here"
    return None


def check_form(person: Person, sent: object) -> str | None:
    """Why a posted form is refused (None: its CSRF token is the person's)."""
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), person.csrf.encode()):
        return "this form is out of date or was not made by this board: reload the page and try again"
    return None


def safe_next(target: object, default: str = "/") -> str:
    """A local path to go back to after an action (never another site)."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target[:2000]
