"""Shared fixtures: one behaviour suite, parametrized over every store (tests/databases.py).

The suite runs in two processes (pytest-xdist, `-n 2` in pyproject.toml): every
test that may touch PostgreSQL in one, in order, and every other test in the other. PostgreSQL
tests must not overlap: one restarts the server, and an open transaction anywhere on the server
holds back the numbering of every database's events (README, "Running on PostgreSQL").
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
    """Whether a test may reach the PostgreSQL server: parametrized with it, or unparametrized by
    store in a module that mentions it."""
    params = nodeid[nodeid.index("[") + 1:nodeid.rindex("]")].split("-") if "[" in nodeid else []
    if "postgres" in params:
        return True
    if "sqlite" in params:
        return False
    source = root / nodeid.split("::")[0]
    if source not in _MENTIONS:
        text = source.read_text(encoding="utf-8") if source.is_file() else ""
        _MENTIONS[source] = "postgres" in text or "pg_base" in text
    return _MENTIONS[source]


_MENTIONS: dict[Path, bool] = {}


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

