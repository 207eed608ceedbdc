"""Maximum sizes and bounds, enforced by the registry and published in tool schemas and README.

Every check returns the cleaned value or raises InvalidInput naming the argument, what was
wrong and what is allowed.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import InvalidInput

MAX_TITLE = 200
MAX_DESCRIPTION = 20_000
MAX_TEXT = 4_000  # notes, reasons, comments, error texts
MAX_NAME = 64  # types, capabilities, tags, batch keys
MAX_AGENT = 128
MAX_REQUEST_ID = 128
MAX_TAGS = 20
MAX_DEPENDS = 100
MAX_BATCH = 500
MAX_JSON_BYTES = 65_536  # checkpoint data and results, serialized
MAX_JSON_DEPTH = 32
MAX_ARTIFACTS = 100
MAX_ARTIFACT = 2_000
MAX_RETRIES = 100
MAX_PAGE = 100
MAX_EVENT_PAGE = 500
MIN_PRIORITY, MAX_PRIORITY = 1, 10
MAX_ERROR_LOG = 50  # newest entries kept on the task; every error stays in the event log
MAX_LEASE_TOKEN = 200
MAX_USAGE_TOKENS = 10**12
MAX_USAGE_CALLS = 10**9
MAX_USAGE_COST = 10**9
MIN_LEASE_SECONDS = 5  # the one definition of lease bounds: claim, serve --lease-seconds, Policy
MAX_LEASE_SECONDS = 86_400
MAX_URI = 1_024  # a resource URI a client subscribes to
MAX_SUBSCRIPTIONS = 100  # resources/subscribe per session; URIs per subscriptions/listen stream

# The README table of limits (render_markdown): constant, unit, what it bounds. Every MAX_/MIN_
# constant above has a row; a test checks that.
_DOCUMENTED: tuple[tuple[str, str, str], ...] = (
    ("MAX_TITLE", "characters", "task title (create_tasks, update_task); find_tasks `text`"),
    ("MAX_DESCRIPTION", "characters", "task description"),
    ("MAX_TEXT", "characters", "checkpoint `note`, pause/release/cancel `reason`, fail `error`, review `comment`"),
    ("MAX_NAME", "characters", "type, capability, tag, batch `key` (letters, digits, `_ . : / -`)"),
    ("MAX_AGENT", "characters", "agent name (find_tasks `assignee`, X-MCP-Tasks-Agent header)"),
    ("MAX_REQUEST_ID", "characters", "`request_id`"),
    ("MAX_LEASE_TOKEN", "characters", "`lease`, the token claim returns"),
    ("MAX_TAGS", "items", "`tags` of a task; `capabilities` and `tags` filters"),
    ("MAX_DEPENDS", "items", "`depends_on` of a task; `add_depends_on`, `remove_depends_on` per call"),
    ("MAX_BATCH", "items", "`tasks` per create_tasks call, `task_ids` per schedule call"),
    ("MAX_JSON_BYTES", "bytes", "checkpoint `data`, complete `result` (compact UTF-8 JSON)"),
    ("MAX_JSON_DEPTH", "levels", "nested arrays/objects in checkpoint `data` and complete `result`"),
    ("MAX_ARTIFACTS", "items", "complete `artifacts`"),
    ("MAX_ARTIFACT", "characters", "one artifact reference (path, URL, name)"),
    ("MAX_RETRIES", "", "`max_retries` of a task (0 up to this)"),
    ("MIN_PRIORITY", "", "`priority`, lowest"),
    ("MAX_PRIORITY", "", "`priority`, highest (claimed first)"),
    ("MAX_PAGE", "items", "`limit` of list_available and find_tasks"),
    ("MAX_EVENT_PAGE", "events", "`events` of get_task"),
    ("MAX_USAGE_TOKENS", "", "complete `usage.tokens`"),
    ("MAX_USAGE_CALLS", "", "complete `usage.api_calls`"),
    ("MAX_USAGE_COST", "", "complete `usage.cost`"),
    ("MAX_ERROR_LOG", "entries", "errors kept on a task (every error stays in the event log)"),
    ("MIN_LEASE_SECONDS", "seconds", "claim `lease_seconds`, `serve --lease-seconds`, shortest"),
    ("MAX_LEASE_SECONDS", "seconds", "claim `lease_seconds`, `serve --lease-seconds`, longest (24 h)"),
    ("MAX_URI", "characters", "a resource URI in `resources/subscribe` and `subscriptions/listen`"),
    ("MAX_SUBSCRIPTIONS", "URIs", "`resources/subscribe` per session; resource URIs per `subscriptions/listen` stream"),
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$"
_NAME_RE = re.compile(NAME_PATTERN)
TASK_ID_PATTERN = r"^t-[0-9a-z]{4,32}$"
_TASK_ID_RE = re.compile(TASK_ID_PATTERN)


def _is_clean(s: str) -> str | None:
    """Why `s` cannot be stored, or None."""
    if "\x00" in s:
        return "contains a NUL character"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (not valid Unicode text)"
    return None


def text(arg: str, value: Any, max_len: int, *, required: bool = False) -> str | None:
    """Free text up to `max_len` characters; None allowed unless required."""
    if value is None:
        if required:
            raise InvalidInput(f"{arg} is required")
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{arg} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise InvalidInput(f"{arg} must not be empty")
    if len(value) > max_len:
        raise InvalidInput(f"{arg} is {len(value)} characters; at most {max_len} allowed")
    why = _is_clean(value)
    if why:
        raise InvalidInput(f"{arg} {why}")
    return value


def name(arg: str, value: Any, max_len: int = MAX_NAME) -> str:
    """An identifier-like string: letters, digits and _ . : / - (types, tags, keys)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{arg} must be a string, got {type(value).__name__}")
    if not value or len(value) > max_len or not _NAME_RE.match(value):
        raise InvalidInput(
            f"{arg} {value[:80]!r} is not a valid name; use 1-{max_len} letters, digits or _ . : / - "
            "starting with a letter or digit"
        )
    return value


def names(arg: str, values: Any, max_items: int) -> list[str]:
    """A list of distinct names, order kept."""
    if values is None:
        return []
    if not isinstance(values, (list, tuple)):
        raise InvalidInput(f"{arg} must be a list of strings")
    if len(values) > max_items:
        raise InvalidInput(f"{arg} has {len(values)} items; at most {max_items} allowed")
    out: list[str] = []
    for v in values:
        v = name(f"{arg} item", v)
        if v not in out:
            out.append(v)
    return out


# Names the registry writes as the actor of its own changes; no caller may use them.
RESERVED_AGENTS = frozenset({"reaper"})


def agent(value: Any, arg: str = "agent") -> str:
    """An agent name: printable text without control characters, not one of RESERVED_AGENTS
    (`arg` names the argument)."""
    v = text(arg, value, MAX_AGENT, required=True)
    assert v is not None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in v):
        raise InvalidInput(f"{arg} must not contain control characters")
    if v.strip().lower() in RESERVED_AGENTS:
        raise InvalidInput(f"{arg} {v!r} is reserved for changes the registry makes itself; choose another name")
    return v


def task_id(arg: str, value: Any) -> str:
    """A task id as the registry issues them (t-xxxx)."""
    if not isinstance(value, str) or not _TASK_ID_RE.match(value):
        shown = value[:80] if isinstance(value, str) else type(value).__name__
        raise InvalidInput(f"{arg} {shown!r} is not a task id; ids look like t-0a1b2c3d4e")
    return value


def integer(arg: str, value: Any, lo: int, hi: int) -> int:
    """A whole number within [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{arg} must be a whole number between {lo} and {hi}")
    if not lo <= value <= hi:
        raise InvalidInput(f"{arg} is {value}; allowed: {lo} to {hi}")
    return value


def number(arg: str, value: Any, lo: float, hi: float) -> float:
    """A finite number within [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{arg} must be a finite number between {lo} and {hi}")
    if not lo <= value <= hi:
        raise InvalidInput(f"{arg} is {value}; allowed: {lo} to {hi}")
    return float(value)


def _depth(value: Any, limit: int) -> int:
    """Levels of nested arrays and objects in a JSON value (a scalar is 0, `[1]` is 1), stopping
    early past `limit` (no recursion)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if not isinstance(v, (dict, list)):
            continue
        if d > deepest:
            deepest = d
            if deepest > limit:
                return deepest
        stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def json_value(arg: str, value: Any, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Any JSON value up to `max_bytes` serialized and MAX_JSON_DEPTH deep."""
    if value is None:
        return None
    if _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise InvalidInput(f"{arg} is nested more than {MAX_JSON_DEPTH} levels deep (arrays and objects)")
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        size = len(encoded.encode("utf-8"))
    except UnicodeEncodeError:  # a ValueError too: catch it first
        raise InvalidInput(f"{arg} contains an unpaired surrogate (not valid Unicode text)") from None
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{arg} is not plain JSON ({exc})") from None
    if size > max_bytes:
        raise InvalidInput(f"{arg} is {size} bytes as JSON; at most {max_bytes} allowed")
    if "\\u0000" in encoded:
        raise InvalidInput(f"{arg} contains a NUL character")
    return json.loads(encoded)  # a private copy: later changes by the caller cannot leak in


def artifacts(values: Any) -> list[str]:
    """Artifact references (paths, URLs, names)."""
    if values is None:
        return []
    if not isinstance(values, (list, tuple)):
        raise InvalidInput("artifacts must be a list of strings")
    if len(values) > MAX_ARTIFACTS:
        raise InvalidInput(f"artifacts has {len(values)} items; at most {MAX_ARTIFACTS} allowed")
    return [text("artifacts item", v, MAX_ARTIFACT, required=True) for v in values]  # type: ignore[misc]


def render_markdown() -> str:
    """The limits above as a Markdown table (README): constant, value, what it bounds."""
    lines = ["| Limit | Value | Applies to |", "|---|---|---|"]
    for const, unit, applies in _DOCUMENTED:
        value = f"{globals()[const]:,}" + (f" {unit}" if unit else "")
        lines.append(f"| `{const}` | {value} | {applies} |")
    return "\n".join(lines)


# Per-token limits of the HTTP service (serve --rate, --burst, --sessions-per-token).
TOKEN_RATE = 50.0  # requests per second per token, sustained
TOKEN_BURST = 200  # requests a token may make at once before the rate applies
SESSIONS_PER_TOKEN = 32  # open MCP sessions (2025-11-25 clients) per token

# MCP log messages to one session (server/logs.py; README "Logging").
LOG_RATE = 2.0  # messages per second, sustained
LOG_BURST = 10  # messages sent at once before the rate applies
