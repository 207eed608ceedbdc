"""Where the database lives and how it is opened: flags, then environment, then defaults."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_DB = "MCP_TASKS_DB"
ENV_SYNC = "MCP_TASKS_SYNC"
ENV_AGENT = "MCP_TASKS_AGENT"
SYNC_VALUES = ("full", "normal")


class ConfigError(Exception):
    """A flag or environment variable holds a value mcp-tasks cannot use (a usage error)."""


def data_dir() -> Path:
    """The per-user data directory for mcp-tasks on this platform."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "mcp-tasks"


def default_db() -> str:
    """The database used when neither --db nor MCP_TASKS_DB is given."""
    return str(data_dir() / "tasks.db")


def resolve_db(flag: str | None) -> str:
    """--db wins, then MCP_TASKS_DB, then the per-user default."""
    return flag or os.environ.get(ENV_DB) or default_db()


def resolve_sync(flag: str | None) -> str:
    """SQLite synchronous mode: FULL (default: survives power loss) or NORMAL (faster).

    Raises ConfigError when MCP_TASKS_SYNC holds anything else."""
    value = flag or os.environ.get(ENV_SYNC) or "full"
    if value.lower() not in SYNC_VALUES:
        raise ConfigError(f"{ENV_SYNC} is {value!r}; allowed: {', '.join(SYNC_VALUES)} (unset means full)")
    return value.upper()


def default_agent() -> str:
    """The agent name used on stdio when --agent and MCP_TASKS_AGENT are not given."""
    env = os.environ.get(ENV_AGENT)
    if env:
        return env
    user = os.environ.get("USER") or os.environ.get("USERNAME") or "local"
    return f"{user}-{os.getpid()}"
