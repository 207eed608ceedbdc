"""Shared fixtures: one behaviour suite, parametrized over every store."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable

import pytest

from mcp_tasks import Policy, Registry
from mcp_tasks.stores import SqliteStore, Store

from .helpers import FakeClock

STORES = ["sqlite"]


def make_store(kind: str, tmp_path) -> Store:
    if kind == "sqlite":
        return SqliteStore(tmp_path / "tasks.db")
    raise AssertionError(kind)


@pytest.fixture(params=STORES)
def store_kind(request) -> str:
    return request.param


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def registry(store_kind, tmp_path, clock) -> AsyncIterator[Registry]:
    reg = Registry(make_store(store_kind, tmp_path), agent="agent-a", clock=clock, rng=random.Random(7))
    async with reg:
        yield reg


@pytest.fixture
async def make_registry(store_kind, tmp_path, clock) -> AsyncIterator[Callable[..., Registry]]:
    """Registries over one database with custom policies; all closed at the end."""
    opened: list[Registry] = []

    async def make(policy: Policy | None = None, agent: str = "agent-a") -> Registry:
        reg = Registry(make_store(store_kind, tmp_path), agent=agent, clock=clock, policy=policy, rng=random.Random(7))
        await reg.__aenter__()
        opened.append(reg)
        return reg

    yield make
    for reg in opened:
        await reg.__aexit__(None, None, None)
