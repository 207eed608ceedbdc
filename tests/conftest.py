"""Shared fixtures: one behaviour suite, parametrized over every store (tests/databases.py)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from mcp_tasks import Policy, Registry

from .databases import KINDS, SKIPPED, TestDatabase, new_database
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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason in SKIPPED:
        terminalreporter.write_line(f"NOTE: {reason}", yellow=True)
