"""Shared fixtures: one behaviour suite, parametrized over every store (tests/databases.py).

The suite runs in two processes (pytest-xdist, `-n 2` in pyproject.toml): every test that may
touch PostgreSQL in one of them, in order, and the others wherever a process is free (about half
the time each). PostgreSQL tests must not overlap: one restarts the server, and an open
transaction anywhere on the server holds back the numbering of every database's events (README,
"Running on PostgreSQL").
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_tasks import Policy, Registry

from .databases import KINDS, KNOWN_SKIPS, SKIPPED, TestDatabase, new_database
from .helpers import FakeClock


@pytest.fixture(params=KINDS)
def store_kind(request) -> str:
    return request.param


@pytest.fixture
def db(store_kind, tmp_path) -> Iterator[TestDatabase]:
    """A fresh database of each kind (a SQLite file, a PostgreSQL schema), removed afterwards."""
    database = new_database(store_kind, tmp_path)
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def registry(db, clock) -> AsyncIterator[Registry]:
    reg = Registry(db.store(), agent="agent-a", clock=clock, rng=random.Random(7))
    async with reg:
        yield reg


@pytest.fixture
async def make_registry(db, clock) -> AsyncIterator[Callable[..., Any]]:
    """Registries over one database with custom policies; all closed at the end."""
    opened: list[Registry] = []

    async def make(policy: Policy | None = None, agent: str = "agent-a") -> Registry:
        reg = Registry(db.store(), agent=agent, clock=clock, policy=policy, rng=random.Random(7))
        await reg.__aenter__()
        opened.append(reg)
        return reg

    yield make
    for reg in opened:
        await reg.__aexit__(None, None, None)


def uses_postgres(nodeid: str, root: Path) -> bool:
    """Whether a test may reach the PostgreSQL server: parametrized with it, or not parametrized by
    store but naming it (or a PG_ value) in its decorators or body."""
    params = nodeid[nodeid.index("[") + 1:nodeid.rindex("]")].split("-") if "[" in nodeid else []
    if "postgres" in params:
        return True
    if "sqlite" in params:
        return False
    path, _, name = nodeid.partition("::")
    source = root / path
    if source not in _SOURCES:
        _SOURCES[source] = source.read_text(encoding="utf-8").splitlines() if source.is_file() else []
    lines = _SOURCES[source]
    name = name.split("[")[0]
    at = next((i for i, line in enumerate(lines) if line.startswith((f"def {name}(", f"async def {name}("))), None)
    if at is None:
        text = "\n".join(lines)
    else:
        first = at
        while first > 0 and lines[first - 1].strip() and not lines[first - 1].startswith(("def ", "async def ", "class ")):
            first -= 1  # its decorators, down to the blank line before them
        last = at + 1
        while last < len(lines) and (not lines[last].strip() or lines[last][0] in " \t"):
            last += 1
        text = "\n".join(lines[first:last])
    return "postgres" in text.lower() or "pg_" in text.lower()


_SOURCES: dict[Path, list[str]] = {}


def pytest_xdist_make_scheduler(config: Any, log: Any) -> Any:
    """pytest-xdist: every PostgreSQL test in one work unit (one process, in order); every other
    test a unit of its own, for whichever process is free."""
    from xdist.scheduler import LoadScopeScheduling

    root = Path(config.rootpath)

    class PostgresApart(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "postgres" if uses_postgres(nodeid, root) else nodeid

    return PostgresApart(config, log)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    notes = list(SKIPPED)
    for report in terminalreporter.stats.get("skipped", []):  # skips in worker processes
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        if reason in KNOWN_SKIPS and reason not in notes:
            notes.append(reason)
    for reason in notes:
        terminalreporter.write_line(f"NOTE: {reason}", yellow=True)

